"""Data faults: unreadable, truncated, missing and empty images are logged once with
their path and replaced through mmengine's own refetch (no dataset wrapper); more
than max_bad_samples stops with a clear error. Per-sample augmentation seeds make a
sample's crop the same in any process and leave the caller's random states alone."""
import copy
import io
import random
import re

import numpy as np
import pytest
import torch
from fd_fixtures import make_image_folder
from mmengine.logging import MMLogger
from mmengine.registry import DATASETS, init_default_scope
from PIL import Image
from reliability_fixtures import truncate_file, write_garbage

import mmfd  # noqa: F401
from mmfd.datasets import (BadSampleError, DataError, SafeLoadImageFromFile, image_bytes_problem,
                           install_sample_seeds)
from mmfd.engine.reliability.data_position import SeededIndex


def _encoded(fmt: str) -> bytes:
    yy, xx = np.mgrid[:48, :48]
    pixels = np.stack([yy * 5 % 255, xx * 5 % 255, (xx + yy) % 255], -1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


@pytest.mark.parametrize('fmt', ['JPEG', 'PNG', 'GIF', 'BMP', 'WEBP'])
def test_truncated_files_are_recognised(fmt):
    data = _encoded(fmt)
    assert image_bytes_problem(data) is None
    problem = image_bytes_problem(data[:int(len(data) * 0.8)])
    assert problem and problem.startswith('truncated'), problem


def test_safe_loader_names_the_file_and_the_reason(tmp_path):
    good = tmp_path / 'good.jpg'
    good.write_bytes(_encoded('JPEG'))
    truncated = tmp_path / 'cut.jpg'
    truncated.write_bytes(_encoded('JPEG')[:700])
    garbage = tmp_path / 'garbage.png'
    write_garbage(garbage)
    empty = tmp_path / 'empty.jpg'
    empty.write_bytes(b'')
    load = SafeLoadImageFromFile(skip_bad_samples=False)
    assert load({'img_path': str(good)})['img'].shape == (48, 48, 3)
    cases = {
        truncated: 'truncated JPEG',
        garbage: 'cannot decode',
        empty: 'empty file',
        tmp_path / 'missing.jpg': 'file not found'
    }
    for path, reason in cases.items():
        with pytest.raises(BadSampleError) as err:
            load({'img_path': str(path)})
        assert err.value.path == str(path) and reason in err.value.reason, str(err.value)
    # bytes that look complete but do not decode
    undecodable = tmp_path / 'noise.bin'
    undecodable.write_bytes(b'not an image at all' * 50)
    with pytest.raises(BadSampleError, match=r'noise\.bin: cannot decode'):
        load({'img_path': str(undecodable)})


def _dataset(root, max_bad_samples=100, seeds=False, **kwargs):
    """The mm-standard dataset config with the safe loader, built by mmengine."""
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(
        dict(
            type='CustomDataset',
            data_root=str(root),
            with_label=False,
            pipeline=[
                dict(type='SafeLoadImageFromFile', max_bad_samples=max_bad_samples),
                dict(type='RandomResizedCrop', scale=32, backend='pillow'),
                dict(type='PackInputs')
            ],
            **kwargs))
    if seeds:  # what AtomicCheckpointHook does to the train dataset
        assert install_sample_seeds(dataset)
    return dataset


def _loader(dataset):
    return dataset.pipeline.transforms[0]


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / 'images', n=12, size=40)
    truncate_file(root / 'img_003.png', keep=0.5)
    write_garbage(root / 'img_007.png')
    return root


def test_the_safe_loader_builds_from_mmpretrain_scope_and_returns_none(folder):
    load = _loader(_dataset(folder))
    assert type(load) is SafeLoadImageFromFile and load.max_bad_samples == 100
    assert load({'img_path': str(folder / 'img_003.png'), 'sample_idx': 3}) is None
    assert load.bad_indices().tolist() == [3]
    # a copied pipeline keeps counting with the original (shared memory is not copied)
    assert copy.deepcopy(load).ledger is load.ledger
    with pytest.raises(ValueError, match='max_bad_samples must be >= 0'):
        SafeLoadImageFromFile(max_bad_samples=-1)


