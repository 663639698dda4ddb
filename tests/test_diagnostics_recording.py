"""Attention recording: outputs bitwise unchanged, maps equal independent computations,
fused kernels back on (and hooks gone) after the context."""
import pytest
import torch
import torch.nn.functional as F
from diagnostics_fixtures import IMG, build, fd_cfg, images, randomize_, vit_backbone_cfg
from torch import nn

from mmfd.diagnostics import AttentionRecorder, resolve_geometry
from mmfd.utils.errors import ConfigError


def first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def run(model, x, **recorder_kwargs):
    with torch.no_grad():
        with AttentionRecorder(model, **recorder_kwargs) as rec:
            out = first(model(x))
        return out, rec


def plain(model, x):
    with torch.no_grad():
        return first(model(x))


def assert_clean(model):
    for m in model.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks, type(m).__name__


def capture_inputs(modules):
    """Forward pre-hooks storing each module's first input (and kwargs)."""
    store, handles = [], []
    for m in modules:
        handles.append(
            m.register_forward_pre_hook(lambda mod, a, kw: store.append((a, kw)), with_kwargs=True))
    return store, handles


def check_maps(rec, n_layers, shape):
    assert len(rec.records) == n_layers
    for r in rec.records:
        assert tuple(r.attn.shape) == shape
        torch.testing.assert_close(r.attn.sum(-1), torch.ones(shape[:-1]), atol=1e-5, rtol=0)


# ------------------------------------------------------------------ mmpretrain
def test_mmpretrain_vit_recomputed_maps_reproduce_the_sdpa_output():
    model = randomize_(build(vit_backbone_cfg()))
    x = images()
    reference = plain(model, x)
    attns = [layer.attn for layer in model.layers]
    store, handles = capture_inputs(attns)
    outs = []
    handles += [a.register_forward_hook(lambda m, i, o: outs.append(o)) for a in attns]
    out, rec = run(model, x)
    for h in handles:
        h.remove()
    assert torch.equal(out, reference)
    check_maps(rec, 2, (2, 2, 17, 17))
    # independent: the recorded map times v, projected, is the module's (SDPA) output
    for r, (args, _), attn, o in zip(rec.records, store, attns, outs):
        xin = args[0]
        v = attn.qkv(xin).reshape(2, 17, 3, 2, 16).permute(2, 0, 3, 1, 4)[2]
        y = attn.proj((r.attn @ v).transpose(1, 2).reshape(2, 17, 32))
        torch.testing.assert_close(y, o, atol=1e-5, rtol=1e-5)
    geo = resolve_geometry(rec.records[0])
    assert geo == ((4, 4), (8.0, 8.0), 1)
    assert_clean(model)


def test_mmpretrain_beit_explicit_path_is_observed():
    cfg = dict(
        type='BEiTViT',
        img_size=IMG,
        patch_size=8,
        out_type='raw',
        use_abs_pos_emb=False,
        use_rel_pos_bias=True,
        layer_scale_init_value=0.1,
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))
    model = randomize_(build(cfg))
    x = images()
    reference = plain(model, x)
    out, rec = run(model, x)
    assert torch.equal(out, reference)
    check_maps(rec, 2, (2, 2, 17, 17))
    assert_clean(model)


def test_fdvit_flips_fused_only_while_recording():
    fd_vit = pytest.importorskip('mmfd.models.backbones.fd_vit')
    cfg = dict(
        type='FDViT',
        img_size=IMG,
        patch_size=8,
        drop_path_rate=0.0,
        arch=dict(embed_dims=32, num_layers=2, num_heads=2, feedforward_channels=64))
    model = randomize_(build(cfg))
    attns = [layer.attn for layer in model.layers]
    assert all(isinstance(a, fd_vit.FDAttention) and a.fused for a in attns)
    x = images()
    fused = plain(model, x)
    for a in attns:
        a.fused = False
    explicit = plain(model, x)
    for a in attns:
        del a.fused  # back to the class default (True)
    out, rec = run(model, x)
    assert torch.equal(out, explicit)  # recording == explicit path
    torch.testing.assert_close(out, fused, atol=1e-5, rtol=1e-5)  # == fused up to rounding
    assert all(a.fused and 'fused' not in vars(a) for a in attns)  # flag restored
    assert torch.equal(plain(model, x), fused)  # fast path back on
    check_maps(rec, 2, (2, 2, 17, 17))
    assert_clean(model)


