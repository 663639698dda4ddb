# FD: CLIP ViT-B/16 teacher -> ViT-B/16 student (release: drop path 0.2, 300 epochs). Teacher
# file: OpenAI's ViT-B-16.pt is a TorchScript archive (code): convert it once on a trusted machine
# with tools/model_converters/convert_teacher.py, or set allow_torchscript=True.
_base_ = [
    '../_base_/models/fd_vit_base_p16.py',
    '../_base_/datasets/imagenet_fd.py',
    '../_base_/schedules/fd_300e.py',
    '../_base_/default_runtime.py',
]
teacher_checkpoint = 'checkpoints/clip/ViT-B-16.safetensors'
model = dict(
    backbone=dict(drop_path_rate=0.2),
    teacher=dict(type='CLIPTeacher', arch='ViT-B-16-quickgelu', checkpoint=teacher_checkpoint))
