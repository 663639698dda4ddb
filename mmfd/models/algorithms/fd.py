"""FeatureDistiller: the FD algorithm as an mmpretrain self-supervised algorithm.

data_preprocessor -> student backbone -> FDHead(projection)  ─┐
                 └-> (re-normalise, align) -> frozen teacher -┴-> whitened Smooth-L1

Several teachers (``teachers=dict(clip=..., dino=...)``) each get their own
re-normalisation, input size, head and loss; the losses are weighted and summed.

Every teacher is a submodule (it moves with ``.to()``/``.cuda()``) but it is never
trained, never leaves eval mode, is ignored by DDP, and is left OUT of every saved
state dict: on load it keeps the weights it was built with from its own checkpoint.
A ViT-L FD checkpoint therefore holds the student and the head(s) only.
"""
import logging
import re
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import ModuleDict
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import SwinTransformer, SwinTransformerV2
from mmpretrain.models.selfsup import BaseSelfSupervisor

from mmfd.models.teachers.resampling import TEACHER_VIEW_RESIZE, resize_image, resize_options
from mmfd.registry import MODELS
from mmfd.utils.errors import ConfigError

TEACHER_PREFIX = 'teacher.'
TEACHERS_PREFIX = 'teachers.'
_NAME = re.compile(r'^[A-Za-z_][A-Za-z0-9_]*$')


