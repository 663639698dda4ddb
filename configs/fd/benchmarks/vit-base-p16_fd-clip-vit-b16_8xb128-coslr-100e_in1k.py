# ImageNet-1K fine-tuning of the ViT-B/16 distilled from CLIP ViT-B/16
# (configs/fd/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py): drop path 0.3, 100 epochs /
# 20 warm-up, lr 1.25e-3 per 512 images, layer decay 0.6 (release: 82.9 -> 84.9 top-1). Reads the
# FD checkpoint itself
# (work_dirs/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k/epoch_300.pth):
#   tools/dist_train.sh \
#     configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py 8
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
            checkpoint='work_dirs/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k/epoch_300.pth'
        )))
optim_wrapper = dict(optimizer=dict(lr=1.25e-3), paramwise_cfg=dict(layer_decay_rate=0.6))
