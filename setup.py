from setuptools import find_packages, setup


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


setup(
    name='mmfd',
    version=read_version(),
    description='Feature Distillation (FD) for the OpenMMLab toolboxes',
    long_description=open('README.md').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('configs', 'tools', 'tests')),
    python_requires='>=3.10',
    # mmcv is not listed: it must be built from source with ops (tools/setup_env.sh).
    install_requires=read_requirements('requirements/runtime.txt'),
    extras_require={'tests': read_requirements('requirements/tests.txt')},
    license='Apache-2.0',
)
