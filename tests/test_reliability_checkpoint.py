"""Unit tests of the crash-safe checkpoint pieces: atomic writes, verification,
the choice of the checkpoint to resume from, random states, sampler positions."""
import logging
import os
import pickle
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from reliability_fixtures import truncate_file

import mmfd  # noqa: F401
from mmfd.engine.reliability import (AtomicCheckpointHook, atomic_write, find_resumable_checkpoint,
                                     get_rng_state, set_rng_state, verify_checkpoint)
from mmfd.engine.reliability.atomic_io import checkpoint_candidates, remove_stale_temp_files
from mmfd.engine.reliability.data_position import PositionSampler, SeededIndex
from mmfd.utils.errors import CheckpointError


def _save(path, step):
    weights = {'w': torch.full((64, ), float(step))}
    torch.save({'meta': {'iter': step}, 'state_dict': weights}, path)
    return str(path)


def test_atomic_write_never_exposes_a_partial_file(tmp_path):
    target = tmp_path / 'iter_8.pth'
    target.write_bytes(b'old complete content')

    def dies_half_way(f, data):
        f.write(data[:10])
        raise KeyboardInterrupt  # stands in for a kill

    with pytest.raises(KeyboardInterrupt):
        atomic_write(str(target), b'x' * 100, writer=dies_half_way)
    assert target.read_bytes() == b'old complete content'
    assert os.listdir(tmp_path) == ['iter_8.pth']  # no temporary left behind
    atomic_write(str(target), b'new')
    assert target.read_bytes() == b'new'
    assert oct(target.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_stale_temporaries_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / '.iter_4.pth.tmp-123-abcd').write_bytes(b'partial')
    (tmp_path / 'iter_4.pth').write_bytes(b'keep')
    assert remove_stale_temp_files(str(tmp_path)) == ['.iter_4.pth.tmp-123-abcd']
    assert os.listdir(tmp_path) == ['iter_4.pth']


def test_verify_checkpoint_finds_every_kind_of_damage(tmp_path):
    good = _save(tmp_path / 'good.pth', 1)
    assert verify_checkpoint(good) is None
    data = open(good, 'rb').read()
    (tmp_path / 'cut.pth').write_bytes(data[:len(data) // 2])
    flipped = bytearray(data)
    flipped[data.find(b'\x00\x00\x80\x3f')] ^= 0xFF  # a byte of the tensor data
    (tmp_path / 'flip.pth').write_bytes(bytes(flipped))
    (tmp_path / 'empty.pth').write_bytes(b'')
    torch.save({'weights': torch.ones(2)}, tmp_path / 'foreign.pth')
    assert 'truncated' in verify_checkpoint(str(tmp_path / 'cut.pth'))
    assert 'CRC' in verify_checkpoint(str(tmp_path / 'flip.pth'))
    assert verify_checkpoint(str(tmp_path / 'empty.pth')) == 'file is empty'
    assert 'not an mmengine checkpoint' in verify_checkpoint(str(tmp_path / 'foreign.pth'))
    assert verify_checkpoint(str(tmp_path / 'missing.pth')) == 'file does not exist'


def test_newest_complete_checkpoint_wins(tmp_path):
    for step in (4, 8, 12, 16):
        _save(tmp_path / f'iter_{step}.pth', step)
    truncate_file(tmp_path / 'iter_16.pth', keep=0.7)
    (tmp_path / '.iter_20.pth.tmp-1-2').write_bytes(b'partial')
    # last_checkpoint lags behind (killed between the rename and the pointer update)
    candidates = checkpoint_candidates(str(tmp_path), 'iter_{}.pth', str(tmp_path / 'iter_8.pth'))
    assert [os.path.basename(c)
            for c in candidates] == ['iter_16.pth', 'iter_12.pth', 'iter_8.pth', 'iter_4.pth']
    path, skipped = find_resumable_checkpoint(candidates)
    assert path.endswith('iter_12.pth')
    assert [os.path.basename(p) for p, _ in skipped] == ['iter_16.pth']


def _fake_runner(tmp_path, load_from=None):
    logger = logging.getLogger('reliability-test')
    return SimpleNamespace(
        work_dir=str(tmp_path), _resume=True, _load_from=load_from, logger=logger)


def test_auto_resume_choice_and_nothing_usable(tmp_path, caplog):
    hook = AtomicCheckpointHook(interval=4, by_epoch=False)
    runner = _fake_runner(tmp_path)
    _save(tmp_path / 'iter_4.pth', 4)
    _save(tmp_path / 'iter_8.pth', 8)
    truncate_file(tmp_path / 'iter_8.pth')
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'iter_8.pth'))
    hook.before_run(runner)
    assert runner._load_from == str(tmp_path / 'iter_4.pth') and runner._resume

    truncate_file(tmp_path / 'iter_4.pth')
    runner = _fake_runner(tmp_path)
    hook.before_run(runner)
    assert runner._load_from is None and runner._resume is False  # fresh start, no crash


def test_explicit_resume_path_that_is_broken_is_a_clear_error(tmp_path):
    hook = AtomicCheckpointHook(interval=4, by_epoch=False)
    _save(tmp_path / 'iter_4.pth', 4)
    _save(tmp_path / 'iter_8.pth', 8)
    truncate_file(tmp_path / 'iter_8.pth')
    runner = _fake_runner(tmp_path, load_from=str(tmp_path / 'iter_8.pth'))
    with pytest.raises(CheckpointError) as err:
        hook.before_run(runner)
    message = str(err.value)
    assert f'Cannot resume from {tmp_path}/iter_8.pth: truncated' in message
    assert f'The newest complete checkpoint is {tmp_path}/iter_4.pth' in message


def test_random_states_survive_a_weights_only_checkpoint(tmp_path):
    state = get_rng_state()
    torch.save({'rng_states': [state]}, tmp_path / 'rng.pth')
    expected = (torch.rand(4), np.random.rand(3), random.random())
    loaded = torch.load(tmp_path / 'rng.pth', weights_only=True)['rng_states'][0]
    set_rng_state(loaded)
    again = (torch.rand(4), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_position_sampler_skips_without_touching_data_and_tags_seeds():
    sampler = PositionSampler(list(range(10)), base_seed=0, rank=1, tag_seeds=True)
    calls = []
    sampler.skip_next_pass(4, on_start=lambda: calls.append('restored'))
    first = list(sampler)
    assert first == list(range(4, 10)) and calls == ['restored']
    second = list(sampler)  # the skip applies to one pass only
    assert second == list(range(10)) and calls == ['restored']
    # the seed of a sample depends on its position, not on the skip
    assert [i.seed for i in first] == [i.seed for i in second[4:]]
    assert len({i.seed for i in second}) == 10
    clone = pickle.loads(pickle.dumps(first[0]))  # sent to a dataloader worker
    assert isinstance(clone, SeededIndex) and clone == 4 and clone.seed == first[0].seed
