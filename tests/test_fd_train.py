"""End-to-end: tools/train.py and tools/dist_train.sh on a tiny generated folder."""
import socket

import pytest
import torch
from fd_fixtures import (make_image_folder, make_timm_vit_checkpoint, read_scalars, run_train,
                         train_in_process)

import mmfd  # noqa: F401  (safe globals: checkpoints load with weights_only=True)

CONFIG = 'tests/configs/tiny_fd.py'


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('fd_data')
    images = make_image_folder(root / 'images', n=16)
    teacher = make_timm_vit_checkpoint(root / 'deit_tiny.pth')
    return images, teacher


def base_options(images, teacher):
    return [f'model.teacher.checkpoint={teacher}', f'train_dataloader.dataset.data_root={images}']


def test_train_distils_and_loss_decreases(data, tmp_path):
    images, teacher = data
    log = train_in_process(
        [CONFIG, '--work-dir', tmp_path, '--cfg-options', *base_options(images, teacher)])
    losses = read_scalars(tmp_path)
    assert len(losses) == 30
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    assert last < 0.8 * first, losses
    # the frozen teacher is left out of the optimizer's walk: one line, not one
    # mmengine warning per teacher parameter (the tiny teacher has 30 tensors)
    assert log.count('requires_grad=False') == 0
    assert log.count('teacher: 30 frozen parameter tensors') == 1
    ckpt = torch.load(tmp_path / 'iter_30.pth', weights_only=True)
    assert not [k for k in ckpt['state_dict'] if k.startswith('teacher.')]
    assert 'optimizer' in ckpt and 'message_hub' in ckpt
    # (--resume: exact continuation is asserted in test_reliability_resume.py and
    # test_fd_multi_teacher.py)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_dist_train_two_cpu_ranks_equals_single_process(data, tmp_path):
    """gloo DDP with 2 x batch 2 reaches the weights of 1 x batch 4."""
    images, teacher = data
    config = 'tests/configs/tiny_fd_deterministic.py'
    single, dist = tmp_path / 'single', tmp_path / 'dist'
    train_in_process(
        [config, '--work-dir', single, '--cfg-options', *base_options(images, teacher)])
    result = run_train([
        'bash', 'tools/dist_train.sh', config, '2', '--work-dir',
        str(dist), '--cfg-options', *base_options(images, teacher), 'train_dataloader.batch_size=2'
    ],
                       env={'PORT': str(free_port())})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = (result.stdout + result.stderr)
    assert 'gloo' in log or 'world_size: 2' in log.lower() or 'world size: 2' in log.lower()
    a = torch.load(single / 'iter_4.pth', weights_only=True)['state_dict']
    b = torch.load(dist / 'iter_4.pth', weights_only=True)['state_dict']
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_amp_flag_trains_in_bf16_on_cpu(data, tmp_path):
    images, teacher = data
    # bf16 asked for explicitly: amp='auto' runs bf16 only on CPUs with native bf16
    log = train_in_process([
        CONFIG, '--amp', '--amp-dtype', 'bfloat16', '--work-dir', tmp_path, '--cfg-options',
        *base_options(images, teacher), 'train_cfg.max_iters=3'
    ])
    assert 'bfloat16 autocast on the CPU' in log
    losses = read_scalars(tmp_path)
    assert len(losses) == 3 and all(v == v and v < 1e3 for v in losses)