@pytest.mark.parametrize('version', ['v1', 'v2'])
def test_mmpretrain_swin_windows(version):
    if version == 'v1':
        cfg = dict(
            type='SwinTransformer',
            img_size=IMG,
            patch_size=4,
            window_size=4,
            out_indices=(1, ),
            drop_path_rate=0.,
            arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4]))
    else:
        cfg = dict(
            type='SwinTransformerV2',
            img_size=IMG,
            patch_size=4,
            window_size=[4, 4],
            out_indices=(1, ),
            drop_path_rate=0.,
            pretrained_window_sizes=[0, 0],
            arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 4], extra_norm_every_n_blocks=0))
    model = randomize_(build(cfg))
    x = images()
    reference = plain(model, x)
    out, rec = run(model, x)
    assert torch.equal(out, reference)
    assert len(rec.records) == 4
    stage1, stage2 = rec.records[:2], rec.records[2:]
    for r in stage1:  # 8x8 map in 4 windows of 4x4, 2 heads, stride 4 px
        assert r.kind == 'window' and tuple(r.attn.shape) == (8, 2, 16, 16)
        assert resolve_geometry(r) == ((4, 4), (4.0, 4.0), 0)
    for r in stage2:  # 4x4 map, one window, stride 8 px
        assert tuple(r.attn.shape) == (2, 4, 16, 16)
        assert resolve_geometry(r) == ((4, 4), (8.0, 8.0), 0)
    assert_clean(model)


# ------------------------------------------------------------------ timm
def tiny_timm_vit():
    from timm.models.vision_transformer import VisionTransformer
    torch.manual_seed(0)
    return randomize_(
        VisionTransformer(
            img_size=IMG, patch_size=8, embed_dim=32, depth=2, num_heads=2, num_classes=0))


