"""Loss landscapes along filter-normalised random directions (Li et al., 2018).

f(a, b) = L(w + a * d1 + b * d2) on a fixed set of batches, with each direction
drawn from N(0, I) and rescaled slice by slice: for every weight tensor, each
slice along dim 0 (a filter / an output row) of the direction gets the norm of
the same slice of the weight. Directions are zero for

- 1-D parameters (biases, norm scales, layer scales): Li et al. leave them out;
- position tables (absolute embeddings, relative position bias tables, the
  SwinV2 continuous position bias MLP), matched by name, see ``DEFAULT_SKIP``;
- frozen parameters (``requires_grad=False``): an FD teacher never moves.

Weights are restored bitwise after every evaluation.

Sharpness (:func:`sharpness`) summarises a 1-D curve L(a) around a = 0:

- ``curvature``: 2 * c2 of the least-squares fit L(a) ~ c0 + c1 a + c2 a^2 over
  the points with |a| <= radius (the second derivative for a quadratic loss);
- ``rise``: (L(-r) + L(r)) / 2 - L(0), the mean loss increase at radius r
  (linear interpolation between grid points; c2 r^2 for a quadratic loss).

For a 2-D surface both are averaged over the two axis slices through (0, 0).
"""
import re
from contextlib import contextmanager
from typing import Callable, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

DEFAULT_SKIP = (r'pos_embed', r'positional_embedding', r'position_bias', r'rel_pos',
                r'relative_position', r'cpb_mlp')


