"""The five paper configs: the release's numbers, and each builds its real-width
model (random teacher weights) and runs one forward/backward."""
import pytest
import torch
from config_names import fd_config
from mmengine.config import Config
from mmpretrain.registry import MODELS

import mmfd  # noqa: F401

PAPER = {
    # config: (teacher type, teacher width, student width, tokens, drop path, lr/512)
    'clip_vitb': ('CLIPTeacher', 768, 768, 197, 0.2, 3e-4),
    'clip_vitl': ('CLIPTeacher', 1024, 1024, 257, 0.3, 3e-4),
    'dino_vitb': ('DINOTeacher', 768, 768, 197, 0.3, 3e-4),
    'deit_vitb': ('DeiTTeacher', 768, 768, 197, 0.3, 3e-4),
    'esvit_swinb': ('EsViTTeacher', 1024, 1024, 49, 0.3, 2e-4),
}


def load(name):
    return Config.fromfile(fd_config(name))


@pytest.mark.parametrize('name', sorted(PAPER))
def test_config_follows_the_release(name):
    teacher, _, _, _, drop_path, lr = PAPER[name]
    cfg = load(name)
    assert cfg.model.type == 'FeatureDistiller'
    assert cfg.model.teacher.type == teacher
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.head.beta == 2.0
    optim = cfg.optim_wrapper
    assert optim.optimizer.type == 'AdamW' and optim.optimizer.lr == lr
    assert optim.optimizer.betas == (0.9, 0.999) and optim.optimizer.eps == 1e-8
    assert optim.optimizer.weight_decay == 0.05
    assert optim.clip_grad.max_norm == 3.0
    assert optim.type == 'FDOptimWrapper' and optim.amp == 'auto'
    assert optim.max_consecutive_nonfinite == 10
    assert cfg.default_hooks.checkpoint.type == 'AtomicCheckpointHook'
    assert cfg.train_dataloader.dataset.type == 'ImageNet'  # mm-standard override paths
    assert optim.paramwise_cfg.flat_decay_mult == 0.0  # 1-D params, layer scale
    assert optim.paramwise_cfg.bias_decay_mult == 0.0
    assert cfg.auto_scale_lr == dict(base_batch_size=512, enable=True)
    assert cfg.train_cfg.max_epochs == 300
    warmup, cosine = cfg.param_scheduler
    swin = name.startswith('esvit')
    assert warmup.end == 10 and warmup.convert_to_iter_based
    # per 512 images, as ratios of the base lr: they scale with the batch like it
    assert warmup.start_factor * lr == pytest.approx(1e-6 if swin else 5e-7)
    assert cosine.eta_min_ratio * lr == pytest.approx(1e-5 if swin else 5e-6)
    assert 'eta_min' not in cosine and cosine.convert_to_iter_based
    crop = cfg.train_pipeline[1]
    assert crop.type == 'RandomResizedCrop' and crop.crop_ratio_range == (0.08, 1.0)
    assert crop.interpolation == 'bilinear'
    assert [t.type for t in cfg.train_pipeline
            ] == ['SafeLoadImageFromFile', 'RandomResizedCrop', 'RandomFlip', 'PackInputs']
    assert cfg.train_dataloader.dataset.pipeline == cfg.train_pipeline


# Student depths/params of the paper's students (full depth, real widths).
STUDENT_DEPTH = {
    'clip_vitb': 12,
    'clip_vitl': 24,
    'dino_vitb': 12,
    'deit_vitb': 12,
    'esvit_swinb': 24
}


def build(cfg, init=True):
    cfg.model.teacher.checkpoint = None
    cfg.model.teacher.allow_random_init = True  # no weights can be downloaded here
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if init:
        model.init_weights()
    return model.train()


