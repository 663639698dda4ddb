"""The non-finite guard of ``FDOptimWrapper`` (its ``max_consecutive_nonfinite``).

Configs name ``type='FDOptimWrapper'`` (:mod:`mmfd.engine.optim_wrappers`), which
builds one of the classes below for the AMP mode and machine: ``SafeOptimWrapper``
(fp32), ``SafeAmpOptimWrapper`` (CUDA AMP) or ``SafeCPUAutocastOptimWrapper``
(bf16 autocast without CUDA). They stay registered so that older configs and
checkpoints keep working.

Before every optimizer step the loss and the total gradient norm are checked. If
either is NaN/inf the step is skipped (weights, optimizer moments and step counts
untouched; gradients zeroed), counted (``skipped_steps`` in the message hub, saved
with checkpoints) and logged with the iteration. After ``max_consecutive_nonfinite``
skipped steps in a row the run stops with a :class:`NonFiniteError` naming the
iteration and the last checkpoint saved before the trouble started.

Cost: one host sync per step for the check (mmengine's grad clipping already does
one; with clipping the norm is reused). Under DDP the decision is all-reduced, so
every rank skips the same steps and the replicas stay identical. The AMP variant
unscales first, so the norm is the true one; an fp16 overflow step (which AMP
skips anyway, lowering the scale) counts like any other non-finite step.
"""
import logging
from typing import Optional

import torch
import torch.distributed as dist
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper, OptimWrapper

from mmfd.engine.optim_wrappers.cpu_amp import CPUAutocastOptimWrapper
from mmfd.registry import OPTIM_WRAPPERS
from mmfd.utils.errors import MMFDError

CONSECUTIVE_KEY = 'nonfinite_consecutive'
SKIPPED_KEY = 'skipped_steps'


class NonFiniteError(MMFDError):
    """Training produced NaN/inf losses or gradients too many steps in a row."""


def _global(norm: torch.Tensor) -> torch.Tensor:
    """The norm over every rank's shard when gradients are sharded (FSDP2 DTensors:
    torch's norms come back as partial results), else ``norm`` itself."""
    from torch.distributed.tensor import DTensor
    return norm.full_tensor() if isinstance(norm, DTensor) else norm


