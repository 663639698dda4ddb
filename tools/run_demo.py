#!/usr/bin/env python
"""`make demo`: the whole Feature Distillation pipeline on real images, on a CPU.

    python tools/run_demo.py [--work-dir work_dirs/demo] [--force] [--scale 1.0]

Real, labelled images that ship inside a package (scikit-learn's handwritten digits,
1,797 images, 10 classes; nothing is downloaded) go through the same configs and
tools a user runs at scale, each step a normal tools/*.py call with a config under
configs/demo/:

  data        the digits as 32 px PNGs, ImageNet-style train/val folders (once)
  teacher     tools/train.py teacher_deit_digits.py: a supervised DeiT-style ViT
  fd          tools/train.py fd_deit_digits.py: FD of an FDViT student from it
  ft_teacher  tools/train.py ft_teacher_digits.py: fine-tune the teacher (baseline)
  ft_student  tools/train.py ft_fd_student_digits.py: the same fine-tune, FD student
              (its config reads the FD checkpoint itself, converted in memory)
  attention   tools/analyze_attention.py: attention distance, head diversity, maps
  landscape   tools/loss_landscape.py: 1-D loss landscapes of both fine-tuned models
  summary     summary.md / summary.json (numbers read from the files above)

Re-running skips the steps whose outputs exist (``--force`` re-runs everything);
independent steps run side by side (``--jobs``). ``--scale`` multiplies every
number of epochs; ``--tiny`` is the few-iteration version the tests run.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

CONFIGS = ROOT / 'configs' / 'demo'
# Full demo: (epochs, warm-up epochs) of each training step; attention / landscape sizes.
FULL = dict(
    per_class=None,
    teacher=(30, 3),
    fd=(30, 3),
    finetune=(15, 2),
    attention_images=64,
    landscape_points=11,
    landscape_images=128)
TINY = dict(
    per_class=16,
    teacher=(2, 1),
    fd=(2, 1),
    finetune=(2, 1),
    attention_images=8,
    landscape_points=3,
    landscape_images=16)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split('\n\n', 1)[1])
    parser.add_argument(
        '--work-dir',
        default='work_dirs/demo',
        help='where data, checkpoints, logs, plots and the summary go')
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
    parser.add_argument('--seed', type=int, default=0, help='seed of every training run')
    parser.add_argument('--no-landscape', action='store_true', help='skip the loss landscapes')
    parser.add_argument('--no-progress', action='store_true', help='no progress bars')
    return parser.parse_args(argv)


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


def build_steps(args, profile, work_dir: Path):
    from fd_demo.digits import write_digits
    from fd_demo.steps import Step

    py = sys.executable
    data = work_dir / 'data' / 'digits'
    data_opts = [
        f'{split}_dataloader.dataset.data_root={data}' for split in ('train', 'val', 'test')
    ]
    seed = [f'randomness.seed={args.seed}']
    dirs = dict(
        teacher=work_dir / 'teacher',
        fd=work_dir / 'fd',
        ft_teacher=work_dir / 'ft_teacher',
        ft_student=work_dir / 'ft_fd_student',
        attention=work_dir / 'diagnostics' / 'attention',
        landscape=work_dir / 'diagnostics' / 'landscape')

    t_epochs, t_opts = schedule(profile['teacher'], args.scale)
    f_epochs, f_opts = schedule(profile['fd'], args.scale)
    ft_epochs, ft_opts = schedule(profile['finetune'], args.scale)
    teacher_ckpt = dirs['teacher'] / f'epoch_{t_epochs}.pth'
    fd_ckpt = dirs['fd'] / f'epoch_{f_epochs}.pth'
    ft_ckpts = {k: dirs[k] / f'epoch_{ft_epochs}.pth' for k in ('ft_teacher', 'ft_student')}

    def train(name, config, opts, epochs, deps, title, extra=()):
        return Step(
            name,
            title,
            deps=deps,
            epochs=epochs,
            outputs=[dirs[name] / f'epoch_{epochs}.pth'],
            clean=[dirs[name]],
            settings=dict(config=config_digest(CONFIGS / config)),
            command=[
                py, ROOT / 'tools' / 'train.py', CONFIGS / config, '--work-dir', dirs[name],
                '--cfg-options', *opts, *extra, *seed
            ])

    steps = [
        Step(
            'data',
            'write the digits as train/val image folders',
            func=lambda: write_digits(
                data, size=32, per_class=profile['per_class'], force=args.force),
            outputs=[data / 'digits.json'],
            settings=dict(per_class=profile['per_class'])),
        train('teacher', 'teacher_deit_digits.py', data_opts + t_opts, t_epochs, ['data'],
              'train a supervised DeiT-style ViT teacher'),
        train(
            'fd',
            'fd_deit_digits.py',
            data_opts[:1] + f_opts,
            f_epochs, ['teacher'],
            'distil an FDViT student from the teacher (FD)',
            extra=[
                f'model.teacher.checkpoint={teacher_ckpt}',
                f'model.teacher.config={CONFIGS / "teacher_deit_digits.py"}'
            ]),
        train(
            'ft_teacher',
            'ft_teacher_digits.py',
            data_opts + ft_opts,
            ft_epochs, ['teacher'],
            'fine-tune the teacher (baseline)',
            extra=[f'model.backbone.init_cfg.checkpoint={teacher_ckpt}']),
        train(
            'ft_student',
            'ft_fd_student_digits.py',
            data_opts + ft_opts,
            ft_epochs, ['fd'],
            'fine-tune the FD student (same recipe)',
            extra=[f'model.backbone.init_cfg.checkpoint={fd_ckpt}']),
        Step(
            'attention',
            'attention distance / head diversity of teacher and student',
            deps=['fd'],
            outputs=[dirs['attention'] / 'attention.json'],
            clean=[dirs['attention']],
            command=[
                py, ROOT / 'tools' / 'analyze_attention.py', fd_ckpt, fd_ckpt, '--model', 'teacher',
                'student', '--labels', 'teacher', 'FD student', '--images', data / 'val', '--out',
                dirs['attention'], '--num-images',
                str(profile['attention_images']), '--batch-size', '32', '--device', 'cpu'
            ]),
    ]
    if not args.no_landscape:
        steps.append(
            Step(
                'landscape',
                'loss landscapes of both fine-tuned models',
                deps=['ft_teacher', 'ft_student'],
                outputs=[dirs['landscape'] / 'landscape.json'],
                clean=[dirs['landscape']],
                command=[
                    py, ROOT / 'tools' / 'loss_landscape.py', ft_ckpts['ft_teacher'],
                    ft_ckpts['ft_student'], '--labels', 'teacher', 'FD student', '--dataloader',
                    'val', '--dim', '1', '--points',
                    str(profile['landscape_points']), '--num-images',
                    str(profile['landscape_images']), '--batch-size', '64', '--seed',
                    str(args.seed), '--device', 'cpu', '--out', dirs['landscape']
                ]))
    return steps, dirs, data


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    work_dir = Path(args.work_dir).resolve()
    work_dir.mkdir(parents=True, exist_ok=True)
    profile = dict(TINY if args.tiny else FULL)

    print(f'mmfd demo: Feature Distillation on handwritten digits -> {work_dir}', flush=True)
    print(
        f'  {args.jobs} steps at a time, {args.threads} torch thread(s) each; '
        f'logs in {work_dir / "logs"}',
        flush=True)
    from fd_demo import summary as summary_lib
    from fd_demo.steps import StepFailed, StepRunner, format_seconds

    steps, dirs, data = build_steps(args, profile, work_dir)
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
            skipped=r['skipped'],
            command=r.get('command'),
            threads=r.get('threads'))
        for name, r in results.items()
    }
    settings = dict(
        tiny=args.tiny,
        scale=args.scale,
        jobs=args.jobs,
        threads=args.threads,
        seed=args.seed,
        cpu_count=os.cpu_count(),
        load_average_at_end=[round(x, 2) for x in os.getloadavg()],
        invocation_wall_seconds=round(time.time() - started, 2),
        pipeline_wall_seconds=round(
            max(r['finished'] for r in results.values()) - min(r['started']
                                                               for r in results.values()), 2))
    paths = dict(dirs)
    if args.no_landscape:
        paths.pop('landscape')
    summary = summary_lib.build_summary(paths, step_info, manifest, settings)
    written = summary_lib.write_summary(summary, work_dir)

    print('\n' + summary_lib.format_table(summary))
    for note in summary_lib.notes(summary):
        print(note)
    print('\nplots:')
    for name, path in summary['plots'].items():
        print(f'  {name:<24} {path}')
    print(f'\nsummary: {written["markdown"]}, {written["json"]}')
    print(f'steps run: {len(ran)} of {len(results)}; '
          f'wall time {format_seconds(time.time() - started)}'
          f' (pipeline span {format_seconds(settings["pipeline_wall_seconds"])})')
    if args.tiny:
        print('(--tiny: a few iterations on a few images; the numbers mean nothing)')
    return 0


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
