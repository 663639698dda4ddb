"""Tiny reference models with random weights, saved in each official key format.

Nothing here downloads weights: every test builds the reference network (open_clip,
timm, mmpretrain), perturbs all its parameters so that every key matters, and
saves its state the way the official release files are laid out.
"""
import copy
import functools
import warnings

import torch
from torch import nn

TOL = 1e-5

_BUILT = {}


def built_once(build):
    """Reference models are a function of their arguments (seeded): each is built once
    per test session and handed out as a deep copy, with the global RNG left as a fresh
    build leaves it, so a test gets exactly what a new build would give it."""

    @functools.wraps(build)
    def cached(*args, **kwargs):
        key = (build.__qualname__, repr(args), repr(sorted(kwargs.items())))
        if key not in _BUILT:
            model = build(*args, **kwargs)
            _BUILT[key] = (copy.deepcopy(model), torch.get_rng_state())
            return model
        model, rng_state = _BUILT[key]
        torch.set_rng_state(rng_state)
        return copy.deepcopy(model)

    return cached


def randomize_(module: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Adds noise to every parameter (LayerNorm scales/biases included)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * scale)
    module.eval()  # mmpretrain backbones' train() returns None
    return module


def images(size: int, batch: int = 2, seed: int = 1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------- CLIP
def tiny_clip_config(width=64, layers=2, patch=8, image=32, quick_gelu=False, embed_dim=32):
    """An open_clip model config: 64-wide heads (OpenAI convention), tiny text tower."""
    return dict(
        embed_dim=embed_dim,
        quick_gelu=quick_gelu,
        vision_cfg=dict(image_size=image, layers=layers, width=width, patch_size=patch),
        text_cfg=dict(context_length=8, vocab_size=64, width=64, heads=1, layers=1))


def build_open_clip(config: dict, seed: int = 0):
    """open_clip's own CLIP model (both towers) with random weights."""
    from open_clip.model import CLIP
    cfg = copy.deepcopy(config)
    torch.manual_seed(seed)
    model = CLIP(
        cfg['embed_dim'],
        cfg['vision_cfg'],
        cfg['text_cfg'],
        quick_gelu=cfg.get('quick_gelu', False))
    return randomize_(model, seed)


def clip_reference_tokens(visual, x: torch.Tensor) -> torch.Tensor:
    """All tokens after ln_post, captured inside open_clip's own forward."""
    captured = {}
    handle = visual.ln_post.register_forward_hook(
        lambda mod, inp, out: captured.__setitem__('tokens', out))
    try:
        with torch.no_grad():
            visual(x)
    finally:
        handle.remove()
    return captured['tokens']


def round_like_openai_(model) -> set:
    """Rounds, in place, the weights OpenAI stores in fp16 (open_clip's
    convert_weights_to_fp16 set); returns their names."""
    from open_clip.model import convert_weights_to_fp16
    half = copy.deepcopy(model)
    convert_weights_to_fp16(half)
    names = {k for k, v in half.state_dict().items() if v.dtype == torch.float16}
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in names:
                param.copy_(param.half().float())
    return names


def save_openai_torchscript(model, path: str, image_size: int) -> None:
    """A TorchScript archive laid out like OpenAI's CLIP .pt files: the full model
    state, partly in fp16, plus input_resolution / context_length / vocab_size.
    Rounds ``model``'s fp16-stored weights in place so it stays the reference."""
    half_names = round_like_openai_(model)
    model = copy.deepcopy(model).eval()
    model._buffers.pop('attn_mask', None)  # open_clip keeps it non-persistent
    model.register_buffer('input_resolution', torch.tensor(image_size))
    for name in ('context_length', 'vocab_size'):  # plain ints in open_clip
        value = getattr(model, name)
        delattr(model, name)
        model.register_buffer(name, torch.tensor(value))
    example = torch.zeros(1, 3, image_size, image_size)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        traced = torch.jit.trace_module(model, {'encode_image': (example, )})
    with torch.no_grad():
        for name, param in traced.named_parameters():
            if name in half_names:
                param.data = param.data.half()
    torch.jit.save(traced, path)


# ----------------------------------------------------------------------- ViT
@built_once
def build_timm_vit(patch=16, dim=48, depth=2, heads=3, img=32, seed=0):
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=img, patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads, num_classes=10)
    return randomize_(model, seed)


