"""The FD ViT student: mmpretrain's BEiTViT configured as in the FD release.

Everything architectural comes from ``BEiTViT``; this file adds only what it lacks:
  * drop path applied ONCE per residual branch. mmpretrain 1.2's BEiT layer builds
    its FFN with ``dropout_layer=DropPath(p)`` (which mmcv's FFN applies even with
    ``add_identity=False``) and then applies ``layer.drop_path`` again, so the MLP
    branch is dropped with probability 1-(1-p)^2 (0.51 at p=0.3). FDViT removes the
    FFN's own drop path; the layer's ``drop_path`` stays, as in the release;
  * the release's initialisation (truncated normal cut at one std on every Linear
    and the patch-embedding conv, zero biases, attention-out and fc2 weights
    divided by sqrt(2 * layer index));
  * fused scaled-dot-product attention with the shared relative position bias passed
    as an additive attention bias (the explicit softmax path stays available, and is
    what attention diagnostics switch to, see ``FDAttention.fused``);
  * optional gradient checkpointing for large students.
Parameter names and shapes are exactly BEiTViT's, so checkpoints load into BEiTViT.
"""
import math

import torch
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones import BEiTViT
from mmpretrain.models.utils.attention import BEiTAttention
from torch.utils.checkpoint import checkpoint

from mmfd.models.utils.init_checks import loads_pretrained
from mmfd.registry import MODELS
from mmfd.utils.errors import ConfigError


class FDAttention(BEiTAttention):
    """BEiTAttention with a fused (SDPA) path; same parameters, same maths.

    ``fused`` is True by default; set it to False (diagnostics do, temporarily) to
    run mmpretrain's explicit softmax path, where ``self.attn_drop`` sees the maps.
    """
    fused = True

    def forward(self, x, rel_pos_bias=None):
        if not self.fused:
            return super().forward(x, rel_pos_bias)
        B, N, C = x.shape
        if self.bias == 'qv_bias':
            k_bias = torch.zeros_like(self.v_bias, requires_grad=False)
            qkv_bias = torch.cat((self.q_bias, k_bias, self.v_bias))
            qkv = F.linear(input=x, weight=self.qkv.weight, bias=qkv_bias)
        else:
            qkv = self.qkv(x)
        q, k, v = qkv.reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)

        bias = rel_pos_bias
        if self.relative_position_bias_table is not None:
            Wh, Ww = self.window_size
            own = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(
                Wh * Ww + 1, Wh * Ww + 1, -1).permute(2, 0, 1)
            bias = own if bias is None else bias + own
        if bias is not None:
            # SDPA needs the mask in the query dtype (autocast gives bf16/fp16 q).
            bias = bias.unsqueeze(0).to(q.dtype)
        x = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=bias,
            dropout_p=self.attn_drop.p if self.training else 0.,
            scale=self.scale)
        x = x.transpose(1, 2).reshape(B, N, C)
        return self.proj_drop(self.proj(x))


def single_drop_path(layer) -> None:
    """Leaves one drop path on the MLP branch of a BEiT layer: the layer's own.

    mmcv's ``FFN`` applies its ``dropout_layer`` to the branch output even when it
    does not add the identity, and BEiT's layer drops the same branch again.
    DropPath has no parameters, so checkpoints are unaffected.
    """
    if layer.ffn.add_identity:
        raise ConfigError(
            'FDViT: a layer_cfgs.ffn_cfg without add_identity=False makes the FFN add '
            'its input back inside the residual branch. Passing ffn_cfg replaces '
            "BEiT's default dict(add_identity=False): repeat add_identity=False.")
    layer.ffn.dropout_layer = torch.nn.Identity()


