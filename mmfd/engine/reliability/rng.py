"""Random-number-generator states: capture/restore for exact resume, and per-sample
seeding so data augmentation does not depend on which process loads a sample.

mmengine seeds python, numpy and torch once at start-up and never saves their
states, so a resumed run draws different crops, flips and drop-path masks. The
states are stored as plain tensors/ints: the checkpoint stays loadable with
``torch.load(weights_only=True)``.
"""
import random
from contextlib import contextmanager
from typing import Optional

import numpy as np
import torch


def get_rng_state(cuda: bool = True) -> dict:
    """python, numpy (legacy global) and torch CPU (+ current CUDA device) states."""
    kind, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state = dict(
        python=random.getstate(),
        numpy=dict(
            kind=kind,
            keys=torch.from_numpy(keys.astype(np.int64)),
            pos=int(pos),
            has_gauss=int(has_gauss),
            cached_gaussian=float(cached)),
        torch=torch.get_rng_state(),
    )
    if cuda and torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state['python']
    random.setstate((version, tuple(internal), gauss))
    np_state = state['numpy']
    np.random.set_state((np_state['kind'], np_state['keys'].numpy().astype(np.uint32),
                         np_state['pos'], np_state['has_gauss'], np_state['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


_MASK64 = 0xFFFFFFFFFFFFFFFF


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def sample_seed(*parts: int) -> int:
    """A well-mixed 32-bit seed from integers (e.g. run seed, rank, epoch, position);
    ~1.5 us, cheap enough to compute for every index of an ImageNet epoch."""
    h = 0
    for part in parts:
        h = _splitmix64(h ^ (int(part) & _MASK64))
    return h & 0xFFFFFFFF


def cpu_rng_states() -> tuple:
    """The python, numpy (global) and torch-CPU random states, as their own
    libraries return them (cheap; for putting them back around one sample)."""
    return random.getstate(), np.random.get_state(), torch.get_rng_state()


def set_cpu_rng_states(states: tuple) -> None:
    random.setstate(states[0])
    np.random.set_state(states[1])
    torch.set_rng_state(states[2])


def seed_cpu_rngs(seed: int) -> None:
    """Seed python, numpy (global) and torch-CPU from one 32-bit seed."""
    random.seed(seed)
    np.random.seed(seed)
    torch.random.default_generator.manual_seed(seed)


@contextmanager
def seeded(seed: Optional[int]):
    """Run a block with python/numpy/torch-CPU seeded from ``seed``, then put the
    previous states back, so the caller's random streams are left untouched.
    CUDA generators are not touched (data pipelines run on the CPU)."""
    if seed is None:
        yield
        return
    saved = cpu_rng_states()
    seed_cpu_rngs(seed)
    try:
        yield
    finally:
        set_cpu_rng_states(saved)
