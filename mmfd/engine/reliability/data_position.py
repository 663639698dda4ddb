"""Putting the data stream of a resumed run exactly where the checkpoint left it.

mmengine's IterBasedTrainLoop skips already-trained batches by LOADING them (every
image since iteration 0, decoded and augmented, then thrown away; the
augmentations consume the random streams) and its EpochBasedTrainLoop restarts a
half-done epoch from its first batch. Here the sampler itself is advanced (index
arithmetic only, no image is read) and the saved random states are put back at the
point where the uninterrupted run captured them:

* ``PositionSampler`` wraps the train sampler inside the DataLoader's
  BatchSampler. It can drop the first N indices of its next pass and run a callback
  when that pass starts, and it tags each index with a per-sample seed
  (``SeededIndex``) for datasets that ask for one (``uses_sample_seeds``, set by
  :func:`mmfd.datasets.install_sample_seeds` on a plain mmengine dataset, whose
  pipeline then runs seeded), so augmentation is a function of (seed, rank, epoch,
  position): the same in any dataloader worker, with or without persistent workers.
* ``ResumedInfiniteIterator`` replaces IterBasedTrainLoop's dataloader iterator:
  it answers the loop's own skip calls without loading anything.
* ``ResumedEpochLoader`` stands in for the EpochBasedTrainLoop's dataloader for the
  first (partial) epoch only.

DataLoader iterators draw their base seed from the global torch generator when
they are created, so the random states are restored before that draw when the
uninterrupted run created its iterator after the checkpoint (at an epoch start),
and after it otherwise (mid-epoch, persistent workers).
"""
import itertools
import logging
from typing import Callable, Optional

from mmengine.dataset import InfiniteSampler
from mmengine.logging import print_log
from torch.utils.data import BatchSampler, DataLoader

from .rng import sample_seed


class SeededIndex(int):
    """A dataset index that carries the seed of its sample's augmentation."""

    def __new__(cls, value: int, seed: int):
        obj = super().__new__(cls, value)
        obj.seed = seed
        return obj

    def __reduce__(self):  # keep the seed when sent to a dataloader worker
        return SeededIndex, (int(self), self.seed)


class PositionSampler:
    """Wraps a sampler: optional skip of the next pass's first indices, a callback at
    the start of that pass, and per-sample seeds. Attributes not defined here
    (``epoch``, ``set_epoch``, ``seed``...) are the wrapped sampler's."""

    def __init__(self, sampler, base_seed: int, rank: int, tag_seeds: bool):
        self.sampler = sampler
        self.base_seed = int(base_seed)
        self.rank = int(rank)
        self.tag_seeds = tag_seeds
        self._skip = 0
        self._on_start: Optional[Callable[[], None]] = None

    def skip_next_pass(self, num_indices: int, on_start: Optional[Callable] = None):
        self._skip, self._on_start = int(num_indices), on_start

    def __iter__(self):
        skip, self._skip = self._skip, 0
        on_start, self._on_start = self._on_start, None
        epoch = int(getattr(self.sampler, 'epoch', 0))
        indices = iter(self.sampler)
        if skip:
            indices = itertools.islice(indices, skip, None)
        if on_start is not None:
            on_start()
        for position, index in enumerate(indices, start=skip):
            if self.tag_seeds:
                yield SeededIndex(index, sample_seed(self.base_seed, self.rank, epoch, position))
            else:
                yield index

    def __len__(self):
        return len(self.sampler)

    def __getattr__(self, name):
        if name == 'sampler':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.sampler, name)


def install_position_sampler(loader: DataLoader, base_seed: int,
                             rank: int) -> Optional[PositionSampler]:
    """Puts a PositionSampler between ``loader``'s BatchSampler and its sampler.

    Returns None (and changes nothing) for loaders without a plain BatchSampler
    (custom batch samplers, iterable datasets)."""
    batch_sampler = getattr(loader, 'batch_sampler', None)
    if type(batch_sampler) is not BatchSampler:
        return None
    if isinstance(batch_sampler.sampler, PositionSampler):
        return batch_sampler.sampler
    tag = bool(getattr(loader.dataset, 'uses_sample_seeds', False))
    proxy = PositionSampler(batch_sampler.sampler, base_seed, rank, tag)
    batch_sampler.sampler = proxy
    return proxy


