# tiny_fd without randomness in the data (fixed resize, no shuffle) or the student
# (no drop path): single-process and DDP runs must then reach the same weights.
_base_ = ['./tiny_fd.py']
model = dict(backbone=dict(drop_path_rate=0.0))
train_pipeline = [
    dict(type='SafeLoadImageFromFile'),  # as the FD base: per-sample seeds
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(sampler=dict(shuffle=False), dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_iters=4)
