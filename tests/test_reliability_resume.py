"""Kill training with SIGKILL (mid-run and in the middle of a checkpoint save),
resume it, and get the uninterrupted run's weights bit for bit on CPU."""
import os
import socket

import pytest
import torch
from fd_fixtures import make_image_folder, make_timm_vit_checkpoint
from reliability_fixtures import (assert_bitwise_equal, final_state, run, run_until, train_cmd,
                                  truncate_file, write_config)

# The plain dataset, its pipeline (tests/configs/tiny_fd.py's) behind the safe
# loader as in the FD dataset base.
SAFE_DATASET = """
train_dataloader['dataset'] = dict(
    _delete_=True, type='CustomDataset', data_root='{images}', with_label=False,
    pipeline=[dict(type='SafeLoadImageFromFile', max_bad_samples=2)] +
    _base_.train_pipeline[1:])
"""


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('reliability')
    images = make_image_folder(root / 'images', n=48)  # 12 batches of 4 per epoch
    teacher = make_timm_vit_checkpoint(root / 'teacher.pth')
    config = write_config(root / 'tiny_reliable.py', images, teacher)
    return root, images, teacher, config


@pytest.fixture(scope='module')
def workers_config(setup):
    """IterBasedTrainLoop, 2 dataloader workers restarted every dataloader epoch,
    tests/configs/tiny_fd.py's plain CustomDataset (per-sample augmentation seeds
    come from AtomicCheckpointHook, no dataset wrapper)."""
    root, images, teacher, _ = setup
    return write_config(
        root / 'tiny_workers.py',
        images,
        teacher,
        extra="train_dataloader.update(num_workers=2, persistent_workers=False)\n")


@pytest.fixture(scope='module')
def reference(setup, workers_config):
    """The uninterrupted run: 24 iterations, 2 dataloader epochs."""
    root = setup[0]
    work = root / 'reference'
    keep3 = 'default_hooks.checkpoint.max_keep_ckpts=3'
    result = run(train_cmd(workers_config, work, keep3))
    log = result.stdout + result.stderr
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert 'Per-sample augmentation seeds: the CustomDataset pipeline' in log
    return work


def test_sigkill_mid_run_and_during_save_resume_bitwise(workers_config, reference, tmp_path):
    config = workers_config
    work = tmp_path / 'killed'
    keep3 = 'default_hooks.checkpoint.max_keep_ckpts=3'

    # 1. SIGKILL at an arbitrary iteration (iter 14; last checkpoint iter_12, which is
    #    also the end of the first dataloader epoch).
    run_until(
        train_cmd(config, work, keep3),
        'MMFD_TEST_PAUSED_AFTER_ITER 14',
        env={'MMFD_TEST_PAUSE_AFTER_ITER': '14'})
    assert (work / 'iter_12.pth').exists() and not (work / 'iter_16.pth').exists()

    # 2. Resume, and SIGKILL it half-way through writing iter_20.pth.
    pausing = 'default_hooks.checkpoint.backend_args.backend=mmfd_test_pausing'
    out = run_until(
        train_cmd(config, work, keep3, pausing, resume=True),
        'MMFD_TEST_PAUSED_IN_SAVE',
        env={'MMFD_TEST_PAUSE_SAVE': 'iter_20.pth'})
    assert 'Auto-resume: resuming from' in out and 'iter_12.pth' in out
    assert not (work / 'iter_20.pth').exists(), 'a partial checkpoint took the final name'
    partial = [p for p in os.listdir(work) if p.startswith('.iter_20.pth.tmp-')]
    assert len(partial) == 1 and (work / partial[0]).stat().st_size > 0
    assert (work / 'last_checkpoint').read_text().strip().endswith('iter_16.pth')
    # max_keep_ckpts=3: iter_8 goes only once iter_20 is complete (mmengine deletes first)
    assert (work / 'iter_8.pth').exists()
    # what the resumed run saved so far is the uninterrupted run's state, bit for bit
    assert_bitwise_equal(
        final_state(reference / 'iter_16.pth'), final_state(work / 'iter_16.pth'), 'iter_16')

    # 3. The newest complete checkpoint gets truncated (e.g. a disk filled up under
    #    a non-atomic copy): auto-resume must skip it and fall back to iter_12.
    truncate_file(work / 'iter_16.pth', keep=0.6)
    result = run(train_cmd(config, work, keep3, resume=True))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Auto-resume: skipping' in log and 'iter_16.pth' in log
    assert 'resuming from' in log and 'iter_12.pth' in log
    assert 'Removed 1 partial checkpoint file' in log
    assert not [p for p in os.listdir(work) if '.tmp-' in p]

    ref, got = final_state(reference / 'iter_24.pth'), final_state(work / 'iter_24.pth')
    assert_bitwise_equal(ref['model'], got['model'], 'state_dict')
    assert_bitwise_equal(ref['optimizer'], got['optimizer'], 'optimizer')
    assert_bitwise_equal(ref['schedulers'], got['schedulers'], 'param_schedulers')
    assert sorted(p for p in os.listdir(work)
                  if p.endswith('.pth')) == ['iter_16.pth', 'iter_20.pth', 'iter_24.pth']


