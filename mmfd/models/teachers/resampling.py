"""How a teacher is resized: its absolute position table, and the image it is fed.

Both follow the FD release by default:

- a position table is resampled to another grid with plain bicubic interpolation
  (``F.interpolate(mode='bicubic', align_corners=False)``, no antialiasing). timm's
  ``resample_abs_pos_embed`` antialiases by default, which changes even an
  upsampled table (PyTorch's antialiased bicubic uses another kernel): at 256 px a
  CLIP-B teacher's tokens move by ~3e-2 between the two;
- the teacher's view, when FD feeds it another size than the crop (``align=
  'resize_input'`` with a teacher patch that differs from the student's), is resized
  bilinearly with antialiasing, as torchvision's ``Resize`` does on the release's
  tensors.

Each is an option (``pos_embed_resize`` on the ViT/CLIP teachers,
``teacher_view_resize`` on ``FeatureDistiller``): ``dict(mode=..., antialias=...)``.
"""
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from mmfd.utils.errors import ConfigError

POS_EMBED_RESIZE = dict(mode='bicubic', antialias=False)
TEACHER_VIEW_RESIZE = dict(mode='bilinear', antialias=True)
_MODES = ('bicubic', 'bilinear')


def resize_options(cfg: Optional[dict], default: dict, option: str) -> dict:
    """``default`` updated with ``cfg``; unknown keys or modes name the option."""
    merged = dict(default)
    merged.update(cfg or {})
    unknown = set(merged) - {'mode', 'antialias'}
    if unknown:
        raise ConfigError(f'{option} takes mode and antialias; got {sorted(unknown)}.')
    if merged['mode'] not in _MODES:
        raise ConfigError(f'{option}.mode={merged["mode"]!r} is not one of {_MODES}.')
    merged['antialias'] = bool(merged['antialias'])
    return merged


def resize_image(images: torch.Tensor, size: Tuple[int, int], mode: str,
                 antialias: bool) -> torch.Tensor:
    """[B, 3, H, W] -> [B, 3, *size] (align_corners=False, as torchvision)."""
    return F.interpolate(
        images, size=tuple(size), mode=mode, align_corners=False, antialias=antialias)


def resample_position_table(table: torch.Tensor,
                            grid: Tuple[int, int],
                            num_prefix_tokens: int,
                            mode: str = 'bicubic',
                            antialias: bool = False) -> torch.Tensor:
    """A square position table ``[(1,) prefix + g*g, C]`` -> the same layout on ``grid``.

    The prefix rows (CLS) are kept; the grid part is interpolated in float32.
    """
    batched = table.dim() == 3
    rows = table[0] if batched else table
    prefix, patches = rows[:num_prefix_tokens], rows[num_prefix_tokens:]
    old = round(patches.shape[0]**0.5)
    if old * old != patches.shape[0]:
        raise ConfigError(f'A position table of {patches.shape[0]} grid rows is not square.')
    if (old, old) == tuple(grid):
        return table
    channels = patches.shape[-1]
    fmap = patches.float().reshape(1, old, old, channels).permute(0, 3, 1, 2)
    fmap = F.interpolate(
        fmap, size=tuple(grid), mode=mode, align_corners=False, antialias=antialias)
    patches = fmap.permute(0, 2, 3, 1).reshape(-1, channels).to(table.dtype)
    rows = torch.cat([prefix, patches], dim=0)
    return rows[None] if batched else rows
