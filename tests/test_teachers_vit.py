"""ViTTeacher (DINO / DeiT) against timm's VisionTransformer, official file layouts."""
import pytest
import torch
from teacher_fixtures import (TOL, build_open_clip, build_timm_vit, dino_full_checkpoint, images,
                              max_diff, tiny_clip_config, vit_arch)

import mmfd  # noqa: F401
from mmfd.models.teachers import IMAGENET_MEAN, ViTTeacher, build_teacher
from mmfd.utils.errors import CheckpointError, ConfigError


def _reference(model, x):
    with torch.no_grad():
        return model.forward_features(x)


@pytest.mark.parametrize('patch,img', [(16, 32), (14, 28)])
@pytest.mark.parametrize('layout', ['flat', 'deit'])
def test_timm_vit_parity(tmp_path, patch, img, layout):
    model = build_timm_vit(patch=patch, img=img)
    state = model.state_dict()  # includes head.weight / head.bias (classifier)
    path = tmp_path / 'vit.pth'
    torch.save({'model': state} if layout == 'deit' else state, path)
    teacher = ViTTeacher(arch=vit_arch(patch=patch), img_size=img, checkpoint=str(path))
    x = images(img)
    out = teacher(x)
    assert max_diff(out.tokens, _reference(model, x)) <= TOL
    grid = img // patch
    assert out.tokens.shape == (2, 1 + grid * grid, 48) and out.grid == (grid, grid)
    assert out.has_cls and teacher.mean == IMAGENET_MEAN
    assert teacher.model.norm.eps == 1e-6


@pytest.mark.parametrize('ddp_teacher', [True, False])
def test_dino_full_checkpoint(tmp_path, ddp_teacher):
    model = build_timm_vit()
    path = tmp_path / 'dino_full_checkpoint.pth'
    torch.save(dino_full_checkpoint(model.state_dict(), ddp_teacher), path)
    teacher = build_teacher(
        dict(type='DINOTeacher', arch=vit_arch(), img_size=32, checkpoint=str(path)))
    x = images(32)
    # equal to the teacher entry (the student entry is offset by +1)
    assert max_diff(teacher(x).tokens, _reference(model, x)) <= TOL


def _save(tmp_path, state, name='vit.pth'):
    path = tmp_path / name
    torch.save(state, path)
    return str(path)


def test_clip_file_is_wrong_family(tmp_path):
    path = _save(tmp_path, build_open_clip(tiny_clip_config()).state_dict(), 'clip.bin')
    with pytest.raises(CheckpointError, match='looks like a clip checkpoint') as info:
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)
    assert 'CLIPTeacher' in str(info.value) and path in str(info.value)


def test_missing_keys(tmp_path):
    state = build_timm_vit().state_dict()
    del state['norm.weight'], state['blocks.1.mlp.fc2.bias']
    path = _save(tmp_path, state)
    with pytest.raises(CheckpointError, match=r'missing keys \(2\)') as info:
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)
    assert 'norm.weight' in str(info.value) and 'blocks.1.mlp.fc2.bias' in str(info.value)
    assert path in str(info.value)


def test_unexpected_keys(tmp_path):
    state = build_timm_vit().state_dict()
    state['blocks.0.attn.rel_pos.weight'] = torch.zeros(3)
    path = _save(tmp_path, state)
    with pytest.raises(
            CheckpointError, match=r'unexpected keys \(1\): '
            r'blocks\.0\.attn\.rel_pos\.weight'):
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)


def test_shape_mismatch(tmp_path):
    # a 48x48 checkpoint into a 32x32 teacher (no img_size given: no resizing)
    path = _save(tmp_path, build_timm_vit(img=48).state_dict())
    with pytest.raises(CheckpointError, match=r'shape mismatch') as info:
        ViTTeacher(arch=dict(vit_arch(), img_size=32), checkpoint=path)
    assert 'pos_embed: checkpoint (1, 10, 48) vs model (1, 5, 48)' in str(info.value)
    # asking for the size explicitly interpolates the position grid once
    teacher = ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)
    assert teacher(images(32)).tokens.shape == (2, 5, 48)


def test_wrong_depth_is_caught(tmp_path):
    path = _save(tmp_path, build_timm_vit(depth=2).state_dict())
    with pytest.raises(CheckpointError, match='missing keys'):
        ViTTeacher(arch=vit_arch(depth=3), img_size=32, checkpoint=path)


def test_unknown_arch_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'vit_base_patch16'"):
        ViTTeacher(arch='vit_base_patch61', allow_random_init=True)


def test_named_arch_and_resolution_suffix():
    teacher = ViTTeacher(arch='vit_small_patch16_224', allow_random_init=True)
    assert (teacher.embed_dim, teacher.patch_size, teacher.img_size) == (384, 16, 224)


def test_missing_and_corrupt_file_through_teacher(tmp_path):
    with pytest.raises(CheckpointError, match='not found'):
        ViTTeacher(arch=vit_arch(), checkpoint=str(tmp_path / 'dino.pth'))
    bad = tmp_path / 'dino.pth'
    bad.write_bytes(b'not a checkpoint')
    with pytest.raises(CheckpointError, match='corrupt'):
        ViTTeacher(arch=vit_arch(), checkpoint=str(bad))


def test_frozen_and_eval(tmp_path):
    teacher = ViTTeacher(
        arch=vit_arch(), img_size=32, checkpoint=_save(tmp_path,
                                                       build_timm_vit().state_dict()))
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())
    with pytest.raises(ConfigError, match='built for 32x32'):
        teacher(images(48))
    # drop path 0 everywhere
    assert all(type(b.drop_path1).__name__ == 'Identity' for b in teacher.model.blocks)


def test_position_table_resampled_as_the_release_at_256px(tmp_path):
    """A 224 px DeiT-layout file built at 256 px equals timm's own ViT at 256 px
    whose pos_embed was resampled with plain bicubic (no antialiasing)."""
    from timm.layers import resample_abs_pos_embed
    model = build_timm_vit(patch=16, img=224)
    path = _save(tmp_path, {'model': model.state_dict()})
    reference = build_timm_vit(patch=16, img=256)
    state = model.state_dict()
    state['pos_embed'] = resample_abs_pos_embed(
        state['pos_embed'], new_size=(16, 16), num_prefix_tokens=1, antialias=False)
    reference.load_state_dict(state)
    x = images(256, batch=1)

    teacher = ViTTeacher(arch=vit_arch(patch=16), img_size=256, checkpoint=path)
    assert max_diff(teacher(x).tokens, _reference(reference, x)) <= TOL
    adapted = ViTTeacher(arch=vit_arch(patch=16), checkpoint=path)
    assert adapted.img_size == 224 and adapted.adapt_img_size(256)
    assert torch.equal(adapted(x).tokens, teacher(x).tokens)
    assert not any(p.requires_grad for p in adapted.parameters()) and not adapted.training
