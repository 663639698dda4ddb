# ImageNet-1K fine-tuning of the SwinV2-B distilled from EsViT Swin-B
# (configs/fd/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k.py): drop path 0.4, 100 /
# 20 epochs, lr 1.25e-3 per 512, layer decay 0.8 (release: 83.9 -> 85.1 top-1). mmpretrain's
# SwinTransformerV2 has no get_layer_depth, so the layer decay comes from mmfd's
# LayerDecayOptimWrapperConstructor (SimMIM's Swin depth rule).
_base_ = [
    '../../_base_/finetune/swinv2_base_w14_ft.py',
    '../../_base_/finetune/imagenet_ft_224.py',
    '../../_base_/finetune/schedule_adamw_ld_100e.py',
    '../../_base_/finetune/runtime_ft.py',
]
model = dict(
    backbone=dict(
        drop_path_rate=0.4,
        init_cfg=dict(
            checkpoint=('work_dirs/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k/'
                        'epoch_300.pth'))))
optim_wrapper = dict(
    optimizer=dict(lr=1.25e-3),
    constructor='LayerDecayOptimWrapperConstructor',
    paramwise_cfg=dict(layer_decay_rate=0.8, custom_keys=_base_.swinv2_no_decay))
