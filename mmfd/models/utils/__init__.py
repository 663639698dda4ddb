"""Model-side helpers of mmfd's downstream path."""
from .strict_pretrained import StrictPretrainedInit, read_state_dict, strict_load

__all__ = ['StrictPretrainedInit', 'read_state_dict', 'strict_load']
