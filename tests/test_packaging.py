"""Packaging: the wheel, mim, ``mmfd::`` config paths and the model index.

The wheel is built from a copy of the working tree (so the build leaves nothing in the
repo), installed with ``pip install --no-deps --target`` into a temporary folder and
used from a process whose cwd is outside the repo and whose PYTHONPATH starts with
that folder: there the installed copy is the mmfd that is imported (asserted), and
the one pkg_resources finds, so mmengine (``mmfd::``) and mim look in its ``.mim/``.

``mim train mmfd CONFIG`` (openmim 0.3.7) runs ``<installed mmfd>/.mim/tools/train.py``
with the interpreter mim itself runs in, so the test calls mim's console script
through this interpreter (``python -m mim``); the run is 2 iterations of the tiny FD
config on generated images, on CPU.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
import yaml
from fd_fixtures import REPO, make_image_folder, make_timm_vit_checkpoint
from mmengine.config import Config

CLIP_B = 'fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k'


def _run(args, cwd, env=None, timeout=300):
    result = subprocess.run([str(a) for a in args],
                            cwd=cwd,
                            env=env,
                            capture_output=True,
                            text=True,
                            timeout=timeout)
    assert result.returncode == 0, (f'{args} failed ({result.returncode}):\n'
                                    f'{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


def _tree_files():
    """Tracked files plus new ones git does not ignore: what a commit would hold."""
    out = _run(['git', 'ls-files', '-z', '--cached', '--others', '--exclude-standard'], REPO)
    return [p for p in out.stdout.split('\0') if p and (REPO / p).is_file()]


def _copy_tree(dst):
    for rel in _tree_files():
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dst / rel)
    return dst


@pytest.fixture(scope='module')
def installed(tmp_path_factory):
    """(wheel path, site folder with the installed wheel, clean env for it, cwd)."""
    tmp = tmp_path_factory.mktemp('packaging')
    src = _copy_tree(tmp / 'src')
    pip = [sys.executable, '-m', 'pip', '--disable-pip-version-check', '--no-cache-dir']
    _run(pip + ['wheel', '.', '--no-deps', '--no-build-isolation', '-q', '-w', tmp / 'dist'], src)
    wheel = next((tmp / 'dist').glob('mmfd-*.whl'))
    site = tmp / 'site'
    _run(pip + ['install', '--no-deps', '-q', '--target', site, wheel], tmp)
    env = dict(os.environ, PYTHONPATH=str(site), OMP_NUM_THREADS='1', PYTHONNOUSERSITE='1')
    env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env["PATH"]}'
    work = tmp / 'work'  # the cwd of the installed-copy runs: not the repo
    work.mkdir()
    return wheel, site, env, work


def test_wheel_carries_mim_files(installed):
    wheel = installed[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in [
            f'mmfd/.mim/configs/fd/{CLIP_B}.py',
            'mmfd/.mim/configs/_base_/default_runtime.py',
            'mmfd/.mim/configs/fd/metafile.yml',
            'mmfd/.mim/tools/train.py',
            'mmfd/.mim/tools/test.py',
            'mmfd/.mim/model-index.yml',
            'mmfd/model_index.py',
    ]:
        assert name in names, f'{name} is not in {wheel.name}'
    assert not [n for n in names if n.startswith(('tests/', 'configs/', 'tools/'))]
    assert not [n for n in names if '__pycache__' in n]


def test_editable_install_links_mim_files(tmp_path):
    """`pip install -e .` (tools/setup_env.sh) runs `setup.py develop`: mmfd/.mim/ gets
    relative links into the checkout. Shown on a copy, installed into a scratch folder."""
    src, inst = _copy_tree(tmp_path / 'src'), tmp_path / 'inst'
    inst.mkdir()
    env = dict(os.environ, PYTHONPATH=str(inst))
    _run([sys.executable, 'setup.py', '-q', 'develop', '--no-deps', '--install-dir', inst], src,
         env)
    mim = src / 'mmfd' / '.mim'
    for name in ('configs', 'tools', 'model-index.yml'):
        assert (mim / name).is_symlink(), name
        assert os.readlink(mim / name) == f'../../{name}'
    assert (mim / 'configs' / 'fd' / f'{CLIP_B}.py').is_file()
    assert (inst / 'mmfd.egg-link').read_text().splitlines()[0] == str(src)


_INSTALLED_CHECKS = textwrap.dedent("""
    import json, sys
    from pathlib import Path

    import mmfd
    import mmpretrain
    from mmengine.config import Config
    from mmpretrain.apis.model import ModelHub

    site, clip_b = Path(sys.argv[1]), sys.argv[2]
    out = {'mmfd': mmfd.__file__}
    Path('user_fd.py').write_text(
        f"_base_ = ['mmfd::fd/{clip_b}.py']\\n"
        "model = dict(backbone=dict(drop_path_rate=0.1))\\n")
    cfg = Config.fromfile('user_fd.py')
    out['model'] = [cfg.model.type, cfg.model.teacher.type, cfg.model.teacher.arch,
                    cfg.model.backbone.drop_path_rate]
    out['listed'] = mmpretrain.list_models('*fd*')
    meta = ModelHub.get(clip_b)
    out['hub_config'] = [meta.config.filename, meta.config.model.type]
    Path('user_missing.py').write_text("_base_ = ['mmfd::fd/no_such_config.py']\\n")
    try:
        Config.fromfile('user_missing.py')
        out['missing'] = None
    except Exception as e:
        out['missing'] = f'{type(e).__name__}: {e}'
    print('RESULT ' + json.dumps(out))
