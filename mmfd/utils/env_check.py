"""Start-up check of the dependency stack, with messages that say how to fix it.

``import mmfd`` runs :func:`check_environment` (hard failures raise, soft ones warn
once); ``python -m mmfd.utils.env_check`` prints the full report and exits non-zero
when anything is wrong (``make env`` runs it last). Versions are read from the
installed distributions' metadata: nothing is imported, so a broken optional
package (mmdet, open_clip, ...) cannot break ``import mmfd`` for FD-only users.
"""
import importlib.util
import sys
import warnings
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as dist_version

# (distribution, import name, required version prefix or None, needed for)
SUPPORTED_TORCH = ('2.5', '2.6', '2.7', '2.8', '2.9')
FIX = 'Run `make env` in the mmfd repository to (re)build the pinned environment.'
OPTIONAL = (
    ('mmdet', 'mmdet', '3.3.', 'COCO detection configs (configs/mmdet)'),
    ('mmsegmentation', 'mmseg', '1.2.', 'ADE20K segmentation configs (configs/mmseg)'),
    ('open_clip_torch', 'open_clip', '3.', 'CLIP teachers (CLIPTeacher)'),
    ('timm', 'timm', '1.', 'DINO/DeiT/EsViT teachers'),
)


def _version(dist):
    """The installed version of distribution ``dist``, None when it is absent."""
    try:
        return dist_version(dist)
    except PackageNotFoundError:
        return None


def collect_problems():
    """Returns (errors, warnings) as lists of human-readable strings."""
    errors, warns = [], []
    if sys.version_info < (3, 10):
        errors.append(f'Python {sys.version.split()[0]} is too old: mmfd needs >= 3.10.')

    try:  # torch is imported by mmfd anyway; its __version__ carries the build tag
        import torch
        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    if torch_version is None:
        errors.append(f'PyTorch is not installed. {FIX}')
    elif not torch_version.startswith(SUPPORTED_TORCH):
        errors.append(f'torch {torch_version} is not supported: mmcv 2.1.0 (needed by mmdet/mmseg) '
                      f'compiles only against torch <= 2.9 (C++17 headers). Use torch 2.9.1. {FIX}')

    for dist, name, prefix in (('mmengine', 'mmengine', '0.10.'), ('mmcv', 'mmcv', '2.1.'),
                               ('mmpretrain', 'mmpretrain', '1.2.')):
        version = _version(dist)
        if version is None:
            errors.append(f'{dist} is not installed. {FIX}')
        elif not version.startswith(prefix):
            errors.append(f'{dist} {version} is installed, mmfd is pinned to {prefix}x. {FIX}')

    if _version('mmcv') is not None and importlib.util.find_spec('mmcv._ext') is None:
        warns.append('mmcv was built WITHOUT its compiled ops (mmcv._ext is missing, e.g. '
                     'mmcv-lite): FD pre-training works, but `import mmdet.models` and '
                     '`import mmseg.models` fail. Rebuild with `MMCV_WITH_OPS=1 pip install '
                     '--no-build-isolation mmcv==2.1.0` or run `make env`.')

    for dist, name, prefix, purpose in OPTIONAL:
        if importlib.util.find_spec(name) is None:
            warns.append(f'{dist} is not installed: {purpose} are unavailable. {FIX}')
            continue
        version = _version(dist)
        if version and not version.startswith(prefix):
            warns.append(f'{dist} {version} is installed, mmfd is tested with {prefix}x.')
    return errors, warns


class EnvironmentProblem(ImportError):
    """The installed stack cannot run mmfd."""


_checked = False


def check_environment():
    """Raises on a stack that cannot work; warns once about optional gaps."""
    global _checked
    if _checked:
        return
    _checked = True
    errors, warns = collect_problems()
    if errors:
        raise EnvironmentProblem('mmfd cannot start:\n  - ' + '\n  - '.join(errors))
    for message in warns:
        warnings.warn(message, stacklevel=3)


def main():
    errors, warns = collect_problems()
    import torch
    print(f'python {sys.version.split()[0]}, torch {torch.__version__} '
          f'(CUDA available: {torch.cuda.is_available()})')
    for dist in ('mmengine', 'mmcv', 'mmpretrain', 'mmdet', 'mmsegmentation', 'open_clip_torch',
                 'timm', 'tensorboard'):
        print(f'  {dist:<15} {_version(dist) or "MISSING"}')
    print(f'  mmcv ops    {"yes" if importlib.util.find_spec("mmcv._ext") else "NO"}')
    for message in errors:
        print(f'ERROR: {message}')
    for message in warns:
        print(f'WARNING: {message}')
    if errors or warns:
        sys.exit(1)
    print('environment OK')


if __name__ == '__main__':
    main()
