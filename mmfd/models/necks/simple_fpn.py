"""ViTDet's simple feature pyramid (Li et al., 2022) for plain ViT backbones.

mmdet keeps its ``SimpleFPN`` in ``projects/ViTDet``, which the pip wheel does not
ship, so it is re-implemented here with the same structure, parameter names and
config interface. From the last ViT map (stride 16) it builds strides 4, 8, 16, 32
(deconv x2 twice / deconv x2 / identity / max-pool), then per level a 1x1 lateral
and a 3x3 output conv, each followed by a channel LayerNorm (``LN2d``), and extra
levels by stride-2 max-pooling (P6 for the RPN).

Registered in mmpretrain's ``MODELS`` like the rest of mmfd; an mmdet config
refers to it as ``type='mmpretrain.SimpleFPN'``.
"""
from typing import List, Optional, Sequence, Tuple

import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule
from mmpretrain.models.utils.norm import LayerNorm2d
from torch import Tensor

from mmfd.registry import MODELS


def _norm(norm_cfg: Optional[dict], channels: int) -> nn.Module:
    if norm_cfg is None:
        return nn.Identity()
    cfg = dict(norm_cfg)
    norm_type = cfg.pop('type')
    requires_grad = cfg.pop('requires_grad', True)
    if norm_type in ('LN2d', 'LayerNorm2d'):
        # Built directly: 'LN2d' lives in mmpretrain's registry, which a norm
        # lookup from the mmdet scope would not search.
        layer = LayerNorm2d(channels, **cfg)
    else:
        from mmcv.cnn import build_norm_layer
        layer = build_norm_layer(dict(type=norm_type, **cfg), channels)[1]
    for param in layer.parameters():
        param.requires_grad = requires_grad
    return layer


class ConvNorm(nn.Sequential):
    """Conv (no bias when normalised) + norm, mmcv ConvModule's parameter names."""

    def __init__(self, in_channels, out_channels, kernel_size, norm_cfg):
        super().__init__()
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=norm_cfg is None)
        if norm_cfg is not None:
            self.ln = _norm(norm_cfg, out_channels)


@MODELS.register_module()
class SimpleFPN(BaseModule):
    """Simple feature pyramid from a single stride-16 map.

    Args:
        backbone_channel (int): channels of the backbone's last map (768 ViT-B).
        in_channels (list[int]): channels of the four built maps
            (``[c/4, c/2, c, c]``, as in ViTDet).
        out_channels (int): pyramid width (256 for Mask R-CNN).
        num_outs (int): levels returned; more than 4 adds max-pooled levels.
        norm_cfg (dict | None): ``dict(type='LN2d')`` (default) or any mmcv norm.
    """

    def __init__(self,
                 backbone_channel: int,
                 in_channels: Sequence[int],
                 out_channels: int,
                 num_outs: int,
                 norm_cfg: Optional[dict] = dict(type='LN2d', requires_grad=True),
                 init_cfg=None) -> None:
        super().__init__(init_cfg=init_cfg)
        c = backbone_channel
        if list(in_channels) != [c // 4, c // 2, c, c]:
            raise ValueError(f'SimpleFPN in_channels must be [c/4, c/2, c, c] for '
                             f'backbone_channel={c}, got {list(in_channels)}')
        self.backbone_channel = c
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.num_ins = len(in_channels)
        self.num_outs = num_outs

        self.fpn1 = nn.Sequential(
            nn.ConvTranspose2d(c, c // 2, 2, 2), _norm(norm_cfg, c // 2), nn.GELU(),
            nn.ConvTranspose2d(c // 2, c // 4, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(c, c // 2, 2, 2))
        self.fpn3 = nn.Sequential(nn.Identity())
        self.fpn4 = nn.Sequential(nn.MaxPool2d(kernel_size=2, stride=2))

        self.lateral_convs = nn.ModuleList(
            ConvNorm(ch, out_channels, 1, norm_cfg) for ch in in_channels)
        self.fpn_convs = nn.ModuleList(
            ConvNorm(out_channels, out_channels, 3, norm_cfg) for _ in in_channels)

    def forward(self, inputs: Sequence[Tensor]) -> Tuple[Tensor, ...]:
        x = inputs[-1]
        if x.dim() != 4:
            raise ValueError('SimpleFPN needs a [B, C, H, W] map: set the ViT '
                             "backbone's out_type='featmap'.")
        maps: List[Tensor] = [self.fpn1(x), self.fpn2(x), self.fpn3(x), self.fpn4(x)]
        outs = [fpn(lat(m)) for m, lat, fpn in zip(maps, self.lateral_convs, self.fpn_convs)]
        for _ in range(self.num_outs - self.num_ins):
            outs.append(F.max_pool2d(outs[-1], 1, stride=2))
        return tuple(outs)