def vit_arch(patch=16, dim=48, depth=2, heads=3):
    return dict(patch_size=patch, embed_dim=dim, depth=depth, num_heads=heads)


def dino_full_checkpoint(vit_state: dict, ddp_teacher: bool) -> dict:
    """DINO's `*_full_checkpoint.pth` layout: student (DDP) and teacher
    MultiCropWrapper entries (backbone + DINOHead), plus training state."""
    import argparse

    def wrapper(prefix, seed):
        gen = torch.Generator().manual_seed(seed)
        state = {
            f'{prefix}backbone.{k}': v.clone()
            for k, v in vit_state.items() if not k.startswith('head.')
        }
        state[f'{prefix}head.mlp.0.weight'] = torch.randn(16, 48, generator=gen)
        state[f'{prefix}head.last_layer.weight_g'] = torch.randn(8, 1, generator=gen)
        return state

    student = wrapper('module.', 5)
    for key in student:  # the student differs from the teacher
        student[key] = student[key] + 1.0
    return dict(
        student=student,
        teacher=wrapper('module.' if ddp_teacher else '', 6),
        optimizer={'state': {}},
        epoch=100,
        args=argparse.Namespace(arch='vit_small'),
        dino_loss={'center': torch.zeros(1, 8)})


# ---------------------------------------------------------------------- Swin
TINY_SWIN = dict(embed_dim=16, depths=(2, 2, 2, 2), num_heads=(1, 2, 2, 4))

SWIN_IMG = 128  # stages at 32, 16, 8, 4 tokens: window 8 mimics EsViT's 14 at 224


@built_once
def build_timm_swin(window=4, img=SWIN_IMG, seed=0, **dims):
    from timm.models.swin_transformer import SwinTransformer
    torch.manual_seed(seed)
    model = SwinTransformer(
        img_size=img,
        window_size=window,
        num_classes=10,
        drop_path_rate=0.,
        **dict(TINY_SWIN, **dims))
    return randomize_(model, seed)


def official_swin_state(model) -> dict:
    """timm Swin state -> the official Swin/EsViT file layout, including the
    persistent buffers the official code saves (relative_position_index, attn_mask)."""
    from mmfd.checkpoint.teacher_formats import swin_timm_to_official
    state = dict(model.state_dict())
    for name, module in model.named_modules():
        if hasattr(module, 'relative_position_index'):
            state[f'{name}.relative_position_index'] = module.relative_position_index.clone()
        if getattr(module, 'attn_mask', None) is not None:
            state[f'{name}.attn_mask'] = module.attn_mask.clone()
    return swin_timm_to_official(state)


# ---------------------------------------------------------------- mmpretrain
MM_VIT = dict(
    type='VisionTransformer',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
    img_size=32,
    patch_size=8,
    drop_path_rate=0.1)
MM_SWIN = dict(
    type='SwinTransformer',
    arch=dict(embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4]),
    img_size=128,
    window_size=4)


@built_once
def build_mm_backbone(cfg: dict, seed: int = 0):
    from mmpretrain.registry import MODELS
    torch.manual_seed(seed)
    return randomize_(MODELS.build(copy.deepcopy(cfg)), seed)


def mmpretrain_checkpoint(backbone) -> dict:
    """An mmengine checkpoint of an ImageClassifier: backbone.*, neck.*, head.* keys."""
    state = {f'backbone.{k}': v for k, v in backbone.state_dict().items()}
    state['head.fc.weight'] = torch.zeros(10, 8)
    state['data_preprocessor.mean'] = torch.zeros(3, 1, 1)
    return dict(meta=dict(epoch=1, mmengine_version='0.10.7'), state_dict=state)


# ------------------------------------------------------------ big_vision .npz
def _heads_kernel(weight: torch.Tensor, heads: int):
    """A torch ``[out, in]`` q/k/v projection -> big_vision's ``[in, heads, head_dim]``."""
    return weight.t().reshape(weight.shape[1], heads, -1)


def _out_kernel(weight: torch.Tensor, heads: int):
    """A torch ``[out, in]`` attention output projection -> ``[heads, head_dim, out]``."""
    return weight.reshape(weight.shape[0], heads, -1).permute(1, 2, 0)


