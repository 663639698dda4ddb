"""Checkpoints in and out: ONE path from a file to a module.

read (:mod:`.io`, local or through ``mmengine.fileio``) -> unwrap and select a prefix
(:mod:`.unwrap`) -> strict load (:mod:`.strict_load`), reported in one format
(:mod:`.report`); :mod:`.pretrained` chains them for ``StrictPretrained``. Key-format
conversion: teacher formats in (:mod:`.teacher_formats`), FD checkpoints out to
downstream backbones (:mod:`.fd_to_backbone`, :mod:`.publish`).
"""
from .io import (is_torchscript_archive, load_checkpoint_file, read_safetensors_metadata,
                 save_safetensors)
from .pretrained import load_pretrained, read_module_state
from .report import LoadReport, format_keys, format_load_error, key_line
from .strict_load import DERIVED_BUFFERS, check_and_load, load_state_dict_strict
from .teacher_formats import (check_family, guess_family, swin_official_to_timm,
                              swin_timm_to_official)
from .unwrap import ENTRY_KEYS, NESTING_KEYS, drop_keys, select_prefix, unwrap_state_dict

__all__ = [
    'load_checkpoint_file', 'unwrap_state_dict', 'select_prefix', 'load_state_dict_strict',
    'check_and_load', 'load_pretrained', 'read_module_state', 'LoadReport', 'format_load_error',
    'format_keys', 'key_line', 'drop_keys', 'DERIVED_BUFFERS', 'ENTRY_KEYS', 'NESTING_KEYS',
    'is_torchscript_archive', 'read_safetensors_metadata', 'save_safetensors', 'guess_family',
    'check_family', 'swin_official_to_timm', 'swin_timm_to_official'
]
