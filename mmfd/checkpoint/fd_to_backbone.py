"""FD checkpoint -> backbone checkpoint for mmpretrain / mmdet / mmseg.

An FD checkpoint (what mmengine's CheckpointHook writes for ``FeatureDistiller``)
holds ``state_dict`` with ``backbone.*`` (the student: ``FDViT`` or mmpretrain's
``SwinTransformerV2``) and ``head.*`` (the projection); the teacher is never saved,
and any ``teacher.*`` key a foreign file may carry is dropped here too. Fine-tuning
keeps only the student, as the authors do.

What the conversion does, per student:

* ViT (``FDViT``, BEiTViT parameter names). The shared relative position table
  ``rel_pos_bias.relative_position_bias_table`` is copied into every block's own
  ``layers.{i}.attn.relative_position_bias_table`` (``per_layer_rel_pos=True``,
  the default: every downstream config here fine-tunes with per-layer tables, as the
  release does). Doing it in the file, not through BEiTViT's load hook, makes the
  file load the same way through ``init_cfg`` *and* through ``load_from`` (the hook
  only fires for un-prefixed keys, i.e. only through ``init_cfg`` with a ``prefix``). ``img_size``
  changes the patch grid: the tables are interpolated (BEiT's geometric-progression
  bicubic resampling, the 3 CLS entries kept) and the index buffers regenerated.
* SwinV2: the position bias is continuous (an MLP of log-spaced coordinates), so
  there is no table to interpolate; the derived buffers ``relative_coords_table``
  and ``relative_position_index`` are dropped so that a downstream config may use
  other window sizes (the model rebuilds them from its own window size).

Output layout per ``target`` (keys inside the file):

* ``mmpretrain``: ``state_dict`` with ``backbone.*`` keys, mmpretrain's convention;
  load with ``init_cfg=dict(type='StrictPretrained', checkpoint=..., prefix='backbone.')``
  (or ``load_from`` for the whole classifier).
* ``mmdet`` / ``mmseg``: ``state_dict`` with un-prefixed backbone keys, their
  convention for backbone-only files; load with
  ``init_cfg=dict(type='StrictPretrained', checkpoint=...)`` on the backbone.

With ``safetensors=True`` the same flat dict goes to a ``.safetensors`` file (the
metadata as JSON strings); ``StrictPretrained`` reads both formats.

No file is needed to fine-tune: ``init_cfg=dict(type='StrictPretrained',
checkpoint=FD.pth, convert='fd_vit')`` (or ``'fd_swinv2'``) runs the same conversion
in memory (:func:`fd_to_module`) for the backbone being initialised. Files are for
publishing (``tools/model_converters/convert_fd_checkpoint.py --publish``).
"""
import math
import os
import re
from typing import Dict, Optional, Tuple

import torch

from mmfd.utils.errors import CheckpointError, ConfigError
from .io import load_checkpoint_file, save_safetensors
from .publish import publish_checkpoint
from .unwrap import select_prefix, unwrap_state_dict

StateDict = Dict[str, torch.Tensor]

TARGETS = ('mmpretrain', 'mmdet', 'mmseg')
TARGET_PREFIX = {'mmpretrain': 'backbone.', 'mmdet': '', 'mmseg': ''}
SHARED_TABLE = 'rel_pos_bias.relative_position_bias_table'
SHARED_INDEX = 'rel_pos_bias.relative_position_index'
NUM_CLS_ENTRIES = 3  # BEiT's cls->token, token->cls and cls->cls entries
SWIN_DERIVED_BUFFERS = ('relative_coords_table', 'relative_position_index')


# ----------------------------------------------------------------- reading
def fd_student_of(obj: dict, source: str) -> Tuple[StateDict, dict, list]:
    """The student of an FD checkpoint already read (:func:`load_checkpoint_file`);
    returns (student state dict without the ``backbone.`` prefix, the file's meta
    dict, the dropped keys)."""
    meta = obj.get('meta', {}) if isinstance(obj, dict) else {}
    state = unwrap_state_dict(obj, source=str(source), nesting_keys=('state_dict', ))
    if not any(k.startswith('backbone.') for k in state):
        shown = ', '.join(sorted(state)[:8])
        raise CheckpointError(
            f'{source} has no "backbone.*" key, so it is not an FD checkpoint of '
            f'FeatureDistiller (keys: {shown}{", ..." if len(state) > 8 else ""}). '
            'Pass the .pth that tools/train.py wrote for a configs/fd/* config.')
    student = select_prefix(state, 'backbone.', str(source))
    dropped = sorted(k for k in state if not k.startswith('backbone.'))
    return student, (meta if isinstance(meta, dict) else {}), dropped


