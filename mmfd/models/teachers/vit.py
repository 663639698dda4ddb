"""DINO / DeiT teachers from their official ``.pth`` files, on timm's VisionTransformer.

The official files use timm's key names (``cls_token``, ``pos_embed``,
``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``), so timm's module loads them
without renaming. Accepted nestings: a flat dict (DINO backbone files), ``model``
(DeiT), ``teacher`` with ``backbone.`` / ``module.`` prefixes (DINO full
checkpoints; the ``entry`` option picks the network, 'teacher' by default),
``state_dict``.
"""
import re
from typing import Optional, Sequence, Union

import torch

from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import BaseTeacher
from .builder import check_entry, check_input_size, lookup_arch, unused_keys
from .resampling import POS_EMBED_RESIZE, resample_position_table, resize_options

VIT_ARCHS = {
    'vit_tiny_patch16': dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
    'vit_small_patch16': dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    'vit_small_patch8': dict(patch_size=8, embed_dim=384, depth=12, num_heads=6),
    'vit_base_patch16': dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    'vit_base_patch8': dict(patch_size=8, embed_dim=768, depth=12, num_heads=12),
    'vit_large_patch16': dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16),
    'vit_large_patch14': dict(patch_size=14, embed_dim=1024, depth=24, num_heads=16),
    'vit_huge_patch14': dict(patch_size=14, embed_dim=1280, depth=32, num_heads=16),
}
# Names the releases use for the same networks.
VIT_ARCHS.update({
    'deit_tiny_patch16': VIT_ARCHS['vit_tiny_patch16'],
    'deit_small_patch16': VIT_ARCHS['vit_small_patch16'],
    'deit_base_patch16': VIT_ARCHS['vit_base_patch16'],
    'dino_vits16': VIT_ARCHS['vit_small_patch16'],
    'dino_vits8': VIT_ARCHS['vit_small_patch8'],
    'dino_vitb16': VIT_ARCHS['vit_base_patch16'],
    'dino_vitb8': VIT_ARCHS['vit_base_patch8'],
})
ARCH_KEYS = ('patch_size', 'embed_dim', 'depth', 'num_heads', 'mlp_ratio', 'qkv_bias')

# Classifier heads of DeiT (head, head_dist), old timm pre-logits, DINO projection
# heads left after unwrapping: never part of the feature map.
VIT_UNUSED_KEYS = unused_keys(('head', 'head_dist', 'fc', 'pre_logits'))


def _parse_arch(arch: Union[str, dict]):
    if isinstance(arch, dict):
        unknown = set(arch) - set(ARCH_KEYS) - {'img_size'}
        if unknown or not {'patch_size', 'embed_dim', 'depth', 'num_heads'} <= set(arch):
            raise ConfigError(
                f'ViT arch dict needs patch_size, embed_dim, depth, num_heads (optional '
                f'mlp_ratio, qkv_bias, img_size); got {sorted(arch)}.')
        dims = dict(arch)
        return dims, dims.pop('img_size', None)
    img_size = None
    name = str(arch)
    # timm-style names carry the resolution: vit_base_patch16_224, ..._384
    if name not in VIT_ARCHS and name.rsplit('_', 1)[-1].isdigit():
        name, size = name.rsplit('_', 1)
        img_size = int(size)
    return lookup_arch(name if name in VIT_ARCHS else str(arch), VIT_ARCHS, 'ViT'), img_size


