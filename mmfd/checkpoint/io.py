"""Reading checkpoint files from the internet without running their code.

Every function raises :class:`~mmfd.utils.errors.CheckpointError` naming the file
(and the keys) when something is wrong, so that a teacher can never silently keep
random weights.

* :func:`load_checkpoint_file`: path -> whatever the file holds (a dict), through
  ``torch.load(weights_only=True)`` or safetensors; TorchScript archives only on
  explicit opt-in.
* :func:`unwrap_state_dict`: finds the tensors inside the usual nestings
  (``teacher`` / ``state_dict`` / ``model`` / ``module``) and prefixes
  (``module.``, ``backbone.``).
* :func:`load_state_dict_strict`: loads it into a module, raising on any missing,
  unexpected or shape-mismatched key except the ones the caller declares unused.
"""
import argparse
import json
import os
import re
import zipfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from mmfd.utils.errors import CheckpointError

StateDict = Dict[str, torch.Tensor]

# Where checkpoints nest their weights, most preferred first.
NESTING_KEYS = ('state_dict', 'model', 'module')
# Self-distillation training files (DINO, EsViT) hold two networks side by side.
# Which one a teacher loads is its ``entry`` option: the FD release distils from
# EsViT's 'student' entry; DINO's official files are the EMA 'teacher'.
ENTRY_KEYS = ('teacher', 'student')
MAX_LISTED = 10

# Plain-data classes some official files pickle next to their tensors (DINO/DeiT
# full checkpoints keep their argparse namespace). Unpickling them runs no code.
_SAFE_EXTRA_GLOBALS = (argparse.Namespace, )


def _fmt_keys(keys: Sequence[str]) -> str:
    keys = list(keys)
    shown = ', '.join(keys[:MAX_LISTED])
    if len(keys) > MAX_LISTED:
        shown += f', ... and {len(keys) - MAX_LISTED} more'
    return shown


def is_torchscript_archive(path: str) -> bool:
    """True for a TorchScript (``torch.jit.save``) zip, e.g. OpenAI's CLIP ``.pt``."""
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    # Same criterion as torch.serialization._is_torchscript_zip: plain torch.save
    # archives never contain constants.pkl or compiled code.
    return any(name.endswith('/constants.pkl') or '/code/' in name for name in names)


def read_safetensors_metadata(path: str) -> Dict[str, str]:
    """The string metadata stored in a safetensors header ({} when none)."""
    from safetensors import safe_open
    try:
        with safe_open(path, framework='pt') as handle:
            return dict(handle.metadata() or {})
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f'Cannot read the safetensors header of {path}: {err}') from err


