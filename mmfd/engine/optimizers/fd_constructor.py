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
    """Takes the frozen ``teacher`` (or ``teachers``) module out of the model while
    the optimizer is built, and puts it back."""
    removed = {}
    for key in ('teacher', 'teachers'):
        module = model._modules.get(key)
        if module is not None and not any(p.requires_grad for p in module.parameters()):
            removed[key] = module
    if removed:
        tensors = [p for module in removed.values() for p in module.parameters()]
        print_log(
            f'{" + ".join(removed)}: {len(tensors)} frozen parameter tensors '
            f'({sum(p.numel() for p in tensors):,} values), not optimised.',
            logger='current')
    for key in removed:
        del model._modules[key]
    try:
        yield
    finally:
        model._modules.update(removed)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class FDOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """``DefaultOptimWrapperConstructor`` (same options) that skips the frozen
    ``model.teacher`` / ``model.teachers``. Models without one are handled exactly
    as by the default."""

    def __call__(self, model: nn.Module):
        inner = model.module if hasattr(model, 'module') else model
        with _without_frozen_teacher(inner):
            return super().__call__(model)
