"""Attention maps that fused kernels never materialise, recomputed from the
module's own weights and its forward input (called from forward pre-hooks).

Each function follows the explicit path of its module operation by operation
(same scaling order, same bias and mask handling), so its maps equal the ones the
module's explicit path would produce up to float rounding.
"""
import functools
from typing import Optional

import torch
import torch.nn.functional as F


def _masked(logits: torch.Tensor, mask: Optional[torch.Tensor]) -> torch.Tensor:
    """Adds an attention mask with SDPA semantics (bool: True = may attend)."""
    if mask is None:
        return logits
    if mask.dtype == torch.bool:
        return logits.masked_fill(~mask, float('-inf'))
    return logits + mask


def mmpretrain_mha_maps(module, x):
    B, N, _ = x.shape
    qkv = module.qkv(x).reshape(B, N, 3, module.num_heads, module.head_dims).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    sdpa = module.scaled_dot_product_attention
    if isinstance(sdpa, functools.partial):
        # mmpretrain's python fallback divides the logits by its `scale` keyword
        scale = sdpa.keywords.get('scale') or q.size(-1)**0.5
        logits = q @ k.transpose(-2, -1) / scale
    else:  # F.scaled_dot_product_attention: default scale 1/sqrt(head_dim)
        logits = (q * q.size(-1)**-0.5) @ k.transpose(-2, -1)
    return logits.softmax(dim=-1)


def timm_attention_maps(module, x, attn_mask=None, is_causal=False):
    B, N, _ = x.shape
    qkv = module.qkv(x).reshape(B, N, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = module.q_norm(q), module.k_norm(k)
    logits = (q * module.scale) @ k.transpose(-2, -1)
    if is_causal:
        logits = logits + logits.new_full((N, N), float('-inf')).triu_(1)
    else:
        logits = _masked(logits, attn_mask)
    return logits.softmax(dim=-1)


def timm_window_maps(module, x, mask=None):
    B_, N, _ = x.shape
    qkv = module.qkv(x).reshape(B_, N, 3, module.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    logits = (q * module.scale) @ k.transpose(-2, -1) + module._get_rel_pos_bias()
    if mask is not None:
        num_win = mask.shape[0]
        logits = logits.view(-1, num_win, module.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
        logits = logits.view(-1, module.num_heads, N, N)
    return logits.softmax(dim=-1)


def torch_mha_maps(module, x, attn_mask=None):
    if not module.batch_first:
        x = x.transpose(0, 1)
    B, L, E = x.shape
    heads = module.num_heads
    weight, bias = module.in_proj_weight, module.in_proj_bias
    q = F.linear(x, weight[:E], None if bias is None else bias[:E])
    k = F.linear(x, weight[E:2 * E], None if bias is None else bias[E:2 * E])
    q = q.reshape(B, L, heads, -1).transpose(1, 2)
    k = k.reshape(B, L, heads, -1).transpose(1, 2)
    logits = (q * q.size(-1)**-0.5) @ k.transpose(-2, -1)
    if attn_mask is not None:
        if attn_mask.dim() == 3:  # [B * heads, L, L]
            attn_mask = attn_mask.reshape(B, heads, L, L)
        # nn.MultiheadAttention: a True entry is NOT allowed to attend
        attn_mask = ~attn_mask if attn_mask.dtype == torch.bool else attn_mask.to(logits.dtype)
        logits = _masked(logits, attn_mask)
    return logits.softmax(dim=-1)


def open_clip_attention_maps(module, x, attn_mask=None):
    N, L, C = x.shape
    q, k, _ = F.linear(x, module.in_proj_weight, module.in_proj_bias).chunk(3, dim=-1)
    q = module.ln_q(q.reshape(N, L, module.num_heads, -1).transpose(1, 2))
    k = module.ln_k(k.reshape(N, L, module.num_heads, -1).transpose(1, 2))
    logits = (q * module.scale) @ k.transpose(-1, -2)
    if attn_mask is not None:
        if attn_mask.ndim == 3:
            attn_mask = attn_mask.reshape(N, module.num_heads, L, L)
        if attn_mask.dtype == torch.bool:  # open_clip: True = masked out
            attn_mask = torch.zeros_like(
                attn_mask, dtype=q.dtype).masked_fill_(attn_mask, float('-inf'))
        logits = logits + attn_mask.to(logits.dtype)
    return logits.softmax(dim=-1)
