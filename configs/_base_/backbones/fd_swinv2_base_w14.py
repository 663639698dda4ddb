# The SwinV2-B distilled by FD (EsViT teacher) as a downstream backbone, shared by
# the ImageNet fine-tune, mmdet and mmseg configs: the FD student's geometry
# (window 14, 7 in the last stage at 224) and FDSwinTransformerV2's drop path after
# the post-norm, as the release.
# A config uses it as `backbone=dict(_base_.fd_swinv2_backbone, _delete_=True, ...)`.
fd_swinv2_backbone = dict(
    type='mmpretrain.FDSwinTransformerV2',
    arch='base',
    img_size=224,
    window_size=[14, 14, 14, 7],
    drop_path_rate=0.3,
    out_indices=(3, ),
    init_cfg=dict(
        type='StrictPretrained',
        # The FD training checkpoint itself (student under `backbone.`).
        checkpoint=('work_dirs/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k/'
                    'epoch_300.pth'),
        convert='fd_swinv2'))

# SwinV2's no-weight-decay keywords: the position-bias MLP and the attention logit
# scale (1-D parameters, norms and biases are excluded by the recipes' multipliers).
swinv2_no_decay = {
    'cpb_mlp': dict(decay_mult=0.0),
    'logit_scale': dict(decay_mult=0.0),
}
