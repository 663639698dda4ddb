"""The FD paper's diagnostics as pure functions (shared by hooks and tools).

- :mod:`.recording`: :class:`AttentionRecorder`, attention maps of ViT / BEiT /
  FDViT / Swin / SwinV2 / timm / open_clip models without changing outputs
  (:mod:`.recompute`: the maps fused kernels never materialise).
- :mod:`.attention_metrics`: attention distance, head diversity, averaged maps.
- :mod:`.landscape`: filter-normalised loss landscapes and sharpness.
- :mod:`.plots`: the figures. :mod:`.analysis`: targets, images, reports.
- :mod:`.loading`: models from configs / checkpoints for the tools.
"""
from .attention_metrics import (AttentionStatistics, attention_distance, average_attention,
                                distance_spread, head_kl, head_kl_matrix, head_similarity,
                                head_similarity_matrix, pairwise_distances, patch_attention,
                                token_positions)
from .landscape import (filter_normalize, landscape_parameters, loss_landscape, make_loss_fn,
                        perturbed, random_direction, sharpness)
from .recording import AttentionRecord, AttentionRecorder, TokenGeometry, resolve_geometry

__all__ = [
    'AttentionRecord',
    'AttentionRecorder',
    'TokenGeometry',
    'resolve_geometry',
    'AttentionStatistics',
    'attention_distance',
    'average_attention',
    'distance_spread',
    'head_kl',
    'head_kl_matrix',
    'head_similarity',
    'head_similarity_matrix',
    'pairwise_distances',
    'patch_attention',
    'token_positions',
    'filter_normalize',
    'landscape_parameters',
    'loss_landscape',
    'make_loss_fn',
    'perturbed',
    'random_direction',
    'sharpness',
]