def test_epoch_loop_resumes_at_epoch_end_mid_epoch_and_from_epoch_checkpoints(setup, tmp_path):
    """EpochBasedTrainLoop (3 epochs of 8 batches), 2 persistent dataloader workers,
    the safe loader and one truncated image on disk. Killed twice with iteration
    checkpoints (resumed after an epoch's last batch, then mid-epoch), and once with
    the per-epoch checkpoints FD configs use."""
    _, _, teacher, _ = setup
    images = make_image_folder(tmp_path / 'images', n=32)
    truncate_file(images / 'img_005.png', keep=0.5)
    config = write_config(
        tmp_path / 'epoch.py',
        images,
        teacher,
        extra=(SAFE_DATASET.format(images=images) + """
train_dataloader.update(num_workers=2, persistent_workers=True)
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=3)
"""))

    def pause(at):
        return dict(
            pattern=f'MMFD_TEST_PAUSED_AFTER_ITER {at}',
            env={'MMFD_TEST_PAUSE_AFTER_ITER': str(at)})

    reference = tmp_path / 'reference'
    result = run(train_cmd(config, reference))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    warnings = [line for line in log.splitlines() if 'Skipping unreadable sample' in line]
    assert len(warnings) == 1, warnings  # once, although met in each of the 3 epochs
    assert 'img_005.png' in warnings[0] and 'truncated PNG' in warnings[0]
    ref = final_state(reference / 'iter_24.pth')

    # iteration checkpoints every 4: iter_8 closes epoch 0, iter_12 is mid-epoch 1
    work = tmp_path / 'by_iter'
    run_until(train_cmd(config, work), **pause(10))
    out = run_until(train_cmd(config, work, resume=True), **pause(14))
    assert 'iter_8.pth' in out and 'Resumed data position' not in out  # nothing to skip
    result = run(train_cmd(config, work, resume=True))
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Resumed data position: epoch 1, batch 4' in log
    got = final_state(work / 'iter_24.pth')
    assert_bitwise_equal(ref['model'], got['model'], 'state_dict')
    assert_bitwise_equal(ref['optimizer'], got['optimizer'], 'optimizer')

    # per-epoch checkpoints (by_epoch=True): resume at the start of epoch 1
    work = tmp_path / 'by_epoch'
    per_epoch = ['default_hooks.checkpoint.by_epoch=True', 'default_hooks.checkpoint.interval=1']
    run_until(train_cmd(config, work, *per_epoch), **pause(10))
    assert (work / 'epoch_1.pth').exists() and not (work / 'epoch_2.pth').exists()
    result = run(train_cmd(config, work, *per_epoch, resume=True))
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    got = final_state(work / 'epoch_3.pth')
    assert_bitwise_equal(ref['model'], got['model'], 'state_dict')
    assert_bitwise_equal(ref['optimizer'], got['optimizer'], 'optimizer')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return str(s.getsockname()[1])


def test_dist_train_two_ranks_sigkill_resume_bitwise(setup, tmp_path):
    """tools/dist_train.sh ... 2 (gloo on CPU): kill both ranks, resume, compare."""
    _, _, _, config = setup
    options = [
        'train_dataloader.batch_size=2', 'train_cfg.max_iters=12', 'param_scheduler.0.T_max=12'
    ]

    def dist(work, resume=False):
        cmd = ['bash', 'tools/dist_train.sh', str(config), '2', '--work-dir', str(work)]
        return cmd + (['--resume'] if resume else []) + ['--cfg-options', *options]

    reference = tmp_path / 'reference'
    result = run(dist(reference), env={'PORT': _free_port()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    ckpt = torch.load(reference / 'iter_12.pth', weights_only=True)
    assert len(ckpt['rng_states']) == 2  # one set of random states per rank

    work = tmp_path / 'killed'
    run_until(
        dist(work),
        'MMFD_TEST_PAUSED_AFTER_ITER 7 rank 0',
        env={
            'PORT': _free_port(),
            'MMFD_TEST_PAUSE_AFTER_ITER': '7'
        })
    assert (work / 'iter_4.pth').exists() and not (work / 'iter_8.pth').exists()
    result = run(dist(work, resume=True), env={'PORT': _free_port()})
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-6000:]
    assert 'resuming from' in log and 'iter_4.pth' in log
    assert 'Resumed data position: dataloader epoch 0, batch 4' in log
    ref, got = final_state(reference / 'iter_12.pth'), final_state(work / 'iter_12.pth')
    assert_bitwise_equal(ref['model'], got['model'], 'state_dict')
    assert_bitwise_equal(ref['optimizer'], got['optimizer'], 'optimizer')
