"""Reading checkpoint files, local or remote, without running their code.

:func:`load_checkpoint_file` is the one reader of mmfd: teachers, ``StrictPretrained``,
the FD -> backbone converter, the resume check and the diagnostic tools all call it.
It raises :class:`~mmfd.utils.errors.CheckpointError` naming the file when something
is wrong, so that a model can never silently keep random weights.

* Where the bytes come from: a local path is read in place (torch files memory
  mapped); anything else (``http(s)://``, ``s3://``, petrel...) goes through
  ``mmengine.fileio`` with the caller's ``backend_args``, into memory.
* How they are decoded, whatever their origin: ``.safetensors`` through
  safetensors; anything else through ``torch.load(weights_only=True)``, which refuses
  to rebuild arbitrary Python objects. A TorchScript archive is a program (its code
  runs when loaded), so it is read only on explicit opt-in.
* A local directory is a sharded checkpoint of an FSDP2 run
  (:mod:`mmfd.engine.strategies.sharded_checkpoint`): its shards are reassembled in
  memory, so the converters and ``StrictPretrained`` read it like a DDP file.
"""
import argparse
import io
import json
import os
import re
import zipfile
from typing import Dict, Optional, Union
from urllib.parse import urlparse

import torch
from torch import nn

from mmfd.utils.errors import CheckpointError

# Plain-data classes some official files pickle next to their tensors (DINO/DeiT
# full checkpoints keep their argparse namespace). Unpickling them runs no code.
_SAFE_EXTRA_GLOBALS = (argparse.Namespace, )

Source = Union[str, io.BytesIO]


def is_torchscript_archive(source: Source) -> bool:
    """True for a TorchScript (``torch.jit.save``) zip, e.g. OpenAI's CLIP ``.pt``
    (a local path, or the bytes of a fetched file)."""
    try:
        if not zipfile.is_zipfile(source):
            return False
        with zipfile.ZipFile(source) as archive:
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    finally:
        if hasattr(source, 'seek'):
            source.seek(0)
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


def _check_name(path) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise CheckpointError(
            f'checkpoint must be a file path or URL, got {type(path).__name__}: {path!r}')
    return os.fspath(path)


def _file_backend(path: str, backend_args: Optional[dict]):
    from mmengine.fileio import get_file_backend
    try:
        return get_file_backend(path, backend_args=backend_args)
    except Exception as err:  # unknown backend name, missing client library...
        raise CheckpointError(f'Cannot read checkpoint {path}: no mmengine.fileio backend for it '
                              f'with backend_args={backend_args!r}: {err}') from err


def _is_local(backend) -> bool:
    from mmengine.fileio import LocalBackend
    return isinstance(backend, LocalBackend)


def _check_local(path: str) -> str:
    if not os.path.exists(path):
        raise CheckpointError(
            f'Checkpoint file not found: {path} (working directory: {os.getcwd()}). Give an '
            'existing local file, or a URL mmengine.fileio reads (http(s)://, s3://, with '
            'backend_args where the storage needs them).')
    if not os.path.isfile(path):
        raise CheckpointError(f'Checkpoint path is not a file: {path}')
    return path


def _fetch(backend, path: str) -> io.BytesIO:
    """The bytes of a remote file, in memory (never written to disk)."""
    try:
        data = backend.get(path)
    except Exception as err:  # urllib, boto, petrel: each has its own errors
        code = getattr(err, 'code', None) or getattr(err, 'status', None)
        what = f'{type(backend).__name__}: {type(err).__name__}: {err}'
        if code == 404 or isinstance(err, FileNotFoundError):
            raise CheckpointError(f'Checkpoint file not found: {path} ({what}).') from err
        raise CheckpointError(f'Cannot fetch checkpoint {path} ({what}).') from err
    return io.BytesIO(bytes(data))


def _name_of(path: str) -> str:
    """The file name part of a path or URL (no query string)."""
    return urlparse(path).path if '://' in path else path