def load_fd_student(path, backend_args: Optional[dict] = None) -> Tuple[StateDict, dict, list]:
    """Reads an FD checkpoint (local path or URL, see :func:`load_checkpoint_file`);
    returns what :func:`fd_student_of` does."""
    return fd_student_of(load_checkpoint_file(path, backend_args=backend_args), path)


# ----------------------------------------------------------------- structure
def student_kind(student: StateDict) -> str:
    """'vit' (FDViT / BEiTViT names) or 'swinv2' (mmpretrain SwinTransformerV2)."""
    if any(k.startswith('stages.') for k in student) and any('cpb_mlp' in k for k in student):
        return 'swinv2'
    if (any(k.startswith('layers.') for k in student)
            and 'patch_embed.projection.weight' in student):
        return 'vit'
    raise CheckpointError('Unknown student layout: expected FDViT keys (layers.N.attn.*) or '
                          f'SwinTransformerV2 keys (stages.N.blocks.M.attn.w_msa.cpb_mlp.*); got '
                          f'{", ".join(sorted(student)[:6])}, ...')


def vit_num_layers(student: StateDict) -> int:
    ids = {int(m.group(1)) for k in student for m in [re.match(r'layers\.(\d+)\.', k)] if m}
    return max(ids) + 1


def table_grid(table: torch.Tensor, with_cls: bool = True) -> int:
    """Patch-grid side of a (square) BEiT relative position table."""
    extra = NUM_CLS_ENTRIES if with_cls else 0
    side = math.isqrt(table.shape[0] - extra)
    if side * side != table.shape[0] - extra or side % 2 == 0:
        raise CheckpointError(
            f'Relative position table of shape {tuple(table.shape)} is not the table '
            f'of a square patch grid (expected (2g-1)^2 + {extra} rows).')
    return (side + 1) // 2


def relative_position_index(grid: int, with_cls: bool = True) -> torch.Tensor:
    """The index buffer BEiT builds for a square ``grid`` (same code as the model)."""
    from mmpretrain.models.backbones.beit import RelativePositionBias
    return RelativePositionBias((grid, grid), num_heads=1,
                                with_cls_token=with_cls).relative_position_index.clone()


