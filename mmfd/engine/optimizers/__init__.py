"""Optimizer-wrapper constructors for downstream fine-tuning."""
from .layer_decay import LayerDecayOptimWrapperConstructor, get_layer_depth_fn

__all__ = ['LayerDecayOptimWrapperConstructor', 'get_layer_depth_fn']
