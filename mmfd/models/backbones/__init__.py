from .fd_vit import FDAttention, FDViT

__all__ = ['FDViT', 'FDAttention']