@pytest.mark.parametrize('name', sorted(PAPER))
def test_config_builds_real_model_and_trains_one_step(name):
    """Full model: real widths and depths; the teacher's target has the student's
    token count. The backward pass runs on a 2-block student of the same widths
    (the full-depth backward adds minutes on 2 CPU cores and no coverage)."""
    _, t_width, s_width, tokens, _, _ = PAPER[name]
    cfg = load(name)
    # The full-depth student is only counted: its init (seconds per 100 M
    # parameters) is skipped; the 2-block student below is initialised.
    model = build(cfg.copy(), init=False)
    depth = (
        sum(len(stage.blocks) for stage in model.backbone.stages) if hasattr(
            model.backbone, 'stages') else len(model.backbone.layers))
    assert depth == STUDENT_DEPTH[name]
    assert model.teacher.embed_dim == t_width
    assert model.head.proj.in_features == s_width
    assert model.head.proj.out_features == t_width
    x = torch.randn(1, 3, 224, 224)
    target, _ = model.compute_target(x)
    assert target.shape == (1, tokens, t_width)
    assert torch.isfinite(target).all()

    if name.startswith('esvit'):
        cfg.model.backbone.arch = dict(
            embed_dims=128,
            depths=[1, 1, 1, 1],
            num_heads=[4, 8, 16, 32],
            extra_norm_every_n_blocks=0)
    else:
        arch = 'large' if name == 'clip_vitl' else 'base'
        dims = dict(base=(768, 12, 3072), large=(1024, 16, 4096))[arch]
        cfg.model.backbone.arch = dict(
            embed_dims=dims[0], num_layers=2, num_heads=dims[1], feedforward_channels=dims[2])
    model.backbone = MODELS.build(cfg.model.backbone)
    model.backbone.init_weights()
    model.head.init_weights()
    model.train()
    loss = model.loss(x)['loss']
    loss.backward()
    assert torch.isfinite(loss)
    assert model.head.proj.weight.grad is not None
    assert model.backbone.patch_embed.projection.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


@pytest.mark.parametrize('student', ['base', 'small'])
def test_resize_input_sets_the_teacher_size_for_the_user(tmp_path, student):
    """CLIP-L/14 teacher (2 of its blocks) under ViT-B/16 and ViT-S/16 students at
    224 px: the config does not set teacher.img_size; FD builds the teacher for the
    196 px it feeds it, and the target is that teacher run at 196 px."""
    import open_clip

    from mmfd.models.teachers import CLIPTeacher
    clip_l = open_clip.get_model_config('ViT-L-14')
    clip_l['vision_cfg']['layers'] = 2
    clip_l['quick_gelu'] = True
    torch.manual_seed(0)
    source = CLIPTeacher(arch=clip_l, allow_random_init=True)
    checkpoint = tmp_path / 'clip_l14.pth'
    torch.save(source.export_state_dict(), checkpoint)

    cfg = load('clip_vitl')
    assert 'img_size' not in cfg.model.teacher and cfg.model.align == 'resize_input'
    cfg.model.teacher.update(arch=clip_l, checkpoint=str(checkpoint))
    dims = dict(base=(768, 12, 3072), small=(384, 6, 1536))[student]
    cfg.model.backbone.update(
        arch=dict(
            embed_dims=dims[0], num_layers=2, num_heads=dims[1], feedforward_channels=dims[2]),
        patch_size=16)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    assert model.student_grid == (14, 14)
    assert model.teacher.img_size == 196 and model.teacher_input_size == (196, 196)
    assert model.teacher.visual.positional_embedding.shape == (1 + 14 * 14, 1024)

    reference = CLIPTeacher(arch=clip_l, checkpoint=str(checkpoint), img_size=196)
    x = torch.randn(1, 3, 224, 224)
    target, has_cls = model.compute_target(x)
    view = model.teacher_input(x)
    assert view.shape[-2:] == (196, 196) and has_cls
    torch.testing.assert_close(target, reference(view).tokens, rtol=0, atol=1e-5)
    assert model.loss(x)['loss'].isfinite()


