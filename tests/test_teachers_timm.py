"""TimmTeacher against timm's own models: modern families, their token layouts,
statistics and errors. Tiny widths (2 blocks, 64 channels), random weights."""
import pytest
import torch
from teacher_fixtures import TOL, built_once, images, max_diff, randomize_, save_big_vision_npz

import mmfd  # noqa: F401
from mmfd.models.algorithms.fd import FeatureDistiller
from mmfd.models.teachers import TimmTeacher
from mmfd.utils.errors import CheckpointError, ConfigError

TINY = dict(depth=2, embed_dim=64, num_heads=2)
# name: (img_size, prefix tokens in timm's sequence, has a class token)
FAMILIES = {
    'vit_base_patch14_reg4_dinov2': (112, 5, True),  # CLS + 4 registers
    'vit_base_patch16_dinov3': (112, 5, True),  # CLS + 4 storage tokens, RoPE
    'vit_base_patch16_siglip_224': (112, 0, False),  # SigLIP / SigLIP 2: MAP head
    'eva02_base_patch16_clip_224': (112, 1, True),  # EVA-02-CLIP, RoPE + abs
    'aimv2_large_patch14_224': (112, 0, False),  # AIMv2: no CLS, RMSNorm
    'vit_pe_core_base_patch16_224': (112, 1, True),  # Perception Encoder core
    'vit_base_patch16_radio_v3': (112, 8, True),  # C-RADIO: CLS + 7 registers
}


@built_once
def _timm_model(name, img):
    import timm
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=0, img_size=img, **TINY)
    return randomize_(model, seed=0, scale=0.02)


def _reference_tokens(model, x, prefix, has_cls):
    """timm's own forward_features, registers dropped: [CLS] + patches."""
    with torch.no_grad():
        tokens = model.forward_features(x)
    patches = tokens[:, prefix:]
    return torch.cat([tokens[:, :1], patches], 1) if has_cls else patches


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_parity_with_timm(tmp_path, name):
    img, prefix, has_cls = FAMILIES[name]
    model = _timm_model(name, img)
    from safetensors.torch import save_file
    path = tmp_path / 'teacher.safetensors'
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))

    teacher = TimmTeacher(name, checkpoint=str(path), img_size=img, model_kwargs=TINY)
    x = images(img)
    out = teacher(x)
    grid = img // teacher.patch_size
    assert out.grid == (grid, grid) and out.has_cls == has_cls
    # registers / storage tokens are never in the target
    assert out.tokens.shape == (2, int(has_cls) + grid * grid, 64)
    assert max_diff(out.tokens, _reference_tokens(model, x, prefix, has_cls)) <= TOL
    # statistics come from the model's own pretrained config, 0-255 scale
    config = model.pretrained_cfg
    assert teacher.mean == pytest.approx([255 * m for m in config['mean']])
    assert teacher.std == pytest.approx([255 * s for s in config['std']])
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_siglip_statistics_are_the_models_not_openai(tmp_path):
    """open_clip falls back to OpenAI's statistics for a file; SigLIP needs 0.5/0.5."""
    teacher = TimmTeacher(
        'vit_base_patch16_siglip_224.v2_webli', allow_random_init=True, model_kwargs=TINY)
    assert teacher.mean == (127.5, ) * 3 and teacher.std == (127.5, ) * 3


def test_dinov2_official_layout(tmp_path):
    """DINOv2's own files name the registers `register_tokens`, keep the
    `mask_token`, and give the CLS token a row of the position table (timm folds it
    into cls_token): timm's filter converts them; the tokens match."""
    name = 'vit_base_patch14_reg4_dinov2'
    model = _timm_model(name, 112)
    official = {
        ('register_tokens' if k == 'reg_token' else k): v
        for k, v in model.state_dict().items()
    }
    cls_position = torch.randn(1, 1, 64) * 0.02
    official['pos_embed'] = torch.cat([cls_position, official['pos_embed']], dim=1)
    official['cls_token'] = official['cls_token'] - cls_position
    official['mask_token'] = torch.zeros(1, 64)
    path = tmp_path / 'dinov2_vitb14_reg4_pretrain.pth'
    torch.save(official, path)
    teacher = TimmTeacher(name, checkpoint=str(path), img_size=112, model_kwargs=TINY)
    x = images(112)
    assert max_diff(teacher(x).tokens, _reference_tokens(model, x, 5, True)) <= TOL


