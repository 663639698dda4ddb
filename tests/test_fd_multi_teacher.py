"""Multi-teacher FD: several teachers, one student, each with its own geometry,
statistics, head and loss."""
import socket

import pytest
import torch
import torch.nn.functional as F
from fd_fixtures import (make_image_folder, make_timm_vit_checkpoint, read_scalars, run_train,
                         train_in_process)
from teacher_fixtures import build_open_clip, tiny_clip_config

import mmfd  # noqa: F401
from mmfd.models.algorithms.fd import FeatureDistiller
from mmfd.models.teachers import IMAGENET_MEAN, IMAGENET_STD, CLIPTeacher, ViTTeacher
from mmfd.utils.errors import ConfigError

STUDENT = dict(
    type='FDViT',
    arch=dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64),
    img_size=64,
    patch_size=16,
    drop_path_rate=0.1)  # the recipe's randomness stays on
PREPROCESSOR = dict(
    type='SelfSupDataPreprocessor', mean=IMAGENET_MEAN, std=IMAGENET_STD, to_rgb=True)
VIT_ARCH = dict(patch_size=8, embed_dim=48, depth=2, num_heads=2)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    """A patch-8 ViT (ImageNet statistics, 48 wide, 32 px) and a patch-16 CLIP tower
    (CLIP statistics, 64 wide, 64 px): different widths, patches and statistics."""
    root = tmp_path_factory.mktemp('teachers')
    vit = make_timm_vit_checkpoint(root / 'deit.pth', patch_size=8, embed_dim=48, img_size=32)
    clip_config = tiny_clip_config(width=64, patch=16, image=64)
    clip = root / 'clip.bin'
    torch.save(build_open_clip(clip_config).state_dict(), clip)
    return dict(vit=str(vit), clip=str(clip), clip_config=clip_config)


def vit_cfg(files):
    return dict(type='ViTTeacher', arch=VIT_ARCH, img_size=32, checkpoint=files['vit'])


def clip_cfg(files):
    return dict(type='CLIPTeacher', arch=files['clip_config'], checkpoint=files['clip'])


def build(seed=0, **kwargs):
    torch.manual_seed(seed)
    model = FeatureDistiller(
        backbone=STUDENT, input_size=64, data_preprocessor=PREPROCESSOR, **kwargs)
    model.init_weights()
    return model.train()


def test_one_teacher_in_teachers_is_the_single_teacher(files):
    """The same teacher through `teacher=` and `teachers=dict(t=...)`: same loss and
    gradients on the same weights and input (drop path on, same seed)."""
    single = build(teacher=vit_cfg(files))
    multi = build(teachers=dict(t=vit_cfg(files)))
    assert multi.heads.t.proj.weight.equal(single.head.proj.weight)
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(1)
    loss_single = single.loss(x)['loss']
    torch.manual_seed(1)
    loss_multi = multi.loss(x)['loss_t']
    assert abs(loss_single.item() - loss_multi.item()) <= 1e-6
    loss_single.backward()
    loss_multi.backward()
    grads = dict(multi.named_parameters())
    for name, param in single.named_parameters():
        if param.grad is None:
            continue
        twin = grads[name.replace('head.', 'heads.t.')]
        torch.testing.assert_close(param.grad, twin.grad, rtol=0, atol=1e-6)


