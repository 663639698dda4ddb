"""A checkpoint into a module, the whole way: read -> unwrap -> select the prefix (or
convert an FD checkpoint) -> strict load. What ``StrictPretrained`` runs; each step
is the shared one of :mod:`mmfd.checkpoint`."""
from typing import Optional, Sequence

from torch import nn

from mmfd.utils.errors import ConfigError
from .fd_to_backbone import fd_to_module
from .io import load_checkpoint_file
from .report import LoadReport
from .strict_load import DERIVED_BUFFERS, check_and_load
from .unwrap import StateDict, select_prefix, unwrap_state_dict

PREFIX_HINT = ('Use the prefix the file was written with '
               '(tools/model_converters/convert_fd_checkpoint.py '
               'writes "backbone." for --target mmpretrain and no prefix for mmdet/mmseg), '
               "or load the FD checkpoint itself with convert='fd_vit' / 'fd_swinv2'.")


def describe(checkpoint, prefix: Optional[str] = None, convert: Optional[str] = None) -> str:
    """How messages name the weights: the file, then how they were taken from it."""
    how = [f'prefix {prefix!r}'] if prefix else []
    how += [f'convert={convert!r}'] if convert else []
    return f'{checkpoint}' + (f' ({", ".join(how)})' if how else '')


def check_options(prefix: Optional[str], convert: Optional[str], img_size: Optional[int]) -> None:
    if img_size is not None and convert is None:
        raise ConfigError("StrictPretrained: img_size is an option of convert='fd_vit' (the "
                          'FD checkpoint converted for this input size); a backbone '
                          'checkpoint is loaded as it is.')
    if convert is not None and prefix not in (None, 'backbone.'):
        raise ConfigError(f'StrictPretrained: prefix={prefix!r} with convert={convert!r}: an '
                          'FD checkpoint holds the student under "backbone.", which convert '
                          'takes; drop prefix.')


def read_module_state(module: nn.Module,
                      checkpoint,
                      prefix: Optional[str] = None,
                      convert: Optional[str] = None,
                      img_size: Optional[int] = None,
                      backend_args: Optional[dict] = None,
                      map_location: str = 'cpu') -> StateDict:
    """The state dict ``checkpoint`` holds for ``module`` (not loaded yet)."""
    check_options(prefix, convert, img_size)
    obj = load_checkpoint_file(checkpoint, map_location=map_location, backend_args=backend_args)
    if convert is not None:
        state_dict, _ = fd_to_module(obj, str(checkpoint), convert, module, img_size)
        return state_dict
    state_dict = unwrap_state_dict(obj, source=str(checkpoint))
    if prefix:
        prefix = prefix if prefix.endswith('.') else prefix + '.'
        state_dict = select_prefix(state_dict, prefix, str(checkpoint), hint=PREFIX_HINT)
    return state_dict


def load_pretrained(module: nn.Module,
                    checkpoint,
                    prefix: Optional[str] = None,
                    convert: Optional[str] = None,
                    img_size: Optional[int] = None,
                    ignore_missing: Sequence[str] = (),
                    ignore_unexpected: Sequence[str] = (),
                    min_loaded: float = 0.5,
                    backend_args: Optional[dict] = None,
                    map_location: str = 'cpu',
                    consequence: Optional[str] = None) -> LoadReport:
    """Reads ``checkpoint`` and strictly loads it into ``module`` (see
    :func:`~mmfd.checkpoint.strict_load.check_and_load`); index/coordinate buffers
    the model derives from its geometry never fail the load."""
    state_dict = read_module_state(module, checkpoint, prefix, convert, img_size, backend_args,
                                   map_location)
    return check_and_load(
        module,
        state_dict,
        describe(checkpoint, prefix, convert),
        ignore_missing=ignore_missing,
        ignore_unexpected=ignore_unexpected,
        rebuilt_buffers=DERIVED_BUFFERS,
        min_loaded=min_loaded,
        consequence=consequence,
        prefix_option=None if convert else 'prefix')
