"""Foundation: import/registration across scopes, the environment check, and exact
resume with torch.load(weights_only=True) in force."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import mmfd  # noqa: F401  (registers, installs safe globals)


def test_import_registers_into_mmpretrain_scope():
    from mmpretrain.registry import MODELS
    for name in ('FeatureDistiller', 'FDViT', 'FDHead'):
        assert MODELS.get(name) is not None, name


def test_mmdet_and_mmseg_reach_mmpretrain_types_across_scopes():
    from mmdet.registry import MODELS as DET_MODELS
    from mmseg.registry import MODELS as SEG_MODELS
    arch = dict(embed_dims=32, num_layers=1, num_heads=2, feedforward_channels=64)
    for registry in (DET_MODELS, SEG_MODELS):
        backbone = registry.build(dict(type='mmpretrain.FDViT', arch=arch, img_size=32))
        assert type(backbone).__name__ == 'FDViT'


def test_mmcv_has_compiled_ops():
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]


def test_environment_check_reports_clean_stack():
    from mmfd.utils.env_check import collect_problems
    errors, warns = collect_problems()
    assert errors == [] and warns == []


def test_environment_check_names_the_problem(monkeypatch):
    from mmfd.utils import env_check
    monkeypatch.setattr(torch, '__version__', '2.14.0')
    errors, _ = env_check.collect_problems()
    assert any('torch 2.14.0 is not supported' in e and 'make env' in e for e in errors)
    monkeypatch.setattr(env_check.importlib.util, 'find_spec', lambda name: None
                        if name == 'mmcv._ext' else object())
    _, warns = env_check.collect_problems()
    assert any('WITHOUT its compiled ops' in w for w in warns)


# ---------------------------------------------------------------- exact resume
class ToyData(Dataset):

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(24, 4, generator=g)
        self.y = self.x @ torch.tensor([1., -2., 3., 0.5]) + 0.1

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(inputs=self.x[i], target=self.y[i])


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        # No dropout: restoring RNG streams on resume is the reliability suite's topic.
        self.net = nn.Sequential(nn.Linear(4, 8), nn.GELU(), nn.Linear(8, 1))

    def forward(self, inputs, target, mode='loss'):
        return dict(loss=((self.net(inputs).squeeze(-1) - target)**2).mean())


class Crash(Exception):
    pass


class CrashAfter(Hook):
    """Simulates a killed job: raises right after iteration n has been checkpointed."""
    priority = 'LOWEST'

    def __init__(self, n):
        self.n = n

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
        if runner.iter + 1 == self.n:
            raise Crash(f'killed after iter {self.n}')


def make_runner(work_dir, max_iters, resume=False, crash_after=None):
    torch.manual_seed(0)
    return Runner(
        custom_hooks=[CrashAfter(crash_after)] if crash_after else None,
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            batch_size=4,
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate')),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        param_scheduler=dict(type='CosineAnnealingLR', T_max=8, by_epoch=False),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=3, by_epoch=False),
            logger=dict(type='LoggerHook', interval=1)),
        randomness=dict(seed=0),
        resume=resume,
        default_scope='mmpretrain',
    )


def test_resume_is_exact_with_weights_only(tmp_path):
    assert 'weights_only' in torch.load.__doc__  # a torch that has the switch
    full = make_runner(tmp_path / 'full', 8)
    full.train()
    expected = {k: v.clone() for k, v in full.model.state_dict().items()}

    with pytest.raises(Crash):  # dies after iter 3
        make_runner(tmp_path / 'part', 8, crash_after=3).train()
    ckpt = tmp_path / 'part' / 'iter_3.pth'
    # The checkpoint holds mmengine's HistoryBuffer: only our allow-list makes it
    # loadable while weights_only stays on.
    loaded = torch.load(ckpt, weights_only=True)
    assert 'message_hub' in loaded
    resumed = make_runner(tmp_path / 'part', 8, resume=True)
    resumed.train()
    assert resumed.iter == 8
    for key, value in resumed.model.state_dict().items():
        torch.testing.assert_close(value, expected[key], rtol=0, atol=0, msg=key)


def test_without_mmfd_the_checkpoint_is_refused(tmp_path):
    """Shows what the allow-list fixes: plain torch refuses mmengine's objects."""
    make_runner(tmp_path, 3).train()
    code = ('import torch, sys; '
            f'torch.load({str(tmp_path / "iter_3.pth")!r}, weights_only=True)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode != 0
    assert 'HistoryBuffer' in result.stderr or 'Unsupported global' in result.stderr


def test_safe_globals_do_not_allow_arbitrary_code(tmp_path):

    class Evil:

        def __reduce__(self):
            return (os.system, ('echo pwned', ))

    path = tmp_path / 'evil.pth'
    torch.save({'x': Evil()}, path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, weights_only=True)