def _read_safetensors(source: Source, path: str, map_location) -> dict:
    try:
        if isinstance(source, str):
            from safetensors.torch import load_file
            return dict(load_file(source, device=map_location))
        from safetensors.torch import load
        tensors = load(source.getvalue())
        return {k: v.to(map_location) for k, v in tensors.items()}
    except Exception as err:
        raise CheckpointError(
            f'Cannot read {path} as safetensors (corrupt or truncated file?): {err}') from err


def _read_torchscript(source: Source, path: str, map_location) -> dict:
    try:
        module = torch.jit.load(source, map_location=map_location)
    except Exception as err:
        raise CheckpointError(f'Cannot load TorchScript archive {path}: {err}') from err
    return dict(module.state_dict())


def _read_torch(source: Source, path: str, map_location) -> dict:
    # A local zip-format file is memory mapped: tensors are read when used, and
    # the file is never copied whole into memory (mmap needs the zip format).
    mmap = isinstance(source, str) and zipfile.is_zipfile(source)
    try:
        with torch.serialization.safe_globals(list(_SAFE_EXTRA_GLOBALS)):
            obj = torch.load(source, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # pickle, zip and torch errors all mean "unreadable"
        message = str(err)
        # weights_only reports bytes that are no pickle at all ("Unsupported
        # operand") in the same exception type as a forbidden object.
        not_pickle = 'Unsupported operand' in message
        if not not_pickle and ('Weights only load failed' in message
                               or 'Unsupported global' in message):
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


def load_checkpoint_file(path,
                         allow_torchscript: bool = False,
                         map_location: str = 'cpu',
                         backend_args: Optional[dict] = None) -> dict:
    """Reads a checkpoint safely and returns what it holds (a dict).

    ``path`` is a local file or any URL ``mmengine.fileio`` reads; ``backend_args``
    selects and configures the storage backend as everywhere in OpenMMLab (e.g.
    ``dict(backend='petrel', path_mapping=...)``). ``.safetensors`` files go through
    safetensors; anything else through ``torch.load(weights_only=True)``. A
    TorchScript archive is read only when ``allow_torchscript=True``; the dict
    returned is then the archive's ``state_dict()``.
    """
    path = _check_name(path)
    backend = _file_backend(path, backend_args)
    if _is_local(backend) and os.path.isdir(path):
        return _read_sharded(path)
    source: Source = _check_local(path) if _is_local(backend) else _fetch(backend, path)

    if _name_of(path).endswith('.safetensors'):
        return _read_safetensors(source, path, map_location)
    if is_torchscript_archive(source):
        if not allow_torchscript:
            raise CheckpointError(
                f'{path} is a TorchScript archive (e.g. an OpenAI CLIP .pt file). A '
                'TorchScript archive is a program, not just weights: loading it executes '
                'the code it contains, so mmfd refuses to load it by default. If you '
                'trust the file, pass allow_torchscript=True (teacher config option), or '
                'convert it once on a trusted machine with '
                '`python tools/model_converters/convert_teacher.py '
                '--family clip --allow-torchscript IN.pt OUT.safetensors` and use the '
                'safetensors file.')
        return _read_torchscript(source, path, map_location)
    return _read_torch(source, path, map_location)


def _read_sharded(path: str) -> dict:
    """A sharded (FSDP2) checkpoint directory, reassembled in this process: what its
    consolidated single file would hold, without the optimizer state."""
    from mmfd.engine.strategies.sharded_checkpoint import read_sharded_checkpoint
    return read_sharded_checkpoint(path)


def save_safetensors(state_dict: Dict[str, torch.Tensor],
                     path: str,
                     metadata: Optional[dict] = None) -> None:
    """Writes contiguous CPU copies of the tensors, with ``metadata`` as JSON strings."""
    from safetensors.torch import save_file
    tensors = {k: v.detach().to('cpu').contiguous().clone() for k, v in state_dict.items()}
    meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(tensors, path, metadata=meta)
