#!/usr/bin/env python
"""`make demo`: Feature Distillation on real images, on a CPU, with seeds.

    python tools/run_demo.py [--tracks supervised,contrastive] [--seeds 3]
                             [--work-dir work_dirs/demo] [--full] [--force]

Real, labelled images that ship inside a package (scikit-learn's handwritten digits,
1,797 images, 10 classes; nothing is downloaded) go through the same configs and
tools a user runs at scale, each step a normal tools/*.py call with a config under
configs/demo/ (the fine-tunes of one model run tools/train.py once per seed, in one
process: tools/fd_demo/finetune.py). Three tracks, each a teacher -> FD ->
fine-tune comparison:

  supervised   a DeiT-style ViT trained on the labels (teacher_deit_digits.py)
               -> FD student (fd_deit_digits.py)
  contrastive  a ViT trained WITHOUT labels by mmpretrain's MoCo v3
               (moco_vit_digits.py) -> FD student (fd_moco_digits.py): the paper's case
  multi        both teachers -> one FD student (fd_multi_digits.py)
  control      the students' architecture fine-tuned from its initialisation
               (ft_scratch_digits.py): what FD adds beyond the architecture

Every teacher and every FD student is fine-tuned with ONE recipe
(ft_digits_recipe.py) under --seeds seeds; the summary gives mean +/- std per
model and the paired difference student - teacher (same seed, same data order)
with its standard error. Then, on the trained networks:

  probe        tools/fd_demo/probe.py: linear probe and 20-NN vote on frozen
               features (teachers, FD students, an untrained ViT, raw pixels)
  attention    tools/analysis_tools/analyze_attention.py: attention distance, head diversity, maps
  landscape    tools/analysis_tools/loss_landscape.py: 1-D loss landscape of every fine-tune
  summary      summary.md / summary.json: numbers read from the files above, and
               per track in plain words whether the paper's direction shows

Default: the supervised and contrastive tracks, 3 seeds (about 10 minutes on 2
idle cores). --full: all four tracks, 5 seeds (about 15 minutes). Re-running
skips the steps whose outputs exist (--force re-runs everything); independent
steps run side by side (--jobs). --scale multiplies every number of epochs;
--tiny is the few-iteration version the tests run.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / 'tools'))  # the demo's helpers: tools/fd_demo/

CONFIGS = ROOT / 'configs' / 'demo'
TRACKS = ('supervised', 'contrastive', 'multi', 'control')
DEFAULT_TRACKS = ('supervised', 'contrastive')
# (epochs, warm-up epochs) of each training step; seeds of the fine-tunes;
# attention / landscape sizes. Chosen for the time budget (and, for MoCo, for a
# teacher that learns: see the README) before any FD student was fine-tuned.
DEFAULT = dict(
    per_class=None,
    sup_teacher=(30, 3),
    moco_teacher=(20, 2),
    fd=(30, 3),
    finetune=(10, 2),
    seeds=3,
    attention_images=64,
    landscape_points=11,
    landscape_images=128)
FULL = dict(DEFAULT, seeds=5)
TINY = dict(
    per_class=16,
    sup_teacher=(2, 1),
    moco_teacher=(2, 1),
    fd=(2, 1),
    finetune=(2, 1),
    seeds=2,
    attention_images=8,
    landscape_points=3,
    landscape_images=16)

# The networks the demo fine-tunes: key -> (kind, track that trains it).
TEACHERS = dict(
    sup_teacher=dict(
        config='teacher_deit_digits.py',
        dir='supervised/teacher',
        title='train a supervised DeiT-style ViT teacher (labels)'),
    moco_teacher=dict(
        config='moco_vit_digits.py',
        dir='contrastive/teacher',
        title='train a MoCo v3 ViT teacher (no labels)'))
STUDENTS = dict(
    sup_student=dict(
        track='supervised',
        config='fd_deit_digits.py',
        dir='supervised/fd',
        teachers=dict(teacher='sup_teacher'),
        title='FD of an FDViT student from the supervised teacher'),
    moco_student=dict(
        track='contrastive',
        config='fd_moco_digits.py',
        dir='contrastive/fd',
        teachers=dict(teacher='moco_teacher'),
        title='FD of an FDViT student from the MoCo v3 teacher'),
    multi_student=dict(
        track='multi',
        config='fd_multi_digits.py',
        dir='multi/fd',
        teachers={
            'teachers.sup': 'sup_teacher',
            'teachers.moco': 'moco_teacher'
        },
        title='FD of one FDViT student from both teachers'))
LABEL = dict(
    sup_teacher='supervised teacher',
    moco_teacher='MoCo v3 teacher',
    sup_student='FD student of the supervised teacher',
    moco_student='FD student of the MoCo v3 teacher',
    multi_student='FD student of both teachers',
    scratch='FDViT from its initialisation (control)')
TEACHERS_OF_TRACK = dict(
    supervised=('sup_teacher', ),
    contrastive=('moco_teacher', ),
    multi=('sup_teacher', 'moco_teacher'),
    control=())


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='where data, checkpoints, logs, plots and the summary go')
    parser.add_argument(
        '--tracks',
        help='comma-separated, from ' + ', '.join(TRACKS) +
        f' (default {",".join(DEFAULT_TRACKS)}; --full: all)')
    parser.add_argument(
        '--seeds', type=int, help='fine-tune seeds per model (default 3; --full 5; --tiny 2)')
    parser.add_argument(
        '--full', action='store_true', help='all four tracks and 5 seeds (about 15 minutes)')
    parser.add_argument('--force', action='store_true', help='re-run every step')
    parser.add_argument(
        '--scale',
        type=float,
        default=1.0,
        help='multiply every number of epochs (min. 2 per step)')
    parser.add_argument(
        '--tiny',
        action='store_true',
        help='a few iterations on 160 images (tests; numbers meaningless)')
    parser.add_argument('--jobs', type=int, default=2, help='steps run side by side (default 2)')
    parser.add_argument(
        '--threads',
        type=int,
        default=1,
        help='torch threads per step (default 1: with --jobs 2 that uses '
        'two cores and copes with a busy machine)')
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the teachers and FD runs; fine-tune k uses seed + k')
    parser.add_argument('--no-landscape', action='store_true', help='skip the loss landscapes')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    args = parser.parse_args(argv)
    if args.tracks is None:
        args.tracks = TRACKS if args.full else DEFAULT_TRACKS
    else:
        args.tracks = tuple(t.strip() for t in args.tracks.split(',') if t.strip())
        unknown = sorted(set(args.tracks) - set(TRACKS))
        if unknown or not args.tracks:
            parser.error(f'--tracks: unknown {unknown}; choose from {", ".join(TRACKS)}')
        args.tracks = tuple(t for t in TRACKS if t in args.tracks)  # canonical order
    return args


def profile_of(args) -> dict:
    profile = dict(TINY if args.tiny else FULL if args.full else DEFAULT)
    if args.seeds is not None:
        if args.seeds < 1:
            raise SystemExit('--seeds must be >= 1')
        profile['seeds'] = args.seeds
    return profile


def schedule(epochs_warmup, scale):
    """(epochs, warm-up) after --scale; --cfg-options that apply them to a config
    whose param_scheduler is [LinearLR warm-up, CosineAnnealingLR]."""
    epochs, warmup = epochs_warmup
    epochs = max(2, int(round(epochs * scale)))
    warmup = min(max(1, int(round(warmup * scale))), epochs - 1)
    options = [
        f'train_cfg.max_epochs={epochs}', f'param_scheduler.0.end={warmup}',
        f'param_scheduler.1.begin={warmup}', f'param_scheduler.1.end={epochs}',
        f'param_scheduler.1.T_max={epochs - warmup}'
    ]
    return epochs, options


def config_digest(path) -> str:
    """Hash of the fully resolved config (its _base_ files included): editing a demo
    config re-runs the steps that use it."""
    import hashlib

    from mmengine.config import Config
    text = json.dumps(Config.fromfile(str(path)).to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def image_size() -> int:
    """The side of the written digits: the configs' input size, so that no step
    resizes them again."""
    from mmengine.config import Config
    return int(Config.fromfile(str(CONFIGS / 'digits_common.py')).img_size)


def plan(tracks):
    """(teachers, students, fine-tuned models) that the tracks need, in run order."""
    teachers = [t for t in TEACHERS if any(t in TEACHERS_OF_TRACK[k] for k in tracks)]
    students = [s for s, spec in STUDENTS.items() if spec['track'] in tracks]
    control = ['scratch'] if 'control' in tracks else []
    return teachers, students, teachers + students + control


def comparisons(tracks):
    """track -> [(student, teacher)] pairs of fine-tuned models compared."""
    out = {}
    if 'supervised' in tracks:
        out['supervised'] = [('sup_student', 'sup_teacher')]
    if 'contrastive' in tracks:
        out['contrastive'] = [('moco_student', 'moco_teacher')]
    if 'multi' in tracks:
        out['multi'] = [('multi_student', 'sup_teacher'), ('multi_student', 'moco_teacher')]
    if 'control' in tracks:
        # Every FD student run against the same architecture trained from scratch.
        _, students, _ = plan(tracks)
        out['control'] = [(student, 'scratch') for student in students]
    return out


def build_steps(args, profile, work_dir: Path):
    from fd_demo.digits import write_digits
    from fd_demo.steps import Step

    py = sys.executable
    data = work_dir / 'data' / 'digits'
    data_opts = [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ]
    teachers, students, models = plan(args.tracks)
    seeds = [args.seed + k for k in range(profile['seeds'])]
    diagnostics = work_dir / 'diagnostics'
    dirs = dict(probe=diagnostics / 'probe', attention=diagnostics / 'attention')
    if not args.no_landscape:
        dirs['landscape'] = diagnostics / 'landscape'
    ckpt, finetunes = {}, {}

    def train(name, config, opts, epochs, deps, title, out_dir, seed):
        return Step(
            name,
            title,
            deps=deps,
            epochs=epochs,
            outputs=[out_dir / f'epoch_{epochs}.pth'],
            clean=[out_dir],
            settings=dict(config=config_digest(CONFIGS / config)),
            command=[
                py, ROOT / 'tools' / 'train.py', CONFIGS / config, '--work-dir', out_dir,
                '--cfg-options', *opts, f'randomness.seed={seed}'
            ])

    size = image_size()
    steps = [
        Step(
            'data',
            'write the digits as train/val image folders',
            func=lambda: write_digits(
                data, size=size, per_class=profile['per_class'], force=args.force),
            outputs=[data / 'digits.json'],
            settings=dict(per_class=profile['per_class'], size=size))
    ]
    # Longest chains first (the runner starts the first runnable step in list
    # order): MoCo -> its FD -> the student's fine-tunes.
    for key in sorted(teachers, key=lambda k: k != 'moco_teacher'):
        spec = TEACHERS[key]
        epochs, opts = schedule(profile[key], args.scale)
        out_dir = work_dir / spec['dir']
        dirs[key] = out_dir
        ckpt[key] = out_dir / f'epoch_{epochs}.pth'
        opts = (data_opts if key == 'sup_teacher' else data_opts[:1]) + opts
        steps.append(
            train(key, spec['config'], opts, epochs, ['data'], spec['title'], out_dir, args.seed))
    f_epochs, f_opts = schedule(profile['fd'], args.scale)
    for key in students:
        spec = STUDENTS[key]
        out_dir = work_dir / spec['dir']
        dirs[key] = out_dir
        ckpt[key] = out_dir / f'epoch_{f_epochs}.pth'
        teacher_opts = []
        for option, teacher in spec['teachers'].items():
            teacher_opts += [
                f'model.{option}.checkpoint={ckpt[teacher]}',
                f'model.{option}.config={CONFIGS / TEACHERS[teacher]["config"]}'
            ]
        steps.append(
            train(
                key.replace('_student', '_fd'),
                spec['config'], data_opts[:1] + f_opts + teacher_opts, f_epochs,
                list(spec['teachers'].values()), spec['title'], out_dir, args.seed))
    ft_epochs, ft_opts = schedule(profile['finetune'], args.scale)
    ft_steps = []
    for key in models:
        if key == 'scratch':  # the control: nothing to start from
            deps, config, init = ['data'], CONFIGS / 'ft_scratch_digits.py', []
        else:
            deps = [key] if key in TEACHERS else [key.replace('_student', '_fd')]
            config = CONFIGS / ('ft_teacher_digits.py'
                                if key in TEACHERS else 'ft_fd_student_digits.py')
            init = [f'model.backbone.init_cfg.checkpoint={ckpt[key]}']
        out_dir = work_dir / 'finetune' / key
        finetunes[key] = {seed: out_dir / f'seed{seed}' for seed in seeds}
        # All seeds of a model in one process (tools/fd_demo/finetune.py runs
        # tools/train.py once per seed): a fresh process costs as much as a
        # short fine-tune on a CPU.
        ft_steps.append(
            Step(
                f'ft_{key}',
                f'fine-tune the {LABEL[key]} ({len(seeds)} seed{"s" * (len(seeds) > 1)})',
                deps=deps,
                epochs=ft_epochs,
                runs=len(seeds),
                outputs=[d / f'epoch_{ft_epochs}.pth' for d in finetunes[key].values()],
                clean=[out_dir],
                settings=dict(config=config_digest(config)),
                command=[
                    py, ROOT / 'tools' / 'fd_demo' / 'finetune.py', config, '--work-dir', out_dir,
                    '--seeds', *[str(s) for s in seeds], '--cfg-options', *data_opts, *ft_opts,
                    *init
                ]))
    # Students first: a student waits for its FD run, the teachers' and the
    # control's fine-tunes can fill the gaps.
    steps += sorted(ft_steps, key=lambda step: not step.name.endswith('_student'))

    fd_steps = [k.replace('_student', '_fd') for k in students]
    pretrained = teachers + students  # the networks before any fine-tune
    probe_models = [(ckpt[k], 'student', k) for k in pretrained]
    probe_models.append((CONFIGS / 'moco_vit_digits.py', 'student', 'random_init'))
    steps.append(
        Step(
            'probe',
            'linear probes of frozen features',
            deps=teachers + fd_steps,
            outputs=[dirs['probe'] / 'probe.json'],
            clean=[dirs['probe']],
            command=[
                py, ROOT / 'tools' / 'fd_demo' / 'probe.py', *[m[0] for m in probe_models],
                '--model', *[m[1] for m in probe_models], '--labels', *[m[2] for m in probe_models],
                '--data', data, '--out', dirs['probe'], '--pixels', '--seed',
                str(args.seed)
            ]))
    steps.append(
        Step(
            'attention',
            'attention distance / head diversity of teachers and students',
            deps=teachers + fd_steps,
            outputs=[dirs['attention'] / 'attention.json'],
            clean=[dirs['attention']],
            command=[
                py, ROOT / 'tools' / 'analysis_tools' / 'analyze_attention.py',
                *[ckpt[k] for k in pretrained], '--model', 'student', '--labels', *pretrained,
                '--images', data / 'val', '--out', dirs['attention'], '--num-images',
                str(profile['attention_images']), '--batch-size', '64', '--device', 'cpu'
            ]))
    if not args.no_landscape:
        runs = [(key, seed) for key in models for seed in seeds]
        steps.append(
            Step(
                'landscape',
                'loss landscapes of every fine-tuned model',
                deps=[f'ft_{key}' for key in models],
                outputs=[dirs['landscape'] / 'landscape.json'],
                clean=[dirs['landscape']],
                command=[
                    py, ROOT / 'tools' / 'analysis_tools' / 'loss_landscape.py',
                    *[finetunes[key][seed] / f'epoch_{ft_epochs}.pth'
                      for key, seed in runs], '--labels', *[f'{key}/s{seed}' for key, seed in runs],
                    '--dataloader', 'val', '--dim', '1', '--points',
                    str(profile['landscape_points']), '--num-images',
                    str(profile['landscape_images']), '--batch-size', '128', '--seed',
                    str(args.seed), '--device', 'cpu', '--out', dirs['landscape']
                ]))
    layout = dict(dirs=dirs, finetunes=finetunes, seeds=seeds, models=models)
    return steps, layout, data


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    profile = profile_of(args)

    print(
        f'mmfd demo: Feature Distillation on handwritten digits -> {work_dir}\n'
        f'  tracks: {", ".join(args.tracks)}; {profile["seeds"]} fine-tune seed(s) per model; '
        f'{args.jobs} steps at a time, {args.threads} torch thread(s) each; '
        f'logs in {work_dir / "logs"}',
        flush=True)
    from fd_demo import summary as summary_lib
    from fd_demo.steps import StepFailed, StepRunner, format_seconds

    steps, layout, data = build_steps(args, profile, work_dir)
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] +
                                        ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    runner = StepRunner(
        work_dir,
        ROOT,
        env=env,
        jobs=args.jobs,
        force=args.force,
        progress=False if args.no_progress else None)
    try:
        results = runner.run(steps, threads=args.threads)
    except StepFailed as err:
        print(f'\nmmfd demo FAILED: {err}', file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print('\ninterrupted: finished steps are kept; run again to continue', file=sys.stderr)
        return 130

    manifest = json.loads((data / 'digits.json').read_text())
    ran = [r for r in results.values() if not r['skipped']]
    step_info = {
        name:
        dict(
            seconds=round(r['seconds'], 2),
            cpu_seconds=round(r['cpu_seconds'], 2) if r.get('cpu_seconds') is not None else None,
            skipped=r['skipped'],
            command=r.get('command'),
            threads=r.get('threads'))
        for name, r in results.items()
    }
    settings = dict(
        tiny=args.tiny,
        full=args.full,
        tracks=list(args.tracks),
        seeds=layout['seeds'],
        scale=args.scale,
        jobs=args.jobs,
        threads=args.threads,
        seed=args.seed,
        cpu_count=os.cpu_count(),
        load_average_at_end=[round(x, 2) for x in os.getloadavg()],
        invocation_wall_seconds=round(time.time() - started, 2),
        # CPU time of every step (this run's or the earlier run's that it skipped):
        # on a shared machine, what the pipeline costs whatever the neighbours do.
        pipeline_cpu_seconds=round(sum(r.get('cpu_seconds') or 0 for r in results.values()), 1),
        pipeline_wall_seconds=round(
            max(r['finished'] for r in results.values()) - min(r['started']
                                                               for r in results.values()), 2))
    summary = summary_lib.build_summary(layout, comparisons(args.tracks), step_info, manifest,
                                        settings)
    written = summary_lib.write_summary(summary, work_dir)

    print('\n' + summary_lib.format_table(summary))
    print()
    for line in summary_lib.notes(summary):
        print(line)
    print('\nplots:')
    for name, path in summary['plots'].items():
        print(f'  {name:<24} {path}')
    print(f'\nsummary: {written["markdown"]}, {written["json"]}')
    print(f'steps run: {len(ran)} of {len(results)}; '
          f'wall time {format_seconds(time.time() - started)}'
          f' (pipeline span {format_seconds(settings["pipeline_wall_seconds"])}, '
          f'{format_seconds(settings["pipeline_cpu_seconds"])} of CPU time in the steps; '
          f'load average at the end {settings["load_average_at_end"][0]:.1f} '
          f'on {settings["cpu_count"]} CPUs)')
    if args.tiny:
        print('(--tiny: a few iterations on a few images; the numbers mean nothing)')
    return 0


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
