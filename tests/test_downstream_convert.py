"""FD checkpoint -> backbone conversion, strict pretrained loading, layer decay and
the simple feature pyramid (unit level; the train loops are in
test_downstream_train.py)."""
import importlib.util
import re
from pathlib import Path

import pytest
import torch
from downstream_fixtures import (REPO, TINY_SWIN, TINY_SWIN_IMG, TINY_SWIN_WINDOWS, TINY_VIT,
                                 TINY_VIT_IMG, make_fd_swin_checkpoint, make_fd_vit_checkpoint)
from mmpretrain.models import BEiTViT, SwinTransformerV2

import mmfd  # noqa: F401  (registers FDViT and the rest)
import mmfd.engine.optimizers  # noqa: F401
import mmfd.models.necks  # noqa: F401
import mmfd.models.utils  # noqa: F401
from mmfd.checkpoint.fd_to_backbone import (convert_fd_checkpoint, load_fd_student,
                                            relative_position_index, resize_rel_pos_table)
from mmfd.engine.optimizers.layer_decay import (LayerDecayOptimWrapperConstructor,
                                                swin_v2_layer_depth)
from mmfd.models.necks import SimpleFPN
from mmfd.utils.errors import CheckpointError

SHARED = 'rel_pos_bias.relative_position_bias_table'


@pytest.fixture(scope='module')
def fd_vit(tmp_path_factory):
    return make_fd_vit_checkpoint(tmp_path_factory.mktemp('fdvit') / 'fd_vit.pth')


@pytest.fixture(scope='module')
def fd_swin(tmp_path_factory):
    return make_fd_swin_checkpoint(tmp_path_factory.mktemp('fdswin') / 'fd_swin.pth')


def finetune_vit(checkpoint, img_size=TINY_VIT_IMG, prefix='backbone.', **init):
    model = BEiTViT(
        arch=TINY_VIT,
        img_size=img_size,
        patch_size=16,
        use_rel_pos_bias=True,
        use_shared_rel_pos_bias=False,
        layer_scale_init_value=0.1,
        final_norm=False,
        out_type='avg_featmap',
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=str(checkpoint),
            prefix=prefix,
            ignore_missing=[r'^ln2\.'],
            ignore_unexpected=[r'^ln1\.'],
            **init))
    model.init_weights()
    return model


# ----------------------------------------------------------------- ViT conversion
def test_vit_conversion_keeps_every_student_tensor(fd_vit, tmp_path):
    path, student = fd_vit
    out = tmp_path / 'vit_mmpretrain.pth'
    info = convert_fd_checkpoint(path, out, target='mmpretrain')
    assert info['dropped'] == ['head.proj.bias', 'head.proj.weight']
    converted = torch.load(out, weights_only=True)['state_dict']
    assert all(k.startswith('backbone.') for k in converted)
    assert not any(k.startswith(('head.', 'teacher.')) for k in converted)
    converted = {k[len('backbone.'):]: v for k, v in converted.items()}

    shared = student.state_dict()[SHARED]
    for key, value in student.state_dict().items():
        if key.startswith('rel_pos_bias.'):
            assert key not in converted
            continue
        assert torch.equal(converted[key], value), key  # every tensor, bit for bit
    for i in range(TINY_VIT['num_layers']):
        assert torch.equal(converted[f'layers.{i}.attn.relative_position_bias_table'], shared)
        assert torch.equal(converted[f'layers.{i}.attn.relative_position_index'],
                           student.rel_pos_bias.relative_position_index)
    n_student = len(student.state_dict()) - 2  # shared table + index
    assert len(converted) == n_student + 2 * TINY_VIT['num_layers']


def test_finetune_backbone_loads_student_and_per_layer_tables(fd_vit, tmp_path):
    path, student = fd_vit
    out = tmp_path / 'vit_mmpretrain.pth'
    convert_fd_checkpoint(path, out, target='mmpretrain')
    model = finetune_vit(out)
    shared = student.rel_pos_bias.relative_position_bias_table
    for layer in model.layers:
        assert torch.equal(layer.attn.relative_position_bias_table, shared)
    loaded = model.state_dict()
    for key, value in student.state_dict().items():
        if key.startswith(('rel_pos_bias.', 'ln1.')):
            continue
        assert torch.equal(loaded[key], value), key
    # The student computes the same token features as the fine-tune backbone
    # before its pooling (same weights, per-layer copies of one table).
    x = torch.randn(2, 3, TINY_VIT_IMG, TINY_VIT_IMG)
    student.eval()
    model.eval()
    model.out_type = 'raw'
    with torch.no_grad():
        ref = student(x)[0]
        got = model(x)[0]
    torch.testing.assert_close(student.ln1(got), ref, rtol=1e-4, atol=1e-5)


