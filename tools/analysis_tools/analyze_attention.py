"""Attention diagnostics of the FD paper for one or several models.

    python tools/analysis_tools/analyze_attention.py MODEL [MODEL ...] --images DIR --out DIR \
        [--num-images 32] [--model student|teacher] [--labels A B ...]

MODEL is a config (``.py``), a checkpoint whose ``meta['cfg']`` holds its config
(what mmengine's Runner saves), or ``CONFIG.py,CHECKPOINT.pth``. ``--model``
picks the FD student (default) or teacher; for other models the backbone is
measured. A teacher and its student side by side:

    python tools/analysis_tools/analyze_attention.py fd.pth fd.pth --model teacher student ...

(``--model`` takes one value, used for every MODEL, or one per MODEL.)

Writes to ``--out``:
  attention_distance.png   per-head average attention distance vs depth, one colour per model
  head_diversity.png       mean pairwise cosine similarity between heads per layer
  attention_maps_<i>.png   averaged attention maps (layers x heads) of model i
  attention.json           every number (per layer: per-head distances, spread,
                           similarity/KL matrices, grid, stride, prefix tokens)
  attention_maps_<i>.npz   the averaged maps (with --save-maps)
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'models',
        nargs='+',
        metavar='MODEL',
        help='CONFIG.py, CHECKPOINT.pth (with meta cfg) or '
        'CONFIG.py,CHECKPOINT.pth')
    parser.add_argument('--images', required=True, help='folder of images (searched recursively)')
    parser.add_argument('--out', required=True, help='output folder')
    parser.add_argument('--num-images', type=int, default=16)
    parser.add_argument(
        '--model',
        nargs='+',
        default=['student'],
        help="student, teacher or teacher:NAME (one of a multi-teacher model's teachers): "
        'one value, or one per MODEL')
    parser.add_argument('--labels', nargs='+', help='names in the plots (default: file/target)')
    parser.add_argument(
        '--img-size', type=int, nargs='+', help='input size (default: the model\'s own, else 224)')
    parser.add_argument('--batch-size', type=int, default=8)
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        default={},
        help='config overrides for every MODEL, e.g. '
        'model.teacher.checkpoint=/data/ViT-B-16.pt')
    parser.add_argument(
        '--no-renormalize',
        action='store_true',
        help='do not renormalise rows after dropping the CLS column')
    parser.add_argument('--no-kl', action='store_true', help='skip the head KL divergence')
    parser.add_argument('--max-layers', type=int, default=12, help='rows of the map grid')
    parser.add_argument('--max-heads', type=int, default=16, help='columns of the map grid')
    parser.add_argument('--save-maps', action='store_true', help='also write the maps as .npz')
    parser.add_argument('--strategy', default='auto', choices=['auto', 'explicit'])
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='torch seed before building each model (randomly initialised '
        'parts, e.g. a test teacher)')
    return parser.parse_args(argv)


def per_model(values, n, name):
    if values is None:
        return [None] * n
    if len(values) == 1:
        return list(values) * n
    if len(values) != n:
        raise SystemExit(f'{name}: give one value or one per MODEL ({n}).')
    return list(values)


def main(argv=None):
    args = parse_args(argv)
    from tqdm import tqdm

    from mmfd.diagnostics import analysis, plots
    from mmfd.diagnostics.loading import default_img_size, load_model, model_label
    from mmfd.utils.errors import ConfigError

    n = len(args.models)
    which = per_model(args.model, n, '--model')
    labels = per_model(args.labels, n, '--labels')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    num_images = len(analysis.list_images(args.images, args.num_images))

    results, distances, similarities = {}, {}, {}
    with tqdm(total=num_images * n, unit='img', desc='attention') as bar:
        for index, (spec, target_name, label) in enumerate(zip(args.models, which, labels)):
            label = label or model_label(spec, target_name)
            if label in results:
                label = f'{label} ({index})'
            bar.set_postfix_str(label)
            torch.manual_seed(args.seed)  # parts a checkpoint lacks are built the same way
            model, _ = load_model(spec, args.device, args.cfg_options)
            found = analysis.select_targets(model, [target_name], strict=True)
            if len(found) > 1:
                raise ConfigError(f'{spec} has several teachers: use --model '
                                  f'{" or ".join(t.label for t in found)}.')
            target = found[0]
            size = (
                tuple(args.img_size) if args.img_size and len(args.img_size) == 2 else
                args.img_size[0] if args.img_size else default_img_size(model, target_name))
            raw = analysis.load_image_folder(args.images, args.num_images, size)
            stats = analysis.attention_statistics(
                target,
                raw,
                args.batch_size,
                renormalize=not args.no_renormalize,
                with_kl=not args.no_kl,
                strategy=args.strategy,
                on_batch=bar.update)
            report = analysis.attention_report(stats)
            results[label] = dict(
                source=spec,
                target=target_name,
                index=index,
                image_size=list(raw.shape[-2:]),
                num_images=int(raw.shape[0]),
                **report)
            distances[label] = report['distance_per_head']
            similarities[label] = report['head_similarity']

            maps = stats.averaged_maps()
            prefix = {layer['name']: layer['num_prefix_tokens'] for layer in report['layers']}
            fig = plots.plot_attention_maps(
                maps,
                prefix,
                args.max_layers,
                args.max_heads,
                title=f'Averaged attention maps: {label}')
            plots.save_figure(fig, out / f'attention_maps_{index}.png')
            if args.save_maps:
                np.savez_compressed(out / f'attention_maps_{index}.npz', **{
                    name: m.numpy()
                    for name, m in maps.items()
                })
            del model, stats, maps

    plots.save_figure(plots.plot_attention_distance(distances), out / 'attention_distance.png')
    plots.save_figure(plots.plot_head_diversity(similarities), out / 'head_diversity.png')
    with open(out / 'attention.json', 'w') as f:
        json.dump(dict(images=str(args.images), models=results), f, indent=1)
    print(f'wrote {out}/attention.json, attention_distance.png, head_diversity.png, '
          f'attention_maps_*.png')
    return results


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
