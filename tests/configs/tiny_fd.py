# A tiny FD run for tests: the real _base_ files with tiny widths, a 64 px crop,
# a patch-8 ViT teacher (4x4 grid after resize_input) and a patch-16 FDViT student.
_base_ = [
    '../../configs/_base_/models/fd_vit_base_p16.py',
    '../../configs/_base_/datasets/imagenet_fd.py',
    '../../configs/_base_/schedules/fd_300e.py',
    '../../configs/_base_/default_runtime.py',
]
input_size = 64
model = dict(
    input_size=input_size,
    backbone=dict(
        arch=dict(_delete_=True, embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=input_size,
        drop_path_rate=0.1),
    teacher=dict(
        type='ViTTeacher',
        img_size=32,
        checkpoint='SET_BY_TEST',
        arch=dict(patch_size=8, embed_dim=48, depth=2, num_heads=2)))

train_pipeline = [
    dict(type='SafeLoadImageFromFile'),  # as the FD base: per-sample seeds
    dict(
        type='RandomResizedCrop',
        scale=input_size,
        crop_ratio_range=(0.08, 1.0),
        interpolation='bilinear',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    pin_memory=False,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root='SET_BY_TEST',
        with_label=False,
        pipeline=train_pipeline))

optim_wrapper = dict(type='FDOptimWrapper', amp='off', optimizer=dict(lr=2e-3))
param_scheduler = []
auto_scale_lr = dict(enable=False)
train_cfg = dict(_delete_=True, type='IterBasedTrainLoop', max_iters=30)
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=10, by_epoch=False))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(vis_backends=vis_backends)
log_processor = dict(by_epoch=False)