def test_shared_table_file_is_expanded_by_beit_hook(fd_vit, tmp_path):
    """--no-per-layer-rel-pos + un-prefixed keys (mmdet/mmseg): BEiTViT's load hook
    copies the shared table, which it does only for un-prefixed keys."""
    path, student = fd_vit
    out = tmp_path / 'vit_mmdet_shared.pth'
    convert_fd_checkpoint(path, out, target='mmdet', per_layer_rel_pos=False)
    converted = torch.load(out, weights_only=True)['state_dict']
    assert SHARED in converted and not any(k.startswith('backbone.') for k in converted)
    model = finetune_vit(out, prefix=None)
    for layer in model.layers:
        assert torch.equal(layer.attn.relative_position_bias_table,
                           student.rel_pos_bias.relative_position_bias_table)


def test_img_size_interpolates_tables(fd_vit, tmp_path):
    path, student = fd_vit
    out = tmp_path / 'vit_96.pth'
    info = convert_fd_checkpoint(path, out, target='mmseg', img_size=96)
    assert (info['src_grid'], info['grid']) == (4, 6)
    converted = torch.load(out, weights_only=True)['state_dict']
    table = converted['layers.0.attn.relative_position_bias_table']
    shared = student.rel_pos_bias.relative_position_bias_table.detach()
    assert table.shape == ((2 * 6 - 1)**2 + 3, TINY_VIT['num_heads'])
    torch.testing.assert_close(table[-3:], shared[-3:])  # CLS entries kept
    # zero offset maps to zero offset
    torch.testing.assert_close(table[(11 * 11) // 2], shared[(7 * 7) // 2])
    assert torch.equal(converted['layers.0.attn.relative_position_index'],
                       relative_position_index(6))
    model = finetune_vit(out, img_size=96, prefix=None)
    assert torch.equal(model.layers[3].attn.relative_position_bias_table, table)
    assert model(torch.randn(1, 3, 96, 96))[0].shape == (1, TINY_VIT['embed_dims'])


def test_resize_is_smooth_on_a_smooth_table():
    """Geometric-progression bicubic resampling of a linear ramp stays a ramp-like
    monotone function and keeps its range (sanity of the SciPy fallback)."""
    side = 7
    ramp = torch.arange(side).float().repeat(side, 1)  # varies along x
    table = torch.cat([ramp.reshape(-1, 1), torch.zeros(3, 1)])
    resized = resize_rel_pos_table(table, 6)[:-3, 0].reshape(11, 11)
    assert torch.all(resized[:, 1:] >= resized[:, :-1] - 1e-4)
    assert resized.min() >= -1e-3 and resized.max() <= side - 1 + 1e-3
    torch.testing.assert_close(resized[:, 5], torch.full((11, ), 3.0))


def test_grid_mismatch_at_load_names_the_converter_option(fd_vit, tmp_path):
    path, _ = fd_vit
    out = tmp_path / 'vit_64.pth'
    convert_fd_checkpoint(path, out, target='mmpretrain')
    try:
        model = finetune_vit(out, img_size=96)
    except CheckpointError as err:  # SciPy >= 1.14: the hook cannot resize
        assert '--img-size' in str(err)
    else:  # older SciPy: BEiTViT's hook resized the tables itself
        assert model.layers[0].attn.relative_position_bias_table.shape[0] == 11 * 11 + 3


def test_safetensors_export_loads(fd_vit, tmp_path):
    path, student = fd_vit
    out = tmp_path / 'vit.safetensors'
    convert_fd_checkpoint(path, out, target='mmpretrain')
    from safetensors.torch import load_file
    assert 'backbone.layers.0.attn.relative_position_bias_table' in load_file(str(out))
    model = finetune_vit(out)
    assert torch.equal(model.patch_embed.projection.weight, student.patch_embed.projection.weight)


def test_cli(fd_vit, tmp_path, capsys):
    path, _ = fd_vit
    spec = importlib.util.spec_from_file_location(
        'convert_fd_checkpoint', REPO / 'tools' / 'model_converters' / 'convert_fd_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / 'cli.pth'
    assert tool.main([str(path), str(out), '--target', 'mmdet', '--img-size', '96']) == 0
    assert 'grid=6' in capsys.readouterr().out
    assert 'layers.0.attn.relative_position_bias_table' in torch.load(
        out, weights_only=True)['state_dict']
    bad = tmp_path / 'not_fd.pth'
    torch.save({'state_dict': {'layers.0.weight': torch.zeros(1)}}, bad)
    assert tool.main([str(bad), str(tmp_path / 'x.pth')]) == 1
    assert 'no "backbone.*" key' in capsys.readouterr().err


def test_teacher_keys_never_reach_the_backbone(fd_vit, tmp_path):
    path, _ = fd_vit
    ckpt = torch.load(path, weights_only=True)
    ckpt['state_dict']['teacher.proj.weight'] = torch.zeros(2, 2)
    polluted = tmp_path / 'with_teacher.pth'
    torch.save(ckpt, polluted)
    student, _, dropped = load_fd_student(polluted)
    assert 'teacher.proj.weight' in dropped
    assert not any('teacher' in k for k in student)


# ----------------------------------------------------------------- SwinV2
def test_swin_conversion_and_load(fd_swin, tmp_path):
    path, student = fd_swin
    out = tmp_path / 'swin_mmdet.pth'
    info = convert_fd_checkpoint(path, out, target='mmdet')
    assert info['student'] == 'swinv2'
    converted = torch.load(out, weights_only=True)['state_dict']
    derived = ('relative_coords_table', 'relative_position_index')
    for key, value in student.state_dict().items():
        if key.endswith(derived):
            assert key not in converted  # rebuilt by the model from its windows
        else:
            assert torch.equal(converted[key], value), key
    model = SwinTransformerV2(
        arch=TINY_SWIN,
        img_size=TINY_SWIN_IMG,
        window_size=TINY_SWIN_WINDOWS,
        out_indices=(0, 1, 2, 3),
        pad_small_map=True,
        init_cfg=dict(
            type='StrictPretrained', checkpoint=str(out), ignore_missing=[r'^norm[012]\.']))
    model.init_weights()
    loaded = model.state_dict()
    for key, value in student.state_dict().items():
        if not key.endswith(derived):
            assert torch.equal(loaded[key], value), key
    outs = model(torch.randn(1, 3, 80, 96))  # any size: maps padded to windows
    assert [o.shape[1] for o in outs] == [16, 32, 64, 128]


# ----------------------------------------------------------------- strict loading
def test_strict_loader_fails_on_a_checkpoint_that_matches_nothing(tmp_path):
    wrong = tmp_path / 'resnet_like.pth'
    torch.save(
        {'state_dict': {
            'conv1.weight': torch.zeros(8, 3, 7, 7),
            'fc.weight': torch.zeros(10, 8)
        }}, wrong)
    with pytest.raises(CheckpointError) as err:
        finetune_vit(wrong, prefix=None)
    message = str(err.value)
    assert str(wrong) in message
    assert 'no parameter of the model was found in the file' in message
    assert 'missing keys' in message and 'layers.0.attn.qkv.weight' in message
    assert 'unexpected keys' in message and 'conv1.weight' in message
    assert 'refusing to train from (partly) random weights' in message


def test_strict_loader_fails_on_wrong_prefix_and_wrong_arch(fd_vit, tmp_path):
    path, _ = fd_vit
    out = tmp_path / 'vit_mmdet.pth'
    convert_fd_checkpoint(path, out, target='mmdet')  # un-prefixed keys
    with pytest.raises(CheckpointError, match=r"no key starts with prefix 'backbone\.'"):
        finetune_vit(out, prefix='backbone.')
    prefixed = tmp_path / 'vit_mmpretrain.pth'
    convert_fd_checkpoint(path, prefixed, target='mmpretrain')
    with pytest.raises(CheckpointError, match=r"set prefix='backbone\.'"):
        finetune_vit(prefixed, prefix=None)
    wide = BEiTViT(
        arch=dict(TINY_VIT, embed_dims=64),
        img_size=TINY_VIT_IMG,
        patch_size=16,
        use_rel_pos_bias=True,
        out_type='avg_featmap',
        init_cfg=dict(type='StrictPretrained', checkpoint=str(out)))
    with pytest.raises(CheckpointError, match='does not fit BEiTViT'):
        wide.init_weights()


def test_strict_loader_fails_on_undeclared_missing_keys(fd_vit, tmp_path):
    path, _ = fd_vit
    out = tmp_path / 'vit.pth'
    convert_fd_checkpoint(path, out, target='mmpretrain')
    model = BEiTViT(
        arch=TINY_VIT,
        img_size=TINY_VIT_IMG,
        patch_size=16,
        use_rel_pos_bias=True,
        out_type='avg_featmap',
        init_cfg=dict(type='StrictPretrained', checkpoint=str(out),
                      prefix='backbone.'))  # ln1 / ln2 not declared
    with pytest.raises(CheckpointError) as err:
        model.init_weights()
    assert 'missing keys (2): ln2.weight, ln2.bias' in str(err.value)
    assert 'unexpected keys (2): ln1.weight, ln1.bias' in str(err.value)


# ----------------------------------------------------------------- layer decay
class Detector(torch.nn.Module):

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = torch.nn.Linear(4, 4)


def _groups(model, rate=0.5):
    constructor = LayerDecayOptimWrapperConstructor(
        dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1.0, weight_decay=0.05)),
        dict(layer_decay_rate=rate, flat_decay_mult=0.0))
    wrapper = constructor(model)
    return {g['param_name']: g for g in wrapper.optimizer.param_groups}


def test_layer_decay_on_a_detector_with_vit():
    model = Detector(
        BEiTViT(arch=TINY_VIT, img_size=TINY_VIT_IMG, patch_size=16, out_type='featmap'))
    groups = _groups(model)
    depth = TINY_VIT['num_layers'] + 2
    assert groups['neck.weight']['lr'] == 1.0
    assert groups['backbone.patch_embed.projection.weight']['lr'] == 0.5**(depth - 1)
    assert groups['backbone.layers.0.attn.qkv.weight']['lr'] == 0.5**(depth - 2)
    assert groups['backbone.layers.3.attn.qkv.weight']['lr'] == 0.5
    assert groups['backbone.layers.3.attn.q_bias']['weight_decay'] == 0.0
    assert groups['backbone.layers.3.attn.qkv.weight']['weight_decay'] == 0.05


def test_layer_decay_swin_v2_fallback():
    backbone = SwinTransformerV2(
        arch=TINY_SWIN, img_size=TINY_SWIN_IMG, window_size=TINY_SWIN_WINDOWS, out_indices=(3, ))
    assert not hasattr(backbone, 'get_layer_depth')
    depth = sum(TINY_SWIN['depths']) + 2  # 7
    assert swin_v2_layer_depth(backbone, 'backbone.patch_embed.projection.weight',
                               'backbone.') == (0, depth)
    # stage 2's patch merging = end of stage 1 in the release's numbering
    assert swin_v2_layer_depth(backbone, 'backbone.stages.2.downsample.reduction.weight',
                               'backbone.') == (2, depth)
    assert swin_v2_layer_depth(backbone, 'backbone.stages.2.blocks.1.attn.w_msa.qkv.weight',
                               'backbone.') == (4, depth)
    assert swin_v2_layer_depth(backbone, 'backbone.norm3.weight', 'backbone.') == (6, depth)
    groups = _groups(Detector(backbone))
    assert groups['backbone.stages.3.blocks.0.attn.w_msa.qkv.weight']['lr'] == 0.5
    assert groups['neck.weight']['lr'] == 1.0


# ----------------------------------------------------------------- SimpleFPN
def test_simple_fpn_pyramid():
    neck = SimpleFPN(backbone_channel=32, in_channels=[8, 16, 32, 32], out_channels=16, num_outs=5)
    neck.init_weights()
    outs = neck((torch.randn(2, 32, 8, 8), ))
    assert [tuple(o.shape[-2:]) for o in outs] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert all(o.shape[:2] == (2, 16) for o in outs)
    with pytest.raises(ValueError, match='c/4, c/2, c, c'):
        SimpleFPN(backbone_channel=32, in_channels=[32] * 4, out_channels=16, num_outs=5)


# ----------------------------------------------------------------- real FD output
def test_checkpoint_written_by_fd_training_converts_and_loads(tmp_path):
    """The FD tools' own output (tools/train.py on tests/configs/tiny_fd.py, two
    iterations), converted and loaded into the fine-tune backbone."""
    fd_fixtures = pytest.importorskip('fd_fixtures')
    config = REPO / 'tests/configs/tiny_fd.py'
    if not config.exists():
        pytest.skip('no tiny FD config')
    from downstream_fixtures import load_train_tool
    images = fd_fixtures.make_image_folder(tmp_path / 'images', n=4)
    teacher = fd_fixtures.make_timm_vit_checkpoint(tmp_path / 'teacher.pth')
    load_train_tool().main([
        str(config), '--work-dir',
        str(tmp_path / 'fd'), '--no-amp', '--cfg-options', f'model.teacher.checkpoint={teacher}',
        f'train_dataloader.dataset.data_root={images}', 'train_cfg.max_iters=2'
    ])
    fd_ckpt = tmp_path / 'fd' / 'iter_2.pth'
    student = torch.load(fd_ckpt, weights_only=True)['state_dict']
    student = {k[len('backbone.'):]: v for k, v in student.items() if k.startswith('backbone.')}

    out = tmp_path / 'fd_mmpretrain.pth'
    convert_fd_checkpoint(fd_ckpt, out, target='mmpretrain')
    from mmengine.config import Config
    arch = Config.fromfile(config).model.backbone.arch
    model = BEiTViT(
        arch=dict(arch),
        img_size=64,
        patch_size=16,
        use_rel_pos_bias=True,
        final_norm=False,
        out_type='avg_featmap',
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=str(out),
            prefix='backbone.',
            ignore_missing=[r'^ln2\.'],
            ignore_unexpected=[r'^ln1\.']))
    model.init_weights()
    loaded = model.state_dict()
    for key, value in student.items():
        if key.startswith(('rel_pos_bias.', 'ln1.')):
            continue
        assert torch.equal(loaded[key], value), key
    for layer in model.layers:
        assert torch.equal(layer.attn.relative_position_bias_table, student[SHARED])


