# ImageClassifier on a distilled SwinV2-B (window 14, 7 in the last stage at 224:
# the FD student's geometry, configs/_base_/models/fd_swinv2_base_w14.py).
# Global average pool of the stage-4 map (after norm3, which FD trained) -> head.
model = dict(
    type='ImageClassifier',
    backbone=dict(
        # SwinTransformerV2 with drop path after the post-norm, as the release.
        type='FDSwinTransformerV2',
        arch='base',
        img_size=224,
        window_size=[14, 14, 14, 7],
        drop_path_rate=0.4,
        out_indices=(3, ),
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint='checkpoints/fd_swinv2b_mmpretrain.pth',
            prefix='backbone.')),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(
        type='LinearClsHead',
        num_classes=1000,
        in_channels=1024,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        # The release's SwinV2 fine-tune head: trunc-normal std 0.02 (its ViT
        # fine-tune scales the head by 0.001; its Swin one does not).
        init_cfg=[dict(type='TruncNormal', layer='Linear', std=0.02)]),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))
