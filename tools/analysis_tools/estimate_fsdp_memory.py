#!/usr/bin/env python
"""Per-GPU memory of an FD config's weights, gradients and AdamW state: DDP vs FSDP2.

    python tools/analysis_tools/estimate_fsdp_memory.py \
        configs/fd/fd_clip-vit-l14_vit-l14_16xb128-fsdp2-bf16-coslr-300e_in1k.py
    python tools/analysis_tools/estimate_fsdp_memory.py CONFIG --gpus 8 16 64 --teacher-params 303.2

Builds the student and its FD head on PyTorch's meta device (no memory, no
checkpoint), counts their parameters and their largest block, and prints the
bytes per GPU that mixed-precision AdamW keeps (mmfd/engine/strategies/memory.py
says what is counted). Activations are not included: they scale with the batch
per GPU and shrink with activation checkpointing (see the README, "Scale out").
The frozen teacher is read from the config's checkpoint when it exists, else give
its size in millions with --teacher-params.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config')
    parser.add_argument('--gpus', type=int, nargs='+', default=[8, 16, 64])
    parser.add_argument(
        '--teacher-params',
        type=float,
        default=None,
        help='teacher size in millions of parameters (default: counted '
        'from the config\'s teacher checkpoint when it exists)')
    parser.add_argument(
        '--shard-teacher',
        action='store_true',
        help='count the teacher as sharded (strategy.shard_teacher=True)')
    from mmengine.config import DictAction
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def _teacher_params(cfg, given):
    if given is not None:
        return int(given * 1e6)
    teacher = cfg.model.get('teacher') or {}
    path = teacher.get('checkpoint')
    if path and osp.isfile(path):
        from mmfd.checkpoint.io import load_checkpoint_file
        state = load_checkpoint_file(path)
        state = state.get('state_dict', state.get('model', state))
        return sum(v.numel() for v in state.values() if hasattr(v, 'numel'))
    return None


def main(argv=None):
    args = parse_args(argv)
    from mmengine.config import Config

    import mmfd  # noqa: F401  (registers FDViT / FDSwinTransformerV2)
    from mmfd.engine.strategies.fsdp2 import student_blocks
    from mmfd.engine.strategies.memory import build_on_meta, count, per_gpu_bytes
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    backbone = build_on_meta(cfg.model.backbone)
    holder = type('Model', (), {'backbone': backbone})
    blocks = student_blocks(holder)
    largest = max((count(b) for b in blocks), default=0)
    student = count(backbone)
    teacher = _teacher_params(cfg, args.teacher_params)
    name = osp.splitext(osp.basename(args.config))[0]
    print(f'{name}: student {student / 1e6:.1f} M parameters in {len(blocks)} blocks '
          f'(largest {largest / 1e6:.1f} M); teacher ' +
          (f'{teacher / 1e6:.1f} M' if teacher is not None else 'not counted '
           '(--teacher-params)'))
    print('Per GPU: student fp32 weights + gradients + AdamW state, the largest block '
          'gathered in bf16 (FSDP2), the teacher\'s fp32 weights' +
          (' (sharded)' if args.shard_teacher else '') + '; activations not included.')
    print('| GPUs | DDP GiB/GPU | FSDP2 GiB/GPU |')
    print('|---:|---:|---:|')
    for n in args.gpus:
        b = per_gpu_bytes(student, teacher or 0, n, largest, args.shard_teacher)
        print(f'| {n} | {b["ddp"] / 2**30:.1f} | {b["fsdp2"] / 2**30:.2f} |')


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)