# ----------------------------------------------------------------- FD checkpoint in memory
# The downstream backbones of configs/_base_/backbones/fd_vit_base_p16.py and
# fd_swinv2_base_w14.py, tiny.
VIT_BACKBONE = dict(
    type='mmpretrain.BEiTViT',
    arch=TINY_VIT,
    patch_size=16,
    use_abs_pos_emb=False,
    use_rel_pos_bias=True,
    use_shared_rel_pos_bias=False,
    layer_scale_init_value=0.1,
    bias='qv_bias',
    final_norm=False,
    layer_cfgs=dict(ffn_cfg=dict(add_identity=False, dropout_layer=None)),
    out_type='featmap')
SWIN_BACKBONE = dict(
    type='mmpretrain.FDSwinTransformerV2',
    arch=TINY_SWIN,
    img_size=TINY_SWIN_IMG,
    window_size=TINY_SWIN_WINDOWS,
    out_indices=(0, 1, 2, 3),
    pad_small_map=True)
NEW_SWIN_NORMS = r'^norm[012]\.'  # FD trains norm3 only


def build_initialised(cfg, **init_cfg):
    """MODELS.build + the owner's own init_weights, as a runner does."""
    from mmpretrain.registry import MODELS
    model = MODELS.build(dict(cfg, init_cfg=dict(type='StrictPretrained', **init_cfg)))
    model.init_weights()
    return model


