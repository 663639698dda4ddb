# FD: CLIP ViT-L/14 teacher -> ViT-L/14 student (both 16x16 + CLS at 224; drop path 0.3).
_base_ = [
    '../_base_/models/fd_vit_large_p14.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'checkpoints/clip/ViT-L-14.safetensors'
model = dict(
    backbone=dict(drop_path_rate=0.3, with_cp=False),  # with_cp=True saves memory
    teacher=dict(type='CLIPTeacher', arch='ViT-L-14-quickgelu', checkpoint=teacher_checkpoint))
