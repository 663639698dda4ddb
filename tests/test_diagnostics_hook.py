"""DiagnosticsHook inside tiny mmengine Runners, TensorBoard backend."""
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from diagnostics_fixtures import IMG, classifier_cfg, fd_cfg, make_image_folder

from mmfd.utils.errors import ConfigError

PIPELINE = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(IMG, IMG)),
    dict(type='PackInputs')
]


def runner_cfg(work_dir, model, train_dataloader, custom_hooks, **extra):
    return dict(
        model=model,
        work_dir=str(work_dir),
        default_scope='mmpretrain',
        train_dataloader=train_dataloader,
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3)),
        default_hooks=dict(
            logger=dict(type='LoggerHook', interval=1),
            checkpoint=dict(type='CheckpointHook', interval=100)),
        visualizer=dict(
            type='UniversalVisualizer', vis_backends=[dict(type='TensorboardVisBackend')]),
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
        **extra)


def loader(root, with_label, shuffle=True, **extra):
    return dict(
        batch_size=2,
        num_workers=0,
        **extra,
        sampler=dict(type='DefaultSampler', shuffle=shuffle),
        dataset=dict(
            type='CustomDataset', data_root=str(root), with_label=with_label, pipeline=PIPELINE))


def tensorboard_scalars(work_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    files = list(Path(work_dir).glob('*/vis_data/**/events.out.tfevents.*'))
    assert files, 'no TensorBoard event file'
    acc = EventAccumulator(str(files[0].parent))
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()['scalars']}


def make_runner(cfg):
    from mmengine.config import Config
    from mmengine.runner import Runner
    return Runner.from_cfg(Config(cfg))


def test_fd_run_logs_scalars_and_writes_pngs(tmp_path):
    images = make_image_folder(tmp_path / 'images', n=4)
    hook = dict(
        type='DiagnosticsHook',
        interval=2,
        by_epoch=False,
        before_train=True,
        image_dir=str(images),
        num_images=3,
        batch_size=2,
        metrics=('distance', 'diversity', 'maps', 'landscape'),
        landscape=dict(points=3, num_batches=1),
        log_figures=True)
    runner = make_runner(
        runner_cfg(
            tmp_path / 'work',
            fd_cfg(),
            loader(images, with_label=False, collate_fn=dict(type='default_collate')), [hook],
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=2),
            log_processor=dict(by_epoch=False)))
    runner.train()

    for tag in ('init', 'iter_2'):
        folder = tmp_path / 'work' / 'diagnostics' / tag
        for name in ('attention_distance', 'head_diversity', 'attention_maps_student',
                     'attention_maps_teacher', 'loss_landscape'):
            assert (folder / f'{name}.png').stat().st_size > 1000, (tag, name)
        report = json.loads((folder / 'diagnostics.json').read_text())
        assert report['num_images'] == 3 and report['image_size'] == [IMG, IMG]
        assert set(report['targets']) == {'student', 'teacher'}
        assert report['targets']['student']['num_layers'] == 2
        assert report['targets']['teacher']['layers'][0]['num_heads'] == 3
        assert len(report['landscape']['losses']) == 3

    scalars = tensorboard_scalars(tmp_path / 'work')
    for tag in ('diagnostics/student/attn_distance', 'diagnostics/student/head_similarity',
                'diagnostics/student/attn_distance/layer_01',
                'diagnostics/teacher/head_similarity/layer_00', 'diagnostics/student/head_kl',
                'diagnostics/landscape/curvature'):
        assert [step for step, _ in scalars[tag]] == [0, 2], tag
    # the logged number is the JSON number
    report = json.loads((tmp_path / 'work/diagnostics/iter_2/diagnostics.json').read_text())
    logged = scalars['diagnostics/student/attn_distance/layer_01'][-1][1]
    assert logged == pytest.approx(report['targets']['student']['distance_mean'][1], rel=1e-6)
    # student moved between init and iter 2, the frozen teacher was measured once
    init = json.loads((tmp_path / 'work/diagnostics/init/diagnostics.json').read_text())
    assert init['targets']['teacher'] == report['targets']['teacher']
    assert init['targets']['student'] != report['targets']['student']