def test_pooled_target_and_before_norm_ablation(tmp_path):
    name = 'vit_base_patch16_siglip_224'
    model = _timm_model(name, 112)
    path = tmp_path / 'siglip.pth'
    torch.save(model.state_dict(), path)
    x = images(112)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
    teacher = TimmTeacher(
        name, checkpoint=str(path), img_size=112, model_kwargs=TINY, cls_target='pooled')
    out = teacher(x)
    assert out.has_cls and out.tokens.shape == (2, 50, 64)
    assert max_diff(out.tokens[:, 0], pooled) <= TOL
    assert max_diff(out.tokens[:, 1:], features) <= TOL

    # Before the final norm: the input of timm's `norm`, captured in its own forward.
    captured = {}
    handle = model.norm.register_forward_hook(lambda m, a, o: captured.setdefault('x', a[0]))
    with torch.no_grad():
        model.forward_features(x)
    handle.remove()
    teacher.use_final_norm(False)
    assert max_diff(teacher(x).tokens[:, 1:], captured['x']) <= TOL


def test_errors(tmp_path):
    with pytest.raises(
            ConfigError,
            match=r"vit_base_patch14_reg4_dinov3.*Did you mean "
            r".*vit_base_patch14_reg4_dinov2"):
        TimmTeacher('vit_base_patch14_reg4_dinov3', allow_random_init=True)
    with pytest.raises(ConfigError, match=r'no class token.*pooled'):
        TimmTeacher(
            'vit_base_patch16_siglip_224',
            allow_random_init=True,
            model_kwargs=TINY,
            cls_target='token')
    with pytest.raises(ConfigError, match='needs checkpoint'):
        TimmTeacher('vit_base_patch16_siglip_224', model_kwargs=TINY)
    # A file of another model: timm's strict load fails, named with the file.
    other = _timm_model('vit_base_patch16_siglip_224', 112)
    path = tmp_path / 'siglip.pth'
    torch.save(other.state_dict(), path)
    with pytest.raises(CheckpointError, match=r'siglip\.pth does not load into timm'):
        TimmTeacher(
            'vit_base_patch14_reg4_dinov2', checkpoint=str(path), img_size=112, model_kwargs=TINY)
    with pytest.raises(CheckpointError, match='not found|No such file|does not exist'):
        TimmTeacher('vit_base_patch16_siglip_224', checkpoint=str(tmp_path / 'missing.pth'))


