"""Config faults caught before training starts, with messages that say what to fix:
called directly (preflight) and through tools/train.py (in-process, so no extra
interpreter start-up)."""
import importlib.util
from pathlib import Path

import pytest
from config_names import fd_config
from fd_fixtures import make_image_folder, make_timm_vit_checkpoint
from mmengine.config import Config
from reliability_fixtures import (train_script_with_preflight, truncate_file, write_config,
                                  write_garbage)

import mmfd  # noqa: F401
from mmfd.utils.errors import CheckpointError, ConfigError
from mmfd.utils.preflight import preflight


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('config_faults')
    images = make_image_folder(root / 'images', n=4, size=40)
    teacher = make_timm_vit_checkpoint(root / 'teacher.pth')
    # A folder whose images all fail to load: a run that reads data would say so.
    unreadable = root / 'unreadable'
    unreadable.mkdir()
    for i in range(4):
        write_garbage(unreadable / f'img_{i}.png')
    config = write_config(root / 'tiny.py', images, teacher)
    return root, images, teacher, unreadable, config


def _cfg(files, **changes):
    root, *_, config = files
    cfg = Config.fromfile(config)
    cfg.work_dir = str(root / 'work')
    cfg.merge_from_dict(changes)
    return cfg


def test_a_good_config_passes(files):
    assert preflight(_cfg(files)) is not None


def test_missing_data_root(files):
    with pytest.raises(ConfigError) as err:
        preflight(_cfg(files, **{'train_dataloader.dataset.data_root': '/no/imagenet'}))
    assert ("train_dataloader.dataset.data_root='/no/imagenet' does not exist" in str(err.value))


def test_missing_ann_file_inside_a_dataset_wrapper(files):
    _, images, *_ = files
    cfg = _cfg(files)
    cfg.train_dataloader.dataset = dict(
        type='RepeatDataset',
        times=1,
        dataset=dict(
            type='CustomDataset', data_root=str(images), ann_file='meta/train.txt', pipeline=[]))
    with pytest.raises(
            ConfigError,
            match=r"train_dataloader\.dataset\.dataset\.ann_file="
            r"'meta/train\.txt': .*meta/train\.txt does not exist"):
        preflight(cfg)


def test_missing_teacher_checkpoint(files):
    with pytest.raises(CheckpointError) as err:
        preflight(_cfg(files, **{'model.teacher.checkpoint': '/ckpts/dino_vitb16.pth'}))
    message = str(err.value)
    assert "model.teacher.checkpoint='/ckpts/dino_vitb16.pth': file not found" in message
    assert 'never downloads' in message


def test_unknown_teacher_type_suggests_close_names(files):
    with pytest.raises(ConfigError) as err:
        preflight(_cfg(files, **{'model.teacher.type': 'VitTeacher'}))
    message = str(err.value)
    assert "model.teacher.type='VitTeacher' is not a registered teacher" in message
    assert "Did you mean 'ViTTeacher'" in message and 'CLIPTeacher' in message
    with pytest.raises(ConfigError, match="Did you mean 'CLIPTeacher'"):
        preflight(_cfg(files, **{'model.teacher.type': 'ClipTeacher'}))


def test_total_batch_not_divisible_across_ranks(files):
    cfg = _cfg(files, total_batch_size=2048)
    with pytest.raises(ConfigError) as err:
        preflight(cfg, world_size=3)
    assert ('total_batch_size=2048 cannot be split over 3 process(es) x 1 accumulation '
            'step(s)') in str(err.value)
    assert 'e.g. 2046' in str(err.value)
    cfg = _cfg(files, total_batch_size=2048, **{'optim_wrapper.accumulative_counts': 2})
    preflight(cfg, world_size=8)
    assert cfg.train_dataloader.batch_size == 128  # 2048 = 128 x 8 ranks x 2 steps


def test_all_problems_are_reported_together(files):
    cfg = _cfg(
        files,
        total_batch_size=10,
        **{
            'train_dataloader.dataset.data_root': '/no/data',
            'model.teacher.checkpoint': '/no/teacher.pth',
            'load_from': '/no/ckpt.pth'
        })
    with pytest.raises(ConfigError) as err:
        preflight(cfg, world_size=4)
    message = str(err.value)
    assert message.startswith('4 problems in the config, found before training:')
    for part in ('/no/data', '/no/teacher.pth', '/no/ckpt.pth', 'total_batch_size=10'):
        assert part in message


