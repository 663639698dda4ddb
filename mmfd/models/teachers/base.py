"""The interface every FD teacher implements, the template that builds one, and the
one table of teacher families.

A teacher is a frozen feature extractor: it maps images (normalised with the
teacher's OWN ``mean``/``std``) to its last-layer token map after its final norm.
The FD algorithm reads ``mean``, ``std``, ``patch_size``, ``embed_dim`` and
``has_cls`` to align inputs and grids without knowing the family.

Adding a family is one file in this package (found and imported by the package
``__init__``): a :class:`BaseTeacher` subclass that sets ``family`` (which enters it
in :data:`TEACHER_FAMILIES`), implements :meth:`BaseTeacher.build` and
:meth:`BaseTeacher.forward_tokens`, and, where its files have a recognisable key
format, :meth:`BaseTeacher.looks_like`. :meth:`BaseTeacher.__init__` does the rest
in the same order for every family: options stored in a converted file, the
checkpoint requirement, reading the file (``weights_only`` / safetensors, local or
through ``mmengine.fileio`` with ``backend_args``), the strict load, the input
statistics and the freezing.
"""
import json
import numbers
import os
from typing import Callable, Dict, Iterable, NamedTuple, Optional, Sequence, Tuple

import torch
from mmengine.model import BaseModule

from mmfd.utils.errors import CheckpointError, ConfigError


class TeacherOutput(NamedTuple):
    tokens: torch.Tensor  # [B, N, C]; CLS first when has_cls
    grid: Tuple[int, int]  # (h, w) of the patch tokens
    has_cls: bool


IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
# CLIP's statistics, in the same 0-255 pixel scale mmpretrain's preprocessors use.
CLIP_MEAN = tuple(255 * m for m in (0.48145466, 0.4578275, 0.40821073))
CLIP_STD = tuple(255 * s for s in (0.26862954, 0.26130258, 0.27577711))

# family name -> the teacher class of that family. THE family table: filled by
# BaseTeacher.__init_subclass__ from the ``family`` each family class sets, read by the
# converter, the converted-file checks and the key-format guesses.
TEACHER_FAMILIES: Dict[str, type] = {}

METADATA_KEY = 'mmfd_teacher'


