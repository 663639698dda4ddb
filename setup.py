import os
import os.path as osp
import shutil
import sys
from setuptools import find_packages, setup

# What OpenMMLab's `mim` and mmengine's `mmfd::` config paths look for inside the
# installed package: <site-packages>/mmfd/.mim/{configs,tools,model-index.yml}.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_version():
    namespace = {}
    with open('mmfd/version.py') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_requirements(path):
    """Pins of a requirements file, without comments."""
    with open(path) as f:
        lines = (line.split('#')[0].strip() for line in f)
        return [line for line in lines if line]


def mim_mode(argv):
    """'symlink' for an in-place (editable) install, 'copy' for a wheel or sdist,
    None for anything else (e.g. `setup.py --version`)."""
    if 'develop' in argv or 'editable_wheel' in argv:
        # pip's legacy `setup.py develop` (what tools/setup_env.sh gets with this
        # setuptools) or a PEP 660 editable build: the package is used from the
        # checkout, so links keep mmfd/.mim in step with the configs being edited.
        return 'symlink'
    if any(cmd in argv for cmd in ('bdist_wheel', 'sdist', 'build', 'build_py')):
        return 'copy'
    return None


def add_mim_extension(mode=None, root=None):
    """Put configs/, tools/ and model-index.yml under mmfd/.mim/.

    A wheel or sdist gets real copies (package_data below ships them); an editable
    install gets relative symlinks into the checkout (a copy where the file system
    cannot link, e.g. Windows without developer mode). Returns the mode used."""
    mode = mim_mode(sys.argv) if mode is None else mode
    if mode is None:
        return None
    root = osp.abspath(root or osp.dirname(__file__))
    mim_dir = osp.join(root, 'mmfd', '.mim')
    os.makedirs(mim_dir, exist_ok=True)
    for name in MIM_FILES:
        src = osp.join(root, name)
        dst = osp.join(mim_dir, name)
        if not osp.exists(src):
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        if mode == 'symlink':
            try:
                os.symlink(osp.relpath(src, mim_dir), dst)
                continue
            except OSError:
                pass  # fall back to a copy
        if osp.isdir(src):
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copyfile(src, dst)
    return mode


if __name__ == '__main__':
    add_mim_extension()
    setup(
        name='mmfd',
        version=read_version(),
        description='Feature Distillation (FD) for the OpenMMLab toolboxes',
        long_description=open('README.md').read(),
        long_description_content_type='text/markdown',
        packages=find_packages(exclude=('configs', 'tools', 'tests')),
        # mmfd/.mim is not a Python package: its files travel as package data.
        include_package_data=True,
        package_data={'mmfd': ['.mim/model-index.yml', '.mim/configs/**/*', '.mim/tools/**/*']},
        python_requires='>=3.10',
        # mmcv is not listed: it must be built from source with ops (tools/setup_env.sh).
        install_requires=read_requirements('requirements/runtime.txt'),
        extras_require={'tests': read_requirements('requirements/tests.txt')},
        license='Apache-2.0',
    )
