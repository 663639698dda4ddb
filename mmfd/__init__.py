"""mmfd: Feature Distillation for the OpenMMLab toolboxes.

Importing mmfd registers its models, hooks and transforms into mmpretrain's
registries (scope ``mmpretrain``) and makes mmengine checkpoints loadable with
``torch.load(weights_only=True)`` (see :mod:`mmfd.compat`). It also makes mmfd's
configs reachable as ``mmfd::<folder>/<config>.py`` and through mmpretrain's
``list_models`` / ``get_model`` (see :mod:`mmfd.model_index`).
"""
from .utils.env_check import check_environment
from .version import __version__

check_environment()

from . import compat  # noqa: E402,F401  (safe globals for mmengine checkpoints)
from . import datasets  # noqa: E402,F401  (SafeLoadImageFromFile)
from . import engine  # noqa: E402,F401
from . import models  # noqa: E402,F401  (registers into mmpretrain.registry)
from .model_index import setup_model_index  # noqa: E402

setup_model_index()

__all__ = ['__version__', 'check_environment']
