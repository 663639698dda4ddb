# FD: DINO ViT-B/16 teacher (official dino_vitbase16_pretrain.pth) -> ViT-B/16 student.
_base_ = [
    '../_base_/models/fd_vit_base_p16.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'checkpoints/dino/dino_vitbase16_pretrain.pth'
model = dict(
    backbone=dict(drop_path_rate=0.3),
    teacher=dict(type='DINOTeacher', arch='dino_vitb16', checkpoint=teacher_checkpoint))
