"""CLIPTeacher against open_clip's own models, in every file format users bring."""
import copy

import pytest
import torch
from teacher_fixtures import (TOL, build_open_clip, build_timm_vit, clip_reference_tokens, images,
                              max_diff, save_openai_torchscript, tiny_clip_config)

import mmfd  # noqa: F401
from mmfd.models.teachers import CLIP_MEAN, CLIPTeacher
from mmfd.utils.errors import CheckpointError, ConfigError


def _check_parity(teacher, model, x):
    out = teacher(x)
    reference = clip_reference_tokens(model.visual, x)
    assert out.tokens.shape == reference.shape
    assert max_diff(out.tokens, reference) <= TOL
    # the patch part is exactly what open_clip's output_tokens=True returns
    visual = copy.deepcopy(model.visual)
    visual.output_tokens = True
    with torch.no_grad():
        _, patch_tokens = visual(x)
    assert max_diff(out.tokens[:, 1:], patch_tokens) <= TOL
    return out


@pytest.mark.parametrize('layout', ['bin', 'open_clip_train', 'safetensors'])
def test_open_clip_file_parity(tmp_path, layout):
    config = tiny_clip_config(quick_gelu=(layout == 'bin'))
    model = build_open_clip(config)
    path = tmp_path / f'open_clip_model.{"safetensors" if layout == "safetensors" else "bin"}'
    if layout == 'safetensors':
        from safetensors.torch import save_file
        save_file(model.state_dict(), str(path))
    elif layout == 'open_clip_train':  # open_clip's training checkpoints (DDP)
        torch.save(
            {
                'epoch': 32,
                'name': 'run',
                'state_dict': {
                    f'module.{k}': v
                    for k, v in model.state_dict().items()
                }
            }, path)
    else:
        torch.save(model.state_dict(), path)

    teacher = CLIPTeacher(arch=config, checkpoint=str(path))
    assert teacher.quick_gelu == (layout == 'bin')
    assert not hasattr(teacher, 'transformer') and not any(
        k.startswith(('token_embedding', 'ln_final', 'text')) for k in teacher.state_dict())
    out = _check_parity(teacher, model, images(32))
    assert out.grid == (4, 4) and out.has_cls and out.tokens.shape == (2, 17, 64)
    assert teacher.mean == CLIP_MEAN and teacher.patch_size == 8 and teacher.embed_dim == 64


def test_vit_l14_shape(tmp_path):
    import open_clip
    config = open_clip.get_model_config('ViT-L-14')
    assert config['vision_cfg']['width'] == 1024 and config['vision_cfg']['patch_size'] == 14
    config['vision_cfg']['layers'] = 1  # fast; width, heads, patch and grid are ViT-L/14's
    config['text_cfg'] = tiny_clip_config()['text_cfg']
    model = build_open_clip(config)
    path = tmp_path / 'vitl14.bin'
    torch.save(model.state_dict(), path)
    teacher = CLIPTeacher(arch=config, checkpoint=str(path))
    out = _check_parity(teacher, model, images(224, batch=1))
    assert out.tokens.shape == (1, 257, 1024) and out.grid == (16, 16)
    assert (teacher.embed_dim, teacher.patch_size, teacher.img_size) == (1024, 14, 224)


def test_openai_torchscript_archive(tmp_path):
    import open_clip
    config = tiny_clip_config(quick_gelu=True)
    model = build_open_clip(config)
    path = str(tmp_path / 'ViT-tiny.pt')
    save_openai_torchscript(model, path, image_size=32)
    archived = torch.jit.load(path).state_dict()  # OpenAI's layout: fp16 matrices
    assert archived['visual.conv1.weight'].dtype == torch.float16
    assert {'input_resolution', 'context_length', 'vocab_size'} <= set(archived)

    with pytest.raises(CheckpointError, match='TorchScript') as info:
        CLIPTeacher(arch=None, checkpoint=path)
    assert 'allow_torchscript=True' in str(info.value)
    assert 'convert_teacher.py' in str(info.value)

    # arch inferred from the weights, QuickGELU implied by the OpenAI archive
    teacher = CLIPTeacher(arch=None, checkpoint=path, allow_torchscript=True)
    assert teacher.quick_gelu
    reference = open_clip.load_openai_model(path, precision='fp32', device='cpu')
    x = images(32)
    assert max_diff(teacher(x).tokens, clip_reference_tokens(reference.visual, x)) <= TOL
    assert max_diff(teacher(x).tokens, clip_reference_tokens(model.visual, x)) <= TOL


def test_quick_gelu_matters(tmp_path):
    config = tiny_clip_config(quick_gelu=True)
    model = build_open_clip(config)
    path = tmp_path / 'openai_weights.bin'
    torch.save(model.state_dict(), path)
    wrong = CLIPTeacher(arch=config, checkpoint=str(path), quick_gelu=False)
    reference = clip_reference_tokens(model.visual, images(32))
    assert max_diff(wrong(images(32)).tokens, reference) > 1e-3


