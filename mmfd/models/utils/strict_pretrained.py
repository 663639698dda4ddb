"""``StrictPretrained``: mmengine's ``Pretrained`` init that cannot fail silently.

mmengine's ``PretrainedInit`` loads with ``strict=False``: a wrong file, a wrong
``prefix`` or a renamed module leaves the backbone random, and training goes on
from scratch with only a warning in a long log. Downstream fine-tuning of a
distilled backbone must not do that. ``StrictPretrained`` (registered in mmengine's
root ``WEIGHT_INITIALIZERS``, so every scope finds it: mmpretrain, mmdet, mmseg):

* reads ``.pth`` (``torch.load(weights_only=True)``) and ``.safetensors`` files;
* keeps the keys under ``prefix`` (``'backbone.'``), or all keys without one;
* logs what was loaded, what is missing and what is unexpected;
* raises :class:`~mmfd.utils.errors.CheckpointError`, naming the file and keys, when
  any key is missing or unexpected other than those declared in ``ignore_missing``
  / ``ignore_unexpected`` (regexes: the new parts of the downstream model, and the
  parts of the pre-trained one the recipe drops), on any shape mismatch, and when
  less than ``min_loaded`` of the module's parameters came from the file;
* keeps mmengine's order: submodules run their own ``init_weights`` first and the
  checkpoint is loaded last, as ``Pretrained`` does (mmengine special-cases only the
  literal ``'Pretrained'`` type, so this initializer runs the children itself).

Usage, on the backbone::

    init_cfg=dict(type='StrictPretrained', checkpoint='fd_vitb_mmpretrain.pth',
                  prefix='backbone.', ignore_missing=[r'^ln2\\.'],
                  ignore_unexpected=[r'^ln1\\.'])

Caveat: a backbone class whose own ``init_weights`` re-initialises parameters
unless ``init_cfg['type'] == 'Pretrained'`` (mmfd's ``FDViT`` does) would overwrite
the loaded weights afterwards; the downstream configs use mmpretrain's ``BEiTViT``
and ``SwinTransformerV2``, which do not.
"""
import logging
import re
from typing import Iterable, List, Optional, Sequence

import torch
from mmengine.logging import print_log
from mmengine.model import BaseModule
from mmengine.model.weight_init import update_init_info
from torch import nn

from mmfd.checkpoint.io import load_checkpoint_file
from mmfd.registry import WEIGHT_INITIALIZERS
from mmfd.utils.errors import CheckpointError
from .init_checks import PRETRAINED_INITS  # noqa: F401  (re-exported)

# Buffers every backbone rebuilds from its own geometry: never worth a failure.
DERIVED_BUFFERS = (r'relative_position_index$', r'relative_coords_table$')
MAX_LISTED = 12


def _fmt(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    return shown + (f', ... ({len(keys) - MAX_LISTED} more)' if len(keys) > MAX_LISTED else '')


def read_state_dict(checkpoint: str,
                    prefix: Optional[str] = None,
                    map_location: str = 'cpu') -> dict:
    """The flat ``{name: tensor}`` dict of ``checkpoint`` under ``prefix``."""
    obj = load_checkpoint_file(checkpoint, map_location=map_location)
    state = obj
    for key in ('state_dict', 'model'):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise CheckpointError(f'{checkpoint}: holds no state dict.')
    state = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith('module.') for k in state):
        state = {k[len('module.'):]: v for k, v in state.items()}
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        selected = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        if not selected:
            raise CheckpointError(
                f'{checkpoint}: no key starts with prefix {prefix!r}, so nothing would '
                f'be loaded. Keys look like: {_fmt(sorted(state)[:5])}. Use the '
                'prefix the file was written with (tools/convert_fd_checkpoint.py '
                'writes "backbone." for --target mmpretrain and no prefix for '
                'mmdet/mmseg).')
        state = selected
    return state


