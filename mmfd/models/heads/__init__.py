from .fd_head import FDHead, whiten

__all__ = ['FDHead', 'whiten']
