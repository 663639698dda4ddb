"""tools/model_converters/convert_teacher.py: foreign checkpoint -> safetensors + JSON,
identical features."""
import importlib.util
import json
import os

import pytest
import torch
from teacher_fixtures import (MM_VIT, SWIN_IMG, TINY_SWIN, build_mm_backbone, build_open_clip,
                              build_timm_swin, build_timm_vit, images, mmpretrain_checkpoint,
                              official_swin_state, randomize_, save_big_vision_npz,
                              save_openai_torchscript, tiny_clip_config, vit_arch)

import mmfd  # noqa: F401
from mmfd.models.teachers import (CLIPTeacher, MMPretrainTeacher, SwinTeacher, ViTTeacher,
                                  build_teacher)
from mmfd.utils.errors import CheckpointError, ConfigError

TOOL = os.path.join(
    os.path.dirname(__file__), '..', 'tools', 'model_converters', 'convert_teacher.py')


@pytest.fixture(scope='module')
def convert_main():
    spec = importlib.util.spec_from_file_location('convert_teacher', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _roundtrip(convert_main, tmp_path, argv, original, size):
    out = str(tmp_path / 'converted.safetensors')
    meta = convert_main(argv + [out])
    with open(tmp_path / 'converted.json') as handle:
        assert json.load(handle) == meta
    converted = build_teacher(out)  # the path alone rebuilds it
    x = images(size)
    assert torch.equal(converted(x).tokens, original(x).tokens)
    for key in ('embed_dim', 'patch_size', 'img_size', 'has_cls'):
        assert meta[key] == getattr(original, key)
    assert meta['mean'] == list(original.mean) and meta['std'] == list(original.std)
    return out, meta, converted


def test_clip_torchscript_roundtrip(tmp_path, convert_main):
    config = tiny_clip_config(quick_gelu=True)
    pt = str(tmp_path / 'ViT-tiny.pt')
    save_openai_torchscript(build_open_clip(config), pt, image_size=32)
    original = CLIPTeacher(arch=None, checkpoint=pt, allow_torchscript=True)
    out, meta, converted = _roundtrip(convert_main, tmp_path,
                                      ['--family', 'clip', '--allow-torchscript', pt], original, 32)
    assert meta['family'] == 'clip' and meta['teacher']['quick_gelu'] is True
    assert isinstance(converted, CLIPTeacher) and converted.quick_gelu
    # the same teacher config with the converted file: QuickGELU is read from it
    same = CLIPTeacher(arch=original.arch, checkpoint=out)
    assert same.quick_gelu and torch.equal(same(images(32)).tokens, original(images(32)).tokens)
    with pytest.raises(ConfigError, match='quick_gelu'):
        CLIPTeacher(arch=original.arch, checkpoint=out, quick_gelu=False)


def test_vit_roundtrip(tmp_path, convert_main):
    path = str(tmp_path / 'deit.pth')
    torch.save({'model': build_timm_vit().state_dict()}, path)
    original = ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)
    out, meta, _ = _roundtrip(
        convert_main, tmp_path,
        ['--family', 'vit', '--arch',
         json.dumps(vit_arch()), '--img-size', '32', path], original, 32)
    same = ViTTeacher(arch=vit_arch(), checkpoint=out)
    assert torch.equal(same(images(32)).tokens, original(images(32)).tokens)
    # same shapes, different function: caught through the file's metadata
    with pytest.raises(ConfigError, match='converted with arch'):
        ViTTeacher(arch=vit_arch(heads=6), checkpoint=out)
    with pytest.raises(CheckpointError, match='converted vit teacher'):
        SwinTeacher(checkpoint=out)


def test_swin_roundtrip(tmp_path, convert_main):
    path = str(tmp_path / 'esvit.pth')
    torch.save(official_swin_state(build_timm_swin(window=4)), path)
    arch = dict(TINY_SWIN, window_size=4)
    original = SwinTeacher(arch=arch, checkpoint=path, out_stage=3, img_size=SWIN_IMG)
    _, meta, converted = _roundtrip(convert_main, tmp_path, [
        '--family', 'swin', '--arch',
        json.dumps(arch), '--out-stage', '3', '--img-size',
        str(SWIN_IMG), path
    ], original, SWIN_IMG)
    assert meta['embed_dim'] == 64 and converted.out_stage == 3
    from mmpretrain.registry import MODELS  # how configs name it
    again = MODELS.build(
        dict(type='ConvertedTeacher', checkpoint=str(tmp_path / 'converted.safetensors')))
    assert isinstance(again, SwinTeacher) and torch.equal(
        again(images(SWIN_IMG)).tokens,
        original(images(SWIN_IMG)).tokens)


