# The release's shorter CLIP-B recipe: 100 epochs, drop path 0.1, crop scale 0.67-1.
_base_ = ['./fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py']
model = dict(backbone=dict(drop_path_rate=0.1))
# The base pipeline with the 0.67-1 crop scale.
train_pipeline = [
    _base_.train_pipeline[0],
    dict(_base_.train_pipeline[1], crop_ratio_range=(0.67, 1.0)),
    *_base_.train_pipeline[2:],
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
max_epochs = 100
# The base schedule (same lrs, 10 warm-up epochs), cosine over 90 epochs instead of 290.
param_scheduler = [
    _base_.param_scheduler[0],
    dict(_base_.param_scheduler[1], T_max=max_epochs - 10, end=max_epochs),
]
train_cfg = dict(max_epochs=max_epochs)
