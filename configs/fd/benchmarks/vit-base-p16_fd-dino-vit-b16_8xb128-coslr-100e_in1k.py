# ImageNet-1K fine-tuning of the ViT-B/16 distilled from DINO ViT-B/16:
# drop path 0.2, 100 / 20 epochs, lr 1.5e-3 per 512, layer decay 0.6
# (release: 82.8 -> 83.8 top-1).
_base_ = [
    '../../_base_/finetune/vit_base_p16_ft.py',
    '../../_base_/finetune/imagenet_ft_224.py',
    '../../_base_/finetune/schedule_adamw_ld_100e.py',
    '../../_base_/finetune/runtime_ft.py',
]
base_lr = 1.5e-3
model = dict(
    backbone=dict(
        drop_path_rate=0.2,
        init_cfg=dict(
            checkpoint='work_dirs/fd_dino-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k/epoch_300.pth'
        )))
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.6))
# The base schedule with its warm-up start and minimum (2.5e-7 per 512) as ratios
# of this recipe's base lr.
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=_base_.warmup_from / base_lr),
    dict(_base_.param_scheduler[1], eta_min_ratio=_base_.min_lr / base_lr),
]
