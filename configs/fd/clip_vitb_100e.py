# The release's shorter CLIP-B recipe: 100 epochs, drop path 0.1, crop scale 0.67-1.
_base_ = ['./clip_vitb.py']
model = dict(backbone=dict(drop_path_rate=0.1))
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='RandomResizedCrop',
        scale=224,
        crop_ratio_range=(0.67, 1.0),
        aspect_ratio_range=(3. / 4., 4. / 3.),
        interpolation='bilinear',
        backend='pillow'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(dataset=dict(pipeline=train_pipeline)))
max_epochs = 100
param_scheduler = [
    dict(
        type='LinearLR',
        start_factor=5e-7 / 3e-4,
        by_epoch=True,
        begin=0,
        end=10,
        convert_to_iter_based=True),
    dict(
        type='CosineAnnealingLR',
        T_max=90,
        eta_min_ratio=5e-6 / 3e-4,
        by_epoch=True,
        begin=10,
        end=100,
        convert_to_iter_based=True),
]
train_cfg = dict(max_epochs=max_epochs)
