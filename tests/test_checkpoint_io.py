"""mmfd's one checkpoint path: reading through an mmengine.fileio backend other than
the local one (a real HTTP server on localhost), weights_only safety over HTTP, and
the one report format every loader uses."""
import functools
import http.server
import threading
from pathlib import Path

import pytest
import torch
from mmengine.fileio import HTTPBackend, get_file_backend
from mmengine.model import BaseModule
from torch import nn

import mmfd  # noqa: F401  (registers StrictPretrained)
from mmfd.checkpoint import (check_and_load, load_checkpoint_file, load_state_dict_strict,
                             save_safetensors)
from mmfd.diagnostics.loading import load_weights
from mmfd.utils.errors import CheckpointError


class NotAWeight:  # pickled next to tensors: weights_only must refuse it, remote too
    pass


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def served(tmp_path, monkeypatch):
    """(directory, base URL) of a local HTTP server serving the directory."""
    # urllib honours proxy variables: the server is on this machine.
    for var in ('http_proxy', 'HTTP_PROXY', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY'):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv('no_proxy', '127.0.0.1,localhost')
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield tmp_path, f'http://127.0.0.1:{server.server_address[1]}'
    server.shutdown()
    server.server_close()
    thread.join()


def _weights(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return {
        'fc.weight': torch.randn(3, 4, generator=gen),
        'fc.bias': torch.randn(3, generator=gen),
        'norm.weight': torch.randn(3, generator=gen),
        'norm.bias': torch.randn(3, generator=gen)
    }


class Tiny(BaseModule):

    def __init__(self, init_cfg=None):
        super().__init__(init_cfg=init_cfg)
        self.fc = nn.Linear(4, 3)
        self.norm = nn.LayerNorm(3)

    def forward(self, x):
        return self.norm(self.fc(x))


# ----------------------------------------------------------------- HTTP backend
def test_the_server_is_read_through_mmengine_http_backend(served):
    _, base = served
    assert isinstance(get_file_backend(f'{base}/x.pth'), HTTPBackend)


@pytest.mark.parametrize('name', ['ckpt.pth', 'ckpt.safetensors'])
def test_reads_pth_and_safetensors_over_http(served, name):
    root, base = served
    weights = _weights()
    if name.endswith('.safetensors'):
        save_safetensors(weights, str(root / name))
    else:
        torch.save({'state_dict': weights, 'meta': {'epoch': 1}}, root / name)
    got = load_checkpoint_file(f'{base}/{name}')
    got = got.get('state_dict', got)
    assert set(got) == set(weights)
    for key, value in weights.items():
        assert torch.equal(got[key], value), key
    # the same bytes as the local file gives
    local = load_checkpoint_file(root / name)
    local = local.get('state_dict', local)
    assert all(torch.equal(local[k], got[k]) for k in weights)


def test_unsafe_pickle_is_refused_over_http(served):
    root, base = served
    torch.save({'model': _weights(), 'extra': NotAWeight()}, root / 'unsafe.pth')
    url = f'{base}/unsafe.pth'
    with pytest.raises(CheckpointError, match='pickled Python objects') as info:
        load_checkpoint_file(url)
    assert url in str(info.value) and 'NotAWeight' in str(info.value)
    assert 'weights_only=True' in str(info.value)


def test_torchscript_is_refused_over_http(served):
    root, base = served
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(root / 'scripted.pt'))
    with pytest.raises(CheckpointError, match='TorchScript archive'):
        load_checkpoint_file(f'{base}/scripted.pt')
    loaded = load_checkpoint_file(f'{base}/scripted.pt', allow_torchscript=True)
    assert set(loaded) == {'weight', 'bias'}


def test_missing_and_corrupt_files_over_http(served):
    root, base = served
    with pytest.raises(CheckpointError, match='not found') as info:
        load_checkpoint_file(f'{base}/nope.pth')
    assert f'{base}/nope.pth' in str(info.value)
    for name in ('broken.pth', 'broken.safetensors'):
        (root / name).write_bytes(b'\x00garbage' * 10)
        with pytest.raises(CheckpointError, match='corrupt') as info:
            load_checkpoint_file(f'{base}/{name}')
        assert f'{base}/{name}' in str(info.value)


def test_backend_args_select_the_backend(served):
    root, base = served
    torch.save(_weights(), root / 'w.pth')
    got = load_checkpoint_file(f'{base}/w.pth', backend_args=dict(backend='http'))
    assert torch.equal(got['fc.weight'], _weights()['fc.weight'])
    with pytest.raises(CheckpointError, match="backend_args={'backend': 'no_such'}"):
        load_checkpoint_file(f'{base}/w.pth', backend_args=dict(backend='no_such'))


@pytest.mark.parametrize('name', ['tiny.pth', 'tiny.safetensors'])
def test_strict_pretrained_loads_over_http(served, name):
    root, base = served
    weights = _weights(seed=3)
    prefixed = {'backbone.' + k: v for k, v in weights.items()}
    if name.endswith('.safetensors'):
        save_safetensors(prefixed, str(root / name))
    else:
        torch.save({'state_dict': prefixed}, root / name)
    model = Tiny(
        init_cfg=dict(
            type='StrictPretrained',
            checkpoint=f'{base}/{name}',
            prefix='backbone.',
            backend_args=dict(backend='http')))
    model.init_weights()
    for key, value in weights.items():
        assert torch.equal(model.state_dict()[key], value), key
    model(torch.zeros(1, 4))  # the first forward finds the loaded weights in place


def test_strict_pretrained_refuses_unsafe_pickle_over_http(served):
    root, base = served
    torch.save({'state_dict': _weights(), 'extra': NotAWeight()}, root / 'unsafe.pth')
    model = Tiny(init_cfg=dict(type='StrictPretrained', checkpoint=f'{base}/unsafe.pth'))
    with pytest.raises(CheckpointError, match='pickled Python objects'):
        model.init_weights()


# ----------------------------------------------------------------- the report
def _broken(weights):
    """A missing key (norm.bias), an unexpected one (extra.weight) and a shape
    mismatch (fc.weight)."""
    broken = dict(weights)
    del broken['norm.bias']
    broken['fc.weight'] = torch.zeros(5, 4)
    broken['extra.weight'] = torch.zeros(2)
    return broken


KEY_LINES = ('missing keys (1): norm.bias', 'unexpected keys (1): extra.weight',
             'shape mismatch (1): fc.weight: checkpoint (5, 4) vs model (3, 4)')


def test_report_names_the_file_and_every_key(tmp_path):
    with pytest.raises(CheckpointError) as info:
        check_and_load(Tiny(), _broken(_weights()), str(tmp_path / 'w.pth'))
    message = str(info.value)
    assert message.startswith(f'{tmp_path / "w.pth"} does not fit Tiny')
    for line in KEY_LINES:
        assert f'\n  {line}' in message, line


def test_every_loader_reports_in_the_same_format(tmp_path):
    """The teachers' loader, StrictPretrained and the diagnostic tools: one format."""
    path = tmp_path / 'broken.pth'
    torch.save({'state_dict': _broken(_weights())}, path)
    messages = []
    with pytest.raises(CheckpointError) as info:
        load_state_dict_strict(Tiny(), _broken(_weights()), str(path))
    messages.append(str(info.value))
    with pytest.raises(CheckpointError) as info:
        Tiny(init_cfg=dict(type='StrictPretrained', checkpoint=str(path))).init_weights()
    messages.append(str(info.value))
    with pytest.raises(CheckpointError) as info:
        load_weights(Tiny(), load_checkpoint_file(path), path)
    messages.append(str(info.value))
    for message in messages:
        assert str(path) in message.splitlines()[0]
        assert f'{path} does not fit Tiny' in message
        for line in KEY_LINES:
            assert f'\n  {line}' in message, (line, message)
    assert 'refusing to train from (partly) random weights' in messages[1]


def test_report_lists_many_keys_with_a_count(tmp_path):
    module = nn.Sequential(*[nn.Linear(1, 1) for _ in range(10)])
    with pytest.raises(CheckpointError) as info:
        check_and_load(module, {}, 'empty.pth')
    message = str(info.value)
    assert 'no parameter of the model was found in the file' in message
    assert 'missing keys (20): 0.weight, 0.bias, 1.weight' in message
    assert '... and 8 more' in message


def test_declared_keys_pass_and_are_reported():
    weights = _weights()
    state = dict(weights, **{'head.weight': torch.zeros(1)})
    del state['norm.bias']
    module = Tiny()
    report = check_and_load(
        module, state, 'w.pth', ignore_missing=[r'^norm\.bias$'], ignore_unexpected=[r'^head\.'])
    assert (report.missing, report.unexpected) == (['norm.bias'], ['head.weight'])
    assert torch.equal(module.fc.weight, weights['fc.weight'])


def test_local_reader_memory_maps_zip_files(tmp_path):
    """The local fast path: the same tensors as a plain torch.load, their storage
    mapped from the file instead of copied into memory."""
    path = tmp_path / 'w.pth'
    torch.save(_weights(), path)
    got = load_checkpoint_file(path)
    reference = torch.load(path, weights_only=True)
    assert all(torch.equal(got[k], reference[k]) for k in reference)
    maps = Path('/proc/self/maps')
    if maps.exists():  # Linux: the file is mapped into this process
        assert str(path) in maps.read_text()
