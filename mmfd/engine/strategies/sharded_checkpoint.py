"""Sharded checkpoints of :class:`FSDP2Strategy`: one directory per save.

Layout of ``work_dir/iter_8.pth/`` (a directory where DDP writes a file, so that
``last_checkpoint``, ``max_keep_ckpts`` and ``--resume`` treat both alike)::

    .metadata, __0_0.distcp, __1_0.distcp   model + optimizer shards, written by
                                            torch.distributed.checkpoint (DCP)
    extra.pth                               meta, message hub, schedulers, random
                                            states (rank 0; weights_only-loadable)
    COMPLETE                                JSON: world size, every file and size

Atomicity: every rank writes into a hidden ``.iter_8.pth.tmp-*`` sibling; after a
barrier rank 0 writes ``extra.pth`` and ``COMPLETE`` (fsynced), then renames the
directory onto its final name. A kill at any moment leaves the previous checkpoint
as the newest complete one; a directory without a valid ``COMPLETE`` is never
resumed from. The frozen teacher is not part of the state (the FD model drops it
from its ``state_dict``), so it is never written.

DCP stores tensors with their global shapes and offsets, so a checkpoint saved by N
ranks loads into M ranks (resharded on load) and into one process
(:func:`consolidate`).
"""
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Optional, Tuple

import torch

from mmfd.utils.errors import CheckpointError

EXTRA_FILE = 'extra.pth'
MARKER_FILE = 'COMPLETE'
FORMAT = 'mmfd-fsdp2-dcp-v1'


def is_sharded_checkpoint(path) -> bool:
    return osp.isdir(str(path))


def write_marker(directory: str, world_size: int) -> None:
    """``COMPLETE``: what a finished save holds (checked before every resume)."""
    files = {
        name: osp.getsize(osp.join(directory, name))
        for name in sorted(os.listdir(directory)) if name != MARKER_FILE
    }
    data = json.dumps(dict(format=FORMAT, world_size=world_size, files=files), indent=1)
    with open(osp.join(directory, MARKER_FILE), 'w') as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_marker(directory: str) -> dict:
    with open(osp.join(directory, MARKER_FILE)) as f:
        return json.load(f)


def verify_sharded_checkpoint(directory: str) -> Optional[str]:
    """None when ``directory`` is a complete sharded checkpoint, else why not."""
    if not osp.isdir(directory):
        return 'directory does not exist'
    if not osp.isfile(osp.join(directory, MARKER_FILE)):
        return (f'no {MARKER_FILE} marker (the save was interrupted, or this is not '
                'an FSDP2 checkpoint)')
    try:
        marker = read_marker(directory)
    except (OSError, ValueError) as err:
        return f'unreadable {MARKER_FILE} marker ({err})'
    if marker.get('format') != FORMAT:
        return f'unknown sharded format {marker.get("format")!r} (expected {FORMAT})'
    for name, size in marker.get('files', {}).items():
        path = osp.join(directory, name)
        if not osp.isfile(path):
            return f'{name} is missing'
        if osp.getsize(path) != size:
            return f'{name} has {osp.getsize(path)} bytes, {size} were written'
    for needed in ('.metadata', EXTRA_FILE):
        if needed not in marker.get('files', {}):
            return f'{needed} was not written'
    return None


def check_sharded_checkpoint(directory: str) -> dict:
    """The marker of a complete checkpoint; a CheckpointError naming it otherwise."""
    problem = verify_sharded_checkpoint(directory)
    if problem is not None:
        raise CheckpointError(f'Cannot load the sharded checkpoint {directory}: {problem}.')
    return read_marker(directory)


def commit(tmp_dir: str, final_dir: str) -> None:
    """Rank 0, after every shard is written: the rename that publishes a save.

    A directory cannot be ``os.replace``d onto a non-empty one, so an existing
    checkpoint of the same name is first moved aside (still complete, under a
    temporary name that the next start cleans up), then removed."""
    parent = osp.dirname(osp.abspath(final_dir))
    old = None
    if osp.exists(final_dir):
        old = tempfile.mkdtemp(prefix=f'.{osp.basename(final_dir)}.tmp-old-', dir=parent)
        os.rmdir(old)
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    from mmfd.engine.reliability.atomic_io import fsync_dir
    fsync_dir(parent)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_extra(directory: str) -> dict:
    from mmfd.checkpoint.io import load_checkpoint_file
    return load_checkpoint_file(osp.join(directory, EXTRA_FILE))


def read_full_state(directory: str) -> Tuple[dict, dict]:
    """(model state, optimizer state) as full tensors, in this one process.

    Goes through DCP's own DCP -> torch.save converter into a temporary file, read
    back with ``weights_only=True``."""
    from torch.distributed.checkpoint.format_utils import dcp_to_torch_save
    with tempfile.TemporaryDirectory() as tmp:
        out = osp.join(tmp, 'full.pth')
        dcp_to_torch_save(directory, out)
        state = torch.load(out, map_location='cpu', weights_only=True)
    return state.get('state_dict', {}), state.get('optimizer', {})


def read_sharded_checkpoint(directory: str, with_optimizer: bool = False) -> dict:
    """A complete sharded checkpoint reassembled in this process, as the single file
    DDP would have saved (``meta``, ``state_dict``, ``message_hub``...); the
    optimizer state only on request. A CheckpointError names what is missing."""
    marker = check_sharded_checkpoint(directory)
    model_state, optim_state = read_full_state(directory)
    checkpoint = dict(load_extra(directory))
    checkpoint['state_dict'] = model_state
    if with_optimizer:
        # DCP's optimizer layout (keyed by parameter name), not torch's per-index
        # one: a sharded run reads it back through load_from/resume, not torch.
        checkpoint['optimizer'] = optim_state
    checkpoint.setdefault('meta', {})['consolidated_from'] = dict(
        path=osp.abspath(directory), world_size=marker['world_size'])
    return checkpoint


def consolidate(directory: str, out_file: str, with_optimizer: bool = False) -> dict:
    """Writes :func:`read_sharded_checkpoint` as one file, readable by
    ``tools/model_converters/convert_fd_checkpoint.py``, ``load_from`` and the downstream
    configs."""
    import io

    from mmfd.engine.reliability.atomic_io import atomic_write
    checkpoint = read_sharded_checkpoint(directory, with_optimizer)
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    atomic_write(out_file, buffer.getvalue())
    return checkpoint
