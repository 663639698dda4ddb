"""FSDP2Strategy: sharded Feature Distillation through PyTorch's ``fully_shard``.

Select it in a config (``tools/train.py`` / ``tools/dist_train.sh`` as usual)::

    runner_type = 'FlexibleRunner'
    strategy = dict(
        type='FSDP2Strategy',
        shard_teacher=False,            # True: the teacher is sharded too (large teachers)
        mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'),
        activation_checkpointing=True)  # recompute each block in the backward

What each rank holds, with N ranks:

* the student: every transformer block (ViT layer, SwinV2 block) is its own FSDP2
  unit, then the rest of the student and the FD heads form the root unit. Each rank
  keeps 1/N of every parameter, gradient and AdamW moment; a unit's full parameters
  exist only while it runs (all-gathered before, freed after).
* the teacher: replicated (default; frozen, so no gradient and no optimizer state)
  or, with ``shard_teacher=True``, sharded per block like the student and gathered
  block by block in its no-grad forward. Never in a checkpoint.

``mixed_precision`` is FSDP2's ``MixedPrecisionPolicy``: parameters are gathered and
computed in ``param_dtype``, gradients reduced in ``reduce_dtype``, and the sharded
fp32 master weights are what AdamW updates. It needs the optimizer wrapper's bf16
autocast (``optim_wrapper.amp='bf16'``/``'auto'``) for the replicated teacher and
the ops that mix dtypes; fp16 with loss scaling is refused (its overflow check is
per rank). Gradient clipping and the non-finite guard of ``FDOptimWrapper`` work on
the sharded gradients (the norm is the global one).

Checkpoints are directories written by ``torch.distributed.checkpoint``
(:mod:`.sharded_checkpoint`): atomic, resumable with another number of ranks, and
consolidated into the single-file student checkpoint by
``tools/model_converters/consolidate_fsdp_checkpoint.py``. ``load_from`` accepts either kind.
"""
import io
import logging
import os
import os.path as osp
import re
import time
from typing import Callable, Dict, List, Optional, Union

import mmengine
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from mmengine._strategy import DDPStrategy
from mmengine.device import get_device
from mmengine.dist import broadcast_object_list, get_dist_info
from mmengine.logging import print_log
from mmengine.optim import AmpOptimWrapper
from mmengine.registry import STRATEGIES
from torch import nn
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_state_dict,
                                                     set_model_state_dict, set_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from mmfd.checkpoint.io import load_checkpoint_file
from mmfd.engine.optim_wrappers.cpu_amp import CPUAutocastOptimWrapper
from mmfd.engine.reliability.atomic_io import atomic_write, temp_path_for
from mmfd.utils.errors import CheckpointError, ConfigError
from . import sharded_checkpoint as sharded

_DTYPES = {
    'bfloat16': torch.bfloat16,
    'bf16': torch.bfloat16,
    'float32': torch.float32,
    'fp32': torch.float32,
    'float16': torch.float16,
    'fp16': torch.float16
}


def _dtype(value, option: str):
    if value is None or isinstance(value, torch.dtype):
        return value
    if value not in _DTYPES:
        raise ConfigError(f'strategy.mixed_precision.{option}={value!r}: expected one of '
                          f'{sorted(_DTYPES)}.')
    return _DTYPES[value]


def student_blocks(model: nn.Module) -> List[nn.Module]:
    """The student's transformer blocks, each one FSDP2 unit.

    ``backbone.blocks()`` (FDSwinTransformerV2: every block of every stage), else
    ``backbone.layers`` (FDViT / mmpretrain ViTs)."""
    backbone = getattr(model, 'backbone', None)
    if backbone is None:
        return []
    if callable(getattr(backbone, 'blocks', None)):
        return list(backbone.blocks())
    layers = getattr(backbone, 'layers', None)
    return list(layers) if isinstance(layers, nn.ModuleList) else []


def largest_module_list(module: nn.Module) -> List[nn.Module]:
    """The children of ``module``'s ModuleList with the most parameters: a teacher's
    blocks whatever its library calls them (timm ``blocks``, open_clip
    ``transformer.resblocks``, mmpretrain ``layers``)."""
    best, best_size = [], 0
    for sub in module.modules():
        if isinstance(sub, nn.ModuleList) and len(sub) > 1:
            size = sum(p.numel() for p in sub.parameters())
            if size > best_size:
                best, best_size = list(sub), size
    return best


