"""``FDOptimWrapper``: the one optimizer-wrapper type mmfd's configs name.

    optim_wrapper = dict(
        type='FDOptimWrapper',
        amp='auto',                     # 'off' | 'auto' | 'fp16' | 'bf16'
        max_consecutive_nonfinite=10,   # NaN/inf guard; None switches it off
        optimizer=dict(type='AdamW', lr=3e-4, weight_decay=0.05),
        clip_grad=dict(max_norm=3.0))

Mixed precision and the non-finite guard are options of one type, decided when the
wrapper is built, on the machine that runs it:

* ``amp='off'``: fp32.
* ``amp='auto'``: fp16 with dynamic loss scaling on CUDA (the release's AMP);
  without CUDA, bf16 autocast when the CPU computes bf16 natively (AVX512-BF16 or
  AMX; mmengine's AmpOptimWrapper needs an accelerator, bf16 needs no loss
  scaling), else fp32: emulated bf16 is several times slower than fp32 (6x for a
  small ViT step on an AVX2-only CPU).
* ``amp='fp16'`` / ``'bf16'``: that dtype on CUDA (fp16 with dynamic loss scaling,
  bf16 without: it has fp32's range); without CUDA, bf16 autocast (fp16 is logged
  as replaced), natively or not.
* ``max_consecutive_nonfinite=N`` skips and counts steps whose loss or gradient is
  NaN/inf and stops the run after N in a row (:mod:`mmfd.engine.reliability`).

Other keyword arguments are those of mmengine's ``OptimWrapper`` /
``AmpOptimWrapper`` (``clip_grad``, ``accumulative_counts``, ``loss_scale``).
``tools/train.py``'s ``--amp`` / ``--no-amp`` / ``--amp-dtype`` set ``amp``;
``--cfg-options optim_wrapper.amp=bf16`` does the same, and is applied after them.
"""
import logging
from typing import Optional

import torch
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmfd.registry import OPTIM_WRAPPERS
from mmfd.utils.errors import ConfigError
from .cpu_amp import CPUAutocastOptimWrapper

AMP_MODES = ('off', 'auto', 'fp16', 'bf16')
_DTYPES = {'fp16': 'float16', 'bf16': 'bfloat16'}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (torch has no public query)."""
    checks = ('_is_avx512_bf16_supported', '_is_amx_tile_supported')
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_amp(amp, cuda: Optional[bool] = None) -> str:
    """'off' | 'fp16' | 'bf16' for this machine, from an ``amp`` option; says so
    when a machine without CUDA changes what was asked for."""
    if amp in (None, False, True):
        amp = 'auto' if amp else 'off'
    if amp not in AMP_MODES:
        raise ConfigError(f'optim_wrapper.amp={amp!r} is not one of {AMP_MODES}.')
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if amp == 'off':
        return 'off'
    if cuda:
        return 'fp16' if amp == 'auto' else amp
    if amp == 'auto' and not cpu_has_native_bf16():
        print_log(
            "no CUDA and no native bf16 on this CPU: amp='auto' trains in fp32 "
            "(emulated bf16 is slower); amp='bf16' forces bf16 autocast.",
            logger='current')
        return 'off'
    if amp == 'fp16':
        print_log(
            'optim_wrapper.amp=fp16 needs CUDA; this machine has none, so '
            'mixed precision runs as bf16 autocast on the CPU.',
            logger='current',
            level=logging.WARNING)
    else:
        print_log('no CUDA: AMP runs as bfloat16 autocast on the CPU.', logger='current')
    return 'bf16'


def wrapper_class(mode: str, cuda: bool, guarded: bool):
    """The implementation class for a resolved AMP mode."""
    from mmfd.engine.reliability.nonfinite import (SafeAmpOptimWrapper, SafeCPUAutocastOptimWrapper,
                                                   SafeOptimWrapper)
    if mode == 'off':
        return SafeOptimWrapper if guarded else OptimWrapper
    if cuda:
        return SafeAmpOptimWrapper if guarded else AmpOptimWrapper
    return SafeCPUAutocastOptimWrapper if guarded else CPUAutocastOptimWrapper


@OPTIM_WRAPPERS.register_module(name='FDOptimWrapper')
def build_fd_optim_wrapper(optimizer,
                           amp='off',
                           max_consecutive_nonfinite: Optional[int] = 10,
                           loss_scale='dynamic',
                           cuda: Optional[bool] = None,
                           **kwargs) -> OptimWrapper:
    """Builds the wrapper described in the module docstring."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    mode = resolve_amp(amp, cuda)
    guarded = max_consecutive_nonfinite is not None
    cls = wrapper_class(mode, cuda, guarded)
    if guarded:
        kwargs['max_consecutive_nonfinite'] = max_consecutive_nonfinite
    if mode != 'off':
        kwargs['dtype'] = _DTYPES[mode]
        if cuda:
            # bf16 has fp32's range: no loss scaling (a scaler would only add a
            # per-rank overflow check, which sharded FSDP2 gradients cannot share).
            kwargs['loss_scale'] = loss_scale if mode == 'fp16' else dict(enabled=False)
    return cls(optimizer=optimizer, **kwargs)


# mmengine's own types, as configs of other toolboxes (and --cfg-options) name them.
_FOREIGN = {
    'OptimWrapper': 'off',
    'AmpOptimWrapper': 'fp16',
    'SafeOptimWrapper': 'off',
    'SafeAmpOptimWrapper': 'fp16',
    'CPUAutocastOptimWrapper': 'bf16',
    'SafeCPUAutocastOptimWrapper': 'bf16'
}


def as_fd_optim_wrapper(optim_cfg):
    """Rewrites an ``optim_wrapper`` config naming mmengine's (Amp)OptimWrapper or a
    legacy mmfd Safe* type as the equivalent ``FDOptimWrapper``, in place, so that it
    runs on any machine (an AmpOptimWrapper config on a CPU trains in bf16). The
    NaN guard is kept only where the old type had it. Other types are untouched."""
    kind = optim_cfg.get('type', 'OptimWrapper')
    if kind not in _FOREIGN:
        return optim_cfg
    mode = _FOREIGN[kind]
    dtype = str(optim_cfg.pop('dtype', None))
    if mode == 'fp16' and dtype in ('bfloat16', 'torch.bfloat16'):
        mode = 'bf16'
    if mode == 'off':
        optim_cfg.pop('loss_scale', None)
    optim_cfg['type'] = 'FDOptimWrapper'
    optim_cfg['amp'] = 'auto' if mode == 'fp16' else mode
    if not kind.startswith('Safe'):
        optim_cfg.setdefault('max_consecutive_nonfinite', None)
    return optim_cfg


def set_amp(optim_cfg, amp=None, amp_dtype=None):
    """Applies tools/train.py's ``--amp`` / ``--no-amp`` / ``--amp-dtype``."""
    as_fd_optim_wrapper(optim_cfg)
    if optim_cfg.get('type') != 'FDOptimWrapper':
        if amp is not None or amp_dtype:
            raise ConfigError(
                f"--amp/--no-amp/--amp-dtype need optim_wrapper.type='FDOptimWrapper' "
                f"(or mmengine's OptimWrapper/AmpOptimWrapper), not "
                f"{optim_cfg.get('type')!r}.")
        return optim_cfg
    if amp is False:
        optim_cfg['amp'] = 'off'
    elif amp_dtype:
        optim_cfg['amp'] = {'float16': 'fp16', 'bfloat16': 'bf16'}[amp_dtype]
    elif amp is True and optim_cfg.get('amp', 'off') == 'off':
        optim_cfg['amp'] = 'auto'
    return optim_cfg
