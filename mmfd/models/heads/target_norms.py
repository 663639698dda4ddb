"""How a teacher's tokens are standardised before the student regresses them.

* ``'layernorm'`` (the paper, default): a non-parametric LayerNorm per token.
* ``'running'``: per-channel mean / std kept as running (EMA) statistics of the
  teacher's tokens, updated at every training step (UNIC's per-teacher
  standardisation). Buffers, so checkpoints carry them.
* ``'phis'``: PHI-S (Ranzinger et al., arXiv 2410.01680): centre, rotate by the
  PCA basis of the teacher's token covariance, then by a normalised Hadamard
  matrix, and divide by one scalar. The Hadamard rotation spreads the variance of
  the principal components evenly, so every channel of the result has variance 1
  while the transform stays isometric up to that one scale. Its statistics come
  from a pass over training data (``TargetStatsHook`` runs it before the first
  step) and are buffers saved with the checkpoint, so a resumed run reuses them.

All computations are fp32 (statistics in fp64), whatever the autocast.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from mmfd.utils.errors import ConfigError

TARGET_NORMS = ('layernorm', 'running', 'phis', 'none')


def whiten(target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Non-parametric LayerNorm over channels (no scale, no bias), in fp32."""
    return F.layer_norm(target.float(), target.shape[-1:], eps=eps)


# ---------------------------------------------------------------------- Hadamard
def _is_prime(n: int) -> bool:
    return n > 1 and all(n % d for d in range(2, int(math.isqrt(n)) + 1))


def _paley(q: int) -> torch.Tensor:
    """Paley construction I: a Hadamard matrix of order q + 1, q prime = 3 mod 4."""
    residues = {(x * x) % q for x in range(1, q)}
    chi = torch.tensor([0] + [1 if a in residues else -1 for a in range(1, q)], dtype=torch.float64)
    jacobsthal = torch.stack([chi[(torch.arange(q) - i) % q] for i in range(q)])
    core = jacobsthal + torch.eye(q, dtype=torch.float64)
    top = torch.cat([torch.ones(1, 1, dtype=torch.float64),
                     torch.ones(1, q, dtype=torch.float64)], 1)
    bottom = torch.cat([-torch.ones(q, 1, dtype=torch.float64), core], 1)
    return torch.cat([top, bottom], 0)


def _paley_order(m: int) -> bool:
    return m >= 4 and _is_prime(m - 1) and (m - 1) % 4 == 3


def hadamard(n: int) -> torch.Tensor:
    """An n x n Hadamard matrix (entries +-1, H H^T = n I) for n = 2^k * m with
    m = 1 or m = q + 1, q a prime = 3 mod 4 (4, 8, 12, 20, 24, 32, 44, 48, 72...):
    Sylvester's doubling of a Paley matrix. Covers the usual widths (384, 768,
    1024, 1152, 1280, 1536, 4096)."""
    sylvester = torch.tensor([[1., 1.], [1., -1.]], dtype=torch.float64)
    doublings = 0
    while n % 2**(doublings + 1) == 0:
        doublings += 1
    for k in range(doublings, -1, -1):  # the largest power of two first
        m = n // 2**k
        if m == 1:
            base = torch.ones(1, 1, dtype=torch.float64)
        elif _paley_order(m):
            base = _paley(m - 1)
        else:
            continue
        for _ in range(k):
            base = torch.kron(sylvester, base)
        return base
    raise ConfigError(
        f'PHI-S needs a Hadamard matrix of order {n} (the teacher width); mmfd builds '
        'orders 2^k * m with m = 1 or m = q + 1, q a prime = 3 mod 4. Use '
        "target_norm='running' or 'layernorm' for this teacher.")


# ---------------------------------------------------------------------- modules
class RunningStandardizer(nn.Module):
    """Per-channel EMA mean / variance of the targets (updated in training mode)."""

    def __init__(self, channels: int, momentum: float = 0.01, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = float(momentum), float(eps)
        self.register_buffer('mean', torch.zeros(channels))
        self.register_buffer('var', torch.ones(channels))
        self.register_buffer('count', torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, target: torch.Tensor) -> None:
        flat = target.detach().double().reshape(-1, target.shape[-1])
        mean, var = flat.mean(0), flat.var(0, unbiased=False)
        if int(self.count) == 0:  # the first batch sets them (no bias toward 0 / 1)
            self.mean.copy_(mean)
            self.var.copy_(var)
        else:
            self.mean.lerp_(mean.to(self.mean.dtype), self.momentum)
            self.var.lerp_(var.to(self.var.dtype), self.momentum)
        self.count += 1

    def forward(self, target: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.update(target)
        return (target.float() - self.mean.float()) / torch.sqrt(self.var.float() + self.eps)


class PHISStandardizer(nn.Module):
    """y = R (x - mean), R = H U^T / alpha; fitted once from data (``fit``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.register_buffer('mean', torch.zeros(channels))
        self.register_buffer('rotation', torch.eye(channels))
        self.register_buffer('fitted', torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def fit(self, mean: torch.Tensor, covariance: torch.Tensor) -> None:
        """Sets the transform from the targets' mean [C] and covariance [C, C]."""
        channels = mean.numel()
        cov = covariance.double()
        cov = (cov + cov.T) / 2
        eigenvalues, basis = torch.linalg.eigh(cov)
        eigenvalues = eigenvalues.clamp_min(0)
        alpha = eigenvalues.mean().sqrt().clamp_min(1e-12)  # sqrt(trace / C)
        h = hadamard(channels) / math.sqrt(channels)  # orthonormal
        self.rotation.copy_((h @ basis.T / alpha).to(self.rotation.dtype))
        self.mean.copy_(mean.double().to(self.mean.dtype))
        self.fitted.fill_(True)

    def forward(self, target: torch.Tensor) -> torch.Tensor:
        if not bool(self.fitted):
            raise ConfigError(
                "target_norm='phis' has no statistics yet: add "
                "custom_hooks=[dict(type='TargetStatsHook')] (it estimates them on "
                'training data before the first step), or load a checkpoint that has them.')
        x = target.float() - self.mean.float()
        return x @ self.rotation.float().T


class TargetStats:
    """Streaming mean / covariance of [N, C] rows in fp64 (for PHI-S)."""

    def __init__(self, channels: int):
        self.count = 0
        self.total = torch.zeros(channels, dtype=torch.float64)
        self.outer = torch.zeros(channels, channels, dtype=torch.float64)

    def add(self, rows: torch.Tensor) -> None:
        rows = rows.detach().double().reshape(-1, rows.shape[-1]).cpu()
        self.count += rows.shape[0]
        self.total += rows.sum(0)
        self.outer += rows.T @ rows

    def mean_cov(self):
        if self.count < 2:
            raise ConfigError('PHI-S statistics need at least two target tokens.')
        mean = self.total / self.count
        cov = self.outer / self.count - torch.outer(mean, mean)
        return mean, cov


def build_target_norm(kind: str, channels: int, eps: float, momentum: float) -> Optional[nn.Module]:
    if kind not in TARGET_NORMS:
        raise ConfigError(f'FDHead: target_norm={kind!r} is not one of {TARGET_NORMS}.')
    if kind == 'running':
        return RunningStandardizer(channels, momentum, eps)
    if kind == 'phis':
        hadamard(channels)  # fails at build for a width without a construction
        return PHISStandardizer(channels)
    return None
