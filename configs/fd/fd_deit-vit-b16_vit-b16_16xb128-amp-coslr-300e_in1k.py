# FD: DeiT ViT-B/16 teacher (official deit_base_patch16_224-b5f2ef4d.pth) -> ViT-B/16.
_base_ = [
    '../_base_/models/fd_vit_base_p16.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'checkpoints/deit/deit_base_patch16_224-b5f2ef4d.pth'
model = dict(
    backbone=dict(drop_path_rate=0.3),
    teacher=dict(type='DeiTTeacher', arch='deit_base_patch16', checkpoint=teacher_checkpoint))
