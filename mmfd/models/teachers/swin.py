"""Swin / EsViT teachers from official Swin-layout checkpoints, on timm's SwinTransformer.

Official Swin and EsViT files put patch merging at the END of stage N
(``layers.N.downsample.*``); timm puts it at the START of stage N+1. The file is
renamed by :func:`swin_official_to_timm` (timm's own renaming, minus its silent
table resizing), so a wrong window size is a shape error. Files already in timm's
layout (e.g. converted teachers) load unchanged.
"""
import re
from typing import Dict, Optional, Sequence, Union

import torch

from mmfd.registry import MODELS
from mmfd.utils.errors import ConfigError
from .base import BaseTeacher
from .builder import check_entry, check_input_size, lookup_arch, unused_keys

_SWIN_B = dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32))
_SWIN_T = dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24))
_SWIN_S = dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24))
SWIN_ARCHS = {
    'swin_tiny': dict(_SWIN_T, window_size=7),
    'swin_small': dict(_SWIN_S, window_size=7),
    'swin_base': dict(_SWIN_B, window_size=7),
    'swin_large':
    dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=7),
    # EsViT's releases: Swin-T with window 7 and 14, Swin-S/B with window 14.
    'esvit_swin_tiny_w7': dict(_SWIN_T, window_size=7),
    'esvit_swin_tiny': dict(_SWIN_T, window_size=14),
    'esvit_swin_small': dict(_SWIN_S, window_size=14),
    'esvit_swin_base': dict(_SWIN_B, window_size=14),
}
ARCH_KEYS = ('embed_dim', 'depths', 'num_heads', 'window_size', 'patch_size', 'mlp_ratio')

# Classifier (official 'head', timm 'head.fc'), EsViT's view- and region-level
# projection heads ('head', 'head_dense') left after unwrapping.
SWIN_UNUSED_KEYS = unused_keys(('head', 'head_dense'))


def _arch_dims(arch: Union[str, dict]) -> dict:
    if not isinstance(arch, dict):
        return lookup_arch(arch, SWIN_ARCHS, 'Swin')
    dims = dict(arch)
    missing = {'embed_dim', 'depths', 'num_heads', 'window_size'} - set(dims)
    if missing or set(dims) - set(ARCH_KEYS):
        raise ConfigError(f'Swin arch dict needs embed_dim, depths, num_heads, window_size '
                          f'(optional patch_size, mlp_ratio); got {sorted(dims)}.')
    return dims


