from . import hooks  # noqa: F401  (registers DiagnosticsHook)
from . import optim_wrappers  # noqa: F401  (registers CPUAutocastOptimWrapper)
from . import optimizers  # noqa: F401  (registers LayerDecayOptimWrapperConstructor)
from . import reliability  # noqa: F401  (AtomicCheckpointHook, Safe*OptimWrapper)
