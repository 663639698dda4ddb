"""The FD paper's diagnostics during training, as one configurable hook.

    custom_hooks = [dict(
        type='DiagnosticsHook',
        interval=10,                      # every 10 epochs (iterations if by_epoch=False)
        num_images=32,                    # fixed images: first 32 of the val loader ...
        image_dir=None,                   # ... or of this folder (resized + centre-cropped)
        targets=('student', 'teacher'),   # FD models; other models: their backbone
        metrics=('distance', 'diversity', 'maps', 'landscape'),
        landscape=dict(dim=1, points=11, span=1.0, num_batches=1),
    )]

At each trigger (and ``before_train`` / ``after_val`` when asked) the hook puts
the model in eval mode, records attention on the fixed images, computes the
metrics of :mod:`mmfd.diagnostics`, logs scalars through
``runner.visualizer.add_scalars`` (any backend: TensorBoard, W&B, local) and
writes ``work_dir/diagnostics/<epoch_N|iter_N>/`` PNGs + ``diagnostics.json``.
Train mode, weights (bitwise) and the random streams are restored afterwards.
It runs on the main process only. The frozen teacher is measured once and
reused (``teacher_once``).

Scalar names (``L`` = 2-digit layer index, from 00):
``diagnostics/<target>/attn_distance/layer_L`` (mean over heads, pixels),
``diagnostics/<target>/attn_distance_spread/layer_L`` (std over heads),
``diagnostics/<target>/head_similarity/layer_L`` (mean pairwise cosine),
``diagnostics/<target>/head_kl/layer_L``, the same without ``/layer_L`` averaged
over layers, and ``diagnostics/landscape/{curvature,rise}``.
"""
import json
from pathlib import Path
from typing import Optional, Sequence

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmfd.diagnostics import analysis, plots
from mmfd.diagnostics.loading import default_img_size
from mmfd.registry import HOOKS
from mmfd.utils.errors import ConfigError

METRICS = ('distance', 'diversity', 'maps', 'landscape')
LANDSCAPE_KEYS = ('dim', 'points', 'span', 'seed', 'radius', 'num_batches')


