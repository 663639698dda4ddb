"""Teacher key formats, kept importable from here.

Each family's key-format code lives next to its teacher, in
``mmfd/models/teachers/<family>.py`` (its ``looks_like`` and converters); the
family table and the guesses built on it in ``mmfd/models/teachers/base.py``. The
names below forward there. They import the teachers when called, not when this
module loads: the teachers themselves import :mod:`mmfd.checkpoint`.
"""
from typing import Dict, Iterable, Optional


def guess_family(keys: Iterable[str]) -> Optional[str]:
    """'clip' | 'swin' | 'vit' | 'mmpretrain' | None from the names of the weights."""
    from mmfd.models.teachers.base import guess_family as guess
    return guess(keys)


def check_family(keys: Iterable[str], expected: str, source: str) -> None:
    """Raises when ``keys`` clearly belong to another family than ``expected``."""
    from mmfd.models.teachers.base import check_family as check
    check(keys, expected, source)


def is_official_swin_layout(state_dict: Dict) -> bool:
    from mmfd.models.teachers.swin import is_official_swin_layout as official
    return official(state_dict)


def swin_official_to_timm(state_dict: Dict) -> Dict:
    """Official Swin / EsViT keys -> timm ``SwinTransformer`` keys."""
    from mmfd.models.teachers.swin import swin_official_to_timm as convert
    return convert(state_dict)


def swin_timm_to_official(state_dict: Dict) -> Dict:
    """Inverse of :func:`swin_official_to_timm` (without the dropped buffers)."""
    from mmfd.models.teachers.swin import swin_timm_to_official as convert
    return convert(state_dict)


def __getattr__(name: str):
    # Constants that moved: read from their family modules on first use.
    if name == 'TEACHER_OF_FAMILY':
        from mmfd.models.teachers.base import TEACHER_FAMILIES
        return {family: cls.__name__ for family, cls in TEACHER_FAMILIES.items()}
    if name == 'OPENAI_CLIP_EXTRAS':
        from mmfd.models.teachers.clip import OPENAI_CLIP_EXTRAS
        return OPENAI_CLIP_EXTRAS
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
