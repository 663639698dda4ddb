from .cpu_amp import CPUAutocastOptimWrapper, amp_wrapper_for_device

__all__ = ['CPUAutocastOptimWrapper', 'amp_wrapper_for_device']
