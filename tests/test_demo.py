"""`make demo` in miniature: tools/run_demo.py --tiny end to end on real digits,
every step a tools/*.py subprocess; then checks that every artefact exists, that
every number of the summary is the one the tools wrote (or the statistic of those
numbers, recomputed here independently), and that a re-run skips every step.

Tracks contrastive (MoCo v3), multi-teacher and control (the students'
architecture from scratch): together they run both teachers and their
fine-tunes, a single- and a multi-teacher FD student and every code path of the
summary. The supervised track's FD student differs from the contrastive one's
only by its teacher (fd_moco_digits.py is fd_deit_digits.py with another
teacher); leaving it out keeps the suite inside its time budget (each step is a
Python process that spends ~7 s importing torch and mmpretrain).
"""
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'tools'))  # the demo's helpers live next to its tool
TRACKS = 'contrastive,multi,control'
SEEDS = (0, 1)  # --tiny: two fine-tune seeds per model
TEACHERS = ('sup_teacher', 'moco_teacher')
STUDENTS = ('moco_student', 'multi_student')
PRETRAINED = TEACHERS + STUDENTS  # what probe and attention measure
MODELS = PRETRAINED + ('scratch', )  # what is fine-tuned
STEPS = ('data', ) + TEACHERS + ('moco_fd', 'multi_fd') + tuple(
    f'ft_{m}' for m in MODELS) + ('probe', 'attention', 'landscape')
DIRS = dict(
    sup_teacher='supervised/teacher',
    moco_teacher='contrastive/teacher',
    moco_student='contrastive/fd',
    multi_student='multi/fd')