def test_each_teacher_gets_its_own_view_and_the_loss_is_their_weighted_sum(files):
    model = build(
        teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)),
        loss_weights=dict(vit=0.5, clip=2.0))
    assert model.teacher_input_sizes == dict(vit=(32, 32), clip=(64, 64))
    x = torch.randn(2, 3, 64, 64)

    # Each teacher alone, on the view computed here by hand.
    vit = ViTTeacher(arch=VIT_ARCH, img_size=32, checkpoint=files['vit'])
    from torchvision.transforms.v2 import InterpolationMode
    from torchvision.transforms.v2.functional import resize
    vit_view = resize(x, [32, 32], interpolation=InterpolationMode.BILINEAR, antialias=True)
    clip = CLIPTeacher(arch=files['clip_config'], checkpoint=files['clip'])
    mean_in, std_in = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    mean_t, std_t = torch.tensor(clip.mean), torch.tensor(clip.std)
    clip_view = (x * std_in.view(1, 3, 1, 1) + mean_in.view(1, 3, 1, 1) -
                 mean_t.view(1, 3, 1, 1)) / std_t.view(1, 3, 1, 1)
    expected = dict(vit=vit(vit_view).tokens, clip=clip(clip_view).tokens)
    for name in ('vit', 'clip'):
        target, has_cls = model.compute_target(x, name)
        assert has_cls
        torch.testing.assert_close(target, expected[name], rtol=0, atol=1e-5)

    # The loss dict: loss_<name> = weight x whitened Smooth-L1, computed by hand.
    torch.manual_seed(3)
    losses = model.loss(x)
    torch.manual_seed(3)
    student = model.backbone(x)[-1]
    for name, weight in (('vit', 0.5), ('clip', 2.0)):
        pred = model.heads[name].proj(student)
        target = F.layer_norm(expected[name], expected[name].shape[-1:], eps=1e-5)
        by_hand = weight * F.smooth_l1_loss(pred, target, beta=2.0)
        assert abs(losses[f'loss_{name}'].item() - by_hand.item()) <= 1e-5
    total, log_vars = model.parse_losses(losses)
    assert set(log_vars) == {'loss', 'loss_vit', 'loss_clip'}
    assert abs(total.item() - (losses['loss_vit'] + losses['loss_clip']).item()) <= 1e-6

    # Teachers are never saved, and reload.
    state = model.state_dict()
    assert not [k for k in state if k.startswith(('teachers.', 'teacher.'))]
    assert 'heads.vit.proj.weight' in state and 'heads.clip.proj.weight' in state
    model.load_state_dict(state)
    assert set(model._ddp_params_and_buffers_to_ignore) >= {
        'teachers.vit.' + n
        for n, _ in model.teachers.vit.named_parameters()
    }


def test_mlp_adaptor_head(files):
    model = build(
        teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)),
        head=dict(beta=2.0),
        heads=dict(clip=dict(adaptor='mlp', hidden_channels=96)))
    kinds = [type(m).__name__ for m in model.heads.clip.proj]
    assert kinds == ['Linear', 'LayerNorm', 'GELU', 'Linear']
    assert model.heads.clip.proj[0].out_features == 96 and model.heads.clip.proj[
        3].out_features == 64
    assert isinstance(model.heads.vit.proj, torch.nn.Linear)
    losses = model.loss(torch.randn(2, 3, 64, 64))
    sum(losses.values()).backward()
    assert model.heads.clip.proj[0].weight.grad is not None


def test_optimizer_leaves_every_teacher_out(files):
    from mmengine.optim import build_optim_wrapper
    model = build(teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)))
    wrapper = build_optim_wrapper(
        model,
        dict(
            type='OptimWrapper',
            constructor='FDOptimWrapperConstructor',
            optimizer=dict(type='AdamW', lr=1e-3)))
    optimised = {id(p) for group in wrapper.optimizer.param_groups for p in group['params']}
    assert not optimised & {id(p) for p in model.teachers.parameters()}
    assert {id(p) for p in model.heads.parameters()} <= optimised
    assert 'teachers' in model._modules  # put back


@pytest.mark.parametrize('kwargs, message', [
    (dict(teacher='VIT', teachers=dict(a='VIT')), 'exactly one of model.teacher'),
    (dict(teachers={'a-b': 'VIT'}), "'a-b' is not a valid teacher name"),
    (dict(teachers=dict(a='VIT'), heads=dict(b={})), r"model.heads names \['b'\]"),
    (dict(teachers=dict(a='VIT', b='VIT'), loss_weights=dict(a=0.0, b=0.0)), 'positive sum'),
    (dict(teachers=dict(a='VIT'), loss_weights=dict(a=-1.0)), 'weights must be >= 0'),
    (dict(teachers=dict(a='VIT', b='VIT'), align=dict(b='none')),
     r"Teacher grid \(8, 8\) of model.teachers.b.*model.align\['b'\]='none'"),
])
def test_bad_multi_teacher_configs_fail_at_build(files, kwargs, message):

    def resolve(value):
        return vit_cfg(files) if value == 'VIT' else value

    kwargs = {
        k: ({
            n: resolve(v)
            for n, v in val.items()
        } if isinstance(val, dict) else resolve(val))
        for k, val in kwargs.items()
    }
    with pytest.raises(ConfigError, match=message):
        build(**kwargs)


