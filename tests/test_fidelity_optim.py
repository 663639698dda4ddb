"""Optimizers and lr schedules AS BUILT from the shipped configs vs the release's rules.

* Param groups: the optimizer mmengine builds from each config (not its fields) is
  compared, parameter by parameter, with the release's rule written out here:
  no weight decay for 1-D parameters, biases, ``pos_embed``, ``cls_token`` and the
  config family's keywords; lr = base x layer-decay scale d^(depth - i) for the
  fine-tunes, with the release's depth rules for ViT and SwinV2.
* Schedules: a real mmengine Runner scales the lr for a total batch of 512, 1024
  and 2048 and builds the config's schedulers; the lr at iteration 0, at the end of
  the warm-up and at the last iteration must equal the release's closed form
  (timm's cosine with a warm-up prefix) with every per-512 value x batch/512.
"""
import math

import pytest
from config_names import fd_config, finetune_config
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.runner import Runner
from mmpretrain.registry import MODELS

import mmfd  # noqa: F401
from mmfd.engine.optim_wrappers import set_amp

WD = 0.05
TINY_VIT = dict(embed_dims=32, num_layers=3, num_heads=2, feedforward_channels=64)
TINY_SWIN = dict(
    embed_dims=16, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], extra_norm_every_n_blocks=0)


# ------------------------------------------------------------------ models
def fd_model(name):
    """The FD model of configs/fd/NAME.py with a tiny student and a random teacher."""
    cfg = Config.fromfile(fd_config(name))
    teacher = cfg.model.teacher
    teacher.update(checkpoint=None, allow_random_init=True)
    if name.startswith('esvit'):
        cfg.model.backbone.arch = TINY_SWIN
        teacher.arch = dict(
            embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1), window_size=14)
    else:
        cfg.model.backbone.arch = TINY_VIT
        # the optimizer never sees the frozen teacher: any tiny ViT teacher will do
        teacher.update(
            type='ViTTeacher', arch=dict(patch_size=16, embed_dim=24, depth=1, num_heads=2))
    cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    return cfg, MODELS.build(cfg.model)


def finetune_model(name):
    cfg = Config.fromfile(finetune_config(name))
    backbone = cfg.model.backbone
    backbone.pop('init_cfg')
    backbone.arch = TINY_SWIN if 'swin' in name else TINY_VIT
    cfg.model.head.in_channels = (
        TINY_SWIN['embed_dims'] * 8 if 'swin' in name else TINY_VIT['embed_dims'])
    cfg.model.head.num_classes = 10
    return cfg, MODELS.build(cfg.model)


def built_groups(cfg, model):
    wrapper = build_optim_wrapper(model, set_amp(cfg.optim_wrapper.copy(), amp=False))
    groups = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in wrapper.optimizer.param_groups:
        for p in group['params']:
            groups[names[id(p)]] = (group['lr'], group['weight_decay'])
    return groups


# ------------------------------------------------------------------ the release's rules
def release_no_decay(name, param, keywords):
    short = name.split('.')[-1]
    return (param.ndim == 1 or name.endswith('.bias') or short in ('pos_embed', 'cls_token')
            or any(k in name for k in keywords))


def release_vit_depth(name, num_blocks):
    """The release's ViT depth rule, on mmpretrain's parameter names."""
    top = num_blocks + 1
    if not name.startswith('backbone.'):
        return top
    name = name[len('backbone.'):]
    if name in ('cls_token', 'pos_embed', 'mask_token') or name.startswith('patch_embed'):
        return 0
    if name.startswith('layers.'):
        return int(name.split('.')[1]) + 1
    return top


def release_swin_depth(name, depths):
    """The release's Swin rule: merging at the end of stage i is at the depth of its
    last block; mmpretrain keeps that merging at the start of stage i+1."""
    top = sum(depths) + 1
    if not name.startswith('backbone.'):
        return top
    name = name[len('backbone.'):]
    if name.startswith('patch_embed'):
        return 0
    parts = name.split('.')
    if parts[0] == 'stages':
        stage = int(parts[1])
        if parts[2] == 'downsample':
            return sum(depths[:stage])
        return sum(depths[:stage]) + int(parts[3]) + 1
    return top


SWIN_KEYWORDS = ('cpb_mlp', 'logit_scale', 'relative_position_bias_table')


@pytest.mark.parametrize('name', ['dino_vitb', 'esvit_swinb'])
def test_fd_param_groups(name):
    cfg, model = fd_model(name)
    groups = built_groups(cfg, model)
    keywords = SWIN_KEYWORDS if name.startswith('esvit') else ()
    trained = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(groups) == set(trained)  # the frozen teacher is not optimised
    assert not any(n.startswith('teacher.') for n in groups)
    lr = cfg.optim_wrapper.optimizer.lr
    decayed = set()
    for n, p in trained.items():
        group_lr, wd = groups[n]
        assert group_lr == lr, n
        expected = 0.0 if release_no_decay(n, p, keywords) else WD
        assert wd == expected, f'{n}: weight decay {wd}, release {expected}'
        if wd:
            decayed.add(n)
    if name.startswith('dino'):  # the 2-D shared relative position table IS decayed
        assert 'backbone.rel_pos_bias.relative_position_bias_table' in decayed
        assert 'backbone.cls_token' not in decayed
    else:
        assert not any('cpb_mlp' in n or 'logit_scale' in n for n in decayed)
    assert 'head.proj.weight' in decayed and 'head.proj.bias' not in decayed


