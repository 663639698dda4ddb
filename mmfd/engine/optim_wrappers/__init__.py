from .cpu_amp import CPUAutocastOptimWrapper
from .fd_optim_wrapper import (AMP_MODES, as_fd_optim_wrapper, build_fd_optim_wrapper, resolve_amp,
                               set_amp)

__all__ = [
    'CPUAutocastOptimWrapper', 'AMP_MODES', 'as_fd_optim_wrapper', 'build_fd_optim_wrapper',
    'resolve_amp', 'set_amp'
]
