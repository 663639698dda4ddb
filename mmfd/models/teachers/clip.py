"""CLIP teachers through open_clip: OpenAI TorchScript archives, open_clip/LAION files.

Only open_clip's vision tower is built (never the text tower), from open_clip's own
model configs (``ViT-B-16``, ``ViT-L-14``, ``ViT-L-14-336``, ``*-quickgelu``...).
The target FD needs is ALL tokens after ``ln_post``; open_clip's
``output_tokens=True`` returns the patch tokens without CLS, so
:meth:`CLIPTeacher.forward_tokens` runs the tower's layers itself (the same
sequence as ``VisionTransformer._embeds`` + ``transformer`` + ``ln_post``; patch
dropout is inactive in eval).
"""
import logging
import math
import os
from typing import Optional, Sequence, Tuple, Union

import torch
from mmengine.logging import print_log

from mmfd.checkpoint import is_torchscript_archive, load_checkpoint_file, unwrap_state_dict
from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import CLIP_MEAN, CLIP_STD, BaseTeacher, check_family
from .builder import check_input_size
from .resampling import POS_EMBED_RESIZE, resample_position_table, resize_options

# OpenAI's TorchScript CLIP keeps these as tensors next to the weights.
OPENAI_CLIP_EXTRAS = ('input_resolution', 'context_length', 'vocab_size')


def _open_clip_config(arch: Union[str, dict]) -> dict:
    import open_clip
    if isinstance(arch, dict):
        if 'vision_cfg' not in arch:
            raise ConfigError("A CLIP arch dict is an open_clip model config: it needs "
                              "'vision_cfg' (and 'embed_dim').")
        return dict(arch)
    config = open_clip.get_model_config(arch)
    if config is None:
        import difflib
        names = open_clip.list_models()
        close = difflib.get_close_matches(str(arch), names, n=3, cutoff=0.5)
        hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
        raise ConfigError(f'Unknown CLIP arch {arch!r} (not an open_clip model config).'
                          f'{hint} See open_clip.list_models().')
    return config


def infer_vision_config(state_dict: dict, source: str) -> dict:
    """open_clip model config of a ViT tower from its weights (as open_clip does for
    OpenAI files: 64-wide heads)."""
    try:
        width, _, patch, _ = state_dict['conv1.weight'].shape
        layers = len(
            {k.split('.')[2]
             for k in state_dict if k.startswith('transformer.resblocks.')})
        grid = round(math.sqrt(state_dict['positional_embedding'].shape[0] - 1))
        hidden = state_dict['transformer.resblocks.0.mlp.c_fc.weight'].shape[0]
        embed_dim = state_dict['proj'].shape[1]
    except KeyError as err:
        raise CheckpointError(f'{source}: cannot infer the CLIP vision tower (no {err}); '
                              "pass arch='ViT-B-16' or another open_clip name.") from err
    vision_cfg = dict(
        layers=layers,
        width=width,
        patch_size=patch,
        image_size=patch * grid,
        mlp_ratio=hidden / width)
    if 'transformer.resblocks.0.ls_1.gamma' in state_dict:
        vision_cfg['ls_init_value'] = 1.0
    if 'ln_pre.weight' not in state_dict:
        vision_cfg['no_ln_pre'] = True
    return dict(embed_dim=embed_dim, vision_cfg=vision_cfg)


