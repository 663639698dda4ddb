#!/usr/bin/env python
"""Turn a sharded FSDP2 checkpoint (a directory) into one single-file checkpoint.

    python tools/model_converters/consolidate_fsdp_checkpoint.py work_dirs/fd_x/epoch_300.pth \
        fd_x_ep300.pth
    # then, as after DDP:
    python tools/model_converters/convert_fd_checkpoint.py fd_x_ep300.pth backbone.pth

Runs in one process, without GPUs or a process group: torch.distributed.checkpoint
reassembles every tensor from its shards. The output is what a DDP run saves
(``meta``, ``state_dict``, ``message_hub``, schedulers; the student and the FD
heads, never the teacher), so the converters, ``load_from``, fine-tuning and the
downstream configs read it unchanged. ``--with-optimizer`` also keeps the AdamW
state (keyed by parameter name). The checkpoint's ``COMPLETE`` marker is checked
first: an interrupted save is refused, naming what is missing.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='sharded checkpoint directory (e.g. work_dirs/X/iter_8.pth)')
    parser.add_argument('dst', help='output .pth file')
    parser.add_argument(
        '--with-optimizer', action='store_true', help='keep the optimizer state too (larger file)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from mmfd.engine.strategies.sharded_checkpoint import consolidate
    from mmfd.utils.errors import CheckpointError
    if not osp.isdir(args.src):
        raise CheckpointError(f'{args.src} is not a sharded (FSDP2) checkpoint directory; '
                              'a single-file checkpoint needs no consolidation.')
    checkpoint = consolidate(args.src, args.dst, with_optimizer=args.with_optimizer)
    tensors = checkpoint['state_dict']
    count = sum(t.numel() for t in tensors.values())
    print(f'Wrote {args.dst}: {len(tensors)} tensors, {count / 1e6:.2f} M values '
          f'(from {checkpoint["meta"]["consolidated_from"]["world_size"]} ranks, '
          f'iteration {checkpoint["meta"].get("iter")}).')


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)
