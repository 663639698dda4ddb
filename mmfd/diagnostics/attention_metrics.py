"""Attention metrics of the FD paper, as pure functions on attention maps.

All functions take maps ``attn`` of shape ``[B, heads, N, N]`` (rows are
queries, softmax-normalised over keys) and the token layout:
``grid = (h, w)`` patch tokens in row-major order after ``num_prefix_tokens``
prefix tokens (CLS, registers), ``patch_size`` = pixels per token. Windowed
attention passes the window grid, no prefix, and the stage's pixels per token.

Prefix handling (one convention for every metric): the prefix rows AND columns
are dropped. With ``renormalize=True`` (the default) each remaining row is
divided by its patch mass, so it is a distribution over patch keys and a
uniform map has exactly the mean pairwise distance of the grid; with
``renormalize=False`` the raw weights are used (the attention given to the CLS
token then counts as distance 0, which lowers D). Cosine similarity does not
depend on the choice; KL is always computed on renormalised rows.

- :func:`attention_distance`: D(h) = mean over maps and queries q of
  sum_k A[q, k] * ||p_q - p_k||, p = patch centre in pixels.
- :func:`head_similarity_matrix` / :func:`head_similarity`: cos(A_h[q], A_g[q])
  averaged over maps and queries; the scalar is the mean over pairs h < g.
- :func:`head_kl_matrix` / :func:`head_kl`: KL(A_h[q] || A_g[q]), mean over
  maps and queries; the scalar is the mean over ordered pairs h != g.
- :func:`distance_spread`: population std of D(h) across heads.
- :func:`average_attention`: the map averaged over images (or windows).
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch

from .recording import AttentionRecord, TokenGeometry

PairLike = Union[float, int, Sequence[float]]
_EPS = 1e-12


def _pair(value: PairLike) -> Tuple[float, float]:
    if isinstance(value, (tuple, list)):
        return float(value[0]), float(value[1])
    return float(value), float(value)


def _check(attn: torch.Tensor) -> None:
    if attn.dim() != 4 or attn.shape[-1] != attn.shape[-2]:
        raise ValueError(f'attention maps must be [B, heads, N, N], got {tuple(attn.shape)}')


def _floating(x: torch.Tensor) -> torch.Tensor:
    """fp16/bf16 maps are measured in fp32; fp64 stays fp64 (exact tests)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def patch_attention(attn: torch.Tensor,
                    num_prefix_tokens: int = 1,
                    renormalize: bool = True) -> torch.Tensor:
    """Drops prefix rows and columns; optionally renormalises rows to sum 1."""
    _check(attn)
    p = int(num_prefix_tokens)
    attn = _floating(attn[..., p:, p:])
    if renormalize:
        attn = attn / attn.sum(-1, keepdim=True).clamp_min(_EPS)
    return attn


def token_positions(grid: Sequence[int], patch_size: PairLike = 1.0) -> torch.Tensor:
    """Pixel centres ``[h * w, 2]`` (y, x) of a row-major token grid."""
    h, w = int(grid[0]), int(grid[1])
    sy, sx = _pair(patch_size)
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) * sy
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) * sx
    yy, xx = torch.meshgrid(ys, xs, indexing='ij')
    return torch.stack([yy.reshape(-1), xx.reshape(-1)], dim=1)


def pairwise_distances(grid: Sequence[int], patch_size: PairLike = 1.0) -> torch.Tensor:
    """Euclidean pixel distance between every pair of grid tokens, ``[n, n]``."""
    pos = token_positions(grid, patch_size)
    return torch.cdist(pos, pos)


def attention_distance(attn: torch.Tensor,
                       grid: Sequence[int],
                       patch_size: PairLike,
                       num_prefix_tokens: int = 1,
                       renormalize: bool = True) -> torch.Tensor:
    """Average attention distance in pixels per head, ``[heads]``."""
    patch = patch_attention(attn, num_prefix_tokens, renormalize)
    n = int(grid[0]) * int(grid[1])
    if patch.shape[-1] != n:
        raise ValueError(f'{patch.shape[-1]} patch tokens do not fill a {tuple(grid)} grid '
                         f'(num_prefix_tokens={num_prefix_tokens})')
    dist = pairwise_distances(grid, patch_size).to(patch)
    per_query = torch.einsum('bhqk,qk->bhq', patch, dist)
    return per_query.mean(dim=(0, 2))


def distance_spread(distances: torch.Tensor) -> float:
    """Population standard deviation of per-head distances (0 for one head)."""
    return float(torch.as_tensor(distances, dtype=torch.float64).std(unbiased=False))


def head_similarity_matrix(attn: torch.Tensor, num_prefix_tokens: int = 1) -> torch.Tensor:
    """``[heads, heads]`` cosine similarity of the heads' rows, mean over maps and queries."""
    patch = patch_attention(attn, num_prefix_tokens, renormalize=False)
    unit = patch / patch.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    B, _, Q, _ = unit.shape
    return torch.einsum('bhqk,bgqk->hg', unit, unit) / (B * Q)


def _upper_mean(matrix: torch.Tensor) -> float:
    H = matrix.shape[0]
    if H < 2:
        return float('nan')
    i, j = torch.triu_indices(H, H, offset=1)
    return float(matrix[i, j].double().mean())


