"""MMPretrainTeacher against the mmpretrain backbones themselves."""
import copy

import pytest
import torch
from teacher_fixtures import (MM_SWIN, MM_VIT, TOL, build_mm_backbone, build_timm_vit, images,
                              max_diff, mmpretrain_checkpoint)

import mmfd  # noqa: F401
from mmfd.models.teachers import MMPretrainTeacher
from mmfd.utils.errors import CheckpointError


def _save(tmp_path, obj, name='mm.pth'):
    path = tmp_path / name
    torch.save(obj, path)
    return str(path)


@pytest.mark.parametrize('backbone_type',
                         ['VisionTransformer', 'MAEViT', 'DistilledVisionTransformer'])
def test_vit_like_parity(tmp_path, backbone_type):
    cfg = dict(MM_VIT, type=backbone_type, out_type='raw')
    reference = build_mm_backbone(cfg)
    path = _save(tmp_path, mmpretrain_checkpoint(reference))
    config = dict(model=dict(type='ImageClassifier', backbone=dict(MM_VIT, type=backbone_type)))
    teacher = MMPretrainTeacher(config=config, checkpoint=path)
    x = images(32)
    with torch.no_grad():
        kwargs = {'mask': None} if backbone_type == 'MAEViT' else {}
        expected = reference(x, **kwargs)[-1]
    if backbone_type == 'DistilledVisionTransformer':  # CLS kept, distillation token dropped
        expected = torch.cat([expected[:, :1], expected[:, 2:]], dim=1)
    out = teacher(x)
    assert max_diff(out.tokens, expected) <= TOL
    assert out.tokens.shape == (2, 17, 32) and out.has_cls and out.grid == (4, 4)
    assert (teacher.embed_dim, teacher.patch_size, teacher.img_size) == (32, 8, 32)


def test_swin_featmap_and_config_file(tmp_path):
    reference = build_mm_backbone(MM_SWIN)
    path = _save(tmp_path, mmpretrain_checkpoint(reference))
    config = tmp_path / 'swin_cfg.py'
    config.write_text(
        f'model = dict(type="ImageClassifier", backbone={MM_SWIN!r},\n'
        '             head=dict(type="LinearClsHead", num_classes=10, in_channels=128))\n'
        'data_preprocessor = dict(mean=[1.0, 2.0, 3.0], std=[4.0, 5.0, 6.0])\n')
    teacher = MMPretrainTeacher(config=str(config), checkpoint=path)
    x = images(128, batch=1)
    with torch.no_grad():
        expected = reference(x)[-1].flatten(2).transpose(1, 2)
    out = teacher(x)
    assert max_diff(out.tokens, expected) <= TOL
    assert out.tokens.shape == (1, 16, 128) and not out.has_cls and out.grid == (4, 4)
    assert (teacher.embed_dim, teacher.patch_size) == (128, 32)
    assert teacher.mean == (1.0, 2.0, 3.0) and teacher.std == (4.0, 5.0, 6.0)


MM_SWINV2 = dict(
    type='SwinTransformerV2',
    img_size=64,
    window_size=[4, 4, 4, 2],
    arch=dict(
        embed_dims=16, depths=[2, 2, 2, 2], num_heads=[1, 2, 2, 4], extra_norm_every_n_blocks=0))
MM_BEIT = dict(
    MM_VIT,
    type='BEiTViT',
    use_shared_rel_pos_bias=True,
    use_rel_pos_bias=False,
    layer_scale_init_value=0.1)


@pytest.mark.parametrize('cfg', [MM_SWINV2, MM_BEIT], ids=['swinv2', 'beit'])
def test_backbones_with_load_hooks(tmp_path, cfg):
    # SwinV2's hook deletes its index/coordinate tables, BEiT's rewrites tables.
    reference = build_mm_backbone(dict(cfg, out_type='raw') if cfg is MM_BEIT else cfg)
    teacher = MMPretrainTeacher(
        config=cfg, checkpoint=_save(tmp_path, mmpretrain_checkpoint(reference)))
    x = images(cfg['img_size'])
    with torch.no_grad():
        expected = reference(x)[-1]
    if expected.ndim == 4:
        expected = expected.flatten(2).transpose(1, 2)
    assert max_diff(teacher(x).tokens, expected) <= TOL
    assert teacher.has_cls == (cfg is MM_BEIT)


def test_bare_backbone_state_dict(tmp_path):
    reference = build_mm_backbone(dict(MM_VIT, out_type='raw'))
    path = _save(tmp_path, reference.state_dict())
    teacher = MMPretrainTeacher(config=MM_VIT, checkpoint=path)
    x = images(32)
    with torch.no_grad():
        assert max_diff(teacher(x).tokens, reference(x)[-1]) <= TOL


def test_errors(tmp_path):
    state = mmpretrain_checkpoint(build_mm_backbone(MM_VIT))
    broken = copy.deepcopy(state)
    del broken['state_dict']['backbone.ln1.weight']
    broken['state_dict']['backbone.layers.0.extra'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        MMPretrainTeacher(config=MM_VIT, checkpoint=_save(tmp_path, broken, 'broken.pth'))
    assert 'ln1.weight' in str(info.value) and 'layers.0.extra' in str(info.value)
    assert 'broken.pth' in str(info.value)

    with pytest.raises(CheckpointError, match='looks like a vit checkpoint') as info:
        MMPretrainTeacher(
            config=MM_VIT, checkpoint=_save(tmp_path,
                                            build_timm_vit().state_dict(), 'dino.pth'))
    assert 'ViTTeacher' in str(info.value)


def test_frozen(tmp_path):
    teacher = MMPretrainTeacher(config=MM_VIT, allow_random_init=True)
    teacher.train()
    assert not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
