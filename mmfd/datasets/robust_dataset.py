"""``RobustDataset``: a dataset wrapper that survives bad files and makes
augmentation reproducible.

    train_dataloader = dict(dataset=dict(
        type='RobustDataset', max_bad_samples=100,
        dataset=dict(type='ImageNet', data_root='data/imagenet', split='train',
                     pipeline=[dict(type='LoadImageFromFile'), ...])))

* Bad files. A sample whose loading raises :class:`BadSampleError` is logged once
  (path and reason), remembered, and replaced by another sample (a deterministic
  pseudo-random one; known-bad samples are never read again). When more than
  ``max_bad_samples`` distinct samples are bad the run stops with a
  :class:`DataError` listing them. The bookkeeping lives in shared memory, so the
  count and the "log once" hold across dataloader workers and epochs (per rank).
  ``LoadImageFromFile`` steps of the wrapped dataset's pipeline are upgraded to
  :class:`SafeLoadImageFromFile` (same arguments) so that truncated and corrupt
  images raise instead of being decoded into garbage or failing with an assert.
* Per-sample seeds. When ``AtomicCheckpointHook`` is used, every index arrives with
  a seed derived from (run seed, rank, epoch, position); the pipeline runs with
  python/numpy/torch seeded from it and the caller's random states are put back.
  Augmentations are then identical whichever worker loads the sample, with or
  without persistent workers, and after an exact resume.
"""
import copy
import logging
import multiprocessing as mp
from typing import Optional

import numpy as np
from mmengine.logging import print_log

from mmfd.engine.reliability.rng import sample_seed, seeded
from mmfd.registry import DATASETS
from .errors import BadSampleError, DataError

UPGRADES = {
    'LoadImageFromFile': 'SafeLoadImageFromFile',
    'mmcv.LoadImageFromFile': 'SafeLoadImageFromFile'
}


def upgrade_pipeline(dataset_cfg: dict) -> dict:
    """A copy of ``dataset_cfg`` whose LoadImageFromFile steps are the safe loader
    (nested ``dataset``/``datasets`` wrappers included)."""
    cfg = copy.deepcopy(dataset_cfg)
    for step in cfg.get('pipeline', None) or []:
        if isinstance(step, dict) and step.get('type') in UPGRADES:
            step['type'] = UPGRADES[step['type']]
    if isinstance(cfg.get('dataset'), dict):
        cfg['dataset'] = upgrade_pipeline(cfg['dataset'])
    if isinstance(cfg.get('datasets'), (list, tuple)):
        cfg['datasets'] = [upgrade_pipeline(d) for d in cfg['datasets']]
    return cfg


@DATASETS.register_module()
class RobustDataset:
    """Wraps a dataset: substitutes samples that fail to load, up to a limit, and
    seeds each sample's augmentation from the index's seed.

    Args:
        dataset (dict | Dataset): the dataset (config) to wrap.
        max_bad_samples (int): distinct bad samples tolerated per rank; one more
            stops the run with a DataError. Default 100.
        max_substitutes (int): samples tried in a row for one index. Default 16.
        upgrade_loader (bool): replace LoadImageFromFile by SafeLoadImageFromFile
            in the wrapped dataset config. Default True.
    """
    uses_sample_seeds = True

    def __init__(self,
                 dataset,
                 max_bad_samples: int = 100,
                 max_substitutes: int = 16,
                 upgrade_loader: bool = True):
        if isinstance(dataset, dict):
            dataset = DATASETS.build(upgrade_pipeline(dataset) if upgrade_loader else dataset)
        self.dataset = dataset
        if hasattr(dataset, 'full_init'):
            dataset.full_init()
        self.max_bad_samples = int(max_bad_samples)
        self.max_substitutes = int(max_substitutes)
        size = len(dataset)
        if size == 0:
            raise DataError(f'{type(dataset).__name__} is empty: no sample to train on.')
        # Shared with dataloader workers (created before they start).
        self._bad = mp.RawArray('B', size)
        self._lock = mp.Lock()

    # mmengine reads these from the train dataset (checkpoint meta, visualizer)
    @property
    def metainfo(self):
        return getattr(self.dataset, 'metainfo', {})

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):
        if name in ('dataset', '_bad', '_lock'):  # not set yet (unpickling)
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def bad_indices(self) -> np.ndarray:
        return np.flatnonzero(np.frombuffer(self._bad, dtype=np.uint8))

    def _substitute(self, index: int, attempt: int) -> int:
        return sample_seed(index, attempt, 0x5EED) % len(self)

    def __getitem__(self, index):
        seed = getattr(index, 'seed', None)
        index = int(index)
        candidate = index
        last_error: Optional[BadSampleError] = None
        for attempt in range(self.max_substitutes + 1):
            if attempt:
                candidate = self._substitute(index, attempt)
            if self._bad[candidate]:
                continue
            try:
                with seeded(None if seed is None else sample_seed(seed, attempt)):
                    return self.dataset[candidate]
            except BadSampleError as err:
                last_error = err
                self._record(candidate, err)
        raise DataError(
            f'No loadable sample found for index {index} after {self.max_substitutes + 1} '
            f'tries (last error: {last_error}); {len(self.bad_indices())} bad samples '
            'known so far.')

    def _record(self, index: int, err: BadSampleError) -> None:
        with self._lock:
            new = not self._bad[index]
            self._bad[index] = 1
        if not new:
            return
        count = len(self.bad_indices())
        if count > self.max_bad_samples:
            raise DataError(
                f'{count} unreadable samples, more than max_bad_samples='
                f'{self.max_bad_samples}. Latest: {err.path} ({err.reason}). Bad files '
                f'so far: {self._describe(self.bad_indices()[:10])}. Fix or remove them '
                '(and the annotation entries), or raise max_bad_samples.')
        print_log(
            f'Skipping unreadable sample {index}: {err.path}: {err.reason} '
            f'(replaced by another sample; {count}/{self.max_bad_samples} bad '
            'samples allowed).',
            logger='current',
            level=logging.WARNING)

    def _describe(self, indices) -> str:
        paths = []
        for i in indices:
            try:
                info = self.dataset.get_data_info(int(i))
                paths.append(str(info.get('img_path', i)))
            except Exception:
                paths.append(f'#{i}')
        return ', '.join(paths)
