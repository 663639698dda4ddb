"""The template every teacher is built by: the one family table, a family added as
one class, and ``backend_args`` reaching mmengine.fileio for every file format."""
import importlib.util
import os

import pytest
import torch
from mmengine.fileio import register_backend
from mmengine.fileio.backends import BaseStorageBackend
from teacher_fixtures import (TOL, build_open_clip, build_timm_vit, clip_reference_tokens, images,
                              max_diff, randomize_, save_big_vision_npz, tiny_clip_config, vit_arch)
from torch import nn

import mmfd  # noqa: F401
from mmfd.checkpoint import guess_family, teacher_formats
from mmfd.models.teachers import (TEACHER_FAMILIES, BaseTeacher, CLIPTeacher, TimmTeacher,
                                  ViTTeacher, build_teacher)
from mmfd.registry import MODELS
from mmfd.utils.errors import CheckpointError, ConfigError

TOOL = os.path.join(
    os.path.dirname(__file__), '..', 'tools', 'model_converters', 'convert_teacher.py')


def _convert_tool():
    spec = importlib.util.spec_from_file_location('convert_teacher', TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------ backend_args
class DirectoryBackend(BaseStorageBackend):
    """A storage backend serving the files of ``root`` under any URI (by base name),
    which it records. Registered without a URI prefix: only ``backend_args`` can
    select it, so a teacher that reads through it passed the option on."""
    served = []

    def __init__(self, root: str):
        self.root = root

    def get(self, filepath):
        DirectoryBackend.served.append(str(filepath))
        with open(os.path.join(self.root, str(filepath).rsplit('/', 1)[-1]), 'rb') as handle:
            return handle.read()

    def get_text(self, filepath, encoding='utf-8'):
        return self.get(filepath).decode(encoding)


register_backend('mmfd_test_directory', DirectoryBackend, force=True)


def _store(tmp_path):
    DirectoryBackend.served.clear()
    return dict(backend='mmfd_test_directory', root=str(tmp_path))


def test_backend_args_reach_mmengine_fileio(tmp_path):
    """A torch file and a big_vision .npz, read through a backend only backend_args
    names: the tokens are the reference model's."""
    model = build_timm_vit()
    torch.save({'model': model.state_dict()}, tmp_path / 'deit.pth')
    url = 'store://teachers/deit.pth'
    with pytest.raises(CheckpointError, match='backend_args=None'):
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=url)
    teacher = ViTTeacher(
        arch=vit_arch(), img_size=32, checkpoint=url, backend_args=_store(tmp_path))
    assert DirectoryBackend.served == [url]
    x = images(32)
    with torch.no_grad():
        assert max_diff(teacher(x).tokens, model.forward_features(x)) <= TOL

    import timm
    tiny = dict(depth=2, embed_dim=64, num_heads=2)
    name = 'vit_base_patch16_siglip_224'
    torch.manual_seed(0)
    siglip = randomize_(
        timm.create_model(name, num_classes=0, img_size=64, **tiny), seed=0, scale=0.02)
    save_big_vision_npz(siglip, tmp_path / 'siglip.npz')
    url = 'store://teachers/siglip.npz'
    teacher = TimmTeacher(
        name, checkpoint=url, img_size=64, model_kwargs=tiny, backend_args=_store(tmp_path))
    assert DirectoryBackend.served == [url]
    x = images(64)
    with torch.no_grad():
        assert max_diff(teacher(x).tokens, siglip.forward_features(x)) <= TOL


def test_backend_args_local_round_trip(tmp_path):
    path = str(tmp_path / 'vit.pth')
    torch.save(build_timm_vit().state_dict(), path)
    default = ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)
    local = ViTTeacher(
        arch=vit_arch(), img_size=32, checkpoint=path, backend_args=dict(backend='local'))
    assert torch.equal(local(images(32)).tokens, default(images(32)).tokens)
    assert local.backend_args == dict(backend='local')


def test_bad_backend_args_name_the_option(tmp_path):
    path = str(tmp_path / 'vit.pth')
    torch.save(build_timm_vit().state_dict(), path)
    with pytest.raises(ConfigError, match=r"ViTTeacher: backend_args must be a dict.*'local'"):
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path, backend_args='local')
    with pytest.raises(
            CheckpointError, match=r"backend_args=\{'backend': 'no_such_backend'\}") as info:
        ViTTeacher(
            arch=vit_arch(),
            img_size=32,
            checkpoint=path,
            backend_args=dict(backend='no_such_backend'))
    assert path in str(info.value)


def test_remote_openai_weights_need_an_explicit_quick_gelu(tmp_path):
    """Whether a fetched file was an OpenAI TorchScript archive is not known, so
    OpenAI weights (their input_resolution / context_length / vocab_size entries)
    read through a backend need quick_gelu set: never a silent GELU."""
    config = tiny_clip_config(quick_gelu=True)
    model = build_open_clip(config)
    state = dict(model.state_dict())
    state.update(
        input_resolution=torch.tensor(32),
        context_length=torch.tensor(8),
        vocab_size=torch.tensor(64))
    torch.save(state, tmp_path / 'openai.pt')
    url = 'store://clip/openai.pt'
    arch = dict(config, quick_gelu=False)  # the config alone would say GELU
    with pytest.raises(ConfigError, match='set quick_gelu=True'):
        CLIPTeacher(arch=arch, checkpoint=url, backend_args=_store(tmp_path))
    teacher = CLIPTeacher(arch=arch, checkpoint=url, quick_gelu=True, backend_args=_store(tmp_path))
    x = images(32)
    assert max_diff(teacher(x).tokens, clip_reference_tokens(model.visual, x)) <= TOL