@MODELS.register_module()
class FeatureDistiller(BaseSelfSupervisor):
    """Feature Distillation (Wei et al., 2022), from one teacher or several.

    Args:
        backbone (dict): the student (e.g. ``FDViT`` or ``SwinTransformerV2``).
        teacher (dict): a registered teacher (``CLIPTeacher``, ``TimmTeacher``, ...).
        head (dict): an ``FDHead``; ``in_channels``/``out_channels`` default to the
            student's and the teacher's widths. With ``teachers``, the options every
            head shares (e.g. ``beta``).
        teachers (dict, optional): instead of ``teacher``: name -> teacher config
            (``dict(clip=dict(type='CLIPTeacher', ...), dino=dict(...))``). Names
            are identifiers; the loss dict logs ``loss_<name>`` for each.
        heads (dict, optional): name -> head options for that teacher's head, on
            top of ``head`` (e.g. ``dict(dino=dict(adaptor='mlp'))``).
        loss_weights (dict, optional): name -> weight of that teacher's loss
            (default 1.0 each); non-negative, with a positive sum.
        teacher_drop_prob (float): UNIC's teacher dropping (several teachers,
            training only): per image, the teacher with the highest loss is always
            kept and every other one is dropped with this probability; a teacher's
            loss is the mean over the batch of its kept per-image losses. 0 = off.
        input_size (int | tuple): the training crop size; the geometry is checked
            for it when the model is built, before any data is read.
        align (str | dict): how a teacher grid that differs from the student's is
            aligned (one mode, or name -> mode with ``teachers``):
            ``'resize_input'`` (the release): the teacher sees the crop resized to
            student_grid x teacher_patch pixels (a teacher config without
            ``img_size`` is adapted to that size once, at build);
            ``'interpolate_target'``: the teacher sees its native ``img_size`` and
            its patch map is bilinearly resized to the student grid;
            ``'interpolate_student'``: the teacher sees its native ``img_size`` and
            the student's patch map is bilinearly resized to the teacher's grid
            before that teacher's head (RADIO's way); ``'none'``: grids must
            already match.
        teacher_view_resize (dict, optional): how the crop is resized for a
            teacher when the sizes differ: ``dict(mode='bilinear', antialias=True)``
            by default (the release; ``mode='bicubic'`` is the other choice).
        include_cls (bool): regress the CLS token too when both sides have one.
        target_after_final_norm (bool): the target is the teacher's tokens after
            its own final norm (the paper); False takes them before it.
        compile_student (bool | dict): ``torch.compile`` the student in place
            (``nn.Module.compile``: parameter names, hence checkpoints, unchanged);
            a dict is passed to ``torch.compile`` as keyword arguments.
        data_preprocessor (dict): defaults to ``SelfSupDataPreprocessor``.
    """
    ALIGN_MODES = ('resize_input', 'interpolate_target', 'interpolate_student', 'none')
    NATIVE_SIZE_MODES = ('interpolate_target', 'interpolate_student')

    def __init__(self,
                 backbone: dict,
                 teacher: Optional[dict] = None,
                 head: Optional[dict] = None,
                 teachers: Optional[dict] = None,
                 heads: Optional[dict] = None,
                 loss_weights: Optional[dict] = None,
                 teacher_drop_prob: float = 0.0,
                 input_size=224,
                 align='resize_input',
                 teacher_view_resize: Optional[dict] = None,
                 include_cls: bool = True,
                 target_after_final_norm: bool = True,
                 compile_student=False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        specs = _teacher_specs(teacher, teachers)
        self.multi_teacher = teachers is not None
        aligns = _per_teacher_align(align, specs, self.ALIGN_MODES)
        head_cfgs = _head_configs(head, heads, specs)
        weights = _loss_weights(loss_weights, specs)
        if not 0 <= teacher_drop_prob <= 1 or (teacher_drop_prob and teachers is None):
            raise ConfigError(f'model.teacher_drop_prob={teacher_drop_prob} must be in [0, 1] '
                              'and needs several teachers (model.teachers).')
        self.teacher_drop_prob = float(teacher_drop_prob)
        self.teacher_view_resize = resize_options(teacher_view_resize, TEACHER_VIEW_RESIZE,
                                                  'model.teacher_view_resize')
        # Parts are mmpretrain/mmfd types: build them in that scope even when the
        # caller's default scope is another toolbox's (scoped names still work).
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            super().__init__(
                backbone=backbone,
                head=None,
                data_preprocessor=data_preprocessor,
                init_cfg=init_cfg)
            built = {
                name: cfg if isinstance(cfg, torch.nn.Module) else MODELS.build(cfg)
                for name, cfg in specs.items()
            }
            if self.multi_teacher:
                self.teachers = ModuleDict(built)
            else:
                self.teacher = built[None]
            self._finish_init(specs, head_cfgs, aligns, weights, include_cls, input_size,
                              target_after_final_norm, compile_student)

    def _finish_init(self, specs, head_cfgs, aligns, weights, include_cls, input_size,
                     target_after_final_norm, compile_student):
        self.include_cls = include_cls
        self.input_size = _pair(input_size)
        self.student_grid, student_width, self.student_has_cls = self._student_geometry()
        self.aligns, self.teacher_input_sizes, self.loss_weights = aligns, {}, weights
        self.renormalises, self.teacher_grids = {}, {}
        heads = {}
        for name, teacher in self.named_teachers().items():
            teacher.freeze()
            teacher.use_final_norm(target_after_final_norm)
            self.teacher_input_sizes[name] = self._teacher_input_size(name)
            # resize_input sets the teacher's size for the user unless the config did.
            if aligns[name] == 'resize_input' and isinstance(specs[name], dict) and \
                    specs[name].get('img_size') is None:
                self._adapt_teacher(name)
            self._check_grids(name)
            heads[name] = self._build_head(name, head_cfgs[name], student_width)
            self._register_renormalisation(name)
        if self.multi_teacher:
            self.heads = ModuleDict(heads)  # mmengine's: init_weights reaches the heads
        else:
            self.head = heads[None]

        if compile_student:
            self.backbone.compile(**(compile_student if isinstance(compile_student, dict) else {}))
        self.register_state_dict_post_hook(_drop_teacher_state)
        self.register_load_state_dict_pre_hook(_keep_teacher_state)
        # DDP: the frozen teachers need no initial broadcast and no gradient buckets.
        self._ddp_params_and_buffers_to_ignore = [
            prefix + name for prefix, teacher in self.teacher_prefixes().items()
            for name, _ in list(teacher.named_parameters()) + list(teacher.named_buffers())
        ]

    # ------------------------------------------------------------------ teachers
    def named_teachers(self) -> Dict[Optional[str], torch.nn.Module]:
        """name -> teacher (the single teacher's name is None)."""
        return dict(self.teachers) if self.multi_teacher else {None: self.teacher}

    def teacher_prefixes(self) -> Dict[str, torch.nn.Module]:
        """State-dict prefix -> teacher ('teacher.' or 'teachers.<name>.')."""
        if self.multi_teacher:
            return {f'{TEACHERS_PREFIX}{n}.': t for n, t in self.teachers.items()}
        return {TEACHER_PREFIX: self.teacher}

    def _teacher(self, name: Optional[str]):
        if not self.multi_teacher:
            return self.teacher
        if name not in self.teachers:
            raise ConfigError(f'No teacher named {name!r}; teachers: {list(self.teachers)}.')
        return self.teachers[name]

    def head_of(self, name: Optional[str]):
        """The head of a teacher (the only one when ``name`` is None)."""
        return self.heads[name] if self.multi_teacher else self.head

    def _label(self, name: Optional[str]) -> str:
        return 'model.teacher' if name is None else f'model.teachers.{name}'

    @property
    def teacher_input_size(self) -> Tuple[int, int]:
        """The single teacher's input size (``teacher_input_sizes[name]`` for several)."""
        return self.teacher_input_sizes[self._only_name()]

    @property
    def align(self) -> str:
        return self.aligns[self._only_name()]

    @property
    def renormalise(self) -> bool:
        return self.renormalises[self._only_name()]

    def _only_name(self):
        if self.multi_teacher:
            raise AttributeError('This FeatureDistiller has several teachers: use the '
                                 'per-teacher dicts (teacher_input_sizes, aligns, ...).')
        return None

    def _build_head(self, name, cfg: dict, student_width: int):
        teacher = self._teacher(name)
        cfg = dict(cfg)
        label = head_option(name)
        cfg.setdefault('type', 'FDHead')
        cfg.setdefault('in_channels', student_width)
        cfg.setdefault('out_channels', teacher.embed_dim)
        if cfg['in_channels'] != student_width:
            raise ConfigError(f'{label}.in_channels={cfg["in_channels"]} but the student '
                              f'{type(self.backbone).__name__} outputs {student_width} channels.')
        if cfg['out_channels'] != teacher.embed_dim:
            raise ConfigError(f'{label}.out_channels={cfg["out_channels"]} but the teacher '
                              f'{type(teacher).__name__} outputs {teacher.embed_dim} channels.')
        return MODELS.build(cfg)

    # ------------------------------------------------------------------ geometry
    def _student_geometry(self) -> Tuple[Tuple[int, int], int, bool]:
        """(grid, width, has_cls) of the student's output at ``input_size``."""
        bb = self.backbone
        if isinstance(bb, (SwinTransformer, SwinTransformerV2)):
            stage = bb.out_indices[-1]
            stride = bb.patch_embed.projection.stride[0] * 2**stage
            grid = (self.input_size[0] // stride, self.input_size[1] // stride)
            return grid, bb.stages[stage].out_channels, False
        if hasattr(bb, 'patch_resolution') and hasattr(bb, 'embed_dims'):
            if getattr(bb, 'out_type', 'raw') != 'raw':
                raise ConfigError(f'model.backbone.out_type must be "raw" for FD '
                                  f'(all tokens), got {bb.out_type!r}.')
            if tuple(bb.img_size) != self.input_size:
                raise ConfigError(f'model.backbone.img_size={tuple(bb.img_size)} but '
                                  f'model.input_size={self.input_size}: make them equal.')
            return tuple(bb.patch_resolution), bb.embed_dims, bb.cls_token is not None
        # Another student: measure its feature map once on a blank image (before
        # any data). A token output [B, N, C] does not say its grid, so it is refused.
        with torch.no_grad():
            out = bb(torch.zeros(1, 3, *self.input_size))[-1]
        if out.dim() != 4:
            raise ConfigError(
                f'Cannot tell the token grid of the student {type(bb).__name__}: it '
                'must output a [B, C, h, w] feature map or, for token outputs, expose '
                '`patch_resolution`, `embed_dims`, `img_size` and `cls_token` like '
                "mmpretrain's ViTs.")
        return tuple(out.shape[-2:]), out.shape[1], False

    def _teacher_input_size(self, name) -> Tuple[int, int]:
        t, align = self._teacher(name), self.aligns[name]
        if align == 'resize_input':
            return (self.student_grid[0] * t.patch_size, self.student_grid[1] * t.patch_size)
        if align in self.NATIVE_SIZE_MODES:
            return _pair(t.img_size)
        return self.input_size

    def _adapt_teacher(self, name):
        """Builds the teacher for the size resize_input feeds it (e.g. 196 px for a
        /14 teacher under a /16 student at 224), so no ``teacher.img_size`` is needed."""
        teacher, size = self._teacher(name), self.teacher_input_sizes[name]
        old = teacher.img_size
        if size[0] != size[1] or size[0] == old:
            return
        if teacher.adapt_img_size(size[0]):
            print_log(
                f'FeatureDistiller: align="resize_input" feeds {self._label(name)} '
                f'{size[0]}x{size[1]} crops (student grid {self.student_grid[0]}x'
                f'{self.student_grid[1]} x teacher patch {teacher.patch_size}); '
                f'{type(teacher).__name__} adapted from {old} px, position table '
                f'resampled once ({_describe(getattr(teacher, "pos_embed_resize", {}))}).',
                logger='current',
                level=logging.INFO)

    def _check_grids(self, name):
        teacher, size, align = self._teacher(
            name), self.teacher_input_sizes[name], self.aligns[name]
        teacher_grid = tuple(teacher.grid_size(size))
        self.teacher_grids[name] = teacher_grid  # the grid its targets come on
        option = _align_option(name)
        if align not in self.NATIVE_SIZE_MODES and teacher_grid != self.student_grid:
            raise ConfigError(
                f'Teacher grid {teacher_grid} of {self._label(name)} (patch '
                f'{teacher.patch_size} at {size}) != student grid {self.student_grid} with '
                f'{option}={align!r}. Use align="resize_input" or '
                '"interpolate_target" / "interpolate_student", or change model.input_size.')
        if min(teacher_grid) < 1:
            raise ConfigError(f'{self._label(name)}: teacher input {size} is smaller than '
                              f'one teacher patch ({teacher.patch_size} px).')

    def _buffer_name(self, name, what: str) -> str:
        return f'_teacher_{what}' if name is None else f'_teacher_{what}_{name}'

    def _register_renormalisation(self, name):
        """x_teacher = x * scale + shift maps the pipeline's normalisation to the
        teacher's (CLIP's mean/std differ from ImageNet's)."""
        teacher = self._teacher(name)
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            mean_in, std_in = pre.mean.view(3), pre.std.view(3)
        else:
            mean_in, std_in = torch.zeros(3), torch.ones(3)
        mean_t = torch.tensor(teacher.mean, dtype=torch.float32)
        std_t = torch.tensor(teacher.std, dtype=torch.float32)
        scale, shift = std_in / std_t, (mean_in - mean_t) / std_t
        self.renormalises[name] = not (torch.allclose(scale, torch.ones(3))
                                       and torch.allclose(shift, torch.zeros(3)))
        self.register_buffer(
            self._buffer_name(name, 'scale'), scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer(
            self._buffer_name(name, 'shift'), shift.view(1, 3, 1, 1), persistent=False)

    # ------------------------------------------------------------------ forward
    def _student_tokens(self, inputs: torch.Tensor):
        out = self.backbone(inputs)[-1]
        if out.dim() == 4:  # [B, C, h, w] feature map (Swin) -> tokens
            grid = tuple(out.shape[-2:])
            return out.flatten(2).transpose(1, 2), grid, False
        return out, self.student_grid, self.student_has_cls

    def extract_feat(self, inputs: torch.Tensor) -> torch.Tensor:
        """Student tokens [B, N, C] (CLS first for ViT students)."""
        return self._student_tokens(inputs)[0]

    @torch.no_grad()
    def teacher_input(self, inputs: torch.Tensor, name: Optional[str] = None) -> torch.Tensor:
        """The student's view re-normalised and resized for a teacher (the only
        one, or ``name``)."""
        self._teacher(name)  # a clear error for an unknown name
        x = inputs
        if self.renormalises[name]:
            x = x * getattr(self, self._buffer_name(name, 'scale')) + getattr(
                self, self._buffer_name(name, 'shift'))
        size = self.teacher_input_sizes[name]
        if tuple(x.shape[-2:]) != size:
            x = resize_image(x, size, **self.teacher_view_resize)
        return x

    @torch.no_grad()
    def compute_target(self,
                       inputs: torch.Tensor,
                       name: Optional[str] = None) -> Tuple[torch.Tensor, bool]:
        """A teacher's tokens [B, N, C] on the student's grid (on the teacher's own
        with ``align='interpolate_student'``), and whether CLS is first."""
        tokens, grid, has_cls = self._teacher(name)(self.teacher_input(inputs, name))
        if tuple(grid) != self.student_grid and self.aligns[name] != 'interpolate_student':
            tokens = _resize_token_map(tokens, grid, self.student_grid, has_cls)
        return tokens, has_cls

    @torch.no_grad()
    def regressed_target(self, inputs: torch.Tensor, name: Optional[str] = None) -> torch.Tensor:
        """A teacher's tokens as its head receives them (CLS dropped unless both
        sides have one and ``include_cls``); for target statistics."""
        target, teacher_cls = self.compute_target(inputs, name)
        if teacher_cls and not self._keeps_cls(teacher_cls, self.student_has_cls):
            target = target[:, 1:]
        return target

    def _keeps_cls(self, teacher_cls: bool, student_cls: bool) -> bool:
        """The CLS token is regressed only when both sides have one and include_cls."""
        return bool(self.include_cls and teacher_cls and student_cls)

    def loss(self, inputs, data_samples=None) -> dict:
        if isinstance(inputs, (list, tuple)):
            if inputs[0].dim() == 3:
                raise ConfigError(
                    'FeatureDistiller got a list of single images: set '
                    "train_dataloader.collate_fn=dict(type='default_collate') (mmengine's "
                    'default pseudo_collate does not stack the batch).')
            inputs = inputs[0]  # one view: teacher and student see the same crop
        # Teachers run in sequence, each under no_grad, before the student.
        targets = {name: self.compute_target(inputs, name) for name in self.named_teachers()}
        student, student_grid, student_cls = self._student_tokens(inputs)
        pairs = {}
        for name, (target, teacher_cls) in targets.items():
            keep_cls = self._keeps_cls(teacher_cls, student_cls)
            pred_tokens = student[:, 1:] if student_cls and not keep_cls else student
            teacher_grid = self.teacher_grids[name]
            if self.aligns[name] == 'interpolate_student' and teacher_grid != tuple(student_grid):
                pred_tokens = _resize_token_map(pred_tokens, student_grid, teacher_grid, keep_cls)
            if teacher_cls and not keep_cls:
                target = target[:, 1:]
            pairs[name] = (pred_tokens, target, keep_cls)
        if not self.multi_teacher:
            pred_tokens, target, keep_cls = pairs[None]
            losses = self.head.loss(pred_tokens, target)
            losses.update(self._summary_loss(None, pred_tokens, target, keep_cls))
            return losses
        if self.teacher_drop_prob and self.training:
            per_image = {
                name: self.head_of(name).loss_per_sample(pred, target)
                for name, (pred, target, _) in pairs.items()
            }
            keep = teacher_keep_mask(torch.stack(list(per_image.values())), self.teacher_drop_prob)
            per_teacher = {
                name: (loss * keep[i]).mean()
                for i, (name, loss) in enumerate(per_image.items())
            }
        else:
            per_teacher = {
                name: self.head_of(name).loss(pred, target)['loss']
                for name, (pred, target, _) in pairs.items()
            }
        losses = {}
        for name, loss in per_teacher.items():
            # mmengine sums every key holding 'loss' into the logged total `loss`.
            losses[f'loss_{name}'] = loss * self.loss_weights[name]
            pred, target, keep_cls = pairs[name]
            losses.update(self._summary_loss(name, pred, target, keep_cls))
        return losses

    def _summary_loss(self, name, pred_tokens, target, keep_cls) -> dict:
        """The optional cosine loss on the CLS (summary) token of a teacher's head."""
        head = self.head_of(name)
        weight = getattr(head, 'summary_loss_weight', 0.0)
        if not weight or not keep_cls:
            return {}
        key = 'loss_summary' if name is None else f'loss_{name}_summary'
        loss = head.summary_loss(pred_tokens[:, 0], target[:, 0])
        return {key: loss * (1.0 if name is None else self.loss_weights[name])}


def teacher_keep_mask(per_image_losses: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """[T, B] losses -> [T, B] float mask: per image the highest-loss teacher is kept,
    every other one is kept with probability 1 - drop_prob (UNIC's teacher dropping)."""
    losses = per_image_losses.detach()
    best = losses.argmax(0, keepdim=True)
    keep = torch.rand(losses.shape, device=losses.device) >= drop_prob
    keep.scatter_(0, best, True)
    return keep.to(per_image_losses.dtype)


# ---------------------------------------------------------------------- state dict
def _keep_teacher_state(module, state_dict, prefix, *args):
    """Load pre-hook: the teachers keep the weights of their own checkpoints. Their
    entries are filled in (or overridden) so that strict loading of a student-only
    checkpoint works."""
    for teacher_prefix, teacher in module.teacher_prefixes().items():
        for name, tensor in teacher.state_dict().items():
            state_dict[prefix + teacher_prefix + name] = tensor


def _drop_teacher_state(module, state_dict, prefix, local_metadata):
    """State-dict post-hook: a frozen teacher is never saved."""
    prefixes = tuple(prefix + p for p in module.teacher_prefixes())
    for key in [k for k in state_dict if k.startswith(prefixes)]:
        del state_dict[key]


# ---------------------------------------------------------------------- options
def _teacher_specs(teacher, teachers) -> Dict[Optional[str], dict]:
    """name -> teacher config (the single teacher's name is None)."""
    if (teacher is None) == (teachers is None):
        raise ConfigError('Set exactly one of model.teacher (one teacher) and model.teachers '
                          '(name -> teacher config).')
    if teachers is None:
        return {None: teacher}
    if not isinstance(teachers, dict) or not teachers:
        raise ConfigError('model.teachers must be a non-empty dict: name -> teacher config.')
    for name in teachers:
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f'model.teachers: {name!r} is not a valid teacher name (an '
                              'identifier: it becomes the loss key loss_<name>).')
    return dict(teachers)


def _unknown(given, specs, option: str) -> None:
    extra = sorted(set(given) - set(specs))
    if extra:
        raise ConfigError(f'{option} names {extra}, which are not teachers; teachers: '
                          f'{sorted(specs)}.')


def _per_teacher_align(align, specs, modes) -> dict:
    if isinstance(align, dict):
        if None in specs:
            raise ConfigError('model.align is a dict (name -> mode) but there is one teacher: '
                              'give one mode.')
        _unknown(align, specs, 'model.align')
        aligns = {name: align.get(name, 'resize_input') for name in specs}
    else:
        aligns = {name: align for name in specs}
    for name, mode in aligns.items():
        if mode not in modes:
            raise ConfigError(f'{_align_option(name)}={mode!r} is not one of {modes}.')
    return aligns


def _head_configs(head, heads, specs) -> dict:
    if heads is not None and None in specs:
        raise ConfigError('model.heads is for several teachers (model.teachers); with one '
                          'teacher use model.head.')
    heads = dict(heads or {})
    _unknown(heads, specs, 'model.heads')
    return {name: dict(head or {}, **(heads.get(name) or {})) for name in specs}


def _loss_weights(weights, specs) -> dict:
    if weights is not None and None in specs:
        raise ConfigError('model.loss_weights is for several teachers; with one teacher use '
                          'model.head.loss_weight.')
    weights = dict(weights or {})
    _unknown(weights, specs, 'model.loss_weights')
    weights = {name: float(weights.get(name, 1.0)) for name in specs}
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError(f'model.loss_weights={weights}: weights must be >= 0 with a '
                          'positive sum.')
    return weights


def _resize_token_map(tokens: torch.Tensor, grid, new_grid, has_cls: bool) -> torch.Tensor:
    """Bilinearly resize the patch part of [B, (1+)h*w, C]; CLS passes through."""
    cls, patches = (tokens[:, :1], tokens[:, 1:]) if has_cls else (None, tokens)
    B, _, C = patches.shape
    fmap = patches.transpose(1, 2).reshape(B, C, *grid)
    fmap = F.interpolate(
        fmap.float(), size=new_grid, mode='bilinear', align_corners=False).to(patches.dtype)
    patches = fmap.flatten(2).transpose(1, 2)
    return patches if cls is None else torch.cat([cls, patches], dim=1)


def head_option(name: Optional[str]) -> str:
    """How messages name a teacher's head option."""
    return 'model.head' if name is None else f'model.heads.{name}'


def _align_option(name: Optional[str]) -> str:
    return 'model.align' if name is None else f'model.align[{name!r}]'


def _describe(resize: dict) -> str:
    if not resize:
        return 'by the teacher'
    return f'{resize["mode"]}, antialias={resize["antialias"]}'


def _pair(size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)
