#!/usr/bin/env python
"""Train with an mmfd / mmpretrain config (mmpretrain's tools/train.py, plus CPU DDP).

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]]
    tools/dist_train.sh CONFIG 8        # torchrun, one node
    (CONFIG e.g. configs/fd/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py)

The command line is applied in the order a user expects: the config, then the
flags (--amp, --no-validate, ...), then --cfg-options, which win over both. A
``runner_type`` in the config (e.g. mmengine's ``FlexibleRunner`` for FSDP or
DeepSpeed strategies) is built through mmengine's RUNNERS registry.
"""
import argparse
import os
import os.path as osp

import torch
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmfd.engine.optim_wrappers import as_fd_optim_wrapper, set_amp
from mmfd.utils.preflight import preflight


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model (FD pre-training, '
                                     'fine-tuning) with mmengine\'s Runner')
    parser.add_argument('config', help='train config file path')
    parser.add_argument(
        '--work-dir', help='where logs and checkpoints go '
        '(default: ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CKPT, or from the latest checkpoint in '
        'the work dir when no path is given')
    amp = parser.add_mutually_exclusive_group()
    amp.add_argument('--amp', action='store_true', help='enable automatic mixed precision training')
    amp.add_argument(
        '--no-amp', action='store_true', help='train in fp32 even if the config enables AMP')
    parser.add_argument(
        '--amp-dtype',
        choices=['float16', 'bfloat16'],
        help='AMP compute dtype (default: the config\'s, else float16)')
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr to the real total batch (auto_scale_lr)')
    scale.add_argument(
        '--no-auto-scale-lr',
        action='store_true',
        help='use the optimizer lr as written, not scaled to the batch')
    parser.add_argument(
        '--no-validate', action='store_true', help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--no-pin-memory', action='store_true', help='pin_memory=False in every dataloader')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='persistent_workers=False in every dataloader')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. '
        'model.teacher.checkpoint=ckpts/ViT-B-16.safetensors')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Config <- flags <- --cfg-options (last wins), then fitted to this machine."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])

    amp = True if args.amp else (False if args.no_amp else None)
    if cfg.get('optim_wrapper') is not None:
        set_amp(cfg.optim_wrapper, amp=amp, amp_dtype=args.amp_dtype)

    if cfg.get('auto_scale_lr') is not None and (args.auto_scale_lr or args.no_auto_scale_lr):
        cfg.auto_scale_lr.enable = bool(args.auto_scale_lr)
    elif args.auto_scale_lr:
        raise SystemExit('--auto-scale-lr: the config has no auto_scale_lr '
                         '(e.g. auto_scale_lr = dict(base_batch_size=512)).')
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(name)
        if loader is None:
            continue
        if args.no_pin_memory:
            loader.pin_memory = False
        if args.no_persistent_workers:
            loader.persistent_workers = False

    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume

    cfg.launcher = args.launcher
    if args.launcher != 'none' and not torch.cuda.is_available():
        use_gloo(cfg, args.launcher)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('optim_wrapper') is not None:
        # --cfg-options may name mmengine's AmpOptimWrapper: it runs here too (the
        # wrapper logs, when built, what AMP becomes on this machine).
        as_fd_optim_wrapper(cfg.optim_wrapper)
    return cfg


def use_gloo(cfg, launcher):
    """Distributed training on CPU: gloo instead of nccl and DDP without device_ids.

    mmengine's init_dist pins a CUDA device, so the CPU process group is created
    here (the Runner then finds it initialised and keeps it)."""
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or dict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if launcher == 'pytorch' and not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')


def main(argv=None):
    args = parse_args(argv)
    cfg = merge_args(Config.fromfile(args.config), args)
    preflight(cfg)  # missing files, unknown teachers, batch splits: before any work
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.logger.info(f'mmfd: training with {type(runner).__name__}')
    runner.train()


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