# ------------------------------------------------------------------ the family table
def test_one_family_table():
    """Every consumer reads TEACHER_FAMILIES: the registry, convert_teacher's
    --family choices, the converted-file and key-format messages."""
    assert set(TEACHER_FAMILIES) == {'clip', 'vit', 'swin', 'mmpretrain', 'timm'}
    for family, cls in TEACHER_FAMILIES.items():
        assert cls.family == family and MODELS.get(cls.__name__) is cls
    assert set(_convert_tool().families()) == set(TEACHER_FAMILIES)
    assert teacher_formats.TEACHER_OF_FAMILY == {f: c.__name__ for f, c in TEACHER_FAMILIES.items()}


class _Toy(BaseTeacher):
    """Stand-in for a family file: everything a new family writes."""

    @staticmethod
    def looks_like(keys) -> bool:
        return any(k.startswith('toy_stem.') for k in keys)

    def build(self, width, img_size) -> None:
        self.embed_dim, self.patch_size, self.has_cls = width or 16, 8, False
        self.img_size = img_size or 32
        self.model = nn.ModuleDict(
            dict(toy_stem=nn.Conv2d(3, self.embed_dim, 8, 8), norm=nn.LayerNorm(self.embed_dim)))

    def forward_tokens(self, images):
        return self.model['norm'](self.model['toy_stem'](images).flatten(2).transpose(1, 2))

    def export_kwargs(self) -> dict:
        return dict(
            width=self.embed_dim, img_size=self.img_size, mean=list(self.mean), std=list(self.std))


@pytest.fixture
def toy_family():
    """A family class defined as a family file would define it, removed afterwards."""

    class ToyFamilyTeacher(_Toy):
        family = 'toyfamily'
        file_options = dict(width=None)
        ignored_keys = (r'^head\.', )

        def __init__(self,
                     checkpoint=None,
                     width=None,
                     img_size=None,
                     mean=None,
                     std=None,
                     allow_random_init=False,
                     backend_args=None,
                     init_cfg=None):
            super().__init__(
                checkpoint,
                img_size=img_size,
                mean=mean,
                std=std,
                allow_random_init=allow_random_init,
                backend_args=backend_args,
                init_cfg=init_cfg,
                width=width)

    MODELS.register_module(module=ToyFamilyTeacher)
    try:
        yield ToyFamilyTeacher
    finally:
        TEACHER_FAMILIES.pop('toyfamily', None)
        MODELS._module_dict.pop('ToyFamilyTeacher', None)


def test_a_family_is_one_class(tmp_path, toy_family):
    """Defining the class is all: the table, strict loading of its files, refusal of
    its files by other families, the converter and ConvertedTeacher follow."""
    assert TEACHER_FAMILIES['toyfamily'] is toy_family
    torch.manual_seed(0)
    reference = randomize_(
        nn.ModuleDict(dict(toy_stem=nn.Conv2d(3, 24, 8, 8), norm=nn.LayerNorm(24))))
    state = dict(reference.state_dict(), **{'head.weight': torch.zeros(2, 24)})
    path = str(tmp_path / 'toy.pth')
    torch.save({'state_dict': state}, path)

    teacher = build_teacher(dict(type='ToyFamilyTeacher', checkpoint=path, width=24))
    x = images(32)
    with torch.no_grad():
        expected = reference['norm'](reference['toy_stem'](x).flatten(2).transpose(1, 2))
    assert max_diff(teacher(x).tokens, expected) <= TOL
    assert teacher.mean == (123.675, 116.28, 103.53) and not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())

    del state['norm.bias']
    torch.save(state, tmp_path / 'cut.pth')
    with pytest.raises(CheckpointError, match=r'missing keys \(1\): norm\.bias'):
        toy_family(checkpoint=str(tmp_path / 'cut.pth'), width=24)
    assert guess_family(state) == 'toyfamily'
    with pytest.raises(CheckpointError, match='looks like a toyfamily.*use ToyFamilyTeacher'):
        ViTTeacher(arch=vit_arch(), img_size=32, checkpoint=path)

    out = str(tmp_path / 'toy.safetensors')
    meta = _convert_tool().main(
        ['--family', 'toyfamily', path, out, '--teacher-kwargs', '{"width": 24}'])
    assert meta['family'] == 'toyfamily' and meta['embed_dim'] == 24
    converted = build_teacher(out)
    assert isinstance(converted, toy_family) and converted.embed_dim == 24
    assert torch.equal(converted(x).tokens, teacher(x).tokens)
    # the width is read from the converted file
    assert toy_family(checkpoint=out).embed_dim == 24

    with pytest.raises(TypeError, match="family 'toyfamily' is already"):

        class Again(_Toy):
            family = 'toyfamily'
