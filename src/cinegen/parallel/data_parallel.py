"""Data-parallel training wrappers, selectable per run: DDP (replicated weights, all-reduced gradients) or FSDP2
(`fully_shard`: each rank holds 1/P of every weight, gradient and optimizer moment; per-block all-gathers).

Both run under torchrun with gloo on CPU and nccl on GPU. FSDP2 shards each DiT block and then the root, the
layout PyTorch recommends, so only one block's full weights exist at a time.
"""

from __future__ import annotations

import torch
from torch.distributed.tensor import DTensor
from torch.nn.parallel import DistributedDataParallel as DDP

from cinegen import defaults

STRATEGIES = defaults.PARALLEL_STRATEGIES


def wrap(model: torch.nn.Module, strategy: str, world: int) -> torch.nn.Module:
    """The module to call in the training step. FSDP2 shards `model` in place (its parameters become DTensors)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown parallel strategy {strategy!r}; choose one of {STRATEGIES}")
    if world == 1:
        return model
    if strategy == "ddp":
        return DDP(model)
    from torch.distributed.fsdp import fully_shard
    for block in getattr(model, "blocks", []):
        fully_shard(block)
    fully_shard(model)
    return model


def is_sharded(model: torch.nn.Module) -> bool:
    return any(isinstance(p, DTensor) for p in model.parameters())


def full(t: torch.Tensor) -> torch.Tensor:
    """The whole tensor behind a shard (a collective: every rank must call it), or t itself."""
    return t.full_tensor() if isinstance(t, DTensor) else t


def full_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Unsharded weights, identical on every rank (collective under FSDP)."""
    return {k: full(v) for k, v in model.state_dict().items()}
