"""FD algorithm units: whitening, loss, student, teacher handling, token alignment."""
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS

from mmfd.models.algorithms.fd import FeatureDistiller
from mmfd.models.backbones import FDViT
from mmfd.models.heads import FDHead, whiten
from mmfd.models.teachers.base import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, BaseTeacher
from mmfd.utils.errors import ConfigError

TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64)


@MODELS.register_module(force=True)
class ToyTeacher(BaseTeacher):
    """A minimal teacher for algorithm tests: patch conv + LayerNorm, remembers its
    last input so tests can check what it was given."""

    def __init__(self,
                 embed_dim=48,
                 patch_size=14,
                 img_size=112,
                 has_cls=True,
                 mean=None,
                 std=None):
        super().__init__()
        self.embed_dim, self.patch_size, self.img_size = embed_dim, patch_size, img_size
        self.has_cls = has_cls
        if mean is not None:
            self.mean, self.std = mean, std
        self.proj = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        self.cls = nn.Parameter(torch.randn(1, 1, embed_dim))
        self.drop = nn.Dropout(0.5)  # must never be active
        self.norm = nn.LayerNorm(embed_dim)
        self.freeze()

    def forward_tokens(self, images):
        self.last_input = images
        x = self.proj(images).flatten(2).transpose(1, 2)
        if self.has_cls:
            x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1)
        return self.norm(self.drop(x))


def build_fd(input_size=112, patch=16, align='resize_input', teacher=None, head=None, **kwargs):
    torch.manual_seed(0)
    model = FeatureDistiller(
        backbone=dict(
            type='FDViT', arch=TINY_ARCH, img_size=input_size, patch_size=patch, drop_path_rate=0.),
        teacher=dict(type='ToyTeacher', **(teacher or {})),
        head=head,
        input_size=input_size,
        align=align,
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=IMAGENET_MEAN, std=IMAGENET_STD, to_rgb=True),
        **kwargs)
    model.init_weights()
    return model


# ------------------------------------------------------------------ head
def test_whitening_is_non_parametric_layer_norm():
    x = torch.randn(2, 5, 7) * 3 + 1
    torch.testing.assert_close(whiten(x), F.layer_norm(x, (7, ), eps=1e-5))
    # closed form: per token mean 0, biased variance 1 (up to eps)
    mean = x.mean(-1, keepdim=True)
    var = x.var(-1, unbiased=False, keepdim=True)
    torch.testing.assert_close(whiten(x), (x - mean) / torch.sqrt(var + 1e-5))


def test_head_loss_is_smooth_l1_beta2_on_whitened_target():
    head = FDHead(8, 12)
    head.init_weights()
    student, target = torch.randn(3, 5, 8), torch.randn(3, 5, 12) * 4
    expected = nn.SmoothL1Loss(beta=2.0)(head.proj(student), F.layer_norm(target, (12, )))
    torch.testing.assert_close(head.loss(student, target)['loss'], expected)
    # And element-wise by hand, so the beta is really 2.
    d = (head.proj(student) - F.layer_norm(target, (12, ))).abs()
    by_hand = torch.where(d < 2.0, 0.5 * d**2 / 2.0, d - 1.0).mean()
    torch.testing.assert_close(head.loss(student, target)['loss'], by_hand)


# ------------------------------------------------------------------ student
def test_fdvit_matches_release_architecture():
    model = FDViT(arch=TINY_ARCH, img_size=64, patch_size=16)
    assert model.pos_embed is None
    assert model.rel_pos_bias is not None
    assert all(layer.attn.relative_position_bias_table is None for layer in model.layers)
    # one table shared by all blocks: (2*4-1)^2 + 3 CLS entries, per head
    assert model.rel_pos_bias.relative_position_bias_table.shape == (7 * 7 + 3, 4)
    assert all(torch.all(layer.gamma_1 == 0.1) for layer in model.layers)
    attn = model.layers[0].attn
    assert attn.q_bias is not None and attn.v_bias is not None and attn.qkv.bias is None
    assert model.layers[0].ln1.eps == 1e-6
    out = model(torch.randn(2, 3, 64, 64))[0]
    assert out.shape == (2, 1 + 16, 32)


