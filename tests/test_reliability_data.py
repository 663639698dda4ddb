"""Data faults: unreadable, truncated, missing and empty images are logged once with
their path and replaced; more than max_bad_samples stops with a clear error."""
import io
import re

import numpy as np
import pytest
import torch
from fd_fixtures import make_image_folder
from mmengine.logging import MMLogger
from mmengine.registry import init_default_scope
from PIL import Image
from reliability_fixtures import truncate_file, write_garbage

import mmfd  # noqa: F401
from mmfd.datasets import (BadSampleError, DataError, RobustDataset, SafeLoadImageFromFile,
                           image_bytes_problem)


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
    load = SafeLoadImageFromFile()
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


def _robust(root, **kwargs):
    init_default_scope('mmpretrain')
    return RobustDataset(
        dict(
            type='CustomDataset',
            data_root=str(root),
            with_label=False,
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='RandomResizedCrop', scale=32, backend='pillow'),
                dict(type='PackInputs')
            ]), **kwargs)


@pytest.fixture
def folder(tmp_path):
    root = make_image_folder(tmp_path / 'images', n=12, size=40)
    truncate_file(root / 'img_003.png', keep=0.5)
    write_garbage(root / 'img_007.png')
    return root


def test_bad_images_are_replaced_and_logged_once_across_workers(folder, tmp_path):
    # the current logger, inherited by the forked workers, writes to this file
    log_file = tmp_path / 'data.log'
    MMLogger.get_instance(f'data_faults_{tmp_path.name}', log_file=str(log_file))
    dataset = _robust(folder, max_bad_samples=2)
    assert type(dataset.dataset.pipeline.transforms[0]).__name__ == 'SafeLoadImageFromFile'
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
    assert sorted(dataset.bad_indices().tolist()) == [3, 7]


def test_more_bad_samples_than_allowed_stops_with_a_clear_error(folder):
    dataset = _robust(folder, max_bad_samples=1)
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


def test_substitution_and_augmentation_are_deterministic(folder):
    from mmfd.engine.reliability.data_position import SeededIndex
    a, b = _robust(folder), _robust(folder)
    for index in (3, 5):  # a bad one (substituted) and a good one
        x, y = a[SeededIndex(index, 1234)], b[SeededIndex(index, 1234)]
        assert torch.equal(x['inputs'], y['inputs'])
        assert x['data_samples'].img_path == y['data_samples'].img_path
    assert not a[3]['data_samples'].img_path.endswith('img_003.png')
    state = torch.get_rng_state()
    a[SeededIndex(5, 99)]
    assert torch.equal(state, torch.get_rng_state()), 'caller random state changed'


def test_without_the_wrapper_a_bad_image_fails_with_its_path(folder):
    init_default_scope('mmpretrain')
    from mmengine.registry import DATASETS
    dataset = DATASETS.build(
        dict(
            type='CustomDataset',
            data_root=str(folder),
            with_label=False,
            pipeline=[dict(type='SafeLoadImageFromFile')]))
    with pytest.raises(BadSampleError, match=r'img_003\.png: truncated PNG'):
        dataset[3]


def test_a_dataset_of_only_bad_files_gives_up_clearly(tmp_path):
    root = tmp_path / 'bad'
    root.mkdir()
    for i in range(3):
        write_garbage(root / f'img_{i}.png')
    dataset = _robust(root, max_bad_samples=10, max_substitutes=4)
    with pytest.raises(DataError, match='No loadable sample found for index 0'):
        dataset[0]
