"""Helpers of the reliability tests: a tiny FD config with the reliability pieces,
subprocess training that can be SIGKILLed at a log line, a checkpoint writer that
pauses half-way through a save, a hook that injects NaNs, broken image files.

Imported by the training subprocesses too (``custom_imports``), so the test-only
components register themselves there.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TESTS = REPO / 'tests'

# tests/configs/tiny_fd.py (the tiny FD model and data pipeline) with the
# reliability pieces: AtomicCheckpointHook, SafeOptimWrapper, a test-only pause hook.
TINY_CONFIG = '''
_base_ = ['{repo}/tests/configs/tiny_fd.py']
custom_imports = dict(imports=['mmfd', 'mmfd.engine.reliability', 'mmfd.datasets',
                               'reliability_fixtures'], allow_failed_imports=False)
model = dict(teacher=dict(checkpoint='{teacher}'))
train_pipeline = {{{{_base_.train_pipeline}}}}
train_dataloader = dict(dataset=dict(data_root='{images}'))
optim_wrapper = dict(_delete_=True, type='FDOptimWrapper', clip_grad=dict(max_norm=3.0),
                     optimizer=dict(type='AdamW', lr=2e-3, weight_decay=0.05))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=24, by_epoch=False, eta_min=1e-4)]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=24)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook', interval=4,
                                     by_epoch=False, max_keep_ckpts=2))
custom_hooks = [dict(type='PauseForKillHook')]  # no-op unless $MMFD_TEST_PAUSE_AFTER_ITER
'''


def write_config(path, images, teacher, extra: str = '') -> Path:
    path = Path(path)
    path.write_text(TINY_CONFIG.format(repo=REPO, images=images, teacher=teacher) + extra)
    return path


def train_env(extra=None) -> dict:
    env = dict(os.environ)
    env['OMP_NUM_THREADS'] = '1'
    env['MKL_NUM_THREADS'] = '1'
    env['PYTHONPATH'] = os.pathsep.join([str(REPO), str(TESTS), env.get('PYTHONPATH', '')])
    env['PATH'] = f'{Path(sys.executable).parent}{os.pathsep}{env["PATH"]}'
    env.update(extra or {})
    return env


def train_cmd(config, work_dir, *options, script='tools/train.py', resume=False):
    cmd = [sys.executable, str(script), str(config), '--work-dir', str(work_dir)]
    if resume:
        cmd.append('--resume')
    if options:
        cmd += ['--cfg-options', *options]
    return cmd


def run(cmd, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(
        cmd, cwd=REPO, env=train_env(env), capture_output=True, text=True, timeout=timeout)


def process_tree(pid: int):
    """``pid`` and all its descendants (torchrun starts each rank in a session of
    its own, so a process-group kill would miss them)."""
    children = {}
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open(f'/proc/{entry}/stat') as f:
                ppid = int(f.read().rsplit(')', 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and its descendants at once, as a preemption would."""
    for member in process_tree(pid):
        try:
            os.kill(member, signal.SIGKILL)
        except ProcessLookupError:
            pass