# ----------------------------------------------------------------- resizing
def _resize_square_table(table: torch.Tensor, src_side: int, dst_side: int) -> torch.Tensor:
    """(src_side^2, nH) -> (dst_side^2, nH), BEiT's geometric-progression bicubic
    resampling. mmpretrain's ``resize_relative_position_bias_table`` is used when
    the installed SciPy still has ``interp2d``; SciPy >= 1.14 removed it, and then
    the same cubic spline fit is done with ``RectBivariateSpline`` (what interp2d
    ran on a regular grid)."""
    from mmpretrain.models.utils import resize_relative_position_bias_table
    num_heads = table.shape[1]
    try:
        return resize_relative_position_bias_table(src_side, dst_side, table.float(),
                                                   num_heads).to(table.dtype)
    except (NotImplementedError, AttributeError, ImportError):
        pass
    import numpy as np
    from scipy.interpolate import RectBivariateSpline

    def geometric_progression(a, r, n):
        return a * (1.0 - r**n) / (1.0 - r)

    left, right = 1.01, 1.5
    while right - left > 1e-6:
        q = (left + right) / 2.0
        if geometric_progression(1, q, src_side // 2) > dst_side // 2:
            right = q
        else:
            left = q
    dis, cur = [], 1
    for i in range(src_side // 2):
        dis.append(cur)
        cur += q**(i + 1)
    coords = np.array([-d for d in reversed(dis)] + [0] + dis)
    t = dst_side // 2.0
    new = np.arange(-t, t + 0.1, 1.0)
    columns = []
    for head in range(num_heads):
        z = table[:, head].view(src_side, src_side).float().numpy()
        # interp2d(x, y, z) has z[row=y, col=x]; the spline wants z[x_i, y_j].
        spline = RectBivariateSpline(coords, coords, z, kx=3, ky=3, s=0)
        columns.append(torch.from_numpy(spline(new, new)).float().reshape(-1, 1))
    return torch.cat(columns, dim=-1).to(table.dtype)


def resize_rel_pos_table(table: torch.Tensor, dst_grid: int, with_cls: bool = True) -> torch.Tensor:
    """Interpolates a BEiT relative position table (CLS entries kept) to ``dst_grid``."""
    src_grid = table_grid(table, with_cls)
    if src_grid == dst_grid:
        return table.clone()
    extra = NUM_CLS_ENTRIES if with_cls else 0
    body, cls_entries = table[:table.shape[0] - extra], table[table.shape[0] - extra:]
    body = _resize_square_table(body, 2 * src_grid - 1, 2 * dst_grid - 1)
    return torch.cat([body, cls_entries], dim=0)


# ----------------------------------------------------------------- conversion
def convert_vit(student: StateDict,
                per_layer_rel_pos: bool = True,
                img_size: Optional[int] = None) -> Tuple[StateDict, dict]:
    """FDViT student -> BEiTViT backbone state dict (see the module docstring)."""
    out = dict(student)
    info = {'student': 'vit', 'per_layer_rel_pos': per_layer_rel_pos}
    if SHARED_TABLE not in out:
        raise CheckpointError(
            f'The ViT student has no shared relative position table ({SHARED_TABLE}); '
            'FD students always have one (FDViT, use_shared_rel_pos_bias=True).')
    table = out.pop(SHARED_TABLE)
    out.pop(SHARED_INDEX, None)
    src_grid = table_grid(table)
    patch = student['patch_embed.projection.weight'].shape[-1]
    dst_grid = src_grid
    if img_size is not None:
        if img_size % patch:
            raise ConfigError(f'img_size={img_size} is not a multiple of the '
                              f'student\'s patch size {patch}.')
        dst_grid = img_size // patch
        table = resize_rel_pos_table(table, dst_grid)
    info.update(patch_size=patch, src_grid=src_grid, grid=dst_grid, img_size=dst_grid * patch)
    index = relative_position_index(dst_grid)
    if per_layer_rel_pos:
        for i in range(vit_num_layers(student)):
            out[f'layers.{i}.attn.relative_position_bias_table'] = table.clone()
            out[f'layers.{i}.attn.relative_position_index'] = index.clone()
    else:
        out[SHARED_TABLE] = table
        out[SHARED_INDEX] = index
    return out, info


def convert_swinv2(student: StateDict) -> Tuple[StateDict, dict]:
    out = {k: v for k, v in student.items() if not k.endswith(SWIN_DERIVED_BUFFERS)}
    return out, {'student': 'swinv2', 'dropped_buffers': len(student) - len(out)}


def fd_to_backbone(student: StateDict,
                   per_layer_rel_pos: bool = True,
                   img_size: Optional[int] = None) -> Tuple[StateDict, dict]:
    """Student state dict -> downstream backbone state dict (no prefix)."""
    kind = student_kind(student)
    if kind == 'vit':
        return convert_vit(student, per_layer_rel_pos, img_size)
    if img_size is not None:
        raise ConfigError('--img-size applies to ViT students only: SwinV2\'s position '
                          'bias is continuous, set window sizes in the downstream config.')
    return convert_swinv2(student)


# ----------------------------------------------------------------- in memory
# StrictPretrained's ``convert`` option -> the student it expects in the file.
CONVERTERS = {'fd_vit': 'vit', 'fd_swinv2': 'swinv2'}


def model_grid(model_state: StateDict) -> Optional[int]:
    """The patch grid a downstream BEiTViT's tables are built for (None: no table)."""
    for key in ('layers.0.attn.relative_position_bias_table', SHARED_TABLE):
        if key in model_state:
            return table_grid(model_state[key])
    return None


def is_converted(obj: dict) -> bool:
    """Whether ``obj`` is :func:`convert_fd_checkpoint`'s output: its meta says so
    (.pth), or a ViT's tables are per block with no shared one (.safetensors)."""
    meta = obj.get('meta') if isinstance(obj, dict) else None
    if isinstance(meta, dict) and 'mmfd_conversion' in meta:
        return True
    keys = list(obj.get('state_dict', obj)) if isinstance(obj, dict) else []
    per_block = any(
        re.search(r'(^|\.)layers\.\d+\.attn\.relative_position_bias_table$', k) for k in keys)
    return per_block and not any(k.endswith(SHARED_TABLE) for k in keys)


def fd_to_module(obj: dict,
                 source: str,
                 convert: str,
                 module,
                 img_size: Optional[int] = None) -> Tuple[StateDict, dict]:
    """An FD checkpoint already read -> the state dict of ``module`` (no prefix).

    The conversion :func:`convert_fd_checkpoint` writes to a file, done in memory for
    the module at hand: its table layout decides per-layer vs shared tables, and
    ``img_size`` defaults to the one its tables are built for (an explicit other one
    is a ConfigError: it could only fail to load).
    """
    if convert not in CONVERTERS:
        raise ConfigError(f'StrictPretrained: convert={convert!r} is not one of '
                          f'{sorted(CONVERTERS)} (None: the file is already a backbone '
                          'checkpoint).')
    if is_converted(obj):
        raise CheckpointError(
            f'{source} is a converted backbone checkpoint '
            '(tools/model_converters/convert_fd_checkpoint.py '
            f'output), not an FD training checkpoint, so convert={convert!r} does not apply: '
            "load it without convert (with prefix='backbone.' for --target mmpretrain "
            'files), or give convert the FD checkpoint itself.')
    student, _, dropped = fd_student_of(obj, source)
    kind = student_kind(student)
    if kind != CONVERTERS[convert]:
        fits = next(name for name, k in CONVERTERS.items() if k == kind)
        raise CheckpointError(f'{source} holds a {kind} FD student, but convert={convert!r} was '
                              f'asked for: use convert={fits!r} (or check the file).')
    if kind == 'swinv2':
        if img_size is not None:
            raise ConfigError("StrictPretrained: img_size applies to convert='fd_vit' only: "
                              "SwinV2's position bias is continuous (set the window sizes "
                              'in the backbone config).')
        backbone, info = convert_swinv2(student)
    else:
        model_state = module.state_dict()
        grid = model_grid(model_state)
        patch = student['patch_embed.projection.weight'].shape[-1]
        if img_size is None and grid is not None:
            img_size = grid * patch
        elif img_size is not None and grid is not None and img_size != grid * patch:
            raise ConfigError(
                f'StrictPretrained: img_size={img_size} gives a {img_size // patch}x'
                f'{img_size // patch} patch grid, but {type(module).__name__}\'s position '
                f'tables are for {grid}x{grid} (img_size={grid * patch}): drop img_size '
                '(it defaults to the backbone\'s) or make it match the backbone.')
        backbone, info = convert_vit(student, SHARED_TABLE not in model_state, img_size)
    info['dropped'] = dropped
    return backbone, info


def convert_fd_checkpoint(src,
                          dst,
                          target: str = 'mmpretrain',
                          per_layer_rel_pos: bool = True,
                          img_size: Optional[int] = None,
                          safetensors: Optional[bool] = None,
                          backend_args: Optional[dict] = None,
                          publish: bool = False) -> dict:
    """Converts the FD checkpoint ``src`` (local or a URL read with ``backend_args``)
    and writes ``dst``; returns a summary (``info['path']``: the file written).

    ``safetensors=None`` picks the format from ``dst``'s extension. ``publish``
    renames the output to ``NAME-<sha256[:8]>.ext`` (:mod:`mmfd.checkpoint.publish`).
    """
    if target not in TARGETS:
        raise ConfigError(f'target must be one of {TARGETS}, got {target!r}')
    student, meta, dropped = load_fd_student(src, backend_args=backend_args)
    backbone, info = fd_to_backbone(student, per_layer_rel_pos, img_size)
    prefix = TARGET_PREFIX[target]
    state_dict = {prefix + k: v.detach().cpu().contiguous() for k, v in backbone.items()}
    info.update(
        target=target,
        prefix=prefix,
        source=os.path.basename(str(src)),
        num_tensors=len(state_dict),
        dropped=dropped)
    out_meta = {'mmfd_conversion': {k: v for k, v in info.items() if k != 'dropped'}}
    for key in ('epoch', 'iter', 'mmengine_version', 'experiment_name'):
        if key in meta:
            out_meta[key] = meta[key]

    if safetensors is None:
        safetensors = str(dst).endswith('.safetensors')
    dirname = os.path.dirname(os.path.abspath(str(dst)))
    os.makedirs(dirname, exist_ok=True)
    if safetensors:
        save_safetensors(state_dict, str(dst), metadata=out_meta)
    else:
        torch.save({'state_dict': state_dict, 'meta': out_meta}, str(dst))
    info['path'] = publish_checkpoint(str(dst)) if publish else str(dst)
    return info
