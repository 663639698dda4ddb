#!/usr/bin/env python
"""Time the real FD training step against its floor, in one run.

FD step : ``model.train_step(batch, optim_wrapper)``: mmengine's optim wrapper,
          the data preprocessor (uint8 -> normalised), re-normalisation/alignment
          for the teacher, teacher, student, head, loss, backward, grad clip, step.
floor   : the same teacher forward under no-grad plus the same student + projection
          forward/backward, grad clip and AdamW step, in a bare PyTorch loop on
          pre-normalised tensors, with no framework around it.
Data comes from memory: the loader is not measured.

    python tools/analysis_tools/benchmark_fd.py \
        configs/fd/fd_clip-vit-b16_vit-b16_16xb128-amp-coslr-300e_in1k.py \
        --batch 128 --amp --device cuda
    python tools/analysis_tools/benchmark_fd.py tests/configs/tiny_fd.py --device cpu \
        --json out.json

Prints images/s, ms/step, peak memory, FD/floor and the teacher's share of a step.
FLOPs (--flops) are counted with torch.utils.flop_counter.FlopCounterMode over one
floor step (matmuls, convolutions and attention; forward + backward).
"""
import argparse
import json
import os.path as osp
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F
from mmengine.config import Config, DictAction

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..', '..'))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('config')
    p.add_argument('--batch', type=int, default=8, help='images per step')
    p.add_argument('--iters', type=int, default=10, help='timed steps per run')
    p.add_argument('--warmup', type=int, default=3, help='untimed steps per run')
    p.add_argument('--repeats', type=int, default=5, help='runs; the median is reported')
    p.add_argument('--amp', action='store_true', help='AMP (bf16 on CPU, --amp-dtype on GPU)')
    p.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None)
    p.add_argument('--compile', action='store_true', help='torch.compile the student')
    p.add_argument(
        '--device', choices=['cpu', 'cuda'], default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--flops', action='store_true', help='count FLOPs, report TFLOP/s')
    p.add_argument('--json', help='write the figures to this file')
    p.add_argument('--cfg-options', nargs='+', action=DictAction)
    return p.parse_args(argv)


def build(args):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmfd  # noqa: F401  (registers)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    init_default_scope(cfg.get('default_scope', 'mmpretrain'))
    from mmengine.logging import MMLogger
    MMLogger.get_instance('mmengine', log_level='WARNING')  # no per-parameter init log
    teachers = cfg.model.get('teachers') or {'teacher': cfg.model.teacher}
    for teacher in teachers.values():
        if not teacher.get('checkpoint') or not osp.exists(str(teacher.get('checkpoint'))):
            print(f'[benchmark] teacher checkpoint {teacher.get("checkpoint")!r} not found: '
                  'random teacher weights (speed does not depend on them)')
            teacher.checkpoint, teacher.allow_random_init = None, True
    cfg.model.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    model.to(args.device).train()
    if args.compile:
        model.backbone.compile()  # in place: names unchanged, same module in both loops

    from mmfd.engine.optim_wrappers import set_amp
    optim_cfg = set_amp(
        cfg.optim_wrapper.copy(), amp=args.amp, amp_dtype=amp_dtype(args) if args.amp else None)
    optim_cfg['cuda'] = args.device == 'cuda'  # decide the AMP kind for that device
    optim_wrapper = build_optim_wrapper(model, optim_cfg)
    return cfg, model, optim_wrapper


def amp_dtype(args):
    if args.device == 'cpu':
        return 'bfloat16'  # CPU autocast runs bf16
    return args.amp_dtype or 'float16'


def sync(device):
    if device == 'cuda':
        torch.cuda.synchronize()


class Floor:
    """The unavoidable compute of one FD step, with nothing around it."""

    def __init__(self, model, optim_wrapper, args):
        self.student = model.backbone
        # (teacher, head) of every teacher, in the model's order
        self.branches = {
            name: (teacher, model.head_of(name))
            for name, teacher in model.named_teachers().items()
        }
        groups = [{k: v for k, v in g.items()} for g in optim_wrapper.optimizer.param_groups]
        self.params = [p for g in groups for p in g['params'] if p.requires_grad]
        # The same optimizer class and settings (foreach/fused alike) as the FD run.
        source = optim_wrapper.optimizer
        import inspect
        accepted = inspect.signature(type(source).__init__).parameters
        self.optimizer = type(source)(groups, **{
            k: v
            for k, v in source.defaults.items() if k in accepted
        })
        clip = optim_wrapper.clip_grad_kwargs if hasattr(optim_wrapper, 'clip_grad_kwargs') else {}
        self.max_norm = clip.get('max_norm') if clip else None
        self.device = args.device
        self.amp = args.amp
        self.dtype = getattr(torch, amp_dtype(args))
        self.scaler = torch.amp.GradScaler(
            args.device) if (args.amp and self.dtype == torch.float16) else None

    def autocast(self):
        return torch.autocast(self.device, dtype=self.dtype, enabled=self.amp)

    def teacher_forward(self, x_teacher):
        """Every teacher, one after the other, on its own prepared input."""
        with self.autocast(), torch.no_grad():
            return {
                name: teacher(x_teacher[name]).tokens
                for name, (teacher, _) in self.branches.items()
            }

    def step(self, x_student, x_teacher):
        with self.autocast():
            targets = self.teacher_forward(x_teacher)
            tokens = self.student(x_student)[-1]
            if tokens.dim() == 4:
                tokens = tokens.flatten(2).transpose(1, 2)
            loss = 0.
            for name, target in targets.items():
                head = self.branches[name][1]
                ours = tokens[:, tokens.shape[1] - target.shape[1]:]
                loss = loss + F.smooth_l1_loss(
                    head.proj(ours).float(),
                    F.layer_norm(target.float(), target.shape[-1:], eps=head.eps),
                    beta=head.beta)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if self.max_norm:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss


def timed(fn, iters, warmup, device):
    for _ in range(warmup):
        fn()
    sync(device)
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    sync(device)
    return (time.perf_counter() - start) / iters


def peak_memory_mb(device):
    if device == 'cuda':
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # process RSS


def count_flops(floor, x_student, x_teacher):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:
        floor.step(x_student, x_teacher)
    return counter.get_total_flops()


def run(args):
    if args.device == 'cpu':
        # Random-init fp32 training produces denormal floats, which take a slow
        # path on x86 CPUs and make step times erratic (measured: 1.3-3.1 s vs a
        # steady 1.3 s for a ViT-S step). Flushing them affects nothing else.
        torch.set_flush_denormal(True)
    cfg, model, optim_wrapper = build(args)
    size = model.input_size
    pixels = torch.randint(0, 256, (args.batch, 3, *size), dtype=torch.uint8, device=args.device)
    batch = dict(inputs=pixels, data_samples=None)
    with torch.no_grad():
        x_student = model.data_preprocessor(dict(inputs=pixels, data_samples=None), True)['inputs']
        x_teacher = {  # outside the floor's timed loop
            name: model.teacher_input(x_student, name)
            for name in model.named_teachers()
        }
    floor = Floor(model, optim_wrapper, args)

    def fd_step():
        model.train_step(batch, optim_wrapper)

    def floor_step():
        floor.step(x_student, x_teacher)

    def teacher_step():
        floor.teacher_forward(x_teacher)

    figures = dict(fd=[], floor=[], teacher=[])
    memory = {}
    for fn in (fd_step, floor_step, teacher_step):  # one untimed round: caches, kernels
        timed(fn, 1, args.warmup, args.device)
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, fn in (('fd', fd_step), ('floor', floor_step), ('teacher', teacher_step)):
            if args.device == 'cuda':
                torch.cuda.reset_peak_memory_stats()
            figures[name].append(timed(fn, args.iters, args.warmup, args.device))
            memory[name] = max(memory.get(name, 0), peak_memory_mb(args.device))

    ms = {k: 1000 * statistics.median(v) for k, v in figures.items()}
    ratios = [a / b for a, b in zip(figures['fd'], figures['floor'])]
    result = dict(
        config=args.config,
        device=args.device,
        device_name=(torch.cuda.get_device_name()
                     if args.device == 'cuda' else f'cpu x{torch.get_num_threads()} threads'),
        batch=args.batch,
        num_teachers=len(floor.branches),
        amp=args.amp,
        amp_dtype=amp_dtype(args) if args.amp else None,
        compile=args.compile,
        iters=args.iters,
        repeats=args.repeats,
        fd_ms=ms['fd'],
        floor_ms=ms['floor'],
        teacher_ms=ms['teacher'],
        fd_images_per_s=args.batch / (ms['fd'] / 1000),
        floor_images_per_s=args.batch / (ms['floor'] / 1000),
        fd_over_floor=statistics.median(ratios),
        fd_over_floor_runs=ratios,
        teacher_share=ms['teacher'] / ms['fd'],
        peak_memory_mb=memory,
        torch=torch.__version__)
    if args.flops:
        flops = count_flops(floor, x_student, x_teacher)
        result['flops_per_step'] = flops
        result['fd_tflops'] = flops / (ms['fd'] / 1000) / 1e12
        result['flop_method'] = ('torch.utils.flop_counter.FlopCounterMode over one '
                                 'floor step (fwd+bwd matmul/conv/attention)')
    return result


def main(argv=None):
    args = parse_args(argv)
    result = run(args)
    mem = result['peak_memory_mb']
    print(f'{result["config"]} on {result["device_name"]}, batch {result["batch"]}, '
          f'amp={result["amp_dtype"] or "off"}, compile={result["compile"]}')
    print(f'  FD step    {result["fd_ms"]:9.2f} ms  {result["fd_images_per_s"]:9.1f} img/s  '
          f'peak {mem["fd"]:.0f} MiB')
    print(f'  floor      {result["floor_ms"]:9.2f} ms  {result["floor_images_per_s"]:9.1f} img/s  '
          f'peak {mem["floor"]:.0f} MiB')
    share = 100 * result['teacher_share']
    print(f'  teacher    {result["teacher_ms"]:9.2f} ms  ({share:.1f}% of the FD step)')
    print(f'  FD / floor {result["fd_over_floor"]:.3f} (median of {result["repeats"]} runs: ' +
          ', '.join(f'{r:.3f}' for r in result['fd_over_floor_runs']) + ')')
    if 'fd_tflops' in result:
        print(f'  {result["flops_per_step"] / 1e12:.3f} TFLOP/step -> '
              f'{result["fd_tflops"]:.1f} TFLOP/s ({result["flop_method"]})')
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == '__main__':
    from mmfd.utils.cli import run_tool
    run_tool(main)  # mmfd's errors: message only (MMFD_DEBUG=1 / --debug: traceback)
