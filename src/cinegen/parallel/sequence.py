"""Sequence (context) parallelism for long token sequences: DeepSpeed-Ulysses all-to-all attention.

Each of P ranks holds L/P tokens of every sequence. Everything in a DiT block except self-attention is per
token, so only attention needs the others' tokens: an all-to-all turns (B, nh, L/P, hd) sequence shards into
(B, nh/P, L, hd) head shards, each rank runs ordinary attention over the whole sequence for its heads, and a
second all-to-all turns the result back (Jacobs et al. 2023, "DeepSpeed Ulysses"). When the heads do not divide
by P, the fallback gathers every rank's keys and values instead (more traffic, same result).

The collectives are differentiable, so the same code trains. Gradient convention: every rank computes the loss on
the whole (gathered) output, so each rank's gradients are P x its own tokens' share; averaged over the group
(what DDP's all-reduce does) they are exactly the single-process gradients (tests/test_parallel.py checks this).

    group = enable_sequence_parallel(dit)          # every rank, after init_process_group
    velocity = dit(latents, t, text, mask)         # same inputs and result on every rank, 1/P of the tokens each
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.nn.functional import all_to_all

from cinegen.models.layers import attention


def _world(group) -> tuple[int, int]:
    return dist.get_rank(group), dist.get_world_size(group)


class _GatherSequence(torch.autograd.Function):
    """all_gather along `dim`; backward sums the gradient over ranks and keeps this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, group, dim: int) -> torch.Tensor:
        rank, world = _world(group)
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous(), group=group)
        ctx.group, ctx.dim, ctx.rank, ctx.n = group, dim, rank, x.shape[dim]
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        grad = grad.contiguous()
        dist.all_reduce(grad, group=ctx.group)
        return grad.narrow(ctx.dim, ctx.rank * ctx.n, ctx.n), None, None


def gather_sequence(x: torch.Tensor, group, dim: int) -> torch.Tensor:
    return _GatherSequence.apply(x, group, dim)


def _all_to_all(chunks: list[torch.Tensor], group) -> list[torch.Tensor]:
    outs = [torch.empty_like(c) for c in chunks]
    return list(all_to_all(outs, [c.contiguous() for c in chunks], group=group))


def ulysses_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, group) -> torch.Tensor:
    """q, k, v: (B, nh, L/P, hd) local token shards -> attention output for the local tokens, (B, nh, L/P, hd)."""
    _, world = _world(group)
    heads = q.shape[1]
    if heads % world:
        return _gathered_kv_attention(q, k, v, group)

    def seq_to_heads(x):                         # (B, nh, L/P, hd) -> (B, nh/P, L, hd)
        return torch.cat(_all_to_all(list(x.chunk(world, dim=1)), group), dim=2)
    out = attention(seq_to_heads(q), seq_to_heads(k), seq_to_heads(v))                          # (B, nh/P, L, hd)
    return torch.cat(_all_to_all(list(out.chunk(world, dim=2)), group), dim=1)                  # (B, nh, L/P, hd)


def _gathered_kv_attention(q, k, v, group) -> torch.Tensor:
    """Fallback: local queries against all ranks' keys and values. (B, nh, L/P, hd) -> (B, nh, L/P, hd)."""
    k_all, v_all = gather_sequence(k, group, 2), gather_sequence(v, group, 2)                 # (B, nh, L, hd)
    return attention(q, k_all, v_all)


def shard_tokens(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, group):
    """This rank's slice of the token sequence and of its RoPE tables. x (B, L, D), cos/sin (L, hd/2)."""
    rank, world = _world(group)
    length = x.shape[1]
    if length % world:
        raise ValueError(f"sequence parallelism over {world} ranks needs a token count divisible by {world}, got {length}")
    n = length // world
    part = slice(rank * n, (rank + 1) * n)
    return x[:, part], cos[part], sin[part]                                                     # (B, L/P, D), (L/P, hd/2)


def gather_tokens(x: torch.Tensor, group) -> torch.Tensor:
    """(B, L/P, D) on each rank -> (B, L, D) everywhere, differentiably."""
    return gather_sequence(x, group, 1)


def enable_sequence_parallel(model: torch.nn.Module, group=None):
    """Switches a VideoDiT to sequence-parallel attention over `group` (default: the whole world)."""
    group = group or dist.group.WORLD
    model.sp_group = group
    for module in model.modules():
        if hasattr(module, "sp_group"):
            module.sp_group = group
    return group
