"""Any timm vision transformer as an FD teacher: DINOv2(-reg), DINOv3, SigLIP / SigLIP 2,
EVA-02(-CLIP), AIMv2, Perception Encoder, C-RADIO, plain ViTs.

The network is built by timm's own factory, ``timm.create_model(name, pretrained=True)``,
with the checkpoint handed over as an in-memory state dict: mmfd reads the file
(``weights_only`` / safetensors, local or through ``mmengine.fileio``), and timm
applies the model's own ``checkpoint_filter_fn`` (which converts the official
DINOv2 / DINOv3 / EVA / AIMv2 / PE / RADIO layouts to timm's) and loads strictly.
Nothing is fetched from a hub. Big-vision ``.npz`` files (SigLIP) are read by timm's
own npz loader (numpy, no pickle).

What the teacher returns (``forward_tokens``): the last block's tokens after the
model's final ``norm`` (``norm=True`` of timm's ``forward_intermediates``), as
``[CLS] + patches``. Per family:

* register / storage tokens (DINOv2-reg, DINOv3, RADIO) are never part of the
  target: they carry no position and have no counterpart in the student;
* teachers without a class token (SigLIP, AIMv2) give a patch-only target, or with
  ``cls_target='pooled'`` their pooled output (MAP head / average, timm's
  ``forward_head(pre_logits=True)``) stands in for the CLS token;
* "after the final norm" is timm's ``model.norm``; families that moved their last
  norm after pooling (EVA-02 MIM's ``fc_norm``) or have none (PE-Spatial, RADIO)
  have an identity there, so the target is the last block's output.

Input statistics are the model's own pretrained config (SigLIP and PE: 0.5 / 0.5;
EVA-02-CLIP, AIMv2, RADIO: OpenAI CLIP's; DINO: ImageNet's), never a default.
"""
import difflib
import logging
import os
from typing import Optional, Sequence

import torch
from mmengine.logging import print_log

from mmfd.checkpoint import load_checkpoint_file, unwrap_state_dict
from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import BaseTeacher
from .builder import check_input_size, merge_converted_options, require_checkpoint

CLS_TARGETS = ('auto', 'token', 'pooled', 'none')


def _position_rows(state_dict: dict):
    """Rows of a timm-layout absolute position table in a state dict, else None."""
    pos = state_dict.get('pos_embed')
    return pos.shape[-2] if isinstance(pos, torch.Tensor) and pos.dim() >= 2 else None


def _timm_name(model: str) -> str:
    """The architecture part of a timm name (``vit_base_patch16_siglip_224.v2_webli``
    -> ``vit_base_patch16_siglip_224``), checked against timm's registry."""
    import timm
    arch = str(model).split('.', 1)[0]
    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
        raise ConfigError(f'TimmTeacher: {model!r} is not a timm model name.{hint} See '
                          "timm.list_models('*dinov2*') and friends.")
    return arch


