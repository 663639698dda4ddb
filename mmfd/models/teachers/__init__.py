"""FD teachers: frozen feature extractors returning their final token map.

Configs name them through mmpretrain's registry, e.g.
``teacher=dict(type='CLIPTeacher', arch='ViT-B-16', checkpoint='ViT-B-16.pt',
allow_torchscript=True)`` or ``dict(type='ConvertedTeacher', checkpoint='x.safetensors')``.

One family is one module of this package (see :mod:`.base`): every module here is
imported below, so a new family file registers itself (in the registry and in
:data:`TEACHER_FAMILIES`) without a line elsewhere.
"""
import importlib
import pkgutil

from .base import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, TEACHER_FAMILIES, BaseTeacher,
                   TeacherOutput)
from .builder import build_converted_teacher, build_teacher, teacher_metadata
from .clip import CLIPTeacher
from .mmpretrain import MMPretrainTeacher
from .swin import EsViTTeacher, SwinTeacher
from .timm_teacher import TimmTeacher
from .vit import DeiTTeacher, DINOTeacher, ViTTeacher

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f'{__name__}.{_module.name}')

__all__ = [
    'BaseTeacher', 'TeacherOutput', 'CLIP_MEAN', 'CLIP_STD', 'IMAGENET_MEAN', 'IMAGENET_STD',
    'TEACHER_FAMILIES', 'CLIPTeacher', 'ViTTeacher', 'DINOTeacher', 'DeiTTeacher', 'SwinTeacher',
    'EsViTTeacher', 'MMPretrainTeacher', 'TimmTeacher', 'build_teacher', 'build_converted_teacher',
    'teacher_metadata'
]