def test_timm_vit_fused_path_recomputed_equals_explicit_hooks():
    model = tiny_timm_vit()
    attns = [b.attn for b in model.blocks]
    x = images()
    for a in attns:
        a.fused_attn = True
    fused = plain(model, x)
    out, rec = run(model, x)  # auto: recompute, no flag change
    assert torch.equal(out, fused)
    assert all(a.fused_attn for a in attns)
    check_maps(rec, 2, (2, 2, 17, 17))

    # independent reference: timm's own explicit path, maps taken at attn_drop
    for a in attns:
        a.fused_attn = False
    seen = []
    handles = [a.attn_drop.register_forward_pre_hook(lambda m, i: seen.append(i[0])) for a in attns]
    explicit = plain(model, x)
    for h in handles:
        h.remove()
    for r, ref in zip(rec.records, seen):
        torch.testing.assert_close(r.attn, ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(explicit, fused, atol=1e-5, rtol=1e-5)

    # strategy='explicit': flags flipped while recording, output == explicit bitwise
    for a in attns:
        a.fused_attn = True
    out_explicit, rec2 = run(model, x, strategy='explicit')
    assert torch.equal(out_explicit, explicit)
    assert all(a.fused_attn for a in attns)
    for r, ref in zip(rec2.records, seen):
        assert torch.equal(r.attn, ref)
    assert_clean(model)


@pytest.mark.parametrize('fused', [False, True])
def test_timm_swin(fused):
    from timm.models.swin_transformer import SwinTransformer
    torch.manual_seed(0)
    model = randomize_(
        SwinTransformer(
            img_size=IMG,
            patch_size=4,
            window_size=4,
            embed_dim=16,
            depths=(2, 2),
            num_heads=(2, 4),
            num_classes=0))
    blocks = [b for stage in model.layers for b in stage.blocks]
    for b in blocks:
        b.attn.fused_attn = False
    seen = []
    handles = [b.attn.softmax.register_forward_hook(lambda m, i, o: seen.append(o)) for b in blocks]
    x = images()
    explicit = plain(model, x)
    for h in handles:
        h.remove()
    for b in blocks:
        b.attn.fused_attn = fused
    reference = plain(model, x)
    out, rec = run(model, x)
    assert torch.equal(out, reference)
    assert len(rec.records) == 4
    for r, ref in zip(rec.records, seen):
        torch.testing.assert_close(r.attn, ref, atol=1e-6, rtol=1e-5)
    assert resolve_geometry(rec.records[0]) == ((4, 4), (4.0, 4.0), 0)
    assert resolve_geometry(rec.records[-1]) == ((4, 4), (8.0, 8.0), 0)
    if fused:
        torch.testing.assert_close(reference, explicit, atol=1e-5, rtol=1e-5)
    assert_clean(model)


# ------------------------------------------------------------------ open_clip
@pytest.mark.parametrize('block_type', ['default', 'custom'])
def test_open_clip_tower(block_type):
    from open_clip.transformer import VisionTransformer
    torch.manual_seed(0)
    model = randomize_(
        VisionTransformer(
            image_size=IMG,
            patch_size=8,
            width=64,
            layers=2,
            heads=2,
            mlp_ratio=2.0,
            output_dim=16,
            block_type=block_type),
        scale=0.1)
    x = images()
    reference = plain(model, x)
    blocks = model.transformer.resblocks
    store, handles = capture_inputs([b.attn for b in blocks])
    out, rec = run(model, x)
    for h in handles:
        h.remove()
    assert torch.equal(out, reference)
    check_maps(rec, 2, (2, 2, 17, 17))
    assert resolve_geometry(rec.records[0]) == ((4, 4), (8.0, 8.0), 1)
    for r, (args, _), block in zip(rec.records, store, blocks):
        xin = args[0]
        if block_type == 'default':  # torch's own weights path: need_weights=True
            _, ref = block.attn(xin, xin, xin, need_weights=True, average_attn_weights=False)
        else:  # open_clip's Attention, maps through its explicit formula
            a = block.attn
            q, k, _ = F.linear(xin, a.in_proj_weight, a.in_proj_bias).chunk(3, dim=-1)
            q = q.reshape(2, 17, 2, -1).transpose(1, 2)
            k = k.reshape(2, 17, 2, -1).transpose(1, 2)
            ref = ((q * a.scale) @ k.transpose(-1, -2)).softmax(-1)
        torch.testing.assert_close(r.attn, ref.detach(), atol=1e-6, rtol=1e-5)
    assert_clean(model)


# ------------------------------------------------------------------ FD model
def test_fd_teacher_geometry_follows_its_resized_input():
    from mmfd.diagnostics import analysis
    model = randomize_(build(fd_cfg(teacher_patch=4)), scale=0.05)
    raw = torch.rand(2, 3, IMG, IMG) * 255
    student, teacher = analysis.select_targets(model, ('student', 'teacher'))
    s = analysis.attention_statistics(student, raw).summary()
    t = analysis.attention_statistics(teacher, raw).summary()
    assert [layer['grid'] for layer in s] == [[4, 4]] * 2
    assert s[0]['stride'] == [8.0, 8.0] and s[0]['num_prefix_tokens'] == 1
    # resize_input: the teacher sees 4x4 patches of 4 px (16 px input), not 32 px
    assert t[0]['grid'] == [4, 4] and t[0]['stride'] == [4.0, 4.0]
    assert t[0]['num_heads'] == 3
    assert_clean(model)


def test_train_mode_restored_and_unknown_models_rejected():
    from mmfd.diagnostics import analysis
    model = build(fd_cfg())
    model.train()
    flags = {name: m.training for name, m in model.named_modules()}
    target = analysis.select_targets(model, ('student', ))[0]
    analysis.attention_statistics(target, torch.rand(1, 3, IMG, IMG) * 255)
    assert flags == {name: m.training for name, m in model.named_modules()}
    assert model.teacher.training is False
    with pytest.raises(ConfigError):
        with AttentionRecorder(nn.Sequential(nn.Linear(3, 3))):
            pass


# ------------------------------------------------------------------ teacher zoo
TEACHERS = {
    'clip': (dict(
        type='CLIPTeacher',
        allow_random_init=True,
        arch=dict(embed_dim=16, vision_cfg=dict(image_size=IMG, layers=2, width=64,
                                                patch_size=8))), [((4, 4), 8.0, 1)] * 2),
    'vit': (dict(
        type='ViTTeacher',
        img_size=IMG,
        allow_random_init=True,
        arch=dict(patch_size=8, embed_dim=24, depth=2, num_heads=3)), [((4, 4), 8.0, 1)] * 2),
    'swin': (dict(
        type='SwinTeacher',
        img_size=IMG,
        allow_random_init=True,
        out_stage=2,
        arch=dict(embed_dim=16, depths=(2, 2), num_heads=(2, 4),
                  window_size=4)), [((4, 4), 4.0, 0)] * 2 + [((4, 4), 8.0, 0)] * 2),
}


@pytest.mark.parametrize('name', sorted(TEACHERS))
def test_teacher_zoo(name):
    from mmfd.diagnostics import analysis
    cfg, expected = TEACHERS[name]
    teacher = build(cfg)
    raw = torch.rand(2, 3, IMG, IMG) * 255
    target, = analysis.select_targets(teacher, ('teacher', ), strict=True)
    x = analysis.normalise(raw, *analysis._stats(teacher.mean, teacher.std))
    reference = teacher(x).tokens
    with torch.no_grad(), AttentionRecorder(teacher):
        assert torch.equal(teacher(x).tokens, reference)
    layers = analysis.attention_statistics(target, raw).summary()
    got = [(tuple(layer['grid']), layer['stride'][0], layer['num_prefix_tokens'])
           for layer in layers]
    assert got == expected
    assert_clean(teacher)
