"""Layer-wise learning-rate decay for any model with a ``backbone``.

mmpretrain's ``LearningRateDecayOptimWrapperConstructor`` asks the *model* for
``get_layer_depth`` (an ``ImageClassifier`` forwards it to its backbone); mmdet
detectors and mmseg segmentors have no such method, mmseg's own constructor only
knows backbones named BEiT/MAE/ConvNeXt and mmdet has none for ViT. This one asks
``model.backbone.get_layer_depth(name, 'backbone.')`` (BEiTViT, VisionTransformer,
SwinTransformer have it) and falls back to the functions below for backbones that
lack it (mmpretrain's SwinTransformerV2). Parameters outside the backbone (necks,
heads) get the top depth, i.e. the full learning rate.

The scale of a parameter at depth ``i`` is ``layer_decay_rate ** (depth - 1 - i)``
with ``depth = num_blocks + 2`` (stem = 0, blocks 1..n, the rest n+1): the
BEiT/SimMIM rule the FD release fine-tunes with. Weight-decay options
(``norm_decay_mult``, ``bias_decay_mult``, ``flat_decay_mult``, ``custom_keys``)
are mmpretrain's.

Registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, so configs of every
scope (mmpretrain, mmdet, mmseg) find ``constructor='LayerDecayOptimWrapperConstructor'``.
"""
from typing import Callable, Tuple

from mmpretrain.engine.optimizers import LearningRateDecayOptimWrapperConstructor
from mmpretrain.models.backbones import SwinTransformerV2
from torch import nn

from mmfd.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmfd.utils.errors import ConfigError


def swin_v2_layer_depth(backbone: nn.Module, param_name: str, prefix: str = '') -> Tuple[int, int]:
    """Depth of a SwinTransformerV2 parameter, the SimMIM/FD-release rule.

    The release's Swin puts patch merging at the *end* of a stage
    (``layers.i.downsample`` -> depth of stage i's last block); mmpretrain's V2 puts
    it at the *start* of the next stage (``stages.i+1.downsample``), hence
    ``sum(depths[:i])`` here.
    """
    depths = list(backbone.depths)
    num_layers = sum(depths) + 2
    if not param_name.startswith(prefix):
        return num_layers - 1, num_layers
    name = param_name[len(prefix):]
    if name.startswith('patch_embed') or name in ('absolute_pos_embed', 'mask_token'):
        return 0, num_layers
    if name.startswith('stages.'):
        parts = name.split('.')
        stage = int(parts[1])
        if parts[2] == 'downsample':
            return sum(depths[:stage]), num_layers
        if parts[2] == 'blocks':
            return sum(depths[:stage]) + int(parts[3]) + 1, num_layers
    return num_layers - 1, num_layers


# Backbones without their own get_layer_depth (subclasses included, e.g. mmfd's
# FDSwinTransformerV2).
LAYER_DEPTH_FALLBACKS = {SwinTransformerV2: swin_v2_layer_depth}


def get_layer_depth_fn(model: nn.Module) -> Callable[[str], Tuple[int, int]]:
    """``name -> (depth, num_depths)`` for the parameters of ``model``."""
    backbone = getattr(model, 'backbone', None)
    if backbone is not None:
        method = getattr(backbone, 'get_layer_depth', None)
        if method is not None:
            return lambda name: method(name, 'backbone.')
        fallback = next(
            (fn for cls, fn in LAYER_DEPTH_FALLBACKS.items() if isinstance(backbone, cls)), None)
        if fallback is not None:
            return lambda name: fallback(backbone, name, 'backbone.')
        raise ConfigError(
            f'Layer-wise lr decay: the backbone {type(backbone).__name__} has no '
            '`get_layer_depth(name, prefix)` and no fallback in mmfd '
            '(LAYER_DEPTH_FALLBACKS). Add one, or use the DefaultOptimWrapperConstructor.')
    if hasattr(model, 'get_layer_depth'):
        return model.get_layer_depth
    raise ConfigError(f'Layer-wise lr decay needs a model with a `backbone`; '
                      f'{type(model).__name__} has none.')


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class LayerDecayOptimWrapperConstructor(LearningRateDecayOptimWrapperConstructor):
    """mmpretrain's layer-decay constructor made model-agnostic (see module doc).

    Example::

        optim_wrapper = dict(
            type='FDOptimWrapper', amp='auto',
            optimizer=dict(type='AdamW', lr=1e-4, weight_decay=0.1),
            constructor='LayerDecayOptimWrapperConstructor',
            paramwise_cfg=dict(layer_decay_rate=0.7, norm_decay_mult=0.,
                               bias_decay_mult=0., flat_decay_mult=0.))
    """

    def add_params(self, params, module, prefix='', get_layer_depth=None, **kwargs):
        if get_layer_depth is None and prefix == '':
            get_layer_depth = get_layer_depth_fn(module)
        super().add_params(params, module, prefix=prefix, get_layer_depth=get_layer_depth, **kwargs)
