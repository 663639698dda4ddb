# FD with a SwinV2-B student (embed 128, depths 2-2-18-2, heads 4-8-16-32, window 14,
# cosine attention + log-spaced continuous position bias, residual post-norm):
# FDSwinTransformerV2 = mmpretrain's SwinTransformerV2 with the release's drop path
# placement (after the post-norm), init and fp32 cosine attention; stage-4 map
# 7x7x1024 at 224.
model = dict(
    type='FeatureDistiller',
    input_size=224,
    align='resize_input',
    include_cls=False,  # Swin has no CLS token
    backbone=dict(
        type='FDSwinTransformerV2',
        arch='base',
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.3,
        out_indices=(3, )),
    head=dict(type='FDHead', beta=2.0),
)
