"""Helpers every teacher shares, the teacher factory and converted-file support.

A converted teacher file (``tools/model_converters/convert_teacher.py``) is one safetensors file
holding the teacher's weights in its canonical key format, with its metadata (the
teacher config minus the checkpoint, mean/std, patch size...) stored both in the
safetensors header and in a ``.json`` sidecar. ``ConvertedTeacher`` rebuilds the
teacher from it::

    teacher = dict(type='ConvertedTeacher', checkpoint='clip_vitb16.safetensors')
"""
import copy
import difflib
import os
from typing import Dict, Iterable, Optional, Tuple, Union

import torch

from mmfd.checkpoint import ENTRY_KEYS
from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError
from .base import METADATA_KEY, converted_metadata, jsonable


def lookup_arch(arch: str, table: Dict[str, dict], what: str) -> dict:
    """``table[arch]`` or a ConfigError suggesting the closest known names."""
    if arch in table:
        return dict(table[arch])
    close = difflib.get_close_matches(str(arch), list(table), n=3, cutoff=0.5)
    hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
    raise ConfigError(f'Unknown {what} arch {arch!r}.{hint} Known: {", ".join(sorted(table))}; '
                      'or pass a dict with the dimensions.')


def check_entry(entry: Optional[str], default: str) -> Tuple[str, bool]:
    """(entry to load, whether it is required) from a teacher's ``entry`` option."""
    if entry is None:
        return default, False
    if entry not in ENTRY_KEYS:
        raise ConfigError(f'entry={entry!r} is not one of {list(ENTRY_KEYS)}.')
    return entry, True


def check_input_size(images: torch.Tensor, img_size: Tuple[int, int], teacher: str) -> None:
    """Fixed-size teachers: the input must be the size the position tables fit."""
    if tuple(images.shape[-2:]) != tuple(img_size):
        raise ConfigError(
            f'{teacher} was built for {img_size[0]}x{img_size[1]} inputs, got '
            f'{images.shape[-2]}x{images.shape[-1]}. Resize the teacher view to its '
            'img_size, build the teacher with img_size=<size> (position embeddings are '
            'interpolated once at load), or dynamic_img_size=True (interpolated per '
            'call) where the teacher supports it.')


def teacher_metadata(teacher, source: str = '') -> dict:
    """What ``tools/model_converters/convert_teacher.py`` writes next to the weights."""
    config = dict(type=type(teacher).__name__, **teacher.export_kwargs())
    return jsonable(
        dict(
            format='mmfd-teacher',
            version=1,
            family=teacher.family,
            teacher=config,
            arch=config.get('arch') or config.get('model') or config.get('config', {}).get('type'),
            mean=list(teacher.mean),
            std=list(teacher.std),
            mean_std_scale='0-255',
            patch_size=teacher.patch_size,
            embed_dim=teacher.embed_dim,
            img_size=teacher.img_size,
            has_cls=teacher.has_cls,
            source=os.path.basename(source)))


@MODELS.register_module(name='ConvertedTeacher')
def build_converted_teacher(checkpoint: str, **overrides):
    """Builds the teacher a converted ``.safetensors`` file describes.

    ``overrides`` (e.g. ``img_size``, ``dynamic_img_size``) replace the stored config.
    """
    meta = converted_metadata(checkpoint)
    if meta is None:
        if not os.path.isfile(str(checkpoint)):
            raise CheckpointError(f'Checkpoint file not found: {checkpoint}')
        raise CheckpointError(
            f'{checkpoint} is not a teacher converted by '
            'tools/model_converters/convert_teacher.py (no '
            f'"{METADATA_KEY}" metadata in a .safetensors header): use the family '
            "teacher, e.g. dict(type='ViTTeacher', arch=..., checkpoint=...).")
    cfg = copy.deepcopy(meta['teacher'])
    cfg.update(overrides, checkpoint=checkpoint)
    return MODELS.build(cfg)


def build_teacher(cfg: Union[dict, str, os.PathLike]):
    """A teacher from a config dict, or from the path of a converted file."""
    if isinstance(cfg, (str, os.PathLike)):
        return build_converted_teacher(os.fspath(cfg))
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ConfigError(f"A teacher config is a dict with a 'type', got {cfg!r}")
    return MODELS.build(cfg)


def unused_keys(names: Iterable[str]) -> Tuple[str, ...]:
    """Regexes matching the top-level modules named (heads the teachers never use)."""
    return tuple(rf'^{name}(\.|$)' for name in names)
