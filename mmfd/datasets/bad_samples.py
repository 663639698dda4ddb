"""``BadSampleLedger``: the distinct unreadable files met so far, shared by the
process that built the dataset and all its dataloader workers.

Every worker is a separate process with its own copy of the pipeline, so a plain
counter or set would count (and log) a bad file once per worker and never see the
total. The ledger lives in shared memory created when the loading transform is
built, i.e. in the main process while the dataset is built, before any worker
starts: forked workers inherit it and spawned ones receive it while they are
started (``multiprocessing`` pickles shared arrays only then). Each training rank
builds its own dataset, so the count is per rank.

Files are identified by a stable 64-bit hash of their path (python's ``hash`` is
salted per process, which spawned workers would not share). The table holds
``max_bad_samples + 1`` entries: the one past the limit is recorded too, so the
error can list it.
"""
import hashlib
import logging
import multiprocessing as mp
from typing import List, Optional, Tuple

import numpy as np
from mmengine.logging import print_log

from .errors import BadSampleError, DataError

NAMES_KEPT = 10  # paths kept for the error message (the table keeps all hashes)
NAME_BYTES = 1024
NO_INDEX = -1


def path_key(path) -> int:
    """A stable non-zero 64-bit key of a path (0 marks an empty slot)."""
    key = int.from_bytes(hashlib.blake2b(str(path).encode(), digest_size=8).digest(), 'little')
    return key or 1


class BadSampleLedger:
    """Shared record of distinct bad files: logs each one once, raises a DataError
    when there are more than ``max_bad_samples``.

    Args:
        max_bad_samples (int): distinct bad files tolerated; one more is fatal.
        option (str): how the user sets the limit, for the messages.
    """

    def __init__(self, max_bad_samples: int, option: str = 'max_bad_samples'):
        if int(max_bad_samples) < 0:
            raise ValueError(f'{option} must be >= 0, got {max_bad_samples}')
        self.max_bad_samples = int(max_bad_samples)
        self.option = option
        capacity = self.max_bad_samples + 1
        self._keys = mp.RawArray('Q', capacity)
        self._indices = mp.RawArray('q', capacity)
        self._names = mp.RawArray('c', NAMES_KEPT * NAME_BYTES)
        self._count = mp.RawValue('q', 0)
        # A lock of the spawn context: inherited by forked workers and picklable to
        # spawned ones (one made in the fork context refuses the latter).
        self._lock = mp.get_context('spawn').Lock()

    def __deepcopy__(self, memo):
        # One shared record per loader: a copied pipeline counts with the original
        # (and shared memory cannot be deep-copied anyway).
        return self

    # ------------------------------------------------------------------ reading
    @property
    def count(self) -> int:
        return int(self._count.value)

    def _table(self) -> np.ndarray:
        return np.frombuffer(self._keys, dtype=np.uint64)[:min(self.count, len(self._keys))]

    def is_known(self, path) -> bool:
        """Whether ``path`` was already found bad (by any worker): no need to read it.
        Lock-free: a race only means the file is read once more."""
        return self.count > 0 and bool((self._table() == np.uint64(path_key(path))).any())

    def indices(self) -> np.ndarray:
        """Dataset indices of the bad files (-1 where unknown), in order found."""
        n = min(self.count, len(self._indices))
        return np.frombuffer(self._indices, dtype=np.int64)[:n].copy()

    def names(self) -> List[str]:
        """Paths of the first bad files found (at most NAMES_KEPT)."""
        raw = bytes(self._names)
        return [
            raw[i * NAME_BYTES:(i + 1) * NAME_BYTES].split(b'\0', 1)[0].decode(errors='replace')
            for i in range(min(self.count, NAMES_KEPT))
        ]

    # ------------------------------------------------------------------ recording
    def record(self, err: BadSampleError, index: Optional[int] = None) -> None:
        """Adds a bad file; logs it the first time (any worker), raises a DataError
        when this makes more than ``max_bad_samples``."""
        new, count = self._add(err.path, index)
        if not new:
            return
        if count > self.max_bad_samples:
            listed = self.names()
            more = f' and {count - len(listed)} more' if count > len(listed) else ''
            raise DataError(
                f'{count} unreadable samples, more than {self.option}={self.max_bad_samples}. '
                f'Latest: {err.path} ({err.reason}). Bad files so far: {", ".join(listed)}'
                f'{more}. Fix or remove them (and their annotation entries), or raise '
                f'{self.option} of SafeLoadImageFromFile in the train pipeline.')
        where = '' if index is None else f' {int(index)}'
        print_log(
            f'Skipping unreadable sample{where}: {err.path}: {err.reason} (replaced by '
            f'another sample; {count}/{self.max_bad_samples} bad samples allowed).',
            logger='current',
            level=logging.WARNING)

    def _add(self, path, index: Optional[int]) -> Tuple[bool, int]:
        key = path_key(path)
        with self._lock:
            count = self.count
            if (self._table() == np.uint64(key)).any():
                return False, count
            if count < len(self._keys):  # full only after the fatal one
                self._keys[count] = key
                self._indices[count] = NO_INDEX if index is None else int(index)
            if count < NAMES_KEPT:
                name = str(path).encode()[:NAME_BYTES - 1]
                start = count * NAME_BYTES
                self._names[start:start + len(name) + 1] = name + b'\0'
            self._count.value = count + 1
            return True, count + 1
