"""Target standardisations beyond the per-token LayerNorm: PHI-S (closed form,
data pass, checkpoint) and per-channel running statistics."""
import math

import pytest
import torch
import torch.nn.functional as F
from fd_fixtures import make_image_folder, make_timm_vit_checkpoint, train_in_process

import mmfd  # noqa: F401
from mmfd.models.heads import FDHead
from mmfd.models.heads.target_norms import (PHISStandardizer, RunningStandardizer, TargetStats,
                                            hadamard)
from mmfd.utils.errors import ConfigError


@pytest.mark.parametrize('n', [1, 2, 12, 20, 48, 768, 1024, 1152])
def test_hadamard_orders(n):
    h = hadamard(n)
    assert torch.equal(h.abs(), torch.ones(n, n, dtype=torch.float64))
    assert torch.equal(h @ h.T, n * torch.eye(n, dtype=torch.float64))


def test_hadamard_order_without_construction_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"order 6 .*target_norm='running'"):
        hadamard(6)
    with pytest.raises(ConfigError, match='order 6'):
        FDHead(in_channels=4, out_channels=6, target_norm='phis')


def _anisotropic(channels=12, seed=0):
    """A known covariance with eigenvalues spread over 4 decades, and a mean."""
    g = torch.Generator().manual_seed(seed)
    basis, _ = torch.linalg.qr(torch.randn(channels, channels, generator=g, dtype=torch.float64))
    eigenvalues = torch.logspace(-2, 2, channels, dtype=torch.float64)
    cov = basis @ torch.diag(eigenvalues) @ basis.T
    mean = torch.randn(channels, generator=g, dtype=torch.float64) * 3
    return mean, cov, basis, eigenvalues


def test_phis_gives_every_channel_unit_variance_closed_form():
    """R = H U^T / alpha: R Sigma R^T = H Lambda H^T / alpha^2, whose diagonal is
    mean(Lambda) / alpha^2 = 1 for every channel (H_ij^2 = 1/C); the transform is
    a rotation times one scale (R R^T = I / alpha^2)."""
    mean, cov, _, eigenvalues = _anisotropic()
    phis = PHISStandardizer(12)
    phis.fit(mean, cov)
    rotation = phis.rotation.double()
    out_cov = rotation @ cov @ rotation.T
    torch.testing.assert_close(
        out_cov.diagonal(), torch.ones(12, dtype=torch.float64), rtol=0, atol=1e-5)
    alpha2 = eigenvalues.mean()
    torch.testing.assert_close(
        rotation @ rotation.T * alpha2, torch.eye(12, dtype=torch.float64), rtol=0, atol=1e-5)


def test_phis_from_samples_through_the_streaming_statistics():
    mean, cov, basis, eigenvalues = _anisotropic()
    g = torch.Generator().manual_seed(1)
    z = torch.randn(200_000, 12, generator=g, dtype=torch.float64)
    samples = (z * eigenvalues.sqrt()) @ basis.T + mean
    stats = TargetStats(12)
    for chunk in samples.split(10_000):
        stats.add(chunk.float().reshape(100, 100, 12))  # [B, N, C] like targets
    est_mean, est_cov = stats.mean_cov()
    torch.testing.assert_close(est_mean, mean, rtol=0, atol=0.05)
    phis = PHISStandardizer(12)
    phis.fit(est_mean, est_cov)
    y = phis(samples.float()).double()
    assert y.mean(0).abs().max() < 0.02
    torch.testing.assert_close(y.var(0), torch.ones(12, dtype=torch.float64), rtol=0, atol=0.03)


def test_phis_loss_is_fp32_under_autocast_and_needs_statistics():
    head = FDHead(in_channels=8, out_channels=12, target_norm='phis')
    student, target = torch.randn(2, 5, 8), torch.randn(2, 5, 12)
    with pytest.raises(ConfigError, match='TargetStatsHook'):
        head.loss(student, target)
    mean, cov, _, _ = _anisotropic()
    head.standardizer.fit(mean, cov)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        loss = head.loss(student, target.bfloat16())['loss']
    assert loss.dtype == torch.float32
    pred = head.proj(student).float()
    ref = F.smooth_l1_loss(
        pred, (target.bfloat16().float() - head.standardizer.mean) @ head.standardizer.rotation.T,
        beta=2.0)
    assert abs(loss.item() - ref.item()) < 1e-2  # the projection ran in bf16 under autocast
    state = head.state_dict()
    assert {'standardizer.mean', 'standardizer.rotation', 'standardizer.fitted'} <= set(state)


def test_running_statistics():
    norm = RunningStandardizer(3, momentum=0.5)
    first = torch.tensor([[0., 2., 4.], [2., 6., 4.]])
    out = norm(first)  # the first batch sets the statistics
    torch.testing.assert_close(norm.mean, torch.tensor([1., 4., 4.]))
    torch.testing.assert_close(norm.var, torch.tensor([1., 4., 0.]))
    torch.testing.assert_close(out[:, :2], torch.tensor([[-1., -1.], [1., 1.]]), atol=1e-4, rtol=0)
    norm(torch.tensor([[3., 4., 4.], [3., 4., 4.]]))  # mean 3,4,4; var 0
    torch.testing.assert_close(norm.mean, torch.tensor([2., 4., 4.]))
    torch.testing.assert_close(norm.var, torch.tensor([0.5, 2., 0.]))
    norm.eval()
    norm(torch.full((2, 3), 100.))
    assert int(norm.count) == 2  # no update outside training
    head = FDHead(in_channels=4, out_channels=3, target_norm='running')
    assert 'standardizer.mean' in head.state_dict()


def test_phis_statistics_pass_checkpoint_and_resume(tmp_path):
    """tools/train.py with TargetStatsHook: the statistics are estimated once before
    training, saved in the checkpoint, unchanged by training, and reused on resume."""
    images = make_image_folder(tmp_path / 'images', n=8)
    teacher = make_timm_vit_checkpoint(tmp_path / 'deit.pth')
    options = [
        f'model.teacher.checkpoint={teacher}', f'train_dataloader.dataset.data_root={images}'
    ]
    work = tmp_path / 'work'
    cmd = ['tests/configs/tiny_fd_phis.py', '--work-dir', work]
    log = train_in_process(cmd + ['--cfg-options', *options])
    assert log.count('TargetStatsHook: PHI-S statistics of model.head from') == 1
    state = torch.load(work / 'iter_10.pth', weights_only=True)['state_dict']
    assert bool(state['head.standardizer.fitted'])
    rotation = state['head.standardizer.rotation']
    assert rotation.shape == (48, 48) and not torch.equal(rotation, torch.eye(48))
    # rows of H U^T / alpha are orthogonal with one common norm
    gram = rotation.double() @ rotation.double().T
    scale = gram.diagonal().mean()
    torch.testing.assert_close(gram / scale, torch.eye(48, dtype=torch.float64), atol=1e-4, rtol=0)
    assert math.isfinite(float(scale)) and scale > 0

    log = train_in_process(cmd + ['--resume', '--cfg-options', *options, 'train_cfg.max_iters=12'])
    assert 'TargetStatsHook: PHI-S statistics' not in log  # loaded, not re-estimated
    resumed = torch.load(work / 'iter_12.pth', weights_only=True)['state_dict']
    assert torch.equal(resumed['head.standardizer.rotation'], rotation)
