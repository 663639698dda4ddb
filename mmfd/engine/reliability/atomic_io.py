"""Crash-safe checkpoint files: atomic writes and a "newest complete checkpoint" search.

A checkpoint is written to a hidden temporary file in its own directory, flushed and
fsynced, then ``os.replace``d onto its final name (atomic on POSIX and Windows), and
the directory is fsynced so the rename itself survives a power cut. A kill at any
moment leaves either the previous file or the new complete one, never a prefix.
"""
import os
import os.path as osp
import re
import shutil
import uuid
import zipfile
from typing import Iterable, List, Optional, Tuple

from mmengine.fileio.backends import LocalBackend, register_backend

from mmfd.checkpoint.io import load_checkpoint_file
from mmfd.utils.errors import CheckpointError

ATOMIC_BACKEND = 'mmfd_atomic_local'
TMP_MARK = '.tmp-'


def temp_path_for(path: str) -> str:
    """A unique hidden sibling of ``path``: ``dir/.name.tmp-<pid>-<random>``."""
    directory, name = osp.split(path)
    return osp.join(directory, f'.{name}{TMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}')


def is_temp_file(name: str) -> bool:
    return name.startswith('.') and TMP_MARK in name


def fsync_dir(directory: str) -> None:
    """Persist a rename: fsync the directory entry (a no-op where unsupported)."""
    try:
        fd = os.open(directory or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str, data: bytes, writer=None) -> None:
    """Write ``data`` to ``path`` so that readers only ever see a complete file.

    ``writer(f, data)`` writes the bytes (tests pass a slow one to kill mid-write).
    The temporary file is created with mode 0o666 & ~umask, like ``open(path, 'wb')``.
    """
    directory = osp.dirname(osp.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = temp_path_for(path)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, 'wb') as f:
            (writer or _write_all)(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.remove(tmp)
        except OSError:
            pass
        raise
    fsync_dir(directory)


def _write_all(f, data: bytes) -> None:
    f.write(data)


class AtomicLocalBackend(LocalBackend):
    """mmengine's local file backend with atomic ``put`` / ``put_text``.

    Selected with ``backend_args=dict(backend='mmfd_atomic_local')``; everything
    else (``get``, ``exists``, ``remove``, ``join_path``...) is the local backend's.
    """

    def _write(self, f, data: bytes) -> None:
        f.write(data)

    def put(self, obj: bytes, filepath) -> None:
        atomic_write(str(filepath), obj, writer=self._write)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


register_backend(ATOMIC_BACKEND, AtomicLocalBackend, force=True)


def remove_stale_temp_files(directory: str) -> List[str]:
    """Deletes temporary files (and sharded-checkpoint directories) left by writers
    that were killed; returns their names."""
    removed = []
    if not osp.isdir(directory):
        return removed
    for name in os.listdir(directory):
        if is_temp_file(name):
            path = osp.join(directory, name)
            try:
                if osp.isdir(path):
                    shutil.rmtree(path)
                else:
                    os.remove(path)
                removed.append(name)
            except OSError:
                pass
    return removed


def verify_checkpoint(path: str) -> Optional[str]:
    """None when ``path`` is a complete, loadable mmengine checkpoint, else why not.

    Checks the zip structure and every record's CRC (torch's format is an
    uncompressed zip), then reads it with mmfd's one checkpoint reader
    (``weights_only=True``, memory mapped: no tensor data is copied) and looks for
    ``meta`` and ``state_dict``. A directory is a sharded (FSDP2) checkpoint: its
    ``COMPLETE`` marker and the files it lists are checked.
    """
    if osp.isdir(path):
        from mmfd.engine.strategies.sharded_checkpoint import verify_sharded_checkpoint
        return verify_sharded_checkpoint(path)
    if not osp.isfile(path):
        return 'file does not exist'
    if osp.getsize(path) == 0:
        return 'file is empty'
    with open(path, 'rb') as f:
        magic = f.read(4)
    try:
        if magic == b'PK\x03\x04' and not zipfile.is_zipfile(path):
            return 'truncated or corrupt (no zip central directory)'
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                bad = archive.testzip()
            if bad is not None:
                return f'corrupt record {bad} (CRC mismatch)'
    except Exception as err:  # a damaged zip directory raises many kinds of errors
        first_line = str(err).splitlines()[0] if str(err) else ''
        return f'{type(err).__name__}: {first_line}'.strip()
    try:
        checkpoint = load_checkpoint_file(path)
    except CheckpointError as err:  # truncated pickles, unsafe globals...
        return str(err).splitlines()[0]
    if not isinstance(checkpoint, dict) or not {'meta', 'state_dict'} <= set(checkpoint):
        return 'not an mmengine checkpoint (no "meta"/"state_dict")'
    return None


def _step_pattern(filename_tmpl: str):
    head, _, tail = filename_tmpl.partition('{}')
    return re.compile(re.escape(head) + r'(\d+)' + re.escape(tail) + r'$')


def checkpoint_candidates(directory: str,
                          filename_tmpl: str,
                          last_checkpoint: Optional[str] = None) -> List[str]:
    """Checkpoints of ``directory`` named like ``filename_tmpl``, newest first.

    Newest = highest step number, then latest mtime; the file named in
    ``last_checkpoint`` comes first when it is among the newest.
    """
    pattern = _step_pattern(filename_tmpl)
    found = {}
    if osp.isdir(directory):
        for name in os.listdir(directory):
            match = pattern.match(name)
            if match and not is_temp_file(name):
                path = osp.join(directory, name)
                found[osp.abspath(path)] = (int(match.group(1)), _mtime(path))
    if last_checkpoint:
        path = osp.abspath(last_checkpoint)
        match = pattern.match(osp.basename(path))
        step = int(match.group(1)) if match else -1
        # Ties with a same-step file elsewhere go to the one last_checkpoint names.
        found[path] = (step, float('inf') if step >= 0 else _mtime(path))
    return sorted(found, key=lambda p: found[p], reverse=True)


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


def read_last_checkpoint(work_dir: str) -> Optional[str]:
    """The path recorded in ``work_dir/last_checkpoint`` (mmengine's pointer file)."""
    pointer = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(pointer):
        return None
    with open(pointer) as f:
        return f.read().strip() or None


def find_resumable_checkpoint(
        candidates: Iterable[str]) -> Tuple[Optional[str], List[Tuple[str, str]]]:
    """(the first complete checkpoint of ``candidates``, [(skipped path, why)])."""
    skipped = []
    for path in candidates:
        problem = verify_checkpoint(path)
        if problem is None:
            return path, skipped
        skipped.append((path, problem))
    return None, skipped