def test_fdvit_release_init():
    torch.manual_seed(0)
    arch = dict(TINY_ARCH, num_layers=4)
    model = FDViT(arch=arch, img_size=64)
    model.init_weights()
    for i, layer in enumerate(model.layers, start=1):
        for w in (layer.attn.proj.weight, layer.ffn.layers[1].weight):
            bound = 0.02 / math.sqrt(2 * i)  # cut at one std, then rescaled
            assert w.abs().max() <= bound + 1e-7
            assert w.abs().max() > 0.9 * bound
        qkv = layer.attn.qkv.weight
        assert qkv.abs().max() <= 0.02 + 1e-7 and qkv.std() > 0.01
    assert model.cls_token.abs().max() <= 0.02


@pytest.mark.parametrize('train', [False, True])
def test_fused_attention_equals_explicit_path(train):
    torch.manual_seed(0)
    model = FDViT(arch=TINY_ARCH, img_size=64, drop_path_rate=0.)
    model.init_weights()
    with torch.no_grad():  # a non-trivial shared bias
        model.rel_pos_bias.relative_position_bias_table.normal_(0, 1)
    model.train(train)
    x = torch.randn(2, 3, 64, 64)
    fused = model(x)[0]
    for layer in model.layers:
        layer.attn.fused = False
    explicit = model(x)[0]
    torch.testing.assert_close(fused, explicit, rtol=1e-5, atol=1e-5)


