"""Models for the diagnostic tools: from an mmengine config, a checkpoint that
carries its config (``meta['cfg']``, as mmengine's Runner writes), or both.

``SPEC`` forms accepted by :func:`load_model`:

- ``config.py``: built from ``cfg.model`` (``cfg.load_from`` is loaded if set,
  otherwise the model keeps its ``init_weights`` initialisation);
- ``checkpoint.pth``: the config is read from ``meta['cfg']``;
- ``config.py,checkpoint.pth``: this config, these weights.

Checkpoints are read by :func:`mmfd.checkpoint.load_checkpoint_file`
(``torch.load(weights_only=True)``: a file from the internet cannot run code; mmfd
allow-lists what mmengine itself writes) and loaded strictly by
:func:`mmfd.checkpoint.check_and_load`.

FD checkpoints hold no teacher weights (``FeatureDistiller`` leaves them out):
the teacher is rebuilt from the teacher checkpoint named in the config, so that
file must exist where the tool runs; point to a local copy with
``cfg_options={'model.teacher.checkpoint': PATH}`` (``--cfg-options`` in the tools).
"""
from pathlib import Path
from typing import Optional, Tuple

from torch import nn

from mmfd.checkpoint import check_and_load, load_checkpoint_file, unwrap_state_dict
from mmfd.utils.errors import CheckpointError, ConfigError

CONFIG_SUFFIXES = ('.py', '.yaml', '.yml', '.json')


def split_spec(spec: str) -> Tuple[str, str]:
    """``'a.py,b.pth'`` -> ``('a.py', 'b.pth')``; a lone file goes to its slot."""
    parts = [p for p in str(spec).split(',') if p]
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1:
        if Path(parts[0]).suffix in CONFIG_SUFFIXES:
            return parts[0], None
        return None, parts[0]
    raise ConfigError(f'model spec {spec!r}: use CONFIG, CHECKPOINT or CONFIG,CHECKPOINT.')


def config_of(config_path, checkpoint):
    from mmengine.config import Config
    if config_path is not None:
        if not Path(config_path).is_file():
            raise ConfigError(f'config {config_path} does not exist.')
        return Config.fromfile(config_path)
    text = (checkpoint.get('meta') or {}).get('cfg') if isinstance(checkpoint, dict) else None
    if not text:
        raise CheckpointError('the checkpoint has no meta["cfg"]: pass its config too, as '
                              'CONFIG.py,CHECKPOINT.pth.')
    return Config.fromstring(text, file_format='.py')


def load_weights(model: nn.Module, checkpoint: dict, source) -> None:
    """Every weight of ``model`` from a checkpoint read by load_checkpoint_file
    (``state_dict`` of an mmengine file, or a flat dict), strictly."""
    state_dict = unwrap_state_dict(checkpoint, source=str(source), nesting_keys=('state_dict', ))
    check_and_load(model, state_dict, str(source))


def load_model(spec: str,
               device='cpu',
               cfg_options: Optional[dict] = None,
               backend_args: Optional[dict] = None) -> Tuple[nn.Module, object]:
    """Builds the model of ``spec``; returns ``(model in eval mode on device, cfg)``.

    ``cfg_options``: dotted-key overrides merged into the config (mmengine style).
    ``backend_args``: ``mmengine.fileio`` backend arguments for the checkpoint.
    """
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmfd  # noqa: F401  (registers mmfd's models)

    def read(path):
        return load_checkpoint_file(path, backend_args=backend_args)

    config_path, checkpoint_path = split_spec(spec)
    checkpoint = read(checkpoint_path) if checkpoint_path else None
    cfg = config_of(config_path, checkpoint)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if 'model' not in cfg:
        raise ConfigError(f'{spec}: the config has no `model`.')
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    # As mmengine's Runner does: a top-level data_preprocessor (the mm convention,
    # e.g. configs/_base_/datasets/imagenet_fd.py) belongs to the model.
    if cfg.get('data_preprocessor') is not None:
        cfg.model.setdefault('data_preprocessor', cfg.data_preprocessor)
    model = MODELS.build(cfg.model)
    if checkpoint is None and cfg.get('load_from'):
        checkpoint_path = cfg.load_from
        checkpoint = read(checkpoint_path)
    if checkpoint is None:
        if hasattr(model, 'init_weights'):
            model.init_weights()
    else:
        load_weights(model, checkpoint, checkpoint_path)
    model.to(device)
    model.eval()  # not chained: some mmpretrain backbones' train() returns None
    return model, cfg


def default_img_size(model: nn.Module, label: str = 'student'):
    """The input size a model was built for (FD ``input_size``, ``img_size``), else 224."""
    if label.startswith('teacher') and (hasattr(model, 'teacher') or hasattr(model, 'teachers')):
        model_size = getattr(model, 'input_size', None)
        if model_size is not None:  # FD feeds the teacher the student's crop
            return tuple(model_size)
        return getattr(getattr(model, 'teacher', None), 'img_size', 224)
    for holder in (model, getattr(model, 'backbone', None)):
        for attr in ('input_size', 'img_size'):
            size = getattr(holder, attr, None) if holder is not None else None
            if isinstance(size, int):
                return size
            if isinstance(size, (tuple, list)) and len(size) == 2:
                return tuple(int(s) for s in size)
    return 224


def model_label(spec: str, which: str) -> str:
    config_path, checkpoint_path = split_spec(spec)
    stem = Path(checkpoint_path or config_path).stem
    return f'{stem}/{which}'
