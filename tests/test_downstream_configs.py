"""The shipped downstream configs carry the release's fine-tuning recipe
(docs/method.md) and load their backbone strictly. Parse-only: fast."""
from pathlib import Path

import pytest
from config_names import finetune_config
from mmengine.config import Config

REPO = Path(__file__).resolve().parents[1]
# `import mmfd` registers everything a config names (mmfd/registry.py)
MODULES = ['mmfd']
# BEiT layers with one drop path per branch (docs/method.md)
SINGLE_DROP_PATH = dict(ffn_cfg=dict(add_identity=False, dropout_layer=None))

# config: (drop path, lr per 512, layer decay, epochs, warm-up epochs, warm-up from)
FINETUNE = {
    'clip_vitb_ft100e_in1k.py': (0.3, 1.25e-3, 0.6, 100, 20, 2.5e-7),
    'dino_vitb_ft100e_in1k.py': (0.2, 1.5e-3, 0.6, 100, 20, 2.5e-7),
    'deit_vitb_ft100e_in1k.py': (0.3, 1.25e-3, 0.65, 100, 20, 2.5e-7),
    'clip_vitl14_ft50e_in1k.py': (0.4, 2.5e-4, 0.75, 50, 5, 5e-7),
    'esvit_swinv2b_ft100e_in1k.py': (0.4, 1.25e-3, 0.8, 100, 20, 2.5e-7),
}
DOWNSTREAM = sorted((REPO / 'configs/mmdet').glob('*.py')) + sorted(
    (REPO / 'configs/mmseg').glob('*.py'))


@pytest.mark.parametrize('name', sorted(FINETUNE))
def test_finetune_recipe(name):
    cfg = Config.fromfile(REPO / finetune_config(name[:-3]), import_custom_modules=False)
    drop_path, lr, decay, epochs, warmup, warmup_from = FINETUNE[name]
    backbone = cfg.model.backbone
    assert backbone.drop_path_rate == drop_path
    assert backbone.init_cfg.type == 'StrictPretrained'
    # the FD training checkpoint itself, converted in memory: no manual step
    assert backbone.init_cfg.checkpoint.endswith('/epoch_300.pth')
    assert backbone.init_cfg.convert == ('fd_vit' if 'BEiTViT' in backbone.type else 'fd_swinv2')
    if backbone.type == 'mmpretrain.BEiTViT':
        assert backbone.use_rel_pos_bias and not backbone.use_shared_rel_pos_bias
        assert backbone.out_type == 'avg_featmap' and not backbone.final_norm
        assert backbone.layer_cfgs == SINGLE_DROP_PATH
    else:  # SwinV2 with drop path after the post-norm
        assert backbone.type == 'mmpretrain.FDSwinTransformerV2'
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == lr
    assert optim.optimizer.weight_decay == 0.05
    assert optim.clip_grad.max_norm == 5.0
    assert optim.paramwise_cfg.layer_decay_rate == decay
    assert cfg.auto_scale_lr == dict(base_batch_size=512, enable=True)
    warm, cosine = cfg.param_scheduler
    assert warm.end == warmup and cosine.begin == warmup and cosine.end == epochs
    # warm-up start and minimum are ratios of the lr: they follow auto_scale_lr
    assert warm.start_factor * lr == pytest.approx(warmup_from)
    assert cosine.eta_min_ratio * lr == pytest.approx(warmup_from)
    assert 'eta_min' not in cosine
    assert cfg.train_cfg.max_epochs == epochs
    head = cfg.model.head
    # the release's heads: std 0.02 x 0.001 for the ViT, 0.02 for SwinV2
    assert head.loss.label_smooth_val == 0.1
    assert head.init_cfg[0].std == (2e-5 if 'BEiTViT' in backbone.type else 0.02)
    assert [a['alpha'] for a in cfg.model.train_cfg.augments] == [0.8, 1.0]
    ops = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
    assert ops['RandAugment']['magnitude_level'] == 9
    assert ops['RandAugment']['magnitude_std'] == 0.5
    assert ops['RandAugment']['policies'] == 'timm_increasing'
    assert ops['RandomErasing']['erase_prob'] == 0.25
    assert ops['RandomResizedCrop']['interpolation'] == 'bicubic'
    test_ops = {t['type']: t for t in cfg.val_dataloader.dataset.pipeline}
    assert test_ops['ResizeEdge']['scale'] == 256 and test_ops['CenterCrop']['crop_size'] == 224
    assert cfg.custom_imports.imports == MODULES