@pytest.mark.parametrize('cls_target', ['auto', 'pooled'])
def test_no_cls_teacher_distils_into_a_cls_student(tmp_path, cls_target):
    """SigLIP (no CLS) -> FDViT (CLS): patch-only or pooled-as-CLS target; 30
    AdamW steps on one batch lower the loss."""
    torch.manual_seed(0)
    model = FeatureDistiller(
        backbone=dict(
            type='FDViT',
            arch=dict(embed_dims=32, num_layers=2, num_heads=4, feedforward_channels=64),
            img_size=64,
            patch_size=16,
            drop_path_rate=0.1),
        teacher=dict(
            type='TimmTeacher',
            model='vit_base_patch16_siglip_224',
            allow_random_init=True,
            cls_target=cls_target,
            model_kwargs=TINY),
        input_size=64)
    assert model.teacher.img_size == 64  # built for the size FD feeds it
    model.init_weights()
    model.train()
    target, has_cls = model.compute_target(torch.randn(2, 3, 64, 64))
    assert has_cls == (cls_target == 'pooled') and target.shape[1] == 16 + int(has_cls)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randn(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    losses = []
    for _ in range(30):
        loss = model.loss(x)['loss']
        optim.zero_grad()
        loss.backward()
        optim.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.8 * sum(losses[:5]) / 5, losses


# ------------------------------------------------------------------ official layouts
# Each writer turns timm's state dict into the layout the family's own release ships
# (the inverse of timm's checkpoint filter), so the test loads what users download.
def _dinov3_official(state):
    out = {}
    for key, value in state.items():
        key = key.replace('reg_token', 'storage_tokens')
        key = key.replace('gamma_1', 'ls1.gamma').replace('gamma_2', 'ls2.gamma')
        out[key] = value
        if key.endswith('attn.qkv.weight'):  # the release's all-zero, masked k bias
            out[key.replace('weight', 'bias')] = torch.zeros(value.shape[0])
            out[key.replace('weight', 'bias_mask')] = torch.ones(value.shape[0])
    out['mask_token'] = torch.zeros(1, 1, state['cls_token'].shape[-1])
    out['rope_embed.periods'] = torch.ones(8)
    return out


def _pe_official(state):
    """Perception Encoder's CLIP-style `visual.` layout."""
    swaps = [('patch_embed.proj', 'conv1'), ('norm_pre', 'ln_pre'),
             ('blocks.', 'transformer.resblocks.'), ('.norm1', '.ln_1'), ('.norm2', '.ln_2'),
             ('attn.qkv.', 'attn.in_proj_'), ('attn.proj', 'attn.out_proj'),
             ('mlp.fc1', 'mlp.c_fc'), ('mlp.fc2', 'mlp.c_proj')]
    out = {}
    for key, value in state.items():
        if key.startswith('attn_pool.'):
            continue
        if key == 'cls_token':
            key, value = 'class_embedding', value.flatten()
        elif key == 'pos_embed':
            key, value = 'positional_embedding', value[0]
        elif key.startswith('norm.'):
            key = key.replace('norm.', 'ln_post.')
        else:
            for old, new in swaps:
                key = key.replace(old, new)
        out['visual.' + key] = value
    pool = {k[len('attn_pool.'):]: v for k, v in state.items() if k.startswith('attn_pool.')}
    for part in ('weight', 'bias'):
        out[f'visual.attn_pool.attn.in_proj_{part}'] = torch.cat(
            [pool[f'q.{part}'], pool[f'kv.{part}']])
        out[f'visual.attn_pool.attn.out_proj.{part}'] = pool[f'proj.{part}']
        out[f'visual.attn_pool.layernorm.{part}'] = pool[f'norm.{part}']
        out[f'visual.attn_pool.mlp.c_fc.{part}'] = pool[f'mlp.fc1.{part}']
        out[f'visual.attn_pool.mlp.c_proj.{part}'] = pool[f'mlp.fc2.{part}']
    out['visual.attn_pool.probe'] = pool['latent']
    return out


def _aimv2_official(state):
    """Apple's AIMv2 layout (preprocessor / trunk)."""
    out = {}
    for key, value in state.items():
        if key.startswith('patch_embed.'):
            key = 'preprocessor.patchifier.' + key[len('patch_embed.'):]
        elif key == 'pos_embed':
            key = 'preprocessor.pos_embed'
        elif key.startswith('norm.'):
            key = 'trunk.post_trunk_norm.' + key[len('norm.'):]
        else:
            key = 'trunk.' + key.replace('norm1', 'norm_1').replace('norm2', 'norm_2')
            key = key.replace('fc1_g', 'fc1').replace('fc1_x', 'fc3')
        out[key] = value
    return out


def _radio_official(state):
    """NVIDIA RADIO's `radio_model.model.` layout: a bias-free linear patch embedder,
    CLS + registers in one table, layer scale named `grandma`."""
    prefix = 'radio_model.model.'
    out = {'radio_model.input_conditioner.norm_mean': torch.zeros(3, 1, 1)}
    weight = state['patch_embed.proj.weight']
    out[prefix + 'patch_generator.embedder.weight'] = weight.reshape(weight.shape[0], -1)
    out[prefix + 'patch_generator.pos_embed'] = state['pos_embed']
    out[prefix + 'patch_generator.cls_token.token'] = torch.cat(
        [state['cls_token'][0], state['reg_token'][0]])
    for key, value in state.items():
        if key.startswith('blocks.'):
            out[prefix + key.replace('.gamma', '.grandma')] = value
    return out


def _eva02_clip_official(state):
    """open_clip's EVA-02-CLIP files: the timm trunk under `visual.trunk.`."""
    return {'visual.trunk.' + k: v for k, v in state.items()}


OFFICIAL = {
    'vit_base_patch16_dinov3': _dinov3_official,
    'vit_pe_core_base_patch16_224': _pe_official,
    'aimv2_large_patch14_224': _aimv2_official,
    'vit_base_patch16_radio_v3': _radio_official,
    'eva02_base_patch16_clip_224': _eva02_clip_official,
}


@pytest.mark.parametrize('name', sorted(OFFICIAL))
def test_official_layouts(tmp_path, name):
    img, prefix, has_cls = FAMILIES[name]
    model = _timm_model(name, img)
    if name.endswith('radio_v3'):  # RADIO's patch embedder has no bias
        torch.nn.init.zeros_(model.patch_embed.proj.bias)
    path = tmp_path / f'{name}_official.pth'
    torch.save({'state_dict': OFFICIAL[name](model.state_dict())}, path)
    teacher = TimmTeacher(name, checkpoint=str(path), img_size=img, model_kwargs=TINY)
    x = images(img)
    assert max_diff(teacher(x).tokens, _reference_tokens(model, x, prefix, has_cls)) <= TOL


def test_a_resampled_position_table_is_logged(tmp_path):
    """No silent resizing: a 112 px file built at 224 px says timm resampled it; the
    file at its own size says nothing."""
    from mmengine.logging import MMLogger
    log_file = tmp_path / 'teacher.log'
    MMLogger.get_instance(f'timm_resize_{tmp_path.name}', log_file=str(log_file))
    name = 'vit_base_patch16_siglip_224'
    path = tmp_path / 'siglip.pth'
    torch.save(_timm_model(name, 112).state_dict(), path)
    TimmTeacher(name, checkpoint=str(path), img_size=112, model_kwargs=TINY)
    assert 'was resampled' not in log_file.read_text()
    TimmTeacher(name, checkpoint=str(path), img_size=224, model_kwargs=TINY)
    assert 'position table of' in log_file.read_text()
    assert '(49 positions) was resampled to 196' in log_file.read_text()


# ------------------------------------------------------------------ big_vision .npz
@pytest.mark.parametrize('scan', [False, True], ids=['encoderblock_N', 'scanned'])
def test_siglip_big_vision_npz_parity(tmp_path, scan):
    """A SigLIP file in big_vision's two-tower .npz layout (per-block or scanned
    encoder), read by timm's own reader: patch tokens and the MAP-pooled output equal
    timm's model; the statistics are the model's (0.5 / 0.5), not OpenAI's."""
    name = 'vit_base_patch16_siglip_224'
    model = _timm_model(name, 112)
    path = tmp_path / 'siglip2_b16.npz'
    save_big_vision_npz(model, path, scan=scan)
    teacher = TimmTeacher(
        name, checkpoint=str(path), img_size=112, model_kwargs=TINY, cls_target='pooled')
    x = images(112)
    with torch.no_grad():
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
    out = teacher(x)
    assert out.tokens.shape == (2, 1 + 49, 64) and out.has_cls
    assert max_diff(out.tokens[:, 1:], features) <= TOL
    assert max_diff(out.tokens[:, 0], pooled) <= TOL
    assert teacher.mean == (127.5, ) * 3 and teacher.std == (127.5, ) * 3
    assert teacher.mean == tuple(255 * m for m in model.pretrained_cfg['mean'])
    assert not any(p.requires_grad for p in teacher.parameters()) and not teacher.training


def test_big_vision_npz_is_checked_around_timms_reader(tmp_path):
    """timm's reader copies the arrays it knows and ignores the rest: a deeper file,
    parameters it never writes, a model it has no reader for, a resampled position
    table are each said."""
    name = 'vit_base_patch16_siglip_224'
    path = tmp_path / 'siglip.npz'
    arrays = save_big_vision_npz(_timm_model(name, 112), path)
    with pytest.raises(CheckpointError, match='2 encoder blocks in the file, 1 in the model'):
        TimmTeacher(name, checkpoint=str(path), img_size=112, model_kwargs=dict(TINY, depth=1))
    # layer scale: parameters the reader does not know stay unset, and are named
    with pytest.raises(CheckpointError, match=r'left 4 parameter.*blocks\.0\.ls1\.gamma'):
        TimmTeacher(
            name, checkpoint=str(path), img_size=112, model_kwargs=dict(TINY, init_values=1e-5))
    with pytest.raises(CheckpointError, match=r'only into its VisionTransformer.*Eva'):
        TimmTeacher(
            'eva02_base_patch16_clip_224', checkpoint=str(path), img_size=112, model_kwargs=TINY)
    import numpy as np
    missing = tmp_path / 'cut.npz'
    key = 'params/img/Transformer/encoderblock_1/MlpBlock_0/Dense_0/bias'
    np.savez(missing, **{k: v for k, v in arrays.items() if k != key})
    with pytest.raises(CheckpointError, match=r'cut\.npz does not load.*Dense_0/bias'):
        TimmTeacher(name, checkpoint=str(missing), img_size=112, model_kwargs=TINY)

    from mmengine.logging import MMLogger
    log_file = tmp_path / 'teacher.log'
    MMLogger.get_instance(f'npz_resize_{tmp_path.name}', log_file=str(log_file))
    TimmTeacher(name, checkpoint=str(path), img_size=128, model_kwargs=TINY)
    assert "(49 positions) was resampled to 64 by timm's .npz reader" in log_file.read_text()


@pytest.mark.parametrize('name', ['eva02_base_patch16_clip_224', 'vit_pe_core_base_patch16_224'])
def test_partial_file_is_refused_where_timm_loads_non_strictly(tmp_path, name):
    """timm loads non-strictly when the model's head differs from its pretrained
    config's (EVA-02-CLIP and PE-Core configs have a projection head; a teacher has
    none), and only logs the keys it could not match: they are raised."""
    state = _timm_model(name, 112).state_dict()
    dropped = sorted(k for k in state if k.endswith('fc2.bias'))[-1]
    del state[dropped]
    state['extra.weight'] = torch.zeros(3)
    path = tmp_path / 'partial.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointError, match=r'partial\.pth does not load') as info:
        TimmTeacher(name, checkpoint=str(path), img_size=112, model_kwargs=TINY)
    assert f'missing keys (1): {dropped}' in str(info.value)
    assert 'unexpected keys (1): extra.weight' in str(info.value)
