"""Finding the weights inside what a checkpoint file holds.

* :func:`unwrap_state_dict`: the flat ``{name: tensor}`` dict inside the usual
  nestings (``teacher`` / ``student`` / ``state_dict`` / ``model`` / ``module``),
  without DDP's ``module.`` prefix, optionally narrowed to one prefix.
* :func:`select_prefix`: the keys under a prefix, with the prefix removed.
* :func:`drop_keys`: the keys a caller does not want, removed by regex.
"""
import re
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from mmfd.utils.errors import CheckpointError
from .report import format_keys

StateDict = Dict[str, torch.Tensor]

# Where checkpoints nest their weights, most preferred first.
NESTING_KEYS = ('state_dict', 'model', 'module')
# Self-distillation training files (DINO, EsViT) hold two networks side by side.
# Which one a teacher loads is its ``entry`` option: the FD release distils from
# EsViT's 'student' entry; DINO's official files are the EMA 'teacher'.
ENTRY_KEYS = ('teacher', 'student')


def _is_flat_state_dict(obj) -> bool:
    return (isinstance(obj, dict) and len(obj) > 0
            and all(isinstance(v, torch.Tensor) for v in obj.values()))


def _pick_entry(obj: dict, entry: str, strict: bool, source: str) -> Optional[str]:
    """Which of the 'teacher' / 'student' entries of ``obj`` to descend into."""
    present = [k for k in ENTRY_KEYS if isinstance(obj.get(k), dict)]
    if not present:
        return None
    if entry in present:
        chosen = entry
    elif strict:
        raise CheckpointError(f'{source}: entry={entry!r} was asked for, but the file holds only '
                              f'{present}. Set the teacher option entry={present[0]!r} to load it.')
    else:
        chosen = present[0]
    from mmengine.logging import print_log
    print_log(
        f'{source}: loading the {chosen!r} entry (the file holds {present}).', logger='current')
    return chosen


def select_prefix(state_dict: StateDict,
                  prefix: str,
                  source: str,
                  required: bool = True,
                  hint: str = '') -> StateDict:
    """The keys starting with ``prefix``, without it.

    Without any such key: the dict unchanged when not ``required``, else a
    CheckpointError naming ``source`` and what its keys look like (plus ``hint``).
    """
    selected = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    if selected:
        return selected
    if not required:
        return state_dict
    raise CheckpointError(f'{source}: no key starts with prefix {prefix!r}, so nothing would '
                          f'be loaded. Keys look like: {format_keys(sorted(state_dict)[:5])}.' +
                          (f' {hint}' if hint else ''))


def unwrap_state_dict(obj: dict,
                      source: str = 'checkpoint',
                      nesting_keys: Sequence[str] = NESTING_KEYS,
                      strip_prefixes: Sequence[str] = ('module.', ),
                      select_prefix: Optional[str] = None,
                      entry: str = 'teacher',
                      strict_entry: bool = False) -> StateDict:
    """Finds the flat ``{name: tensor}`` dict inside a checkpoint.

    1. Descends until the dict holds only tensors: into the ``entry`` network
       ('teacher' or 'student') of a self-distillation file that holds them (the
       other one when only that exists, unless ``strict_entry``; the choice is
       logged), else into the first of ``nesting_keys`` present.
    2. Removes each of ``strip_prefixes`` from the keys that carry it (DDP's
       ``module.``).
    3. If ``select_prefix`` (e.g. ``'backbone.'``) starts any key, keeps only those
       keys, without the prefix: the rest of the file (heads, necks, the text tower
       of CLIP...) belongs to other modules and is dropped on purpose. Without any
       such key the dict is returned as is.
    """
    path = []
    while not _is_flat_state_dict(obj):
        if not isinstance(obj, dict):
            raise CheckpointError(
                f'{source}: expected a dict of tensors under {"/".join(path) or "the top level"}, '
                f'found {type(obj).__name__}.')
        key = _pick_entry(obj, entry, strict_entry, source) or next(
            (k for k in nesting_keys if isinstance(obj.get(k), dict)), None)
        if key is None:
            tensors = [k for k, v in obj.items() if isinstance(v, torch.Tensor)]
            mixed = ''
            if tensors:
                mixed = f' (non-tensor values next to tensors {format_keys(tensors)})'
            raise CheckpointError(
                f'{source}: cannot find the weights. Top-level keys: {format_keys(sorted(obj))}; '
                f'expected a flat dict of tensors or one nested under '
                f'{list(ENTRY_KEYS) + list(nesting_keys)}{mixed}.')
        path.append(key)
        obj = obj[key]

    state_dict = dict(obj)
    for prefix in strip_prefixes:
        state_dict = {
            (k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in state_dict.items()
        }
    if select_prefix:
        state_dict = _select(state_dict, select_prefix, source, required=False)
    return state_dict


# unwrap_state_dict's argument shadows the function inside it.
_select = select_prefix


def drop_keys(state_dict: StateDict, patterns: Iterable[str]) -> Tuple[StateDict, List[str]]:
    """Removes keys matching any regex in ``patterns``; returns (kept, dropped)."""
    regexes = [re.compile(p) for p in patterns]
    kept, dropped = {}, []
    for key, value in state_dict.items():
        if any(r.search(key) for r in regexes):
            dropped.append(key)
        else:
            kept[key] = value
    return kept, dropped