def test_fdvit_loads_into_plain_beitvit():
    """Same names and shapes as BEiTViT: FD checkpoints are BEiT-compatible."""
    from mmpretrain.models.backbones import BEiTViT
    fd = FDViT(arch=TINY_ARCH, img_size=64)
    beit = BEiTViT(
        arch=TINY_ARCH,
        img_size=64,
        use_abs_pos_emb=False,
        use_rel_pos_bias=False,
        use_shared_rel_pos_bias=True,
        final_norm=True,
        out_type='raw')
    beit.load_state_dict(fd.state_dict(), strict=True)
    x = torch.randn(1, 3, 64, 64)
    fd.eval(), beit.eval()
    torch.testing.assert_close(fd(x)[0], beit(x)[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ teacher
def test_teacher_is_frozen_and_stays_in_eval():
    model = build_fd()
    model.train()
    assert not model.teacher.training
    assert all(not m.training for m in model.teacher.modules())
    assert all(not p.requires_grad for p in model.teacher.parameters())
    loss = model.loss(torch.randn(2, 3, 112, 112))['loss']
    loss.backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.backbone.patch_embed.projection.weight.grad is not None


def test_teacher_absent_from_state_dict_and_kept_on_load():
    model = build_fd()
    state = model.state_dict()
    assert not [k for k in state if k.startswith('teacher.')]
    assert any(k.startswith('backbone.') for k in state)
    assert any(k.startswith('head.') for k in state)

    other = build_fd()
    teacher_before = {k: v.clone() for k, v in other.teacher.state_dict().items()}
    other.load_state_dict(state, strict=True)
    for k, v in other.teacher.state_dict().items():
        assert torch.equal(v, teacher_before[k])  # teacher keeps its own weights
    for k, v in other.state_dict().items():
        assert torch.equal(v, state[k])  # student and head are loaded

    # mmengine's own recursive state-dict writer honours the hook too
    from mmengine.runner.checkpoint import get_state_dict
    assert not [k for k in get_state_dict(model) if k.startswith('teacher.')]


def test_ddp_ignores_the_teacher():
    model = build_fd()
    ignored = set(model._ddp_params_and_buffers_to_ignore)
    names = {n for n, _ in model.named_parameters() if n.startswith('teacher.')}
    assert names and names <= ignored


# ------------------------------------------------------------------ alignment
def test_resize_input_aligns_a_patch14_teacher_to_a_patch16_student():
    model = build_fd(input_size=112, align='resize_input')  # student 7x7, teacher p14
    assert model.student_grid == (7, 7)
    assert model.teacher_input_size == (98, 98)
    x = torch.randn(2, 3, 112, 112)
    target, has_cls = model.compute_target(x)
    assert has_cls and target.shape == (2, 1 + 49, 48)
    # The release resizes the teacher's view as torchvision's Resize does.
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resize
    view = resize(x, [98, 98], interpolation=InterpolationMode.BILINEAR, antialias=True)
    torch.testing.assert_close(model.teacher_input(x), view, rtol=0, atol=1e-6)
    torch.testing.assert_close(target, model.teacher(view).tokens)


def test_teacher_view_resize_is_an_option():
    model = build_fd(input_size=112, teacher_view_resize=dict(mode='bicubic', antialias=False))
    x = torch.randn(2, 3, 112, 112)
    expected = F.interpolate(x, size=(98, 98), mode='bicubic', align_corners=False)
    torch.testing.assert_close(model.teacher_input(x), expected, rtol=0, atol=0)
    with pytest.raises(ConfigError, match=r'model.teacher_view_resize takes mode and antialias'):
        build_fd(teacher_view_resize=dict(mode='bilinear', align_corners=True))


def test_interpolate_target_aligns_a_patch14_teacher_to_a_patch16_student():
    model = build_fd(input_size=112, align='interpolate_target')
    assert model.teacher_input_size == (112, 112)  # the teacher's own size
    x = torch.randn(2, 3, 112, 112)
    target, _ = model.compute_target(x)
    full = model.teacher(x).tokens  # 8x8 grid + CLS
    assert full.shape[1] == 1 + 64
    fmap = full[:, 1:].transpose(1, 2).reshape(2, 48, 8, 8)
    patches = F.interpolate(fmap, size=(7, 7), mode='bilinear', align_corners=False)
    expected = torch.cat([full[:, :1], patches.flatten(2).transpose(1, 2)], 1)
    torch.testing.assert_close(target, expected)
    assert model.loss(x)['loss'].isfinite()


def test_unalignable_grid_fails_at_build_time():
    with pytest.raises(ConfigError, match=r'Teacher grid \(8, 8\).*student grid \(7, 7\)'):
        build_fd(input_size=112, align='none')


def test_mismatched_widths_fail_at_build_time():
    with pytest.raises(ConfigError, match='head.out_channels=64.*outputs 48'):
        build_fd(head=dict(out_channels=64))
    with pytest.raises(ConfigError, match='head.in_channels=16.*outputs 32'):
        build_fd(head=dict(in_channels=16))
    with pytest.raises(ConfigError, match='align'):
        build_fd(align='stretch')


def test_clip_teacher_sees_clip_normalised_pixels():
    model = build_fd(teacher=dict(mean=CLIP_MEAN, std=CLIP_STD, patch_size=16))
    assert model.renormalise
    pixels = torch.rand(2, 3, 112, 112) * 255
    pre = model.data_preprocessor
    x = (pixels - pre.mean) / pre.std  # ImageNet view
    model.compute_target(x)
    seen = model.teacher.last_input
    clip_mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    clip_std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(seen, (pixels - clip_mean) / clip_std, rtol=1e-4, atol=1e-4)


def test_imagenet_teacher_gets_the_view_unchanged():
    model = build_fd(teacher=dict(patch_size=16))
    assert not model.renormalise
    x = torch.randn(1, 3, 112, 112)
    model.compute_target(x)
    assert torch.equal(model.teacher.last_input, x)


def test_cls_handling():
    x = torch.randn(2, 3, 112, 112)
    with_cls = build_fd(teacher=dict(patch_size=16))
    no_cls = build_fd(teacher=dict(patch_size=16), include_cls=False)
    teacher_has_no_cls = build_fd(teacher=dict(patch_size=16, has_cls=False))
    for model, n_tokens in ((with_cls, 50), (no_cls, 49), (teacher_has_no_cls, 49)):
        seen = {}
        model.head.proj.register_forward_hook(lambda m, i, o: seen.update(n=o.shape[1]))
        model.loss(x)
        assert seen['n'] == n_tokens


def test_unstacked_batch_gets_a_clear_error():
    model = build_fd(teacher=dict(patch_size=16))
    with pytest.raises(ConfigError, match='default_collate'):
        model.loss([torch.randn(3, 112, 112), torch.randn(3, 112, 112)])


@pytest.mark.parametrize('after_norm', [True, False])
def test_target_before_or_after_the_teachers_final_norm(tmp_path, after_norm):
    """Default: tokens after the teacher's own final LayerNorm (timm forward_features);
    the ablation takes the tokens that enter that norm."""
    import timm.models.vision_transformer as tv
    from fd_fixtures import make_timm_vit_checkpoint
    path = make_timm_vit_checkpoint(tmp_path / 'vit.pth', patch_size=16, img_size=112)
    arch = dict(patch_size=16, embed_dim=48, depth=2, num_heads=2)
    model = FeatureDistiller(
        backbone=dict(type='FDViT', arch=TINY_ARCH, img_size=112, drop_path_rate=0.),
        teacher=dict(type='ViTTeacher', arch=arch, img_size=112, checkpoint=str(path)),
        input_size=112,
        target_after_final_norm=after_norm,
        data_preprocessor=dict(
            type='SelfSupDataPreprocessor', mean=IMAGENET_MEAN, std=IMAGENET_STD))
    reference = tv.VisionTransformer(
        img_size=112, patch_size=16, embed_dim=48, depth=2, num_heads=2, num_classes=10).eval()
    reference.load_state_dict(torch.load(path, weights_only=True)['model'])
    if not after_norm:
        reference.norm = nn.Identity()
    x = torch.randn(2, 3, 112, 112)
    target, _ = model.compute_target(x)
    with torch.no_grad():
        torch.testing.assert_close(target, reference.forward_features(x), rtol=1e-5, atol=1e-5)


def test_fdvit_own_init_does_not_overwrite_strictly_loaded_weights(tmp_path):
    torch.manual_seed(1)
    source = FDViT(arch=TINY_ARCH, img_size=64)
    with torch.no_grad():
        for p in source.parameters():
            p.normal_()
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'student.pth')
    loaded = FDViT(
        arch=TINY_ARCH,
        img_size=64,
        init_cfg=dict(type='StrictPretrained', checkpoint=str(tmp_path / 'student.pth')))
    loaded.init_weights()
    for key, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_builds_under_another_toolboxs_default_scope():
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = build_fd(teacher=dict(patch_size=16))
    assert type(model.data_preprocessor).__name__ == 'SelfSupDataPreprocessor'


@MODELS.register_module(force=True)
class ToyConvStudent(nn.Module):
    """A student mmfd knows nothing about: a strided conv feature map."""

    def __init__(self, width=24, stride=16, tokens=False):
        super().__init__()
        self.conv = nn.Conv2d(3, width, stride, stride)
        self.tokens = tokens

    def forward(self, x):
        out = self.conv(x)
        return (out.flatten(2).transpose(1, 2) if self.tokens else out, )


def test_other_students_are_measured_from_their_feature_map():
    model = FeatureDistiller(
        backbone=dict(type='ToyConvStudent'),
        teacher=dict(type='ToyTeacher', patch_size=16),
        input_size=112)
    assert model.student_grid == (7, 7) and model.head.proj.in_features == 24
    assert model.loss(torch.randn(2, 3, 112, 112))['loss'].isfinite()
    with pytest.raises(ConfigError, match='Cannot tell the token grid'):
        FeatureDistiller(
            backbone=dict(type='ToyConvStudent', tokens=True),
            teacher=dict(type='ToyTeacher', patch_size=16),
            input_size=112)