class BaseTeacher(BaseModule):
    """Frozen, always-eval teacher, built by a template.

    A family subclass sets ``family`` and implements :meth:`build` (the network from
    its options) and :meth:`forward_tokens`; it declares, as class attributes, what
    the template needs to know about its files. ``__init__`` then runs, for every
    family:

    1. ``backend_args`` / ``img_size`` checks;
    2. options a converted file (``tools/model_converters/convert_teacher.py``) stores are filled in
       when left None, and those that change what the weights compute must agree
       with the file (``file_options``);
    3. refusal of a silently random teacher (``checkpoint`` or ``allow_random_init``);
    4. :meth:`build` (it may read the weights with :meth:`checkpoint_state` when
       they shape the network, e.g. CLIP's inferred tower, timm's factory);
    5. :meth:`load_state`: strict load of :meth:`read_checkpoint`'s state dict into
       the ``network`` submodule (every missing / unexpected key named);
    6. ``mean`` / ``std``: the option, else the family's default (``default_mean``,
       which :meth:`build` may set from the model's own config);
    7. :meth:`freeze`.

    A subclass without :meth:`build` (a test's toy teacher) gets the module set up
    only and does the rest itself.

    Args (common to every family):
        checkpoint (str): the teacher's weights: a local file or a URL that
            ``mmengine.fileio`` reads; ``.safetensors`` through safetensors, anything
            else through ``torch.load(weights_only=True)``.
        img_size (int, optional): the input size the teacher is built for; each
            family documents its default and what it resamples.
        mean, std (sequence, optional): RGB input statistics, 0-255 scale; default the
            family's (or the model's own pretrained config).
        allow_random_init (bool): build without a checkpoint (tests, benchmarks).
        backend_args (dict, optional): arguments of ``mmengine.fileio``'s backend for
            reading ``checkpoint``, as mmengine's own loaders take them (e.g.
            ``dict(backend='petrel', path_mapping=...)``, ``dict(backend='local')``).
            Default None: the backend is chosen from the path's prefix.
        init_cfg (dict, optional): unused (weights come from the checkpoint).

    Attributes (set by :meth:`build`):
        embed_dim (int): channels of the token map.
        patch_size (int): pixels per token along each side (the stride of the map).
        img_size (int): the input size the teacher was trained at / built for.
        has_cls (bool): whether ``tokens[:, 0]`` is a CLS token.
        mean, std (tuple): the RGB input statistics it expects, 0-255 scale.
    """
    embed_dim: int
    patch_size: int
    img_size: int = 224
    has_cls: bool = True
    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    # --- what a family class declares -------------------------------------------
    family: str = ''  # its name in TEACHER_FAMILIES and in converted files
    # Default statistics (0-255); build() may replace them with the model's own.
    default_mean: Sequence[float] = IMAGENET_MEAN
    default_std: Sequence[float] = IMAGENET_STD
    # Family options a converted file stores and fills in when the config leaves them
    # None (img_size, mean and std always are). A callable value makes the option one
    # that must AGREE with the file once mapped through it (an arch name -> its
    # dimensions): options that change what the weights compute without changing
    # their shapes (ViT heads, QuickGELU), which the strict load cannot catch.
    file_options: Dict[str, Optional[Callable]] = {}
    # Options that must be given (in the config or by a converted file): name -> what.
    required_options: Dict[str, str] = {}
    # Options tools/model_converters/convert_teacher.py sets unless the command line gives them.
    convert_defaults: Dict[str, object] = {}
    # The submodule the checkpoint's weights load into (and are exported from).
    network: str = 'model'
    # Reading the file: the prefix that selects the network inside a bigger model
    # (unwrap_state_dict's select_prefix), the entry of self-distillation files, the
    # regexes of file keys dropped on purpose (heads), whether a file that looks like
    # another family is refused before loading, whether TorchScript may be read.
    select_prefix: Optional[str] = None
    entry: str = 'teacher'
    strict_entry: bool = False
    ignored_keys: Tuple[str, ...] = ()
    refuse_other_families: bool = True
    allow_torchscript: bool = False
    # Order among the families' looks_like() checks (lower first): a more specific
    # format before a more general one that also matches its keys.
    key_format_order: int = 100

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get('family')
        if not name:
            return  # a variant of a family (DINOTeacher) or a teacher outside the table
        known = TEACHER_FAMILIES.get(name)
        if known is not None and (known.__module__, known.__qualname__) != (cls.__module__,
                                                                            cls.__qualname__):
            raise TypeError(f'Teacher family {name!r} is already {known.__module__}.'
                            f'{known.__qualname__}; {cls.__qualname__} needs another name.')
        TEACHER_FAMILIES[name] = cls

    def __init__(self,
                 checkpoint: Optional[str] = None,
                 *,
                 img_size: Optional[int] = None,
                 mean: Optional[Sequence[float]] = None,
                 std: Optional[Sequence[float]] = None,
                 allow_random_init: bool = False,
                 backend_args: Optional[dict] = None,
                 init_cfg: Optional[dict] = None,
                 **options):
        super().__init__(init_cfg=init_cfg)
        if type(self).build is BaseTeacher.build:
            if checkpoint is not None or options:
                raise TypeError(f'{type(self).__name__} has no build(): it builds itself and '
                                'takes no checkpoint or family options through BaseTeacher.')
            return
        name = type(self).__name__
        self.backend_args = check_backend_args(backend_args, name)
        stored = dict({k: options.get(k)
                       for k in self.file_options},
                      img_size=check_img_size(img_size, name),
                      mean=mean,
                      std=std)
        stored = merge_converted_options(
            checkpoint,
            self.family,
            stored,
            must_match={
                k: f
                for k, f in self.file_options.items() if f is not None
            })
        mean, std = stored.pop('mean'), stored.pop('std')
        options.update(stored)
        for option, what in self.required_options.items():
            if options.get(option) is None:
                raise ConfigError(f'{name} needs {option}=<{what}>.')
        load = require_checkpoint(checkpoint, allow_random_init, name)
        self._checkpoint = checkpoint if load else None
        self._state = None
        try:
            self.build(**options)
            if load:
                self.load_state(self.checkpoint_state(), checkpoint)
        finally:
            self._state = None  # the file's tensors are not kept twice
        self.mean = check_statistics(mean if mean is not None else self.default_mean, 'mean', name)
        self.std = check_statistics(std if std is not None else self.default_std, 'std', name)
        self.freeze()

    # ------------------------------------------------------------ family hooks
    def build(self, **options) -> None:
        """Builds the network from the family's options (``img_size`` included) and
        sets ``embed_dim``, ``patch_size``, ``img_size``, ``has_cls``."""
        raise NotImplementedError

    @staticmethod
    def looks_like(keys: Sequence[str]) -> bool:
        """Whether a state dict with these keys is in this family's own format (a
        family without a recognisable format answers False)."""
        return False

    @property
    def loading(self) -> bool:
        """True while a checkpoint is being loaded (in :meth:`build` and after)."""
        return getattr(self, '_checkpoint', None) is not None

    def checkpoint_state(self):
        """The checkpoint's state dict (read once, by :meth:`read_checkpoint`)."""
        if self._state is None:
            self._state = self.read_checkpoint(self._checkpoint)
        return self._state

    def read_checkpoint(self, checkpoint):
        """File -> the flat state dict of the network (nestings, DDP prefixes and the
        ``select_prefix`` removed); a file of another family is refused."""
        from mmfd.checkpoint import load_checkpoint_file, unwrap_state_dict
        state_dict = unwrap_state_dict(
            load_checkpoint_file(
                checkpoint,
                allow_torchscript=self.allow_torchscript,
                backend_args=self.backend_args),
            source=checkpoint,
            select_prefix=self.select_prefix,
            entry=self.entry,
            strict_entry=self.strict_entry)
        if self.refuse_other_families:
            check_family(state_dict, self.family, checkpoint)
        return state_dict

    def load_state(self, state_dict: dict, source: str) -> None:
        """Strict load into the ``network`` submodule (``ignored_keys`` dropped)."""
        from mmfd.checkpoint import load_state_dict_strict
        load_state_dict_strict(
            getattr(self, self.network), state_dict, source, ignore=self.ignored_keys)

    def export_state_dict(self) -> dict:
        """The weights ``tools/model_converters/convert_teacher.py`` writes (the family's key
        format)."""
        return getattr(self, self.network).state_dict()

    def export_kwargs(self) -> dict:
        """The options that rebuild this teacher from its exported weights."""
        raise NotImplementedError

    # ------------------------------------------------------------ frozen module
    def freeze(self) -> None:
        """No gradients, eval mode (no dropout / drop path), forever."""
        for param in self.parameters():
            param.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True):
        # The runner calls model.train() every epoch: a teacher must never leave eval.
        return super().train(False)

    def init_weights(self):
        # Weights come from the teacher's checkpoint, never from mmengine's init.
        pass

    def final_norm_module(self) -> Optional[torch.nn.Module]:
        """The norm applied last to the token map (CLIP ``ln_post``, ViT/Swin
        ``norm``), or None when the family has none to skip."""
        return None

    def use_final_norm(self, enabled: bool = True) -> None:
        """The paper regresses the tokens AFTER the teacher's final norm (default).
        ``use_final_norm(False)`` makes the final norm an identity by a forward hook,
        so the tokens before it become the target (an ablation)."""
        handle = getattr(self, '_skip_norm_handle', None)
        if handle is not None:
            handle.remove()
            self._skip_norm_handle = None
        if enabled:
            return
        module = self.final_norm_module()
        if module is None:
            raise ConfigError(f'{type(self).__name__} has no final norm to skip: '
                              'set model.target_after_final_norm=True.')
        self._skip_norm_handle = module.register_forward_hook(
            lambda _module, args, _output: args[0])

    def adapt_img_size(self, img_size: int) -> bool:
        """Makes the teacher take ``img_size`` inputs, once, at build (FD calls it for
        ``align='resize_input'`` when the config leaves ``teacher.img_size`` unset).

        Returns True when the teacher changed. Teachers with an absolute position
        table resample it (see ``pos_embed_resize``); the default changes nothing:
        a teacher that accepts any size needs nothing, one that does not says so at
        its first forward.
        """
        return False

    def grid_size(self, input_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Token grid produced for an input of ``input_hw`` pixels."""
        return input_hw[0] // self.patch_size, input_hw[1] // self.patch_size

    def forward_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] (teacher-normalised) -> [B, N, C] after the final norm."""
        raise NotImplementedError

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> TeacherOutput:
        tokens = self.forward_tokens(images)
        return TeacherOutput(tokens, self.grid_size(images.shape[-2:]), self.has_cls)


# ---------------------------------------------------------------- the family table
def teacher_class_name(family: Optional[str], default: str = 'ConvertedTeacher') -> str:
    cls = TEACHER_FAMILIES.get(family)
    return cls.__name__ if cls is not None else default


def guess_family(keys: Iterable[str]) -> Optional[str]:
    """The family whose key format ``keys`` are in (each family's ``looks_like``,
    most specific first), or None."""
    keys = list(keys)
    for cls in sorted(TEACHER_FAMILIES.values(), key=lambda c: c.key_format_order):
        if cls.looks_like(keys):
            return cls.family
    return None


def check_family(keys: Iterable[str], expected: str, source: str) -> None:
    """Raises when ``keys`` clearly belong to another family than ``expected``."""
    keys = list(keys)
    found = guess_family(keys)
    if found is not None and found != expected:
        raise CheckpointError(f'{source} looks like a {found} checkpoint (keys such as '
                              f'{", ".join(sorted(keys)[:3])}), not a {expected} one: use '
                              f'{teacher_class_name(found)} for it (or check the file name).')


# ---------------------------------------------------------------- option checks
def check_backend_args(backend_args, teacher: str) -> Optional[dict]:
    """None or a dict (mmengine's ``backend_args``); anything else names the option."""
    if backend_args is None:
        return None
    if not isinstance(backend_args, dict):
        raise ConfigError(
            f'{teacher}: backend_args must be a dict of mmengine.fileio backend arguments '
            f"(e.g. dict(backend='local') or dict(backend='petrel', path_mapping=...)) or "
            f'None, got {type(backend_args).__name__}: {backend_args!r}.')
    return dict(backend_args)


def check_img_size(img_size, teacher: str) -> Optional[int]:
    if img_size is None:
        return None
    if isinstance(img_size, bool) or not isinstance(img_size, numbers.Integral) or img_size <= 0:
        raise ConfigError(f'{teacher}: img_size must be a positive int (one side, in '
                          f'pixels) or None, got {img_size!r}.')
    return int(img_size)


def check_statistics(values, what: str, teacher: str) -> Tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) != 3 or (what == 'std' and min(values) <= 0):
        raise ConfigError(f'{teacher}: {what} must be 3 RGB values in 0-255 scale'
                          f'{" (all > 0)" if what == "std" else ""}, got {values}.')
    return values


