"""Any timm vision transformer as an FD teacher: DINOv2(-reg), DINOv3, SigLIP / SigLIP 2,
EVA-02(-CLIP), AIMv2, Perception Encoder, C-RADIO, plain ViTs.

The network is built by timm's own factory, ``timm.create_model(name, pretrained=True)``,
with the checkpoint handed over as an in-memory state dict: mmfd reads the file
(``weights_only`` / safetensors, local or through ``mmengine.fileio``), and timm
applies the model's own ``checkpoint_filter_fn`` (which converts the official
DINOv2 / DINOv3 / EVA / AIMv2 / PE / RADIO layouts to timm's) and loads it. Every
missing or unexpected key is an error, also where timm itself loads non-strictly (a
model whose pretrained config has a head: EVA-02-CLIP, PE-Core). Nothing is fetched
from a hub. big_vision ``.npz`` files (SigLIP / SigLIP 2) are
read by timm's own reader, ``VisionTransformer.load_pretrained`` (numpy with
``allow_pickle=False``), dispatched the way timm's factory dispatches
``pretrained_cfg_overlay=dict(file=X.npz, custom_load=True)``. That reader copies
the arrays it knows and ignores the rest of the file, so mmfd checks around it:
every parameter must have been written, and the file's encoder depth, class token
and MAP head must match the model (a deeper file would otherwise load its first
blocks silently).

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
import io
import logging
import os
import re
from typing import NamedTuple, Optional, Sequence, Union

import torch
from mmengine.logging import print_log

from mmfd.checkpoint.io import _check_local, _check_name, _fetch, _file_backend, _is_local
from mmfd.checkpoint.report import key_line
from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import BaseTeacher
from .builder import check_input_size

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
    """A timm ViT / EVA model loaded from a file (local or through mmengine.fileio), frozen.

    Args:
        model (str): a timm model name, optionally with its pretrained tag
            (``'vit_base_patch14_reg4_dinov2.lvd142m'``,
            ``'vit_base_patch16_siglip_224.v2_webli'``, ``'vit_base_patch16_dinov3'``,
            ``'eva02_large_patch14_clip_224'``, ``'vit_pe_core_large_patch14_336'``...).
            The tag selects the pretrained config (statistics, input size).
        checkpoint (str): the weights: ``.safetensors`` / ``.pth`` / ``.bin`` in the
            official or the timm layout (timm's filter converts), or a big_vision
            ``.npz`` (SigLIP / SigLIP 2, AugReg ViTs: timm's ``VisionTransformer``
            models, the ones timm has an ``.npz`` reader for).
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
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            reading ``checkpoint`` (see :class:`BaseTeacher`); an ``.npz`` fetched
            from a remote backend is handed to timm's reader in memory.
    """
    family = 'timm'
    file_options = dict(model=_timm_name, model_kwargs=None)
    required_options = dict(model='timm model name')
    # timm's filters convert many official layouts (DINOv2's looks like a 'vit' file):
    # the factory's load (every key checked), not a key-format guess, decides what fits.
    refuse_other_families = False

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
                 backend_args: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if cls_target not in CLS_TARGETS:
            raise ConfigError(f'TimmTeacher: cls_target={cls_target!r} is not one of '
                              f'{CLS_TARGETS}.')
        super().__init__(
            checkpoint,
            img_size=img_size,
            mean=mean,
            std=std,
            allow_random_init=allow_random_init,
            backend_args=backend_args,
            init_cfg=init_cfg,
            model=model,
            dynamic_img_size=dynamic_img_size,
            cls_target=cls_target,
            model_kwargs=model_kwargs)

    # ------------------------------------------------------------------ build
    def build(self, model, img_size, dynamic_img_size, cls_target, model_kwargs) -> None:
        _timm_name(model)
        self.model_name = model
        self.model_kwargs = dict(model_kwargs or {})
        self.dynamic_img_size = dynamic_img_size
        self.model = self._create(model, img_size)

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
        # statistics of the weights: the model's own pretrained config, never a default
        self.default_mean = tuple(255 * m for m in config['mean'])
        self.default_std = tuple(255 * s for s in config['std'])
        self.license = config.get('license')

    def read_checkpoint(self, checkpoint):
        if _is_npz(checkpoint):
            return _npz_file(checkpoint, self.backend_args)
        return super().read_checkpoint(checkpoint)

    def load_state(self, state_dict, source: str) -> None:
        pass  # timm's factory loaded the weights in build(), through the model's filter

    def _create(self, model: str, img_size):
        import timm
        kwargs = dict(self.model_kwargs, num_classes=0)
        if img_size is not None:
            kwargs['img_size'] = int(img_size)
        if self.dynamic_img_size:
            kwargs['dynamic_img_size'] = True
        if not self.loading:
            return timm.create_model(model, pretrained=False, **kwargs)  # timm's random init
        state = self.checkpoint_state()
        if isinstance(state, NpzFile):
            return _create_from_npz(model, kwargs, state)
        path = os.fspath(self._checkpoint)
        overlay = dict(source='', hf_hub_id=None, url=None, file=None, state_dict=state)
        # timm's filter may pop it: the file's table size is taken before the build.
        file_rows = _position_rows(state)
        try:
            with _TimmLoadReport() as report:
                net = _create_model(
                    model, pretrained=True, pretrained_cfg_overlay=overlay, **kwargs)
        except (RuntimeError, KeyError, ValueError) as err:
            raise CheckpointError(
                f'{path} does not load into timm\'s {model}: {err}'.strip()) from err
        if report.missing or report.unexpected:
            lines = [
                key_line(what, keys) for what, keys in (('missing keys', report.missing),
                                                        ('unexpected keys', report.unexpected))
                if keys
            ]
            raise CheckpointError(f'{path} does not load into timm\'s {model} (keys after timm\'s '
                                  f'checkpoint filter): {"; ".join(lines)}.')
        _log_position_resize(net, file_rows, path, "timm's checkpoint filter",
                             'bicubic with antialiasing')
        return net

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


# ------------------------------------------------------------------ loading
def _create_model(model: str, **kwargs):
    """``timm.create_model`` for weights that are loaded next: timm's random init is
    skipped where the model takes ``weight_init='skip'`` (VisionTransformer: seconds
    for a ViT-L); every parameter is then checked to come from the file."""
    import timm
    try:
        return timm.create_model(model, weight_init='skip', **kwargs)
    except TypeError as err:  # a model class without the option (Eva...)
        if 'weight_init' not in str(err):
            raise
    return timm.create_model(model, **kwargs)


class _TimmLoadReport(logging.Handler):
    """What ``timm.models.load_pretrained`` reports about the keys it could not match.

    timm loads NON-strictly whenever the model's classifier differs from its pretrained
    config's (here always num_classes=0, so for every teacher whose config has a head:
    EVA-02-CLIP, PE-Core...), and then only logs the missing / unexpected keys. They
    are collected here and raised, as the strict loaders of the other families do.
    """
    _PATTERN = re.compile(r'(Missing|Unexpected) keys \((.*)\) (?:discovered|found) while loading')

    def __init__(self):
        super().__init__(logging.INFO)
        self.missing, self.unexpected = [], []

    def emit(self, record: logging.LogRecord) -> None:
        match = self._PATTERN.match(record.getMessage())
        if match:
            keys = [k.strip() for k in match.group(2).split(',') if k.strip()]
            (self.missing if match.group(1) == 'Missing' else self.unexpected).extend(keys)

    def __enter__(self):
        self._logger = logging.getLogger('timm.models._builder')
        self._level = self._logger.level
        self._logger.setLevel(logging.INFO)  # the missing keys are an INFO record
        self._logger.addHandler(self)
        return self

    def __exit__(self, *exc):
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)
        return False


# ------------------------------------------------------------------ file formats
def _log_position_resize(net, file_rows, path: str, by: str, how: str) -> None:
    """No silent resizing: says when timm resampled the file's absolute position
    table to another grid (a difference of up to the prefix tokens is only the
    CLS/register rows some layouts keep in the table)."""
    pos = getattr(net, 'pos_embed', None)
    if file_rows is None or pos is None:
        return
    rows = pos.shape[-2]
    if abs(file_rows - rows) > int(getattr(net, 'num_prefix_tokens', 1)):
        print_log(
            f'TimmTeacher: the position table of {path} ({file_rows} positions) was '
            f'resampled to {rows} by {by} for {net.patch_embed.img_size[0]} px inputs '
            f'(timm: {how}).',
            logger='current',
            level=logging.INFO)


class NpzFile(NamedTuple):
    """A big_vision ``.npz`` checkpoint: what numpy opens (a local path, or the bytes
    fetched through mmengine.fileio) and the name errors give."""
    source: Union[str, io.BytesIO]
    name: str


def _is_npz(checkpoint) -> bool:
    return isinstance(checkpoint, (str, os.PathLike)) and \
        os.fspath(checkpoint).split('?', 1)[0].endswith('.npz')


def _npz_file(checkpoint, backend_args) -> NpzFile:
    path = _check_name(checkpoint)
    backend = _file_backend(path, backend_args)
    return NpzFile(_check_local(path) if _is_local(backend) else _fetch(backend, path), path)


# Where big_vision / AugReg files keep the image tower, as timm's reader looks for it
# (vision_transformer._load_weights): the first of these whose embedding exists.
_NPZ_PREFIXES = ('', 'opt/target/', 'params/', 'params/img/')


def _npz_layout(arrays, name: str) -> dict:
    """The tower's prefix, encoder depth, position rows, class token and MAP head in
    a big_vision file (the per-block ``encoderblock_N`` and the scanned, stacked
    ``encoderblock`` layouts)."""
    prefix = next((p for p in _NPZ_PREFIXES if f'{p}embedding/kernel' in arrays.files), None)
    if prefix is None:
        raise CheckpointError(f'{name} is not a big_vision ViT .npz (no embedding/kernel under '
                              f'any of {list(_NPZ_PREFIXES)}); keys look like: '
                              f'{", ".join(sorted(arrays.files)[:5])}.')
    scanned = f'{prefix}Transformer/encoderblock/LayerNorm_0/scale'
    if scanned in arrays.files:
        depth = int(arrays[scanned].shape[0])
    else:
        block = re.compile(re.escape(prefix) + r'Transformer/encoderblock_(\d+)/')
        depth = len({m.group(1) for m in map(block.match, arrays.files) if m})
    pos = next(
        (arrays[k]
         for k in (f'{prefix}pos_embedding', f'{prefix}Transformer/posembed_input/pos_embedding')
         if k in arrays.files), None)
    return dict(
        prefix=prefix,
        depth=depth,
        rows=None if pos is None else int(pos.shape[-2]),
        cls=f'{prefix}cls' in arrays.files,
        map_head=f'{prefix}MAPHead_0/probe' in arrays.files)


def _create_from_npz(model: str, kwargs: dict, npz: NpzFile):
    """timm's model, loaded by timm's own big_vision reader, with what that reader
    does not check checked here.

    Layouts timm reads: big_vision / AugReg float32 files, the image tower at the top
    level or under ``opt/target/``, ``params/``, ``params/img/`` (SigLIP's two-tower
    files), per-block or scanned encoder, into a ``VisionTransformer``. Not read here:
    bfloat16 files (timm's ``load_bfloat16`` path needs jax and ml_dtypes) and models
    of other classes (EVA...; NaFlex SigLIP 2 has a reader but is not a token-map
    model TimmTeacher takes): such weights have to be given as a state dict.
    """
    import numpy as np
    from timm.models import load_pretrained
    net = _create_model(model, pretrained=False, **kwargs)
    if not hasattr(net, 'load_pretrained'):
        raise CheckpointError(
            f'{npz.name}: timm reads big_vision .npz files only into its VisionTransformer '
            f'models (SigLIP, AugReg ViTs); {model} is a {type(net).__name__}. Give its '
            'weights as a .safetensors / .pth state dict.')
    try:
        with np.load(npz.source, allow_pickle=False) as arrays:
            layout = _npz_layout(arrays, npz.name)
    except (OSError, ValueError) as err:
        raise CheckpointError(f'Cannot read {npz.name} as a numpy .npz archive (corrupt, '
                              f'or not an .npz?): {err}') from err
    finally:
        if hasattr(npz.source, 'seek'):
            npz.source.seek(0)
    depth = len(net.blocks)
    problems = []
    if layout['depth'] != depth:
        problems.append(f'{layout["depth"]} encoder blocks in the file, {depth} in the model '
                        '(timm\'s reader would load the first ones only)')
    if layout['cls'] and getattr(net, 'cls_token', None) is None:
        problems.append('the file has a class token (cls), the model has none')
    if layout['map_head'] and getattr(net, 'attn_pool', None) is None:
        problems.append('the file has a MAP head (MAPHead_0), the model pools otherwise')
    if problems:
        raise CheckpointError(f'{npz.name} does not fit timm\'s {model}: ' + '; '.join(problems) +
                              '.')

    # Every parameter starts as NaN: whatever the reader does not write stays NaN.
    with torch.no_grad():
        for param in net.parameters():
            param.fill_(float('nan'))
    # The factory's own dispatch for pretrained_cfg_overlay=dict(file=X.npz,
    # custom_load=True): timm.models.load_pretrained -> net.load_pretrained(file).
    config = dict(
        net.pretrained_cfg,
        source='',
        hf_hub_id=None,
        url=None,
        state_dict=None,
        file=npz.source,
        custom_load=True)
    try:
        load_pretrained(net, pretrained_cfg=config)
    except (RuntimeError, KeyError, ValueError) as err:
        raise CheckpointError(f'{npz.name} does not load into timm\'s {model} (timm\'s '
                              f'big_vision reader): {type(err).__name__}: {err}') from err
    unset = [name for name, param in net.named_parameters() if torch.isnan(param).any()]
    if unset:
        raise CheckpointError(
            f'{npz.name}: timm\'s big_vision reader left {len(unset)} parameter(s) of {model} '
            f'unset (not in the file, or not read for this model): {", ".join(unset[:10])}'
            f'{" ..." if len(unset) > 10 else ""}.')
    _log_position_resize(net, layout['rows'], npz.name, "timm's .npz reader",
                         'bilinear without antialiasing')
    return net
