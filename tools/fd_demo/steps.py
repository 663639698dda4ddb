"""A small make-like runner for the demo: steps, dependencies, skipping, timing.

Each :class:`Step` is either a command (a normal ``tools/*.py`` call, run as a
subprocess with its output in ``<work_dir>/logs/<step>.log``) or a Python callable.
A finished step leaves ``<work_dir>/.steps/<step>.json``: its signature (command,
settings, and the run ids of the steps it depends on), its outputs and its timing.
A later run skips the step when that marker matches and every output exists;
it re-runs it (and so everything downstream) otherwise, or with ``force``.
Independent steps run side by side, ``jobs`` at a time.
"""
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

TRAIN_ITER = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')
VAL_TOP1 = re.compile(r'Epoch\(val\).*accuracy/top1:\s*([\d.]+)')
TQDM = re.compile(r'(\d+)/(\d+) \[')
RUN_DONE = re.compile(r'^=== seed \S+ done in')  # tools/fd_demo/finetune.py


class StepFailed(RuntimeError):
    pass


@dataclass
class Step:
    name: str
    title: str
    command: Optional[List[str]] = None  # a tools/*.py call ...
    func: Optional[Callable[[], object]] = None  # ... or in-process work
    deps: Sequence[str] = ()
    outputs: Sequence[Path] = ()  # must exist for the step to count as done
    clean: Sequence[Path] = ()  # removed before the step (re-)runs
    settings: dict = field(default_factory=dict)  # part of the signature
    epochs: Optional[int] = None  # for the progress bar of train steps
    runs: int = 1  # trainings in the command, one after the other (seeds)


def format_seconds(seconds: float) -> str:
    seconds = int(round(seconds))
    return f'{seconds // 60}m{seconds % 60:02d}s' if seconds >= 60 else f'{seconds}s'


def shell_line(command: Sequence[str], root: Path) -> str:
    """The command as a user would type it from the repository root."""
    parts = []
    for part in command:
        part = str(part)
        if part == sys.executable:
            part = 'python'
        else:
            try:
                part = str(Path(part).relative_to(root)) if os.path.isabs(part) else part
            except ValueError:
                pass
        parts.append(shlex.quote(part))
    return ' '.join(parts)


def wait_with_usage(process: subprocess.Popen):
    """(exit code, CPU seconds of the process and its children): on a shared
    machine the CPU time says what a step costs, the wall time also what the
    neighbours did."""
    if not hasattr(os, 'wait4'):
        return process.wait(), None
    try:
        _, status, usage = os.wait4(process.pid, 0)
    except ChildProcessError:  # already reaped by stop()
        return process.wait(), None
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_utime + usage.ru_stime