@pytest.mark.parametrize('name', ['clip_vitb_ft100e_in1k', 'esvit_swinv2b_ft100e_in1k'])
def test_finetune_param_groups(name):
    cfg, model = finetune_model(name)
    groups = built_groups(cfg, model)
    swin = 'swin' in name
    decay_rate = cfg.optim_wrapper.paramwise_cfg.layer_decay_rate
    lr = cfg.optim_wrapper.optimizer.lr
    if swin:
        depths = TINY_SWIN['depths']
        depth_of, top = (lambda n: release_swin_depth(n, depths)), sum(depths) + 1
        keywords = SWIN_KEYWORDS
    else:
        depth_of = lambda n: release_vit_depth(n, TINY_VIT['num_layers'])  # noqa: E731
        top, keywords = TINY_VIT['num_layers'] + 1, ()
    decayed = set()
    for n, p in model.named_parameters():
        group_lr, wd = groups[n]
        expected_lr = lr * decay_rate**(top - depth_of(n))
        assert group_lr == pytest.approx(expected_lr, rel=1e-9), n
        expected_wd = 0.0 if release_no_decay(n, p, keywords) else WD
        assert wd == expected_wd, f'{n}: weight decay {wd}, release {expected_wd}'
        if wd:
            decayed.add(n)
    if swin:
        assert not any('cpb_mlp' in n or 'logit_scale' in n for n in decayed)
    else:  # the ViT fine-tune decays its per-layer relative position tables
        tables = [
            n for n, _ in model.named_parameters() if n.endswith('relative_position_bias_table')
        ]
        assert tables and set(tables) <= decayed
        assert groups['backbone.patch_embed.projection.weight'][0] == pytest.approx(lr *
                                                                                    decay_rate**top)


# ------------------------------------------------------------------ schedules
def release_lr(t, total, warmup, base, warmup_from, minimum):
    """timm's CosineLRScheduler(warmup_prefix=True) as the release builds it."""
    if t < warmup:
        return warmup_from + t * (base - warmup_from) / warmup
    progress = (t - warmup) / (total - warmup)
    return minimum + 0.5 * (base - minimum) * (1 + math.cos(math.pi * progress))


def scheduled_lrs(cfg, model, total_batch, tmp_path):
    """lr of every group at every iteration, as a Runner trains cfg at total_batch
    (one iteration per epoch: a single-sample dataset at that batch size)."""
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        default_scope='mmpretrain',
        train_dataloader=dict(
            batch_size=total_batch,
            dataset=[0],
            num_workers=0,
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate')),
        train_cfg=cfg.train_cfg,
        optim_wrapper=set_amp(cfg.optim_wrapper.copy(), amp=False),
        param_scheduler=cfg.param_scheduler,
        auto_scale_lr=cfg.auto_scale_lr)
    # what Runner.train() does before the first iteration
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.scale_lr(runner.optim_wrapper, runner.auto_scale_lr)
    schedulers = runner.build_param_scheduler(runner.param_schedulers)
    lrs = []
    for _ in range(cfg.train_cfg.max_epochs):
        lrs.append([g['lr'] for g in runner.optim_wrapper.optimizer.param_groups])
        for scheduler in schedulers:
            scheduler.step()
    return lrs, runner.optim_wrapper.optimizer.param_groups


SCHEDULES = {
    # config: (per-512 base, warm-up from, minimum), warm-up epochs
    'fd/dino_vitb': ((3e-4, 5e-7, 5e-6), 10),
    'fd/clip_vitb_100e': ((3e-4, 5e-7, 5e-6), 10),
    'fd/esvit_swinb': ((2e-4, 1e-6, 1e-5), 10),
    'finetune/dino_vitb_ft100e_in1k': ((1.5e-3, 2.5e-7, 2.5e-7), 20),
    'finetune/clip_vitl14_ft50e_in1k': ((2.5e-4, 5e-7, 5e-7), 5),
}


@pytest.mark.parametrize('total_batch', [512, 1024, 2048])
@pytest.mark.parametrize('config', sorted(SCHEDULES))
def test_lr_schedule_follows_the_batch_like_the_release(config, total_batch, tmp_path):
    (base, warmup_from, minimum), warmup = SCHEDULES[config]
    kind, name = config.split('/')
    cfg, model = fd_model(name) if kind == 'fd' else finetune_model(name)
    if kind == 'finetune':  # keep the run small: schedules depend on the epochs only
        cfg.train_cfg.pop('val_interval', None)
    lrs, groups = scheduled_lrs(cfg, model, total_batch, tmp_path)
    total = cfg.train_cfg.max_epochs
    k = total_batch / 512
    release = [
        release_lr(t, total, warmup, base * k, warmup_from * k, minimum * k) for t in range(total)
    ]
    top = max(range(len(groups)), key=lambda i: groups[i]['initial_lr'])
    for t in (0, warmup, total // 2, total - 1):
        assert lrs[t][top] == pytest.approx(release[t], rel=1e-6), (config, t)
    # inside the warm-up, mmengine's LinearLR reaches the base lr one iteration early
    # (its ramp spans W-1 steps): never more than one release step away
    step = (base - warmup_from) * k / warmup
    for t in range(warmup):
        assert release[t] - 1e-12 <= lrs[t][top] <= release[t] + step * (1 + 1e-6), t
    assert lrs[0][top] == pytest.approx(warmup_from * k)  # e.g. 2e-6 at 2048 (FD ViT)
    assert lrs[warmup][top] == pytest.approx(base * k)
    # layer-decayed groups follow the same curve at their own scale (docs/method.md)
    for i, group in enumerate(groups):
        scale = group['initial_lr'] / groups[top]['initial_lr']
        assert lrs[total - 1][i] == pytest.approx(scale * release[total - 1], rel=1e-6)