def test_bad_images_are_replaced_and_logged_once_across_workers(folder, tmp_path):
    # the current logger, inherited by the forked workers, writes to this file
    log_file = tmp_path / 'data.log'
    MMLogger.get_instance(f'data_faults_{tmp_path.name}', log_file=str(log_file))
    dataset = _dataset(folder, max_bad_samples=2)
    assert type(dataset.pipeline.transforms[0]).__name__ == 'SafeLoadImageFromFile'
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=4,
        num_workers=2,
        persistent_workers=False,
        collate_fn=lambda batch: batch)
    seen = []
    for _ in range(3):  # three epochs, fresh workers each time
        for batch in loader:
            seen += [sample['data_samples'].img_path for sample in batch]
    assert len(seen) == 36
    assert not [p for p in seen if p.endswith(('img_003.png', 'img_007.png'))]
    log = log_file.read_text()
    warnings = re.findall(r'Skipping unreadable sample \d+: (\S+): ([^\n]*)', log)
    names = sorted(path.rsplit('/', 1)[-1] for path, _ in warnings)
    assert names == ['img_003.png', 'img_007.png'], log[-3000:]  # once each, 3 epochs
    reasons = dict((path.rsplit('/', 1)[-1], why) for path, why in warnings)
    assert reasons['img_003.png'].startswith('truncated PNG')
    assert '/2 bad samples allowed' in reasons['img_007.png']
    assert sorted(_loader(dataset).bad_indices().tolist()) == [3, 7]


def test_more_bad_samples_than_allowed_stops_with_a_clear_error(folder):
    dataset = _dataset(folder, max_bad_samples=1)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=4, num_workers=2, collate_fn=lambda batch: batch)
    batches = iter(loader)
    with pytest.raises(DataError) as err:
        for _ in batches:
            pass
    message = str(err.value)
    batches._shutdown_workers()  # now: left to the garbage collector it takes ~10 s
    assert '2 unreadable samples, more than max_bad_samples=1' in message
    assert 'img_003.png' in message and 'img_007.png' in message
    assert 'raise max_bad_samples' in message
    assert 'SafeLoadImageFromFile' in message  # where the option is set


def test_substitution_and_augmentation_are_deterministic(folder):
    a, b = _dataset(folder, seeds=True), _dataset(folder, seeds=True)
    for index in (3, 5):  # a bad one (substituted) and a good one
        x, y = a[SeededIndex(index, 1234)], b[SeededIndex(index, 1234)]
        assert torch.equal(x['inputs'], y['inputs'])
        assert x['data_samples'].img_path == y['data_samples'].img_path
    assert not a[3]['data_samples'].img_path.endswith('img_003.png')
    state = torch.get_rng_state()
    a[SeededIndex(5, 99)]
    assert torch.equal(state, torch.get_rng_state()), 'caller random state changed'


def _states():
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def _load_in_worker(dataset, indices):
    """Samples of ``indices`` loaded by one dataloader worker, whose random streams
    differ from this process's (torch seeds its python and torch generators; numpy
    is seeded here, as mmengine's worker_init_fn does)."""
    loader = torch.utils.data.DataLoader(
        dataset,
        sampler=indices,
        batch_size=1,
        num_workers=1,
        collate_fn=lambda b: b[0],
        worker_init_fn=lambda worker_id: np.random.seed(999 + worker_id))
    return list(loader)


