"""Loss landscapes (Li et al., 2018, filter-normalised) of one or several models.

    python tools/analysis_tools/loss_landscape.py MODEL [MODEL ...] --out DIR \
        (--images DIR | --dataloader val) [--dim 1|2] [--points 21] [--span 1.0]

MODEL: a config (``.py``), a checkpoint with ``meta['cfg']``, or
``CONFIG.py,CHECKPOINT.pth``. The loss is the model's own (``model.loss``: the
FD distillation loss for ``FeatureDistiller``, cross-entropy for classifiers),
averaged over fixed batches, in eval mode. Images come from ``--images`` (no
labels: FD models) or from the config's ``<split>_dataloader`` (``--dataloader``;
needed for classifiers). Only trainable weights move (an FD teacher never does);
1-D parameters and position tables get zero directions (see
``mmfd/diagnostics/landscape.py``). Same ``--seed`` = same directions for models
of the same architecture.

Writes ``landscape_1d.png`` or ``landscape_2d.png`` and ``landscape.json``
(coordinates, losses, sharpness: curvature of a quadratic fit and mean rise at
the radius).
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='+', metavar='MODEL')
    parser.add_argument('--out', required=True)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument('--images', help='folder of images (unlabelled: FD losses)')
    source.add_argument(
        '--dataloader',
        choices=['train', 'val', 'test'],
        help="use the config's <split>_dataloader (labelled batches)")
    parser.add_argument('--dim', type=int, default=1, choices=[1, 2])
    parser.add_argument('--points', type=int, default=21, help='points per axis')
    parser.add_argument('--span', type=float, default=1.0, help='grid over [-span, span]')
    parser.add_argument('--radius', type=float, help='sharpness radius (default: span)')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--img-size', type=int, nargs='+')
    parser.add_argument('--labels', nargs='+')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='config overrides for every MODEL, e.g. '
        'model.teacher.checkpoint=/data/ViT-B-16.pt')
    return parser.parse_args(argv)


def fixed_batches(args, model, cfg):
    from mmfd.diagnostics import analysis
    from mmfd.diagnostics.loading import default_img_size
    if args.images:
        size = (
            tuple(args.img_size) if args.img_size and len(args.img_size) == 2 else
            args.img_size[0] if args.img_size else default_img_size(model))
        raw = analysis.load_image_folder(args.images, args.num_images, size)
        return analysis.batches_from_images(model, raw, args.batch_size, args.device)
    from mmengine.runner import Runner

    from mmfd.utils.errors import ConfigError
    key = f'{args.dataloader}_dataloader'
    if not cfg.get(key):
        raise ConfigError(f'the config has no {key}; use --images.')
    loader_cfg = dict(cfg[key])
    loader_cfg['batch_size'] = args.batch_size
    loader_cfg['num_workers'] = 0
    loader_cfg.pop('persistent_workers', None)
    loader = Runner.build_dataloader(loader_cfg, seed=args.seed)
    _, batches = analysis.images_from_dataloader(model, loader, args.num_images)
    return batches


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    from mmfd.diagnostics import analysis, plots
    from mmfd.diagnostics.loading import load_model, model_label

    n = len(args.models)
    if args.labels and len(args.labels) != n:
        raise SystemExit(f'--labels: give one per MODEL ({n}).')
    labels = args.labels or [model_label(spec, 'model') for spec in args.models]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results = {}
    with tqdm(total=n * args.points**args.dim, unit='pt', desc='landscape') as bar:
        for index, (spec, label) in enumerate(zip(args.models, labels)):
            if label in results:
                label = f'{label} ({index})'
            bar.set_postfix_str(label)
            torch.manual_seed(args.seed)  # parts a checkpoint lacks are built the same way
            model, cfg = load_model(spec, args.device, args.cfg_options)
            batches = fixed_batches(args, model, cfg)
            res = analysis.landscape_report(
                model,
                batches,
                dim=args.dim,
                points=args.points,
                span=args.span,
                seed=args.seed,
                radius=args.radius,
                on_point=bar.update)
            results[label] = dict(source=spec, **res)
            del model

    plot = plots.plot_landscape_1d if args.dim == 1 else plots.plot_landscape_2d
    png = out / f'landscape_{args.dim}d.png'
    plots.save_figure(plot(results), png)
    with open(out / 'landscape.json', 'w') as f:
        json.dump(dict(dim=args.dim, models=results), f, indent=1)
    print(f'wrote {png} and {out}/landscape.json')
    return results


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
