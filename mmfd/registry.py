"""The one rule for where mmfd registers what, so that every config finds it.

* Models (the FD algorithm, students, teachers, heads, necks) live in mmpretrain's
  ``MODELS``: an mmpretrain-scope config names them directly (``type='FDViT'``), an
  mmdet or mmseg config with the scope prefix (``type='mmpretrain.FDViT'``), as it
  does for mmpretrain's own backbones.
* Everything else (hooks, optimizer wrappers and their constructors, weight
  initialisers, datasets, data transforms) lives in mmengine's ROOT registries.
  Every toolbox's registry falls back to its root, so the same bare name
  (``type='DiagnosticsHook'``) resolves from mmpretrain, mmdet and mmseg configs.

``import mmfd`` registers everything; configs only need ``custom_imports=['mmfd']``.
"""
from mmengine.registry import (DATASETS, HOOKS, OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS,
                               TRANSFORMS, WEIGHT_INITIALIZERS)
from mmpretrain.registry import MODELS

__all__ = [
    'MODELS', 'HOOKS', 'OPTIM_WRAPPERS', 'OPTIM_WRAPPER_CONSTRUCTORS', 'WEIGHT_INITIALIZERS',
    'DATASETS', 'TRANSFORMS'
]
