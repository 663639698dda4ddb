"""A teacher from any mmpretrain backbone + checkpoint (MAE, BEiT, SwinV2, DeiT, ...).

ViT-like backbones (those with ``out_type``) are built with ``out_type='raw'``:
the last output holds every token after the backbone's own final norm. Extra
prefix tokens beyond CLS (DeiT's distillation token) are dropped so that
``tokens[:, 0]`` is CLS and the rest is the patch grid. Feature-map backbones
(Swin, SwinV2, ConvNeXt, ResNet...) return their last output ``[B, C, H, W]``
flattened row-major to ``[B, H*W, C]``, without CLS.
"""
import copy
import inspect
import re
from typing import Optional, Sequence, Union

import torch

from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import BaseTeacher, guess_family, teacher_class_name


def _to_dict(cfg):
    return cfg.to_dict() if hasattr(cfg, 'to_dict') else copy.deepcopy(dict(cfg))


def resolve_backbone_config(config: Union[str, dict]):
    """(backbone cfg, data preprocessor cfg or None) from a config file or dict.

    Accepts a config file path, a full config dict (``model=dict(backbone=...)``),
    a model dict (``dict(type='ImageClassifier', backbone=...)``) or a backbone dict.
    """
    if isinstance(config, str):
        from mmengine.config import Config
        try:
            config = Config.fromfile(config).to_dict()
        except FileNotFoundError as err:
            raise ConfigError(f'mmpretrain config file not found: {config}') from err
    if not isinstance(config, dict):
        raise ConfigError(f'config must be a path or a dict, got {type(config).__name__}')
    config = _to_dict(config)
    preprocessor = config.get('data_preprocessor')
    model = config.get('model', config)
    preprocessor = model.get('data_preprocessor', preprocessor)
    backbone = model.get('backbone', model)
    if not isinstance(backbone, dict) or 'type' not in backbone:
        raise ConfigError("Cannot find the backbone: expected config['model']['backbone'], "
                          "config['backbone'] or a backbone dict with a 'type'.")
    return backbone, preprocessor