def file_tensors(path, prefix=''):
    state = torch.load(path, weights_only=True)['state_dict']
    return {k[len(prefix):]: v for k, v in state.items()}


@pytest.mark.parametrize('backbone_size,option', [(TINY_VIT_IMG, TINY_VIT_IMG), (96, 96),
                                                  (96, None)])
def test_strict_pretrained_converts_the_fd_vit_checkpoint_in_memory(fd_vit, tmp_path, backbone_size,
                                                                    option):
    """convert='fd_vit' == convert_fd_checkpoint to a file + loading the file, tensor
    for tensor, at the FD grid and at another one (img_size defaults to the
    backbone's); every tensor survives the owner's init_weights."""
    path, _ = fd_vit
    out = tmp_path / 'converted.pth'
    convert_fd_checkpoint(path, out, target='mmpretrain', img_size=backbone_size)
    cfg = dict(VIT_BACKBONE, img_size=backbone_size)
    from_file = build_initialised(
        cfg, checkpoint=str(out), prefix='backbone.', ignore_unexpected=[r'^ln1\.'])
    in_memory = build_initialised(
        cfg, checkpoint=str(path), convert='fd_vit', img_size=option, ignore_unexpected=[r'^ln1\.'])
    got, expected = in_memory.state_dict(), from_file.state_dict()
    assert set(got) == set(expected)
    for key in got:
        assert torch.equal(got[key], expected[key]), key
    written = file_tensors(out, 'backbone.')
    assert written['layers.0.attn.relative_position_bias_table'].shape[0] == \
        (2 * backbone_size // 16 - 1)**2 + 3
    for key, value in written.items():
        if not key.startswith('ln1.'):  # FD's final norm: not part of the backbone
            assert torch.equal(got[key], value), key
    in_memory(torch.randn(1, 3, backbone_size, backbone_size))  # first forward: weights intact


def test_strict_pretrained_converts_the_fd_swinv2_checkpoint_in_memory(fd_swin, tmp_path):
    path, _ = fd_swin
    out = tmp_path / 'swin_mmdet.pth'
    convert_fd_checkpoint(path, out, target='mmdet')
    from_file = build_initialised(
        SWIN_BACKBONE, checkpoint=str(out), ignore_missing=[NEW_SWIN_NORMS])
    in_memory = build_initialised(
        SWIN_BACKBONE, checkpoint=str(path), convert='fd_swinv2', ignore_missing=[NEW_SWIN_NORMS])
    got, expected = in_memory.state_dict(), from_file.state_dict()
    assert set(got) == set(expected)
    for key in got:
        if not re.match(NEW_SWIN_NORMS, key):  # new norms: randomly initialised
            assert torch.equal(got[key], expected[key]), key
    for key, value in file_tensors(out).items():
        assert torch.equal(got[key], value), key
    in_memory(torch.randn(1, 3, TINY_SWIN_IMG, TINY_SWIN_IMG))


def test_in_memory_conversion_options_are_checked(fd_vit, fd_swin):
    from mmfd.utils.errors import ConfigError
    vit_path, swin_path = str(fd_vit[0]), str(fd_swin[0])
    cfg = dict(VIT_BACKBONE, img_size=TINY_VIT_IMG)
    with pytest.raises(ConfigError, match=r'img_size=96 gives a 6x6 patch grid.*4x4'):
        build_initialised(cfg, checkpoint=vit_path, convert='fd_vit', img_size=96)
    with pytest.raises(CheckpointError, match="holds a vit FD student.*use convert='fd_vit'"):
        build_initialised(cfg, checkpoint=vit_path, convert='fd_swinv2')
    with pytest.raises(CheckpointError, match="holds a swinv2 FD student.*use convert='fd_swinv2'"):
        build_initialised(SWIN_BACKBONE, checkpoint=swin_path, convert='fd_vit')
    with pytest.raises(ConfigError, match="img_size applies to convert='fd_vit' only"):
        build_initialised(SWIN_BACKBONE, checkpoint=swin_path, convert='fd_swinv2', img_size=64)
    with pytest.raises(ConfigError, match='is not one of'):
        build_initialised(cfg, checkpoint=vit_path, convert='fd_beit')
    with pytest.raises(ConfigError, match='img_size is an option of convert'):
        build_initialised(cfg, checkpoint=vit_path, img_size=64)
    with pytest.raises(ConfigError, match="prefix='model.' with convert='fd_vit'"):
        build_initialised(cfg, checkpoint=vit_path, convert='fd_vit', prefix='model.')


def test_weights_redrawn_by_the_owners_init_fail_at_the_first_forward(tmp_path):
    """mmpretrain's VisionTransformer re-draws pos_embed in its own init_weights,
    after every initializer, unless init_cfg type is literally 'Pretrained'."""
    from mmpretrain.registry import MODELS
    cfg = dict(
        type='mmpretrain.VisionTransformer',
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64),
        img_size=32,
        patch_size=16)
    torch.manual_seed(0)
    source = MODELS.build(cfg)
    with torch.no_grad():
        for param in source.parameters():
            param.normal_()
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'vit.pth')
    x = torch.randn(1, 3, 32, 32)

    model = build_initialised(cfg, checkpoint=str(tmp_path / 'vit.pth'))
    assert torch.equal(model.cls_token, source.cls_token)
    assert not torch.equal(model.pos_embed, source.pos_embed)  # re-drawn after the load
    with pytest.raises(CheckpointError, match=r're-initialised after loading \(1\): pos_embed'):
        model(x)
    model(x)  # reported once

    # Weights loaded again on purpose (load_from / resume) are the user's choice.
    model = build_initialised(cfg, checkpoint=str(tmp_path / 'vit.pth'))
    model.load_state_dict(source.state_dict())
    model(x)


