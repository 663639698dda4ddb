"""Checkpoint reading and key-format conversion (teacher formats in)."""
from .io import (drop_keys, is_torchscript_archive, load_checkpoint_file, load_state_dict_strict,
                 read_safetensors_metadata, save_safetensors, unwrap_state_dict)
from .teacher_formats import (check_family, guess_family, swin_official_to_timm,
                              swin_timm_to_official)

__all__ = [
    'load_checkpoint_file', 'unwrap_state_dict', 'load_state_dict_strict', 'drop_keys',
    'is_torchscript_archive', 'read_safetensors_metadata', 'save_safetensors', 'guess_family',
    'check_family', 'swin_official_to_timm', 'swin_timm_to_official'
]
