"""Runs the diagnostics on a model: which network, which images, which numbers.

Shared by :class:`mmfd.engine.hooks.DiagnosticsHook` and the tools, so the
numbers a hook logs and the numbers a tool writes come from the same code.

Images travel as raw RGB in 0-255 (``[B, 3, H, W]`` float). Each
:class:`DiagnosticTarget` knows how its network wants them:

- FD models (``FeatureDistiller``): ``student`` = ``model.backbone`` on the
  data preprocessor's normalisation; ``teacher`` = ``model.teacher`` reached
  through ``model.compute_target`` (the exact re-normalisation and resizing FD
  training uses). With several teachers, ``teacher:<name>`` picks one and
  ``teacher`` means all of them (labelled ``teacher:<name>``).
- a teacher alone (:class:`BaseTeacher`): its own ``mean``/``std``.
- any other mmengine model with a ``backbone`` (mmpretrain classifiers,
  self-supervised algorithms): ``student`` = the backbone.
- a plain module: ``student`` = the module, ImageNet statistics.
"""
import contextlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from mmfd.models.teachers.base import IMAGENET_MEAN, IMAGENET_STD
from mmfd.utils.errors import ConfigError
from .attention_metrics import AttentionStatistics
from .landscape import loss_landscape, make_loss_fn
from .recording import AttentionRecorder, resolve_geometry

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.webp', '.tif', '.tiff')
TARGETS = ('student', 'teacher')


@dataclass
class DiagnosticTarget:
    label: str  # 'student' or 'teacher'
    root: nn.Module  # the whole model (put in eval mode while measuring)
    module: nn.Module  # the network whose attention is recorded
    run: Callable[[torch.Tensor], object]  # raw RGB 0-255 -> forward through ``module``

    @property
    def device(self) -> torch.device:
        for p in self.module.parameters():
            return p.device
        return torch.device('cpu')


def _stats(mean, std, device=None) -> Tuple[torch.Tensor, torch.Tensor]:
    mean = torch.as_tensor(mean, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)
    return mean, std


def preprocessor_stats(model: nn.Module):
    """(mean, std) as ``[1, 3, 1, 1]`` in 0-255 RGB of the model's data preprocessor;
    ImageNet's when it has none; ``(0, 1)`` when it does not normalise."""
    pre = getattr(model, 'data_preprocessor', None)
    if pre is None or not hasattr(pre, '_enable_normalize'):
        return _stats(IMAGENET_MEAN, IMAGENET_STD)
    if not pre._enable_normalize:
        return _stats((0., 0., 0.), (1., 1., 1.))
    return _stats(pre.mean.detach().flatten().cpu(), pre.std.detach().flatten().cpu())