@HOOKS.register_module()
class DiagnosticsHook(Hook):
    """Attention distance, head diversity, attention maps and loss landscape.

    Args:
        interval (int): run every ``interval`` epochs (``by_epoch``) or iterations.
            0 disables the periodic trigger (use ``before_train``/``after_val``).
        by_epoch (bool): count ``interval`` in epochs (after the train epoch) or in
            iterations (after the train iteration).
        before_train (bool): also run once before training (the starting point).
        after_val (bool): also run after every validation.
        image_dir (str, optional): take the fixed images from this folder (sorted,
            resized to ``img_size``); otherwise from the val dataloader, or the
            train dataloader when there is none (FD pre-training), collected once.
        num_images (int): how many fixed images.
        img_size (int | tuple, optional): size for ``image_dir`` images; default:
            the model's input size (FD ``input_size``, backbone ``img_size``) or 224.
        batch_size (int): images per forward.
        targets (sequence): ``'student'``, ``'teacher'`` (every teacher of a
            multi-teacher model) or ``'teacher:<name>'`` (one of them).
        metrics (sequence): any of ``'distance', 'diversity', 'maps', 'landscape'``;
            default: the three attention metrics (a landscape costs
            ``points ** dim * num_batches`` loss evaluations, teacher included).
        renormalize (bool): renormalise rows after dropping CLS (attention distance).
        with_kl (bool): also compute the head KL divergence.
        landscape (dict): ``dim`` (1|2), ``points``, ``span``, ``seed``, ``radius``,
            ``num_batches`` (fixed batches of ``batch_size`` used for the loss).
        teacher_once (bool): measure the frozen teacher once and reuse its numbers.
        out_dir (str): sub-folder of ``work_dir`` for figures and JSON.
        save_figures (bool): write PNGs. log_figures (bool): also send them to the
            visualizer (``add_image``).
        max_layers, max_heads (int): size of the attention-map grid figure.
        strategy (str): ``AttentionRecorder`` strategy (``'auto'``|``'explicit'``).
    """
    priority = 'LOW'

    def __init__(self,
                 interval: int = 1,
                 by_epoch: bool = True,
                 before_train: bool = False,
                 after_val: bool = False,
                 image_dir: Optional[str] = None,
                 num_images: int = 16,
                 img_size=None,
                 batch_size: int = 8,
                 targets: Sequence[str] = ('student', 'teacher'),
                 metrics: Sequence[str] = ('distance', 'diversity', 'maps'),
                 renormalize: bool = True,
                 with_kl: bool = True,
                 landscape: Optional[dict] = None,
                 teacher_once: bool = True,
                 out_dir: str = 'diagnostics',
                 save_figures: bool = True,
                 log_figures: bool = False,
                 max_layers: int = 12,
                 max_heads: int = 16,
                 strategy: str = 'auto'):
        unknown = set(metrics) - set(METRICS)
        if unknown:
            raise ConfigError(f'DiagnosticsHook metrics {sorted(unknown)} unknown: use {METRICS}.')
        analysis.check_target_labels(targets, 'DiagnosticsHook targets')
        landscape = dict(landscape or {})
        if set(landscape) - set(LANDSCAPE_KEYS):
            raise ConfigError(f'DiagnosticsHook landscape keys '
                              f'{sorted(set(landscape) - set(LANDSCAPE_KEYS))} unknown: '
                              f'use {LANDSCAPE_KEYS}.')
        if landscape.get('dim', 1) not in (1, 2):
            raise ConfigError('DiagnosticsHook landscape.dim must be 1 or 2.')
        if interval < 0 or num_images < 1 or batch_size < 1:
            raise ConfigError('DiagnosticsHook needs interval >= 0, num_images >= 1, '
                              'batch_size >= 1.')
        self.interval, self.by_epoch = interval, by_epoch
        self.run_before_train, self.run_after_val = before_train, after_val
        self.image_dir, self.num_images, self.img_size = image_dir, num_images, img_size
        self.batch_size = batch_size
        self.targets, self.metrics = tuple(targets), tuple(metrics)
        self.renormalize, self.with_kl = renormalize, with_kl
        self.landscape = dict(dim=1, points=11, span=1.0, seed=0, radius=None, num_batches=1)
        self.landscape.update(landscape)
        self.teacher_once = teacher_once
        self.out_dir, self.save_figures, self.log_figures = out_dir, save_figures, log_figures
        self.max_layers, self.max_heads, self.strategy = max_layers, max_heads, strategy
        self._raw = None  # fixed images, raw RGB 0-255 (CPU)
        self._batches = None  # fixed preprocessed batches for the loss
        self._teacher_cache = {}  # label -> (report, maps): teachers are frozen

    # ------------------------------------------------------------------ triggers
    # Steps follow mmengine's LoggerHook: completed epochs (by_epoch) or iterations.
    def before_train(self, runner) -> None:
        if self.run_before_train:
            self._run(runner, 'init', 0)

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.interval and self.every_n_epochs(runner, self.interval):
            self._run(runner, f'epoch_{runner.epoch + 1}', runner.epoch + 1)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.by_epoch and self.interval and self.every_n_train_iters(runner, self.interval):
            self._run(runner, f'iter_{runner.iter + 1}', runner.iter + 1)

    def after_val_epoch(self, runner, metrics=None) -> None:
        if self.run_after_val:
            step = runner.epoch if self.by_epoch else runner.iter
            self._run(runner, f'val_{"epoch" if self.by_epoch else "iter"}_{step}', step)

    # ------------------------------------------------------------------ work
    def _model(self, runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _collect_images(self, runner, model):
        if self.image_dir is not None:
            size = self.img_size or default_img_size(model)
            self._raw = analysis.load_image_folder(self.image_dir, self.num_images, size)
            device = next(model.parameters()).device
            self._batches = analysis.batches_from_images(model, self._raw, self.batch_size, device)
            return
        loader = None
        for name in ('val_dataloader', 'train_dataloader'):
            try:
                loader = getattr(runner, name)
            except Exception:  # no such loop configured
                loader = None
            if loader is not None:
                if name == 'train_dataloader':
                    runner.logger.info('DiagnosticsHook: no val dataloader, the fixed images '
                                       'are the first (augmented) train images.')
                break
        if loader is None:
            raise ConfigError('DiagnosticsHook needs image_dir or a val/train dataloader.')
        # a private sequential loader: iterating the runner's own (persistent-worker)
        # loader would reset the iterator the training loop is using
        self._raw, self._batches = analysis.images_from_dataloader(
            model, analysis.sequential_loader(loader, self.batch_size), self.num_images)

    def _run(self, runner, tag: str, step: int) -> None:
        if not is_main_process():
            return
        model = self._model(runner)
        with analysis.preserved_rng():
            if self._raw is None:
                self._collect_images(runner, model)
            report, figures = self._measure(model)
        self._publish(runner, tag, step, report, figures)

    def _measure(self, model):
        report = dict(
            num_images=int(self._raw.shape[0]), image_size=list(self._raw.shape[-2:]), targets={})
        attention_metrics = {'distance', 'diversity', 'maps'} & set(self.metrics)
        maps = {}
        if attention_metrics:
            for target in analysis.select_targets(model, self.targets):
                is_teacher = target.label.startswith('teacher')
                if is_teacher and self.teacher_once and target.label in self._teacher_cache:
                    report['targets'][target.label], maps[target.label] = self._teacher_cache[
                        target.label]
                    continue
                stats = analysis.attention_statistics(
                    target,
                    self._raw,
                    self.batch_size,
                    renormalize=self.renormalize,
                    with_kl=self.with_kl,
                    keep_maps='maps' in self.metrics,
                    strategy=self.strategy)
                entry = analysis.attention_report(stats)
                layer_maps = (stats.averaged_maps(), {
                    layer['name']: layer['num_prefix_tokens']
                    for layer in entry['layers']
                })
                report['targets'][target.label] = entry
                maps[target.label] = layer_maps
                if is_teacher:
                    self._teacher_cache[target.label] = (entry, layer_maps)
        if 'landscape' in self.metrics:
            options = dict(self.landscape)
            batches = self._batches[:max(int(options.pop('num_batches')), 1)]
            report['landscape'] = analysis.landscape_report(model, batches, **options)
        return report, self._figures(report, maps)

    def _figures(self, report, maps) -> dict:
        figures = {}
        targets = report['targets']
        if 'distance' in self.metrics and targets:
            figures['attention_distance'] = plots.plot_attention_distance({
                label:
                t['distance_per_head']
                for label, t in targets.items()
            })
        if 'diversity' in self.metrics and targets:
            figures['head_diversity'] = plots.plot_head_diversity({
                label: t['head_similarity']
                for label, t in targets.items()
            })
        if 'maps' in self.metrics:
            for label, (layer_maps, prefix) in maps.items():
                figures[f'attention_maps_{label}'] = plots.plot_attention_maps(
                    layer_maps,
                    prefix,
                    self.max_layers,
                    self.max_heads,
                    title=f'Averaged attention maps ({label})')
        if 'landscape' in report:
            res = report['landscape']
            plot = plots.plot_landscape_1d if res['dim'] == 1 else plots.plot_landscape_2d
            figures['loss_landscape'] = plot({'model': res})
        return figures

    def _scalars(self, report) -> dict:
        scalars = {}
        keys = (('attn_distance', 'distance_mean'), ('attn_distance_spread', 'distance_spread'),
                ('head_similarity', 'head_similarity'), ('head_kl', 'head_kl'))
        for label, entry in report['targets'].items():
            for name, key in keys:
                values = [v for v in entry[key] if v is not None]
                for index, value in enumerate(entry[key]):
                    if value is not None:
                        scalars[f'diagnostics/{label}/{name}/layer_{index:02d}'] = float(value)
                if values:
                    scalars[f'diagnostics/{label}/{name}'] = float(sum(values) / len(values))
        if 'landscape' in report:
            sharp = report['landscape']['sharpness']
            scalars['diagnostics/landscape/curvature'] = sharp['curvature']
            scalars['diagnostics/landscape/rise'] = sharp['rise']
        return scalars

    def _publish(self, runner, tag, step, report, figures) -> None:
        scalars = self._scalars(report)
        if scalars:
            runner.visualizer.add_scalars(scalars, step=step)
        folder = Path(runner.work_dir) / self.out_dir / tag
        folder.mkdir(parents=True, exist_ok=True)
        report = dict(report, tag=tag, step=step, epoch=runner.epoch, iter=runner.iter)
        with open(folder / 'diagnostics.json', 'w') as f:
            json.dump(report, f, indent=1)
        for name, fig in figures.items():
            if self.save_figures:
                plots.save_figure(fig, folder / f'{name}.png')
            if self.log_figures:
                runner.visualizer.add_image(
                    f'diagnostics/{name}', plots.figure_to_rgb(fig), step=step)
        summary = ', '.join(f'{k.split("/", 1)[1]}={v:.4g}' for k, v in scalars.items()
                            if 'layer_' not in k)
        runner.logger.info(f'DiagnosticsHook [{tag}] {summary} -> {folder}')