def local_bytes(tensors) -> int:
    """Bytes this rank stores for ``tensors`` (a DTensor counts its local shard)."""
    total = 0
    for t in tensors:
        if isinstance(t, DTensor):
            t = t.to_local()
        total += t.numel() * t.element_size()
    return total


def memory_report(model: nn.Module, optimizer=None) -> Dict[str, int]:
    """Per-rank bytes of trainable parameters, frozen parameters and optimizer state."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen = [p for p in model.parameters() if not p.requires_grad]
    report = dict(trainable_params=local_bytes(trainable), frozen_params=local_bytes(frozen))
    if optimizer is not None:
        states = [
            v for s in optimizer.state.values() for v in s.values()
            if isinstance(v, torch.Tensor) and v.dim() > 0
        ]
        report['optimizer_state'] = local_bytes(states)
    return report


@STRATEGIES.register_module()
class FSDP2Strategy(DDPStrategy):
    """Fully sharded data parallel FD with FSDP2 (``torch.distributed.fsdp.fully_shard``).

    Args:
        shard_teacher (bool): shard the frozen teacher per block as well (for
            teachers too large to replicate). Default False: every rank holds it.
        mixed_precision (dict, optional): ``param_dtype`` / ``reduce_dtype``
            (``'bfloat16'``, ``'float32'``...) of FSDP2's MixedPrecisionPolicy.
            Default None: fp32 parameters and reductions.
        activation_checkpointing (bool): recompute every student block in the
            backward instead of keeping its activations. Default False.
        reshard_after_forward (bool): free a block's gathered parameters after its
            forward (ZeRO-3, default) or keep them until the backward (ZeRO-2:
            more memory, one all-gather less per block).
        **kwargs: DDPStrategy's (``work_dir``, ``env_kwargs``... set by the runner).
    """

    def __init__(self,
                 *,
                 shard_teacher: bool = False,
                 mixed_precision: Optional[dict] = None,
                 activation_checkpointing: bool = False,
                 reshard_after_forward: bool = True,
                 **kwargs):
        self.shard_teacher = bool(shard_teacher)
        mixed_precision = dict(mixed_precision or {})
        unknown = set(mixed_precision) - {'param_dtype', 'reduce_dtype'}
        if unknown:
            raise ConfigError(f'strategy.mixed_precision: unknown key(s) {sorted(unknown)}; '
                              "expected 'param_dtype' and/or 'reduce_dtype'.")
        self.param_dtype = _dtype(mixed_precision.get('param_dtype'), 'param_dtype')
        self.reduce_dtype = _dtype(mixed_precision.get('reduce_dtype'), 'reduce_dtype')
        if torch.float16 in (self.param_dtype, self.reduce_dtype):
            raise ConfigError('strategy.mixed_precision: float16 needs loss scaling, whose '
                              'overflow check is per rank under FSDP2; use bfloat16.')
        self.activation_checkpointing = bool(activation_checkpointing)
        self.reshard_after_forward = bool(reshard_after_forward)
        self.mesh = None
        super().__init__(**kwargs)

    # ------------------------------------------------------------------ model
    def _wrap_model(self, model: nn.Module) -> nn.Module:
        if isinstance(model, FSDPModule):
            return model
        blocks = student_blocks(model)
        if not blocks:
            raise ConfigError(
                f'FSDP2Strategy: the model {type(model).__name__} has no shardable student '
                f'blocks (looked for backbone.blocks() and a backbone.layers ModuleList in '
                f'{type(getattr(model, "backbone", None)).__name__}). Use an FDViT / '
                'FDSwinTransformerV2 student, or DDP.')
        rank, world_size = get_dist_info()
        if world_size < 2:
            raise ConfigError(
                f'FSDP2Strategy needs at least 2 processes, this run has {world_size} '
                '(launcher={}): start it with tools/dist_train.sh CONFIG N (N >= 2), or drop '
                "runner_type/strategy from the config to train on one device.".format(
                    self.launcher))
        device = get_device()
        model = model.to(device)
        teachers = list(self._teachers(model))
        teacher_params = {id(p) for t in teachers for p in t.parameters()}
        self._broadcast_student(model, teacher_params)

        self.mesh = init_device_mesh('cuda' if device == 'cuda' else 'cpu', (world_size, ))
        policy = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=self.reduce_dtype)
        options = dict(mesh=self.mesh, mp_policy=policy)
        if self.activation_checkpointing:
            from torch.distributed._composable import checkpoint
            for block in blocks:
                checkpoint(block)
        for block in blocks:
            fully_shard(block, reshard_after_forward=self.reshard_after_forward, **options)
        ignored = None
        if self.shard_teacher:
            for teacher in teachers:
                # fp32 teacher math unless autocast says otherwise: its targets are
                # what the student regresses.
                teacher_options = dict(mesh=self.mesh)
                for block in largest_module_list(teacher):
                    fully_shard(block, **teacher_options)
                fully_shard(teacher, **teacher_options)
        else:
            ignored = {p for t in teachers for p in t.parameters()} or None
        # The root keeps its inputs as they come: the images the teacher sees (and
        # resizes) stay fp32; autocast casts what the student computes.
        root_policy = MixedPrecisionPolicy(
            param_dtype=self.param_dtype, reduce_dtype=self.reduce_dtype, cast_forward_inputs=False)
        fully_shard(
            model,
            mesh=self.mesh,
            mp_policy=root_policy,
            reshard_after_forward=False,
            ignored_params=ignored)
        self._log_layout(model, blocks, teachers)
        return model

    @staticmethod
    def _teachers(model: nn.Module):
        named = getattr(model, 'named_teachers', None)
        return [t for t in named().values()] if callable(named) else []

    @staticmethod
    def _broadcast_student(model: nn.Module, teacher_params: set) -> None:
        """Rank 0's initial student everywhere (DDP does the same when it wraps):
        each rank keeps its slice of its own tensors, so they must agree."""
        with torch.no_grad():
            for p in model.parameters():
                if id(p) not in teacher_params:
                    dist.broadcast(p.data, src=0)
            for b in model.buffers():
                dist.broadcast(b.data, src=0)

    def _log_layout(self, model, blocks, teachers) -> None:
        report = memory_report(model)
        teacher = ('sharded per block' if self.shard_teacher else 'replicated on every rank')
        print_log(
            f'FSDP2: {len(blocks)} student blocks + root sharded over {self.mesh.size()} '
            f'ranks; teacher(s) {teacher}; this rank holds '
            f'{report["trainable_params"] / 2**20:.1f} MiB of trainable and '
            f'{report["frozen_params"] / 2**20:.1f} MiB of frozen parameters; '
            f'mixed precision: param {self.param_dtype or "float32"}, reduce '
            f'{self.reduce_dtype or "float32"}; activation checkpointing '
            f'{"on" if self.activation_checkpointing else "off"}.',
            logger='current')

    def build_optim_wrapper(self, optim_wrapper, model=None):
        wrapper = super().build_optim_wrapper(optim_wrapper, model)
        if isinstance(wrapper, AmpOptimWrapper) and getattr(wrapper, 'loss_scaler', None) \
                is not None and wrapper.loss_scaler.is_enabled():
            raise ConfigError('FSDP2Strategy: fp16 AMP with a loss scaler is not supported '
                              "(set optim_wrapper.amp='bf16' or 'off').")
        if self.param_dtype is not None and self.param_dtype != torch.float32 \
                and not _autocasts(wrapper):
            raise ConfigError(
                'FSDP2Strategy: mixed_precision.param_dtype='
                f'{str(self.param_dtype).split(".")[-1]} needs the optimizer wrapper\'s '
                "autocast (optim_wrapper.amp='bf16' or 'auto'): the replicated teacher "
                'and the inputs stay fp32.')
        return wrapper

    # ------------------------------------------------------------------ checkpoints
    def _state_dicts(self):
        return get_state_dict(self.model, self.optim_wrapper.optimizer)

    def save_checkpoint(self,
                        filename: str,
                        *,
                        save_optimizer: bool = True,
                        save_param_scheduler: bool = True,
                        extra_ckpt: Optional[dict] = None,
                        callback: Optional[Callable] = None) -> None:
        """Every rank writes its shards into a temporary directory; rank 0 adds the
        small state and the marker and publishes it with one rename."""

        filename = str(filename)
        model_state, optim_state = self._state_dicts()
        checkpoint = dict(extra_ckpt or {})
        checkpoint.setdefault('meta', {}).update(
            seed=self.seed,
            time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
            mmengine=mmengine.__version__,
            world_size=self.world_size,
            strategy='FSDP2')
        checkpoint['state_dict'] = model_state
        if save_optimizer:
            checkpoint['optimizer'] = optim_state
        if save_param_scheduler and hasattr(self, 'param_schedulers'):
            checkpoint['param_schedulers'] = self.scheduler_state_dict()
        if callback is not None:
            callback(checkpoint)  # before_save_checkpoint hooks (random states...)
        tensors = {k: checkpoint.pop(k) for k in ('state_dict', 'optimizer') if k in checkpoint}

        tmp = [None]
        if self.rank == 0:
            tmp = [temp_path_for(filename)]
            os.makedirs(tmp[0])
        broadcast_object_list(tmp)
        tmp = tmp[0]
        dcp.save(tensors, checkpoint_id=tmp)  # a collective; ends with every shard written
        if self.rank == 0:

            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            atomic_write(osp.join(tmp, sharded.EXTRA_FILE), buffer.getvalue())
            _fault_point('before_commit', filename)
            sharded.write_marker(tmp, self.world_size)
            sharded.commit(tmp, filename)
        dist.barrier()

    def _load_sharded(self, directory: str, with_optimizer: bool) -> dict:
        marker = sharded.check_sharded_checkpoint(directory)
        if marker['world_size'] != self.world_size:
            print_log(
                f'{directory} was saved by {marker["world_size"]} ranks, this run has '
                f'{self.world_size}: model and optimizer are resharded on load.',
                logger='current',
                level=logging.WARNING)
        model_state, optim_state = self._state_dicts()
        state = dict(state_dict=model_state)
        if with_optimizer:
            state['optimizer'] = optim_state
        dcp.load(state, checkpoint_id=directory)
        set_state_dict(
            self.model,
            self.optim_wrapper.optimizer,
            model_state_dict=state['state_dict'],
            optim_state_dict=state['optimizer'] if with_optimizer else {})
        return dict(sharded.load_extra(directory))

    def load_checkpoint(self,
                        filename: str,
                        *,
                        map_location: Union[str, Callable] = 'cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')],
                        callback: Optional[Callable] = None) -> dict:
        """``load_from``: a sharded directory, or a single file (consolidated, or any
        mmengine checkpoint of the same model), sharded onto this run's ranks."""
        filename = str(filename)
        print_log(f'Load checkpoint from {filename}', logger='current')
        if sharded.is_sharded_checkpoint(filename):
            checkpoint = self._load_sharded(filename, with_optimizer=False)
            if callback is not None:
                callback(checkpoint)
            return checkpoint

        checkpoint = load_checkpoint_file(filename)
        if callback is not None:
            callback(checkpoint)
        state = checkpoint.pop('state_dict', checkpoint)
        for pattern, repl in revise_keys:
            state = {re.sub(pattern, repl, k): v for k, v in state.items()}
        set_model_state_dict(
            self.model, state, options=StateDictOptions(full_state_dict=True, strict=strict))
        return checkpoint

    def resume(self,
               filename: str,
               *,
               resume_optimizer: bool = True,
               resume_param_scheduler: bool = True,
               map_location: Union[str, Callable] = 'default',
               callback: Optional[Callable] = None) -> dict:
        filename = str(filename)
        if not sharded.is_sharded_checkpoint(filename):
            raise CheckpointError(
                f'Cannot resume an FSDP2 run from {filename}: it is a single-file '
                'checkpoint (DDP, or consolidated). Start from it with load_from= instead '
                '(weights only), or resume from a sharded directory.')
        print_log(f'Resume checkpoint from {filename}', logger='current')
        checkpoint = self._load_sharded(filename, with_optimizer=resume_optimizer)
        if callback is not None:
            callback(checkpoint)
        if resume_param_scheduler and hasattr(self, 'param_schedulers'):
            self.load_scheduler_state_dict(checkpoint.pop('param_schedulers'))
        resumed_seed = checkpoint['meta'].get('seed', None)
        if resumed_seed is not None and resumed_seed != self._randomness.get('seed'):
            self._randomness.update(seed=resumed_seed)
            self._set_randomness(**self._randomness)
        return checkpoint


def _autocasts(wrapper) -> bool:
    """Whether the wrapper's optim_context runs the forward under bf16 autocast."""

    if isinstance(wrapper, CPUAutocastOptimWrapper):
        return True
    return isinstance(wrapper, AmpOptimWrapper) and wrapper.cast_dtype == torch.bfloat16


def _fault_point(name: str, filename: str) -> None:
    """Test hook: ``MMFD_TEST_FAULT=before_commit:iter_4.pth`` prints a marker and
    sleeps at that point of that save, so a test can SIGKILL the job with every shard
    written but the checkpoint not yet published. Does nothing otherwise."""
    if os.environ.get('MMFD_TEST_FAULT') == f'{name}:{osp.basename(filename)}':
        print(f'MMFD_TEST_FAULT_REACHED {name}', flush=True)
        time.sleep(600)