def run_demo(work_dir, *extra, timeout=900):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    started = time.time()
    proc = subprocess.run([
        sys.executable,
        str(ROOT / 'tools' / 'run_demo.py'), '--tiny', '--no-progress', '--tracks', TRACKS,
        '--work-dir',
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


def first(records, key):
    return [r[key] for r in records if key in r][0]


def mean(values):
    return sum(values) / len(values)


def ft_dir(w, model, seed):
    return w / 'finetune' / model / f'seed{seed}'


# ----------------------------------------------------------------- tests
def test_digits_written_once_as_image_folders(tmp_path):
    from fd_demo.digits import write_digits
    from PIL import Image
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


def test_tracks_seeds_and_statistics():
    """The command line picks the tracks; the summary's statistics are the usual ones."""
    import run_demo
    from fd_demo import summary

    assert run_demo.parse_args([]).tracks == ('supervised', 'contrastive')
    assert run_demo.parse_args(['--full']).tracks == run_demo.TRACKS
    assert run_demo.profile_of(run_demo.parse_args(['--full']))['seeds'] == 5
    assert run_demo.parse_args(['--tracks', 'multi,supervised']).tracks == ('supervised', 'multi')
    with pytest.raises(SystemExit):
        run_demo.parse_args(['--tracks', 'supervised,mim'])
    # multi needs both teachers but not the single-teacher students.
    assert run_demo.plan(('multi', ))[2] == ['sup_teacher', 'moco_teacher', 'multi_student']
    assert run_demo.plan(('control', ))[2] == ['scratch']  # needs no teacher

    diffs = [1.0, 2.5, 0.5]
    p = summary.paired(diffs)
    se = statistics.stdev(diffs) / math.sqrt(3)
    assert p['mean'] == pytest.approx(mean(diffs)) and p['se'] == pytest.approx(se)
    assert p['t'] == pytest.approx(mean(diffs) / se)
    assert p['t_critical'] == pytest.approx(4.302653, abs=1e-5)  # t(0.975, 2 dof)
    assert p['clear'] == (abs(p['t']) > p['t_critical'])
    assert summary.paired([2.0, 2.0])['clear'] and summary.paired([2.0, 2.0])['t'] is None
    assert summary.paired([1.0])['se'] is None and not summary.paired([1.0])['clear']


def test_demo_writes_every_artefact(demo):
    w, s = demo['work_dir'], demo['summary']
    assert len(list((w / 'data' / 'digits' / 'train').glob('*/*.png'))) == 128
    assert len(list((w / 'data' / 'digits' / 'val').glob('*/*.png'))) == 32
    paths = [f'{DIRS[m]}/epoch_2.pth' for m in PRETRAINED]
    paths += [f'finetune/{m}/seed{seed}/epoch_2.pth' for m in MODELS for seed in SEEDS]
    paths += [
        'diagnostics/probe/probe.json', 'diagnostics/attention/attention.json',
        'diagnostics/landscape/landscape.json', 'summary.md', 'summary.json'
    ]
    for path in paths:
        assert (w / path).is_file(), path
    maps = {f'attention_maps_{m}' for m in PRETRAINED}
    assert set(s['plots']) == {'attention_distance', 'head_diversity', 'loss_landscape'} | maps
    for name, plot in s['plots'].items():
        assert Path(plot).is_file() and Path(plot).stat().st_size > 1000, name
    for step in STEPS[1:]:
        assert (w / 'logs' / f'{step}.log').is_file(), step
    assert set(s['steps']) == set(STEPS)
    assert not any(step['skipped'] for step in s['steps'].values())
    assert s['settings']['tracks'] == TRACKS.split(',') and s['settings']['seeds'] == list(SEEDS)
    assert set(s['verdicts']) == set(TRACKS.split(','))
    for track, verdict in s['verdicts'].items():
        assert verdict['lines'] and f'[{track}]' in demo['stdout']


def test_summary_numbers_are_the_tools_numbers(demo):
    w, s = demo['work_dir'], demo['summary']
    md = (w / 'summary.md').read_text()
    # Fine-tunes: every seed's last val top-1, then mean / std over seeds.
    top1 = {
        m: [last(scalars(ft_dir(w, m, seed)), 'accuracy/top1') for seed in SEEDS]
        for m in MODELS
    }
    for m in MODELS:
        entry = s['finetune'][m]
        assert [entry['runs'][str(seed)]['top1'] for seed in SEEDS] == top1[m]
        assert entry['mean'] == pytest.approx(mean(top1[m]))
        assert entry['std'] == pytest.approx(statistics.stdev(top1[m]))
        cell = f'{mean(top1[m]):.2f} ± {statistics.stdev(top1[m]):.2f} (n=2)'
        assert cell in demo['stdout'] and cell in md, cell
    # Paired differences student - teacher, same seed.
    pairs = dict(
        contrastive=[('moco_student', 'moco_teacher')],
        multi=[('multi_student', 'sup_teacher'), ('multi_student', 'moco_teacher')],
        control=[(m, 'scratch') for m in STUDENTS])
    for track, track_pairs in pairs.items():
        assert [(c['student'], c['teacher']) for c in s['comparisons'][track]] == track_pairs
        for comp, (student, teacher) in zip(s['comparisons'][track], track_pairs):
            diffs = [a - b for a, b in zip(top1[student], top1[teacher])]
            assert comp['finetune']['diffs'] == diffs
            assert comp['finetune']['mean'] == pytest.approx(mean(diffs))
            assert comp['finetune']['se'] == pytest.approx(statistics.stdev(diffs) / math.sqrt(2))

    # Teachers and FD runs: their own logs.
    assert s['teachers']['sup_teacher']['top1'] == last(
        scalars(w / DIRS['sup_teacher']), 'accuracy/top1')
    moco = scalars(w / DIRS['moco_teacher'])
    assert s['teachers']['moco_teacher']['loss'] == dict(
        first=first(moco, 'loss'), last=last(moco, 'loss'), iteration=last(moco, 'step'))
    assert not any('accuracy/top1' in r for r in moco)  # no labels, no val loop
    for m in STUDENTS:
        assert s['fd'][m]['loss']['last'] == last(scalars(w / DIRS[m]), 'loss')
    multi = scalars(w / DIRS['multi_student'])
    for name in ('loss_sup', 'loss_moco'):  # one whitened loss per teacher
        assert s['fd']['multi_student'][name]['last'] == last(multi, name)

    # Linear probes.
    probe = json.loads((w / 'diagnostics/probe/probe.json').read_text())
    assert set(probe['models']) == set(PRETRAINED) | {'random_init'}
    for key, entry in probe['models'].items():
        assert s['probe'][key]['top1'] == entry['top1']
        assert s['probe'][key]['knn_top1'] == entry['knn_top1']
        assert 0 <= entry['top1'] <= 100 and entry['C'] in probe['C_grid']
        assert f'{entry["top1"]:.2f}' in demo['stdout']
        assert f'{entry["knn_top1"]:.2f}' in demo['stdout']
    assert s['probe']['pixels']['top1'] == probe['pixels']['top1']
    learned = s['teacher_learned']['moco_teacher']
    assert learned['probe_top1'] == probe['models']['moco_teacher']['top1']
    assert learned['knn_top1'] == probe['models']['moco_teacher']['knn_top1']
    assert learned['knn_margin'] == pytest.approx(probe['models']['moco_teacher']['knn_top1'] -
                                                  probe['models']['random_init']['knn_top1'])
    if not learned['learned']:  # the track says so instead of comparing
        assert 'did NOT learn' in demo['stdout']
        assert not s['comparisons']['contrastive'][0]['reported']

    # Attention and landscape.
    attention = json.loads((w / 'diagnostics/attention/attention.json').read_text())['models']
    assert set(attention) == set(PRETRAINED)
    for m in PRETRAINED:
        ours, theirs = s['attention'][m], attention[m]
        assert ours['attention_distance_mean'] == mean(theirs['distance_mean'])
        assert ours['head_similarity_mean'] == mean(theirs['head_similarity'])
        assert ours['distance_spread_mean'] == mean(theirs['distance_spread'])
        assert len(theirs['distance_mean']) == 4  # one entry per block
        assert f'{mean(theirs["distance_mean"]):.2f}' in demo['stdout']
    landscape = json.loads((w / 'diagnostics/landscape/landscape.json').read_text())['models']
    for m in MODELS:
        curvatures = [landscape[f'{m}/s{seed}']['sharpness']['curvature'] for seed in SEEDS]
        assert s['landscape'][m]['values'] == curvatures
        assert s['landscape'][m]['mean'] == pytest.approx(mean(curvatures))


def test_rerun_skips_completed_steps(demo):
    w = demo['work_dir']
    checkpoints = sorted(w.glob('**/epoch_*.pth'))
    assert len(checkpoints) == len(PRETRAINED) + len(MODELS) * len(SEEDS)
    mtimes = {p: p.stat().st_mtime_ns for p in checkpoints}
    stdout, seconds = run_demo(w)
    for step in STEPS:
        assert f'/{len(STEPS)}] {step:<22} skipped: done before' in stdout, stdout
    assert f'steps run: 0 of {len(STEPS)}' in stdout
    assert {p: p.stat().st_mtime_ns for p in checkpoints} == mtimes
    again = json.loads((w / 'summary.json').read_text())
    for key in ('finetune', 'comparisons', 'probe', 'attention', 'landscape', 'verdicts'):
        assert again[key] == demo['summary'][key], key
    assert all(step['skipped'] for step in again['steps'].values())
    assert seconds < demo['seconds']


def test_teachers_are_what_fd_and_finetuning_start_from(demo):
    """Fair baselines: each teacher's fine-tune starts from its whole backbone
    (position embedding included; only its final norm is dropped), and the MoCo
    teacher of FD and of the fine-tune is MoCo's online backbone, not its momentum
    encoder, projector or predictor. The MoCo run never saw a label."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS as REGISTRY

    from mmfd.diagnostics.loading import load_model

    w = demo['work_dir']
    init_default_scope('mmpretrain')
    for key in TEACHERS:
        ckpt = w / DIRS[key] / 'epoch_2.pth'
        state = torch.load(ckpt, map_location='cpu', weights_only=True)['state_dict']
        teacher = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
        cfg = Config.fromfile(str(ROOT / 'configs/demo/ft_teacher_digits.py'))
        cfg.model.backbone.init_cfg.checkpoint = str(ckpt)
        model = REGISTRY.build(cfg.model)
        model.init_weights()
        mine = model.backbone.state_dict()
        assert set(teacher) - set(mine) == {'ln1.weight', 'ln1.bias'}, key
        for name, value in teacher.items():
            if name in mine:
                assert torch.equal(mine[name], value), (key, name)

    moco = torch.load(
        w / DIRS['moco_teacher'] / 'epoch_2.pth', map_location='cpu',
        weights_only=True)['state_dict']
    fd, _ = load_model(str(w / DIRS['moco_student'] / 'epoch_2.pth'))
    taught = fd.teacher.backbone.state_dict()
    online = {k[len('backbone.'):]: v for k, v in moco.items() if k.startswith('backbone.')}
    assert set(taught) == set(online)
    assert all(torch.equal(taught[k], online[k]) for k in online)
    momentum = {k.split('module.0.', 1)[1]: v for k, v in moco.items() if '.module.0.' in k}
    assert any(not torch.equal(momentum[k], online[k]) for k in online if k in momentum)

    cfg = Config.fromfile(str(ROOT / 'configs/demo/moco_vit_digits.py'))
    assert cfg.train_dataloader.dataset.with_label is False
    for config in (ROOT / 'configs/demo').glob('*.py'):  # no mirrored digits anywhere
        assert 'RandomFlip' not in config.read_text(), config
