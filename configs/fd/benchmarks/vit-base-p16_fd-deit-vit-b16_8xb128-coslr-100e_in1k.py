# ImageNet-1K fine-tuning of the ViT-B/16 distilled from DeiT ViT-B/16:
# drop path 0.3, 100 / 20 epochs, lr 1.25e-3 per 512, layer decay 0.65
# (release: 81.8 -> 83.0 top-1).
_base_ = [
    '../../_base_/finetune/vit_base_p16_ft.py',
    '../../_base_/finetune/imagenet_ft_224.py',
    '../../_base_/finetune/schedule_adamw_ld_100e.py',
    '../../_base_/finetune/runtime_ft.py',
]
model = dict(
    backbone=dict(
        drop_path_rate=0.3,
        init_cfg=dict(
            checkpoint='work_dirs/fd_deit-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k/epoch_300.pth'
        )))
optim_wrapper = dict(optimizer=dict(lr=1.25e-3), paramwise_cfg=dict(layer_decay_rate=0.65))