def _off_diagonal_mean(matrix: torch.Tensor) -> float:
    H = matrix.shape[0]
    if H < 2:
        return float('nan')
    off = ~torch.eye(H, dtype=torch.bool, device=matrix.device)
    return float(matrix[off].double().mean())


def head_similarity(attn: torch.Tensor, num_prefix_tokens: int = 1) -> float:
    """Mean cosine similarity over head pairs h < g (1: identical, 0: disjoint keys)."""
    return _upper_mean(head_similarity_matrix(attn, num_prefix_tokens))


def head_kl_matrix(attn: torch.Tensor,
                   num_prefix_tokens: int = 1,
                   eps: float = 1e-8) -> torch.Tensor:
    """``[heads, heads]``: KL(A_h[q] || A_g[q]) on renormalised rows, mean over maps and
    queries. ``eps`` is added before the logs (and the rows renormalised) to keep
    disjoint heads finite."""
    patch = patch_attention(attn, num_prefix_tokens, renormalize=True).double()
    patch = (patch + eps) / (1 + eps * patch.shape[-1])
    log = patch.log()
    B, _, Q, _ = patch.shape
    cross = torch.einsum('bhqk,bgqk->hg', patch, log) / (B * Q)
    entropy = torch.diagonal(cross)
    return (entropy[:, None] - cross).float()


def head_kl(attn: torch.Tensor, num_prefix_tokens: int = 1) -> float:
    """Mean KL over ordered head pairs h != g."""
    return _off_diagonal_mean(head_kl_matrix(attn, num_prefix_tokens))


def average_attention(attn: torch.Tensor) -> torch.Tensor:
    """``[heads, N, N]``: the maps averaged over the batch (images or windows)."""
    _check(attn)
    return _floating(attn).mean(dim=0)


class _Layer:

    def __init__(self, record: AttentionRecord, geometry: TokenGeometry):
        self.name, self.kind, self.geometry = record.name, record.kind, geometry
        self.num_heads = record.attn.shape[1]
        self.count = 0
        self.distance = 0.
        self.similarity = 0.
        self.kl = 0.
        self.map_sum = 0.


class AttentionStatistics:
    """Streams :class:`AttentionRecord` s into per-layer running means.

    Every quantity is a mean over maps weighted by their number (each map of a
    layer has the same number of queries), so feeding the images in batches
    gives the same numbers as one big batch up to float rounding.

    Args:
        renormalize: see the module docstring (distance only).
        with_kl: also accumulate the KL matrix (a second einsum).
        keep_maps: accumulate averaged maps (``[heads, N, N]`` per layer).
    """

    def __init__(self, renormalize: bool = True, with_kl: bool = True, keep_maps: bool = True):
        self.renormalize = renormalize
        self.with_kl = with_kl
        self.keep_maps = keep_maps
        self.layers: Dict[str, _Layer] = {}

    def add(self, record: AttentionRecord, geometry: TokenGeometry) -> None:
        layer = self.layers.get(record.name)
        if layer is None:
            layer = self.layers[record.name] = _Layer(record, geometry)
        attn, prefix = record.attn, geometry.num_prefix_tokens
        n = attn.shape[0]
        layer.count += n
        layer.distance = layer.distance + n * attention_distance(
            attn, geometry.grid, geometry.stride, prefix, self.renormalize).double().cpu()
        similarity = head_similarity_matrix(attn, prefix).double().cpu()
        layer.similarity = layer.similarity + n * similarity
        if self.with_kl:
            layer.kl = layer.kl + n * head_kl_matrix(attn, prefix).double().cpu()
        if self.keep_maps:
            layer.map_sum = layer.map_sum + attn.double().sum(0).cpu()

    def averaged_maps(self) -> Dict[str, torch.Tensor]:
        return {
            name: (layer.map_sum / layer.count).float()
            for name, layer in self.layers.items() if self.keep_maps
        }

    def summary(self) -> List[dict]:
        """One JSON-ready dict per layer, in forward order."""
        out = []
        for index, layer in enumerate(self.layers.values()):
            distance = layer.distance / layer.count
            similarity = layer.similarity / layer.count
            entry = dict(
                index=index,
                name=layer.name,
                kind=layer.kind,
                num_heads=layer.num_heads,
                grid=list(layer.geometry.grid),
                stride=list(layer.geometry.stride),
                num_prefix_tokens=layer.geometry.num_prefix_tokens,
                num_maps=layer.count,
                distance=_floats(distance),
                distance_mean=_float(distance.mean()),
                distance_spread=distance_spread(distance),
                head_similarity=_float(_upper_mean(similarity)),
                head_similarity_matrix=[_floats(row) for row in similarity])
            if self.with_kl:
                kl = layer.kl / layer.count
                entry['head_kl'] = _float(_off_diagonal_mean(kl))
                entry['head_kl_matrix'] = [_floats(row) for row in kl]
            out.append(entry)
        return out


def _float(value) -> Optional[float]:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value


def _floats(values) -> List[Optional[float]]:
    return [_float(v) for v in values]
