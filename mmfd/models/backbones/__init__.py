from .fd_swin_v2 import FDSwinTransformerV2
from .fd_vit import FDAttention, FDViT

__all__ = ['FDViT', 'FDAttention', 'FDSwinTransformerV2']
