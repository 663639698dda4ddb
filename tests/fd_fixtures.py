"""Shared helpers of the FD tests: tiny image folders and tiny teacher checkpoints
in the official (timm) DINO/DeiT key format."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def make_image_folder(root, n=16, size=80, seed=0):
    """Random-content RGB images with some structure (blobs), flat folder."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        img = rng.integers(0, 60, (size, size, 3)).astype(np.float32)
        for _ in range(3):
            cy, cx, r = rng.integers(0, size, 2).tolist() + [int(rng.integers(6, 20))]
            mask = (yy - cy)**2 + (xx - cx)**2 < r * r
            img[mask] += rng.integers(60, 190, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(root / f'img_{i:03d}.png')
    return root


def make_timm_vit_checkpoint(path,
                             patch_size=8,
                             embed_dim=48,
                             depth=2,
                             num_heads=2,
                             img_size=32,
                             seed=0):
    """A timm VisionTransformer with random weights saved like DeiT's .pth files."""
    import timm.models.vision_transformer as tv
    torch.manual_seed(seed)
    model = tv.VisionTransformer(
        img_size=img_size,
        patch_size=patch_size,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        num_classes=10)
    torch.save({'model': model.state_dict()}, path)
    return path


def run_train(args, env=None, timeout=600):
    env = dict(os.environ, **(env or {}))
    env.setdefault('OMP_NUM_THREADS', '1')
    env['PYTHONPATH'] = f'{REPO}{os.pathsep}{env.get("PYTHONPATH", "")}'
    env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env["PATH"]}'
    return subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


_TRAIN_TOOL = []


def train_in_process(args) -> str:
    """tools/train.py's main(args) in the test process: the same code as a
    subprocess run, minus the interpreter start and imports (~6 s on 2 cores).
    Returns the text of the run's log file (work_dir/<timestamp>/<timestamp>.log)."""
    import importlib.util
    if not _TRAIN_TOOL:
        spec = importlib.util.spec_from_file_location('mmfd_train_tool', REPO / 'tools/train.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        _TRAIN_TOOL.append(module)
    args = [str(a) for a in args]
    work_dir = Path(args[args.index('--work-dir') + 1])
    before = set(work_dir.glob('*/*.log'))
    _TRAIN_TOOL[0].main(args)
    logs = sorted(set(work_dir.glob('*/*.log')) - before)
    assert logs, f'no log file was written under {work_dir}'
    return logs[-1].read_text()


def read_scalars(work_dir, key='loss'):
    """Values of `key` from mmengine's LocalVisBackend scalars.json, in order."""
    files = sorted(Path(work_dir).glob('*/vis_data/scalars.json'))
    assert files, f'no scalars.json under {work_dir}'
    values = []
    for line in files[-1].read_text().splitlines():
        record = json.loads(line)
        if key in record:
            values.append(record[key])
    return values