@MODELS.register_module()
class SwinTeacher(BaseTeacher):
    """Swin Transformer teacher (EsViT, or any official-layout Swin checkpoint).

    Args:
        arch (str | dict): default ``swin_base``; a name of ``SWIN_ARCHS``
            (``swin_tiny/small/base/large``, ``esvit_swin_base`` = Swin-B window 14,
            ``esvit_swin_tiny``, ``esvit_swin_small``, ``esvit_swin_tiny_w7``) or a
            dict of ``embed_dim, depths, num_heads, window_size[, patch_size=4,
            mlp_ratio=4]``.
        checkpoint (str): local ``.pth`` / ``.safetensors`` file (official or timm
            layout; nested under ``teacher``/``model``/``state_dict`` with
            ``module.``/``backbone.`` prefixes is fine).
        window_size (int, optional): overrides the arch's window size.
        img_size (int): input size (224). Swin's windows and masks are built for it;
            other input sizes raise a ConfigError.
        out_stage (int): 4 (default): the last stage after the final ``norm``
            (Swin-B: 7x7x1024 at 224). 3: the output of stage 3's blocks, before the
            patch merging that starts stage 4 (Swin-B: 14x14x512, a 16-pixel grid for
            ViT/16 students). No norm is applied at stage 3: the checkpoint has no
            norm trained for that width, and the FD head whitens the target anyway.
        mean, std (sequence, optional): ImageNet's by default (EsViT's training).
        entry (str, optional): for EsViT training files (``teacher`` and
            ``student`` entries), which network to load. Default ``'student'``:
            the FD release distils from EsViT's student entry, not the EMA
            teacher. When set explicitly, a file without that entry is an error.
            The loaded entry is logged.
        allow_random_init (bool): build without a checkpoint (tests only).
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            reading ``checkpoint`` (see :class:`BaseTeacher`).

    Output: ``[B, h*w, C]`` tokens, row-major over the grid, no CLS token.
    """
    family = 'swin'
    default_entry = 'student'
    default_arch = 'swin_base'
    file_options = dict(arch=_arch_dims, window_size=None)
    select_prefix = 'backbone.'
    ignored_keys = SWIN_UNUSED_KEYS
    key_format_order = 10  # before ViT: Swin blocks also have blocks.N.attn.qkv keys

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 checkpoint: Optional[str] = None,
                 window_size: Optional[int] = None,
                 img_size: Optional[int] = None,
                 out_stage: int = 4,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 allow_random_init: bool = False,
                 entry: Optional[str] = None,
                 backend_args: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            checkpoint,
            img_size=img_size,
            mean=mean,
            std=std,
            allow_random_init=allow_random_init,
            backend_args=backend_args,
            init_cfg=init_cfg,
            arch=arch,
            window_size=window_size,
            out_stage=out_stage,
            entry=entry)

    @staticmethod
    def looks_like(keys) -> bool:
        """Swin keys (official or timm): a relative position table in ``layers.N.blocks.M``."""
        return any(
            re.match(r'(.*\.)?layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$', k)
            for k in keys)

    def build(self, arch, window_size, img_size, out_stage, entry) -> None:
        self.entry, self.strict_entry = check_entry(entry, self.default_entry)
        from timm.models.swin_transformer import SwinTransformer
        arch = arch if arch is not None else self.default_arch
        dims = _arch_dims(arch)
        if window_size is not None:
            dims['window_size'] = int(window_size)
        num_stages = len(dims['depths'])
        if out_stage not in (num_stages, num_stages - 1):
            raise ConfigError(f'out_stage must be {num_stages} (last stage, after the final '
                              f'norm) or {num_stages - 1}, got {out_stage}.')

        self.arch = arch
        self.window_size = dims['window_size']
        self.out_stage = out_stage
        self.img_size = int(img_size or 224)
        self.patch_size = int(dims.get('patch_size', 4)) * 2**(out_stage - 1)
        self.embed_dim = int(dims['embed_dim']) * 2**(out_stage - 1)
        self.has_cls = False
        if self.img_size % (int(dims.get('patch_size', 4)) * 2**(num_stages - 1)):
            raise ConfigError(f'img_size {self.img_size} must be a multiple of the '
                              f'network stride.')

        self.model = SwinTransformer(
            img_size=self.img_size,
            num_classes=0,
            drop_path_rate=0.,
            weight_init='skip' if self.loading else '',
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in dims.items()
            })

    def load_state(self, state_dict: dict, source: str) -> None:
        super().load_state(swin_official_to_timm(state_dict), source)

    def export_kwargs(self) -> dict:
        return dict(
            arch=self.arch,
            window_size=self.window_size,
            img_size=self.img_size,
            out_stage=self.out_stage,
            mean=list(self.mean),
            std=list(self.std))

    def final_norm_module(self):
        # Stage 3 has no norm of its own (see out_stage).
        return self.model.norm if self.out_stage == len(self.model.layers) else None

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        check_input_size(images, (self.img_size, self.img_size), type(self).__name__)
        x = self.model.patch_embed(images)  # NHWC
        for stage in self.model.layers[:self.out_stage]:
            x = stage(x)
        if self.out_stage == len(self.model.layers):
            x = self.model.norm(x)
        return x.flatten(1, 2)


@MODELS.register_module()
class EsViTTeacher(SwinTeacher):
    """:class:`SwinTeacher` with EsViT's default arch (Swin-B, window 14)."""
    default_arch = 'esvit_swin_base'


# ------------------------------------------------------------------ key formats
def is_official_swin_layout(state_dict: Dict) -> bool:
    """Official Swin/EsViT files have a merging layer in stage 0, timm's never do."""
    return 'layers.0.downsample.reduction.weight' in state_dict


def swin_official_to_timm(state_dict: Dict) -> Dict:
    """Official Swin / EsViT keys -> timm ``SwinTransformer`` keys.

    ``layers.N.downsample.*`` (end of stage N) becomes ``layers.N+1.downsample.*``
    (start of stage N+1); the classifier ``head.*`` becomes ``head.fc.*``; the
    ``relative_position_index`` and ``attn_mask`` buffers, which timm rebuilds, are
    dropped. A dict already in timm's layout passes through (buffers dropped).
    Same renaming as ``timm.models.swin_transformer.checkpoint_filter_fn`` but with
    no silent resizing, so that a wrong window size or patch size is a shape error
    instead of an interpolated table.
    """
    official = is_official_swin_layout(state_dict)
    out = {}
    for key, value in state_dict.items():
        if key.endswith(('relative_position_index', 'attn_mask')):
            continue
        if official:
            key = re.sub(r'^layers\.(\d+)\.downsample',
                         lambda m: f'layers.{int(m.group(1)) + 1}.downsample', key)
            key = re.sub(r'^head\.', 'head.fc.', key)
        out[key] = value
    return out


def swin_timm_to_official(state_dict: Dict) -> Dict:
    """Inverse of :func:`swin_official_to_timm` (without the dropped buffers)."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r'^layers\.(\d+)\.downsample',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample', key)
        key = re.sub(r'^head\.fc\.', 'head.', key)
        out[key] = value
    return out
