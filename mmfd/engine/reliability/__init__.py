"""Training that survives kills and bad numbers (issue 8).

Registers into mmengine's root registries (visible from every scope: mmpretrain,
mmdet, mmseg): the hook ``AtomicCheckpointHook``, the optimizer wrappers
``SafeOptimWrapper`` / ``SafeAmpOptimWrapper`` / ``SafeCPUAutocastOptimWrapper``
and the file backend
``mmfd_atomic_local``. Data faults live in :mod:`mmfd.datasets`, config faults in
:mod:`mmfd.utils.preflight`.
"""
from .atomic_io import (AtomicLocalBackend, atomic_write, find_resumable_checkpoint,
                        verify_checkpoint)
from .checkpoint_hook import AtomicCheckpointHook
from .nonfinite import (NonFiniteError, SafeAmpOptimWrapper, SafeCPUAutocastOptimWrapper,
                        SafeOptimWrapper)
from .rng import get_rng_state, sample_seed, seeded, set_rng_state

__all__ = [
    'AtomicCheckpointHook', 'AtomicLocalBackend', 'atomic_write', 'verify_checkpoint',
    'find_resumable_checkpoint', 'SafeOptimWrapper', 'SafeAmpOptimWrapper',
    'SafeCPUAutocastOptimWrapper', 'NonFiniteError', 'get_rng_state', 'set_rng_state',
    'sample_seed', 'seeded'
]
