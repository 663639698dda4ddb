"""OpenMMLab-style config names: every short name of 0.1 is a deprecated alias of
exactly one canonical config (same experiment, same work dir), and every checkpoint
path a fine-tune / mmdet / mmseg config reads is the work dir of a canonical FD run."""
import re
from pathlib import Path

import pytest
from config_names import FD_CONFIGS, FINETUNE_CONFIGS, fd_config, finetune_config
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
ALIASES = [(f'configs/fd/{short}.py', fd_config(short), canonical)
           for short, canonical in FD_CONFIGS.items()]
ALIASES += [(f'configs/finetune/{short}.py', finetune_config(short), canonical)
            for short, canonical in FINETUNE_CONFIGS.items()]


def plain(cfg):
    """The config as a dict, without the work dir (the one key an alias sets)."""
    d = cfg.to_dict()
    d.pop('work_dir', None)
    return d


@pytest.mark.parametrize('alias,canonical,stem', ALIASES, ids=[a[0] for a in ALIASES])
def test_alias_is_the_canonical_config(alias, canonical, stem):
    old, new = Config.fromfile(REPO / alias), Config.fromfile(REPO / canonical)
    assert plain(old) == plain(new)
    assert 'work_dir' not in new  # derived configs keep mmengine's per-name default
    # the alias writes where the canonical name does, so downstream paths hold
    assert old.work_dir == f'work_dirs/{stem}'
    assert 'Deprecated alias' in (REPO / alias).read_text()


def test_every_config_is_canonical_or_a_listed_alias():
    fd = {p.stem for p in (REPO / 'configs/fd').glob('*.py')}
    canonical = {s for s in fd if s.startswith(('fd_', 'fd-multi_'))}
    assert fd - canonical == set(FD_CONFIGS)
    assert canonical == set(FD_CONFIGS.values())
    finetune = {p.stem for p in (REPO / 'configs/finetune').glob('*.py')}
    assert finetune == set(FINETUNE_CONFIGS)
    benchmarks = {p.stem for p in (REPO / 'configs/fd/benchmarks').glob('*.py')}
    assert benchmarks == set(FINETUNE_CONFIGS.values())
    # the convention: algorithm_teacher_student_NxbB-extras-epochs_dataset
    for stem in canonical:
        assert re.fullmatch(r'fd(-multi)?_[a-z0-9-]+_[a-z0-9-]+_\d+xb\d+-[a-z0-9-]+-\d+e_in1k',
                            stem), stem


def strings(node):
    if isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from strings(value)
    elif isinstance(node, str):
        yield node


DOWNSTREAM = sorted((REPO / 'configs/fd/benchmarks').glob('*.py')) + sorted(
    (REPO / 'configs/mmdet').glob('*.py')) + sorted((REPO / 'configs/mmseg').glob('*.py'))


@pytest.mark.parametrize('path', DOWNSTREAM, ids=lambda p: p.name)
def test_downstream_checkpoints_are_canonical_fd_work_dirs(path):
    """The FD checkpoint a fine-tune / mmdet / mmseg config reads is
    `work_dirs/<canonical FD config>/epoch_300.pth`, where the headline command's run
    (through the alias or the canonical name) writes it."""
    cfg = Config.fromfile(path, import_custom_modules=False)
    runs = [re.fullmatch(r'work_dirs/([^/]+)/epoch_300\.pth', s) for s in strings(cfg.to_dict())]
    runs = [m.group(1) for m in runs if m]
    assert runs, path
    for run in runs:
        assert run in FD_CONFIGS.values() and (REPO / 'configs/fd' / f'{run}.py').exists(), run
