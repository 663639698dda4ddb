"""FDOptimWrapper (one type: AMP mode + NaN guard as options) and how tools/train.py
composes the config, its flags and --cfg-options."""
import sys
from unittest import mock

import pytest
import torch
from fd_fixtures import make_image_folder, make_timm_vit_checkpoint, run_train
from mmengine.config import Config
from mmengine.optim import AmpOptimWrapper, OptimWrapper, build_optim_wrapper

import mmfd  # noqa: F401
from mmfd.engine.optim_wrappers import CPUAutocastOptimWrapper, as_fd_optim_wrapper, set_amp
from mmfd.engine.reliability import (SafeAmpOptimWrapper, SafeCPUAutocastOptimWrapper,
                                     SafeOptimWrapper)
from mmfd.utils.errors import ConfigError


def build(cuda=False, native_bf16=True, **options):
    cfg = dict(type='FDOptimWrapper', optimizer=dict(type='AdamW', lr=1e-3), **options)
    model = torch.nn.Linear(2, 2)
    if not cuda:
        with mock.patch(
                'mmfd.engine.optim_wrappers.fd_optim_wrapper.cpu_has_native_bf16',
                return_value=native_bf16):
            return build_optim_wrapper(model, cfg)
    # AmpOptimWrapper insists on an accelerator at construction; this machine has none.
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    with mock.patch.object(amp_module, 'is_cuda_available', return_value=True):
        return build_optim_wrapper(model, dict(cfg, cuda=True))


@pytest.mark.parametrize(
    'amp, guard, cuda, native_bf16, cls, dtype',
    [
        ('off', 10, False, True, SafeOptimWrapper, None),
        ('off', None, False, True, OptimWrapper, None),
        ('auto', 10, False, True, SafeCPUAutocastOptimWrapper, None),
        ('auto', 10, False, False, SafeOptimWrapper, None),  # emulated bf16: fp32
        ('bf16', None, False, False, CPUAutocastOptimWrapper, None),  # asked for: kept
        ('fp16', 10, False, True, SafeCPUAutocastOptimWrapper, None),  # no CUDA: bf16
        ('auto', 10, True, False, SafeAmpOptimWrapper, torch.float16),
        ('bf16', None, True, False, AmpOptimWrapper, torch.bfloat16),
    ])
def test_one_type_builds_the_wrapper_for_the_mode_and_machine(amp, guard, cuda, native_bf16, cls,
                                                              dtype):
    wrapper = build(cuda=cuda, native_bf16=native_bf16, amp=amp, max_consecutive_nonfinite=guard)
    assert type(wrapper) is cls
    assert getattr(wrapper, 'max_consecutive_nonfinite', None) == guard
    if dtype is not None:
        assert wrapper.cast_dtype == dtype


def test_only_fp16_gets_a_loss_scaler_on_cuda():
    """bf16 has fp32's range: no loss scaling (under FSDP2 a scaler's per-rank
    overflow check would let the ranks' scales drift apart)."""
    import mmengine.optim.optimizer.amp_optimizer_wrapper as amp_module
    made = []

    class RecordingScaler:

        def __init__(self, **kwargs):
            made.append(kwargs)

    with mock.patch.object(amp_module, 'GradScaler', RecordingScaler):
        build(cuda=True, native_bf16=False, amp='bf16')
        build(cuda=True, native_bf16=False, amp='fp16')
    assert made == [dict(enabled=False), {}]


def test_bad_amp_mode_is_a_config_error():
    with pytest.raises(ConfigError, match="optim_wrapper.amp='fp8' is not one of"):
        build(amp='fp8')


def test_foreign_types_become_fd_optim_wrapper():
    cfg = as_fd_optim_wrapper(
        dict(type='AmpOptimWrapper', dtype='float16', loss_scale='dynamic', optimizer=dict(lr=1)))
    assert cfg['type'] == 'FDOptimWrapper' and cfg['amp'] == 'auto'
    assert cfg['max_consecutive_nonfinite'] is None  # mmengine's had no guard
    assert 'dtype' not in cfg and cfg['loss_scale'] == 'dynamic'
    bf16 = as_fd_optim_wrapper(dict(type='AmpOptimWrapper', dtype='bfloat16'))
    assert bf16['amp'] == 'bf16'
    plain = as_fd_optim_wrapper(dict(type='OptimWrapper', loss_scale=512.))
    assert plain['amp'] == 'off' and 'loss_scale' not in plain
    legacy = as_fd_optim_wrapper(dict(type='SafeAmpOptimWrapper', max_consecutive_nonfinite=3))
    assert legacy['amp'] == 'auto' and legacy['max_consecutive_nonfinite'] == 3
    other = dict(type='MyWrapper', amp='x')
    assert as_fd_optim_wrapper(dict(other)) == other


