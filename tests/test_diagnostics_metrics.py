"""Closed forms of the attention metrics (expected values computed independently)."""
import itertools
import math

import numpy as np
import pytest
import torch

from mmfd.diagnostics import (AttentionRecord, AttentionStatistics, attention_distance,
                              average_attention, distance_spread, head_kl, head_kl_matrix,
                              head_similarity, head_similarity_matrix, resolve_geometry)
from mmfd.utils.errors import ConfigError


def mean_pairwise_distance(h, w, ph, pw):
    """Mean over ALL ordered pairs (self-pairs included) of patch-centre distances."""
    cells = list(itertools.product(range(h), range(w)))
    total = sum(
        math.hypot((a[0] - b[0]) * ph, (a[1] - b[1]) * pw)
        for a, b in itertools.product(cells, cells))
    return total / len(cells)**2


def with_cls(patch_attn, cls_mass=0.0):
    """[B, H, n, n] patch rows -> [B, H, 1+n, 1+n] with a CLS token."""
    B, H, n, _ = patch_attn.shape
    out = torch.zeros(B, H, n + 1, n + 1, dtype=torch.float64)
    out[..., 1:, 1:] = patch_attn * (1 - cls_mass)
    out[..., 1:, 0] = cls_mass
    out[..., 0, :] = 1.0 / (n + 1)
    return out


@pytest.mark.parametrize('renormalize', [True, False])
def test_identity_attention_has_distance_zero(renormalize):
    attn = torch.eye(17).expand(2, 3, 17, 17)
    d = attention_distance(attn, (4, 4), 16, num_prefix_tokens=1, renormalize=renormalize)
    assert d.shape == (3, )
    assert torch.equal(d, torch.zeros(3, dtype=d.dtype))


@pytest.mark.parametrize('grid,patch', [((4, 4), 16), ((3, 5), (8, 12)), ((1, 1), 4)])
def test_uniform_attention_gives_exact_mean_pairwise_distance(grid, patch):
    h, w = grid
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    n = h * w
    expected = mean_pairwise_distance(h, w, ph, pw)
    # uniform over every token, CLS included: renormalised rows are uniform over patches
    attn = torch.full((2, 2, n + 1, n + 1), 1.0 / (n + 1), dtype=torch.float64)
    d = attention_distance(attn, grid, patch, num_prefix_tokens=1, renormalize=True)
    np.testing.assert_allclose(d.numpy(), expected, rtol=1e-12)
    # without renormalisation the CLS mass 1/(n+1) counts as distance 0
    raw = attention_distance(attn, grid, patch, num_prefix_tokens=1, renormalize=False)
    np.testing.assert_allclose(raw.numpy(), expected * n / (n + 1), rtol=1e-12)
    # no prefix at all (windowed attention)
    flat = torch.full((1, 1, n, n), 1.0 / n, dtype=torch.float64)
    np.testing.assert_allclose(
        attention_distance(flat, grid, patch, 0).numpy(), expected, rtol=1e-12)


def test_point_mass_attention_and_cls_mass():
    # every query looks at the top-left patch; head 1 puts 50% on CLS
    h = w = 3
    patch = torch.zeros(1, 2, 9, 9, dtype=torch.float64)
    patch[..., 0] = 1.0
    attn = torch.cat([with_cls(patch[:, :1]), with_cls(patch[:, 1:], cls_mass=0.5)], dim=1)
    expected = np.mean([math.hypot(i * 10, j * 10) for i in range(h) for j in range(w)])
    d = attention_distance(attn, (h, w), 10, 1, renormalize=True)
    np.testing.assert_allclose(d.numpy(), [expected, expected], rtol=1e-12)
    d_raw = attention_distance(attn, (h, w), 10, 1, renormalize=False)
    np.testing.assert_allclose(d_raw.numpy(), [expected, expected / 2], rtol=1e-12)


def test_head_similarity_closed_forms():
    gen = torch.Generator().manual_seed(0)
    rows = torch.rand(2, 1, 10, 10, generator=gen).softmax(-1)
    identical = rows.expand(2, 4, 10, 10)
    assert head_similarity(identical, num_prefix_tokens=0) == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(
        head_similarity_matrix(identical, 0).numpy(), np.ones((4, 4)), atol=1e-6)
    # disjoint keys: head 0 only even keys, head 1 only odd keys -> 0
    r = torch.rand(2, 10, 10, generator=gen)
    even, odd = r.clone(), r.clone()
    even[..., 1::2] = 0
    odd[..., 0::2] = 0
    disjoint = torch.stack([even / even.sum(-1, keepdim=True), odd / odd.sum(-1, keepdim=True)], 1)
    assert head_similarity(disjoint, num_prefix_tokens=0) == 0.0
    # a hand-computed pair: rows a=(1,0) and b=(1,1)/2 -> cos = 1/sqrt(2)
    a = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    b = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    pair = torch.stack([a, b])[None]
    assert head_similarity(pair, 0) == pytest.approx(1 / math.sqrt(2), abs=1e-7)