@MODELS.register_module()
class MMPretrainTeacher(BaseTeacher):
    """Any mmpretrain backbone as a teacher.

    Args:
        config (str | dict): mmpretrain config file, full config dict, model dict
            or backbone dict.
        checkpoint (str): mmpretrain checkpoint (``state_dict`` with ``backbone.``
            keys; heads, necks and other modules are dropped on purpose) or a bare
            backbone state dict / converted ``.safetensors``.
        backbone_overrides (dict, optional): merged into the backbone config last.
        img_size (int, optional): input size of the teacher; default the
            backbone config's ``img_size`` or 224.
        mean, std (sequence, optional): default the config's ``data_preprocessor``
            mean/std, else ImageNet's (0-255 scale).
        allow_random_init (bool): build without a checkpoint (tests only).
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            reading ``checkpoint`` (see :class:`BaseTeacher`).

    ``patch_size`` (token stride) and ``embed_dim`` are measured by one forward
    pass at ``img_size`` when the teacher is built. mmpretrain's own load hooks
    (position embedding / relative table resizing) apply as in mmpretrain.
    """
    family = 'mmpretrain'
    file_options = dict(config=None)
    required_options = dict(config='mmpretrain config file or backbone dict')
    network = 'backbone'
    select_prefix = 'backbone.'
    # Any backbone may sit in an mmpretrain file: a foreign-looking file is tried, and
    # only a failed load says which teacher it looks like.
    refuse_other_families = False
    key_format_order = 30

    def __init__(self,
                 config: Union[str, dict, None] = None,
                 checkpoint: Optional[str] = None,
                 backbone_overrides: Optional[dict] = None,
                 img_size: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 allow_random_init: bool = False,
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
            config=config,
            backbone_overrides=backbone_overrides)
        self._probe()  # after the freeze: in eval mode, with the loaded weights

    @staticmethod
    def looks_like(keys) -> bool:
        """mmpretrain backbone keys: ``layers.N.`` / ``stages.N.`` with mmcv's
        ``patch_embed.projection`` or Swin's ``w_msa``."""
        return any(re.match(r'(.*\.)?(layers|stages)\.\d+\.', k)
                   for k in keys) and any('patch_embed.projection.weight' in k or '.w_msa.' in k
                                          for k in keys)

    def build(self, config, backbone_overrides, img_size) -> None:
        backbone_cfg, preprocessor = resolve_backbone_config(config)
        backbone_cfg.pop('init_cfg', None)  # weights come from `checkpoint` only
        backbone_cls = MODELS.get(backbone_cfg['type'])
        if backbone_cls is None:
            raise ConfigError(f"Unknown mmpretrain backbone type {backbone_cfg['type']!r}.")
        if 'raw' in getattr(backbone_cls, 'OUT_TYPES', ()):
            backbone_cfg['out_type'] = 'raw'
        backbone_cfg.update(backbone_overrides or {})
        self.backbone_cfg = backbone_cfg
        self.backbone = MODELS.build(copy.deepcopy(backbone_cfg))
        self._forward_kwargs = ({
            'mask': None
        } if 'mask' in inspect.signature(self.backbone.forward).parameters else {})
        if preprocessor and 'mean' in preprocessor:
            # the statistics the classifier was trained with
            self.default_mean, self.default_std = preprocessor['mean'], preprocessor['std']
        self.img_size = int(img_size or _first_int(backbone_cfg.get('img_size')) or 224)

    def load_state(self, state_dict: dict, source: str) -> None:
        try:
            super().load_state(state_dict, source)
        except CheckpointError as err:
            family = guess_family(state_dict)
            if family not in (None, self.family):
                raise CheckpointError(f'{err}\n{source} looks like a {family} checkpoint, not an '
                                      f'mmpretrain one: use {teacher_class_name(family)}.') from err
            raise

    def _probe(self) -> None:
        """Measures width, stride and token layout with one forward pass."""
        param = next(self.backbone.parameters())
        probe = torch.zeros(
            1, 3, self.img_size, self.img_size, dtype=param.dtype, device=param.device)
        with torch.no_grad():
            out = self._last_output(probe)
        if out.ndim == 4:
            self.has_cls, self.num_extra_tokens = False, 0
            self.embed_dim, grid = out.shape[1], out.shape[2]
        elif out.ndim == 3:
            self.num_extra_tokens = int(getattr(self.backbone, 'num_extra_tokens', 0))
            self.has_cls = self.num_extra_tokens > 0
            self.embed_dim = out.shape[2]
            grid = round((out.shape[1] - self.num_extra_tokens)**0.5)
        else:
            raise ConfigError(
                f'{type(self.backbone).__name__} returns a {out.ndim}-D output; a teacher '
                'needs a token map [B, N, C] or feature map [B, C, H, W] (set its '
                "out_type='raw' or 'featmap').")
        self.patch_size = self.img_size // grid

    def _last_output(self, images: torch.Tensor) -> torch.Tensor:
        outs = self.backbone(images, **self._forward_kwargs)
        return outs[-1] if isinstance(outs, (tuple, list)) else outs

    def export_kwargs(self) -> dict:
        return dict(
            config=self.backbone_cfg,
            img_size=self.img_size,
            mean=list(self.mean),
            std=list(self.std))

    def final_norm_module(self):
        bb = self.backbone
        if getattr(bb, 'final_norm', False) and hasattr(bb, 'ln1'):
            return bb.ln1  # ViT / BEiT / DeiT: norm over all tokens
        indices = getattr(bb, 'out_indices', None)
        if indices is not None and hasattr(bb, f'norm{indices[-1]}'):
            return getattr(bb, f'norm{indices[-1]}')  # Swin-style per-stage norm
        return None

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        out = self._last_output(images)
        if out.ndim == 4:
            return out.flatten(2).transpose(1, 2)
        if self.num_extra_tokens > 1:  # keep CLS, drop distillation/register tokens
            out = torch.cat([out[:, :1], out[:, self.num_extra_tokens:]], dim=1)
        return out


def _first_int(value) -> Optional[int]:
    if isinstance(value, (tuple, list)):
        value = value[0]
    return int(value) if isinstance(value, int) else None