def test_per_sample_seeds_same_crop_in_main_process_and_worker(folder):
    dataset = _dataset(folder, seeds=True)
    assert dataset.uses_sample_seeds  # PositionSampler tags indices for it
    indices = [SeededIndex(5, 77), SeededIndex(3, 77), SeededIndex(9, 5)]
    np.random.seed(123)  # numpy state that a worker (seeded by torch) does not share
    before = _states()
    here = [dataset[i] for i in indices]
    after = _states()
    assert before[0] == after[0], 'python random state changed'
    assert all((p == q).all() for p, q in zip(before[1][1:2], after[1][1:2]))
    assert before[1][2] == after[1][2], 'numpy random state changed'
    assert torch.equal(before[2], after[2]), 'torch random state changed'
    there = _load_in_worker(dataset, indices)
    for a, b in zip(here, there):
        assert torch.equal(a['inputs'], b['inputs'])
        assert a['data_samples'].img_path == b['data_samples'].img_path
    # the bad index got the same substitute in both processes
    assert not here[1]['data_samples'].img_path.endswith('img_003.png')
    # the pipeline sees a plain index (the seed does not leak into the metainfo)
    assert type(here[0]['data_samples'].sample_idx) is int
    # and the seed is what decides the crop: other seeds, other crops
    crops = [dataset[SeededIndex(5, seed)]['inputs'] for seed in range(4)]
    assert any(not torch.equal(crops[0], c) for c in crops[1:])


def test_strict_loader_fails_with_its_path(folder):
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(
        dict(
            type='CustomDataset',
            data_root=str(folder),
            with_label=False,
            pipeline=[dict(type='SafeLoadImageFromFile', skip_bad_samples=False)]))
    with pytest.raises(BadSampleError, match=r'img_003\.png: truncated PNG'):
        dataset[3]


def test_a_dataset_of_only_bad_files_gives_up_clearly(tmp_path):
    root = tmp_path / 'bad'
    root.mkdir()
    for i in range(3):
        write_garbage(root / f'img_{i}.png')
    dataset = _dataset(root, max_bad_samples=10, max_refetch=4, seeds=True)
    with pytest.raises(DataError, match='No loadable sample found for index 0'):
        dataset[0]
    with pytest.raises(DataError, match=r'after 5 tries.*max_refetch \(now 4\)'):
        dataset[SeededIndex(1, 3)]


def test_deprecated_robust_dataset_builds_the_plain_dataset(folder, tmp_path):
    log_file = tmp_path / 'deprecated.log'
    MMLogger.get_instance(f'deprecated_{tmp_path.name}', log_file=str(log_file))
    init_default_scope('mmpretrain')
    dataset = DATASETS.build(
        dict(
            type='RobustDataset',
            max_bad_samples=5,
            max_substitutes=7,
            dataset=dict(
                type='CustomDataset',
                data_root=str(folder),
                with_label=False,
                pipeline=[dict(type='LoadImageFromFile'),
                          dict(type='PackInputs')])))
    assert "dict(type='RobustDataset', dataset=...) is deprecated" in log_file.read_text()
    load = _loader(dataset)
    assert type(dataset).__name__ == 'CustomDataset' and dataset.max_refetch == 7
    assert type(load) is SafeLoadImageFromFile and load.max_bad_samples == 5
    assert not dataset[3]['data_samples'].img_path.endswith('img_003.png')


def test_sample_seeds_auto_follows_the_safe_loader(folder):
    """'auto' seeds the pipelines that load with the safe loader (the FD base) and
    leaves others drawing from the global streams, as mmengine does; True/False force."""
    from mmfd.datasets.sample_seeds import SeededPipeline
    safe = _dataset(folder)
    assert install_sample_seeds(safe, 'auto') and isinstance(safe.pipeline, SeededPipeline)
    init_default_scope('mmpretrain')
    plain_cfg = dict(
        type='CustomDataset',
        data_root=str(folder),
        with_label=False,
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='PackInputs')])
    plain = DATASETS.build(plain_cfg)
    assert not install_sample_seeds(plain, 'auto')
    assert not isinstance(plain.pipeline, SeededPipeline)
    assert not getattr(plain, 'uses_sample_seeds', False)
    assert not install_sample_seeds(_dataset(folder), False)
    forced = DATASETS.build(plain_cfg)
    assert install_sample_seeds(forced, True) and forced.uses_sample_seeds
    from mmfd.engine.reliability.checkpoint_hook import AtomicCheckpointHook
    from mmfd.utils.errors import ConfigError
    with pytest.raises(ConfigError, match="sample_seeds='yes'"):
        AtomicCheckpointHook(interval=1, sample_seeds='yes')
