"""Paper-style figures of the diagnostics (matplotlib, Agg canvas, no pyplot state).

Every function returns a :class:`matplotlib.figure.Figure`; :func:`save_figure`
writes it, :func:`figure_to_rgb` gives the ``[H, W, 3]`` uint8 array mmengine's
visualizer backends take.
"""
import math
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence

import numpy as np

if TYPE_CHECKING:  # annotations only: matplotlib and torch load lazily
    import torch
    from matplotlib.figure import Figure


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    fig = Figure(figsize=(width, height), dpi=100, layout='constrained')
    FigureCanvasAgg(fig)
    return fig


def _colors(n: int):
    from matplotlib import colormaps
    cmap = colormaps['tab10']
    return [cmap(i % 10) for i in range(n)]


def save_figure(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, bbox_inches='tight')
    return path


def figure_to_rgb(fig) -> np.ndarray:
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def plot_attention_distance(results: Mapping[str, Sequence[Sequence[float]]],
                            title: str = 'Average attention distance') -> 'Figure':
    """One dot per head at each depth, one colour per model.

    ``results``: label -> per layer, the per-head distances in pixels.
    """
    depth = max((len(v) for v in results.values()), default=1)
    fig = _figure(max(6.0, 0.45 * depth + 2), 4.2)
    ax = fig.add_subplot()
    n = max(len(results), 1)
    for k, ((label, layers), color) in enumerate(zip(results.items(), _colors(n))):
        offset = (k - (n - 1) / 2) * min(0.6 / n, 0.2)
        xs, ys = [], []
        for index, heads in enumerate(layers):
            values = [v for v in heads if v is not None]
            xs += [index + 1 + offset] * len(values)
            ys += values
        ax.scatter(xs, ys, s=18, color=color, alpha=0.8, label=label, edgecolors='none')
    ax.set_xlabel('layer (depth)')
    ax.set_ylabel('attention distance (pixels)')
    ax.set_title(title)
    ax.set_xticks(range(1, depth + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_head_diversity(results: Mapping[str, Sequence[Optional[float]]],
                        ylabel: str = 'mean cosine similarity between heads',
                        title: str = 'Head diversity (lower = more diverse)') -> 'Figure':
    """One curve per model: ``label -> per-layer value``."""
    depth = max((len(v) for v in results.values()), default=1)
    fig = _figure(max(6.0, 0.45 * depth + 2), 4.2)
    ax = fig.add_subplot()
    for (label, values), color in zip(results.items(), _colors(max(len(results), 1))):
        ys = [np.nan if v is None else v for v in values]
        ax.plot(range(1, len(ys) + 1), ys, marker='o', ms=4, color=color, label=label)
    ax.set_xlabel('layer (depth)')
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.set_xticks(range(1, depth + 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _pick(n: int, k: Optional[int]) -> list:
    if k is None or n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [n - 1]


def plot_attention_maps(maps: Mapping[str, 'torch.Tensor'],
                        prefix: Mapping[str, int],
                        max_layers: Optional[int] = 12,
                        max_heads: Optional[int] = 16,
                        title: str = 'Averaged attention maps') -> 'Figure':
    """Grid of averaged maps: rows = layers, columns = heads.

    ``maps``: layer name -> ``[heads, N, N]``; ``prefix``: layer name -> number of
    prefix tokens to drop before drawing (the patch-to-patch block is shown, so
    relative-position attention appears as diagonal stripes). Each cell has its
    own colour scale (max = its largest weight).
    """
    names = list(maps)
    rows = [names[i] for i in _pick(len(names), max_layers)]
    heads = max((maps[n].shape[0] for n in rows), default=1)
    cols = _pick(heads, max_heads)
    cell = 1.3
    fig = _figure(cell * len(cols) + 1.5, cell * max(len(rows), 1) + 0.8)
    for r, name in enumerate(rows):
        p = int(prefix.get(name, 0))
        layer = maps[name][:, p:, p:].float().cpu().numpy()
        for c, head in enumerate(cols):
            ax = fig.add_subplot(len(rows), len(cols), r * len(cols) + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if head < layer.shape[0]:
                image = layer[head]
                ax.imshow(
                    image,
                    cmap='viridis',
                    vmin=0,
                    vmax=max(float(image.max()), 1e-12),
                    interpolation='nearest')
            else:
                ax.axis('off')
            if r == 0:
                ax.set_title(f'h{head}', fontsize=7)
            if c == 0:
                ax.set_ylabel(f'L{names.index(name) + 1}', fontsize=7)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_landscape_1d(results: Mapping[str, dict],
                      title: str = 'Loss along a filter-normalised direction') -> 'Figure':
    """``results``: label -> :func:`mmfd.diagnostics.landscape.loss_landscape` dict (dim 1)."""
    fig = _figure(6.0, 4.2)
    ax = fig.add_subplot()
    for (label, res), color in zip(results.items(), _colors(max(len(results), 1))):
        sharp = res.get('sharpness', {})
        extra = f" (curvature {sharp['curvature']:.3g})" if 'curvature' in sharp else ''
        ax.plot(res['alphas'], res['losses'], marker='.', color=color, label=label + extra)
    ax.set_xlabel('alpha')
    ax.set_ylabel('loss')
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def plot_landscape_2d(results: Mapping[str, dict],
                      title: str = 'Loss surface (filter-normalised directions)') -> 'Figure':
    """One contour panel per model (label -> 2-D ``loss_landscape`` dict)."""
    n = max(len(results), 1)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = _figure(4.6 * cols, 4.0 * rows)
    for k, (label, res) in enumerate(results.items()):
        ax = fig.add_subplot(rows, cols, k + 1)
        a, b = np.asarray(res['alphas']), np.asarray(res['betas'])
        z = np.asarray(res['losses'], dtype=np.float64)
        B, A = np.meshgrid(b, a)  # z is indexed [alpha][beta]
        contour = ax.contourf(A, B, z, levels=20, cmap='viridis')
        ax.contour(A, B, z, levels=20, colors='k', linewidths=0.3)
        fig.colorbar(contour, ax=ax, shrink=0.85)
        ax.set_title(label, fontsize=9)
        ax.set_xlabel('alpha')
        ax.set_ylabel('beta')
        ax.set_aspect('equal')
    fig.suptitle(title, fontsize=10)
    return fig
