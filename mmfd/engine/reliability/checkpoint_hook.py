"""AtomicCheckpointHook: checkpoints that survive kills, and resumes that are exact.

Use it in place of mmengine's CheckpointHook (same arguments)::

    default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=1,
                                         max_keep_ckpts=3))

What it adds to CheckpointHook:

* Atomic files. Checkpoints go through :class:`AtomicLocalBackend` (temporary file
  in the same directory, fsync, ``os.replace``); ``last_checkpoint`` is rewritten
  the same way and only after the checkpoint is complete; outdated checkpoints are
  deleted only after the new one is in place (mmengine deletes first, so a kill
  during the save with ``max_keep_ckpts=1`` lost every checkpoint). Temporary files
  of killed writers are removed at start.
* Verified auto-resume. With ``resume=True`` and no path (``tools/train.py
  --resume``), the newest checkpoint that is complete and loadable is chosen (zip
  CRCs + a ``weights_only`` memory-mapped load), whatever ``last_checkpoint`` says;
  skipped files are logged with the reason. An explicit resume path that is broken
  raises a CheckpointError instead of a torch unpickling trace.
* Exact resume (``exact_resume=True``). Each rank's python/numpy/torch(/CUDA) random
  states are gathered at every save and stored under ``rng_states``; on resume each
  rank gets its own back at the point the uninterrupted run captured them, and the
  sampler is advanced to the saved position without reading data (see
  :mod:`.data_position`); works for IterBasedTrainLoop and for EpochBasedTrainLoop
  resumed mid-epoch from an iteration checkpoint. The train dataset's pipeline is
  seeded per sample (:mod:`mmfd.datasets.sample_seeds`; any mmengine BaseDataset,
  no wrapper), so augmentation in dataloader workers is restored too. Validation
  runs with the training random states saved and put back, so where a validation
  falls does not change training.

Limits: local paths only (other backends keep mmengine's behaviour); custom batch
samplers keep mmengine's own skip.
"""
import os.path as osp
from collections import deque

from mmengine.dataset import InfiniteSampler
from mmengine.dist import all_gather_object, broadcast_object_list, get_dist_info, is_main_process
from mmengine.fileio.backends.registry_utils import backends
from mmengine.hooks import CheckpointHook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from mmfd.registry import HOOKS
from mmfd.utils.errors import CheckpointError
from .atomic_io import (ATOMIC_BACKEND, AtomicLocalBackend, atomic_write, checkpoint_candidates,
                        find_resumable_checkpoint, read_last_checkpoint, remove_stale_temp_files,
                        verify_checkpoint)
from .data_position import (ResumedEpochLoader, ResumedInfiniteIterator, install_position_sampler,
                            warn)
from .rng import get_rng_state, set_rng_state

RNG_KEY = 'rng_states'
SAMPLER_SEED_KEY = 'sampler_seed'
LAST_GOOD_KEY = 'last_good_ckpt'