def normalise(raw: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (raw - mean.to(raw.device)) / std.to(raw.device)


def _is_teacher(module) -> bool:
    from mmfd.models.teachers.base import BaseTeacher
    return isinstance(module, BaseTeacher)


def select_targets(model: nn.Module,
                   which: Sequence[str] = TARGETS,
                   strict: bool = False) -> List[DiagnosticTarget]:
    """The networks of ``model`` to diagnose, in the order of ``which``.

    ``strict``: raise a :class:`ConfigError` when a requested one does not exist
    (a tool asked for ``--model teacher`` of a classifier); otherwise skip it.
    """
    check_target_labels(which)
    mean, std = preprocessor_stats(model)
    targets = []
    for label in _expand_teachers(model, which, strict):
        if label.startswith('teacher:'):
            name = label.split(':', 1)[1]
            targets.append(
                DiagnosticTarget(
                    label,
                    model,
                    model.teachers[name],
                    lambda raw, name=name: model.compute_target(normalise(raw, mean, std), name)))
            continue
        if _is_teacher(model):
            if label == 'teacher':
                t_mean, t_std = _stats(model.mean, model.std)
                targets.append(
                    DiagnosticTarget('teacher', model, model,
                                     lambda raw: model(normalise(raw, t_mean, t_std))))
            elif strict:
                raise ConfigError(f'{type(model).__name__} is a teacher: it has no student.')
            continue
        teacher = getattr(model, 'teacher', None)
        if label == 'teacher':
            if teacher is None:
                if strict:
                    raise ConfigError(f'{type(model).__name__} has no teacher; '
                                      f'use --model student.')
                continue
            if hasattr(model, 'compute_target'):
                run = lambda raw: model.compute_target(normalise(raw, mean, std))  # noqa: E731
            else:
                t_mean, t_std = _stats(
                    getattr(teacher, 'mean', IMAGENET_MEAN), getattr(teacher, 'std', IMAGENET_STD))
                run = lambda raw: teacher(normalise(raw, t_mean, t_std))  # noqa: E731
            targets.append(DiagnosticTarget('teacher', model, teacher, run))
        else:
            net = getattr(model, 'backbone', None)
            net = model if net is None else net
            targets.append(
                DiagnosticTarget(
                    'student', model, net, lambda raw, net=net: net(normalise(raw, mean, std))))
    return targets


def check_target_labels(which: Sequence[str], what: str = 'diagnostic targets') -> None:
    """``student``, ``teacher`` or ``teacher:<name>`` (a teacher of several)."""
    unknown = [w for w in which if w not in TARGETS and not str(w).startswith('teacher:')]
    if unknown:
        raise ConfigError(f'unknown {what} {sorted(unknown)}: use {TARGETS} or '
                          "'teacher:<name>' for one of several teachers.")


def _expand_teachers(model: nn.Module, which: Sequence[str], strict: bool) -> List[str]:
    """'teacher' of a multi-teacher model -> every 'teacher:<name>'; names checked."""
    names = list(getattr(model, 'teachers', {}) or {}) if getattr(model, 'multi_teacher',
                                                                  False) else []
    labels = []
    for label in which:
        if label == 'teacher' and names:
            labels += [f'teacher:{name}' for name in names]
        elif label.startswith('teacher:'):
            name = label.split(':', 1)[1]
            if name in names:
                labels.append(label)
            elif strict:
                raise ConfigError(f'{type(model).__name__} has no teacher named {name!r}' +
                                  (f'; teachers: {names}.' if names else '.'))
        else:
            labels.append(label)
    return labels


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Eval mode inside the block; every submodule's own flag restored after."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, flag in flags:
            m.training = flag


@contextlib.contextmanager
def preserved_rng():
    """Diagnostics must not change the training run's random streams (building a
    dataloader iterator draws a seed from torch's generator)."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# --------------------------------------------------------------------------- images
def list_images(folder, num_images: Optional[int] = None) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f'image folder {folder} does not exist.')
    files = sorted(p for p in folder.rglob('*') if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise ConfigError(f'no images ({", ".join(IMAGE_EXTENSIONS)}) under {folder}.')
    return files[:num_images] if num_images else files


def load_image(path, img_size) -> torch.Tensor:
    """RGB 0-255 ``[3, h, w]``: shorter side resized to ``img_size`` (bicubic), centre crop."""
    from PIL import Image
    h, w = (img_size, img_size) if isinstance(img_size, int) else tuple(img_size)
    with Image.open(path) as image:
        image = image.convert('RGB')
        scale = max(h / image.height, w / image.width)
        size = (max(w, round(image.width * scale)), max(h, round(image.height * scale)))
        image = image.resize(size, Image.BICUBIC)
        left, top = (size[0] - w) // 2, (size[1] - h) // 2
        image = image.crop((left, top, left + w, top + h))
        array = np.asarray(image, dtype=np.float32).copy()
    return torch.from_numpy(array).permute(2, 0, 1)


def load_image_folder(folder, num_images: Optional[int] = None, img_size=224) -> torch.Tensor:
    """``[N, 3, h, w]`` raw RGB images (sorted file names, the first ``num_images``)."""
    return torch.stack([load_image(p, img_size) for p in list_images(folder, num_images)])


def images_from_dataloader(model: nn.Module, dataloader, num_images: int):
    """The first ``num_images`` images of ``dataloader`` after the model's data
    preprocessor, as raw RGB 0-255, plus the preprocessed ``(inputs, data_samples)``
    batches (for loss landscapes)."""
    mean, std = preprocessor_stats(model)
    raws, batches, seen = [], [], 0
    for batch in dataloader:
        data = model.data_preprocessor(batch, False)
        inputs, samples = data['inputs'], data.get('data_samples')
        view = inputs[0] if isinstance(inputs, (list, tuple)) else inputs
        take = min(num_images - seen, view.shape[0])
        raws.append((view[:take].float() * std.to(view.device) + mean.to(view.device)).cpu())
        if isinstance(inputs, (list, tuple)):
            inputs = [v[:take] for v in inputs]
        else:
            inputs = inputs[:take]
        batches.append((inputs, samples[:take] if samples is not None else None))
        seen += take
        if seen >= num_images:
            break
    if not raws:
        raise ConfigError('the dataloader for diagnostics yielded no images.')
    return torch.cat(raws), batches


def sequential_loader(loader, batch_size: int):
    """The first images of ``loader``'s dataset in order, in the main process, with
    the same collate function (its transforms still run: a train pipeline's random
    crops are drawn once and then kept)."""
    from torch.utils.data import DataLoader
    return DataLoader(
        loader.dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=0,
        collate_fn=loader.collate_fn)


def batches_from_images(model: nn.Module, raw: torch.Tensor, batch_size: int, device=None):
    """Normalised ``(inputs, None)`` batches for a loss on unlabelled images."""
    mean, std = preprocessor_stats(model)
    return [(normalise(chunk.to(device) if device else chunk, mean, std), None)
            for chunk in raw.split(batch_size)]


# --------------------------------------------------------------------------- metrics
def attention_statistics(target: DiagnosticTarget,
                         raw: torch.Tensor,
                         batch_size: int = 8,
                         renormalize: bool = True,
                         with_kl: bool = True,
                         keep_maps: bool = True,
                         strategy: str = 'auto',
                         on_batch: Optional[Callable[[int], None]] = None) -> AttentionStatistics:
    """Streams ``raw`` through ``target`` in eval mode, recording every attention map."""
    stats = AttentionStatistics(renormalize=renormalize, with_kl=with_kl, keep_maps=keep_maps)
    device = target.device

    def add(record):
        stats.add(record, resolve_geometry(record))

    with eval_mode(target.root), torch.no_grad(), \
            AttentionRecorder(target.module, callback=add, strategy=strategy):
        for chunk in raw.split(batch_size):
            target.run(chunk.to(device))
            if on_batch is not None:
                on_batch(chunk.shape[0])
    return stats


def attention_report(stats: AttentionStatistics) -> dict:
    """JSON-ready numbers of one network: per layer, and per-layer lists for plots."""
    layers = stats.summary()
    return dict(
        renormalize=stats.renormalize,
        num_layers=len(layers),
        layers=layers,
        distance_per_head=[layer['distance'] for layer in layers],
        distance_mean=[layer['distance_mean'] for layer in layers],
        distance_spread=[layer['distance_spread'] for layer in layers],
        head_similarity=[layer['head_similarity'] for layer in layers],
        head_kl=[layer.get('head_kl') for layer in layers],
    )


def landscape_report(model: nn.Module,
                     batches,
                     dim: int = 1,
                     points: int = 21,
                     span: float = 1.0,
                     seed: int = 0,
                     radius: Optional[float] = None,
                     on_point: Optional[Callable[[], None]] = None) -> dict:
    """Loss landscape of the trainable weights of ``model`` on fixed batches (eval mode)."""
    loss_fn = make_loss_fn(model, batches)
    with eval_mode(model):
        try:
            loss_fn()
        except Exception as error:  # a classifier without labels, a wrong input...
            raise ConfigError(
                f'{type(model).__name__} cannot compute its loss on the diagnostic images '
                f'({type(error).__name__}: {error}). Classifiers need labelled batches: '
                f'use a dataloader, not an image folder, for their loss landscape.') from error
        return loss_landscape(
            model,
            loss_fn,
            dim=dim,
            points=points,
            span=span,
            seed=seed,
            radius=radius,
            on_point=on_point)
