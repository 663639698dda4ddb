from .cpu_amp import CPUAutocastOptimWrapper
from .select import select_optim_wrapper

__all__ = ['CPUAutocastOptimWrapper', 'select_optim_wrapper']
