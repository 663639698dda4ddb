"""FeatureDistiller: the FD algorithm as an mmpretrain self-supervised algorithm.

data_preprocessor -> student backbone -> FDHead(projection)  ─┐
                 └-> (re-normalise, align) -> frozen teacher -┴-> whitened Smooth-L1

The teacher is a submodule (it moves with ``.to()``/``.cuda()``) but it is never
trained, never leaves eval mode, is ignored by DDP, and is left OUT of every saved
state dict: on load it keeps the weights it was built with from its own checkpoint.
A ViT-L FD checkpoint therefore holds the student and the head only.
"""
import logging
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.registry import DefaultScope
from mmpretrain.models.backbones import SwinTransformer, SwinTransformerV2
from mmpretrain.models.selfsup import BaseSelfSupervisor

from mmfd.models.teachers.resampling import TEACHER_VIEW_RESIZE, resize_image, resize_options
from mmfd.registry import MODELS
from mmfd.utils.errors import ConfigError

TEACHER_PREFIX = 'teacher.'


@MODELS.register_module()
class FeatureDistiller(BaseSelfSupervisor):
    """Feature Distillation (Wei et al., 2022).

    Args:
        backbone (dict): the student (e.g. ``FDViT`` or ``SwinTransformerV2``).
        teacher (dict): a registered teacher (``CLIPTeacher``, ``ViTTeacher``, ...).
        head (dict): an ``FDHead``; ``in_channels``/``out_channels`` default to the
            student's and the teacher's widths.
        input_size (int | tuple): the training crop size; the geometry is checked
            for it when the model is built, before any data is read.
        align (str): how a teacher grid that differs from the student's is aligned:
            ``'resize_input'`` (the release): the teacher sees the crop resized to
            student_grid x teacher_patch pixels (a teacher config without
            ``img_size`` is adapted to that size once, at build);
            ``'interpolate_target'``: the
            teacher sees its native ``img_size`` and its patch map is bilinearly
            resized to the student grid; ``'none'``: grids must already match.
        teacher_view_resize (dict, optional): how the crop is resized for the
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
    ALIGN_MODES = ('resize_input', 'interpolate_target', 'none')

    def __init__(self,
                 backbone: dict,
                 teacher: dict,
                 head: Optional[dict] = None,
                 input_size=224,
                 align: str = 'resize_input',
                 teacher_view_resize: Optional[dict] = None,
                 include_cls: bool = True,
                 target_after_final_norm: bool = True,
                 compile_student=False,
                 data_preprocessor: Optional[dict] = None,
                 init_cfg: Optional[dict] = None):
        if align not in self.ALIGN_MODES:
            raise ConfigError(f'model.align={align!r} is not one of {self.ALIGN_MODES}.')
        self.teacher_view_resize = resize_options(teacher_view_resize, TEACHER_VIEW_RESIZE,
                                                  'model.teacher_view_resize')
        # resize_input sets the teacher's size for the user unless the config did.
        adapt_teacher = align == 'resize_input' and isinstance(teacher, dict) and \
            teacher.get('img_size') is None
        # Parts are mmpretrain/mmfd types: build them in that scope even when the
        # caller's default scope is another toolbox's (scoped names still work).
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            super().__init__(
                backbone=backbone,
                head=None,
                data_preprocessor=data_preprocessor,
                init_cfg=init_cfg)
            self.teacher = (
                teacher if isinstance(teacher, torch.nn.Module) else MODELS.build(teacher))
            self._finish_init(head, align, include_cls, input_size, target_after_final_norm,
                              compile_student, adapt_teacher)

    def _finish_init(self, head, align, include_cls, input_size, target_after_final_norm,
                     compile_student, adapt_teacher):
        self.teacher.freeze()
        self.teacher.use_final_norm(target_after_final_norm)
        self.align = align
        self.include_cls = include_cls
        self.input_size = _pair(input_size)

        self.student_grid, student_width, self.student_has_cls = self._student_geometry()
        self.teacher_input_size = self._teacher_input_size()
        if adapt_teacher:
            self._adapt_teacher()
        self._check_grids()

        head = dict(head or {})
        head.setdefault('type', 'FDHead')
        head.setdefault('in_channels', student_width)
        head.setdefault('out_channels', self.teacher.embed_dim)
        if head['in_channels'] != student_width:
            raise ConfigError(f'model.head.in_channels={head["in_channels"]} but the student '
                              f'{type(self.backbone).__name__} outputs {student_width} channels.')
        if head['out_channels'] != self.teacher.embed_dim:
            raise ConfigError(
                f'model.head.out_channels={head["out_channels"]} but the teacher '
                f'{type(self.teacher).__name__} outputs {self.teacher.embed_dim} channels.')
        self.head = MODELS.build(head)

        self._register_renormalisation()
        if compile_student:
            self.backbone.compile(**(compile_student if isinstance(compile_student, dict) else {}))
        self.register_state_dict_post_hook(_drop_teacher_state)
        self.register_load_state_dict_pre_hook(_keep_teacher_state)
        # DDP: the frozen teacher needs no initial broadcast and no gradient buckets.
        self._ddp_params_and_buffers_to_ignore = [
            TEACHER_PREFIX + name for name, _ in self.teacher.named_parameters()
        ] + [TEACHER_PREFIX + name for name, _ in self.teacher.named_buffers()]

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

    def _teacher_input_size(self) -> Tuple[int, int]:
        t = self.teacher
        if self.align == 'resize_input':
            return (self.student_grid[0] * t.patch_size, self.student_grid[1] * t.patch_size)
        if self.align == 'interpolate_target':
            return _pair(t.img_size)
        return self.input_size

    def _adapt_teacher(self):
        """Builds the teacher for the size resize_input feeds it (e.g. 196 px for a
        /14 teacher under a /16 student at 224), so no ``teacher.img_size`` is needed."""
        size = self.teacher_input_size
        old = self.teacher.img_size
        if size[0] != size[1] or size[0] == old:
            return
        if self.teacher.adapt_img_size(size[0]):
            print_log(
                f'FeatureDistiller: align="resize_input" feeds the teacher '
                f'{size[0]}x{size[1]} crops (student grid {self.student_grid[0]}x'
                f'{self.student_grid[1]} x teacher patch {self.teacher.patch_size}); '
                f'{type(self.teacher).__name__} adapted from {old} px, position table '
                f'resampled once ({_describe(getattr(self.teacher, "pos_embed_resize", {}))}).',
                logger='current',
                level=logging.INFO)

    def _check_grids(self):
        teacher_grid = self.teacher.grid_size(self.teacher_input_size)
        if self.align != 'interpolate_target' and tuple(teacher_grid) != self.student_grid:
            raise ConfigError(
                f'Teacher grid {tuple(teacher_grid)} (patch {self.teacher.patch_size} at '
                f'{self.teacher_input_size}) != student grid {self.student_grid} with '
                f'model.align={self.align!r}. Use align="resize_input" or '
                '"interpolate_target", or change model.input_size.')
        if min(teacher_grid) < 1:
            raise ConfigError(f'Teacher input {self.teacher_input_size} is smaller than '
                              f'one teacher patch ({self.teacher.patch_size} px).')

    def _register_renormalisation(self):
        """x_teacher = x * scale + shift maps the pipeline's normalisation to the
        teacher's (CLIP's mean/std differ from ImageNet's)."""
        pre = self.data_preprocessor
        if getattr(pre, '_enable_normalize', False):
            mean_in, std_in = pre.mean.view(3), pre.std.view(3)
        else:
            mean_in, std_in = torch.zeros(3), torch.ones(3)
        mean_t = torch.tensor(self.teacher.mean, dtype=torch.float32)
        std_t = torch.tensor(self.teacher.std, dtype=torch.float32)
        scale, shift = std_in / std_t, (mean_in - mean_t) / std_t
        self.renormalise = not (torch.allclose(scale, torch.ones(3))
                                and torch.allclose(shift, torch.zeros(3)))
        self.register_buffer('_teacher_scale', scale.view(1, 3, 1, 1), persistent=False)
        self.register_buffer('_teacher_shift', shift.view(1, 3, 1, 1), persistent=False)

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
    def teacher_input(self, inputs: torch.Tensor) -> torch.Tensor:
        """The student's view re-normalised and resized for the teacher."""
        x = inputs
        if self.renormalise:
            x = x * self._teacher_scale + self._teacher_shift
        if tuple(x.shape[-2:]) != self.teacher_input_size:
            x = resize_image(x, self.teacher_input_size, **self.teacher_view_resize)
        return x

    @torch.no_grad()
    def compute_target(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, bool]:
        """Teacher tokens [B, N, C] on the student's grid, and whether CLS is first."""
        tokens, grid, has_cls = self.teacher(self.teacher_input(inputs))
        if tuple(grid) != self.student_grid:
            tokens = _resize_token_map(tokens, grid, self.student_grid, has_cls)
        return tokens, has_cls

    def loss(self, inputs, data_samples=None) -> dict:
        if isinstance(inputs, (list, tuple)):
            if inputs[0].dim() == 3:
                raise ConfigError(
                    'FeatureDistiller got a list of single images: set '
                    "train_dataloader.collate_fn=dict(type='default_collate') (mmengine's "
                    'default pseudo_collate does not stack the batch).')
            inputs = inputs[0]  # one view: teacher and student see the same crop
        target, teacher_cls = self.compute_target(inputs)
        student, _, student_cls = self._student_tokens(inputs)
        keep_cls = self.include_cls and teacher_cls and student_cls
        if student_cls and not keep_cls:
            student = student[:, 1:]
        if teacher_cls and not keep_cls:
            target = target[:, 1:]
        return self.head.loss(student, target)


