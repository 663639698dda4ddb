"""``RobustDataset``: deprecated; kept so that older configs still build.

It used to wrap the train dataset to skip bad files and seed augmentation. Both
now happen without a wrapper: ``SafeLoadImageFromFile`` in the pipeline returns
None for a bad file and mmengine's dataset refetches (``max_refetch``), and
``AtomicCheckpointHook`` seeds the pipeline of the plain dataset. The wrapper also
moved the dataset's keys one level down, so the usual ``--cfg-options
train_dataloader.dataset.data_root=...`` did not reach them.

``type='RobustDataset'`` now warns and builds the wrapped dataset itself, with its
``LoadImageFromFile`` steps turned into ``SafeLoadImageFromFile(max_bad_samples=...)``
and ``max_refetch=max_substitutes``. Write instead::

    train_dataloader = dict(dataset=dict(
        type='ImageNet', data_root='data/imagenet', split='train',
        pipeline=[dict(type='SafeLoadImageFromFile', max_bad_samples=100), ...]))
"""
import copy
import logging

from mmengine.logging import print_log

from mmfd.registry import DATASETS

UPGRADES = {
    'LoadImageFromFile': 'SafeLoadImageFromFile',
    'mmcv.LoadImageFromFile': 'SafeLoadImageFromFile'
}


def upgrade_pipeline(dataset_cfg: dict, max_bad_samples=None) -> dict:
    """A copy of ``dataset_cfg`` whose LoadImageFromFile steps are the safe loader
    (nested ``dataset``/``datasets`` wrappers included)."""
    cfg = copy.deepcopy(dataset_cfg)
    for step in cfg.get('pipeline', None) or []:
        if isinstance(step, dict) and step.get('type') in UPGRADES:
            step['type'] = UPGRADES[step['type']]
        if (isinstance(step, dict) and step.get('type') == 'SafeLoadImageFromFile'
                and max_bad_samples is not None):
            step.setdefault('max_bad_samples', max_bad_samples)
    if isinstance(cfg.get('dataset'), dict):
        cfg['dataset'] = upgrade_pipeline(cfg['dataset'], max_bad_samples)
    if isinstance(cfg.get('datasets'), (list, tuple)):
        cfg['datasets'] = [upgrade_pipeline(d, max_bad_samples) for d in cfg['datasets']]
    return cfg


def robust_dataset(dataset,
                   max_bad_samples: int = 100,
                   max_substitutes: int = 16,
                   upgrade_loader: bool = True):
    """Deprecated ``RobustDataset``: builds ``dataset`` (a config) unwrapped, with
    the safe loader; see the module doc for the config to write instead."""
    print_log(
        "dict(type='RobustDataset', dataset=...) is deprecated: use the dataset "
        "itself with dict(type='SafeLoadImageFromFile', max_bad_samples=...) as "
        'the first pipeline step (bad files are skipped through mmengine\'s '
        'max_refetch; per-sample seeds come from AtomicCheckpointHook). Building '
        'the wrapped dataset unwrapped.',
        logger='current',
        level=logging.WARNING)
    if not isinstance(dataset, dict):
        return dataset
    cfg = upgrade_pipeline(dataset, max_bad_samples) if upgrade_loader else copy.deepcopy(dataset)
    if 'pipeline' in cfg:  # a BaseDataset (wrappers have no max_refetch)
        cfg.setdefault('max_refetch', max_substitutes)
    return DATASETS.build(cfg)


DATASETS.register_module(name='RobustDataset', module=robust_dataset)
