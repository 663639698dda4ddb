#!/usr/bin/env python
"""Convert an FD checkpoint into a backbone checkpoint for downstream fine-tuning.

    python tools/model_converters/convert_fd_checkpoint.py FD.pth OUT.pth --target mmpretrain
    python tools/model_converters/convert_fd_checkpoint.py FD.pth OUT.pth --target mmdet \
        --img-size 1024
    python tools/model_converters/convert_fd_checkpoint.py FD.pth OUT.pth --target mmseg \
        --img-size 512
    python tools/model_converters/convert_fd_checkpoint.py FD.pth OUT.safetensors
    python tools/model_converters/convert_fd_checkpoint.py FD.pth fd_vitb.pth --publish
    # -> fd_vitb-1a2b3c4d.pth

Keeps the student only (``backbone.*``; the projection head and any teacher weights
are dropped). For a ViT student the shared relative position table is copied into
every block (``--no-per-layer-rel-pos`` keeps it shared) and, with ``--img-size``,
interpolated to the new patch grid. ``--target mmpretrain`` writes ``backbone.``-
prefixed keys, ``mmdet``/``mmseg`` un-prefixed ones (each toolbox's convention for
``init_cfg=dict(type='StrictPretrained', checkpoint=..., prefix=...)``).
``--publish`` renames the output to NAME-<first 8 hex digits of its sha256>.EXT, as
mmpretrain's publish_model does. FD.pth may be a URL mmengine.fileio reads
(``--backend-args`` configures its backend).

Fine-tuning needs no converted file: StrictPretrained(convert='fd_vit') reads the FD
checkpoint itself and converts it in memory; this tool writes portable files.
See mmfd/checkpoint/fd_to_backbone.py and the README section "Downstream".
"""
import argparse
import json
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmfd.checkpoint.fd_to_backbone import TARGETS, convert_fd_checkpoint  # noqa: E402
from mmfd.utils.errors import MMFDError  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'src', help='FD checkpoint (.pth written by tools/train.py '
        'for a configs/fd/* config)')
    parser.add_argument('dst', help='output file (.pth, or .safetensors)')
    parser.add_argument(
        '--target',
        choices=TARGETS,
        default='mmpretrain',
        help='toolbox the backbone goes to (sets the key prefix)')
    parser.add_argument(
        '--per-layer-rel-pos',
        action=argparse.BooleanOptionalAction,
        default=True,
        help='copy the shared relative position table '
        'into every block (default: on, as the release fine-tunes)')
    parser.add_argument(
        '--img-size',
        type=int,
        default=None,
        help='ViT only: downstream input size; the position tables '
        'are interpolated to img_size / patch_size')
    parser.add_argument(
        '--safetensors',
        action='store_true',
        help='write safetensors (implied by a .safetensors dst)')
    parser.add_argument(
        '--publish',
        action='store_true',
        help='rename the output to NAME-<sha256[:8]>.EXT (a published file names its hash)')
    parser.add_argument(
        '--backend-args',
        type=json.loads,
        default=None,
        help='JSON dict of mmengine.fileio backend arguments to read src, '
        'e.g. \'{"backend": "petrel"}\'')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = convert_fd_checkpoint(
            args.src,
            args.dst,
            target=args.target,
            per_layer_rel_pos=args.per_layer_rel_pos,
            img_size=args.img_size,
            safetensors=True if args.safetensors else None,
            backend_args=args.backend_args,
            publish=args.publish)
    except MMFDError as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    dropped = info.pop('dropped')
    path = info.pop('path')
    summary = ', '.join(f'{k}={v}' for k, v in info.items())
    print(f'wrote {path}: {summary}')
    print(f'dropped {len(dropped)} non-student keys' +
          (f' ({", ".join(dropped[:6])}{", ..." if len(dropped) > 6 else ""})' if dropped else ''))
    return 0


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