def landscape_parameters(model: nn.Module,
                         skip: Iterable[str] = DEFAULT_SKIP,
                         trainable_only: bool = True) -> Dict[str, nn.Parameter]:
    """The parameters a direction may move (1-D ones are kept, their direction is 0)."""
    patterns = [re.compile(p) for p in skip]
    return {
        name: p
        for name, p in model.named_parameters()
        if (p.requires_grad or not trainable_only) and not any(
            pat.search(name) for pat in patterns)
    }


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Rescales each dim-0 slice of ``direction`` to the norm of that slice of ``weight``;
    1-D (and 0-D) tensors get a zero direction."""
    if weight.dim() <= 1:
        return torch.zeros_like(weight)
    d = direction.reshape(direction.shape[0], -1)
    w = weight.reshape(weight.shape[0], -1).to(d)
    d = d * (w.norm(dim=1, keepdim=True) / (d.norm(dim=1, keepdim=True) + 1e-10))
    return d.reshape(weight.shape).to(weight.dtype)


def random_direction(params: Dict[str, torch.Tensor], seed: int = 0) -> Dict[str, torch.Tensor]:
    """A filter-normalised Gaussian direction, reproducible across devices (drawn on CPU)."""
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, p in params.items():
        noise = torch.randn(p.shape, generator=generator, dtype=torch.float32)
        out[name] = filter_normalize(noise, p.detach().float().cpu()).to(p.device, p.dtype)
    return out


@contextmanager
def perturbed(params: Dict[str, torch.Tensor], directions: Sequence[Dict[str, torch.Tensor]],
              coeffs: Sequence[float]):
    """Sets w = w0 + sum_i coeffs[i] * directions[i] inside the block; restores w0 exactly."""
    originals = {name: p.detach().clone() for name, p in params.items()}
    try:
        with torch.no_grad():
            for name, p in params.items():
                value = originals[name]
                for coeff, direction in zip(coeffs, directions):
                    value = value + coeff * direction[name]
                p.copy_(value)
        yield
    finally:
        with torch.no_grad():
            for name, p in params.items():
                p.copy_(originals[name])


def evaluate_surface(params: Dict[str, torch.Tensor],
                     directions: Sequence[Dict[str, torch.Tensor]],
                     coords: Sequence[Sequence[float]],
                     loss_fn: Callable[[], float],
                     on_point: Optional[Callable[[], None]] = None) -> np.ndarray:
    """Loss on the grid ``coords[0] x coords[1] ...`` (one axis per direction)."""
    if len(coords) != len(directions):
        raise ValueError('one coordinate axis per direction')
    shape = [len(c) for c in coords]
    losses = np.zeros(shape, dtype=np.float64)
    for index in np.ndindex(*shape):
        coeffs = [float(coords[axis][i]) for axis, i in enumerate(index)]
        with perturbed(params, directions, coeffs), torch.no_grad():
            losses[index] = float(loss_fn())
        if on_point is not None:
            on_point()
    return losses


def sharpness(alphas: Sequence[float],
              losses: Sequence[float],
              radius: Optional[float] = None) -> Dict[str, float]:
    """Curvature of a quadratic fit and mean loss rise at ``radius`` (default: the span)."""
    a = np.asarray(alphas, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    r = float(np.max(np.abs(a))) if radius is None else float(radius)
    keep = np.abs(a) <= r + 1e-12
    c2, c1, c0 = np.polyfit(a[keep], y[keep], 2)
    centre = float(np.interp(0.0, a, y))
    rise = 0.5 * (float(np.interp(-r, a, y)) + float(np.interp(r, a, y))) - centre
    return dict(curvature=float(2 * c2), rise=rise, radius=r, loss_at_0=centre)


def loss_landscape(model: nn.Module,
                   loss_fn: Callable[[], float],
                   dim: int = 1,
                   points: int = 21,
                   span: float = 1.0,
                   seed: int = 0,
                   skip: Iterable[str] = DEFAULT_SKIP,
                   radius: Optional[float] = None,
                   on_point: Optional[Callable[[], None]] = None) -> dict:
    """1-D curve or 2-D surface over [-span, span] (``points`` per axis) + sharpness.

    Returns ``dict(dim, alphas, [betas], losses, sharpness, num_parameters)``;
    ``losses`` is a list (1-D) or a list of rows indexed ``[alpha][beta]`` (2-D).
    """
    if dim not in (1, 2):
        raise ValueError(f'dim must be 1 or 2, got {dim}')
    params = landscape_parameters(model, skip)
    directions = [random_direction(params, seed + i) for i in range(dim)]
    axis = np.linspace(-span, span, points)
    losses = evaluate_surface(params, directions, [axis] * dim, loss_fn, on_point)
    if dim == 1:
        sharp = sharpness(axis, losses, radius)
    else:
        centre = int(np.argmin(np.abs(axis)))
        slices = [
            sharpness(axis, losses[:, centre], radius),
            sharpness(axis, losses[centre, :], radius)
        ]
        sharp = {k: float(np.mean([s[k] for s in slices])) for k in slices[0]}
    moved = sum(p.numel() for p in params.values() if p.dim() > 1)
    result = dict(
        dim=dim,
        span=span,
        points=points,
        seed=seed,
        alphas=axis.tolist(),
        losses=losses.tolist(),
        sharpness=sharp,
        num_parameters=moved)
    if dim == 2:
        result['betas'] = axis.tolist()
    return result


def make_loss_fn(model: nn.Module, batches: List[tuple]) -> Callable[[], float]:
    """Mean total loss of an mmengine model over fixed ``(inputs, data_samples)`` batches.

    The model is evaluated as it is (call ``model.eval()`` first for a deterministic
    landscape: no dropout / drop path); losses are summed like mmengine's
    ``parse_losses`` (every key containing ``'loss'``).
    """

    def loss_fn() -> float:
        total = 0.0
        with torch.no_grad():
            for inputs, data_samples in batches:
                if hasattr(model, 'loss'):
                    losses = model.loss(inputs, data_samples)
                else:
                    losses = model(inputs, data_samples, mode='loss')
                if isinstance(losses, torch.Tensor):
                    total += float(losses)
                    continue
                if hasattr(model, 'parse_losses'):
                    loss, _ = model.parse_losses(losses)
                else:
                    loss = sum(v for k, v in losses.items() if 'loss' in k)
                total += float(loss)
        return total / max(len(batches), 1)

    return loss_fn