def _check_path(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(
            f'checkpoint must be a file path, got {type(path).__name__}: {path!r}')
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointError(f'Checkpoint file not found: {path}. mmfd never downloads weights: '
                              'download the file yourself and pass its local path.')
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint path is not a file: {path}')
    return path


def load_checkpoint_file(path, allow_torchscript: bool = False, map_location: str = 'cpu') -> dict:
    """Reads a checkpoint file safely and returns what it holds (a dict).

    ``.safetensors`` files go through safetensors; anything else through
    ``torch.load(weights_only=True)``, which refuses to rebuild arbitrary Python
    objects. A TorchScript archive is a program (its code runs when loaded), so it
    is read only when ``allow_torchscript=True``; the dict returned is then the
    archive's ``state_dict()``.
    """
    path = _check_path(path)
    if path.endswith('.safetensors'):
        from safetensors.torch import load_file
        try:
            return dict(load_file(path, device=map_location))
        except Exception as err:
            raise CheckpointError(
                f'Cannot read {path} as safetensors (corrupt or truncated file?): {err}') from err

    if is_torchscript_archive(path):
        if not allow_torchscript:
            raise CheckpointError(
                f'{path} is a TorchScript archive (e.g. an OpenAI CLIP .pt file). A '
                'TorchScript archive is a program, not just weights: loading it executes '
                'the code it contains, so mmfd refuses to load it by default. If you '
                'trust the file, pass allow_torchscript=True (teacher config option), or '
                'convert it once on a trusted machine with `python tools/convert_teacher.py '
                '--family clip --allow-torchscript IN.pt OUT.safetensors` and use the '
                'safetensors file.')
        try:
            module = torch.jit.load(path, map_location=map_location)
        except Exception as err:
            raise CheckpointError(f'Cannot load TorchScript archive {path}: {err}') from err
        return dict(module.state_dict())

    try:
        with torch.serialization.safe_globals(list(_SAFE_EXTRA_GLOBALS)):
            obj = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # pickle, zip and torch errors all mean "unreadable"
        message = str(err)
        if 'Weights only load failed' in message or 'Unsupported global' in message:
            found = re.search(r'Unsupported global: GLOBAL ([\w.]+)', message)
            what = f' ({found.group(1)})' if found else ''
            raise CheckpointError(
                f'{path} contains pickled Python objects besides tensors{what}. mmfd '
                'loads checkpoints with torch.load(weights_only=True) so that a file '
                'from the internet cannot run code. If you trust the file, extract the '
                'weights on a trusted machine (e.g. torch.save(torch.load(f, '
                'weights_only=False)["model"], "weights.pth")) or allow-list the class '
                'with torch.serialization.add_safe_globals.') from err
        raise CheckpointError(f'Cannot read checkpoint {path} (corrupt, truncated or not a PyTorch '
                              f'file?): {type(err).__name__}: {err}') from err
    if isinstance(obj, nn.Module):
        obj = obj.state_dict()
    if not isinstance(obj, dict):
        raise CheckpointError(f'{path} holds a {type(obj).__name__}, not a dict of weights.')
    return obj


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
            raise CheckpointError(
                f'{source}: cannot find the weights. Top-level keys: {_fmt_keys(sorted(obj))}; '
                f'expected a flat dict of tensors or one nested under '
                f'{list(ENTRY_KEYS) + list(nesting_keys)}' +
                (f' (non-tensor values next to tensors {_fmt_keys(tensors)})' if tensors else '') +
                '.')
        path.append(key)
        obj = obj[key]

    state_dict = dict(obj)
    for prefix in strip_prefixes:
        state_dict = {
            (k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in state_dict.items()
        }
    if select_prefix and any(k.startswith(select_prefix) for k in state_dict):
        state_dict = {
            k[len(select_prefix):]: v
            for k, v in state_dict.items() if k.startswith(select_prefix)
        }
    return state_dict


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


def _has_load_hooks(module: nn.Module) -> bool:
    return any(m._load_state_dict_pre_hooks for m in module.modules())


def load_state_dict_strict(module: nn.Module,
                           state_dict: StateDict,
                           source: str,
                           ignore: Iterable[str] = ()) -> List[str]:
    """Loads every weight of ``module`` from ``state_dict`` or raises.

    Keys matching a regex in ``ignore`` are dropped deliberately (classifier or
    projection heads the caller knows it does not need); any other extra key, any
    missing key and any shape mismatch raises a CheckpointError naming ``source``
    and the keys. Returns the dropped keys.
    """
    state_dict, dropped = drop_keys(state_dict, ignore)
    name = type(module).__name__
    expected = module.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mismatched = [
        f'{k}: checkpoint {tuple(v.shape)} vs model {tuple(expected[k].shape)}'
        for k, v in state_dict.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]

    if _has_load_hooks(module):
        # Load hooks (e.g. mmpretrain's position-embedding resizing, BEiT's shared
        # table) rename or reshape keys: only the load itself can tell what fits.
        try:
            result = module.load_state_dict(state_dict, strict=False)
        except RuntimeError as err:
            raise CheckpointError(f'Cannot load {source} into {name}: {err}') from err
        # A key the file has but a hook removed (SwinV2 drops its index and
        # coordinate tables to rebuild them) was handled on purpose.
        missing = [k for k in result.missing_keys if k not in state_dict]
        unexpected, mismatched = list(result.unexpected_keys), []

    problems = []
    if missing:
        problems.append(f'missing keys ({len(missing)}): {_fmt_keys(missing)}')
    if unexpected:
        problems.append(f'unexpected keys ({len(unexpected)}): {_fmt_keys(unexpected)}')
    if mismatched:
        problems.append(f'shape mismatch ({len(mismatched)}): {_fmt_keys(mismatched)}')
    if problems:
        raise CheckpointError(f'Cannot load {source} into {name}; it does not match the model '
                              f'(wrong arch/options or wrong file?):\n  ' + '\n  '.join(problems))
    if not _has_load_hooks(module):
        module.load_state_dict(state_dict, strict=True)
    return dropped


def save_safetensors(state_dict: StateDict, path: str, metadata: Optional[dict] = None) -> None:
    """Writes contiguous CPU copies of the tensors, with ``metadata`` as JSON strings."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in state_dict.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(tensors, path, metadata=meta)