def test_two_teacher_training_run(tmp_path, files):
    """tools/train.py on generated images: each teacher's loss falls over 30
    iterations, the checkpoint holds no teacher weight, and --resume from the
    iteration-30 checkpoint reaches the uninterrupted run's iteration 35 bit for bit
    (weights and AdamW state)."""
    from reliability_fixtures import assert_bitwise_equal, final_state
    images = make_image_folder(tmp_path / 'images', n=16)
    options = [
        f'train_dataloader.dataset.data_root={images}',
        f'model.teachers.vit.checkpoint={files["vit"]}',
        f'model.teachers.clip.checkpoint={files["clip"]}', 'train_cfg.max_iters=35'
    ]
    config = 'tests/configs/tiny_fd_two_teachers.py'
    work = tmp_path / 'work'
    train_in_process([config, '--work-dir', work, '--cfg-options', *options])
    for key in ('loss_vit', 'loss_clip'):
        values = read_scalars(work, key)[:30]
        assert len(values) == 30
        assert sum(values[-5:]) / 5 < 0.8 * sum(values[:5]) / 5, (key, values)
    ckpt = torch.load(work / 'iter_30.pth', weights_only=True)
    assert not [k for k in ckpt['state_dict'] if k.startswith(('teachers.', 'teacher.'))]
    resumed = tmp_path / 'resumed'
    train_in_process([
        config, '--work-dir', resumed, '--resume', work / 'iter_30.pth', '--cfg-options', *options
    ])
    reference, got = final_state(work / 'iter_35.pth'), final_state(resumed / 'iter_35.pth')
    assert_bitwise_equal(reference['model'], got['model'], 'state_dict')
    assert_bitwise_equal(reference['optimizer'], got['optimizer'], 'optimizer')


def test_teacher_keep_mask_statistics():
    """Per image the highest-loss teacher is always kept; each other teacher is kept
    with probability 1 - p (binomial bounds, 5 standard deviations)."""
    from mmfd.models.algorithms.fd import teacher_keep_mask
    torch.manual_seed(0)
    losses = torch.rand(3, 20000)
    keep = teacher_keep_mask(losses, 0.5)
    best = losses.argmax(0)
    assert bool(keep[best, torch.arange(20000)].all())
    others = torch.ones_like(keep, dtype=torch.bool)
    others[best, torch.arange(20000)] = False
    n = int(others.sum())
    rate = float(keep[others].mean())
    assert abs(rate - 0.5) < 5 * (0.25 / n)**0.5, rate
    assert bool((teacher_keep_mask(losses, 1.0).sum(0) == 1).all())  # only the best
    assert bool((teacher_keep_mask(losses, 0.0) == 1).all())


def test_teacher_dropping_loss_by_hand(files):
    model = build(teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)), teacher_drop_prob=1.0)
    x = torch.randn(4, 3, 64, 64)
    torch.manual_seed(5)
    losses = model.loss(x)
    torch.manual_seed(5)
    student = model.backbone(x)[-1]
    per_image = {}
    for name in ('vit', 'clip'):
        target = model.compute_target(x, name)[0]
        target = F.layer_norm(target, target.shape[-1:], eps=1e-5)
        pred = model.heads[name].proj(student)
        per_image[name] = F.smooth_l1_loss(pred, target, beta=2.0, reduction='none').mean((1, 2))
    best_is_vit = per_image['vit'] >= per_image['clip']
    for name, mask in (('vit', best_is_vit), ('clip', ~best_is_vit)):
        expected = (per_image[name] * mask).mean()
        assert abs(losses[f'loss_{name}'].item() - expected.item()) <= 1e-5
    model.eval()  # no dropping outside training
    assert set(model.loss(x)) == {'loss_vit', 'loss_clip'}
    with pytest.raises(ConfigError, match='teacher_drop_prob'):
        build(teacher=vit_cfg(files), teacher_drop_prob=0.5)


def test_summary_cosine_loss(files):
    model = build(
        teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)),
        heads=dict(clip=dict(summary_loss_weight=0.5)),
        loss_weights=dict(vit=1.0, clip=2.0))
    x = torch.randn(2, 3, 64, 64)
    torch.manual_seed(2)
    losses = model.loss(x)
    assert set(losses) == {'loss_vit', 'loss_clip', 'loss_clip_summary'}
    torch.manual_seed(2)
    student_cls = model.backbone(x)[-1][:, 0]
    teacher_cls = model.compute_target(x, 'clip')[0][:, 0]
    cos = F.cosine_similarity(model.heads.clip.proj(student_cls), teacher_cls, dim=-1)
    expected = 2.0 * 0.5 * (1 - cos).mean()
    assert abs(losses['loss_clip_summary'].item() - expected.item()) <= 1e-5


