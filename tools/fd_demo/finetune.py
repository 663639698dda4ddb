#!/usr/bin/env python
"""One training config under several seeds, one after the other, in one process.

    python tools/fd_demo/finetune.py CONFIG --work-dir DIR --seeds 0 1 2 \
        [--cfg-options KEY=VALUE ...]

is, seed by seed, exactly

    python tools/train.py CONFIG --work-dir DIR/seed<S> \
        --cfg-options KEY=VALUE ... randomness.seed=<S>

(tools/train.py's own ``main``), run in one Python process: on a small CPU job the
imports and setup of a fresh process cost as much as a short fine-tune, and the
demo fine-tunes every model under several seeds. Each run gets its own mmengine
experiment name, so loggers and visualizers of consecutive runs never share
files.
"""
import argparse
import gc
import importlib.util
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--work-dir', required=True, help='seed S trains in DIR/seed<S>')
    parser.add_argument('--seeds', type=int, nargs='+', required=True)
    parser.add_argument('--cfg-options', nargs='+', default=[], help='as tools/train.py')
    return parser.parse_args(argv)


def train_main():
    """tools/train.py's ``main`` (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location('mmfd_tools_train', ROOT / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def main(argv=None):
    args = parse_args(argv)
    train = train_main()
    stem = Path(args.config).stem
    for seed in args.seeds:
        started = time.time()
        work_dir = Path(args.work_dir) / f'seed{seed}'
        options = list(args.cfg_options) + [
            f'randomness.seed={seed}',
            f'experiment_name={stem}_seed{seed}_{time.strftime("%Y%m%d_%H%M%S")}'
        ]
        print(
            f'=== seed {seed}: tools/train.py {args.config} --work-dir {work_dir} '
            f'--cfg-options {" ".join(options)}',
            flush=True)
        train([args.config, '--work-dir', str(work_dir), '--cfg-options', *options])
        gc.collect()
        print(f'=== seed {seed} done in {time.time() - started:.1f}s', flush=True)
    return 0


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