def test_amp_flags():
    base = dict(type='FDOptimWrapper', amp='auto', max_consecutive_nonfinite=10)
    assert set_amp(dict(base), amp=False)['amp'] == 'off'
    assert set_amp(dict(base, amp='off'), amp=True)['amp'] == 'auto'
    assert set_amp(dict(base, amp='bf16'), amp=True)['amp'] == 'bf16'  # kept
    assert set_amp(dict(base), amp=True, amp_dtype='bfloat16')['amp'] == 'bf16'
    assert set_amp(dict(base), amp=None)['amp'] == 'auto'
    with pytest.raises(ConfigError, match='--amp/--no-amp/--amp-dtype need'):
        set_amp(dict(type='MyWrapper'), amp=True)


def merged(argv):
    sys.path.insert(0, 'tools')
    try:
        import train
    finally:
        sys.path.pop(0)
    args = train.parse_args(argv)
    return train.merge_args(Config.fromfile(args.config), args)


def test_train_flags_then_cfg_options_last_wins():
    config = 'configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py'
    cfg = merged([
        config, '--no-amp', '--no-validate', '--no-pin-memory', '--no-persistent-workers',
        '--auto-scale-lr', '--cfg-options', 'optim_wrapper.type=AmpOptimWrapper',
        'auto_scale_lr.base_batch_size=256'
    ])
    # --no-amp said fp32, then --cfg-options named mmengine's AMP wrapper: it wins,
    # and it is made runnable on any machine.
    assert cfg.optim_wrapper.type == 'FDOptimWrapper' and cfg.optim_wrapper.amp == 'auto'
    assert cfg.val_cfg is None and cfg.val_dataloader is None and cfg.val_evaluator is None
    assert cfg.train_dataloader.pin_memory is False
    assert cfg.train_dataloader.persistent_workers is False
    assert cfg.auto_scale_lr == dict(base_batch_size=256, enable=True)
    cfg = merged([config, '--amp', '--cfg-options', 'optim_wrapper.amp=off'])
    assert cfg.optim_wrapper.amp == 'off'


# Runs tools/train.py with the test-only requirements (requirements/tests.txt)
# made unimportable, as in an environment installed from requirements/runtime.txt.
RUNTIME_ONLY = """
import runpy, sys
class TestOnly:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorboard', 'pytest'):
            raise ModuleNotFoundError(f'{name} is a test-only requirement', name=name)
sys.meta_path.insert(0, TestOnly())
sys.argv = ['tools/train.py'] + sys.argv[1:]
runpy.run_path('tools/train.py', run_name='__main__')
"""


def test_cfg_options_amp_wrapper_and_flexible_runner_train_on_cpu(tmp_path):
    """One tiny run, three reported bugs: `--cfg-options optim_wrapper.type=
    AmpOptimWrapper` crashed in mmengine on a CPU; tools/train.py ignored
    `runner_type` (FlexibleRunner and its FSDP/DeepSpeed strategies were unusable);
    the default runtime needed tensorboard, a test-only requirement, at the first
    logged scalar."""
    images = make_image_folder(tmp_path / 'images', n=8)
    teacher = make_timm_vit_checkpoint(tmp_path / 'teacher.pth')
    work = tmp_path / 'work'
    result = run_train([
        sys.executable, '-c', RUNTIME_ONLY, 'tests/configs/tiny_fd.py', '--work-dir',
        str(work), '--cfg-options', f'model.teacher.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={images}', 'train_cfg.max_iters=2',
        'default_hooks.logger.interval=1', 'optim_wrapper.type=AmpOptimWrapper',
        'runner_type=FlexibleRunner'
    ])
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-3000:]
    from mmfd.engine.optim_wrappers.fd_optim_wrapper import cpu_has_native_bf16
    assert ('bfloat16 autocast on the CPU' if cpu_has_native_bf16() else
            "no native bf16 on this CPU: amp='auto' trains in fp32") in log
    assert 'mmfd: training with FlexibleRunner' in log
    assert (work / 'iter_2.pth').exists()
    scalars = list(work.glob('*/vis_data/scalars.json'))
    assert scalars and 'loss' in scalars[0].read_text()
