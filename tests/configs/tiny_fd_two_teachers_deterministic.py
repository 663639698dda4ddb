# tiny_fd_two_teachers without randomness in the data or the student (as
# tiny_fd_deterministic): single-process and DDP runs must reach the same weights.
_base_ = ['./tiny_fd_two_teachers.py']
model = dict(backbone=dict(drop_path_rate=0.0))
train_pipeline = [
    dict(type='SafeLoadImageFromFile'),
    dict(type='Resize', scale=(64, 64)),
    dict(type='PackInputs'),
]
train_dataloader = dict(sampler=dict(shuffle=False), dataset=dict(pipeline=train_pipeline))
train_cfg = dict(max_iters=4)
