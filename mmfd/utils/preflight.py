"""Config faults caught before training starts, with messages that say what to fix.

``preflight(cfg)`` runs in ``tools/train.py`` right before ``Runner.from_cfg``: it
only looks at files and numbers (milliseconds), so a wrong path fails in the first
second rather than after the teacher is loaded and the dataset indexed. It checks

* data: ``data_root`` / ``ann_file`` / ``data_prefix`` of every dataloader (wrappers
  included) exist;
* checkpoints: the teacher's ``checkpoint``, ``init_cfg.checkpoint`` of any module,
  and an explicit ``load_from`` / resume path exist;
* the teacher type is registered (unknown names get the closest registered
  teachers); the arch name, widths and grids are checked by building the model,
  which the Runner does next, before any data is read;
* the batch: ``train_dataloader.batch_size`` is mmengine's PER-PROCESS batch. The
  optional top-level ``total_batch_size`` is the batch of one optimizer step over
  all processes: total = batch_size x world_size x accumulative_counts. When it is
  set, batch_size is derived from it (and must divide evenly); when
  ``auto_scale_lr.enable`` is off, a total that differs from
  ``auto_scale_lr.base_batch_size`` is reported as a warning (the lr was tuned for
  the base batch).
* the work dir can be written.

All problems are reported together in one error.
"""
import difflib
import logging
import os
import os.path as osp
import tempfile
from typing import List, Optional, Tuple, Type

from mmengine.logging import print_log

from .errors import CheckpointError, ConfigError, MMFDError


def _is_remote(path) -> bool:
    return '://' in str(path)


def _get(cfg, key, default=None):
    try:
        return cfg.get(key, default)
    except AttributeError:
        return default


class _Problems:

    def __init__(self):
        self.items: List[Tuple[Type[MMFDError], str]] = []

    def add(self, kind, message):
        self.items.append((kind, message))

    def raise_if_any(self):
        if not self.items:
            return
        if len(self.items) == 1:
            kind, message = self.items[0]
            raise kind(message)
        kind = self.items[0][0]
        lines = '\n'.join(f'  {i + 1}. {m}' for i, (_, m) in enumerate(self.items))
        raise kind(f'{len(self.items)} problems in the config, found before training:\n'
                   f'{lines}')


def world_size_from_env(launcher: str = 'none') -> int:
    """The number of training processes the launcher will start."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    if launcher == 'none':
        return 1
    for var in ('WORLD_SIZE', 'SLURM_NTASKS', 'OMPI_COMM_WORLD_SIZE', 'PMI_SIZE'):
        if os.environ.get(var, '').isdigit():
            return int(os.environ[var])
    return 1


def check_dataset(dataset, where: str, problems: _Problems) -> None:
    if not isinstance(dataset, dict):
        return
    for key in ('dataset', ):
        if isinstance(dataset.get(key), dict):
            check_dataset(dataset[key], f'{where}.{key}', problems)
    for i, sub in enumerate(dataset.get('datasets', None) or []):
        check_dataset(sub, f'{where}.datasets[{i}]', problems)
    root = dataset.get('data_root', None)
    if root and not _is_remote(root) and not osp.isdir(root):
        problems.add(
            ConfigError, f'{where}.data_root={root!r} does not exist '
            f'(working directory: {os.getcwd()}).')
        return
    base = root or ''
    ann = dataset.get('ann_file', None)
    if ann and not _is_remote(ann):
        path = ann if osp.isabs(ann) else osp.join(base, ann)
        if not osp.exists(path):
            problems.add(ConfigError, f'{where}.ann_file={ann!r}: {path} does not exist.')
    prefix = dataset.get('data_prefix', None)
    prefixes = prefix.values() if isinstance(prefix, dict) else [prefix]
    for p in prefixes:
        if isinstance(p, str) and p and not _is_remote(p):
            path = p if osp.isabs(p) else osp.join(base, p)
            if not osp.exists(path):
                problems.add(ConfigError, f'{where}.data_prefix {p!r}: {path} does not '
                             'exist.')


def _walk_checkpoints(node, where: str):
    """(where, path) of every ``checkpoint`` / ``init_cfg.checkpoint`` in a model cfg."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == 'checkpoint' and isinstance(value, (str, os.PathLike)):
                yield f'{where}.{key}', os.fspath(value)
            elif isinstance(value, (dict, list, tuple)):
                yield from _walk_checkpoints(value, f'{where}.{key}')
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk_checkpoints(value, f'{where}[{i}]')


def check_checkpoints(cfg, problems: _Problems) -> None:
    for where, path in _walk_checkpoints(_get(cfg, 'model', {}), 'model'):
        if _is_remote(path) or osp.isfile(path):
            continue
        hint = ('mmfd never downloads weights: download the file and pass its local '
                'path' if 'teacher' in where else 'set it to an existing local file')
        problems.add(
            CheckpointError, f'{where}={path!r}: file not found. {hint} '
            f'(working directory: {os.getcwd()}).')
    load_from = _get(cfg, 'load_from')
    if load_from and not _is_remote(load_from) and not osp.isfile(load_from):
        what = 'resume' if _get(cfg, 'resume') else 'load_from'
        problems.add(CheckpointError, f'{what} checkpoint {load_from!r}: file not found.')