class NonFiniteGuardMixin:
    """The check shared by SafeOptimWrapper and SafeAmpOptimWrapper."""

    def __init__(self, *args, max_consecutive_nonfinite: int = 10, **kwargs):
        super().__init__(*args, **kwargs)
        if int(max_consecutive_nonfinite) < 1:
            raise ValueError('max_consecutive_nonfinite must be >= 1, got '
                             f'{max_consecutive_nonfinite}')
        self.max_consecutive_nonfinite = int(max_consecutive_nonfinite)
        self.consecutive_nonfinite = 0
        self._loss: Optional[torch.Tensor] = None
        self._grad_norm: Optional[torch.Tensor] = None

    def update_params(self, loss: torch.Tensor, step_kwargs=None, zero_kwargs=None):
        self._loss = loss.detach()
        super().update_params(loss, step_kwargs=step_kwargs, zero_kwargs=zero_kwargs)

    def _params_with_grad(self):
        return [
            p for group in self.optimizer.param_groups for p in group['params']
            if p.grad is not None
        ]

    def _total_grad_norm(self) -> torch.Tensor:
        grads = [p.grad for p in self._params_with_grad()]
        if not grads:
            return torch.zeros(())
        norms = torch._foreach_norm(grads, 2.0)
        return _global(torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), 2.0))

    def _clip_grad(self) -> None:
        """mmengine's clipping, keeping the total norm it computes for the check."""
        params = [p for p in self._params_with_grad() if p.requires_grad]
        if params and self.grad_name == 'grad_norm':
            norm = _global(self.clip_func(params, **self.clip_grad_kwargs))
            self._grad_norm = norm.detach()
            self.message_hub.update_scalar(f'train/{self.grad_name}', float(norm))
        else:
            super()._clip_grad()

    def _update_is_finite(self) -> bool:
        """Checks loss and gradients (call after unscaling, before clipping's effect
        matters: clipping a NaN norm yields NaN gradients, which are skipped too)."""
        norm = self._grad_norm if self._grad_norm is not None else self._total_grad_norm()
        loss = self._loss if self._loss is not None else torch.zeros(())
        ok = torch.isfinite(norm.float()).all() & torch.isfinite(loss.float()).all()
        self._norm_value, self._loss_value = norm, loss
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            flag = ok.to(torch.float32).reshape(1)
            if dist.get_backend() == 'nccl':
                flag = flag.cuda()
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            return bool(flag.item() > 0)
        return bool(ok.item())

    def _skip_step(self) -> None:
        hub = self.message_hub
        self.consecutive_nonfinite += 1
        skipped = int(hub.get_info(SKIPPED_KEY, 0)) + 1
        hub.update_info(SKIPPED_KEY, skipped)
        hub.update_info(CONSECUTIVE_KEY, self.consecutive_nonfinite)
        iteration = int(hub.get_info('iter', -1)) + 1  # 1-based, like the log lines
        what = (f'loss={float(self._loss_value.float().sum()):.4g}, '
                f'grad_norm={float(self._norm_value):.4g}')
        print_log(
            f'Non-finite update at iteration {iteration} ({what}): optimizer step '
            f'skipped ({self.consecutive_nonfinite} in a row, {skipped} in total).',
            logger='current',
            level=logging.WARNING)
        if self.consecutive_nonfinite >= self.max_consecutive_nonfinite:
            good = hub.get_info('last_good_ckpt', None) or hub.get_info('last_ckpt', None)
            where = (f'The last good checkpoint is {good}'
                     if good else 'No checkpoint was saved before the problem started')
            raise NonFiniteError(
                f'Training stopped at iteration {iteration}: {self.consecutive_nonfinite} '
                f'consecutive steps had a non-finite loss or gradient ({what}; '
                f'max_consecutive_nonfinite={self.max_consecutive_nonfinite}). {where}. '
                'Resume from it with a lower learning rate, gradient clipping or '
                'fp32/bf16, and check the data of the failing iterations.')

    def _mark_good_step(self) -> None:
        if self.consecutive_nonfinite:
            self.message_hub.update_info(CONSECUTIVE_KEY, 0)
        self.consecutive_nonfinite = 0

    def _reset_step_state(self) -> None:
        self._loss = self._grad_norm = None


class _SafeStepMixin(NonFiniteGuardMixin):

    def step(self, **kwargs) -> None:
        try:
            if self.clip_grad_kwargs:
                self._clip_grad()
            if self._update_is_finite():
                self._mark_good_step()
                self.optimizer.step(**kwargs)
            else:
                self._skip_step()
        finally:
            self._reset_step_state()


@OPTIM_WRAPPERS.register_module()
class SafeOptimWrapper(_SafeStepMixin, OptimWrapper):
    """OptimWrapper that skips (and counts) steps with a NaN/inf loss or gradient."""


@OPTIM_WRAPPERS.register_module()
class SafeCPUAutocastOptimWrapper(_SafeStepMixin, CPUAutocastOptimWrapper):
    """CPUAutocastOptimWrapper (bf16 autocast on a CPU) with the non-finite guard."""


@OPTIM_WRAPPERS.register_module()
class SafeAmpOptimWrapper(NonFiniteGuardMixin, AmpOptimWrapper):
    """AmpOptimWrapper that counts non-finite steps and stops after too many."""

    def step(self, **kwargs) -> None:
        scaler = self.loss_scaler
        try:
            if scaler.is_enabled():
                scaler.unscale_(self.optimizer)  # records found_inf for update()
            if self.clip_grad_kwargs:
                self._clip_grad()
            if self._update_is_finite():
                self._mark_good_step()
                scaler.step(self.optimizer, **kwargs)
                scaler.update(self._scale_update_param)
            else:
                if scaler.is_enabled():
                    scaler.update(self._scale_update_param)  # lowers the loss scale
                self._skip_step()
        finally:
            self._reset_step_state()