def run_until(cmd, pattern: str, env=None, timeout=300) -> str:
    """Starts ``cmd``, SIGKILLs it (with every process it started) as soon as a line
    of its output matches ``pattern``; returns the output. Fails if it ends before."""
    proc = subprocess.Popen(
        cmd,
        cwd=REPO,
        env=train_env(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True)
    lines, regex, deadline = [], re.compile(pattern), time.time() + timeout
    try:
        for line in proc.stdout:
            lines.append(line)
            if regex.search(line):
                tree = process_tree(proc.pid)
                kill_tree(proc.pid)
                proc.wait()
                _wait_gone(tree)
                return ''.join(lines)
            if time.time() > deadline:
                break
        proc.wait(timeout=5)
        raise AssertionError(f'{pattern!r} never appeared (rc={proc.returncode}):\n' +
                             ''.join(lines[-60:]))
    finally:
        if proc.poll() is None:
            kill_tree(proc.pid)
            proc.wait()


def _wait_gone(pids, timeout=10.0) -> None:
    deadline = time.time() + timeout
    for pid in pids:
        while os.path.exists(f'/proc/{pid}') and time.time() < deadline:
            try:  # a zombie (killed, not reaped by its dead parent) counts as gone
                with open(f'/proc/{pid}/stat') as f:
                    if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                        break
            except OSError:
                break
            time.sleep(0.05)


def final_state(path) -> dict:
    ckpt = torch.load(path, map_location='cpu', weights_only=True)
    meta = {k: ckpt['meta'].get(k) for k in ('epoch', 'iter', 'seed')}
    return dict(
        model=ckpt['state_dict'],
        optimizer=ckpt['optimizer'],
        schedulers=ckpt.get('param_schedulers'),
        meta=meta)


def assert_bitwise_equal(a, b, where='') -> None:
    """Exact equality of nested dicts/lists of tensors and numbers."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f'{where} differs (max |diff| ' \
            f'{(a.double() - b.double()).abs().max().item():.3e})'
    elif isinstance(a, dict):
        assert set(a) == set(b), f'{where}: keys {set(a) ^ set(b)}'
        for key in a:
            assert_bitwise_equal(a[key], b[key], f'{where}.{key}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {str(a)[:200]!r} != {str(b)[:200]!r}'


def train_script_with_preflight(tmp_path) -> Path:
    """tools/train.py with ``preflight(cfg)`` before ``Runner.from_cfg`` (the lines
    the lead is asked to add); tools/train.py itself once it has them."""
    source = (REPO / 'tools/train.py').read_text()
    if 'preflight(' in source:
        return REPO / 'tools/train.py'
    source = source.replace(
        '    runner = Runner.from_cfg(cfg)', '    from mmfd.utils.preflight import preflight\n'
        '    preflight(cfg)\n'
        '    runner = Runner.from_cfg(cfg)')
    assert 'preflight(cfg)' in source, 'tools/train.py changed: update the test copy'
    script = Path(tmp_path) / 'train_with_preflight.py'
    script.write_text(source)
    return script


# ---------------------------------------------------------------------- broken files
def truncate_file(path, keep: float = 0.5) -> None:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[:int(len(data) * keep)])


def write_garbage(path, size: int = 3000) -> None:
    Path(path).write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(range(256)) * (size // 256))


# ------------------------------------------------- components used inside subprocesses
def _register_test_components():
    from mmengine.fileio.backends import register_backend
    from mmengine.hooks import Hook
    from mmengine.registry import HOOKS

    from mmfd.engine.reliability.atomic_io import AtomicLocalBackend

    class PausingAtomicBackend(AtomicLocalBackend):
        """Writes half of the file named by $MMFD_TEST_PAUSE_SAVE, fsyncs it, prints
        a marker and sleeps: the test SIGKILLs the process in the middle of a save."""

        def put(self, obj, filepath):
            self._target = str(filepath)
            super().put(obj, filepath)

        def _write(self, f, data):
            target = os.environ.get('MMFD_TEST_PAUSE_SAVE')
            if target and self._target.endswith(os.sep + target):
                f.write(data[:len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
                print(f'MMFD_TEST_PAUSED_IN_SAVE {self._target}', flush=True)
                time.sleep(600)
            f.write(data)

    register_backend('mmfd_test_pausing', PausingAtomicBackend, force=True)

    @HOOKS.register_module(force=True)
    class PauseForKillHook(Hook):
        """After iteration $MMFD_TEST_PAUSE_AFTER_ITER (1-based, all hooks done),
        prints a marker and sleeps, so the test's SIGKILL lands at a known point
        between two checkpoints however fast the machine is."""
        priority = 'LOWEST'

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            at = os.environ.get('MMFD_TEST_PAUSE_AFTER_ITER')
            if at and runner.iter + 1 == int(at):
                print(f'MMFD_TEST_PAUSED_AFTER_ITER {at} rank {runner.rank}', flush=True)
                time.sleep(600)

    @HOOKS.register_module(force=True)
    class NaNInjectionHook(Hook):
        """Makes the student's first block output NaN at the given (0-based) iters,
        on the given ranks (default: all)."""
        priority = 'NORMAL'

        def __init__(self, iters=(), ranks=None):
            self.iters = set(iters)
            self.ranks = None if ranks is None else set(ranks)
            self._handle = None

        def before_train_iter(self, runner, batch_idx, data_batch=None):
            if runner.iter in self.iters and (self.ranks is None or runner.rank in self.ranks):
                model = getattr(runner.model, 'module', runner.model)
                self._handle = model.backbone.layers[0].register_forward_hook(
                    lambda module, args, out: out * float('nan'))

        def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None):
            if self._handle is not None:
                self._handle.remove()
                self._handle = None


_register_test_components()