def _is_local(path) -> bool:
    return path is None or '://' not in str(path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """mmengine's CheckpointHook with atomic saves, verified auto-resume and exact
    resume. Extra args: ``exact_resume`` (bool, default True); ``sample_seeds``
    (True / False / ``'auto'``, default): seed each sample's augmentation from its
    position (exact resume with dataloader workers); ``'auto'`` does so for
    pipelines that load with ``SafeLoadImageFromFile`` (the FD dataset base)."""

    def __init__(self, *args, exact_resume: bool = True, sample_seeds='auto', **kwargs):
        super().__init__(*args, **kwargs)
        if sample_seeds not in (True, False, 'auto'):
            from mmfd.utils.errors import ConfigError
            raise ConfigError(f'AtomicCheckpointHook: sample_seeds={sample_seeds!r} is not '
                              "True, False or 'auto'.")
        self.exact_resume = exact_resume
        self.sample_seeds = sample_seeds
        backend = backends.get((self.backend_args or {}).get('backend', ATOMIC_BACKEND))
        self.atomic = (
            self.file_client_args is None and _is_local(self.out_dir) and isinstance(backend, type)
            and issubclass(backend, AtomicLocalBackend))
        if self.atomic and self.backend_args is None:
            self.backend_args = dict(backend=ATOMIC_BACKEND)
        self._pending_rng = None
        self._resume_state = None
        self._val_rng = None
        self._sampler = None

    # ------------------------------------------------------------------ resume choice
    def _checkpoint_dir(self, runner) -> str:
        """Where CheckpointHook.before_train will put the checkpoints."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(str(self.out_dir), osp.basename(runner.work_dir.rstrip(osp.sep)))

    def before_run(self, runner) -> None:
        """Chooses the checkpoint to resume from (runs before Runner.load_or_resume).

        mmengine's FlexibleRunner loads before ``before_run``: there its own choice
        (``last_checkpoint``, written only after a complete save) stands."""
        if not runner._resume or not _is_local(self.out_dir):
            return
        if getattr(runner, '_has_loaded', False):
            return
        choice = [None, None]
        if is_main_process():
            choice = self._choose_resume(runner)
        if get_dist_info()[1] > 1:
            broadcast_object_list(choice)
        path, error = choice
        if error:
            raise CheckpointError(error)
        if runner._load_from is None:
            runner._load_from = path
            if path is None:  # nothing usable: start fresh instead of a failing load
                runner._resume = False

    def _choose_resume(self, runner):
        if runner._load_from is not None:  # --resume PATH: verify it, never replace it
            problem = verify_checkpoint(runner._load_from)
            if problem is None:
                return [runner._load_from, None]
            return [
                None, f'Cannot resume from {runner._load_from}: {problem}. '
                f'{self._alternatives(runner)}'
            ]
        candidates = checkpoint_candidates(
            self._checkpoint_dir(runner), self.filename_tmpl, read_last_checkpoint(runner.work_dir))
        path, skipped = find_resumable_checkpoint(candidates)
        for bad, why in skipped:
            warn(f'Auto-resume: skipping {bad}: {why}')
        if path is None:
            warn(f'Auto-resume: no complete checkpoint in {self._checkpoint_dir(runner)}; '
                 'training starts from scratch.')
        else:
            note = f', {len(skipped)} newer broken one(s) skipped' if skipped else ''
            runner.logger.info(f'Auto-resume: resuming from {path} (newest complete '
                               f'checkpoint{note}).')
        return [path, None]

    def _alternatives(self, runner) -> str:
        directory = self._checkpoint_dir(runner)
        path, _ = find_resumable_checkpoint(checkpoint_candidates(directory, self.filename_tmpl))
        if path:
            return (f'The newest complete checkpoint is {path} (--resume with no path '
                    'picks it).')
        return f'No complete checkpoint was found in {directory}.'

    # ------------------------------------------------------------------ saving
    def before_train(self, runner) -> None:
        super().before_train(runner)
        if self.max_keep_ckpts > 0:  # unbounded: outdated files go after the save
            self.keep_ckpt_ids = deque(self.keep_ckpt_ids)
        if self.atomic and is_main_process():
            removed = remove_stale_temp_files(self.out_dir)
            if removed:
                warn(f'Removed {len(removed)} partial checkpoint file(s) of an '
                     f'interrupted save in {self.out_dir}: {", ".join(removed)}')
        if self.exact_resume:
            self._prepare_data_stream(runner)

    def _save_checkpoint_with_step(self, runner, step, meta):
        to_remove = []
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            self.keep_ckpt_ids.append(step)
            while len(self.keep_ckpt_ids) > self.max_keep_ckpts:
                to_remove.append(self.keep_ckpt_ids.popleft())
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        if self.exact_resume:  # a collective: every rank is here, only rank 0 saves
            state = get_rng_state()
            self._pending_rng = (all_gather_object(state) if get_dist_info()[1] > 1 else [state])

        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
        self._pending_rng = None
        if not runner.message_hub.get_info('nonfinite_consecutive', 0):
            runner.message_hub.update_info(LAST_GOOD_KEY, self.last_ckpt)
        if not is_main_process():
            return

        pointer = osp.join(runner.work_dir, 'last_checkpoint')
        if self.atomic:
            atomic_write(pointer, str(self.last_ckpt).encode())
        else:
            with open(pointer, 'w') as f:
                f.write(self.last_ckpt)
        for old in to_remove:  # only now that the new checkpoint is complete
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(old))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):
                self.file_backend.rmtree(path)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if not self.exact_resume:
            return
        if self._pending_rng is not None:
            checkpoint[RNG_KEY] = self._pending_rng
        elif get_dist_info()[1] == 1:  # a save outside this hook (e.g. best ckpt)
            checkpoint[RNG_KEY] = [get_rng_state()]
        seed = getattr(self._sampler, 'seed', None)
        if isinstance(seed, int):  # the same on every rank (mmengine syncs it)
            checkpoint[SAMPLER_SEED_KEY] = seed

    # ------------------------------------------------------------------ exact resume
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta', {})
        self._resume_state = dict(
            rng=checkpoint.get(RNG_KEY),
            iter=meta.get('iter'),
            epoch=meta.get('epoch'),
            sampler_seed=checkpoint.get(SAMPLER_SEED_KEY))

    def _restore_rng_fn(self, runner):
        states = (self._resume_state or {}).get('rng')
        rank, world_size = get_dist_info()
        if not states:
            warn('The checkpoint has no random states (not saved by AtomicCheckpointHook): '
                 'the resumed run continues with fresh random streams.')
            return lambda: None
        if len(states) != world_size:
            warn(f'The checkpoint holds random states for {len(states)} rank(s), this run '
                 f'has {world_size}: random streams are not restored.')
            return lambda: None
        return lambda: set_rng_state(states[rank])

    def _prepare_data_stream(self, runner) -> None:
        loop = runner.train_loop
        loader = getattr(loop, 'dataloader', None)
        rank, _ = get_dist_info()
        if loader is not None:  # before the sampler: it tags indices for such datasets
            # imported here: mmfd.datasets uses this package's rng module
            from mmfd.datasets.sample_seeds import install_sample_seeds
            install_sample_seeds(getattr(loader, 'dataset', None), self.sample_seeds)
        proxy = install_position_sampler(loader, runner.seed, rank) if loader else None
        resumed = (
            self._resume_state is not None and runner.iter > 0
            and runner.iter == self._resume_state.get('iter'))
        if proxy is None:
            if resumed:
                warn('Exact resume needs a DataLoader with a plain BatchSampler; the data '
                     'position is left to mmengine.')
                self._restore_rng_fn(runner)()
            return
        self._sampler = proxy.sampler
        if proxy.tag_seeds:
            runner.logger.info(
                f'Per-sample augmentation seeds: the {type(loader.dataset).__name__} '
                'pipeline runs seeded from (seed, rank, epoch, position) of each index.')
        if resumed:
            self._align_sampler_seed(proxy.sampler)
        if loader.num_workers > 0 and not proxy.tag_seeds and resumed:
            # Workers draw augmentation from their own random streams, which are not
            # saved: only per-sample seeds make it a function of the sample, and
            # only an mmengine BaseDataset hands the seeded index to its pipeline.
            from mmengine.dataset import BaseDataset
            if isinstance(loader.dataset, BaseDataset):
                warn('Data augmentation in dataloader workers is not restored exactly: '
                     'per-sample seeds are off for this pipeline (it does not load with '
                     'SafeLoadImageFromFile). Set default_hooks.checkpoint.sample_seeds='
                     'True, or num_workers=0.')
            else:
                warn('Data augmentation in dataloader workers is not restored exactly: the '
                     f'train dataset is a {type(loader.dataset).__name__}, not an mmengine '
                     'BaseDataset, so indices reach its pipeline without their per-sample '
                     'seed (dataset wrappers such as RepeatDataset or ConcatDataset turn '
                     'them into plain ints). Use the dataset itself (e.g. ImageNet, '
                     'CustomDataset) as train_dataloader.dataset, or num_workers=0.')
        if isinstance(loop, IterBasedTrainLoop):
            if resumed:
                loop.dataloader_iterator = ResumedInfiniteIterator(loop.dataloader_iterator, proxy,
                                                                   runner.iter,
                                                                   self._restore_rng_fn(runner))
            elif loader.num_workers > 0 and proxy.tag_seeds:
                # Workers started (and prefetched untagged indices) when the loop was
                # built, before the position sampler existed: restart them on top of it.
                loop.dataloader_iterator._iterator = iter(loader)
        elif isinstance(loop, EpochBasedTrainLoop) and resumed:
            offset = runner.iter - runner.epoch * len(loader)
            if 0 <= offset <= len(loader):
                loop.dataloader = ResumedEpochLoader(loop, proxy, offset,
                                                     self._restore_rng_fn(runner))
            else:
                warn(f'Iteration {runner.iter} is not inside epoch {runner.epoch} of '
                     f'{len(loader)} batches (batch size or world size changed?): the '
                     'epoch restarts from its first batch.')
        elif resumed:
            self._restore_rng_fn(runner)()

    def _align_sampler_seed(self, sampler) -> None:
        """With ``randomness.seed=None`` (or ``diff_rank_seed``) the sampler draws a
        fresh shuffling seed at every start: give it back the checkpoint's."""
        saved = (self._resume_state or {}).get('sampler_seed')
        seed = getattr(sampler, 'seed', None)
        if saved is None or seed is None or seed == saved:
            return
        warn(f'Sampler seed {seed} -> {saved} (the checkpoint\'s), so the data order '
             'continues as before.')
        sampler.seed = saved
        if isinstance(sampler, InfiniteSampler):
            sampler.indices = sampler._indices_of_rank()

    # ------------------------------------------------------------------ validation
    def before_val(self, runner) -> None:
        if self.exact_resume:
            self._val_rng = get_rng_state()

    def after_val(self, runner) -> None:
        if self._val_rng is not None:
            set_rng_state(self._val_rng)
            self._val_rng = None