def test_head_similarity_drops_the_prefix():
    # heads agree on patches, disagree only on the CLS column: prefix dropped -> 1
    patch = torch.full((1, 1, 4, 4), 0.25, dtype=torch.float64)
    attn = torch.cat([with_cls(patch, 0.0), with_cls(patch, 0.9)], dim=1)
    assert head_similarity(attn, num_prefix_tokens=1) == pytest.approx(1.0, abs=1e-12)
    assert head_similarity(attn, num_prefix_tokens=0) < 0.99


def test_head_kl_closed_forms():
    p = torch.tensor([0.7, 0.2, 0.1], dtype=torch.float64)
    q = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    attn = torch.stack([p.expand(3, 3), q.expand(3, 3)])[None]
    kl = head_kl_matrix(attn, 0, eps=0.0).double()
    kl_pq = float((p * (p / q).log()).sum())
    kl_qp = float((q * (q / p).log()).sum())
    np.testing.assert_allclose(kl.numpy(), [[0, kl_pq], [kl_qp, 0]], atol=1e-6)
    assert head_kl(attn, 0) == pytest.approx((kl_pq + kl_qp) / 2, abs=1e-6)
    same = p.expand(1, 4, 3, 3)
    assert head_kl(same, 0) == pytest.approx(0.0, abs=1e-7)


def test_spread_and_average():
    assert distance_spread(torch.tensor([0.0, 2.0])) == pytest.approx(1.0)
    assert distance_spread(torch.tensor([5.0])) == 0.0
    attn = torch.rand(3, 2, 5, 5).softmax(-1)
    torch.testing.assert_close(average_attention(attn), attn.mean(0))


def test_single_head_similarity_is_undefined():
    attn = torch.rand(1, 1, 4, 4).softmax(-1)
    assert math.isnan(head_similarity(attn, 0))


def test_statistics_are_batch_invariant():
    gen = torch.Generator().manual_seed(3)
    attn = (torch.randn(6, 3, 17, 17, generator=gen) * 3).softmax(-1)
    geo = resolve_geometry(AttentionRecord('l0', attn, image_hw=(32, 32), patch_size=(8, 8)))
    whole, parts = AttentionStatistics(), AttentionStatistics()
    whole.add(AttentionRecord('l0', attn), geo)
    for chunk in attn.split([1, 2, 3]):
        parts.add(AttentionRecord('l0', chunk), geo)
    a, b = whole.summary()[0], parts.summary()[0]
    for key in ('distance', 'distance_mean', 'distance_spread', 'head_similarity', 'head_kl'):
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5)
    d = attention_distance(attn, (4, 4), 8, 1)
    np.testing.assert_allclose(a['distance'], d.numpy(), rtol=1e-6)
    assert a['head_similarity'] == pytest.approx(head_similarity(attn, 1), rel=1e-6)
    torch.testing.assert_close(parts.averaged_maps()['l0'], attn.mean(0))


def test_geometry_resolution():
    rec = lambda n, **kw: AttentionRecord('x', torch.zeros(1, 1, n, n), **kw)  # noqa: E731
    assert resolve_geometry(rec(197), (224, 224)) == ((14, 14), (16.0, 16.0), 1)
    assert resolve_geometry(rec(196), (224, 224)) == ((14, 14), (16.0, 16.0), 0)
    assert resolve_geometry(rec(201), (224, 224)).num_prefix_tokens == 5  # 4 registers + CLS
    assert resolve_geometry(rec(17, image_hw=(32, 32), patch_size=(8, 8))) == \
        ((4, 4), (8.0, 8.0), 1)
    # rectangular input
    assert resolve_geometry(rec(1 + 4 * 6), (32, 48)) == ((4, 6), (8.0, 8.0), 1)
    window = rec(16, kind='window', window_size=(4, 4), feature_hw=(8, 8), image_hw=(32, 32))
    assert resolve_geometry(window) == ((4, 4), (4.0, 4.0), 0)
    with pytest.raises(ConfigError):
        resolve_geometry(rec(197))  # no image size known