def test_two_teacher_dist_train_equals_single_process(tmp_path, files):
    """tools/dist_train.sh with 2 gloo ranks x batch 2 reaches the weights (student
    and both heads) of 1 process x batch 4."""
    images = make_image_folder(tmp_path / 'images', n=8)
    options = [
        f'train_dataloader.dataset.data_root={images}',
        f'model.teachers.vit.checkpoint={files["vit"]}',
        f'model.teachers.clip.checkpoint={files["clip"]}',
    ]
    config = 'tests/configs/tiny_fd_two_teachers_deterministic.py'
    single, dist = tmp_path / 'single', tmp_path / 'dist'
    train_in_process([config, '--work-dir', single, '--cfg-options', *options])
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    result = run_train([
        'bash', 'tools/dist_train.sh', config, '2', '--work-dir',
        str(dist), '--cfg-options', *options, 'train_dataloader.batch_size=2'
    ],
                       env={'PORT': str(port)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    a = torch.load(single / 'iter_4.pth', weights_only=True)['state_dict']
    b = torch.load(dist / 'iter_4.pth', weights_only=True)['state_dict']
    assert a.keys() == b.keys() and {'heads.vit.proj.weight', 'heads.clip.proj.weight'} <= set(a)
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5, msg=key)


def test_diagnostics_reach_each_teacher_by_name(files):
    from mmfd.diagnostics import analysis
    from mmfd.engine.hooks import DiagnosticsHook
    model = build(teachers=dict(vit=vit_cfg(files), clip=clip_cfg(files)))
    targets = analysis.select_targets(model, ['student', 'teacher'])
    assert [t.label for t in targets] == ['student', 'teacher:vit', 'teacher:clip']
    assert targets[1].module is model.teachers.vit and targets[2].module is model.teachers.clip
    raw = torch.rand(2, 3, 64, 64) * 255
    mean, std = analysis.preprocessor_stats(model)
    tokens, _ = targets[2].run(raw)
    torch.testing.assert_close(tokens,
                               model.compute_target(analysis.normalise(raw, mean, std), 'clip')[0])
    stats = analysis.attention_statistics(targets[1], raw, batch_size=2)
    report = analysis.attention_report(stats)
    assert len(report['layers']) == 2  # the ViT teacher's two blocks were recorded
    (clip, ) = analysis.select_targets(model, ['teacher:clip'], strict=True)
    assert clip.module is model.teachers.clip
    with pytest.raises(ConfigError, match=r"no teacher named 'sam'; teachers: \['vit', 'clip'\]"):
        analysis.select_targets(model, ['teacher:sam'], strict=True)
    with pytest.raises(ConfigError, match="'teacher:<name>'"):
        DiagnosticsHook(image_dir='x', targets=('student', 'teachers'))
    DiagnosticsHook(image_dir='x', targets=('student', 'teacher:clip'))


def test_interpolate_student_to_each_teachers_grid(files):
    """align='interpolate_student' (RADIO's way): a teacher at its native size keeps
    its own grid (8x8 for the patch-8 ViT at 64 px) and the student's 4x4 map is
    bilinearly resized to it before that teacher's head; the other teacher keeps the
    student grid."""
    vit64 = dict(vit_cfg(files), img_size=64)
    model = build(
        teachers=dict(vit=vit64, clip=clip_cfg(files)),
        align=dict(vit='interpolate_student', clip='none'))
    x = torch.randn(2, 3, 64, 64)
    target, _ = model.compute_target(x, 'vit')
    alone = ViTTeacher(arch=VIT_ARCH, img_size=64, checkpoint=files['vit'])
    torch.testing.assert_close(target, alone(x).tokens, rtol=0, atol=1e-5)  # 1 + 8x8 tokens
    torch.manual_seed(4)
    losses = model.loss(x)
    torch.manual_seed(4)
    student = model.backbone(x)[-1]  # [2, 1 + 16, 32]
    patches = student[:, 1:].transpose(1, 2).reshape(2, 32, 4, 4)
    patches = F.interpolate(patches, size=(8, 8), mode='bilinear', align_corners=False)
    resized = torch.cat([student[:, :1], patches.flatten(2).transpose(1, 2)], 1)
    pred = model.heads.vit.proj(resized)
    whitened = F.layer_norm(target, target.shape[-1:], eps=1e-5)
    expected = F.smooth_l1_loss(pred, whitened, beta=2.0)
    assert abs(losses['loss_vit'].item() - expected.item()) <= 1e-5
    assert torch.isfinite(losses['loss_clip'])