class StepRunner:
    """Runs steps in dependency order, skipping the ones already done."""

    def __init__(self,
                 work_dir,
                 root,
                 env: Optional[dict] = None,
                 jobs: int = 2,
                 force: bool = False,
                 progress: Optional[bool] = None,
                 stream=None):
        self.work_dir = Path(work_dir)
        self.root = Path(root)
        self.env = dict(env or os.environ)
        self.jobs = max(1, jobs)
        self.force = force
        self.stream = stream or sys.stdout
        self.progress = self.stream.isatty() if progress is None else progress
        self.marker_dir = self.work_dir / '.steps'
        self.log_dir = self.work_dir / 'logs'
        self.results: Dict[str, dict] = {}
        self._lock = threading.Lock()
        self._processes: Dict[str, subprocess.Popen] = {}
        self._slots: List[Optional[str]] = [None] * self.jobs

    # ----------------------------------------------------------------- markers
    def _marker(self, step: Step) -> Path:
        return self.marker_dir / f'{step.name}.json'

    def signature(self, step: Step) -> dict:
        return dict(
            command=[str(c) for c in step.command] if step.command else None,
            settings=step.settings,
            deps={d: self.results[d]['run_id']
                  for d in step.deps})

    def _done_before(self, step: Step) -> Optional[dict]:
        if self.force or not self._marker(step).is_file():
            return None
        try:
            marker = json.loads(self._marker(step).read_text())
        except (OSError, ValueError):
            return None
        if marker.get('signature') != json.loads(json.dumps(self.signature(step))):
            return None
        if not all(Path(p).exists() for p in step.outputs):
            return None
        return marker

    # ----------------------------------------------------------------- output
    def say(self, text: str) -> None:
        with self._lock:
            if self.progress:
                from tqdm import tqdm
                tqdm.write(text, file=self.stream)
            else:
                print(text, file=self.stream, flush=True)

    # ----------------------------------------------------------------- running
    def _run_command(self, step: Step, threads: int) -> Optional[float]:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f'{step.name}.log'
        env = dict(
            self.env,
            OMP_NUM_THREADS=str(threads),
            MKL_NUM_THREADS=str(threads),
            PYTHONUNBUFFERED='1')
        bar = None
        if self.progress:
            from tqdm import tqdm
            with self._lock:
                slot = self._slots.index(None)
                self._slots[slot] = step.name
            bar = tqdm(
                total=None,
                desc=f'{step.name:>22}',
                position=slot,
                leave=False,
                unit='it',
                file=self.stream,
                dynamic_ncols=True)
        try:
            with open(log_path, 'w') as log:
                log.write('$ ' + shell_line(step.command, self.root) + '\n')
                log.flush()
                process = subprocess.Popen([str(c) for c in step.command],
                                           cwd=self.root,
                                           env=env,
                                           stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT,
                                           text=True,
                                           errors='replace',
                                           bufsize=1)
                with self._lock:
                    self._processes[step.name] = process
                for line in process.stdout:
                    log.write(line)
                    if bar is not None:
                        self._update_bar(bar, step, line)
                code, cpu = wait_with_usage(process)
        finally:
            with self._lock:
                self._processes.pop(step.name, None)
                if bar is not None:
                    self._slots[self._slots.index(step.name)] = None
            if bar is not None:
                bar.close()
        if code != 0:
            tail = ''.join(log_path.read_text(errors='replace').splitlines(True)[-25:])
            raise StepFailed(f'step {step.name!r} failed (exit code {code}); the end of '
                             f'{log_path}:\n{tail}')
        return cpu

    @staticmethod
    def _update_bar(bar, step: Step, line: str) -> None:
        if RUN_DONE.match(line):
            bar.runs_done = getattr(bar, 'runs_done', 0) + 1
            return
        match = TRAIN_ITER.search(line)
        if match and step.epochs:
            epoch, it, per_epoch = (int(g) for g in match.groups())
            per_run = step.epochs * per_epoch
            bar.total = step.runs * per_run
            bar.n = getattr(bar, 'runs_done', 0) * per_run + (epoch - 1) * per_epoch + it
            bar.refresh()
            return
        match = VAL_TOP1.search(line)
        if match:
            bar.set_postfix_str(f'val top-1 {float(match.group(1)):.1f}')
            return
        match = TQDM.search(line.rsplit('\r', 1)[-1])
        if match and not step.epochs:
            bar.total, bar.n = int(match.group(2)), int(match.group(1))
            bar.refresh()

    def _execute(self, step: Step, threads: int) -> dict:
        for path in step.clean:
            path = Path(path)
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        started = time.time()
        if step.command:
            cpu = self._run_command(step, threads)
        else:
            cpu_before = time.process_time()
            step.func()
            cpu = time.process_time() - cpu_before
        finished = time.time()
        missing = [str(p) for p in step.outputs if not Path(p).exists()]
        if missing:
            raise StepFailed(f'step {step.name!r} finished but did not write {missing}')
        marker = dict(
            signature=self.signature(step),
            outputs=[str(p) for p in step.outputs],
            started=started,
            finished=finished,
            seconds=finished - started,
            cpu_seconds=cpu,
            run_id=f'{finished:.6f}',
            threads=threads,
            command=shell_line(step.command, self.root) if step.command else None)
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        tmp = self._marker(step).with_suffix('.tmp')
        tmp.write_text(json.dumps(marker, indent=1))
        os.replace(tmp, self._marker(step))
        return marker

    def run(self, steps: List[Step], threads: int = 1) -> Dict[str, dict]:
        """Runs (or skips) every step; returns ``{name: marker + skipped}``."""
        pending = {s.name: s for s in steps}
        order = [s.name for s in steps]
        total = len(steps)
        running = {}
        with ThreadPoolExecutor(max_workers=self.jobs) as pool:
            try:
                while pending or running:
                    for name in [n for n in order if n in pending]:
                        step = pending[name]
                        if any(d not in self.results for d in step.deps):
                            continue
                        number = order.index(name) + 1
                        marker = self._done_before(step)
                        if marker is not None:
                            del pending[name]
                            self.results[name] = dict(marker, skipped=True)
                            took = format_seconds(marker['seconds'])
                            self.say(f'[{number}/{total}] {name:<22} skipped: done before '
                                     f'({took}); --force re-runs it')
                            continue
                        if len(running) >= self.jobs:
                            break
                        del pending[name]
                        self.say(f'[{number}/{total}] {name:<22} {step.title} ...')
                        running[pool.submit(self._execute, step, threads)] = (name, number)
                    if not running:
                        if pending:  # nothing runnable: a dependency is missing
                            raise StepFailed(f'unresolvable steps: {sorted(pending)}')
                        break
                    done, _ = wait(list(running), return_when=FIRST_COMPLETED)
                    for future in done:
                        name, number = running.pop(future)
                        marker = future.result()  # re-raises StepFailed
                        self.results[name] = dict(marker, skipped=False)
                        self.say(f'[{number}/{total}] {name:<22} done in '
                                 f'{format_seconds(marker["seconds"])}')
            except BaseException:
                self.stop()
                raise
        return self.results

    def stop(self) -> None:
        """Terminates the subprocesses this runner started (after a failure or ^C)."""
        with self._lock:
            processes = list(self._processes.values())
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