# ---------------------------------------------------------------------- state dict
def _keep_teacher_state(module, state_dict, prefix, *args):
    """Load pre-hook: the teacher keeps the weights of its own checkpoint. Its
    entries are filled in (or overridden) so that strict loading of a student-only
    checkpoint works."""
    for name, tensor in module.teacher.state_dict().items():
        state_dict[prefix + TEACHER_PREFIX + name] = tensor


def _drop_teacher_state(module, state_dict, prefix, local_metadata):
    """State-dict post-hook: the frozen teacher is never saved."""
    for key in [k for k in state_dict if k.startswith(prefix + TEACHER_PREFIX)]:
        del state_dict[key]


def _resize_token_map(tokens: torch.Tensor, grid, new_grid, has_cls: bool) -> torch.Tensor:
    """Bilinearly resize the patch part of [B, (1+)h*w, C]; CLS passes through."""
    cls, patches = (tokens[:, :1], tokens[:, 1:]) if has_cls else (None, tokens)
    B, _, C = patches.shape
    fmap = patches.transpose(1, 2).reshape(B, C, *grid)
    fmap = F.interpolate(
        fmap.float(), size=new_grid, mode='bilinear', align_corners=False).to(patches.dtype)
    patches = fmap.flatten(2).transpose(1, 2)
    return patches if cls is None else torch.cat([cls, patches], dim=1)


def _describe(resize: dict) -> str:
    if not resize:
        return 'by the teacher'
    return f'{resize["mode"]}, antialias={resize["antialias"]}'


def _pair(size) -> Tuple[int, int]:
    return (size, size) if isinstance(size, int) else tuple(size)
