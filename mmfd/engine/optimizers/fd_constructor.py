"""The FD schedule's optimizer-wrapper constructor: mmengine's default one, minus
the frozen teacher.

mmengine's ``DefaultOptimWrapperConstructor`` walks every parameter of the model
and logs one warning per parameter with ``requires_grad=False``: ~150 lines for a
CLIP-B teacher, ~400 for ViT-L, burying the lines a user needs. The teacher is
never optimised, so this constructor leaves it out of the walk (the optimizer is
the same) and says so in one INFO line.
"""
from contextlib import contextmanager

from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn

from mmfd.registry import OPTIM_WRAPPER_CONSTRUCTORS


@contextmanager
def _without_frozen_teacher(model: nn.Module):
    teacher = model._modules.get('teacher')
    if teacher is None or any(p.requires_grad for p in teacher.parameters()):
        yield
        return
    tensors = list(teacher.parameters())
    print_log(
        f'teacher: {len(tensors)} frozen parameter tensors '
        f'({sum(p.numel() for p in tensors):,} values), not optimised.',
        logger='current')
    del model._modules['teacher']
    try:
        yield
    finally:
        model._modules['teacher'] = teacher


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FDOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same options) that skips a frozen
    ``model.teacher``. Models without one are handled exactly as by the default."""

    def __call__(self, model: nn.Module):
        inner = model.module if hasattr(model, 'module') else model
        with _without_frozen_teacher(inner):
            return super().__call__(model)