def test_cli_publish_names_the_file_by_its_sha256(fd_vit, tmp_path, capsys):
    import hashlib
    path, _ = fd_vit
    spec = importlib.util.spec_from_file_location(
        'convert_fd_checkpoint', REPO / 'tools' / 'model_converters' / 'convert_fd_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main([str(path), str(tmp_path / 'fd_vit.pth'), '--publish']) == 0
    (published, ) = tmp_path.glob('fd_vit-*.pth')
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published.name == f'fd_vit-{digest[:8]}.pth'
    assert not (tmp_path / 'fd_vit.pth').exists()
    assert f'wrote {published}' in capsys.readouterr().out


@pytest.mark.parametrize('name', ['converted.pth', 'converted.safetensors'])
def test_convert_on_a_converted_file_says_so(fd_vit, tmp_path, name):
    out = tmp_path / name
    convert_fd_checkpoint(fd_vit[0], out, target='mmdet')
    with pytest.raises(CheckpointError, match='is a converted backbone checkpoint') as err:
        build_initialised(
            dict(VIT_BACKBONE, img_size=TINY_VIT_IMG), checkpoint=str(out), convert='fd_vit')
    assert str(out) in str(err.value) and 'without convert' in str(err.value)


def test_publish_model_drops_training_state_and_names_the_sha256(fd_vit, tmp_path):
    import hashlib
    spec = importlib.util.spec_from_file_location(
        'publish_model', REPO / 'tools' / 'model_converters' / 'publish_model.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    path, _ = fd_vit
    source = torch.load(path, weights_only=True)
    # a training checkpoint: what tools/train.py saves besides the weights
    training = dict(source, optimizer={'state': {}, 'param_groups': []}, message_hub={'x': 1})
    torch.save(training, tmp_path / 'epoch_3.pth')
    published = Path(tool.main([str(tmp_path / 'epoch_3.pth'), str(tmp_path / 'out' / 'fd.pth')]))
    digest = hashlib.sha256(published.read_bytes()).hexdigest()
    assert published.name == f'fd-{digest[:8]}.pth' and published.parent.name == 'out'
    kept = torch.load(published, weights_only=True)
    assert set(kept) == {'meta', 'state_dict'} & set(source)
    assert kept['state_dict'].keys() == source['state_dict'].keys()
    for key, value in source['state_dict'].items():
        assert torch.equal(kept['state_dict'][key], value), key

    # a converted safetensors file keeps its bytes; only the name changes
    convert_fd_checkpoint(path, tmp_path / 'vit.safetensors', target='mmpretrain')
    out = Path(tool.publish(str(tmp_path / 'vit.safetensors'), str(tmp_path / 'pub.safetensors')))
    assert out.read_bytes() == (tmp_path / 'vit.safetensors').read_bytes()
    assert out.name == f'pub-{hashlib.sha256(out.read_bytes()).hexdigest()[:8]}.safetensors'

    # bad input names the file and what was expected
    torch.save({'weights': torch.zeros(1)}, tmp_path / 'odd.pth')
    with pytest.raises(SystemExit, match=r'odd\.pth has no "state_dict"'):
        tool.main([str(tmp_path / 'odd.pth'), str(tmp_path / 'x.pth')])
    with pytest.raises(SystemExit, match='publish keeps the format'):
        tool.main([str(tmp_path / 'vit.safetensors'), str(tmp_path / 'x.pth')])
