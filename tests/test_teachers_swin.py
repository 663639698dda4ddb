"""SwinTeacher / EsViTTeacher from official Swin-layout files vs timm's SwinTransformer."""
import pytest
import torch
from teacher_fixtures import (SWIN_IMG, TINY_SWIN, TOL, build_timm_swin, images, max_diff,
                              official_swin_state)

import mmfd  # noqa: F401
from mmfd.checkpoint import swin_official_to_timm
from mmfd.models.teachers import EsViTTeacher, SwinTeacher
from mmfd.utils.errors import CheckpointError, ConfigError


def test_official_layout_parity_stage4_and_stage3(tmp_path):
    model = build_timm_swin(window=4)
    official = official_swin_state(model)
    assert 'layers.0.downsample.reduction.weight' in official  # merging ends stage 0
    assert 'layers.3.downsample.reduction.weight' not in official
    assert 'layers.0.blocks.0.attn.relative_position_index' in official
    path = tmp_path / 'swin_official.pth'
    torch.save({'model': official}, path)
    arch = dict(TINY_SWIN, window_size=4)
    x = images(SWIN_IMG, batch=1)

    teacher = SwinTeacher(arch=arch, img_size=SWIN_IMG, checkpoint=str(path))
    out = teacher(x)
    with torch.no_grad():
        reference = model.forward_features(x)  # [B, 4, 4, 128] after the final norm
    assert max_diff(out.tokens, reference.flatten(1, 2)) <= TOL
    assert out.grid == (4, 4) and not out.has_cls and out.tokens.shape == (1, 16, 128)
    assert (teacher.embed_dim, teacher.patch_size) == (128, 32)

    stage3 = SwinTeacher(arch=arch, img_size=SWIN_IMG, checkpoint=str(path), out_stage=3)
    with torch.no_grad():
        ref3 = model.forward_intermediates(
            x, indices=[2], norm=False, intermediates_only=True)[0]  # NCHW
    out3 = stage3(x)
    assert ref3.shape == (1, 64, 8, 8)
    assert max_diff(out3.tokens, ref3.flatten(2).transpose(1, 2)) <= TOL
    assert out3.grid == (8, 8) and (stage3.embed_dim, stage3.patch_size) == (64, 16)


def test_converter_matches_timm_filter():
    from timm.models.swin_transformer import checkpoint_filter_fn
    model = build_timm_swin(window=4)
    official = official_swin_state(model)
    ours, timms = swin_official_to_timm(official), checkpoint_filter_fn(official, model)
    assert set(ours) == set(timms) == set(model.state_dict())
    assert all(torch.equal(ours[k], timms[k]) for k in ours)


def _esvit_training_file(tmp_path, official, entries=('student', 'teacher')):
    """EsViT's training checkpoint: `student` and `teacher` networks with
    `backbone.` prefixes and view-/region-level heads. The teacher entry is
    offset by +1 so that a test can tell which entry was loaded."""
    net = {f'backbone.{k}': v for k, v in official.items()}
    net['head.mlp.0.weight'] = torch.zeros(4, 128)  # EsViT view-level head
    net['head_dense.mlp.0.weight'] = torch.zeros(4, 128)  # region-level head
    nets = dict(student=net, teacher={k: v + 1 for k, v in net.items()})
    path = tmp_path / f'esvit_{"_".join(entries)}.pth'
    torch.save(dict({e: nets[e] for e in entries}, epoch=300), path)
    return str(path)


def test_esvit_loads_the_student_entry_like_the_release(tmp_path):
    # window 8 at 128 px has EsViT's (window 14 at 224) structure: 4x4 and 2x2 windows,
    # one unshifted window in stage 3, a window clipped to the 4x4 map in stage 4.
    # The release distils from the `student` entry of the EsViT file.
    model = build_timm_swin(window=8)
    path = _esvit_training_file(tmp_path, official_swin_state(model))
    arch = dict(TINY_SWIN, window_size=8)
    x = images(SWIN_IMG, batch=1)
    with torch.no_grad():
        reference = model.forward_features(x).flatten(1, 2)

    teacher = EsViTTeacher(arch=arch, img_size=SWIN_IMG, checkpoint=path)
    assert max_diff(teacher(x).tokens, reference) <= TOL
    assert teacher.model.layers[3].blocks[0].attn.window_size == (4, 4)  # clipped as EsViT
    assert teacher.model.layers[2].blocks[1].shift_size == (0, 0)

    # entry='teacher' loads the EMA network instead (the +1 offset shows)
    ema = EsViTTeacher(arch=arch, img_size=SWIN_IMG, checkpoint=path, entry='teacher')
    assert torch.equal(ema.model.patch_embed.proj.weight, teacher.model.patch_embed.proj.weight + 1)


def test_esvit_file_with_only_a_student_entry_is_accepted(tmp_path):
    model = build_timm_swin(window=8)
    path = _esvit_training_file(tmp_path, official_swin_state(model), entries=('student', ))
    teacher = EsViTTeacher(arch=dict(TINY_SWIN, window_size=8), img_size=SWIN_IMG, checkpoint=path)
    x = images(SWIN_IMG, batch=1)
    with torch.no_grad():
        assert max_diff(teacher(x).tokens, model.forward_features(x).flatten(1, 2)) <= TOL


def test_esvit_explicit_entry_must_exist(tmp_path):
    path = _esvit_training_file(
        tmp_path, official_swin_state(build_timm_swin(window=8)), entries=('student', ))
    with pytest.raises(CheckpointError, match="entry='teacher' was asked for") as info:
        EsViTTeacher(
            arch=dict(TINY_SWIN, window_size=8),
            img_size=SWIN_IMG,
            checkpoint=path,
            entry='teacher')
    assert path in str(info.value) and "entry='student'" in str(info.value)
    with pytest.raises(ConfigError, match='not one of'):
        EsViTTeacher(
            arch=dict(TINY_SWIN, window_size=8), img_size=SWIN_IMG, checkpoint=path, entry='ema')


def test_window_mismatch_is_a_shape_error(tmp_path):
    path = tmp_path / 'swin_w4.pth'
    torch.save(official_swin_state(build_timm_swin(window=4)), path)
    with pytest.raises(CheckpointError, match='shape mismatch') as info:
        SwinTeacher(arch=dict(TINY_SWIN, window_size=8), img_size=SWIN_IMG, checkpoint=str(path))
    assert 'relative_position_bias_table: checkpoint (49, 1) vs model (225, 1)' in str(info.value)


def test_esvit_default_arch_is_swin_b_window14():
    from mmfd.models.teachers.swin import SWIN_ARCHS
    assert EsViTTeacher.default_arch == 'esvit_swin_base'
    assert SWIN_ARCHS['esvit_swin_base'] == dict(
        embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=14)