def _attention(prefix: str, q, k, v, proj, heads: int) -> dict:
    """One big_vision MultiHeadDotProductAttention: (weight, bias) of q, k, v, out."""
    out = {}
    for name, (weight, bias) in (('query', q), ('key', k), ('value', v)):
        out[f'{prefix}{name}/kernel'] = _heads_kernel(weight, heads)
        out[f'{prefix}{name}/bias'] = bias.reshape(heads, -1)
    out[f'{prefix}out/kernel'] = _out_kernel(proj[0], heads)
    out[f'{prefix}out/bias'] = proj[1]
    return out


def _mlp(prefix: str, mlp) -> dict:
    return {
        f'{prefix}Dense_{i}/{part}': (fc.weight.t() if part == 'kernel' else fc.bias)
        for i, fc in enumerate((mlp.fc1, mlp.fc2))
        for part in ('kernel', 'bias')
    }


def _norm(prefix: str, norm) -> dict:
    return {f'{prefix}scale': norm.weight, f'{prefix}bias': norm.bias}


def big_vision_siglip_arrays(model, scan: bool = False) -> dict:
    """A timm SigLIP ``VisionTransformer`` in big_vision's two-tower ``.npz`` layout.

    Written as the inverse of timm's reader (``timm.models.vision_transformer.
    _load_weights``, big_vision branch, prefix ``params/img/``): every array is laid
    out so that the reader's transposes and reshapes give the model's own tensor
    back. ``scan=True`` stacks the blocks along a leading axis under
    ``Transformer/encoderblock/`` (big_vision's scanned encoder), else one
    ``encoderblock_N`` per block. A text tower and the image head (projection to the
    joint space), which a teacher never uses, are included as in the real files.
    """
    img = 'params/img/'
    width = model.embed_dim
    out = {
        # conv [out, in, kh, kw] -> flax [kh, kw, in, out]
        f'{img}embedding/kernel': model.patch_embed.proj.weight.permute(2, 3, 1, 0),
        f'{img}embedding/bias': model.patch_embed.proj.bias,
        f'{img}pos_embedding': model.pos_embed,
        f'{img}head/kernel': torch.randn(width, 32),
        f'{img}head/bias': torch.randn(32),
        'params/txt/Embed_0/embedding': torch.randn(16, 8),
        'params/t': torch.ones(1),
        'params/b': torch.zeros(1),
    }
    out.update(_norm(f'{img}Transformer/encoder_norm/', model.norm))
    blocks = []
    for block in model.blocks:
        attn, heads = block.attn, block.attn.num_heads
        qkv_w, qkv_b = attn.qkv.weight.chunk(3), attn.qkv.bias.chunk(3)
        arrays = _attention('MultiHeadDotProductAttention_0/', (qkv_w[0], qkv_b[0]),
                            (qkv_w[1], qkv_b[1]), (qkv_w[2], qkv_b[2]),
                            (attn.proj.weight, attn.proj.bias), heads)
        arrays.update(_norm('LayerNorm_0/', block.norm1))
        arrays.update(_norm('LayerNorm_1/', block.norm2))
        arrays.update(_mlp('MlpBlock_0/', block.mlp))
        blocks.append(arrays)
    if scan:
        out.update({
            f'{img}Transformer/encoderblock/{name}': torch.stack([b[name] for b in blocks])
            for name in blocks[0]
        })
    else:
        for i, arrays in enumerate(blocks):
            out.update({f'{img}Transformer/encoderblock_{i}/{k}': v for k, v in arrays.items()})
    pool = model.attn_pool
    head = f'{img}MAPHead_0/'
    kv_w, kv_b = pool.kv.weight.chunk(2), pool.kv.bias.chunk(2)
    out.update(
        _attention(f'{head}MultiHeadDotProductAttention_0/', (pool.q.weight, pool.q.bias),
                   (kv_w[0], kv_b[0]), (kv_w[1], kv_b[1]), (pool.proj.weight, pool.proj.bias),
                   pool.num_heads))
    out[f'{head}probe'] = pool.latent
    out.update(_norm(f'{head}LayerNorm_0/', pool.norm))
    out.update(_mlp(f'{head}MlpBlock_0/', pool.mlp))
    return {k: v.detach().float().contiguous().numpy() for k, v in out.items()}


def save_big_vision_npz(model, path, scan: bool = False) -> dict:
    """Writes :func:`big_vision_siglip_arrays` with numpy (no pickle); returns them."""
    import numpy as np
    arrays = big_vision_siglip_arrays(model, scan=scan)
    np.savez(path, **arrays)
    return arrays