@MODELS.register_module()
class CLIPTeacher(BaseTeacher):
    """The vision tower of a CLIP model, loaded from a local file.

    Args:
        arch (str | dict | None): an open_clip model name (``ViT-B-16``,
            ``ViT-L-14``, ``ViT-L-14-336``, ``ViT-B-16-quickgelu``...), an open_clip
            model config dict (``embed_dim``, ``vision_cfg``, optional ``quick_gelu``),
            or None to infer the tower from the checkpoint (64-wide heads, as
            open_clip assumes for OpenAI files). Default ``ViT-B-16``.
        checkpoint (str): local file: OpenAI TorchScript ``.pt`` (needs
            ``allow_torchscript``), open_clip/LAION ``.bin``/``.pt``/``.pth``
            (a state dict, possibly under ``state_dict`` with ``module.``) or
            ``.safetensors``; full CLIP or vision tower only.
        allow_torchscript (bool): allow loading a TorchScript archive, which
            executes the code it contains. Default False: a CheckpointError says how
            to opt in or convert the file.
        quick_gelu (bool | None): activation of OpenAI-trained towers. None: True
            for ``-quickgelu`` configs and for TorchScript (OpenAI) archives, else
            False. OpenAI weights with plain GELU give wrong features silently:
            use the ``-quickgelu`` names for OpenAI weights stored as ``.bin``.
        img_size (int, optional): build for this input size; the checkpoint's
            position embedding is resampled once at load (``pos_embed_resize``).
        dynamic_img_size (bool): accept any input size, resampling the position
            embedding on every call. Default False (other sizes raise).
        pos_embed_resize (dict, optional): how the position table is resampled to
            another grid: ``dict(mode='bicubic', antialias=False)`` by default (the
            FD release's plain bicubic; timm's default antialiases).
        mean, std (sequence, optional): CLIP's statistics (0-255) by default.
        allow_random_init (bool): build without a checkpoint (tests only).
        backend_args (dict, optional): ``mmengine.fileio`` backend arguments for
            reading ``checkpoint`` (see :class:`BaseTeacher`). OpenAI archives are
            detected in local files only: OpenAI weights read through a remote
            backend need an explicit ``quick_gelu``.

    Output: ``[B, 1 + h*w, width]``: CLS and patch tokens after ``ln_post``
    (LayerNorm eps 1e-5), before the ``proj`` projection.
    """
    family = 'clip'
    default_mean = CLIP_MEAN
    default_std = CLIP_STD
    # A converted file brings its QuickGELU choice: an OpenAI file stays right under
    # arch='ViT-B-16'. Its arch is not compared: shapes are checked at load.
    file_options = dict(quick_gelu=bool)
    # The converter infers the tower from the weights unless --arch is given.
    convert_defaults = dict(arch=None)
    network = 'visual'
    select_prefix = 'visual.'
    key_format_order = 0

    def __init__(self,
                 arch: Union[str, dict, None] = 'ViT-B-16',
                 checkpoint: Optional[str] = None,
                 allow_torchscript: bool = False,
                 quick_gelu: Optional[bool] = None,
                 img_size: Optional[int] = None,
                 dynamic_img_size: bool = False,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 allow_random_init: bool = False,
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
            allow_torchscript=allow_torchscript,
            quick_gelu=quick_gelu,
            dynamic_img_size=dynamic_img_size,
            pos_embed_resize=pos_embed_resize)

    @staticmethod
    def looks_like(keys) -> bool:
        """OpenAI / open_clip keys: ``class_embedding``, ``visual.conv1``, ``resblocks``."""
        return any(
            k.endswith('class_embedding') or 'visual.conv1.weight' in k
            or k.startswith('visual.transformer.resblocks') for k in keys)

    def read_checkpoint(self, checkpoint):
        raw = load_checkpoint_file(
            checkpoint, allow_torchscript=self.allow_torchscript, backend_args=self.backend_args)
        local = isinstance(checkpoint, (str, os.PathLike)) and os.path.isfile(checkpoint)
        self.torchscript = local and is_torchscript_archive(os.fspath(checkpoint))
        if not local and self.quick_gelu_option is None and \
                all(k in raw for k in OPENAI_CLIP_EXTRAS):
            # Whether a fetched file was a TorchScript archive is not known here, and
            # guessing GELU for OpenAI's weights would silently give wrong features.
            raise ConfigError(
                f'{checkpoint} holds OpenAI CLIP weights (input_resolution, context_length, '
                'vocab_size entries) read through a storage backend, where OpenAI '
                'archives are not detected: set quick_gelu=True for OpenAI-trained weights '
                '(or False if they were trained with GELU).')
        state_dict = unwrap_state_dict(raw, source=checkpoint, select_prefix=self.select_prefix)
        check_family(state_dict, self.family, checkpoint)
        return state_dict

    def build(self, arch, allow_torchscript, quick_gelu, img_size, dynamic_img_size,
              pos_embed_resize) -> None:
        self.pos_embed_resize = resize_options(pos_embed_resize, POS_EMBED_RESIZE,
                                               'pos_embed_resize')
        self.allow_torchscript = allow_torchscript
        self.quick_gelu_option = quick_gelu
        from open_clip.model import CLIPVisionCfg, _build_vision_tower

        state_dict, torchscript = None, False
        if self.loading:
            state_dict = self.checkpoint_state()
            torchscript = self.torchscript
        if arch is None and state_dict is None:
            raise ConfigError('CLIPTeacher(arch=None) infers the tower from a checkpoint: '
                              'pass one, or an arch name.')
        config = (
            _open_clip_config(arch) if arch is not None else infer_vision_config(
                state_dict, self._checkpoint))

        if quick_gelu is None:
            quick_gelu = bool(config.get('quick_gelu', False)) or torchscript
        elif torchscript and not quick_gelu:
            print_log(
                f'{self._checkpoint} is an OpenAI TorchScript archive, whose weights were '
                'trained with QuickGELU, but quick_gelu=False.',
                logger='current',
                level=logging.WARNING)
        vision_cfg = CLIPVisionCfg(**config['vision_cfg'])
        if vision_cfg.timm_model_name or not isinstance(vision_cfg.layers, int):
            raise ConfigError(f'CLIP arch {arch!r} has a timm or ResNet image tower; '
                              'CLIPTeacher supports open_clip ViT towers only.')
        if vision_cfg.attentional_pool:
            raise ConfigError(f'CLIP arch {arch!r} pools with attention (CoCa): its token '
                              'map is not a per-patch map.')
        if img_size is not None:
            vision_cfg.image_size = int(img_size)
        vision_cfg.patch_dropout = 0.

        self.arch = arch if arch is not None else config
        self.quick_gelu = bool(quick_gelu)
        self.dynamic_img_size = dynamic_img_size
        self.resample_at_load = img_size is not None
        self.visual = _build_vision_tower(
            config.get('embed_dim', 512), vision_cfg, quick_gelu=self.quick_gelu)
        self.patch_size = _square(self.visual.patch_size, 'patch size')
        self.img_size = _square(self.visual.image_size, 'image size')
        self.embed_dim = self.visual.conv1.out_channels
        self.has_cls = True

    def load_state(self, state_dict: dict, source: str) -> None:
        if self.resample_at_load:
            self._fit_pos_embed(state_dict, source)
        super().load_state(state_dict, source)

    def _fit_pos_embed(self, state_dict: dict, source: str) -> None:
        pos = state_dict.get('positional_embedding')
        target = self.visual.positional_embedding
        if pos is None or pos.shape == target.shape:
            return
        if pos.ndim != 2 or pos.shape[1] != target.shape[1]:
            raise CheckpointError(f'{source}: positional_embedding {tuple(pos.shape)} cannot '
                                  f'be resized to {tuple(target.shape)}.')
        state_dict['positional_embedding'] = self._resample(pos, self.visual.grid_size)

    def _resample(self, pos: torch.Tensor, grid: Tuple[int, int]) -> torch.Tensor:
        return resample_position_table(pos, grid, num_prefix_tokens=1, **self.pos_embed_resize)

    def _pos_embed(self, grid: Tuple[int, int]) -> torch.Tensor:
        pos = self.visual.positional_embedding
        if tuple(grid) == tuple(self.visual.grid_size):
            return pos
        return self._resample(pos, grid)

    def adapt_img_size(self, img_size: int) -> bool:
        if self.dynamic_img_size or int(img_size) == self.img_size:
            return False
        if img_size % self.patch_size:
            raise ConfigError(f'CLIPTeacher: img_size {img_size} is not a multiple of the '
                              f'patch size {self.patch_size}.')
        grid = (img_size // self.patch_size, ) * 2
        visual = self.visual
        visual.positional_embedding = torch.nn.Parameter(
            self._resample(visual.positional_embedding.detach(), grid), requires_grad=False)
        visual.image_size, visual.grid_size = (img_size, img_size), grid
        self.img_size = int(img_size)
        return True

    def export_kwargs(self) -> dict:
        return dict(
            arch=self.arch,
            quick_gelu=self.quick_gelu,
            img_size=self.img_size,
            mean=list(self.mean),
            std=list(self.std))

    def export_state_dict(self) -> dict:
        # open_clip's key names, so the file also loads with open_clip (visual only).
        return {f'visual.{k}': v for k, v in self.visual.state_dict().items()}

    def final_norm_module(self):
        return self.visual.ln_post

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        if not self.dynamic_img_size:
            check_input_size(images, (self.img_size, self.img_size), type(self).__name__)
        visual = self.visual
        x = visual.conv1(images)  # [B, width, gh, gw]
        batch, width, gh, gw = x.shape
        x = x.reshape(batch, width, -1).permute(0, 2, 1)
        cls = visual.class_embedding.view(1, 1, -1).expand(batch, -1, -1).to(x.dtype)
        x = torch.cat([cls, x], dim=1)
        x = x + self._pos_embed((gh, gw)).to(x.dtype)
        x = visual.ln_pre(x)
        x = visual.transformer(x)
        return visual.ln_post(x)


def _square(size, what: str) -> int:
    if isinstance(size, (tuple, list)):
        if size[0] != size[1]:
            raise ConfigError(f'Non-square CLIP {what} {tuple(size)} is not supported.')
        size = size[0]
    return int(size)