# Teachers and students beyond the paper: config -> (teacher width, target tokens,
# teacher px, student width, teacher depth built). timm teachers keep their width,
# patch, native size, prefix tokens and statistics but build 2 of their blocks
# (their random init at full depth costs ~10 s each on 2 CPU cores and adds no
# coverage: the blocks are timm's, compared with timm in test_teachers_timm.py).
MODERN = {
    'dinov2_vitb14reg_vitb16': (768, 197, 196, 768, 2),  # registers dropped
    'siglip2_vitb16_vitb16': (768, 196, 224, 768, 2),  # no CLS: patches only
    'dinov3_vitb16_vitb16': (768, 197, 224, 768, 2),  # RoPE, 256 -> 224
    'dinov2l_vitb16': (1024, 197, 196, 768, 2),
    'eva02clip_vitl14_vitb16': (1024, 197, 196, 768, 2),
    'pe_core_l14_vitb16': (1024, 197, 196, 768, 2),  # 336 -> 196
    'clip_vitb_vits16': (768, 197, 224, 384, None),  # a smaller student
}


@pytest.mark.parametrize('name', sorted(MODERN))
def test_modern_config_builds_real_model_and_trains_one_step(name):
    """Real-width teacher (random weights) under the config's student, shrunk to 2
    blocks of its real width (its full depth is the paper configs' FDViT, built
    above): the target has the student's grid; one forward/backward."""
    width, tokens, teacher_px, student_width, teacher_depth = MODERN[name]
    cfg = load(name)
    assert 'img_size' not in cfg.model.teacher and cfg.model.backbone.patch_size == 16
    if teacher_depth:
        cfg.model.teacher.model_kwargs = dict(depth=teacher_depth)
    heads = student_width // 64
    cfg.model.backbone.arch = dict(
        embed_dims=student_width,
        num_layers=2,
        num_heads=heads,
        feedforward_channels=4 * student_width)
    model = build(cfg.copy())
    assert model.teacher.img_size == teacher_px and model.teacher.embed_dim == width
    assert model.head.proj.in_features == student_width and model.head.proj.out_features == width
    x = torch.randn(1, 3, 224, 224)
    target, _ = model.compute_target(x)
    assert target.shape == (1, tokens, width) and torch.isfinite(target).all()
    loss = model.loss(x)['loss']
    loss.backward()
    assert torch.isfinite(loss) and model.head.proj.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())


def test_smaller_student_config_is_deit_small():
    arch = load('clip_vitb_vits16').model.backbone.arch
    from mmpretrain.models.backbones import VisionTransformer
    assert VisionTransformer.arch_zoo[arch]['embed_dims'] == 384


# Multi-teacher configs: name -> {teacher: (width, target tokens, teacher px)}
MULTI = {
    'clip_dino_vitb16': dict(clip=(768, 197, 224), dino=(768, 197, 224)),
    'siglip2_dinov2reg_vitb16': dict(siglip=(768, 196, 224), dinov2=(768, 197, 196)),
}


@pytest.mark.parametrize('name', sorted(MULTI))
def test_multi_teacher_config_builds_and_trains_one_step(name):
    """Real-width teachers (2 of their blocks) and a 2-block ViT-B/16-wide student:
    one target per teacher on the student's grid, one loss per teacher."""
    import open_clip
    cfg = load(name)
    assert cfg.model.teacher is None and set(cfg.model.teachers) == set(MULTI[name])
    for teacher in cfg.model.teachers.values():
        teacher.checkpoint, teacher.allow_random_init = None, True
        if teacher.type == 'TimmTeacher':
            teacher.model_kwargs = dict(depth=2)
        elif teacher.type == 'CLIPTeacher':
            arch = open_clip.get_model_config('ViT-B-16')
            arch['vision_cfg']['layers'], arch['quick_gelu'] = 2, True
            teacher.arch = arch
        else:
            teacher.arch = dict(patch_size=16, embed_dim=768, depth=2, num_heads=12)
    cfg.model.backbone.arch = dict(
        embed_dims=768, num_layers=2, num_heads=12, feedforward_channels=3072)
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.train()
    x = torch.randn(1, 3, 224, 224)
    for teacher, (width, tokens, px) in MULTI[name].items():
        assert model.teacher_input_sizes[teacher] == (px, px)
        target, _ = model.compute_target(x, teacher)
        assert target.shape == (1, tokens, width) and torch.isfinite(target).all()
    losses = model.loss(x)
    assert set(losses) == {f'loss_{t}' for t in MULTI[name]}
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teachers.parameters())