def test_mmpretrain_roundtrip(tmp_path, convert_main):
    path = str(tmp_path / 'mm.pth')
    torch.save(mmpretrain_checkpoint(build_mm_backbone(MM_VIT)), path)
    config = tmp_path / 'vit_cfg.py'
    config.write_text(f'model = dict(type="ImageClassifier", backbone={MM_VIT!r})\n')
    original = MMPretrainTeacher(config=str(config), checkpoint=path)
    _roundtrip(convert_main, tmp_path, ['--family', 'mmpretrain', '--config',
                                        str(config), path], original, 32)


def test_plain_safetensors_is_not_a_converted_teacher(tmp_path):
    from safetensors.torch import save_file
    path = str(tmp_path / 'plain.safetensors')
    save_file({'w': torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match='not a teacher converted'):
        build_teacher(path)


def test_timm_roundtrip(tmp_path, convert_main):
    """An official-layout DINOv2-reg file -> one timm-layout safetensors + metadata."""
    import timm

    from mmfd.models.teachers import TimmTeacher
    tiny = dict(depth=2, embed_dim=64, num_heads=2)
    torch.manual_seed(0)
    model = timm.create_model(
        'vit_base_patch14_reg4_dinov2', num_classes=0, img_size=56, **tiny).state_dict()
    official = {('register_tokens' if k == 'reg_token' else k): v for k, v in model.items()}
    official['pos_embed'] = torch.cat([torch.zeros(1, 1, 64), official['pos_embed']], 1)
    official['mask_token'] = torch.zeros(1, 64)
    path = str(tmp_path / 'dinov2.pth')
    torch.save(official, path)
    original = TimmTeacher(
        'vit_base_patch14_reg4_dinov2', checkpoint=path, img_size=56, model_kwargs=tiny)
    _, meta, converted = _roundtrip(convert_main, tmp_path, [
        '--family', 'timm', '--model', 'vit_base_patch14_reg4_dinov2', '--img-size', '56',
        '--teacher-kwargs',
        json.dumps(dict(model_kwargs=tiny)), path
    ], original, 56)
    assert meta['family'] == 'timm' and meta['arch'] == 'vit_base_patch14_reg4_dinov2'
    assert isinstance(converted, TimmTeacher) and converted.has_cls


def test_timm_big_vision_npz_roundtrip(tmp_path, convert_main):
    """A SigLIP big_vision .npz -> one timm-layout safetensors + metadata: the converted
    teacher gives the same tokens and keeps the model's 0.5 / 0.5 statistics."""
    import timm

    from mmfd.models.teachers import TimmTeacher
    tiny = dict(depth=2, embed_dim=64, num_heads=2)
    name = 'vit_base_patch16_siglip_224'
    torch.manual_seed(0)
    model = randomize_(timm.create_model(name, num_classes=0, img_size=64, **tiny), scale=0.02)
    path = str(tmp_path / 'siglip.npz')
    save_big_vision_npz(model, path, scan=True)
    original = TimmTeacher(name, checkpoint=path, img_size=64, model_kwargs=tiny)
    _, meta, converted = _roundtrip(convert_main, tmp_path, [
        '--family', 'timm', '--model', name, '--img-size', '64', '--teacher-kwargs',
        json.dumps(dict(model_kwargs=tiny)), path
    ], original, 64)
    assert meta['mean'] == [127.5] * 3 and meta['has_cls'] is False
    assert isinstance(converted, TimmTeacher) and converted.std == (127.5, ) * 3


def test_flags_follow_the_family(tmp_path, convert_main):
    """The converter reads each family's options from its class: a flag the family
    does not take, or a required option left out, stops before anything is loaded."""
    out = str(tmp_path / 'out.safetensors')
    with pytest.raises(SystemExit, match='--window-size is not an option of ViTTeacher'):
        convert_main(['--family', 'vit', '--window-size', '7', 'in.pth', out])
    with pytest.raises(SystemExit, match='--family timm needs --model <timm model name>'):
        convert_main(['--family', 'timm', 'in.pth', out])
    with pytest.raises(SystemExit, match='--family mmpretrain needs --config'):
        convert_main(['--family', 'mmpretrain', 'in.pth', out])
