"""One place that decides which optimizer wrapper a run uses, from the config and
the command line (tools/train.py, tools/benchmark_fd.py).

The configs name an optimizer wrapper type, possibly the NaN-guarded ``Safe*``
variant (:mod:`mmfd.engine.reliability`). ``--amp`` / ``--no-amp`` switch mixed
precision on or off without losing the guard, and on a machine without CUDA AMP
becomes bf16 autocast (mmengine's AmpOptimWrapper needs an accelerator).
"""
import torch

AMP_ONLY_KEYS = ('loss_scale', 'dtype')


def select_optim_wrapper(optim_cfg, amp=None, amp_dtype=None, cuda=None):
    """Rewrites ``optim_cfg`` (a dict/ConfigDict) in place and returns it.

    Args:
        amp (bool | None): True forces AMP on, False off, None keeps the config's.
        amp_dtype (str | None): 'float16' / 'bfloat16' for GPU AMP.
        cuda (bool | None): whether CUDA is there (default: ask torch).
    """
    from mmfd.engine.reliability import base_type, safe_type
    cuda = torch.cuda.is_available() if cuda is None else cuda
    kind = optim_cfg.get('type', 'OptimWrapper')
    guarded = base_type(kind) != kind
    kind = base_type(kind)
    if kind == 'CPUAutocastOptimWrapper':
        kind = 'AmpOptimWrapper'  # decided again below for this machine
    if amp is True and kind == 'OptimWrapper':
        kind = 'AmpOptimWrapper'
        optim_cfg.setdefault('loss_scale', 'dynamic')
    if amp is False and kind == 'AmpOptimWrapper':
        kind = 'OptimWrapper'
    if kind == 'OptimWrapper':
        # A config that switches AMP off by `type` alone keeps its base's AMP keys.
        for key in AMP_ONLY_KEYS:
            optim_cfg.pop(key, None)
    if kind == 'AmpOptimWrapper':
        if amp_dtype:
            optim_cfg['dtype'] = amp_dtype
        if not cuda:
            kind = 'CPUAutocastOptimWrapper'
            optim_cfg['dtype'] = 'bfloat16'
            optim_cfg.pop('loss_scale', None)
    optim_cfg['type'] = safe_type(kind) if guarded else kind
    return optim_cfg