def test_classifier_after_val_uses_the_val_loader_and_changes_nothing(tmp_path):
    images = make_image_folder(tmp_path / 'images', n=4, classes=['a', 'b'])
    hook = dict(
        type='DiagnosticsHook',
        interval=0,
        after_val=True,
        num_images=3,
        targets=('student', 'teacher'),
        metrics=('distance', 'diversity', 'landscape'),
        landscape=dict(points=3, dim=2, num_batches=2))
    runner = make_runner(
        runner_cfg(
            tmp_path / 'work',
            classifier_cfg(),
            loader(images, True), [hook],
            train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
            val_dataloader=loader(images, True, shuffle=False),
            val_cfg=dict(),
            val_evaluator=dict(type='Accuracy', topk=(1, ))))
    runner.train()
    folder = tmp_path / 'work' / 'diagnostics' / 'val_epoch_1'
    report = json.loads((folder / 'diagnostics.json').read_text())
    assert set(report['targets']) == {'student'}  # a classifier has no teacher
    assert report['num_images'] == 3
    assert np.asarray(report['landscape']['losses']).shape == (3, 3)
    assert (folder / 'loss_landscape.png').exists() and (folder / 'attention_distance.png').exists()
    assert not (folder / 'attention_maps_student.png').exists()  # 'maps' not asked
    assert 'diagnostics/student/attn_distance' in tensorboard_scalars(tmp_path / 'work')

    # a run of the hook leaves weights, modes and random streams exactly as they were
    diag = next(h for h in runner.hooks if type(h).__name__ == 'DiagnosticsHook')
    runner.model.train()
    state = {k: v.clone() for k, v in runner.model.state_dict().items()}
    modes = [m.training for m in runner.model.modules()]
    rng = torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()
    diag._run(runner, 'manual', 99)
    assert all(torch.equal(v, state[k]) for k, v in runner.model.state_dict().items())
    assert modes == [m.training for m in runner.model.modules()]
    assert torch.equal(torch.get_rng_state(), rng[0])
    assert np.array_equal(np.random.get_state()[1], rng[1]) and random.getstate() == rng[2]


def test_fd_without_val_loader_falls_back_to_train_images(tmp_path):
    images = make_image_folder(tmp_path / 'images', n=4)
    hook = dict(
        type='DiagnosticsHook',
        interval=1,
        by_epoch=False,
        num_images=3,
        targets=('student', ),
        metrics=('distance', ))
    runner = make_runner(
        runner_cfg(
            tmp_path / 'work',
            fd_cfg(),
            loader(images, with_label=False, collate_fn=dict(type='default_collate')), [hook],
            train_cfg=dict(type='IterBasedTrainLoop', max_iters=1),
            log_processor=dict(by_epoch=False)))
    runner.train()
    folder = tmp_path / 'work' / 'diagnostics' / 'iter_1'
    report = json.loads((folder / 'diagnostics.json').read_text())
    assert report['num_images'] == 3 and set(report['targets']) == {'student'}
    assert (folder / 'attention_distance.png').exists()
    assert not (folder / 'head_diversity.png').exists()


def test_dataloader_images_are_raw_rgb(tmp_path):
    from diagnostics_fixtures import build
    from mmengine.runner import Runner
    from PIL import Image

    from mmfd.diagnostics import analysis
    (tmp_path / 'red').mkdir()
    for k in range(3):  # mmcv loads BGR; the preprocessor's to_rgb must be undone right
        Image.new('RGB', (48, 40), (255, 0, 0)).save(tmp_path / 'red' / f'{k}.png')
    model = build(fd_cfg())
    data = Runner.build_dataloader(
        loader(tmp_path / 'red', False, collate_fn=dict(type='default_collate')))
    raw, batches = analysis.images_from_dataloader(model, data, 3)
    assert raw.shape == (3, 3, IMG, IMG)
    torch.testing.assert_close(raw[:, 0], torch.full((3, IMG, IMG), 255.), atol=1e-3, rtol=0)
    torch.testing.assert_close(raw[:, 1:], torch.zeros(3, 2, IMG, IMG), atol=1e-3, rtol=0)
    inputs = torch.cat([b[0] for b in batches])
    mean, std = analysis.preprocessor_stats(model)
    torch.testing.assert_close(inputs, (raw - mean) / std)


def test_hook_rejects_bad_options():
    from mmfd.engine.hooks import DiagnosticsHook
    with pytest.raises(ConfigError, match='metrics'):
        DiagnosticsHook(metrics=('distance', 'sharpness'))
    with pytest.raises(ConfigError, match='targets'):
        DiagnosticsHook(targets=('pupil', ))
    with pytest.raises(ConfigError, match='landscape'):
        DiagnosticsHook(landscape=dict(dims=2))


@pytest.mark.parametrize('scope', ['mmpretrain', 'mmdet', 'mmseg'])
def test_hook_resolves_from_every_toolbox_scope(scope, tmp_path):
    """The hook as an mmdet / mmseg config names it: a bare type in custom_hooks,
    built by that toolbox's own HOOKS registry under its default scope."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    from mmfd.engine.hooks import DiagnosticsHook
    registry = importlib.import_module(f'{scope}.registry').HOOKS
    cfg_file = tmp_path / f'{scope}_hooks.py'
    cfg_file.write_text(f"default_scope = '{scope}'\n"
                        "custom_imports = dict(imports=['mmfd'], allow_failed_imports=False)\n"
                        "custom_hooks = [dict(type='DiagnosticsHook', interval=2, num_images=4)]\n")
    cfg = Config.fromfile(str(cfg_file))
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        hook = registry.build(cfg.custom_hooks[0])
    assert isinstance(hook, DiagnosticsHook) and hook.interval == 2
