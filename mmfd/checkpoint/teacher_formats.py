"""Key formats of the teacher checkpoints users bring, in one place.

* :func:`guess_family`: tells a CLIP file from a timm/DINO/DeiT ViT file, an official
  Swin/EsViT file or an mmpretrain one, so that a file given to the wrong teacher
  fails with a message saying which teacher it belongs to.
* :func:`swin_official_to_timm`: the official Swin layout (patch merging at the END
  of stage N, persistent index/mask buffers) -> timm's (merging at the START of
  stage N+1). Same renaming as ``timm.models.swin_transformer.checkpoint_filter_fn``
  but with no silent resizing, so that a wrong window size or patch size is a shape
  error instead of an interpolated table.
* :func:`openai_clip_extras`: the non-weight entries of OpenAI's TorchScript state.
"""
import re
from typing import Dict, Iterable, Optional

from mmfd.utils.errors import CheckpointError

# family -> (teacher class, predicate over the key set)
_FAMILY_HINTS = (
    ('clip', 'CLIPTeacher', lambda keys: any(
        k.endswith('class_embedding') or 'visual.conv1.weight' in k or k.startswith(
            'visual.transformer.resblocks') for k in keys)),
    ('swin', 'SwinTeacher', lambda keys: any(
        re.match(r'(.*\.)?layers\.\d+\.blocks\.\d+\.attn\.relative_position_bias_table$', k)
        for k in keys)),
    ('vit', 'ViTTeacher',
     lambda keys: any(re.match(r'(.*\.)?blocks\.\d+\.attn\.qkv\.weight$', k)
                      for k in keys) and any(k.endswith('patch_embed.proj.weight') for k in keys)),
    ('mmpretrain', 'MMPretrainTeacher',
     lambda keys: any(re.match(r'(.*\.)?(layers|stages)\.\d+\.', k)
                      for k in keys) and any('patch_embed.projection.weight' in k or '.w_msa.' in k
                                             for k in keys)),
)
TEACHER_OF_FAMILY = {family: teacher for family, teacher, _ in _FAMILY_HINTS}


def guess_family(keys: Iterable[str]) -> Optional[str]:
    """'clip' | 'swin' | 'vit' | 'mmpretrain' | None from the names of the weights."""
    keys = list(keys)
    for family, _, matches in _FAMILY_HINTS:
        if matches(keys):
            return family
    return None


def check_family(keys: Iterable[str], expected: str, source: str) -> None:
    """Raises when ``keys`` clearly belong to another family than ``expected``."""
    keys = list(keys)
    found = guess_family(keys)
    if found is not None and found != expected:
        raise CheckpointError(f'{source} looks like a {found} checkpoint (keys such as '
                              f'{", ".join(sorted(keys)[:3])}), not a {expected} one: use '
                              f'{TEACHER_OF_FAMILY[found]} for it (or check the file name).')


# OpenAI's TorchScript CLIP keeps these as tensors next to the weights.
OPENAI_CLIP_EXTRAS = ('input_resolution', 'context_length', 'vocab_size')


def is_official_swin_layout(state_dict: Dict) -> bool:
    """Official Swin/EsViT files have a merging layer in stage 0, timm's never do."""
    return 'layers.0.downsample.reduction.weight' in state_dict


def swin_official_to_timm(state_dict: Dict) -> Dict:
    """Official Swin / EsViT keys -> timm ``SwinTransformer`` keys.

    ``layers.N.downsample.*`` (end of stage N) becomes ``layers.N+1.downsample.*``
    (start of stage N+1); the classifier ``head.*`` becomes ``head.fc.*``; the
    ``relative_position_index`` and ``attn_mask`` buffers, which timm rebuilds, are
    dropped. A dict already in timm's layout passes through (buffers dropped).
    """
    official = is_official_swin_layout(state_dict)
    out = {}
    for key, value in state_dict.items():
        if key.endswith(('relative_position_index', 'attn_mask')):
            continue
        if official:
            key = re.sub(r'^layers\.(\d+)\.downsample',
                         lambda m: f'layers.{int(m.group(1)) + 1}.downsample', key)
            key = re.sub(r'^head\.', 'head.fc.', key)
        out[key] = value
    return out


def swin_timm_to_official(state_dict: Dict) -> Dict:
    """Inverse of :func:`swin_official_to_timm` (without the dropped buffers)."""
    out = {}
    for key, value in state_dict.items():
        key = re.sub(r'^layers\.(\d+)\.downsample',
                     lambda m: f'layers.{int(m.group(1)) - 1}.downsample', key)
        key = re.sub(r'^head\.fc\.', 'head.', key)
        out[key] = value
    return out
