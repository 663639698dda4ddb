"""Numeric faults: a NaN/inf loss or gradient skips the step without touching the
weights or the optimizer state; too many in a row stop the run with an error that
names the iteration and the last good checkpoint."""
import copy
import itertools
from unittest import mock

import pytest
import torch
from mmengine.logging import MessageHub
from reliability_fixtures import run, train_cmd, write_config

import mmfd  # noqa: F401
from mmfd.engine.reliability import (NonFiniteError, SafeAmpOptimWrapper,
                                     SafeCPUAutocastOptimWrapper, SafeOptimWrapper)

_names = itertools.count()


def _setup(cls=SafeOptimWrapper, **kwargs):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    hub = MessageHub.get_instance(f'reliability_numeric_{next(_names)}')  # the current one
    wrapper = cls(optimizer=torch.optim.AdamW(model.parameters(), lr=0.1), **kwargs)
    assert wrapper.message_hub is hub
    hub.update_info('iter', 0)
    return model, wrapper, hub


def _snapshot(model, wrapper):
    return copy.deepcopy(model.state_dict()), copy.deepcopy(wrapper.optimizer.state_dict())


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _loss(model, poison=None):
    loss = model(torch.ones(3, 4)).pow(2).mean()
    return loss * poison if poison is not None else loss


@pytest.mark.parametrize('poison', [float('nan'), float('inf')])
def test_nonfinite_loss_step_is_skipped_and_counted(poison):
    model, wrapper, hub = _setup(max_consecutive_nonfinite=3)
    wrapper.update_params(_loss(model))  # a good step: Adam state exists
    before = _snapshot(model, wrapper)
    hub.update_info('iter', 1)
    wrapper.update_params(_loss(model, poison))
    assert _same(before, _snapshot(model, wrapper)), 'a non-finite step changed state'
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert hub.get_info('skipped_steps') == 1 and wrapper.consecutive_nonfinite == 1
    wrapper.update_params(_loss(model))  # recovers
    assert not _same(before[0], model.state_dict()) and wrapper.consecutive_nonfinite == 0
    assert hub.get_info('nonfinite_consecutive') == 0


def test_cpu_autocast_variant():
    model, wrapper, hub = _setup(SafeCPUAutocastOptimWrapper)
    with wrapper.optim_context(model):
        wrapper.update_params(_loss(model))
    before = _snapshot(model, wrapper)
    with wrapper.optim_context(model):
        wrapper.update_params(_loss(model, float('nan')))
    assert _same(before, _snapshot(model, wrapper)) and hub.get_info('skipped_steps') == 1
    # (--amp / --no-amp now set FDOptimWrapper's amp option, with the guard kept:
    # tests/test_fd_optim_wrapper.py)


def test_nonfinite_gradient_with_finite_loss_is_skipped():
    model, wrapper, hub = _setup(clip_grad=dict(max_norm=1.0))
    wrapper.update_params(_loss(model))
    before = _snapshot(model, wrapper)
    handle = model.weight.register_hook(lambda grad: grad * float('nan'))
    loss = _loss(model)
    assert torch.isfinite(loss)
    wrapper.update_params(loss)
    handle.remove()
    assert _same(before, _snapshot(model, wrapper))
    assert hub.get_info('skipped_steps') >= 1


def test_consecutive_nonfinite_steps_stop_with_iteration_and_checkpoint():
    model, wrapper, hub = _setup(max_consecutive_nonfinite=3)
    hub.update_info('last_ckpt', '/work/iter_20.pth')
    hub.update_info('last_good_ckpt', '/work/iter_16.pth')
    for it in (30, 31):
        hub.update_info('iter', it)
        wrapper.update_params(_loss(model, float('nan')))
    hub.update_info('iter', 32)
    with pytest.raises(NonFiniteError) as err:
        wrapper.update_params(_loss(model, float('nan')))
    message = str(err.value)
    assert 'stopped at iteration 33' in message and '3 consecutive' in message
    assert 'max_consecutive_nonfinite=3' in message
    assert 'last good checkpoint is /work/iter_16.pth' in message


def test_amp_wrapper_skips_unscaled_nonfinite_and_lowers_the_scale():
    """SafeAmpOptimWrapper with a real (CPU) GradScaler: AmpOptimWrapper insists on a
    GPU at construction, which this test machine lacks, so that check is patched."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    with mock.patch.object(amp_module, 'is_cuda_available', return_value=True):
        model, wrapper, hub = _setup(
            SafeAmpOptimWrapper, max_consecutive_nonfinite=2, loss_scale='dynamic')
    wrapper.loss_scaler = torch.amp.GradScaler('cpu', init_scale=1024.)
    wrapper.update_params(_loss(model))
    before = _snapshot(model, wrapper)
    wrapper.update_params(_loss(model, float('inf')))
    assert _same(before, _snapshot(model, wrapper))
    assert wrapper.loss_scaler.get_scale() == 512.  # halved, as AMP does
    with pytest.raises(NonFiniteError, match='2 consecutive'):
        wrapper.update_params(_loss(model, float('nan')))


def test_training_skips_a_nan_step_then_stops_naming_iteration_and_checkpoint(tmp_path):
    """tools/train.py with NaNs injected into the student at iteration 3 (one, then
    training goes on) and from iteration 10 on (three in a row: the run stops)."""
    from fd_fixtures import make_image_folder, make_timm_vit_checkpoint
    images = make_image_folder(tmp_path / 'images', n=16)
    teacher = make_timm_vit_checkpoint(tmp_path / 'teacher.pth')
    config = write_config(
        tmp_path / 'nan.py',
        images,
        teacher,
        extra='''
optim_wrapper['max_consecutive_nonfinite'] = 3
custom_hooks = [dict(type='NaNInjectionHook', iters=[2, 9, 10, 11, 12])]
''')
    result = run(train_cmd(config, tmp_path / 'work'))
    log = result.stdout + result.stderr
    assert result.returncode != 0
    assert 'Non-finite update at iteration 3 (loss=nan, grad_norm=nan): optimizer step ' \
           'skipped (1 in a row, 1 in total)' in log
    assert 'Iter(train) [ 4/24]' in log  # training went on after the single NaN step
    assert 'NonFiniteError: Training stopped at iteration 12: 3 consecutive steps' in log
    assert f'The last good checkpoint is {tmp_path}/work/iter_8.pth' in log
    ckpt = torch.load(tmp_path / 'work' / 'iter_8.pth', weights_only=True)
    assert all(torch.isfinite(v).all() for v in ckpt['state_dict'].values())
    assert ckpt['message_hub']['runtime_info']['skipped_steps'] == 1
