"""Mixed precision on machines without an accelerator.

mmengine's AmpOptimWrapper refuses to run without CUDA/NPU/MLU. On a CPU, bf16
autocast needs no loss scaling, so a plain OptimWrapper inside
``torch.autocast('cpu', torch.bfloat16)`` is the whole of AMP there.
``FDOptimWrapper`` builds it when AMP is asked for on a machine without CUDA.
"""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from mmfd.registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class CPUAutocastOptimWrapper(OptimWrapper):
    """OptimWrapper whose forward runs under CPU bf16 autocast."""

    def __init__(self, *args, dtype='bfloat16', **kwargs):
        super().__init__(*args, **kwargs)
        if dtype not in ('bfloat16', torch.bfloat16):
            raise ValueError(f'CPU autocast runs bfloat16, got dtype={dtype!r}.')

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
