"""Real images that ship inside a package: scikit-learn's handwritten digits.

``sklearn.datasets.load_digits`` reads a file bundled with scikit-learn (no
download): 1,797 greyscale 8x8 images of the digits 0-9 (UCI "Optical Recognition
of Handwritten Digits", 4-bit intensities 0-16). :func:`write_digits` writes them
once as an ImageNet-style folder tree that mmpretrain's ``CustomDataset`` reads::

    ROOT/train/<class>/<index>.png     ROOT/val/<class>/<index>.png
    ROOT/digits.json                   split sizes, image size, seed (marks completion)

Every image is upsampled (bicubic) to ``size`` x ``size`` and stored as 8-bit RGB,
so that the same configs and pipelines as for natural images apply. The split is
stratified and seeded, hence identical on every machine.
"""
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

CLASSES = tuple(str(i) for i in range(10))
MANIFEST = 'digits.json'
FORMAT_VERSION = 1


def digit_to_image(image8x8: np.ndarray, size: int):
    """One 8x8 array of 0-16 intensities -> ``size`` x ``size`` RGB PIL image."""
    from PIL import Image
    grey = np.clip(np.rint(image8x8 * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode='L').resize((size, size), Image.BICUBIC).convert('RGB')


def split_indices(labels: np.ndarray, val_fraction: float, seed: int):
    """Stratified (train, val) index arrays, sorted."""
    from sklearn.model_selection import train_test_split
    train, val = train_test_split(
        np.arange(len(labels)), test_size=val_fraction, stratify=labels, random_state=seed)
    return np.sort(train), np.sort(val)


def _manifest_matches(root: Path, wanted: dict) -> Optional[dict]:
    path = root / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if any(manifest.get(k) != v for k, v in wanted.items()):
        return None
    for split in ('train', 'val'):
        count = sum(1 for _ in (root / split).glob('*/*.png'))
        if count != manifest.get(f'num_{split}'):
            return None
    return manifest


def write_digits(root,
                 size: int = 32,
                 val_fraction: float = 0.2,
                 seed: int = 0,
                 per_class: Optional[int] = None,
                 force: bool = False) -> dict:
    """Writes the digits under ``root`` (once); returns the manifest.

    Args:
        root: output folder (``train/`` and ``val/`` go inside).
        size: side of the written images in pixels.
        val_fraction: share of each class held out for ``val``.
        seed: seed of the stratified split.
        per_class: keep only the first ``per_class`` images of each class before
            splitting (tests); ``None`` keeps all 1,797.
        force: rewrite even if a matching tree exists.
    """
    from sklearn.datasets import load_digits

    root = Path(root)
    wanted = dict(
        format=FORMAT_VERSION,
        image_size=size,
        val_fraction=val_fraction,
        seed=seed,
        per_class=per_class)
    if not force:
        manifest = _manifest_matches(root, wanted)
        if manifest is not None:
            return dict(manifest, reused=True)

    digits = load_digits()
    images, labels = digits.images, digits.target
    if per_class is not None:
        keep = np.sort(
            np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(len(CLASSES))]))
        images, labels = images[keep], labels[keep]
    train, val = split_indices(labels, val_fraction, seed)

    # Write into a temporary tree and swap it in: an interrupted run leaves no
    # half-written split that a later run would take for a complete one.
    tmp = root.with_name(root.name + '.tmp')
    shutil.rmtree(tmp, ignore_errors=True)
    for split, indices in (('train', train), ('val', val)):
        for c in CLASSES:
            (tmp / split / c).mkdir(parents=True, exist_ok=True)
        for i in indices:
            digit_to_image(images[i], size).save(tmp / split / CLASSES[labels[i]] / f'{i:04d}.png')
    manifest = dict(
        wanted,
        source='sklearn.datasets.load_digits (bundled with scikit-learn)',
        classes=list(CLASSES),
        num_train=int(len(train)),
        num_val=int(len(val)),
        train_per_class=np.bincount(labels[train], minlength=10).tolist(),
        val_per_class=np.bincount(labels[val], minlength=10).tolist())
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    shutil.rmtree(root, ignore_errors=True)
    root.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, root)
    return dict(manifest, reused=False)
