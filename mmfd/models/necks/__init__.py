"""Necks for downstream detection / segmentation with distilled backbones."""
from .simple_fpn import SimpleFPN

__all__ = ['SimpleFPN']
