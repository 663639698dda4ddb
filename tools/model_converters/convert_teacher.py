#!/usr/bin/env python
"""Convert a teacher checkpoint into one clean safetensors file + JSON metadata.

    python tools/model_converters/convert_teacher.py --family clip --arch ViT-B-16 \\
        --allow-torchscript ViT-B-16.pt clip_vitb16.safetensors
    python tools/model_converters/convert_teacher.py --family vit --arch dino_vitb16 \\
        dino_vitbase16_pretrain_full_checkpoint.pth dino_vitb16.safetensors
    python tools/model_converters/convert_teacher.py --family swin --arch esvit_swin_base \\
        checkpoint_best.pth esvit_swinb.safetensors
    python tools/model_converters/convert_teacher.py --family timm \\
        --model vit_base_patch14_reg4_dinov2 \\
        dinov2_vitb14_reg4_pretrain.pth dinov2_vitb14_reg4.safetensors
    python tools/model_converters/convert_teacher.py --family mmpretrain --config mae_vit-base.py \\
        mae_vit-base.pth mae_vitb.safetensors

    python tools/model_converters/convert_teacher.py --family timm \
        --model vit_base_patch16_siglip_224.v2_webli siglip2_b16.npz siglip2_b16.safetensors

``--family`` is any family in the teachers' table (one per file of
``mmfd/models/teachers/``); the flags below set the options of the same name where
the family takes them, ``--teacher-kwargs`` any other. The input is loaded by the
same teacher class training uses (strictly: every key checked), and the output
holds that teacher's weights in its canonical key format (CLIP: open_clip
``visual.*``; ViT: timm/DINO keys; Swin: timm keys; mmpretrain: backbone keys
without prefix; timm: the timm model's own keys, whatever layout the input had).
The metadata (family, teacher config, mean/std in 0-255 scale, patch size, embed
dim, has_cls, img size, source file) is written to ``OUT.json`` and into the
safetensors header, so either of

    teacher = dict(type='ConvertedTeacher', checkpoint='OUT.safetensors')
    teacher = dict(type='ViTTeacher', arch='dino_vitb16', checkpoint='OUT.safetensors')

rebuilds the same teacher. Unless --no-verify, the converted file is loaded back
and must give bit-identical features on a random input.
"""
import argparse
import inspect
import json
import os
import sys

if __package__ in (None, ''):  # run as a script from a source checkout
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))


def families() -> dict:
    """family name -> teacher class: the teachers' own table (a family file added to
    mmfd/models/teachers/ appears here without an edit)."""
    from mmfd.models.teachers import TEACHER_FAMILIES
    return dict(TEACHER_FAMILIES)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Convert a teacher checkpoint to safetensors + JSON metadata.')
    parser.add_argument(
        'input', help='checkpoint file (.pt/.pth/.bin/.safetensors; .npz for timm SigLIP)')
    parser.add_argument('output', help='output .safetensors path (OUT.json is written too)')
    parser.add_argument('--family', required=True, choices=sorted(families()))
    parser.add_argument(
        '--arch',
        help='arch name, or a JSON dict of dimensions (clip: '
        'an open_clip model name or config; inferred when omitted)')
    parser.add_argument('--config', help='mmpretrain config file (family mmpretrain)')
    parser.add_argument(
        '--model',
        help="timm model name, e.g. 'vit_base_patch14_reg4_dinov2.lvd142m' (family timm)")
    parser.add_argument(
        '--allow-torchscript',
        action='store_true',
        help='load a TorchScript archive (OpenAI CLIP .pt): it runs code, '
        'only for trusted files')
    parser.add_argument(
        '--quick-gelu',
        choices=('auto', 'yes', 'no'),
        default='auto',
        help='CLIP activation (auto: -quickgelu names and OpenAI archives)')
    parser.add_argument('--img-size', type=int)
    parser.add_argument('--window-size', type=int, help='Swin window size override')
    parser.add_argument('--out-stage', type=int, help='Swin output stage (3 or 4)')
    parser.add_argument(
        '--teacher-kwargs', default='{}', help='JSON dict of further teacher constructor options')
    parser.add_argument(
        '--no-verify', action='store_true', help='skip reloading the output and comparing features')
    return parser.parse_args(argv)


# Command-line options that set the teacher option of the same name, when given.
_TEACHER_OPTIONS = ('arch', 'config', 'model', 'img_size', 'window_size', 'out_stage')


def teacher_config(args) -> dict:
    """The teacher config of the input file: the family's class, the options given
    on the command line (an option the family does not take is an error), the
    family's required options checked."""
    cls = families()[args.family]
    accepted = set(inspect.signature(cls.__init__).parameters)
    cfg = dict(type=cls.__name__, checkpoint=args.input, **cls.convert_defaults)
    given = {option: getattr(args, option) for option in _TEACHER_OPTIONS}
    arch = given['arch'] or None
    given['arch'] = json.loads(arch) if arch and arch.lstrip().startswith('{') else arch
    if args.allow_torchscript:
        given['allow_torchscript'] = True
    if args.quick_gelu != 'auto':
        given['quick_gelu'] = args.quick_gelu == 'yes'
    for option, value in given.items():
        if value is None:
            continue
        if option not in accepted:
            raise SystemExit(f'--{option.replace("_", "-")} is not an option of {cls.__name__} '
                             f'(--family {args.family}).')
        cfg[option] = value
    cfg.update(json.loads(args.teacher_kwargs))
    for option, what in cls.required_options.items():
        if cfg.get(option) is None:
            raise SystemExit(f'--family {args.family} needs --{option.replace("_", "-")} '
                             f'<{what}>')
    return cfg


def sidecar_path(output: str) -> str:
    root, ext = os.path.splitext(output)
    return (root if ext == '.safetensors' else output) + '.json'


def convert(args) -> dict:
    import torch

    import mmfd  # noqa: F401  (registers the teachers)
    from mmfd.checkpoint.io import save_safetensors
    from mmfd.models.teachers.builder import (METADATA_KEY, build_converted_teacher, build_teacher,
                                              teacher_metadata)

    if not args.output.endswith('.safetensors'):
        raise SystemExit(f'output must end with .safetensors, got {args.output}')
    teacher = build_teacher(teacher_config(args))
    metadata = teacher_metadata(teacher, source=args.input)
    save_safetensors(
        teacher.export_state_dict(), args.output, metadata={METADATA_KEY: json.dumps(metadata)})
    with open(sidecar_path(args.output), 'w') as handle:
        json.dump(metadata, handle, indent=2)

    if not args.no_verify:
        reloaded = build_converted_teacher(args.output)
        generator = torch.Generator().manual_seed(0)
        size = teacher.img_size
        images = torch.randn(2, 3, size, size, generator=generator)
        expected, got = teacher(images).tokens, reloaded(images).tokens
        if not torch.equal(expected, got):
            raise SystemExit(f'verification failed: features differ by '
                             f'{(expected - got).abs().max().item():.3g}')
    return metadata


def main(argv=None) -> dict:
    args = parse_args(argv)
    metadata = convert(args)
    print(f'wrote {args.output} and {sidecar_path(args.output)}: {metadata["family"]} '
          f'{metadata["teacher"]["type"]}, embed_dim {metadata["embed_dim"]}, patch '
          f'{metadata["patch_size"]}, img_size {metadata["img_size"]}, has_cls '
          f'{metadata["has_cls"]}' + ('' if args.no_verify else ', features verified'))
    return metadata


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
