# ImageNet-1K fine-tuning of the ViT-L/14 distilled from CLIP ViT-L/14
# (configs/fd/fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k.py): drop path 0.4, 50 epochs /
# 5 warm-up, lr 2.5e-4 per 512, layer decay 0.75, warm-up from / min lr 5e-7 per 512 (release:
# 86.1 -> 87.7 top-1 at a total batch of 2048).
_base_ = [
    '../../_base_/finetune/vit_large_p14_ft.py',
    '../../_base_/finetune/imagenet_ft_224.py',
    '../../_base_/finetune/schedule_adamw_ld_100e.py',
    '../../_base_/finetune/runtime_ft.py',
]
base_lr = 2.5e-4
warmup_from = 5e-7
min_lr = 5e-7
max_epochs = 50
warmup_epochs = 5
model = dict(
    backbone=dict(
        drop_path_rate=0.4,
        init_cfg=dict(
            checkpoint='work_dirs/fd_clip-vit-l14_vit-l14_16xb128-amp-coslr-300e_in1k/epoch_300.pth'
        )))
optim_wrapper = dict(optimizer=dict(lr=base_lr), paramwise_cfg=dict(layer_decay_rate=0.75))
# The base schedule's two phases with this recipe's lrs and epochs.
param_scheduler = [
    dict(_base_.param_scheduler[0], start_factor=warmup_from / base_lr, end=warmup_epochs),
    dict(
        _base_.param_scheduler[1],
        T_max=max_epochs - warmup_epochs,
        eta_min_ratio=min_lr / base_lr,
        begin=warmup_epochs,
        end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
