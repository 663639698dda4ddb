# Mask R-CNN on COCO with the ViT-B/16 distilled from CLIP
# (configs/fd/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py) and ViTDet's simple feature
# pyramid built from the last (stride-16) map. Recipe after ViTDet's ViT-B (mmdet projects/ViTDet,
# not in the mmdet wheel): large scale jitter at 1024 x 1024, AdamW lr 1e-4 (batch 64), weight
# decay 0.1, layer decay 0.7, drop path 0.1, 184375 iterations (~100 epochs), AMP. Differences
# from ViTDet: every block attends globally (BEiTViT has no window attention) with its own
# relative position table, interpolated 14x14 -> 64x64 when the FD checkpoint is loaded; mmdet's
# standard Mask R-CNN heads.
#
#   tools/dist_train.sh configs/mmdet/mask-rcnn_fd-clip-vitb_simplefpn_lsj-100e_coco.py 16
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/default_runtime.py',
    '../_base_/backbones/fd_vit_base_p16.py',
]
# `import mmfd` registers everything these configs name (see mmfd/registry.py).
custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)

image_size = (1024, 1024)  # fixed: the position tables are tied to a 64x64 grid
backbone_dims = 768
model = dict(
    data_preprocessor=dict(
        pad_size_divisor=32,
        batch_augments=[dict(type='BatchFixedSizePad', size=image_size, pad_mask=True)]),
    backbone=dict(
        _base_.fd_vit_backbone,
        _delete_=True,
        img_size=image_size[0],
        drop_path_rate=0.1,
        out_indices=-1),
    neck=dict(
        _delete_=True,
        type='mmpretrain.SimpleFPN',
        backbone_channel=backbone_dims,
        in_channels=[backbone_dims // 4, backbone_dims // 2, backbone_dims, backbone_dims],
        out_channels=256,
        num_outs=5,
        norm_cfg=dict(type='LN2d', requires_grad=True)))

backend_args = None
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='RandomResize', scale=image_size, ratio_range=(0.1, 2.0), keep_ratio=True),
    dict(
        type='RandomCrop',
        crop_type='absolute_range',
        crop_size=image_size,
        recompute_bbox=True,
        allow_negative_crop=True),
    dict(type='FilterAnnotations', min_gt_bbox_wh=(1e-2, 1e-2)),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile', backend_args=backend_args),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='Pad', size=image_size, pad_val=dict(img=(114, 114, 114))),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
train_dataloader = dict(
    batch_size=4,  # x 16 GPUs = 64
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(
    type='FDOptimWrapper',  # fp16 AMP on CUDA (mmfd's; bf16 without CUDA)
    amp='auto',
    max_consecutive_nonfinite=None,
    constructor='LayerDecayOptimWrapperConstructor',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.1),
    paramwise_cfg=dict(
        layer_decay_rate=0.7,
        norm_decay_mult=0.0,
        bias_decay_mult=0.0,
        flat_decay_mult=0.0,
        # ViTDet's rule: the relative position tables are not decayed either.
        custom_keys=dict(_base_.vit_no_decay, relative_position_bias_table=dict(decay_mult=0.0))))

max_iters = 184375
interval = 5000
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=250),
    dict(
        type='MultiStepLR',
        begin=0,
        end=max_iters,
        by_epoch=False,
        milestones=[163889, 177546],
        gamma=0.1),
]
train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=max_iters,
    val_interval=interval,
    dynamic_intervals=[(max_iters // interval * interval + 1, max_iters)])
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    checkpoint=dict(
        type='CheckpointHook', by_epoch=False, save_last=True, interval=interval, max_keep_ckpts=5))
log_processor = dict(type='LogProcessor', window_size=50, by_epoch=False)
# lr 1e-4 is for a total batch of 64; scaled to the actual batch.
auto_scale_lr = dict(enable=True, base_batch_size=64)