@MODELS.register_module()
class FDViT(BEiTViT):
    """ViT student of Feature Distillation (BEiTViT with the release's defaults).

    Defaults follow the FD release (see docs/method.md): no absolute position
    embedding, one relative position bias table shared by all blocks (with BEiT's 3
    CLS entries), CLS token, layer scale 0.1, q/v biases only, LayerNorm eps 1e-6,
    final norm over all tokens, raw token output [B, 1 + h*w, C], and one drop path
    per residual branch.

    Args:
        with_cp (bool): gradient checkpointing of every block (saves activation
            memory for ViT-L students at the cost of one more forward).
        Others: see :class:`mmpretrain.models.backbones.BEiTViT`.
    """

    def __init__(self,
                 arch='base',
                 img_size=224,
                 patch_size=16,
                 drop_path_rate=0.1,
                 use_abs_pos_emb=False,
                 use_rel_pos_bias=False,
                 use_shared_rel_pos_bias=True,
                 layer_scale_init_value=0.1,
                 bias='qv_bias',
                 norm_cfg=dict(type='LN', eps=1e-6),
                 final_norm=True,
                 out_type='raw',
                 with_cls_token=True,
                 with_cp=False,
                 **kwargs):
        super().__init__(
            arch=arch,
            img_size=img_size,
            patch_size=patch_size,
            drop_path_rate=drop_path_rate,
            use_abs_pos_emb=use_abs_pos_emb,
            use_rel_pos_bias=use_rel_pos_bias,
            use_shared_rel_pos_bias=use_shared_rel_pos_bias,
            layer_scale_init_value=layer_scale_init_value,
            bias=bias,
            norm_cfg=norm_cfg,
            final_norm=final_norm,
            out_type=out_type,
            with_cls_token=with_cls_token,
            **kwargs)
        self.with_cp = with_cp
        self.patch_size = patch_size
        for layer in self.layers:
            # Swap in the fused forward; FDAttention adds no parameters or buffers.
            layer.attn.__class__ = FDAttention
            single_drop_path(layer)

    def init_weights(self):
        super().init_weights()
        if loads_pretrained(self.init_cfg):
            return
        # The release (SimMIM/BEiT code): trunc-normal std 0.02 cut at +-1 std for
        # every Linear and the CLS token, zero biases, unit LayerNorms ...
        for module in self.modules():
            if isinstance(module, torch.nn.Linear):
                trunc_normal_(module.weight, std=.02, a=-.02, b=.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.LayerNorm):
                torch.nn.init.ones_(module.weight)
                torch.nn.init.zeros_(module.bias)
            elif isinstance(module, torch.nn.Conv2d):  # the patch embedding
                trunc_normal_(module.weight, std=.02, a=-.02, b=.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
        if self.cls_token is not None:
            trunc_normal_(self.cls_token, std=.02, a=-.02, b=.02)
        # ... then residual-branch outputs scaled down with depth (fix_init_weight).
        with torch.no_grad():
            for layer_id, layer in enumerate(self.layers, start=1):
                layer.attn.proj.weight.div_(math.sqrt(2.0 * layer_id))
                layer.ffn.layers[1].weight.div_(math.sqrt(2.0 * layer_id))

    def forward(self, x):
        B = x.shape[0]
        x, patch_resolution = self.patch_embed(x)
        if tuple(patch_resolution) != tuple(self.patch_resolution):
            raise ValueError(f'FDViT was built for a {self.patch_resolution} patch grid '
                             f'(img_size={self.img_size}) but got {tuple(patch_resolution)}: its '
                             'relative position table is tied to the grid. Set backbone.img_size.')
        if self.cls_token is not None:
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = self.drop_after_pos(x)
        rel_pos_bias = self.rel_pos_bias() if self.rel_pos_bias is not None else None

        outs = []
        for i, layer in enumerate(self.layers):
            if self.with_cp and self.training and x.requires_grad:
                x = checkpoint(layer, x, rel_pos_bias, use_reentrant=False)
            else:
                x = layer(x, rel_pos_bias)
            if i == len(self.layers) - 1 and self.final_norm:
                x = self.ln1(x)
            if i in self.out_indices:
                outs.append(self._format_output(x, patch_resolution))
        return tuple(outs)
