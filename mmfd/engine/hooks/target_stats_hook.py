"""``TargetStatsHook``: estimates the PHI-S statistics of every head that needs them,
on training data, before the first training step.

    custom_hooks = [dict(type='TargetStatsHook', num_batches=100)]

For each FD head with ``target_norm='phis'`` whose statistics are not fitted yet,
the teachers run (no grad) on ``num_batches`` batches of a fresh loader built from
``train_dataloader`` (its own sampler, so the training order is untouched), the
regressed tokens' mean and covariance are accumulated in fp64, summed over ranks,
and the head's buffers are set. They are saved with every checkpoint, so a resumed
run (``before_train`` comes after the resume) skips the pass. The random states are
put back afterwards: the training run draws what it would without the pass.
"""
import copy
import logging

import torch
import torch.distributed as dist
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper

from mmfd.models.algorithms.fd import head_option
from mmfd.registry import HOOKS


@HOOKS.register_module()
class TargetStatsHook(Hook):
    """Fits the PHI-S target standardisation before training (see module doc).

    Args:
        num_batches (int): batches of training data to estimate the statistics on.
    """
    priority = 'ABOVE_NORMAL'  # before the checkpoint hook wraps the train sampler

    def __init__(self, num_batches: int = 100):
        self.num_batches = int(num_batches)

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        pending = _pending_heads(model)
        if not pending:
            return
        from mmfd.engine.reliability.rng import cpu_rng_states, set_cpu_rng_states
        from mmfd.models.heads.target_norms import TargetStats
        states, was_training = cpu_rng_states(), model.training
        try:
            stats = {name: TargetStats(head.out_channels) for name, head in pending.items()}
            loader = runner.build_dataloader(_stats_loader_cfg(runner.cfg.train_dataloader))
            seen = 0
            model.eval()
            with torch.no_grad():
                for seen, batch in enumerate(loader, start=1):
                    inputs = model.data_preprocessor(batch, False)['inputs']
                    inputs = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
                    for name in pending:
                        stats[name].add(model.regressed_target(inputs, name))
                    if seen >= self.num_batches:
                        break
            for name, head in pending.items():
                _all_reduce(stats[name])
                mean, cov = stats[name].mean_cov()
                head.standardizer.fit(
                    mean.to(head.standardizer.mean.device), cov.to(head.standardizer.mean.device))
                print_log(
                    f'TargetStatsHook: PHI-S statistics of {head_option(name)} from '
                    f'{stats[name].count} tokens ({seen} batches per rank).',
                    logger='current',
                    level=logging.INFO)
        finally:
            model.train(was_training)
            set_cpu_rng_states(states)


def _pending_heads(model) -> dict:
    """name -> FD head with an unfitted PHI-S standardiser."""
    if not hasattr(model, 'named_teachers'):
        return {}
    heads = {name: model.head_of(name) for name in model.named_teachers()}
    return {
        name: head
        for name, head in heads.items()
        if getattr(head, 'target_norm', None) == 'phis' and not bool(head.standardizer.fitted)
    }


def _stats_loader_cfg(cfg) -> dict:
    cfg = copy.deepcopy(cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg))
    cfg['sampler'] = dict(type='DefaultSampler', shuffle=True)
    cfg.pop('batch_sampler', None)
    cfg['persistent_workers'] = False
    return cfg


def _all_reduce(stats) -> None:
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
    count = torch.tensor([float(stats.count)], dtype=torch.float64, device=device)
    total, outer = stats.total.to(device), stats.outer.to(device)
    for tensor in (count, total, outer):
        dist.all_reduce(tensor)
    stats.count, stats.total, stats.outer = int(count.item()), total.cpu(), outer.cpu()
