"""Swin / EsViT teachers from official Swin-layout checkpoints, on timm's SwinTransformer.

Official Swin and EsViT files put patch merging at the END of stage N
(``layers.N.downsample.*``); timm puts it at the START of stage N+1. The file is
renamed by :func:`mmfd.checkpoint.teacher_formats.swin_official_to_timm` (timm's own
renaming, minus its silent table resizing), so a wrong window size is a shape error.
Files already in timm's layout (e.g. converted teachers) load unchanged.
"""
from typing import Optional, Sequence, Union

import torch

from mmfd.checkpoint import load_checkpoint_file, load_state_dict_strict, unwrap_state_dict
from mmfd.checkpoint.teacher_formats import check_family, swin_official_to_timm
from mmfd.registry import MODELS
from mmfd.utils.errors import ConfigError
from .base import IMAGENET_MEAN, IMAGENET_STD, BaseTeacher
from .builder import (check_entry, check_input_size, lookup_arch, merge_converted_options,
                      require_checkpoint, unused_keys)

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

    Output: ``[B, h*w, C]`` tokens, row-major over the grid, no CLS token.
    """
    family = 'swin'
    default_entry = 'student'
    default_arch = 'swin_base'

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
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        self.entry, self.strict_entry = check_entry(entry, self.default_entry)
        from timm.models.swin_transformer import SwinTransformer
        options = merge_converted_options(
            checkpoint,
            self.family,
            dict(arch=arch, window_size=window_size, img_size=img_size, mean=mean, std=std),
            must_match=dict(arch=_arch_dims))
        arch, window_size, img_size, mean, std = (
            options[k] for k in ('arch', 'window_size', 'img_size', 'mean', 'std'))
        arch = arch if arch is not None else self.default_arch
        load = require_checkpoint(checkpoint, allow_random_init, type(self).__name__)

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
        self.mean = tuple(mean) if mean is not None else IMAGENET_MEAN
        self.std = tuple(std) if std is not None else IMAGENET_STD
        if self.img_size % (int(dims.get('patch_size', 4)) * 2**(num_stages - 1)):
            raise ConfigError(f'img_size {self.img_size} must be a multiple of the '
                              f'network stride.')

        self.model = SwinTransformer(
            img_size=self.img_size,
            num_classes=0,
            drop_path_rate=0.,
            weight_init='skip' if load else '',
            **{
                k: tuple(v) if isinstance(v, list) else v
                for k, v in dims.items()
            })
        if load:
            self.load_checkpoint(checkpoint)
        self.freeze()

    def load_checkpoint(self, checkpoint: str) -> None:
        state_dict = unwrap_state_dict(
            load_checkpoint_file(checkpoint),
            source=checkpoint,
            select_prefix='backbone.',
            entry=self.entry,
            strict_entry=self.strict_entry)
        check_family(state_dict, self.family, checkpoint)
        state_dict = swin_official_to_timm(state_dict)
        load_state_dict_strict(self.model, state_dict, checkpoint, ignore=SWIN_UNUSED_KEYS)

    def export_kwargs(self) -> dict:
        return dict(
            arch=self.arch,
            window_size=self.window_size,
            img_size=self.img_size,
            out_stage=self.out_stage,
            mean=list(self.mean),
            std=list(self.std))

    def export_state_dict(self) -> dict:
        return self.model.state_dict()

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