def _recreate_first(loader: DataLoader, offset_batches: int) -> bool:
    """Whether the uninterrupted run had created the iterator serving the next batch
    before the checkpoint was taken (so the base-seed draw precedes the restore)."""
    return offset_batches > 0 or (loader.num_workers > 0 and loader.persistent_workers)


class ResumedInfiniteIterator:
    """Stands in for IterBasedTrainLoop's ``_InfiniteDataloaderIterator`` after a
    resume: the loop's ``start_iter`` skip calls return None without loading data;
    the first real call positions the sampler and restores the random states."""

    def __init__(self, inner, proxy: PositionSampler, start_iter: int, restore: Callable[[], None]):
        self._inner = inner  # mmengine's iterator: keeps _dataloader, _iterator, _epoch
        self._proxy = proxy
        self._pending_skips = start_iter
        self._start_iter = start_iter
        self._restore = restore
        self._positioned = False

    def __iter__(self):
        return self

    def __next__(self):
        if self._pending_skips > 0:
            self._pending_skips -= 1
            return None
        if not self._positioned:
            self._positioned = True
            self._position()
        return next(self._inner)

    def _position(self):
        loader = self._inner._dataloader
        batch_size = loader.batch_sampler.batch_size
        if isinstance(self._proxy.sampler, InfiniteSampler):
            epoch, offset = 0, self._start_iter
        else:
            epoch, offset = divmod(self._start_iter, len(loader))
        if hasattr(self._proxy.sampler, 'set_epoch'):
            self._proxy.sampler.set_epoch(epoch)
        self._inner._epoch = epoch
        old = getattr(self._inner, '_iterator', None)
        self._inner._iterator = None
        del old  # non-persistent workers of the stale iterator shut down here
        if _recreate_first(loader, offset):
            self._proxy.skip_next_pass(offset * batch_size, on_start=self._restore)
            self._inner._iterator = iter(loader)
        else:
            self._restore()
            self._proxy.skip_next_pass(0)
            self._inner._iterator = iter(loader)
        print_log(
            f'Resumed data position: dataloader epoch {epoch}, batch {offset} '
            f'(sampler advanced by {offset * batch_size} indices, no data read).',
            logger='current')


class ResumedEpochLoader:
    """EpochBasedTrainLoop's ``dataloader`` for the first epoch after a mid-epoch
    resume: its ``__iter__`` starts at batch ``offset`` and hands the loop back the
    real DataLoader for every later epoch."""

    def __init__(self, loop, proxy: PositionSampler, offset: int, restore: Callable[[], None]):
        self._loop = loop
        self._loader = loop.dataloader
        self._proxy = proxy
        self._offset = offset
        self._restore = restore

    def __iter__(self):
        loader = self._loader
        self._loop.dataloader = loader
        if self._offset >= len(loader):  # checkpoint after the epoch's last batch
            if loader.num_workers > 0 and loader.persistent_workers:
                iter(loader)  # the uninterrupted run's workers already exist
            self._restore()
            return iter(())
        batch_size = loader.batch_sampler.batch_size
        if _recreate_first(loader, self._offset):
            self._proxy.skip_next_pass(self._offset * batch_size, on_start=self._restore)
        else:
            self._restore()
        print_log(
            f'Resumed data position: epoch {self._loop.epoch}, batch '
            f'{self._offset} (no data read to get there).',
            logger='current')
        return iter(loader)

    def __len__(self):
        return len(self._loader)

    def __getattr__(self, name):
        if name == '_loader':
            raise AttributeError(name)
        return getattr(self._loader, name)


def warn(msg: str) -> None:
    print_log(msg, logger='current', level=logging.WARNING)
