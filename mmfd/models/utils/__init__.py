"""Model-side helpers of mmfd's downstream path."""
from .strict_pretrained import PRETRAINED_INITS, StrictPretrainedInit, read_state_dict, strict_load

__all__ = ['PRETRAINED_INITS', 'StrictPretrainedInit', 'read_state_dict', 'strict_load']
