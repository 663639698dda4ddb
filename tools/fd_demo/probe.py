#!/usr/bin/env python
"""Linear probe of frozen features on an image-folder classification split.

    python tools/fd_demo/probe.py MODEL [MODEL ...] --data ROOT --out DIR \
        [--model student|teacher|teacher:NAME ...] [--labels A B ...] [--pixels]

``ROOT/train/<class>/*.png`` and ``ROOT/val/<class>/*.png`` (what
tools/fd_demo/digits.py writes). MODEL is any spec of the diagnostic tools
(``CONFIG.py``, ``CHECKPOINT.pth`` with ``meta['cfg']``, ``CONFIG.py,CHECKPOINT.pth``)
and ``--model`` picks the network exactly as in tools/analysis_tools/analyze_attention.py: the FD
student or an FD checkpoint's teacher (rebuilt from its own checkpoint), else the
backbone. A config without a checkpoint is the network at its initialisation,
the baseline that tells what training added.

Features: every token of the last block after the network's final norm (a
backbone built to pool is switched to its raw token output), then the CLS token
and the mean of the patch tokens side by side (the patch mean alone without a
CLS token). They are standardised on train and a multinomial logistic regression
is fitted on train, its inverse regularisation C chosen by 3-fold cross-validation
on train only from a fixed grid; val is touched once, for the reported top-1.
Beside it, a 20-nearest-neighbour vote (cosine similarity, no training): on
digits a linear probe separates even random features well, the neighbour vote
shows more plainly what training added. ``--pixels`` adds both on the raw grey
pixels.

Writes ``DIR/probe.json``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

C_GRID = (0.01, 0.1, 1.0, 10.0)
FOLDS = 3
KNN_K = 20


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('models', nargs='*', metavar='MODEL')
    parser.add_argument('--data', required=True, help='folder with train/ and val/ class folders')
    parser.add_argument('--out', required=True, help='output folder (probe.json)')
    parser.add_argument(
        '--model',
        nargs='+',
        default=['student'],
        help='student / teacher / teacher:NAME: '
        'one value, or one per MODEL')
    parser.add_argument('--labels', nargs='+', help='names in probe.json (one per MODEL)')
    parser.add_argument('--pixels', action='store_true', help='also probe the raw grey pixels')
    parser.add_argument('--batch-size', type=int, default=128)
    parser.add_argument('--seed', type=int, default=0, help='torch seed before building a model')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def list_split(root: Path, split: str):
    """(sorted image paths, integer labels) of ``root/split/<class>/*``."""
    classes = sorted(p.name for p in (root / split).iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(classes):
        for path in sorted((root / split / name).glob('*.png')):
            paths.append(path)
            labels.append(index)
    if not paths:
        raise SystemExit(f'no images under {root / split}/<class>/')
    return paths, labels, classes


def load_images(paths, size):
    import torch

    from mmfd.diagnostics.analysis import load_image
    return torch.stack([load_image(p, size) for p in paths])


def pooled(output, has_cls: bool):
    """[B, N, C] tokens -> [B, 2C] (CLS, patch mean); [B, C] passes; maps are averaged."""
    import torch
    if output.dim() == 4:  # [B, C, H, W] feature map
        return output.flatten(2).mean(-1)
    if output.dim() == 2:
        return output
    if has_cls:
        return torch.cat([output[:, 0], output[:, 1:].mean(1)], dim=1)
    return output.mean(1)


def network_features(target, raw, batch_size):
    """Frozen features of one diagnostic target for raw RGB 0-255 images."""
    import torch

    from mmfd.diagnostics.analysis import eval_mode
    chunks = []
    module = target.module
    # The FD teacher says whether CLS is first; a backbone's raw output has it
    # first when the backbone has a CLS token.
    backbone_cls = getattr(module, 'cls_token', None) is not None
    with eval_mode(target.root), torch.no_grad():
        for batch in raw.split(batch_size):
            out = target.run(batch.to(target.device))
            if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], bool):
                tokens, has_cls = out  # FeatureDistiller.compute_target
            else:
                tokens = out[-1] if isinstance(out, (tuple, list)) else out
                has_cls = backbone_cls
            chunks.append(pooled(tokens.float(), has_cls).cpu())
    return torch.cat(chunks).numpy()


def raw_tokens(model) -> None:
    """A backbone built to pool (``out_type='cls_token'``) returns all its tokens."""
    backbone = getattr(model, 'backbone', None)
    if backbone is not None and 'raw' in getattr(type(backbone), 'OUT_TYPES', ()):
        backbone.out_type = 'raw'


def knn_top1(train_x, train_y, val_x, val_y, k=KNN_K) -> float:
    """Top-1 (%) of a k-nearest-neighbour vote under cosine similarity: no
    training at all, so it shows the geometry of the features more directly."""
    import numpy as np
    from sklearn.neighbors import KNeighborsClassifier
    knn = KNeighborsClassifier(n_neighbors=k, metric='cosine').fit(train_x, train_y)
    return 100.0 * float((knn.predict(val_x) == np.asarray(val_y)).mean())


def fit_probe(train_x, train_y, val_x, val_y, seed=0) -> dict:
    """Standardise on train, logistic regression with C from cross-validation on
    train; returns val top-1 (%) and what was chosen."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def probe(c):
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))

    folds = StratifiedKFold(n_splits=FOLDS, shuffle=True, random_state=seed)
    cv = {c: float(np.mean(cross_val_score(probe(c), train_x, train_y, cv=folds))) for c in C_GRID}
    best = max(C_GRID, key=lambda c: (cv[c], -c))  # ties: the stronger regularisation
    model = probe(best).fit(train_x, train_y)
    top1 = 100.0 * float((model.predict(val_x) == np.asarray(val_y)).mean())
    return dict(
        top1=top1,
        knn_top1=knn_top1(train_x, train_y, val_x, val_y),
        C=best,
        cv_accuracy={
            str(c): 100.0 * v
            for c, v in cv.items()
        },
        feature_dims=int(train_x.shape[1]))


def main(argv=None):
    args = parse_args(argv)
    import torch

    from mmfd.diagnostics.analysis import select_targets
    from mmfd.diagnostics.loading import default_img_size, load_model

    n = len(args.models)
    which = args.model * n if len(args.model) == 1 else args.model
    labels = args.labels or [f'{Path(m).stem}/{w}' for m, w in zip(args.models, which)]
    if len(which) != n or len(labels) != n:
        raise SystemExit('--model / --labels: give one value or one per MODEL.')
    data = Path(args.data)
    train_paths, train_y, classes = list_split(data, 'train')
    val_paths, val_y, val_classes = list_split(data, 'val')
    if classes != val_classes:
        raise SystemExit(f'train classes {classes} != val classes {val_classes}')
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    results, images = {}, {}
    for spec, target_name, label in zip(args.models, which, labels):
        started = time.time()
        torch.manual_seed(args.seed)  # a network at its initialisation: the same one
        model, _ = load_model(spec, args.device)
        raw_tokens(model)
        target = select_targets(model, [target_name], strict=True)
        if len(target) != 1:
            raise SystemExit(f'{spec}: --model {target_name} is {len(target)} networks; '
                             'name one teacher (teacher:NAME).')
        size = default_img_size(model, target_name)
        size = size if isinstance(size, int) else size[0]
        if size not in images:
            images[size] = (load_images(train_paths, size), load_images(val_paths, size))
        train_raw, val_raw = images[size]
        train_x = network_features(target[0], train_raw, args.batch_size)
        val_x = network_features(target[0], val_raw, args.batch_size)
        results[label] = dict(
            source=spec,
            target=target_name,
            image_size=size,
            **fit_probe(train_x, train_y, val_x, val_y, args.seed),
            seconds=round(time.time() - started, 2))
        print(
            f'{label}: linear probe top-1 {results[label]["top1"]:.2f} % '
            f'(C={results[label]["C"]}), {KNN_K}-NN top-1 {results[label]["knn_top1"]:.2f} %',
            flush=True)
        del model

    report = dict(
        data=str(data),
        classes=classes,
        num_train=len(train_y),
        num_val=len(val_y),
        chance=100.0 / len(classes),
        features='CLS token and mean patch token after the final norm, standardised',
        C_grid=list(C_GRID),
        folds=FOLDS,
        knn_k=KNN_K,
        models=results)
    if args.pixels:
        size = next(iter(images)) if images else 32
        train_raw, val_raw = images.get(size) or (load_images(train_paths,
                                                              size), load_images(val_paths, size))
        grey = [r.mean(1).flatten(1).numpy() for r in (train_raw, val_raw)]
        report['pixels'] = dict(image_size=size, **fit_probe(grey[0], train_y, grey[1], val_y))
        print(
            f'raw pixels: linear probe top-1 {report["pixels"]["top1"]:.2f} %, '
            f'{KNN_K}-NN top-1 {report["pixels"]["knn_top1"]:.2f} %',
            flush=True)
    (out / 'probe.json').write_text(json.dumps(report, indent=1))
    print(f'wrote {out / "probe.json"}')
    return report


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