def require_checkpoint(checkpoint, allow_random_init: bool, teacher: str) -> bool:
    """True when a checkpoint must be loaded; refuses a silently random teacher."""
    if checkpoint is not None:
        return True
    if not allow_random_init:
        raise ConfigError(f'{teacher} needs checkpoint=<local file>: a teacher with random weights '
                          'distils noise. Pass allow_random_init=True only for tests.')
    return False


# ---------------------------------------------------------------- converted files
def converted_metadata(path) -> Optional[dict]:
    """The mmfd metadata of a converted local ``.safetensors`` teacher, else None."""
    if not isinstance(path, (str, os.PathLike)) or not str(path).endswith('.safetensors') \
            or not os.path.isfile(path):
        return None
    from mmfd.checkpoint import read_safetensors_metadata
    meta = read_safetensors_metadata(str(path))
    if METADATA_KEY not in meta:
        return None
    return json.loads(meta[METADATA_KEY])


def merge_converted_options(path,
                            family: str,
                            given: dict,
                            must_match: Optional[Dict[str, Callable]] = None) -> dict:
    """Checks a converted file against the options a teacher was given.

    Options left as None are filled from the file's metadata. The file must be of
    ``family``, and the options in ``must_match`` (those that change what the
    weights compute without changing their shapes: ViT heads, QuickGELU) must agree
    with it once mapped through ``must_match[key]`` (e.g. an arch name -> its
    dimensions, so 'dino_vitb16' matches 'vit_base_patch16').
    """
    must_match = dict(must_match or {})
    meta = converted_metadata(path)
    if meta is None:
        return given
    if meta.get('family') != family:
        raise CheckpointError(
            f'{path} is a converted {meta.get("family")} teacher, not {family}: use '
            f'{teacher_class_name(meta.get("family"))} or '
            f"dict(type='ConvertedTeacher', checkpoint=...).")
    stored = meta.get('teacher', {})
    merged = dict(given)
    for key, value in given.items():
        if key not in stored:
            continue
        if value is None:
            merged[key] = stored[key]
        elif key in must_match and jsonable(must_match[key](value)) != jsonable(must_match[key](
                stored[key])):
            raise ConfigError(
                f'{path} was converted with {key}={stored[key]!r} but the teacher config '
                f'says {key}={value!r}. Drop the option (it is read from the file) or use '
                'the original checkpoint.')
    return merged


def jsonable(value):
    return json.loads(json.dumps(value, default=str))