@MODELS.register_module()
class TimmTeacher(BaseTeacher):
    """A timm ViT / EVA model loaded from a local file, frozen.

    Args:
        model (str): a timm model name, optionally with its pretrained tag
            (``'vit_base_patch14_reg4_dinov2.lvd142m'``,
            ``'vit_base_patch16_siglip_224.v2_webli'``, ``'vit_base_patch16_dinov3'``,
            ``'eva02_large_patch14_clip_224'``, ``'vit_pe_core_large_patch14_336'``...).
            The tag selects the pretrained config (statistics, input size).
        checkpoint (str): the weights: ``.safetensors`` / ``.pth`` / ``.bin`` in the
            official or the timm layout (timm's filter converts), or a big-vision
            ``.npz`` for the families timm reads them for.
        img_size (int, optional): input size; default the pretrained config's
            (518 for DINOv2, 256 for DINOv3...). Absolute position tables are resampled
            by timm's filter at load; RoPE teachers need nothing.
        dynamic_img_size (bool): accept any input size (timm resamples per call).
        cls_target (str): what stands first in the target: ``'auto'`` (the class
            token when the model has one, else nothing: patch-only), ``'token'``
            (require a class token), ``'pooled'`` (the pooled output, e.g. SigLIP's
            MAP head), ``'none'`` (patch-only).
        mean, std (sequence, optional): override the pretrained config's statistics
            (0-255 scale). Leave unset unless the weights were trained otherwise.
        model_kwargs (dict, optional): more ``timm.create_model`` arguments (tests
            shrink ``depth`` / ``embed_dim`` with it).
        allow_random_init (bool): build without a checkpoint (tests only).
    """
    family = 'timm'

    def __init__(self,
                 model: str,
                 checkpoint: Optional[str] = None,
                 img_size: Optional[int] = None,
                 dynamic_img_size: bool = False,
                 cls_target: str = 'auto',
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 model_kwargs: Optional[dict] = None,
                 allow_random_init: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        if cls_target not in CLS_TARGETS:
            raise ConfigError(f'TimmTeacher: cls_target={cls_target!r} is not one of '
                              f'{CLS_TARGETS}.')
        options = merge_converted_options(
            checkpoint,
            self.family,
            dict(model=model, img_size=img_size, mean=mean, std=std, model_kwargs=model_kwargs),
            must_match=dict(model=_timm_name))
        model, img_size, mean, std, model_kwargs = (
            options[k] for k in ('model', 'img_size', 'mean', 'std', 'model_kwargs'))
        _timm_name(model)
        load = require_checkpoint(checkpoint, allow_random_init, type(self).__name__)
        self.model_name = model
        self.model_kwargs = dict(model_kwargs or {})
        self.dynamic_img_size = dynamic_img_size
        self.model = self._create(model, checkpoint if load else None, img_size)

        net = self.model
        if not hasattr(net, 'forward_intermediates') or not hasattr(net, 'patch_embed'):
            raise ConfigError(f'TimmTeacher: {model} is not a token-map (ViT/EVA) model.')
        self.patch_size = int(net.patch_embed.patch_size[0])
        self.img_size = int(net.patch_embed.img_size[0])
        self.embed_dim = int(net.num_features)
        has_token = getattr(net, 'cls_token', None) is not None
        if cls_target == 'token' and not has_token:
            raise ConfigError(f'TimmTeacher: {model} has no class token (cls_target="token"). Use '
                              'cls_target="auto"/"none" for a patch-only target, or "pooled" to '
                              'regress its pooled output in the CLS position.')
        self.cls_target = ('token' if has_token else 'none') if cls_target == 'auto' else cls_target
        self.has_cls = self.cls_target != 'none'
        self.num_prefix_tokens = int(getattr(net, 'num_prefix_tokens', int(has_token)))
        self.after_final_norm = True
        config = net.pretrained_cfg
        self.mean = tuple(mean) if mean is not None else tuple(255 * m for m in config['mean'])
        self.std = tuple(std) if std is not None else tuple(255 * s for s in config['std'])
        self.license = config.get('license')
        self.freeze()

    # ------------------------------------------------------------------ build
    def _create(self, model: str, checkpoint, img_size):
        import timm
        kwargs = dict(self.model_kwargs, num_classes=0)
        if img_size is not None:
            kwargs['img_size'] = int(img_size)
        if self.dynamic_img_size:
            kwargs['dynamic_img_size'] = True
        if checkpoint is None:
            return timm.create_model(model, pretrained=False, **kwargs)
        path = os.fspath(checkpoint)
        if path.endswith('.npz'):
            # timm's own big-vision reader (numpy arrays, nothing executed).
            overlay = dict(source='', hf_hub_id=None, url=None, file=path, custom_load=True)
        else:
            state_dict = unwrap_state_dict(load_checkpoint_file(path), source=path)
            overlay = dict(source='', hf_hub_id=None, url=None, file=None, state_dict=state_dict)
        # timm's filter may pop it: the file's table size is taken before the build.
        file_rows = _position_rows(overlay.get('state_dict') or {})
        try:
            net = timm.create_model(
                model, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f'{path} does not load into timm\'s {model}: {err}'.strip()) from err
        self._log_position_resize(net, file_rows, path)
        return net

    @staticmethod
    def _log_position_resize(net, file_rows, path: str) -> None:
        """No silent resizing: says when timm's filter resampled the file's absolute
        position table to another grid (a difference of up to the prefix tokens is
        only the CLS/register rows some layouts keep in the table)."""
        pos = getattr(net, 'pos_embed', None)
        if file_rows is None or pos is None:
            return
        rows = pos.shape[-2]
        if abs(file_rows - rows) > int(getattr(net, 'num_prefix_tokens', 1)):
            print_log(
                f'TimmTeacher: the position table of {path} ({file_rows} positions) was '
                f'resampled to {rows} by timm\'s checkpoint filter for '
                f'{net.patch_embed.img_size[0]} px inputs (timm: bicubic with antialiasing).',
                logger='current',
                level=logging.INFO)

    def adapt_img_size(self, img_size: int) -> bool:
        if self.dynamic_img_size or int(img_size) == self.img_size:
            return False
        if not hasattr(self.model, 'set_input_size'):
            return False
        # timm resamples the absolute table (if any) once; RoPE tables are rebuilt.
        self.model.set_input_size(img_size=int(img_size))
        self.img_size = int(img_size)
        self.freeze()
        return True

    # ------------------------------------------------------------------ forward
    def use_final_norm(self, enabled: bool = True) -> None:
        # timm's forward_intermediates(norm=...) selects it: no hook needed.
        self.after_final_norm = bool(enabled)

    def final_norm_module(self):
        return getattr(self.model, 'norm', None)

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        if not self.dynamic_img_size:
            check_input_size(images, (self.img_size, self.img_size), type(self).__name__)
        net = self.model
        last = net.forward_intermediates(
            images,
            indices=1,
            norm=self.after_final_norm,
            return_prefix_tokens=True,
            output_fmt='NLC',
            intermediates_only=True)[0]
        # (patches, prefix) pairs; a model without prefix tokens gives the patches only
        patches, prefix = last if isinstance(last, tuple) else (last, None)
        if self.cls_target == 'none':
            return patches
        if self.cls_target == 'token':
            return torch.cat([prefix[:, :1], patches], dim=1)
        tokens = torch.cat([prefix, patches], dim=1) if prefix is not None else patches
        if not self.after_final_norm:
            tokens = net.norm(tokens)  # the pooled output is defined after the norm
        pooled = net.forward_head(tokens, pre_logits=True)
        return torch.cat([pooled[:, None], patches], dim=1)

    # ------------------------------------------------------------------ export
    def export_kwargs(self) -> dict:
        return dict(
            model=self.model_name,
            img_size=self.img_size,
            cls_target=self.cls_target,
            mean=list(self.mean),
            std=list(self.std),
            model_kwargs=self.model_kwargs)

    def export_state_dict(self) -> dict:
        return self.model.state_dict()
