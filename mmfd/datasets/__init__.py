"""Data that does not kill a long run, with mmengine's own datasets (no wrapper).

* ``SafeLoadImageFromFile`` (transform, mmengine's root TRANSFORMS): returns None
  for a bad image, which mmengine's ``BaseDataset`` replaces (``max_refetch``); logs
  each bad file once and stops past ``max_bad_samples`` (shared by all workers).
* ``install_sample_seeds``: per-sample augmentation seeds on a dataset instance
  (used by ``AtomicCheckpointHook`` for exact resume).
* ``RobustDataset``: deprecated name, builds the dataset it used to wrap.
"""
from .bad_samples import BadSampleLedger
from .errors import BadSampleError, DataError
from .loading import SafeLoadImageFromFile, image_bytes_problem
from .robust_dataset import robust_dataset
from .sample_seeds import SeededPipeline, install_sample_seeds

__all__ = [
    'BadSampleError', 'BadSampleLedger', 'DataError', 'SafeLoadImageFromFile', 'SeededPipeline',
    'image_bytes_problem', 'install_sample_seeds', 'robust_dataset'
]
