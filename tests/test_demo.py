"""`make demo` in miniature: tools/run_demo.py --tiny end to end (real digits, every
step a tools/*.py subprocess), then checks that every artefact exists, that the
summary's numbers are the ones the tools wrote, and that a re-run skips every step.
"""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPS = ('data', 'teacher', 'fd', 'ft_teacher', 'ft_student', 'attention', 'landscape')


def run_demo(work_dir, *extra, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.time()
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'run_demo.py'), '--tiny', '--no-progress', '--work-dir',
        str(work_dir), *extra
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout, time.time() - started


@pytest.fixture(scope='module')
def demo(tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('demo')
    stdout, seconds = run_demo(work_dir)
    return dict(
        work_dir=work_dir,
        stdout=stdout,
        seconds=seconds,
        summary=json.loads((work_dir / 'summary.json').read_text()))


# ----------------------------------------------------------------- independent readers
def scalars(train_dir):
    files = sorted(Path(train_dir).glob('*/vis_data/scalars.json'))
    assert len(files) == 1, files
    return [json.loads(line) for line in files[0].read_text().splitlines() if line]


def last(records, key):
    return [r[key] for r in records if key in r][-1]


def mean(values):
    return sum(values) / len(values)


# ----------------------------------------------------------------- tests
def test_digits_written_once_as_image_folders(tmp_path):
    from PIL import Image

    sys.path.insert(0, str(ROOT / 'tools'))  # the demo's helpers live next to its tool
    from fd_demo.digits import write_digits
    root = tmp_path / 'digits'
    manifest = write_digits(root, size=32, per_class=5)
    assert not manifest['reused']
    assert (manifest['num_train'], manifest['num_val']) == (40, 10)
    assert manifest['val_per_class'] == [1] * 10  # stratified
    files = sorted(root.glob('*/*/*.png'))
    assert len(files) == 50
    assert {f.parent.name for f in files} == {str(i) for i in range(10)}
    with Image.open(files[0]) as image:
        assert image.size == (32, 32) and image.mode == 'RGB'
    mtime = files[0].stat().st_mtime_ns
    assert write_digits(root, size=32, per_class=5)['reused']
    assert files[0].stat().st_mtime_ns == mtime
    assert not write_digits(root, size=16, per_class=5)['reused']  # other settings: rewrite


def test_demo_writes_every_artefact(demo):
    w = demo['work_dir']
    assert len(list((w / 'data' / 'digits' / 'train').glob('*/*.png'))) == 128
    assert len(list((w / 'data' / 'digits' / 'val').glob('*/*.png'))) == 32
    for path in [
            'teacher/epoch_2.pth', 'fd/epoch_2.pth', 'ft_teacher/epoch_2.pth',
            'ft_fd_student/epoch_2.pth', 'diagnostics/attention/attention.json',
            'diagnostics/landscape/landscape.json', 'summary.md', 'summary.json'
    ]:
        assert (w / path).is_file(), path
    for name, plot in demo['summary']['plots'].items():
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000, name
    assert set(demo['summary']['plots']) == {
        'attention_distance', 'head_diversity', 'attention_maps_teacher', 'attention_maps_student',
        'loss_landscape'
    }
    for step in STEPS[1:]:
        assert (w / 'logs' / f'{step}.log').is_file(), step
    assert set(demo['summary']['steps']) == set(STEPS)
    assert not any(s['skipped'] for s in demo['summary']['steps'].values())


def test_summary_numbers_are_the_tools_numbers(demo):
    w, s = demo['work_dir'], demo['summary']
    ft_teacher = last(scalars(w / 'ft_teacher'), 'accuracy/top1')
    ft_student = last(scalars(w / 'ft_fd_student'), 'accuracy/top1')
    assert s['finetune']['teacher']['top1'] == ft_teacher
    assert s['finetune']['FD student']['top1'] == ft_student
    assert s['finetune']['difference']['student_minus_teacher'] == ft_student - ft_teacher
    assert s['teacher_supervised']['top1'] == last(scalars(w / 'teacher'), 'accuracy/top1')
    assert s['fd']['final_loss'] == last(scalars(w / 'fd'), 'loss')

    attention = json.loads((w / 'diagnostics/attention/attention.json').read_text())['models']
    for label in ('teacher', 'FD student'):
        ours, theirs = s['attention'][label], attention[label]
        assert ours['attention_distance_mean'] == mean(theirs['distance_mean'])
        assert ours['attention_distance_last_layer'] == theirs['distance_mean'][-1]
        assert ours['head_similarity_mean'] == mean(theirs['head_similarity'])
        assert ours['distance_spread_mean'] == mean(theirs['distance_spread'])
        assert len(theirs['distance_mean']) == 4  # one entry per block
    assert attention['teacher']['target'] == 'teacher'
    assert attention['FD student']['target'] == 'student'

    landscape = json.loads((w / 'diagnostics/landscape/landscape.json').read_text())['models']
    for label in ('teacher', 'FD student'):
        assert s['landscape'][label]['curvature'] == landscape[label]['sharpness']['curvature']

    # The printed table and the Markdown show those same numbers.
    markdown = (w / 'summary.md').read_text()
    for value in (ft_teacher, ft_student):
        assert f'{value:.2f} ±' in demo['stdout'] and f'{value:.2f} ±' in markdown
    for label in ('teacher', 'FD student'):
        number = f'{mean(attention[label]["distance_mean"]):.2f}'
        assert number in demo['stdout'] and number in markdown


def test_rerun_skips_completed_steps(demo):
    w = demo['work_dir']
    checkpoints = sorted(w.glob('*/epoch_*.pth'))
    mtimes = {p: p.stat().st_mtime_ns for p in checkpoints}
    stdout, seconds = run_demo(w)
    for number, step in enumerate(STEPS, start=1):
        assert f'[{number}/{len(STEPS)}] {step:<11} skipped: done before' in stdout, stdout
    assert 'steps run: 0 of 7' in stdout
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == mtimes
    again = json.loads((w / 'summary.json').read_text())
    assert again['finetune'] == demo['summary']['finetune']
    assert again['attention'] == demo['summary']['attention']
    assert all(step['skipped'] for step in again['steps'].values())
    assert seconds < demo['seconds']


def test_teacher_finetune_starts_from_every_teacher_weight(demo):
    """The baseline is fair only if the whole teacher backbone (position embedding
    included) is what fine-tuning starts from; only its final norm is dropped."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmfd  # noqa: F401

    ckpt = demo['work_dir'] / 'teacher' / 'epoch_2.pth'
    cfg = Config.fromfile(str(ROOT / 'configs/demo/ft_teacher_digits.py'))
    cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
    init_default_scope('mmpretrain')
    model = MODELS.build(cfg.model)
    model.init_weights()
    teacher = {
        k[len('backbone.'):]: v
        for k, v in torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict'].items()
        if k.startswith('backbone.')
    }
    mine = model.backbone.state_dict()
    assert set(teacher) - set(mine) == {'ln1.weight', 'ln1.bias'}
    for key, value in teacher.items():
        if key in mine:
            assert torch.equal(mine[key], value), key