def teacher_types() -> List[str]:
    """Registered names that build teachers (classes deriving from BaseTeacher, and
    the ConvertedTeacher factory)."""
    from mmpretrain.registry import MODELS

    from mmfd.models.teachers.base import BaseTeacher
    names = []
    for name, obj in MODELS.module_dict.items():
        is_teacher = isinstance(obj, type) and issubclass(obj, BaseTeacher)
        if is_teacher or name == 'ConvertedTeacher':
            names.append(name)
    return sorted(names)


def check_teacher(cfg, problems: _Problems) -> None:
    model = _get(cfg, 'model', {}) or {}
    if not isinstance(model, dict):
        return
    teachers = {'model.teacher': model.get('teacher', None)}
    if isinstance(model.get('teachers', None), dict):
        teachers = {f'model.teachers.{k}': v for k, v in model['teachers'].items()}
    for where, teacher in teachers.items():
        _check_teacher_type(where, teacher, problems)


def _check_teacher_type(where: str, teacher, problems: _Problems) -> None:
    if not isinstance(teacher, dict) or 'type' not in teacher:
        return
    name = teacher['type']
    if not isinstance(name, str):
        return
    from mmpretrain.registry import MODELS
    if MODELS.get(name) is not None:
        return
    known = teacher_types()
    by_lower = {k.lower(): k for k in known}  # 'ClipTeacher' -> 'CLIPTeacher'
    close = [
        by_lower[c]
        for c in difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.4)
    ]
    hint = f' Did you mean {", ".join(repr(c) for c in close)}?' if close else ''
    problems.add(
        ConfigError, f'{where}.type={name!r} is not a registered teacher.'
        f'{hint} Known teachers: {", ".join(known)}.')


def check_batch(cfg, world_size: int, problems: _Problems) -> None:
    loader = _get(cfg, 'train_dataloader')
    if not loader:
        return
    optim = _get(cfg, 'optim_wrapper', {}) or {}
    accumulate = int(optim.get('accumulative_counts', 1) or 1)
    total = _get(cfg, 'total_batch_size')
    per_rank = loader.get('batch_size', None)
    if total is not None:
        total = int(total)
        denominator = world_size * accumulate
        if total <= 0 or total % denominator:
            nearest = max(1, total // denominator) * denominator
            problems.add(
                ConfigError,
                (f'total_batch_size={total} cannot be split over {world_size} process(es) x '
                 f'{accumulate} accumulation step(s) (= {denominator}): choose a total '
                 f'divisible by {denominator} (e.g. {nearest}) or another number of '
                 'processes.'))
            return
        derived = total // denominator
        if per_rank is not None and per_rank != derived:
            print_log(
                f'train_dataloader.batch_size: {per_rank} -> {derived} per process '
                f'(total_batch_size {total} = {derived} x {world_size} process(es) x '
                f'{accumulate} accumulation step(s)).',
                logger='current')
        loader['batch_size'] = per_rank = derived
    if per_rank is None or int(per_rank) < 1:
        problems.add(
            ConfigError, f'train_dataloader.batch_size={per_rank!r}: must be a '
            'positive number of samples per process.')
        return
    effective = int(per_rank) * world_size * accumulate
    scale = _get(cfg, 'auto_scale_lr') or {}
    base = scale.get('base_batch_size') if isinstance(scale, dict) else None
    if base and not scale.get('enable', False) and effective != base:
        print_log(
            f'Effective batch {effective} (= {per_rank} x {world_size} x '
            f'{accumulate}) differs from auto_scale_lr.base_batch_size={base} and '
            'auto_scale_lr is off: the lr is used as written.',
            logger='current',
            level=logging.WARNING)


def check_work_dir(cfg, problems: _Problems) -> None:
    work_dir = _get(cfg, 'work_dir')
    if not work_dir or _is_remote(work_dir):
        return
    try:
        os.makedirs(work_dir, exist_ok=True)
        with tempfile.TemporaryFile(dir=work_dir):
            pass
    except OSError as err:
        problems.add(ConfigError, f'work_dir={work_dir!r} is not writable: {err}')


def preflight(cfg, world_size: Optional[int] = None):
    """Checks ``cfg`` (an mmengine Config) before the Runner is built; raises one
    ConfigError/CheckpointError listing every problem. Fills
    ``train_dataloader.batch_size`` from ``total_batch_size`` when that is set.
    Returns ``cfg``."""
    if world_size is None:
        world_size = world_size_from_env(_get(cfg, 'launcher', 'none') or 'none')
    problems = _Problems()
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = _get(cfg, name)
        loop_cfg = _get(cfg, name.replace('dataloader', 'cfg'))
        if isinstance(loader, dict) and (name == 'train_dataloader' or loop_cfg):
            check_dataset(loader.get('dataset'), f'{name}.dataset', problems)
    check_checkpoints(cfg, problems)
    check_teacher(cfg, problems)
    check_batch(cfg, world_size, problems)
    check_work_dir(cfg, problems)
    problems.raise_if_any()
    return cfg
