# UperNet on ADE20K with the ViT-B/16 distilled from CLIP
# (configs/fd/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py) and mmseg's MultiLevelNeck
# (blocks 4, 6, 8, 12 -> strides 4, 8, 16, 32). Recipe after mmseg's MAE ViT-B UperNet: 512 x 512
# crops, AdamW lr 1e-4 (batch 16), weight decay 0.05, layer decay 0.65, drop path 0.1, 1500
# warm-up iterations, poly decay, 160k iterations, AMP; sliding-window test with 512 x 512
# windows. The backbone is mmpretrain's BEiTViT with one relative position table per block,
# interpolated 14x14 -> 32x32 when the FD checkpoint is loaded. Its grid is fixed, so test images
# are padded to at least 512 x 512 (data_preprocessor.test_cfg) and every window is exactly 512 x
# 512.
#
#   tools/dist_train.sh configs/mmseg/upernet_fd-clip-vitb_mln_8xb2-amp-160k_ade20k-512x512.py 8
_base_ = [
    'mmseg::_base_/models/upernet_vit-b16_ln_mln.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/default_runtime.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    '../_base_/backbones/fd_vit_base_p16.py',
]
# `import mmfd` registers everything these configs name (see mmfd/registry.py).
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

crop_size = (512, 512)
num_classes = 150
model = dict(
    data_preprocessor=dict(size=crop_size, test_cfg=dict(size=crop_size)),
    pretrained=None,
    backbone=dict(
        _base_.fd_vit_backbone,
        _delete_=True,
        img_size=crop_size[0],
        drop_path_rate=0.1,
        out_indices=[3, 5, 7, 11]),
    neck=dict(in_channels=[768, 768, 768, 768], out_channels=768, scales=[4, 2, 1, 0.5]),
    decode_head=dict(in_channels=[768, 768, 768, 768], channels=768, num_classes=num_classes),
    auxiliary_head=dict(in_channels=768, num_classes=num_classes),
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))

optim_wrapper = dict(
    _delete_=True,
    type='FDOptimWrapper',  # fp16 AMP on CUDA (mmfd's; bf16 without CUDA)
    amp='auto',
    max_consecutive_nonfinite=None,
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    paramwise_cfg=dict(
        layer_decay_rate=0.65,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        # mmseg's BEiT/MAE rule: the relative position tables are not decayed either.
        custom_keys=dict(_base_.vit_no_decay, relative_position_bias_table=dict(decay_mult=0.0))))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', eta_min=0.0, power=1.0, begin=1500, end=160000, by_epoch=False),
]
train_dataloader = dict(batch_size=2)  # x 8 GPUs = 16
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
# lr 1e-4 is for a total batch of 16; scaled to the actual batch.
auto_scale_lr = dict(enable=True, base_batch_size=16)
