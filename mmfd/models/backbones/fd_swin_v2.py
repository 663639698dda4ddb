"""SwinV2 as the FD release trains it: mmpretrain's SwinTransformerV2 with three fixes.

``FDSwinTransformerV2`` keeps every parameter name and shape of mmpretrain's
``SwinTransformerV2`` (checkpoints load into either class) and changes only:

* **Where drop path sits.** SwinV2 is residual post-norm. The release computes
  ``x = x + drop_path(norm1(attn(x)))`` and ``x = x + drop_path(norm2(mlp(x)))``.
  mmpretrain 1.2 drops the branch BEFORE ``norm1``/``norm2`` (inside
  ``ShiftWindowMSA`` and ``FFN``): a dropped sample then adds the norm's bias instead
  of zero and the kept ones are no longer rescaled by 1/(1-p), so training and
  evaluation compute different functions. Here each block's DropPath is moved after
  its norm. Used by the FD student and by every downstream SwinV2 config.
* **Cosine-attention logits in fp32.** Under AMP the release normalises q and k in
  fp32, computes the scaled logits and adds the position bias in fp32 (the last
  layer of the position-bias MLP runs in fp32 too), and casts the probabilities
  back before multiplying with v.
* **The release's from-scratch init** (only when no pretrained ``init_cfg`` is set):
  trunc-normal std 0.02 on every Linear (position-bias MLP included) and on the
  patch-embedding conv, zero biases, attention-out and fc2 weights divided by
  sqrt(2 * global block index), then every block's norm1/norm2 weight set to 1e-5
  (bias 0) so that each residual branch starts near zero.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model.weight_init import trunc_normal_
from mmpretrain.models.backbones import SwinTransformerV2
from mmpretrain.models.backbones.swin_transformer_v2 import SwinBlockV2
from mmpretrain.models.utils.attention import WindowMSAV2
from torch.utils.checkpoint import checkpoint

from mmfd.models.utils.init_checks import loads_pretrained
from mmfd.registry import MODELS

# The release's initial value of the post-norm weights (its ``init_values``).
POST_NORM_INIT = 1e-5
_MAX_LOGIT_SCALE = math.log(1. / 0.01)


def _autocast_off(tensor: torch.Tensor):
    return torch.autocast(device_type=tensor.device.type, enabled=False)


class FP32CosineWindowMSA(WindowMSAV2):
    """WindowMSAV2 whose attention logits are computed in fp32 (same parameters)."""

    def relative_position_bias(self) -> torch.Tensor:
        """16 * sigmoid(cpb_mlp(table)), [heads, N, N]; the MLP's last layer in fp32."""
        first, act, last = self.cpb_mlp
        hidden = act(first(self.relative_coords_table))
        with _autocast_off(hidden):
            table = F.linear(hidden.float(), last.weight.float()).view(-1, self.num_heads)
        n = self.window_size[0] * self.window_size[1]
        bias = table[self.relative_position_index.view(-1)].view(n, n, -1)
        return 16 * torch.sigmoid(bias.permute(2, 0, 1))

    def forward(self, x, mask=None):
        B_, N, C = x.shape
        qkv_bias = None
        if self.q_bias is not None:
            qkv_bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, qkv_bias)
        q, k, v = qkv.reshape(B_, N, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)

        bias = self.relative_position_bias()
        with _autocast_off(x):
            q = F.normalize(q.float(), dim=-1)
            k = F.normalize(k.float(), dim=-1)
            scale = torch.clamp(self.logit_scale.float(), max=_MAX_LOGIT_SCALE).exp()
            attn = (q @ k.transpose(-2, -1)) * scale + bias.float().unsqueeze(0)
            if mask is not None:
                nW = mask.shape[0]
                attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + \
                    mask.float().unsqueeze(1).unsqueeze(0)
                attn = attn.view(-1, self.num_heads, N, N)
            # self.softmax is what attention diagnostics observe.
            attn = self.softmax(attn)
        attn = self.attn_drop(attn.to(v.dtype))
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        return self.proj_drop(self.proj(x))


class PostNormDropPathBlock(SwinBlockV2):
    """SwinBlockV2 with drop path after the post-norm: x + dp(norm(branch(x)))."""

    def forward(self, x, hw_shape):

        def _inner_forward(x):
            x = x + self.drop_path(self.norm1(self.attn(x, hw_shape)))
            x = x + self.drop_path(self.norm2(self.ffn(x)))
            if self.extra_norm:
                x = self.norm3(x)
            return x

        if self.with_cp and x.requires_grad:
            return checkpoint(_inner_forward, x, use_reentrant=False)
        return _inner_forward(x)


def move_drop_path_after_norm(block: SwinBlockV2) -> None:
    """Re-homes a built block's DropPath after its norms (no parameters move)."""
    block.drop_path = block.attn.drop  # the DropPath ShiftWindowMSA built
    block.attn.drop = nn.Identity()
    block.ffn.dropout_layer = nn.Identity()
    block.__class__ = PostNormDropPathBlock
    block.attn.w_msa.__class__ = FP32CosineWindowMSA


@MODELS.register_module()
class FDSwinTransformerV2(SwinTransformerV2):
    """mmpretrain's SwinTransformerV2 with the FD release's drop path, AMP and init.

    Arguments are :class:`mmpretrain.models.backbones.SwinTransformerV2`'s. The FD
    student (``configs/_base_/models/fd_swinv2_base_w14.py``) and the SwinV2
    fine-tune / detection / segmentation configs use it; weights are
    interchangeable with ``SwinTransformerV2``.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for block in self.blocks():
            move_drop_path_after_norm(block)

    def blocks(self):
        return [block for stage in self.stages for block in stage.blocks]

    def init_weights(self):
        super().init_weights()
        if loads_pretrained(self.init_cfg):
            return
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                trunc_normal_(module.weight, std=.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        with torch.no_grad():
            for index, block in enumerate(self.blocks(), start=1):
                block.attn.w_msa.proj.weight.div_(math.sqrt(2.0 * index))
                block.ffn.layers[1].weight.div_(math.sqrt(2.0 * index))
                for norm in (block.norm1, block.norm2):
                    norm.weight.fill_(POST_NORM_INIT)
                    norm.bias.zero_()
