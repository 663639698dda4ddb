"""Record attention maps from vision transformers without changing their outputs.

:class:`AttentionRecorder` is a context manager. While it is active, every
attention module it recognises under ``model`` hands its softmax-normalised map
``[B', heads, N, N]`` to the recorder; on exit every hook is removed and every
flag it touched is restored, so fast kernels stay on outside diagnostics.

How each family is recorded (``strategy='auto'``):

=====================================  =======================================
module                                 how
=====================================  =======================================
mmpretrain ``BEiTAttention``           observe the input of ``attn_drop``
mmfd ``FDAttention`` (``fused`` flag)  ``fused=False`` while recording (its
                                       explicit path is what SDPA computes),
                                       then observe ``attn_drop``
mmpretrain ``MultiheadAttention`` (ViT) recompute softmax(q k^T * scale) from the
                                       module's input with its own ``qkv``
mmpretrain ``ShiftWindowMSA`` (Swin,   observe ``w_msa.softmax`` output; the
SwinV2 cosine attention)               pre-hook reads ``hw_shape`` (stride)
timm ``Attention`` (ViT/DeiT/DINO)     explicit path: observe ``attn_drop``;
                                       fused path: recompute from ``qkv`` (with
                                       ``q_norm``/``k_norm`` and the mask)
timm ``SwinTransformerBlock``          explicit: observe ``attn.softmax``; fused:
                                       recompute (rel. position bias + mask)
torch ``nn.MultiheadAttention``        recompute from ``in_proj_weight/bias``
(open_clip towers)                     (self-attention calls only)
open_clip ``Attention`` (custom block) SDPA: recompute; cosine: observe
                                       ``attn_drop`` (never flipped: its explicit
                                       path calls bmm on 4-D tensors in 3.3.0)
=====================================  =======================================

Observation and recomputation never touch the computed path: outputs are
bitwise identical with and without recording. ``strategy='explicit'`` instead
flips the timm ``fused_attn`` flags too and observes the explicit path: outputs
then equal the explicit path bitwise and the fused path up to float rounding.
Self-attention modules mmfd does not know but that expose a boolean
``fused``/``fused_attn`` flag, a ``qkv`` and an ``attn_drop`` child are handled
the explicit way in both strategies.

Global maps keep their prefix tokens (CLS, registers); windowed maps are per
window (``B' = B * windows``). :func:`resolve_geometry` turns a record plus the
input image size into the token grid, pixels per token and prefix count the
metrics need.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Callable, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import nn

from mmfd.utils.errors import ConfigError
from . import recompute

STRATEGIES = ('auto', 'explicit')


@dataclass
class AttentionRecord:
    """One attention map seen during a forward.

    Attributes:
        name: qualified module name inside the recorded model.
        attn: ``[B', heads, N, N]`` float32, detached. ``B'`` is the batch for
            global attention and ``batch * windows`` for windowed attention.
        kind: ``'global'`` or ``'window'``.
        window_size: ``(wh, ww)`` for windowed attention.
        feature_hw: ``(H, W)`` of the token map the windows tile (windowed only).
        image_hw: ``(H, W)`` of the image the model's patch embedding saw (the
            input of the last 3-channel convolution called before this map).
        patch_size: stride of that convolution (pixels per token of a ViT).
    """
    name: str
    attn: torch.Tensor
    kind: str = 'global'
    window_size: Optional[Tuple[int, int]] = None
    feature_hw: Optional[Tuple[int, int]] = None
    image_hw: Optional[Tuple[int, int]] = None
    patch_size: Optional[Tuple[int, int]] = None


class TokenGeometry(NamedTuple):
    grid: Tuple[int, int]  # tokens per side of the (patch or window) grid
    stride: Tuple[float, float]  # pixels per token (rows, cols)
    num_prefix_tokens: int  # CLS / register tokens before the grid


def _import(path: str):
    module_name, _, cls_name = path.rpartition('.')
    try:
        module = __import__(module_name, fromlist=[cls_name])
    except Exception:  # optional library missing or broken: that family is skipped
        return None
    return getattr(module, cls_name, None)


def _pair(value) -> Tuple[int, int]:
    if isinstance(value, (tuple, list)):
        return int(value[0]), int(value[1])
    return int(value), int(value)


def _arg(args, kwargs, index, name, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


class AttentionRecorder:
    """Context manager that records attention maps of ``model``.

    Args:
        model: any module; all recognised attention modules below it are hooked.
        callback: if given, called with each :class:`AttentionRecord` as soon as
            it is produced and nothing is stored (bounded memory); otherwise the
            records accumulate in :attr:`records` until :meth:`clear`.
        strategy: ``'auto'`` (observe or recompute; outputs bitwise unchanged) or
            ``'explicit'`` (flip fused flags and observe the explicit path).
        to_cpu: move maps to the CPU as they are recorded.
        strict: raise :class:`ConfigError` when no attention module is found.

    Example::

        with AttentionRecorder(backbone) as rec:
            backbone(images)
        maps = [r.attn for r in rec.records]
    """

    def __init__(self,
                 model: nn.Module,
                 callback: Optional[Callable] = None,
                 strategy: str = 'auto',
                 to_cpu: bool = False,
                 strict: bool = True):
        if strategy not in STRATEGIES:
            raise ConfigError(f'AttentionRecorder strategy={strategy!r}: use one of {STRATEGIES}.')
        self.model = model
        self.callback = callback
        self.strategy = strategy
        self.to_cpu = to_cpu
        self.strict = strict
        self.records: List[AttentionRecord] = []
        self.module_names: List[str] = []
        self._handles = []
        self._restore = []
        self._image = {}
        self._active = False

    # -- public -------------------------------------------------------------
    def clear(self) -> None:
        self.records.clear()

    def __enter__(self):
        if self._active:
            raise RuntimeError('AttentionRecorder is not re-entrant.')
        self._active = True
        try:
            self._install()
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, *exc):
        self._remove()
        return False

    # -- internals ------------------------------------------------------------
    def _emit(self, name, attn, kind='global', window_size=None, feature_hw=None):
        attn = attn.detach().float()
        if self.to_cpu:
            attn = attn.cpu()
        record = AttentionRecord(name, attn, kind, window_size, feature_hw, self._image.get('hw'),
                                 self._image.get('patch'))
        if self.callback is not None:
            self.callback(record)
        else:
            self.records.append(record)

    def _set(self, module, attr, value):
        old = getattr(module, attr)
        if old != value:
            # a class-level default (FDAttention.fused) is restored by deleting the
            # instance attribute, so the module ends exactly as it was
            own = attr in module.__dict__
            self._restore.append((module, attr, old, own))
            setattr(module, attr, value)

    def _observe_input(self, name, target, **meta):

        def hook(_, args):
            self._emit(name, args[0], **meta)

        self._handles.append(target.register_forward_pre_hook(hook))

    def _recompute(self, name, module, fn):

        def hook(mod, args, kwargs):
            with torch.no_grad():
                attn = fn(mod, args, kwargs)
            if attn is not None:
                self._emit(name, attn)

        self._handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))

    def _install(self):
        beit_attn = _import('mmpretrain.models.utils.attention.BEiTAttention')
        mmpre_mha = _import('mmpretrain.models.utils.attention.MultiheadAttention')
        shift_msa = _import('mmpretrain.models.utils.attention.ShiftWindowMSA')
        timm_attn = _import('timm.layers.attention.Attention')
        timm_swin_block = _import('timm.models.swin_transformer.SwinTransformerBlock')
        clip_attn = _import('open_clip.transformer.Attention')
        explicit = self.strategy == 'explicit'

        def image_hook(conv, args):
            self._image['hw'] = (int(args[0].shape[-2]), int(args[0].shape[-1]))
            self._image['patch'] = _pair(conv.stride)

        for m in self.model.modules():
            if isinstance(m, nn.Conv2d) and m.in_channels == 3:  # patch embedding
                self._handles.append(m.register_forward_pre_hook(image_hook))

        self._handled = set()  # attention children installed through their parent block
        for name, m in self.model.named_modules():
            if id(m) in self._handled:
                continue
            if beit_attn is not None and isinstance(m, beit_attn):
                if isinstance(getattr(m, 'fused', None), bool):
                    self._set(m, 'fused', False)
                self._observe_input(name, m.attn_drop)
            elif mmpre_mha is not None and isinstance(m, mmpre_mha) and hasattr(m, 'qkv'):
                self._recompute(name, m,
                                lambda mod, a, kw: recompute.mmpretrain_mha_maps(mod, a[0]))
            elif shift_msa is not None and isinstance(m, shift_msa):
                self._install_mmpretrain_swin(name, m)
            elif timm_attn is not None and isinstance(m, timm_attn):
                if m.fused_attn and explicit:
                    self._set(m, 'fused_attn', False)
                if m.fused_attn:
                    self._recompute(
                        name, m, lambda mod, a, kw: recompute.timm_attention_maps(
                            mod, a[0], _arg(a, kw, 1, 'attn_mask'),
                            _arg(a, kw, 2, 'is_causal', False)))
                else:
                    self._observe_input(name, m.attn_drop)
            elif timm_swin_block is not None and isinstance(m, timm_swin_block):
                self._install_timm_swin(name, m, explicit)
            elif isinstance(m, nn.MultiheadAttention):
                self._install_torch_mha(name, m)
            elif clip_attn is not None and isinstance(m, clip_attn):
                if m.logit_scale is None and m.use_fsdpa:
                    self._recompute(
                        name, m, lambda mod, a, kw: recompute.open_clip_attention_maps(
                            mod, a[0], _arg(a, kw, 1, 'attn_mask')))
                else:
                    self._observe_input(name, m.attn_drop)
            elif self._is_flaggable(m):
                for flag in ('fused', 'fused_attn'):
                    if isinstance(getattr(m, flag, None), bool):
                        self._set(m, flag, False)
                self._observe_input(name, m.attn_drop)
            else:
                continue
            self.module_names.append(name)

        if not self.module_names and self.strict:
            raise ConfigError(
                f'No attention module that mmfd can record was found in '
                f'{type(self.model).__name__}. Supported: mmpretrain ViT/BEiT/Swin/SwinV2, '
                f'mmfd FDViT, timm ViT/Swin, open_clip vision towers.')

    @staticmethod
    def _is_flaggable(m):
        # self-attention (own qkv) with a fused flag and an explicit path ending in attn_drop
        has_flag = any(isinstance(getattr(m, f, None), bool) for f in ('fused', 'fused_attn'))
        return (has_flag and hasattr(m, 'qkv')
                and isinstance(getattr(m, 'attn_drop', None), nn.Dropout))

    def _install_mmpretrain_swin(self, name, m):
        state = {}
        window = _pair(m.w_msa.window_size)
        self._handled.add(id(m.w_msa))

        def pre(_, args, kwargs):
            state['hw'] = tuple(int(v) for v in _arg(args, kwargs, 1, 'hw_shape'))

        def post(_, args, output):
            self._emit(name, output, 'window', window, state.get('hw'))

        self._handles.append(m.register_forward_pre_hook(pre, with_kwargs=True))
        self._handles.append(m.w_msa.softmax.register_forward_hook(post))

    def _install_timm_swin(self, name, block, explicit):
        attn = block.attn
        state = {}
        window = _pair(attn.window_size)
        self._handled.add(id(attn))

        def pre(_, args):
            state['hw'] = (int(args[0].shape[1]), int(args[0].shape[2]))  # [B, H, W, C]

        self._handles.append(block.register_forward_pre_hook(pre))

        if attn.fused_attn and explicit:
            self._set(attn, 'fused_attn', False)
        if attn.fused_attn:

            def recompute_hook(mod, args, kwargs):
                with torch.no_grad():
                    maps = recompute.timm_window_maps(mod, args[0], _arg(args, kwargs, 1, 'mask'))
                self._emit(name, maps, 'window', window, state.get('hw'))

            self._handles.append(attn.register_forward_pre_hook(recompute_hook, with_kwargs=True))
        else:

            def post(_, args, output):
                self._emit(name, output, 'window', window, state.get('hw'))

            self._handles.append(attn.softmax.register_forward_hook(post))

    def _install_torch_mha(self, name, m):
        if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
            warnings.warn(f'AttentionRecorder: {name} ({type(m).__name__}) has separate '
                          f'q/k/v projections or extra keys; it is not recorded.')
            return

        def fn(mod, args, kwargs):
            query = _arg(args, kwargs, 0, 'query')
            key = _arg(args, kwargs, 1, 'key')
            if key is not None and key is not query:
                return None  # cross-attention (e.g. attentional pooling): not a token map
            # key_padding_mask is not applied: vision towers do not pad tokens
            return recompute.torch_mha_maps(mod, query, _arg(args, kwargs, 5, 'attn_mask'))

        self._recompute(name, m, fn)

    def _remove(self):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for module, attr, old, own in reversed(self._restore):
            if own:
                setattr(module, attr, old)
            else:
                delattr(module, attr)
        self._restore.clear()
        self._active = False


def resolve_geometry(record: AttentionRecord,
                     image_hw: Optional[Sequence[int]] = None,
                     patch_size: Optional[Sequence[int]] = None) -> TokenGeometry:
    """Grid, pixels per token and prefix count of a recorded map.

    ``image_hw`` / ``patch_size`` default to what the recorder saw at the patch
    embedding. Windowed maps: the window grid, no prefix, stride = image size /
    feature map size. Global maps: with a patch size the grid is
    ``image // patch`` and the remaining tokens are the prefix; without one the
    smallest prefix (0..8) whose remainder tiles the image with near-square
    tokens is chosen.
    """
    image_hw = image_hw if image_hw is not None else record.image_hw
    patch_size = patch_size if patch_size is not None else record.patch_size
    if image_hw is None:
        raise ConfigError(f'{record.name}: the input image size is unknown (no 3-channel '
                          f'patch embedding was seen); pass image_hw.')
    H, W = int(image_hw[0]), int(image_hw[1])
    N = record.attn.shape[-1]
    if record.kind == 'window':
        wh, ww = record.window_size
        if record.feature_hw is None:
            raise ConfigError(f'{record.name}: windowed map without the feature map size.')
        fh, fw = record.feature_hw
        return TokenGeometry((wh, ww), (H / fh, W / fw), 0)
    if patch_size is not None:
        ph, pw = _pair(patch_size)
        h, w = H // ph, W // pw
        if 0 < h * w <= N and N - h * w <= 16:
            return TokenGeometry((h, w), (float(ph), float(pw)), N - h * w)
    for prefix in range(9):
        n = N - prefix
        if n <= 0:
            break
        candidates = [(abs(math.log((H / h) / (W / (n // h)))), h, n // h) for h in range(1, n + 1)
                      if n % h == 0]
        err, h, w = min(candidates)
        if err <= math.log(1.2):  # square tokens, up to rounding of odd input sizes
            return TokenGeometry((h, w), (H / h, W / w), prefix)
    raise ConfigError(f'{record.name}: cannot place {N} tokens on a grid for a {H}x{W} input; '
                      f'pass patch_size explicitly.')