""")


def test_installed_copy_configs_and_model_index(installed):
    _, site, env, work = installed
    result = _run([sys.executable, '-c', _INSTALLED_CHECKS, site, CLIP_B], work, env)
    line = next(x for x in result.stdout.splitlines() if x.startswith('RESULT '))
    out = json.loads(line[len('RESULT '):])
    assert Path(out['mmfd']).is_relative_to(site), out['mmfd']
    # mmfd::fd/<config>.py: the installed copy's config, with the user's override.
    assert out['model'] == ['FeatureDistiller', 'CLIPTeacher', 'ViT-B-16-quickgelu', 0.1]
    expected = {m['Name'] for m in _metafile_models()}
    assert expected <= set(out['listed']), expected - set(out['listed'])
    assert Path(out['hub_config'][0]).is_relative_to(site / 'mmfd' / '.mim' / 'configs')
    assert out['hub_config'][1] == 'FeatureDistiller'
    # A config that does not exist: the error names the path mmengine looked at.
    missing = site / 'mmfd' / '.mim' / 'configs' / 'fd' / 'no_such_config.py'
    assert out['missing'] and str(missing) in out['missing'], out['missing']


def test_mim_train_with_installed_copy(installed, tmp_path):
    _, site, env, work = installed
    data = make_image_folder(tmp_path / 'images', n=8, size=72)
    ckpt = make_timm_vit_checkpoint(tmp_path / 'teacher.pth')
    # A user's config inheriting mmfd's bases through mmfd:: (tests/configs/tiny_fd.py
    # with the repo-relative bases replaced).
    text = (REPO / 'tests/configs/tiny_fd.py').read_text()
    assert text.count("'../../configs/") == 4
    text = text.replace("'../../configs/", "'mmfd::")
    # mmengine marks what a config inherits through pkg:: with _scope_='pkg' and,
    # for a collate_fn, hands that key on to the function (functools.partial), which
    # rejects it: a config inheriting mmfd's dataset base re-declares its collate_fn.
    assert text.count('train_dataloader = dict(\n') == 1
    text = text.replace(
        'train_dataloader = dict(\n',
        "train_dataloader = dict(\n    collate_fn=dict(_delete_=True, type='default_collate'),\n")
    config = work / 'user_tiny_fd.py'
    config.write_text(text)
    work_dir = tmp_path / 'work_dir'
    result = _run([
        sys.executable, '-m', 'mim', 'train', 'mmfd', config, '--work-dir', work_dir,
        '--cfg-options', f'model.teacher.checkpoint={ckpt}',
        f'train_dataloader.dataset.data_root={data}', 'train_cfg.max_iters=2',
        'default_hooks.checkpoint.interval=2'
    ], work, env)
    train_py = site / 'mmfd' / '.mim' / 'tools' / 'train.py'
    assert f'{train_py} {config}' in result.stdout, result.stdout[-2000:]
    assert (work_dir / 'iter_2.pth').is_file(), sorted(p.name for p in work_dir.iterdir())
    logs = list(work_dir.glob('*/*.log'))
    assert logs and 'Iter(train) [2/2]' in logs[0].read_text()


def _metafiles():
    index = yaml.safe_load((REPO / 'model-index.yml').read_text())
    return [REPO / p for p in index['Import']]


def _metafile_models():
    return [m for path in _metafiles() for m in yaml.safe_load(path.read_text())['Models']]


def test_model_index_configs_exist_and_load():
    metafiles = _metafiles()
    assert {p.parent.name for p in metafiles} == {'fd', 'mmdet', 'mmseg'}
    names = set()
    for path in metafiles:
        meta = yaml.safe_load(path.read_text())
        collections = {c['Name'] for c in meta['Collections']}
        for model in meta['Models']:
            name, config = model['Name'], REPO / model['Config']
            assert config.is_file(), f'{path.name}: {name}: {config} does not exist'
            assert config.stem == name, f'{path.name}: {name} is the entry of {config.name}'
            assert name == name.lower() and name not in names
            assert model['In Collection'] in collections
            assert 'Weights' not in model  # nothing is published yet
            names.add(name)
            cfg = Config.fromfile(config)
            epochs = model['Metadata'].get('Epochs')
            if epochs is not None:
                assert cfg.train_cfg.max_epochs == epochs, name
            iters = model['Metadata'].get('Iterations')
            if iters is not None:
                assert cfg.train_cfg.max_iters == iters, name
    # Every canonical FD config and fine-tune has an entry.
    shipped = {p.stem for p in (REPO / 'configs/fd').glob('fd*.py')}
    shipped |= {p.stem for p in (REPO / 'configs/fd/benchmarks').glob('*.py')}
    assert shipped <= names, shipped - names
