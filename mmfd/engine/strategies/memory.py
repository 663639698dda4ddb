"""Back-of-envelope memory of FD training per GPU: DDP against FSDP2.

Counts what mixed-precision AdamW training keeps per parameter, without activations
(those depend on batch, resolution and activation checkpointing; see the README):

* trainable student + heads: fp32 master weight 4 B, fp32 gradient 4 B, AdamW's two
  fp32 moments 8 B = 16 B per parameter; DDP keeps all of it on every GPU, FSDP2
  1/N of it, plus the bf16 copy of the largest gathered block (2 B per parameter
  of that block) while it runs.
* frozen teacher: its weights only (4 B fp32, no gradient, no optimizer state), on
  every GPU, or 1/N of them with ``shard_teacher=True``.
"""
from contextlib import contextmanager
from typing import Dict

import torch
from torch import nn

BYTES_PER_TRAINABLE = 4 + 4 + 8  # fp32 weight, gradient, AdamW exp_avg + exp_avg_sq
BYTES_PER_FROZEN = 4


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def per_gpu_bytes(trainable: int,
                  frozen: int,
                  gpus: int,
                  largest_block: int = 0,
                  shard_teacher: bool = False) -> Dict[str, float]:
    """Bytes per GPU for DDP and for FSDP2 over ``gpus`` ranks."""
    ddp = trainable * BYTES_PER_TRAINABLE + frozen * BYTES_PER_FROZEN
    teacher = frozen * BYTES_PER_FROZEN / (gpus if shard_teacher else 1)
    fsdp2 = trainable * BYTES_PER_TRAINABLE / gpus + largest_block * 2 + teacher
    return dict(ddp=ddp, fsdp2=fsdp2)


@contextmanager
def _parameters_on_meta():
    """Every parameter registered inside moves to the meta device as it is created:
    one tensor at a time exists in memory (constructors that compute on tensors,
    e.g. mmpretrain's drop-path schedule, still run on the CPU)."""
    register = nn.Module.register_parameter

    def to_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.to('meta'), requires_grad=param.requires_grad)
        register(module, name, param)

    nn.Module.register_parameter = to_meta
    try:
        yield
    finally:
        nn.Module.register_parameter = register


def build_on_meta(cfg: dict) -> nn.Module:
    """A backbone / head config built without keeping its weights in memory: on the
    meta device (nothing allocated), or where the constructor computes with tensors
    (``.item()`` has no meta value), one parameter at a time moved there."""
    from mmpretrain.registry import MODELS
    try:
        with torch.device('meta'):
            return MODELS.build(cfg)
    except RuntimeError:
        with _parameters_on_meta():
            return MODELS.build(cfg)
