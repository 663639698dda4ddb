"""Tiny models and data for the diagnostics tests (random weights, no downloads)."""
from pathlib import Path

import numpy as np
import torch
from torch import nn

IMG = 32


def randomize_(module: nn.Module, seed: int = 0, scale: float = 0.2) -> nn.Module:
    """Adds noise to every parameter so attention is far from uniform."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=generator) * scale)
    module.eval()  # some mmpretrain backbones' train() returns None
    return module


def images(batch=2, size=IMG, seed=1) -> torch.Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def make_image_folder(root, n=6, size=40, seed=0, classes=None):
    """Blob images; with ``classes`` one sub-folder per class (CustomDataset layout)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    root = Path(root)
    yy, xx = np.mgrid[:size, :size + 8]
    folders = [root / c for c in classes] if classes else [root]
    for k in range(n):
        folder = folders[k % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        img = rng.integers(0, 60, (size, size + 8, 3)).astype(np.float32)
        for _ in range(2):
            cy, cx = int(rng.integers(0, size)), int(rng.integers(0, size))
            r = int(rng.integers(4, 12))
            img[((yy - cy)**2 + (xx - cx)**2 < r * r)] += rng.integers(60, 190, 3)
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f'img_{k:03d}.png')
    return root


# ---------------------------------------------------------------- model configs
def vit_backbone_cfg():
    return dict(
        type='VisionTransformer',
        img_size=IMG,
        patch_size=8,
        out_type='raw',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))


def classifier_cfg():
    return dict(
        type='ImageClassifier',
        data_preprocessor=dict(
            type='ClsDataPreprocessor',
            num_classes=2,
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True),
        backbone=dict(vit_backbone_cfg(), out_type='cls_token'),
        head=dict(
            type='LinearClsHead', num_classes=2, in_channels=32,
            loss=dict(type='CrossEntropyLoss')))


def fd_cfg(teacher_patch=8):
    """A tiny FeatureDistiller: FDViT student (patch 8 at 32 px), random ViT teacher."""
    return dict(
        type='FeatureDistiller',
        input_size=IMG,
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor',
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            to_rgb=True),
        backbone=dict(
            type='FDViT',
            img_size=IMG,
            patch_size=8,
            drop_path_rate=0.1,
            arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64)),
        teacher=dict(
            type='ViTTeacher',
            img_size=4 * teacher_patch,
            allow_random_init=True,
            arch=dict(patch_size=teacher_patch, embed_dim=24, depth=2, num_heads=3)))


def build(cfg, seed=0):
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmfd  # noqa: F401
    init_default_scope('mmpretrain')
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights reports per key
    torch.manual_seed(seed)
    model = MODELS.build(cfg)
    if hasattr(model, 'init_weights'):
        model.init_weights()
    return model


def save_mmengine_checkpoint(model, cfg_dict, path):
    """What mmengine's CheckpointHook writes: meta.cfg (config text) + state_dict."""
    from mmengine.config import Config
    cfg = Config(dict(model=cfg_dict, default_scope='mmpretrain'))
    torch.save(dict(meta=dict(cfg=cfg.pretty_text, epoch=1), state_dict=model.state_dict()), path)
    return path