@MODELS.register_module()
class ViTTeacher(BaseTeacher):
    """Plain ViT teacher (DINO, DeiT and any timm-layout ViT checkpoint).

    Args:
        arch (str | dict): default ``vit_base_patch16``; a name of ``VIT_ARCHS``
            (``vit_base_patch16``, ``vit_small_patch16``, ``vit_large_patch14``, ``dino_vitb16``,
            ``deit_base_patch16``..., optionally suffixed ``_224``/``_384``) or a dict
            of ``patch_size, embed_dim, depth, num_heads[, mlp_ratio=4, qkv_bias=True]``.
        checkpoint (str): local ``.pth`` / ``.safetensors`` file.
        img_size (int, optional): input size; defaults to the arch's (224). When it
            differs from the checkpoint's position grid, the position embedding is
            resampled once at load (``pos_embed_resize``).
        dynamic_img_size (bool): accept any input size, interpolating the position
            embedding on every call (timm's ``dynamic_img_size``, which resamples
            with timm's own antialiased bicubic). Default False: other sizes raise
            a ConfigError.
        pos_embed_resize (dict, optional): how the position table is resampled to
            another grid at load: ``dict(mode='bicubic', antialias=False)`` by
            default (the FD release's plain bicubic).
        mean, std (sequence, optional): input statistics (0-255 scale); ImageNet's
            by default, which DINO and DeiT were trained with.
        entry (str, optional): for training files that hold two networks (DINO's
            ``*_full_checkpoint.pth``: ``teacher`` and ``student``), which one to
            load. Default ``'teacher'`` (the EMA network, what DINO's official
            backbone files hold); when set explicitly, a file without that entry
            is an error. The loaded entry is logged.
        allow_random_init (bool): build without a checkpoint (tests only).
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            reading ``checkpoint`` (see :class:`BaseTeacher`).

    Output: ``[B, 1 + h*w, C]`` tokens after the final ``norm`` (LayerNorm eps
    1e-6), CLS first; drop path 0; heads of the file (``head``, ``head_dist``,
    ``fc``, DINO's projection head) are dropped on purpose.
    """
    family = 'vit'
    default_entry = 'teacher'
    default_arch = 'vit_base_patch16'
    file_options = dict(arch=lambda arch: _parse_arch(arch)[0])
    select_prefix = 'backbone.'
    ignored_keys = VIT_UNUSED_KEYS
    key_format_order = 20  # after Swin, whose blocks have the same qkv / patch_embed keys

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 checkpoint: Optional[str] = None,
                 img_size: Optional[int] = None,
                 dynamic_img_size: bool = False,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 allow_random_init: bool = False,
                 entry: Optional[str] = None,
                 pos_embed_resize: Optional[dict] = None,
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
            dynamic_img_size=dynamic_img_size,
            entry=entry,
            pos_embed_resize=pos_embed_resize)

    @staticmethod
    def looks_like(keys) -> bool:
        """timm / DINO / DeiT keys: ``blocks.N.attn.qkv.weight`` and a ``patch_embed.proj``."""
        return any(re.match(r'(.*\.)?blocks\.\d+\.attn\.qkv\.weight$', k)
                   for k in keys) and any(k.endswith('patch_embed.proj.weight') for k in keys)

    def build(self, arch, img_size, dynamic_img_size, entry, pos_embed_resize) -> None:
        self.entry, self.strict_entry = check_entry(entry, self.default_entry)
        self.pos_embed_resize = resize_options(pos_embed_resize, POS_EMBED_RESIZE,
                                               'pos_embed_resize')
        arch = arch if arch is not None else self.default_arch
        dims, arch_img_size = _parse_arch(arch)
        self.arch = arch
        self.explicit_img_size = img_size
        self.img_size = int(img_size or arch_img_size or 224)
        self.patch_size = int(dims['patch_size'])
        self.embed_dim = int(dims['embed_dim'])
        self.has_cls = True
        self.dynamic_img_size = dynamic_img_size
        self.dims = dims
        self.model = self._build_model(self.img_size, random_init=not self.loading)

    def _build_model(self, img_size: int, random_init: bool):
        from timm.models.vision_transformer import VisionTransformer
        if img_size % self.patch_size:
            raise ConfigError(f'{type(self).__name__}: img_size {img_size} is not a multiple '
                              f'of the patch size {self.patch_size}.')
        return VisionTransformer(
            img_size=img_size,
            num_classes=0,
            global_pool='',
            class_token=True,
            dynamic_img_size=self.dynamic_img_size,
            drop_path_rate=0.,
            weight_init='' if random_init else 'skip',
            **self.dims)

    def load_state(self, state_dict: dict, source: str) -> None:
        self._fit_pos_embed(state_dict, source)
        super().load_state(state_dict, source)

    def _fit_pos_embed(self, state_dict: dict, source: str) -> None:
        """Interpolates the checkpoint's position grid when img_size asks for another."""
        pos = state_dict.get('pos_embed')
        target = self.model.pos_embed
        if pos is None or pos.shape == target.shape or self.explicit_img_size is None:
            return  # equal, or a genuine mismatch the strict load reports
        if pos.ndim != 3 or pos.shape[-1] != target.shape[-1]:
            raise CheckpointError(f'{source}: pos_embed {tuple(pos.shape)} cannot be '
                                  f'resized to {tuple(target.shape)}.')
        state_dict['pos_embed'] = self._resample(pos, self.img_size)

    def _resample(self, pos: torch.Tensor, img_size: int) -> torch.Tensor:
        grid = (img_size // self.patch_size, ) * 2
        return resample_position_table(pos, grid, num_prefix_tokens=1, **self.pos_embed_resize)

    def adapt_img_size(self, img_size: int) -> bool:
        """Rebuilds timm's module for ``img_size`` with this teacher's weights (its
        position table resampled once)."""
        if self.dynamic_img_size or int(img_size) == self.img_size:
            return False
        state_dict = self.model.state_dict()
        model = self._build_model(int(img_size), random_init=False)
        state_dict['pos_embed'] = self._resample(state_dict['pos_embed'], int(img_size))
        model.load_state_dict(state_dict)
        self.model, self.img_size = model, int(img_size)
        self.freeze()
        return True

    def export_kwargs(self) -> dict:
        return dict(
            arch=self.arch, img_size=self.img_size, mean=list(self.mean), std=list(self.std))

    def final_norm_module(self):
        return self.model.norm

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        if not self.dynamic_img_size:
            check_input_size(images, (self.img_size, self.img_size), type(self).__name__)
        return self.model.forward_features(images)


@MODELS.register_module()
class DINOTeacher(ViTTeacher):
    """:class:`ViTTeacher` with DINO's default arch (ViT-B/16)."""
    default_arch = 'dino_vitb16'


@MODELS.register_module()
class DeiTTeacher(ViTTeacher):
    """:class:`ViTTeacher` with DeiT's default arch (DeiT-B/16)."""
    default_arch = 'deit_base_patch16'
