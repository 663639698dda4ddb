"""Optimizer-wrapper constructors: FD (frozen teacher left out) and layer decay."""
from .fd_constructor import FDOptimWrapperConstructor
from .layer_decay import LayerDecayOptimWrapperConstructor, get_layer_depth_fn

__all__ = ['FDOptimWrapperConstructor', 'LayerDecayOptimWrapperConstructor', 'get_layer_depth_fn']
