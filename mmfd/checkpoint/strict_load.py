"""Loading a state dict into a module so that nothing can be left random unnoticed.

:func:`check_and_load` is the only strict loader in mmfd (teachers, ``StrictPretrained``
and the diagnostic tools call it): every model key must come from the file, every
file key must find a place, and shapes must agree, except for the keys a caller
declares. Problems are reported together, in :mod:`mmfd.checkpoint.report`'s format.
"""
import re
from typing import Iterable, List, Optional, Tuple

from torch import nn

from mmfd.utils.errors import CheckpointError
from .report import LoadReport, common_prefix_hint, format_load_error, shape_text
from .unwrap import StateDict, drop_keys

# Buffers every backbone rebuilds from its own geometry: never worth a failure for
# an initialiser (a downstream model may use other window sizes than the file).
DERIVED_BUFFERS = (r'relative_position_index$', r'relative_coords_table$')

# torch's wording of a size mismatch inside load_state_dict (raised even with
# strict=False); parsed to report it in mmfd's format.
_TORCH_SIZE_MISMATCH = re.compile(r'size mismatch for ([^:\s]+): copying a param with shape '
                                  r'torch\.Size\(\[([^\]]*)\]\) from checkpoint, the shape in '
                                  r'current model is torch\.Size\(\[([^\]]*)\]\)')


def _has_load_hooks(module: nn.Module) -> bool:
    return any(m._load_state_dict_pre_hooks for m in module.modules())


def _matches(patterns, key: str) -> bool:
    return any(p.search(key) for p in patterns)


def _shape(text: str) -> Tuple[int, ...]:
    return tuple(int(d) for d in text.split(',') if d.strip())


def _load_through_hooks(module: nn.Module, state_dict: StateDict, source: str,
                        report: LoadReport) -> Tuple[List[str], List[str]]:
    """Load hooks (mmpretrain's position-table resizing, BEiT's shared table,
    SwinV2's index buffers, FD's teacher) rename or reshape keys: only the load
    itself can tell what fits. Returns (missing, unexpected)."""
    name = type(module).__name__
    try:
        result = module.load_state_dict(state_dict, strict=False)
    except NotImplementedError as err:  # a RuntimeError subclass: caught first
        # BEiTViT's hook resizes tables of another grid with scipy's interp2d,
        # which SciPy >= 1.14 removed.
        raise CheckpointError(
            f'{source} was converted for another patch grid than {name} uses, and '
            f'resizing at load time is not available here ({err}). Convert the FD '
            'checkpoint for this input size: tools/model_converters/convert_fd_checkpoint.py ... '
            '--img-size N (N = the backbone img_size), or load the FD checkpoint '
            "itself with init_cfg=dict(type='StrictPretrained', convert='fd_vit', ...), "
            'which converts for the backbone\'s own grid.') from err
    except RuntimeError as err:  # shape mismatches are raised even when non-strict
        report.mismatched = [
            shape_text(key, _shape(file_shape), _shape(model_shape))
            for key, file_shape, model_shape in _TORCH_SIZE_MISMATCH.findall(str(err))
        ]
        if not report.mismatched:
            raise CheckpointError(f'{source} does not fit {name}: {err}') from err
        return [], []
    # A key the file has but a hook removed (SwinV2 drops its index and coordinate
    # tables to rebuild them) was handled on purpose.
    missing = [k for k in result.missing_keys if k not in state_dict]
    return missing, list(result.unexpected_keys)


def check_and_load(module: nn.Module,
                   state_dict: StateDict,
                   source: str,
                   ignore: Iterable[str] = (),
                   ignore_missing: Iterable[str] = (),
                   ignore_unexpected: Iterable[str] = (),
                   rebuilt_buffers: Iterable[str] = (),
                   min_loaded: float = 0.0,
                   consequence: Optional[str] = None,
                   prefix_option: Optional[str] = None) -> LoadReport:
    """Loads ``state_dict`` into ``module``; raises CheckpointError unless it fits.

    Args:
        source: what the weights came from (the file, and its prefix), named in
            every message.
        ignore: regexes of file keys dropped before loading (heads the caller knows
            it does not need).
        ignore_missing / ignore_unexpected: regexes of model keys allowed to stay as
            initialised / file keys allowed to go unused (logged by the caller).
        rebuilt_buffers: regexes of buffers the model derives from its geometry;
            missing or unused, they are no problem.
        min_loaded: fraction of the module's parameter elements that must come from
            the file.
        consequence / prefix_option: what failing means for the caller, and the
            name of its prefix option (for the hint when the file nests the module).

    Returns the :class:`LoadReport` (``report.dropped``: the keys ``ignore`` removed).
    """
    state_dict, dropped = drop_keys(state_dict, ignore)
    expected = module.state_dict()
    report = LoadReport(
        source=str(source),
        target=type(module).__name__,
        file_keys=list(state_dict),
        model_keys=list(expected),
        dropped=dropped)

    hooks = _has_load_hooks(module)
    if hooks:
        missing, unexpected = _load_through_hooks(module, state_dict, source, report)
    else:
        missing = [k for k in expected if k not in state_dict]
        unexpected = [k for k in state_dict if k not in expected]
        report.mismatched = [
            shape_text(k, v.shape, expected[k].shape) for k, v in state_dict.items()
            if k in expected and tuple(v.shape) != tuple(expected[k].shape)
        ]

    derived = [re.compile(p) for p in rebuilt_buffers]
    report.rebuilt = [k for k in missing if _matches(derived, k)]
    report.missing = [k for k in missing if not _matches(derived, k)]
    report.unexpected = [k for k in unexpected if not _matches(derived, k)]
    allowed_missing = [re.compile(p) for p in ignore_missing]
    allowed_unexpected = [re.compile(p) for p in ignore_unexpected]
    report.bad_missing = [k for k in report.missing if not _matches(allowed_missing, k)]
    report.bad_unexpected = [k for k in report.unexpected if not _matches(allowed_unexpected, k)]

    not_loaded = set(missing)
    report.loaded = [k for k in expected if k not in not_loaded]
    params = dict(module.named_parameters())
    report.total_params = sum(p.numel() for p in params.values())
    report.loaded_params = sum(p.numel() for k, p in params.items() if k not in not_loaded)

    problems = []
    if report.total_params and report.loaded_params == 0 and not report.mismatched:
        problems.append('no parameter of the model was found in the file')
    elif report.fraction < min_loaded:
        problems.append(f'only {report.fraction:.1%} of the parameters were loaded '
                        f'(min_loaded={min_loaded:.0%})')
    if problems or report.key_problems():
        hint = None
        if prefix_option and report.loaded_params == 0:
            hint = common_prefix_hint(report.unexpected, prefix_option)
        raise CheckpointError(format_load_error(report, problems, consequence, hint))

    if not hooks:
        # Everything was checked above; declared-unused keys stay out of the module.
        module.load_state_dict({k: v for k, v in state_dict.items() if k in expected}, strict=False)
    return report


def load_state_dict_strict(module: nn.Module,
                           state_dict: StateDict,
                           source: str,
                           ignore: Iterable[str] = ()) -> List[str]:
    """:func:`check_and_load` with only file keys to drop; returns the dropped keys
    (the teachers' call)."""
    return check_and_load(module, state_dict, source, ignore=ignore).dropped
