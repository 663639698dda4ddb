#!/usr/bin/env python
"""Time and peak memory of one teacher's forward, with random weights.

    python tools/analysis_tools/benchmark_teacher.py  # DINOv2-L/14 reg4, 196 px, batch 2
    python tools/analysis_tools/benchmark_teacher.py --teacher clip_vitl14 --batch 64 --device cuda
    python tools/analysis_tools/benchmark_teacher.py --teacher dinov3_vit7b --img-size 224 \
        --dtype bfloat16
    python tools/analysis_tools/benchmark_teacher.py --teacher '{"type": "TimmTeacher",
        "model": "vit_so400m_patch14_siglip_224"}' --json siglip.json

The teacher is built as FD builds it (``mmfd.models.teachers.build_teacher``), with
``allow_random_init=True`` unless the config names a checkpoint: speed and memory do
not depend on the weights. It runs in eval mode under ``torch.no_grad`` on random
inputs, ``--warmup`` untimed then ``--iters`` timed forwards; the median is reported.

Memory: on CUDA, ``torch.cuda.max_memory_allocated()`` over the forwards (weights
included) after resetting the peak. On CPU, the peak resident set of the process
(``VmHWM``, reset through ``/proc/self/clear_refs`` just before the first forward;
where that is not possible, ``ru_maxrss``, which then may include the build's
peak), and that peak above the resident set before the first forward (what the
forward itself needs: activations, attention maps).
"""
import argparse
import gc
import json
import os
import resource
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))

# name -> (teacher config, input size). The sizes are the FD geometry where a shipped
# config uses the teacher (configs/fd/fd_dinov2-vit-l14-reg4_vit-b16_16xb128-amp-coslr-300e_in1k.py
# feeds DINOv2-L/14 196 px for the 14x14 grid of a /16 student at 224), else the model's own.
PRESETS = {
    'dinov2_vitl14': (dict(type='TimmTeacher', model='vit_large_patch14_reg4_dinov2.lvd142m'), 196),
    'dinov3_vitl16': (dict(type='TimmTeacher', model='vit_large_patch16_dinov3'), 224),
    'dinov3_vit7b': (dict(type='TimmTeacher', model='vit_7b_patch16_dinov3'), 224),
    'eva02clip_vitl14': (dict(type='TimmTeacher', model='eva02_large_patch14_clip_224'), 224),
    'pe_core_l14': (dict(type='TimmTeacher', model='vit_pe_core_large_patch14_336'), 336),
    'siglip_so400m': (dict(type='TimmTeacher', model='vit_so400m_patch14_siglip_224'), 224),
    'clip_vitl14': (dict(type='CLIPTeacher', arch='ViT-L-14'), 224),
}
DTYPES = dict(float32=None, bfloat16=torch.bfloat16, float16=torch.float16)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description='Time and peak memory of one teacher forward (random weights).')
    p.add_argument(
        '--teacher',
        default='dinov2_vitl14',
        help=f'a preset ({", ".join(PRESETS)}) or a teacher config as JSON')
    p.add_argument('--img-size', type=int, help="input size (default: the preset's, else 224)")
    p.add_argument('--batch', type=int, default=2, help='images per forward')
    p.add_argument('--iters', type=int, default=3, help='timed forwards (median reported)')
    p.add_argument('--warmup', type=int, default=1, help='untimed forwards before')
    p.add_argument(
        '--device',
        choices=['cpu', 'cuda'],
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='default: cuda when available')
    p.add_argument(
        '--dtype',
        choices=list(DTYPES),
        default='float32',
        help='autocast dtype of the forward (weights stay float32)')
    p.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    p.add_argument('--json', help='also write the figures to this file')
    args = p.parse_args(argv)
    for name in ('batch', 'iters'):
        if getattr(args, name) < 1:
            p.error(f'--{name} must be >= 1')
    if args.warmup < 0:
        p.error('--warmup must be >= 0')
    return args


def teacher_config(spec: str):
    """(teacher config, default input size) from a preset name or a JSON config."""
    if spec in PRESETS:
        cfg, size = PRESETS[spec]
        return dict(cfg), size
    try:
        cfg = json.loads(spec)
    except json.JSONDecodeError:
        raise SystemExit(f'--teacher {spec!r} is neither a preset ({", ".join(PRESETS)}) '
                         'nor a JSON teacher config') from None
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise SystemExit(f"--teacher JSON must be a dict with a 'type', got {spec!r}")
    return cfg, None