def test_input_size(tmp_path):
    config = tiny_clip_config()
    model = build_open_clip(config)
    path = tmp_path / 'm.bin'
    torch.save(model.state_dict(), path)
    teacher = CLIPTeacher(arch=config, checkpoint=str(path))
    with pytest.raises(ConfigError, match='built for 32x32 inputs, got 48x48'):
        teacher(images(48))
    dynamic = CLIPTeacher(arch=config, checkpoint=str(path), dynamic_img_size=True)
    assert torch.equal(dynamic(images(32)).tokens, teacher(images(32)).tokens)
    assert dynamic(images(48)).tokens.shape == (2, 37, 64)
    resized = CLIPTeacher(arch=config, checkpoint=str(path), img_size=48)
    assert resized.visual.positional_embedding.shape == (37, 64)
    assert torch.allclose(resized(images(48)).tokens, dynamic(images(48)).tokens, atol=TOL)


def test_named_quickgelu_arch():
    teacher = CLIPTeacher(arch='ViT-B-16-quickgelu', allow_random_init=True)
    assert teacher.quick_gelu and type(
        teacher.visual.transformer.resblocks[0].mlp.gelu).__name__ == 'QuickGELU'
    assert (teacher.embed_dim, teacher.patch_size, teacher.img_size) == (768, 16, 224)


def test_unknown_arch_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'ViT-B-16'"):
        CLIPTeacher(arch='ViT-B-61', allow_random_init=True)


def test_vit_file_is_not_clip(tmp_path):
    path = tmp_path / 'dino_vits16.pth'
    torch.save(build_timm_vit().state_dict(), path)
    with pytest.raises(CheckpointError, match='looks like a vit checkpoint') as info:
        CLIPTeacher(arch=tiny_clip_config(), checkpoint=str(path))
    assert 'ViTTeacher' in str(info.value) and str(path) in str(info.value)


def test_frozen_and_eval(tmp_path):
    teacher = CLIPTeacher(arch=tiny_clip_config(), allow_random_init=True)
    teacher.train()
    assert not teacher.training and not any(m.training for m in teacher.modules())
    assert not any(p.requires_grad for p in teacher.parameters())


def test_checkpoint_required():
    with pytest.raises(ConfigError, match='needs checkpoint'):
        CLIPTeacher(arch=tiny_clip_config())


def _plain_bicubic(table, grid, antialias=False):
    """timm's resampler, told not to antialias (the FD release's plain bicubic)."""
    from timm.layers import resample_abs_pos_embed
    return resample_abs_pos_embed(
        table[None], new_size=(grid, grid), num_prefix_tokens=1, antialias=antialias)[0]


def test_position_table_resampled_as_the_release_at_256px(tmp_path):
    """A 224 px (14x14) tower run at 256 px equals open_clip's own tower built at
    256 px with a plain-bicubic table; timm's antialiased default is measurably
    different, and is what pos_embed_resize=dict(antialias=True) gives."""
    config = tiny_clip_config(patch=16, image=224)
    model = build_open_clip(config)
    path = tmp_path / 'm.bin'
    torch.save(model.state_dict(), path)
    table = model.visual.positional_embedding.detach()

    big = copy.deepcopy(config)
    big['vision_cfg']['image_size'] = 256
    reference = build_open_clip(big)
    state = {k: v for k, v in model.state_dict().items()}
    x = images(256, batch=1)
    outputs = {}
    for antialias in (False, True):
        state['visual.positional_embedding'] = _plain_bicubic(table, 16, antialias)
        reference.load_state_dict(state)
        outputs[antialias] = clip_reference_tokens(reference.visual, x)

    teacher = CLIPTeacher(arch=config, checkpoint=str(path), img_size=256)
    assert max_diff(teacher(x).tokens, outputs[False]) <= TOL
    dynamic = CLIPTeacher(arch=config, checkpoint=str(path), dynamic_img_size=True)
    assert max_diff(dynamic(x).tokens, outputs[False]) <= TOL
    assert max_diff(outputs[True], outputs[False]) > 1e-3  # the option matters
    timm_like = CLIPTeacher(
        arch=config, checkpoint=str(path), img_size=256, pos_embed_resize=dict(antialias=True))
    assert max_diff(timm_like(x).tokens, outputs[True]) <= TOL
    with pytest.raises(ConfigError, match=r'pos_embed_resize.mode=.nearest'):
        CLIPTeacher(arch=config, checkpoint=str(path), pos_embed_resize=dict(mode='nearest'))

    # Adapting a built teacher once gives the teacher built at that size.
    adapted = CLIPTeacher(arch=config, checkpoint=str(path))
    assert adapted.adapt_img_size(256) and adapted.img_size == 256
    assert torch.equal(adapted(x).tokens, teacher(x).tokens)
    assert not any(p.requires_grad for p in adapted.parameters())
