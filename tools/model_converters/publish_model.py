#!/usr/bin/env python
"""Prepare a checkpoint for release: training state dropped, sha256 in the name.

    python tools/model_converters/publish_model.py work_dirs/fd_x/epoch_300.pth fd_x.pth
    # -> fd_x-1a2b3c4d.pth: meta + state_dict only (no optimizer, schedulers, hub)
    python tools/model_converters/publish_model.py vitb_backbone.safetensors fd_vitb.safetensors

The first 8 hex digits of the output's sha256 go into its name, as OpenMMLab names
its released files, so a download can be checked against its name. The input is
read safely (``weights_only``/safetensors); a sharded FSDP2 directory is read whole.
To publish a backbone for fine-tuning, convert first
(tools/model_converters/convert_fd_checkpoint.py, which has ``--publish`` too).
"""
import argparse
import os
import os.path as osp
import shutil
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

import torch  # noqa: E402

from mmfd.checkpoint.io import load_checkpoint_file  # noqa: E402
from mmfd.checkpoint.publish import publish_checkpoint  # noqa: E402
from mmfd.utils.errors import MMFDError  # noqa: E402

KEEP = ('meta', 'state_dict')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('src', help='checkpoint written by tools/train.py, or a converted file')
    parser.add_argument('dst', help='output name before the hash (.pth or .safetensors)')
    return parser.parse_args(argv)


def publish(src: str, dst: str) -> str:
    """Writes ``dst`` without training state, then renames it to NAME-<sha8>.EXT."""
    if osp.splitext(src)[1] == '.safetensors' or osp.splitext(dst)[1] == '.safetensors':
        if osp.splitext(src)[1] != osp.splitext(dst)[1]:
            raise MMFDError(f'{src} -> {dst}: publish keeps the format; use '
                            'tools/model_converters/convert_fd_checkpoint.py to change it')
        load_checkpoint_file(src)  # refuses a file that is not safetensors
        shutil.copyfile(src, dst)
        return publish_checkpoint(dst)
    ckpt = load_checkpoint_file(src)
    if 'state_dict' not in ckpt:
        raise MMFDError(f'{src} has no "state_dict" (keys: {sorted(ckpt)[:8]}); '
                        'expected a checkpoint written by tools/train.py or a converter')
    os.makedirs(osp.dirname(osp.abspath(dst)), exist_ok=True)
    torch.save({k: ckpt[k] for k in KEEP if k in ckpt}, dst)
    return publish_checkpoint(dst)


def main(argv=None):
    args = parse_args(argv)
    try:
        path = publish(args.src, args.dst)
    except MMFDError as err:
        raise SystemExit(f'error: {err}')
    print(path)
    return path


if __name__ == '__main__':
    main()
