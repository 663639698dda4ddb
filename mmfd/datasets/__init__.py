"""Data that does not kill a long run: ``SafeLoadImageFromFile`` (a transform) and
``RobustDataset`` (a dataset wrapper), registered in mmengine's root registries."""
from .errors import BadSampleError, DataError
from .loading import SafeLoadImageFromFile, image_bytes_problem
from .robust_dataset import RobustDataset, upgrade_pipeline

__all__ = [
    'BadSampleError', 'DataError', 'SafeLoadImageFromFile', 'RobustDataset', 'image_bytes_problem',
    'upgrade_pipeline'
]
