"""From-scratch init of both FD students and of the FD projection, as the release.

Statistics are checked per tensor on freshly built models: std of the
(truncated) normal, the cut, zero biases, the depth rescale, SwinV2's 1e-5
post-norm weights. Truncated at +-1 std, a normal keeps std 0.538 x sigma (the
closed form sigma * sqrt(1 - 2 phi(1) / (2 Phi(1) - 1))).
"""
import math

import pytest
import torch
from torch import nn

import mmfd  # noqa: F401
from mmfd.models.backbones import FDSwinTransformerV2, FDViT
from mmfd.models.heads.fd_head import FDHead

STD = 0.02
_PHI1 = math.exp(-0.5) / math.sqrt(2 * math.pi)
_CDF1 = 0.5 * (1 + math.erf(1 / math.sqrt(2)))
CUT_AT_ONE_STD = math.sqrt(1 - 2 * _PHI1 / (2 * _CDF1 - 1))  # 0.5380


def assert_std(w, expected, rel=0.1):
    assert w.numel() >= 256, 'too few values for a std check'
    assert float(w.std()) == pytest.approx(expected, rel=rel)
    assert abs(float(w.mean())) < 4 * expected / math.sqrt(w.numel())


def test_fdvit_init_every_tensor():
    torch.manual_seed(0)
    depth = 4
    model = FDViT(
        arch=dict(embed_dims=64, num_layers=depth, num_heads=2, feedforward_channels=256),
        img_size=64,
        patch_size=16)
    model.init_weights()
    seen = set()
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            seen.add(name)
            w = module.weight
            scale = 1.0
            if name.endswith(('attn.proj', 'ffn.layers.1')):
                scale = 1 / math.sqrt(2 * (int(name.split('.')[1]) + 1))
            bound = STD * scale
            assert float(w.abs().max()) <= bound * (1 + 1e-6), name  # cut at one std
            assert float(w.abs().max()) > 0.95 * bound, name
            assert_std(w, STD * CUT_AT_ONE_STD * scale)
            if module.bias is not None:
                assert torch.all(module.bias == 0), name
        elif isinstance(module, nn.LayerNorm):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
    assert 'patch_embed.projection' in seen  # the patch conv is covered
    assert all(f'layers.{i}.attn.proj' in seen for i in range(depth))
    for layer in model.layers:  # q/v biases zero, layer scale 0.1
        assert torch.all(layer.attn.q_bias == 0) and torch.all(layer.attn.v_bias == 0)
        assert torch.all(layer.gamma_1 == 0.1) and torch.all(layer.gamma_2 == 0.1)
    assert float(model.cls_token.abs().max()) <= STD


def test_fd_projection_keeps_pytorch_default_init():
    # The release's projection is nn.Conv1d(kernel_size=1) with its default init:
    # kaiming_uniform(a=sqrt(5)) -> U(+-1/sqrt(fan_in)) for weight and bias alike.
    torch.manual_seed(0)
    head = FDHead(256, 512)
    head.init_weights()
    bound = 1 / math.sqrt(256)
    for p in (head.proj.weight, head.proj.bias):
        assert float(p.abs().max()) <= bound and float(p.abs().max()) > 0.95 * bound
    assert_std(head.proj.weight, bound / math.sqrt(3))  # std of U(-b, b)
    # same distribution as the release's layer, drawn the same way
    torch.manual_seed(1)
    conv = nn.Conv1d(256, 512, kernel_size=1)
    assert float(conv.weight.std()) == pytest.approx(float(head.proj.weight.std()), rel=0.02)


def tiny_fd_swinv2(**kwargs):
    """A freshly built and initialised 8-block FDSwinTransformerV2 (64 px)."""
    torch.manual_seed(0)
    model = FDSwinTransformerV2(
        arch=dict(
            embed_dims=32, depths=[2, 2, 2, 2], num_heads=[2, 2, 4, 4],
            extra_norm_every_n_blocks=0),
        img_size=64,
        window_size=[4, 4, 2, 2],
        **kwargs)
    model.init_weights()
    return model


def test_fd_swinv2_init_every_tensor():
    model = tiny_fd_swinv2(out_indices=(3, ))
    blocks = model.blocks()
    index = {}
    for i, block in enumerate(blocks, start=1):
        for name, module in block.named_modules():
            index[id(module)] = i
    linear_seen = []
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            linear_seen.append(name)
            scale = 1.0
            if name.endswith(('w_msa.proj', 'ffn.layers.1')):
                scale = 1 / math.sqrt(2 * index[id(module)])
            w = module.weight
            if w.numel() >= 256:
                assert_std(w, STD * scale)
            else:  # cpb_mlp's last layer of a 2-head window: few values, bound only
                assert float(w.abs().max()) < 5 * STD * scale, name
            if module.bias is not None:
                assert torch.all(module.bias == 0), name
    assert 'patch_embed.projection' in linear_seen
    assert any(n.endswith('cpb_mlp.0') for n in linear_seen)
    assert any(n.endswith('cpb_mlp.2') for n in linear_seen)
    # global block index: stage 3's last block is block 8
    assert index[id(blocks[-1].attn.w_msa.proj)] == 8
    assert_std(blocks[-1].ffn.layers[1].weight, STD / 4)
    for block in blocks:
        for norm in (block.norm1, block.norm2):
            assert torch.all(norm.weight == 1e-5) and torch.all(norm.bias == 0)
        w_msa = block.attn.w_msa
        assert torch.allclose(w_msa.logit_scale, torch.full_like(w_msa.logit_scale, math.log(10.)))
        assert torch.all(w_msa.q_bias == 0) and torch.all(w_msa.v_bias == 0)
    # the other norms (patch embedding, merging, output) are unit norms
    for norm in (model.patch_embed.norm, model.stages[1].downsample.norm, model.norm3):
        assert torch.all(norm.weight == 1) and torch.all(norm.bias == 0)


def test_fd_swinv2_cosine_logits_in_fp32_under_amp():
    model = tiny_fd_swinv2(drop_path_rate=0.)
    model.eval()
    dtypes = []
    for block in model.blocks():
        block.attn.w_msa.softmax.register_forward_hook(
            lambda m, inputs, out: dtypes.append(inputs[0].dtype))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        reference = model(x)[0]
        with torch.autocast('cpu', dtype=torch.bfloat16):
            amp = model(x)[0]
    assert dtypes and all(d == torch.float32 for d in dtypes)  # logits were fp32
    assert float((amp.float() - reference).abs().max()) < 0.1 * float(reference.abs().max())