# ---------------------------------------------------------------- through tools/train.py
@pytest.fixture(scope='module')
def train_main(tmp_path_factory):
    script = train_script_with_preflight(tmp_path_factory.mktemp('train_script'))
    spec = importlib.util.spec_from_file_location('mmfd_train_script', script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _train(train_main, files, *options, tmp_path):
    *_, config = files
    train_main([str(config), '--work-dir', str(tmp_path / 'work'), '--cfg-options', *options])


def test_train_py_stops_on_missing_data_root_before_building_the_model(files, train_main, tmp_path):
    with pytest.raises(ConfigError, match="data_root='/no/such/dir' does not exist"):
        _train(
            train_main,
            files,
            'train_dataloader.dataset.data_root=/no/such/dir',
            'model.teacher.arch.depth=-1',  # would fail if the model were built
            tmp_path=tmp_path)
    assert not (tmp_path / 'work').exists() or not list((tmp_path / 'work').glob('*/*.log'))


@pytest.mark.parametrize(
    'options, expected',
    [
        # unknown teacher arch: the teacher zoo's error, with the close matches
        (['model.teacher.arch=vit_base_patch61'
          ], "Unknown ViT arch 'vit_base_patch61'. Did you mean 'vit_base_patch16'"),
        # grids that cannot be aligned (patch-8 teacher: 8x8 tokens, student 4x4)
        (['model.align=none'], 'Teacher grid (8, 8)'),
        # widths that cannot be aligned
        (['model.head.out_channels=64'], 'model.head.out_channels=64 but the teacher'),
    ])
def test_train_py_model_faults_come_before_any_data_is_read(files, train_main, tmp_path, options,
                                                            expected):
    *_, unreadable, _ = files
    with pytest.raises(ConfigError) as err:
        # unreadable images: a run that got to reading data would fail differently
        _train(
            train_main,
            files,
            f'train_dataloader.dataset.data_root={unreadable}',
            *options,
            tmp_path=tmp_path)
    assert expected in str(err.value)


def test_fd_bases_are_reliable_by_default(tmp_path):
    """The shipped FD bases use the atomic checkpoint hook, the NaN-guarded AMP
    wrapper and the safe image loader (plain dataset, no wrapper); total_batch_size
    composes with them."""
    repo = Path(__file__).resolve().parents[1]
    config = tmp_path / 'fd_reliable.py'
    config.write_text(f"""
_base_ = ['{repo}/configs/_base_/models/fd_vit_base_p16.py',
          '{repo}/configs/_base_/datasets/imagenet_fd.py',
          '{repo}/configs/_base_/schedules/fd_300e.py',
          '{repo}/configs/_base_/default_runtime.py']
total_batch_size = 2048
""")
    cfg = Config.fromfile(config)
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 3  # default_runtime's values kept
    assert cfg.optim_wrapper.type == 'FDOptimWrapper' and cfg.optim_wrapper.amp == 'auto'
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=3.0)
    assert cfg.train_dataloader.dataset.type == 'ImageNet'
    assert cfg.train_dataloader.dataset.pipeline[0] == dict(
        type='SafeLoadImageFromFile', max_bad_samples=100)
    assert cfg.custom_imports.imports == ['mmfd']
    cfg.work_dir = str(tmp_path / 'work')
    cfg.train_dataloader.dataset.data_root = str(tmp_path)
    preflight(cfg, world_size=16)
    assert cfg.train_dataloader.batch_size == 128


def test_data_root_override_reaches_the_real_fd_config(tmp_path):
    """--cfg-options train_dataloader.dataset.data_root=DIR on the CLIP ViT-B/16 FD config:
    mmengine's own builder reads the images there, and a truncated one is skipped."""
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    root = tmp_path / 'imagenet'
    lines = []
    for label, cls in enumerate(['n01440764', 'n01443537']):
        make_image_folder(root / 'train' / cls, n=3, size=40, seed=label)
        lines += [f'{cls}/img_{i:03d}.png {label}' for i in range(3)]
    (root / 'meta').mkdir()
    (root / 'meta' / 'train.txt').write_text('\n'.join(lines) + '\n')  # ImageNet's layout
    truncate_file(root / 'train' / 'n01443537' / 'img_001.png', keep=0.5)
    repo = Path(__file__).resolve().parents[1]
    cfg = Config.fromfile(repo / fd_config('clip_vitb'))
    cfg.merge_from_dict({'train_dataloader.dataset.data_root': str(root)})
    cfg.merge_from_dict({'train_dataloader.num_workers': 0, 'train_dataloader.batch_size': 2})
    cfg.train_dataloader.update(persistent_workers=False, pin_memory=False)
    init_default_scope(cfg.default_scope)
    loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    assert type(loader.dataset).__name__ == 'ImageNet' and len(loader.dataset) == 6
    batches = list(loader)
    paths = [sample.img_path for batch in batches for sample in batch['data_samples']]
    assert len(paths) == 6 and all(p.startswith(str(root / 'train')) for p in paths)
    assert not [p for p in paths if p.endswith('n01443537/img_001.png')]
    assert batches[0]['inputs'][0].shape == (3, 224, 224)
