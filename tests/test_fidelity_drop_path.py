"""Drop path statistics of the backbones AS BUILT FROM THE SHIPPED CONFIGS.

The release applies drop path once per residual branch: a branch is zeroed for a
fraction p of the samples and the others are scaled by 1/(1-p), so the mean training
output equals the evaluation output. Two upstream classes broke this (see
docs/method.md): mmpretrain's BEiT layer dropped the MLP branch twice, and its SwinV2
block dropped before the post-norm. These tests measure, on one fixed input repeated
over many samples and several seeds, the fraction of zeroed branches (within
binomial bounds), the scale of the kept ones, and the mean output.

Only the width/depth of each config is shrunk; drop path, layer options and the
backbone class are the config's own. Every backbone runs at p = 0.3 in its last
block (linspace(0, p, depth) puts p there).
"""
import math

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmfd  # noqa: F401

P = 0.3
SAMPLES, SEEDS = 1500, 3  # 4500 draws per branch
N = SAMPLES * SEEDS
# 5 sigma of a binomial fraction: a test that passes by chance once in ~1.7M runs;
# the double drop (0.51 at p = 0.3) is ~30 sigma away.
FRACTION_TOL = 5 * math.sqrt(P * (1 - P) / N)

VIT_CONFIGS = {
    'fd student (DINO ViT-B teacher)':
    ('configs/fd/fd_dino-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py', None),
    'fine-tune (ViT-B from CLIP FD)':
    ('configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py', None),
    'mmdet (mask-rcnn ViT-B)':
    ('configs/mmdet/mask-rcnn_fd-clip-vitb_simplefpn_lsj-100e_coco.py', P),
    'mmseg (upernet ViT-B)':
    ('configs/mmseg/upernet_fd-clip-vitb_mln_8xb2-amp-160k_ade20k-512x512.py', P),
}
SWIN_CONFIGS = {
    'fd student (EsViT Swin-B teacher)':
    ('configs/fd/fd_esvit-swin-b_swinv2-b-w14_16xb128-amp-coslr-300e_in1k.py', None),
    'fine-tune (SwinV2-B from EsViT FD)':
    ('configs/fd/benchmarks/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k.py', P),
    'mmdet (mask-rcnn SwinV2-B)':
    ('configs/mmdet/mask-rcnn_fd-esvit-swinv2b_fpn_ms-crop-3x_coco.py', None),
    'mmseg (upernet SwinV2-B)':
    ('configs/mmseg/upernet_fd-esvit-swinv2b_8xb2-amp-160k_ade20k-512x512.py', P),
}


def backbone_cfg(path, drop_path):
    cfg = Config.fromfile(path).model.backbone
    cfg.pop('init_cfg', None)  # random weights: nothing to load
    if drop_path is not None:  # configs shipped at another p: same class/options
        cfg.drop_path_rate = drop_path
    assert cfg.drop_path_rate == P, f'{path}: the test expects p = {P}'
    return cfg


def build_vit(path, drop_path):
    cfg = backbone_cfg(path, drop_path)
    # 12 blocks as the configs (the mmseg one takes features from blocks 3, 5, 7, 11)
    cfg.update(
        arch=dict(embed_dims=32, num_layers=12, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=16)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def build_swin(path, drop_path):
    cfg = backbone_cfg(path, drop_path)
    cfg.arch = dict(
        embed_dims=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 2], extra_norm_every_n_blocks=0)
    torch.manual_seed(0)
    return MODELS.build(cfg)


def branch_draws(run, x, eval_out):
    """(fraction of zeroed branches, max |kept * (1-p) - eval|, mean train output)
    of ``run(x)`` (a residual branch added to x) over SEEDS x SAMPLES draws."""
    branch_eval = eval_out - x
    zeroed, kept_err, outputs = 0, 0.0, []
    for seed in range(SEEDS):
        torch.manual_seed(1000 + seed)
        with torch.no_grad():
            out = run(x)
        outputs.append(out)
        branch = (out - x).flatten(1)
        is_zero = branch.abs().amax(1) == 0
        zeroed += int(is_zero.sum())
        kept = branch[~is_zero] * (1 - P)
        kept_err = max(kept_err, float((kept - branch_eval.flatten(1)[~is_zero]).abs().max()))
    return zeroed / N, kept_err, torch.cat(outputs).mean(0)


def assert_single_drop_path(fraction, kept_err, branch_scale):
    assert abs(fraction - P) <= FRACTION_TOL, (
        f'branch zeroed for {fraction:.3f} of the samples, expected {P} +- '
        f'{FRACTION_TOL:.3f} (double drop path gives {1 - (1 - P) ** 2:.2f})')
    assert kept_err <= 1e-5 * branch_scale, (
        f'kept samples are not the eval branch / (1-p): max error {kept_err:.2e}')


@pytest.mark.parametrize('name', sorted(VIT_CONFIGS))
@pytest.mark.parametrize('branch', ['attention', 'mlp'])
def test_vit_drops_each_branch_once(name, branch):
    model = build_vit(*VIT_CONFIGS[name])
    layer = model.layers[-1]
    assert layer.drop_path.drop_prob == pytest.approx(P)
    with torch.no_grad():  # silence the other branch: the output is x + this branch
        (layer.gamma_2 if branch == 'attention' else layer.gamma_1).zero_()
    x = torch.randn(1, 5, 32).expand(SAMPLES, -1, -1).contiguous()
    rel_pos = model.rel_pos_bias() if model.rel_pos_bias is not None else None
    layer.eval()
    with torch.no_grad():
        eval_out = layer(x[:1], rel_pos)
    layer.train()
    fraction, kept_err, _ = branch_draws(lambda t: layer(t, rel_pos), x, eval_out)
    assert_single_drop_path(fraction, kept_err, float((eval_out - x[:1]).abs().max()))


@pytest.mark.parametrize('name', sorted(SWIN_CONFIGS))
@pytest.mark.parametrize('branch', ['attention', 'mlp'])
def test_swinv2_drop_path_after_post_norm(name, branch):
    model = build_swin(*SWIN_CONFIGS[name])
    block = model.stages[-1].blocks[-1]
    assert block.drop_path.drop_prob == pytest.approx(P)
    silent, active = ((block.norm2, block.norm1) if branch == 'attention' else
                      (block.norm1, block.norm2))
    with torch.no_grad():
        silent.weight.zero_()  # the other branch adds exactly 0
        silent.bias.zero_()
        active.weight.normal_()
        active.bias.normal_()  # a dropped-before-norm branch would add this bias
    window = block.attn.window_size
    channels = model.stages[-1].out_channels
    x = torch.randn(1, window * window, channels).expand(SAMPLES, -1, -1).contiguous()
    block.eval()
    with torch.no_grad():
        eval_out = block(x[:1], (window, window))
    block.train()
    fraction, kept_err, mean = branch_draws(lambda t: block(t, (window, window)), x, eval_out)
    branch_eval = eval_out[0] - x[0]
    assert_single_drop_path(fraction, kept_err, float(branch_eval.abs().max()))
    # mean train output == eval output, within the sampling error of the mask mean
    rel_err = float((mean - eval_out[0]).norm() / branch_eval.norm())
    assert rel_err <= 5 * math.sqrt(P / ((1 - P) * N)), rel_err