# ------------------------------------------------------------------ CPU memory
def _status_kib(field: str):
    try:
        with open('/proc/self/status') as handle:
            for line in handle:
                if line.startswith(field + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Sets the process's peak RSS (VmHWM) to its current RSS (Linux >= 4.0)."""
    try:
        with open('/proc/self/clear_refs', 'w') as handle:
            handle.write('5')
        return _status_kib('VmHWM') is not None
    except OSError:
        return False


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == 'darwin' else peak * 1024  # bytes on macOS, KiB elsewhere


class CPUMemory:

    def start(self) -> None:
        gc.collect()
        rss = _status_kib('VmRSS')
        self.method = 'VmHWM' if _reset_peak_rss() else 'ru_maxrss'
        self.start_bytes = rss * 1024 if rss is not None else _maxrss_bytes()

    def peak(self) -> int:
        if self.method == 'VmHWM':
            return _status_kib('VmHWM') * 1024
        return _maxrss_bytes()


class CUDAMemory:
    method = 'torch.cuda.max_memory_allocated'

    def start(self) -> None:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        self.start_bytes = torch.cuda.memory_allocated()

    def peak(self) -> int:
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated()


# ------------------------------------------------------------------ benchmark
def benchmark(args) -> dict:
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    import mmfd  # noqa: F401  (registers the teachers)
    from mmfd.models.teachers import build_teacher
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda: no CUDA device is available')
    init_default_scope('mmpretrain')
    MMLogger.get_instance('mmengine', log_level='WARNING')
    cfg, preset_size = teacher_config(args.teacher)
    img_size = args.img_size or cfg.get('img_size') or preset_size or 224
    cfg['img_size'] = img_size
    if not cfg.get('checkpoint'):
        cfg['allow_random_init'] = True

    torch.manual_seed(0)
    start = time.perf_counter()
    teacher = build_teacher(cfg).to(args.device)
    build_s = time.perf_counter() - start
    images = torch.randn(args.batch, 3, img_size, img_size, device=args.device)
    memory = CUDAMemory() if args.device == 'cuda' else CPUMemory()
    dtype = DTYPES[args.dtype]

    def forward():
        with torch.autocast(args.device, dtype=dtype, enabled=dtype is not None):
            out = teacher(images)
        if args.device == 'cuda':
            torch.cuda.synchronize()
        return out

    memory.start()  # before the first forward: its allocations are the cold peak
    for _ in range(args.warmup):
        forward()
    times = []
    for _ in range(args.iters):
        start = time.perf_counter()
        out = forward()
        times.append(time.perf_counter() - start)
    peak = memory.peak()
    forward_s = statistics.median(times)
    params = sum(p.numel() for p in teacher.parameters())
    return dict(
        teacher=cfg,
        teacher_type=type(teacher).__name__,
        device=args.device,
        device_name=(torch.cuda.get_device_name()
                     if args.device == 'cuda' else f'cpu ({torch.get_num_threads()} threads)'),
        dtype=args.dtype,
        img_size=img_size,
        batch=args.batch,
        iters=args.iters,
        warmup=args.warmup,
        tokens=int(out.tokens.shape[1]),
        embed_dim=int(out.tokens.shape[2]),
        params=params,
        param_bytes=sum(p.numel() * p.element_size() for p in teacher.parameters()),
        build_s=build_s,
        ms_per_forward=1e3 * forward_s,
        ms_per_image=1e3 * forward_s / args.batch,
        images_per_s=args.batch / forward_s,
        peak_bytes=int(peak),
        peak_over_start_bytes=int(max(0, peak - memory.start_bytes)),
        memory_method=memory.method,
        torch=torch.__version__)


def main(argv=None) -> dict:
    args = parse_args(argv)
    result = benchmark(args)
    gib = 2**30
    what = result['teacher'].get('model') or result['teacher'].get('arch') or ''
    print(f'{result["teacher_type"]} {what} at {result["img_size"]} px, batch {result["batch"]}, '
          f'{result["dtype"]}, {result["device_name"]}: {result["ms_per_image"]:.1f} ms/image '
          f'({result["images_per_s"]:.2f} images/s), peak {result["peak_bytes"] / gib:.2f} GiB '
          f'({result["peak_over_start_bytes"] / gib:.2f} GiB above the start, '
          f'{result["memory_method"]}); {result["params"] / 1e6:.1f} M parameters, '
          f'{result["tokens"]} x {result["embed_dim"]} tokens per image')
    print(json.dumps(result))
    if args.json:
        with open(args.json, 'w') as handle:
            json.dump(result, handle, indent=2)
    return result


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
