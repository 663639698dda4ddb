"""Model-side helpers of mmfd's downstream path."""
from .strict_pretrained import PRETRAINED_INITS, LoadedWeightsCheck, StrictPretrainedInit

__all__ = ['PRETRAINED_INITS', 'LoadedWeightsCheck', 'StrictPretrainedInit']
