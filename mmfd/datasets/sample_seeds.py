"""Per-sample augmentation seeds for a plain mmengine dataset (no wrapper).

Exact resume with dataloader workers needs each sample's random crop and flip to
depend on the sample, not on the worker that happens to load it or on how many
samples that worker loaded before. ``PositionSampler`` (mmfd.engine.reliability.
data_position) tags every index with a seed (``SeededIndex``, an int carrying
``.seed``); mmengine's ``BaseDataset.get_data_info`` stores the index, as given,
in ``results['sample_idx']``, so the seed reaches the pipeline. ``SeededPipeline``
replaces a dataset instance's ``pipeline`` and runs it seeded from that seed:

* The caller's python/numpy/torch-CPU random states are put back after the
  sample, so the main process (``num_workers=0``: drop path uses the global torch
  generator) draws exactly what it would without the data.
* A bad file makes the pipeline return None and mmengine refetch: it draws the
  substitute index with ``np.random.randint`` (``_rand_another``) and calls the
  pipeline again with that plain index. After a None the numpy global state is
  seeded from (sample seed, attempt), so the substitute is the same in every
  worker and after a resume; the refetched sample's seed is derived from the same
  pair. A refetch is recognised as "the next call after a None" (mmengine's loop
  is synchronous within a process). The caller's states saved before the first
  attempt are the ones put back.
* When ``max_refetch`` substitutes fail too, a :class:`DataError` says so
  (mmengine's own message names no file).

Untagged indices (no ``.seed``) run the pipeline unseeded, as mmengine does.
"""
from typing import Optional

import numpy as np
from mmengine.dataset import BaseDataset

from mmfd.engine.reliability.rng import (cpu_rng_states, sample_seed, seed_cpu_rngs,
                                         set_cpu_rng_states)
from .errors import DataError

SUBSTITUTE_SALT = 0x5EED  # numpy state for mmengine's choice of the substitute


class _Attempts:
    """One index's fetch: the first attempt and its refetches."""

    def __init__(self, index, seed: Optional[int], saved: Optional[tuple]):
        self.index, self.seed, self.saved, self.number = index, seed, saved, 0

    def restore(self) -> None:
        if self.saved is not None:
            set_cpu_rng_states(self.saved)


class SeededPipeline:
    """Runs ``pipeline`` seeded from ``results['sample_idx'].seed`` (see module doc).

    Args:
        pipeline (callable): the dataset's pipeline (mmengine ``Compose``).
        max_refetch (int): the dataset's ``max_refetch`` (substitutes tried).
    """

    def __init__(self, pipeline, max_refetch: int):
        self.pipeline = pipeline
        self.max_refetch = int(max_refetch)
        self._pending: Optional[_Attempts] = None  # set between a None and its refetch

    def __call__(self, results: dict) -> Optional[dict]:
        index = results.get('sample_idx')
        seed = getattr(index, 'seed', None)
        fetch, self._pending = self._pending, None
        if fetch is None or seed is not None:  # a new index (not a refetch)
            if fetch is not None:  # stale (should not happen): give its states back
                fetch.restore()
            fetch = _Attempts(index, seed, cpu_rng_states() if seed is not None else None)
        else:
            fetch.number += 1
        if index is not None:  # downstream (PackInputs' metainfo) gets a plain int
            results['sample_idx'] = int(index)
        if fetch.seed is not None:
            seed_cpu_rngs(sample_seed(fetch.seed, fetch.number))
        try:
            data = self.pipeline(results)
        except BaseException:
            fetch.restore()
            raise
        if data is not None:
            fetch.restore()
            return data
        if fetch.number >= self.max_refetch:
            fetch.restore()
            raise DataError(
                f'No loadable sample found for index {fetch.index} after '
                f'{fetch.number + 1} tries: the pipeline returned None each time (unreadable '
                'images, see the "Skipping unreadable sample" warnings, or a transform that '
                f'drops samples). Fix the data, or raise the dataset\'s max_refetch '
                f'(now {self.max_refetch}).')
        if fetch.seed is not None:  # mmengine's _rand_another draws from this
            np.random.seed(sample_seed(fetch.seed, fetch.number, SUBSTITUTE_SALT))
        self._pending = fetch
        return None

    def __getattr__(self, name):  # Compose's attributes (``transforms``...)
        if name == 'pipeline':  # not set yet (unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.pipeline, name)

    def __repr__(self) -> str:
        return f'SeededPipeline({self.pipeline!r})'


SAFE_LOADERS = ('SafeLoadImageFromFile', )


def uses_safe_loader(dataset) -> bool:
    """Whether the dataset's pipeline reads images with mmfd's safe loader (the FD
    dataset base does): such datasets opt into per-sample seeds by default."""
    pipeline = getattr(dataset, 'pipeline', None)
    if isinstance(pipeline, SeededPipeline):
        return True
    from mmfd.datasets.loading import SafeLoadImageFromFile
    return any(isinstance(t, SafeLoadImageFromFile) for t in getattr(pipeline, 'transforms', []))


def install_sample_seeds(dataset, mode='auto') -> bool:
    """Makes ``dataset`` (an instance) run its pipeline seeded per sample, and
    marks it ``uses_sample_seeds`` so that PositionSampler tags its indices.

    ``mode``: True (always), False (never: mmengine's unseeded pipeline), or
    ``'auto'``: when the pipeline uses ``SafeLoadImageFromFile`` (the FD dataset
    base). Other pipelines (e.g. the fine-tunes') then draw from the global random
    streams exactly as they do without mmfd.

    Only an mmengine ``BaseDataset`` passes the index it is given to its pipeline;
    dataset wrappers (Concat/Repeat/ClassBalanced...) turn it into a plain int on
    the way. Returns whether seeds will reach the pipeline."""
    if not isinstance(dataset, BaseDataset):
        return False
    if mode == 'auto':
        mode = uses_safe_loader(dataset)
    if not mode:
        return False
    if not isinstance(dataset.pipeline, SeededPipeline):
        dataset.pipeline = SeededPipeline(dataset.pipeline, dataset.max_refetch)
    dataset.uses_sample_seeds = True
    return True