@pytest.mark.parametrize('path', DOWNSTREAM, ids=lambda p: p.name)
def test_detection_segmentation_configs(path):
    cfg = Config.fromfile(path, import_custom_modules=False)
    assert cfg.default_scope in ('mmdet', 'mmseg')
    assert cfg.custom_imports.imports == MODULES
    backbone = cfg.model.backbone
    assert backbone.type.startswith('mmpretrain.')
    assert backbone.init_cfg.type == 'StrictPretrained'
    assert backbone.init_cfg.checkpoint.endswith(
        '/epoch_300.pth') and 'prefix' not in backbone.init_cfg
    assert not {'depth', 'frozen_stages', 'style'} & set(backbone)  # the base's ResNet is gone
    assert cfg.optim_wrapper.type == 'FDOptimWrapper' and cfg.optim_wrapper.amp == 'auto'
    assert cfg.optim_wrapper.constructor == 'LayerDecayOptimWrapperConstructor'
    assert 0 < cfg.optim_wrapper.paramwise_cfg.layer_decay_rate < 1
    if backbone.type == 'mmpretrain.BEiTViT':
        assert backbone.layer_cfgs == SINGLE_DROP_PATH
    else:
        assert backbone.type == 'mmpretrain.FDSwinTransformerV2'
    if backbone.type == 'mmpretrain.BEiTViT':
        assert backbone.use_rel_pos_bias and backbone.out_type == 'featmap'
        # the tables are resized in memory to the backbone's own fixed grid
        assert backbone.init_cfg.convert == 'fd_vit' and 'img_size' not in backbone.init_cfg
        assert backbone.img_size == (1024 if cfg.default_scope == 'mmdet' else 512)
    else:
        assert backbone.init_cfg.convert == 'fd_swinv2'
    if cfg.default_scope == 'mmseg':
        assert cfg.model.pretrained is None
        assert cfg.model.decode_head.num_classes == 150


# (config, toolbox target of tools/model_converters/convert_fd_checkpoint.py, FD student kind)
DIRECT = [
    ('configs/fd/benchmarks/vit-base-p16_fd-clip-vit-b16_8xb128-coslr-100e_in1k.py', 'mmpretrain',
     'vit'),
    ('configs/fd/benchmarks/swinv2-base-w14_fd-esvit-swin-b_8xb128-coslr-100e_in1k.py',
     'mmpretrain', 'swin'),
    ('configs/mmdet/mask-rcnn_fd-clip-vitb_simplefpn_lsj-100e_coco.py', 'mmdet', 'vit'),
    ('configs/mmdet/mask-rcnn_fd-esvit-swinv2b_fpn_ms-crop-3x_coco.py', 'mmdet', 'swin'),
    ('configs/mmseg/upernet_fd-clip-vitb_mln_8xb2-amp-160k_ade20k-512x512.py', 'mmseg', 'vit'),
    ('configs/mmseg/upernet_fd-esvit-swinv2b_8xb2-amp-160k_ade20k-512x512.py', 'mmseg', 'swin'),
]


@pytest.mark.parametrize('config, target, kind', DIRECT, ids=[c for c, _, _ in DIRECT])
def test_config_loads_the_fd_checkpoint_like_the_converted_file(tmp_path, config, target, kind):
    """Each downstream config's backbone (tiny widths, its own grid and options),
    built by the toolbox registry and initialised from the FD checkpoint itself,
    equals (torch.equal, every tensor) the same backbone loaded from the file
    tools/model_converters/convert_fd_checkpoint.py writes for that toolbox and size, after the
    backbone's own init_weights."""
    import torch
    from downstream_fixtures import (TINY_SWIN, TINY_SWIN_IMG, TINY_SWIN_WINDOWS, TINY_VIT,
                                     make_fd_swin_checkpoint, make_fd_vit_checkpoint)
    from mmpretrain.registry import MODELS

    import mmfd  # noqa: F401
    from mmfd.checkpoint.fd_to_backbone import convert_fd_checkpoint
    cfg = Config.fromfile(REPO / config, import_custom_modules=False)
    backbone = cfg.model.backbone.to_dict()
    backbone['type'] = backbone['type'].replace('mmpretrain.', '')
    if kind == 'vit':
        fd_path, _ = make_fd_vit_checkpoint(tmp_path / 'fd.pth')
        img_size = {'mmpretrain': 64, 'mmdet': 128, 'mmseg': 96}[target]  # 64 -> other grids
        backbone.update(arch=TINY_VIT, img_size=img_size)
        if isinstance(backbone.get('out_indices'), list):
            backbone['out_indices'] = [0, 1, 2, 3]
    else:
        fd_path, _ = make_fd_swin_checkpoint(tmp_path / 'fd.pth')
        img_size = None
        backbone.update(arch=TINY_SWIN, window_size=TINY_SWIN_WINDOWS, img_size=TINY_SWIN_IMG)
    backbone['init_cfg'] = dict(backbone['init_cfg'], checkpoint=str(fd_path))

    def built(init_cfg):
        torch.manual_seed(0)
        model = MODELS.build(dict(backbone, init_cfg=init_cfg))
        model.init_weights()
        return model.state_dict()

    direct = built(backbone['init_cfg'])
    converted_file = tmp_path / f'converted_{target}.pth'
    convert_fd_checkpoint(fd_path, converted_file, target=target, img_size=img_size)
    converted = dict(backbone['init_cfg'], checkpoint=str(converted_file))
    del converted['convert']
    if target == 'mmpretrain':
        converted['prefix'] = 'backbone.'
    from_file = built(converted)
    assert direct.keys() == from_file.keys()
    for key in direct:
        assert torch.equal(direct[key], from_file[key]), key
    # and they are the FD student's weights, not an initialisation
    fd_state = torch.load(fd_path, weights_only=True)['state_dict']
    patch = 'patch_embed.projection.weight'
    assert torch.equal(direct[patch], fd_state['backbone.' + patch])
