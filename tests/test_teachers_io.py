"""Safe checkpoint reading: missing/corrupt/unsafe files, nesting, strict loading."""
import argparse

import pytest
import torch
from torch import nn

import mmfd  # noqa: F401
from mmfd.checkpoint import (guess_family, load_checkpoint_file, load_state_dict_strict,
                             unwrap_state_dict)
from mmfd.utils.errors import CheckpointError


class NotAWeight:  # pickled next to tensors: weights_only must refuse it
    pass


def test_missing_file(tmp_path):
    path = tmp_path / 'nope.pth'
    with pytest.raises(CheckpointError, match='not found') as info:
        load_checkpoint_file(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize('name', ['broken.pth', 'broken.safetensors'])
def test_corrupt_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b'\x00garbage' * 10)
    with pytest.raises(CheckpointError, match='corrupt') as info:
        load_checkpoint_file(path)
    assert str(path) in str(info.value)


def test_truncated_torch_file(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'w': torch.randn(64, 64)}, path)
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(CheckpointError, match='Cannot read checkpoint'):
        load_checkpoint_file(path)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / 'unsafe.pth'
    torch.save({'model': {'w': torch.ones(1)}, 'extra': NotAWeight()}, path)
    with pytest.raises(CheckpointError, match='pickled Python objects') as info:
        load_checkpoint_file(path)
    assert 'NotAWeight' in str(info.value) and 'weights_only=True' in str(info.value)


def test_argparse_namespace_is_allowed(tmp_path):
    # DINO / DeiT full checkpoints keep their argparse namespace.
    path = tmp_path / 'full.pth'
    torch.save({'model': {'w': torch.ones(2)}, 'args': argparse.Namespace(lr=1.0)}, path)
    assert torch.equal(unwrap_state_dict(load_checkpoint_file(path))['w'], torch.ones(2))


def test_unwrap_prefers_teacher_and_strips_prefixes():
    t, s, h = torch.zeros(1), torch.ones(1), torch.full((1, ), 2.)
    ckpt = {
        'student': {
            'module.backbone.w': s
        },
        'epoch': 3,
        'teacher': {
            'module.backbone.w': t,
            'module.head.last_layer.weight': h
        }
    }
    out = unwrap_state_dict(ckpt, select_prefix='backbone.')
    assert list(out) == ['w'] and out['w'] is t
    assert unwrap_state_dict(ckpt, select_prefix='backbone.', entry='student')['w'] is s
    # a file holding one of the two networks: that one, unless the other is required
    only_student = {'student': ckpt['student']}
    assert unwrap_state_dict(only_student, select_prefix='backbone.')['w'] is s
    with pytest.raises(CheckpointError, match="holds only \\['student'\\]"):
        unwrap_state_dict(only_student, entry='teacher', strict_entry=True)
    # without any key under the selected prefix the dict is kept whole
    assert set(unwrap_state_dict({'model': {
        'w': t,
        'head.weight': h
    }}, select_prefix='backbone.')) == {'w', 'head.weight'}


def test_unwrap_reports_unknown_layout():
    with pytest.raises(CheckpointError, match='cannot find the weights') as info:
        unwrap_state_dict({'weights': {'w': torch.ones(1)}, 'epoch': 1}, source='f.pth')
    assert 'f.pth' in str(info.value) and 'weights' in str(info.value)


def test_strict_loading_names_every_problem():
    module = nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3))
    state = {k: v.clone() for k, v in module.state_dict().items()}
    del state['1.bias']
    state['0.weight'] = torch.zeros(4, 2)
    state['2.weight'] = torch.zeros(1)
    state['head.weight'] = torch.zeros(1)
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(module, state, 'model.pth', ignore=[r'^head\.'])
    message = str(info.value)
    assert 'model.pth' in message
    assert 'missing keys (1): 1.bias' in message
    assert 'unexpected keys (1): 2.weight' in message
    assert '0.weight: checkpoint (4, 2) vs model (3, 2)' in message
    assert 'head.weight' not in message  # declared unused, dropped on purpose


def test_strict_loading_copies_weights():
    module, source = nn.Linear(2, 2), nn.Linear(2, 2)
    dropped = load_state_dict_strict(
        module, {
            **source.state_dict(), 'fc.w': torch.ones(1)
        }, 'x', ignore=[r'^fc\.'])
    assert dropped == ['fc.w'] and torch.equal(module.weight, source.weight)


def test_guess_family():
    assert guess_family(['visual.conv1.weight', 'visual.class_embedding']) == 'clip'
    assert guess_family(['cls_token', 'patch_embed.proj.weight',
                         'blocks.0.attn.qkv.weight']) == 'vit'
    assert guess_family(['layers.0.blocks.0.attn.relative_position_bias_table']) == 'swin'
    assert guess_family(
        ['backbone.layers.0.attn.qkv.weight',
         'backbone.patch_embed.projection.weight']) == 'mmpretrain'
    assert guess_family(['fc.weight']) is None