def strict_load(module: nn.Module,
                state_dict: dict,
                source: str,
                ignore_missing: Iterable[str] = (),
                ignore_unexpected: Iterable[str] = (),
                min_loaded: float = 0.5,
                logger='current') -> dict:
    """Loads ``state_dict`` into ``module``; raises CheckpointError unless it fits.

    Returns ``dict(loaded=[...], missing=[...], unexpected=[...])``.
    """
    name = type(module).__name__
    state_dict = dict(state_dict)
    # torch's load_state_dict runs the module's load hooks (BEiTViT expands a
    # shared table / resizes tables, SwinV2 drops index buffers), then reports.
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except NotImplementedError as err:  # a RuntimeError subclass: first
        # BEiTViT's hook resizes tables of another grid with scipy's interp2d,
        # which SciPy >= 1.14 removed.
        raise CheckpointError(
            f'{source} was converted for another patch grid than {name} uses, and '
            f'resizing at load time is not available here ({err}). Convert the FD '
            'checkpoint for this input size: tools/convert_fd_checkpoint.py ... '
            '--img-size N (N = the backbone img_size).') from err
    except RuntimeError as err:  # shape mismatches are raised even when non-strict
        raise CheckpointError(f'{source} does not fit {name} (wrong arch, patch or window size?): '
                              f'{err}') from err
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)

    derived = [re.compile(p) for p in DERIVED_BUFFERS]
    rebuilt = [k for k in missing if any(p.search(k) for p in derived)]
    missing = [k for k in missing if k not in set(rebuilt)]
    unexpected = [k for k in unexpected if not any(p.search(k) for p in derived)]
    ignore_missing = [re.compile(p) for p in ignore_missing]
    ignore_unexpected = [re.compile(p) for p in ignore_unexpected]
    bad_missing = [k for k in missing if not any(p.search(k) for p in ignore_missing)]
    bad_unexpected = [k for k in unexpected if not any(p.search(k) for p in ignore_unexpected)]

    params = dict(module.named_parameters())
    missing_set = set(missing) | set(rebuilt)
    loaded = [k for k in module.state_dict() if k not in missing_set]
    total = sum(p.numel() for p in params.values())
    got = sum(p.numel() for k, p in params.items() if k not in missing_set)
    fraction = got / total if total else 1.0

    print_log(
        f'StrictPretrained: {name} <- {source}: loaded {len(loaded)} tensors '
        f'({fraction:.1%} of {total} parameters).',
        logger=logger)
    if rebuilt:
        print_log(
            f'StrictPretrained: {len(rebuilt)} index/coordinate buffers '
            'rebuilt by the model from its own geometry, not loaded.',
            logger=logger)
    if missing:
        print_log(
            f'StrictPretrained: missing keys (left as initialised) '
            f'({len(missing)}): {_fmt(missing)}',
            logger=logger,
            level=logging.WARNING if bad_missing else logging.INFO)
    if unexpected:
        print_log(
            f'StrictPretrained: unexpected keys (not used) ({len(unexpected)}): '
            f'{_fmt(unexpected)}',
            logger=logger,
            level=logging.WARNING if bad_unexpected else logging.INFO)

    problems = []
    if not loaded or got == 0:
        problems.append('no parameter of the model was found in the file')
    elif fraction < min_loaded:
        problems.append(f'only {fraction:.1%} of the parameters were loaded '
                        f'(min_loaded={min_loaded:.0%})')
    if bad_missing:
        problems.append(f'missing keys ({len(bad_missing)}): {_fmt(bad_missing)}')
    if bad_unexpected:
        problems.append(f'unexpected keys ({len(bad_unexpected)}): {_fmt(bad_unexpected)}')
    if problems and not loaded:
        prefixes = sorted({k.split('.', 1)[0] + '.' for k in unexpected if '.' in k})
        if len(prefixes) == 1:
            problems.append(f'every file key starts with {prefixes[0]!r}: set '
                            f'prefix={prefixes[0]!r}')
    if problems:
        raise CheckpointError(f'StrictPretrained: {source} does not initialise {name}; refusing to '
                              'train from (partly) random weights:\n  ' + '\n  '.join(problems) +
                              f'\n  file keys look like: {_fmt(sorted(state_dict)[:5])}'
                              f'\n  model keys look like: {_fmt(list(module.state_dict())[:5])}'
                              '\n  Check the checkpoint path, the prefix and the backbone arch, or '
                              'declare keys that are meant to differ in ignore_missing / '
                              'ignore_unexpected.')
    return dict(loaded=loaded, missing=missing, unexpected=unexpected)


@WEIGHT_INITIALIZERS.register_module(name='StrictPretrained')
class StrictPretrainedInit:
    """Initialise a module from a checkpoint, failing loudly (see module doc).

    Args:
        checkpoint (str): local ``.pth`` / ``.safetensors`` file.
        prefix (str, optional): keep only keys under this prefix, stripped
            (``'backbone.'`` for mmpretrain-style files).
        ignore_missing / ignore_unexpected (list[str]): regexes of keys allowed
            to be missing from the file / unused by the model.
        min_loaded (float): fraction of the module's parameter elements that must
            come from the file. Defaults to 0.5.
        map_location (str): Defaults to 'cpu'.
    """

    def __init__(self,
                 checkpoint: str,
                 prefix: Optional[str] = None,
                 ignore_missing: Sequence[str] = (),
                 ignore_unexpected: Sequence[str] = (),
                 min_loaded: float = 0.5,
                 map_location: str = 'cpu'):
        self.checkpoint = checkpoint
        self.prefix = prefix
        self.ignore_missing = list(ignore_missing)
        self.ignore_unexpected = list(ignore_unexpected)
        self.min_loaded = min_loaded
        self.map_location = map_location

    @staticmethod
    def _init_children(module: nn.Module) -> None:
        """What BaseModule.init_weights would do after us: run it before loading so
        that it cannot overwrite the loaded weights (mmengine's order for
        'Pretrained'). Children are then marked initialised and skipped."""
        for child in module.children():
            if hasattr(child, 'init_weights') and not getattr(child, 'is_init', False):
                child.init_weights()
                if not isinstance(child, BaseModule):
                    child.is_init = True

    def __call__(self, module: nn.Module) -> None:
        self._init_children(module)
        where = f'{self.checkpoint}' + (f' (prefix {self.prefix!r})' if self.prefix else '')
        print_log(f'StrictPretrained: load {type(module).__name__} from {where}', logger='current')
        state_dict = read_state_dict(self.checkpoint, self.prefix, self.map_location)
        strict_load(module, state_dict, where, self.ignore_missing, self.ignore_unexpected,
                    self.min_loaded)
        if hasattr(module, '_params_init_info'):
            update_init_info(module, init_info=f'StrictPretrained: load from {where}')


__all__: List[str] = ['StrictPretrainedInit', 'strict_load', 'read_state_dict']
