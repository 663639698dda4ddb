"""Helpers of the downstream tests: tiny FD checkpoints, tiny COCO / ADE20K /
labelled-folder datasets, shrinking the shipped configs and running them through
tools/train.py."""
import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]

TINY_VIT = dict(embed_dims=32, num_layers=4, num_heads=2, feedforward_channels=64)
TINY_VIT_IMG = 64  # 4 x 4 patches of 16
TINY_SWIN = dict(
    embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 2, 2, 4], extra_norm_every_n_blocks=0)
TINY_SWIN_IMG = 64
TINY_SWIN_WINDOWS = [4, 4, 4, 2]


# ----------------------------------------------------------------- FD checkpoints
def _randomise(module, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.copy_(torch.randn(param.shape, generator=gen) * 0.1)


def _save_fd(path, student, proj_out=48, seed=0):
    """The layout mmengine's CheckpointHook writes for FeatureDistiller."""
    gen = torch.Generator().manual_seed(seed + 1)
    state = {'backbone.' + k: v.clone() for k, v in student.state_dict().items()}
    # The student's output width: its final norm (FDViT ln1, SwinV2 norm3).
    width = next(v.shape[0] for k, v in state.items()
                 if k in ('backbone.ln1.weight', 'backbone.norm3.weight'))
    state['head.proj.weight'] = torch.randn(proj_out, width, generator=gen)
    state['head.proj.bias'] = torch.randn(proj_out, generator=gen)
    torch.save(
        {
            'meta': {
                'epoch': 300,
                'iter': 1000,
                'mmengine_version': '0.10.7'
            },
            'state_dict': state
        }, path)
    return path


def make_fd_vit_checkpoint(path, seed=0):
    """Tiny FDViT student (shared table, random weights) saved as an FD checkpoint;
    returns (path, student)."""
    from mmfd.models.backbones import FDViT
    torch.manual_seed(seed)
    student = FDViT(arch=TINY_VIT, img_size=TINY_VIT_IMG, patch_size=16)
    _randomise(student, seed)
    return _save_fd(path, student, seed=seed), student


def make_fd_swin_checkpoint(path, seed=0):
    """Tiny mmpretrain SwinTransformerV2 student as an FD checkpoint."""
    from mmpretrain.models import SwinTransformerV2
    torch.manual_seed(seed)
    student = SwinTransformerV2(
        arch=TINY_SWIN, img_size=TINY_SWIN_IMG, window_size=TINY_SWIN_WINDOWS, out_indices=(3, ))
    _randomise(student, seed)
    return _save_fd(path, student, seed=seed), student


# ----------------------------------------------------------------- datasets
def _blob_image(rng, size):
    img = rng.integers(0, 60, (size, size, 3)).astype(np.uint8)
    return img


def make_coco(root, n_train=4, n_val=2, size=64, seed=0):
    """COCO-format instances: images/, annotations/instances_{train,val}.json with
    boxes and polygon masks of 1-3 rectangles/diamonds per image, 2 categories."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    (root / 'images').mkdir(parents=True, exist_ok=True)
    (root / 'annotations').mkdir(exist_ok=True)
    categories = [{'id': 1, 'name': 'box'}, {'id': 2, 'name': 'diamond'}]
    ann_id = 1
    for split, count in (('train', n_train), ('val', n_val)):
        images, annotations = [], []
        for i in range(count):
            img_id = len(images) + 1
            img = _blob_image(rng, size)
            for _ in range(int(rng.integers(1, 4))):
                cat = int(rng.integers(1, 3))
                w, h = (int(v) for v in rng.integers(16, 32, 2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                colour = rng.integers(120, 255, 3)
                if cat == 1:
                    poly = [x, y, x + w, y, x + w, y + h, x, y + h]
                    img[y:y + h, x:x + w] = colour
                else:
                    cx, cy = x + w / 2, y + h / 2
                    poly = [cx, y, x + w, cy, cx, y + h, x, cy]
                    yy, xx = np.mgrid[:size, :size]
                    inside = (np.abs(xx - cx) / (w / 2) + np.abs(yy - cy) / (h / 2)) <= 1
                    img[inside] = colour
                annotations.append({
                    'id': ann_id,
                    'image_id': img_id,
                    'category_id': cat,
                    'bbox': [x, y, w, h],
                    'area': float(w * h) / (1 if cat == 1 else 2),
                    'segmentation': [[float(v) for v in poly]],
                    'iscrowd': 0
                })
                ann_id += 1
            name = f'{split}_{i:03d}.jpg'
            Image.fromarray(img).save(root / 'images' / name, quality=95)
            images.append({'id': img_id, 'file_name': name, 'width': size, 'height': size})
        with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
            # pycocotools >= 2.0.9 copies 'info' in loadRes: real COCO files have it.
            json.dump(
                {
                    'info': {
                        'description': 'mmfd tiny COCO'
                    },
                    'licenses': [],
                    'images': images,
                    'annotations': annotations,
                    'categories': categories
                }, f)
    return root


def make_ade20k(root, n_train=4, n_val=2, size=64, seed=0):
    """ADE20K layout: images/{training,validation}/*.jpg and
    annotations/{training,validation}/*.png, labels 0 (= 'other', ignored with
    reduce_zero_label) and 1..3 (classes 0..2 after reduction)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split, count in (('training', n_train), ('validation', n_val)):
        (root / 'images' / split).mkdir(parents=True, exist_ok=True)
        (root / 'annotations' / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            label = np.zeros((size, size), np.uint8)
            img = _blob_image(rng, size)
            for cls in (1, 2, 3):
                y, x = (int(v) for v in rng.integers(0, size // 2, 2))
                label[y:y + size // 2, x:x + size // 2] = cls
                img[label == cls] = (cls * 70, 255 - cls * 60, 40 * cls)
            name = f'ADE_{split}_{i:08d}'
            Image.fromarray(img).save(root / 'images' / split / f'{name}.jpg', quality=95)
            Image.fromarray(label).save(root / 'annotations' / split / f'{name}.png')
    return root


def make_labelled_folder(root, n_per_class=4, size=72, seed=0):
    """mmpretrain CustomDataset layout: {train,val}/{class_a,class_b}/*.png; the two
    classes differ in colour so that a model can learn them."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for split in ('train', 'val'):
        for c, name in enumerate(('class_a', 'class_b')):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n_per_class):
                img = _blob_image(rng, size)
                img[..., c] += 150
                Image.fromarray(img).save(root / split / name / f'{i:03d}.png')
    return root


# ----------------------------------------------------------------- configs & runs
def replace_values(obj, mapping):
    """Deep-copies a config structure replacing values equal to a key of mapping
    (compared after list->tuple)."""
    if isinstance(obj, dict):
        return type(obj)({k: replace_values(v, mapping) for k, v in obj.items()})
    if isinstance(obj, (list, tuple)):
        key = tuple(obj)
        for old, new in mapping.items():
            if isinstance(old, tuple) and key == old:
                return new
        return type(obj)(replace_values(v, mapping) for v in obj)
    for old, new in mapping.items():
        if not isinstance(old, tuple) and type(obj) is type(old) and obj == old:
            return new
    return obj


def quiet_runtime(cfg, work_dir):
    """Test-run settings common to every toolbox: local scalars only, log every
    iteration, no workers, no checkpoints but the last."""
    cfg.work_dir = str(work_dir)
    cfg.vis_backends = [dict(type='LocalVisBackend')]
    cfg.visualizer.vis_backends = cfg.vis_backends
    # mmdet/mmseg name their visualizer 'visualizer': a process-wide singleton that
    # a second run in the same process would reuse with the first run's save dir.
    cfg.visualizer.pop('name', None)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=1)
    cfg.default_hooks.pop('visualization', None)
    cfg.env_cfg.cudnn_benchmark = False
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.num_workers = 0
        loader.persistent_workers = False
        loader.pop('pin_memory', None)
    return cfg


def load_train_tool():
    spec = importlib.util.spec_from_file_location('mmfd_tools_train', REPO / 'tools' / 'train.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_train_tool(cfg, path, *extra):
    """Dumps cfg to ``path`` and trains it with tools/train.py (in-process)."""
    cfg.dump(str(path))
    load_train_tool().main([str(path), '--work-dir', cfg.work_dir, '--no-amp', *extra])


def read_records(work_dir):
    """All records of mmengine's LocalVisBackend scalars.json files."""
    records = []
    for file in sorted(Path(work_dir).glob('*/vis_data/scalars.json')):
        records += [json.loads(line) for line in file.read_text().splitlines()]
    return records


def last_metric(work_dir, key):
    values = [r[key] for r in read_records(work_dir) if key in r]
    assert values, f'{key} not logged under {work_dir}'
    return values[-1]


def read_log(work_dir):
    return '\n'.join(f.read_text() for f in sorted(Path(work_dir).glob('*/*.log')))


def is_finite_number(value):
    return isinstance(value, (int, float)) and math.isfinite(value)
