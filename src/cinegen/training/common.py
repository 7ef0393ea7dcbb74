"""Pieces every training loop shares: distributed setup, seeding, LR schedule, EMA, checkpointing (device,
autocast and the progress bar are cinegen.runtime's)."""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup_distributed() -> DistInfo:
    """Initialises torch.distributed when launched by torchrun (gloo on CPU, nccl on GPU); no-op otherwise."""
    if "RANK" not in os.environ or int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return DistInfo()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if torch.cuda.is_available():
        torch.cuda.set_device(info.local_rank)
    return info


def teardown_distributed() -> None:
    """Call after the DDP/FSDP wrapper is freed: gloo torn down under a live reducer, or while a peer still talks
    to it, can abort the process at exit (SIGABRT, "terminate called without an active exception")."""
    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def device_for(info: DistInfo) -> torch.device:
    return torch.device(f"cuda:{info.local_rank}") if torch.cuda.is_available() else torch.device("cpu")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)


def lr_at(step: int, base_lr: float, warmup: int, total: int) -> float:
    """Linear warmup, then cosine decay to 10% of the base rate."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def time_used(started: float, limit: float | None, device) -> float:
    """The fraction of a wall-clock `limit` (seconds; None = no limit: 0) spent since `started`. Under DDP the
    largest over the ranks, so that every rank stops at the same step and reads the same rate (rank clocks differ)."""
    if limit is None:
        return 0.0
    used = torch.tensor([(time.monotonic() - started) / limit], device=device)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(used, op=torch.distributed.ReduceOp.MAX)
    return float(used.item())


def out_of_time(used: float, limit: float | None, step: int, total: int) -> bool:
    """Whether a run that has spent `used` of its time limit must stop before `step`; says so in the log."""
    if used < 1.0:
        return False
    log.info("time limit of %.0f s reached at step %d of %d: finalising", limit, step, total)
    return True


def schedule_step(step: int, first: int, total: int, used: float) -> int:
    """The step that the learning-rate schedule reads: under a time limit, whichever of steps or time is further
    along. So a run stopped by its limit (a lease that planned its step count from too fast a rate) still ends on a
    decayed rate rather than at its peak. first: the step this process started from (a resumed run)."""
    return max(step, first + int(used * (total - first)))


def make_ema(model: torch.nn.Module) -> torch.nn.Module:
    ema = copy.deepcopy(model).eval()
    ema.requires_grad_(False)
    return ema


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    """EMA of the full weights; under FSDP each shard is gathered first (the EMA copy stays whole on every rank)."""
    from cinegen.parallel.data_parallel import full
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(full(p.detach()), 1 - decay)


@torch.no_grad()
def broadcast_module(module: torch.nn.Module, info: DistInfo) -> None:
    """Gives every rank rank 0's weights and buffers, in place: for a helper network (a frozen loss model) that only
    rank 0 trained, so that all ranks compute the same loss. A no-op in a single process."""
    if info.world > 1:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def build_training_state(model: torch.nn.Module, train, out, device, info: DistInfo):
    """(module to call, model, EMA copy, optimizer, step) with weights resumed from out/last.safetensors.

    The optimizer is built after wrapping, because FSDP2 replaces the parameters with sharded ones. Optimizer
    moments are checkpointed whole, so an FSDP run resumes weights and EMA but restarts the moments (logged).
    """
    from cinegen.parallel.data_parallel import is_sharded, wrap
    from cinegen.training.checkpoint import resume_weights
    model = model.to(device)
    ema = make_ema(model)
    step, opt_state = resume_weights(out / "last.safetensors", model, ema)
    wrapped = wrap(model, train.parallel, info.world)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.99))
    if opt_state is not None and not is_sharded(model):
        opt.load_state_dict(opt_state)
    elif opt_state is not None and info.main:
        log.warning("FSDP run: optimizer moments restart from zero on resume (weights and EMA are restored)")
    if step and info.main:
        log.info("resumed from %s at step %d", out / "last.safetensors", step)
    return wrapped, model, ema, opt, step


def save_training_checkpoint(path, kind: str, cfg, model, ema, opt, step: int, info: DistInfo, extra=None) -> None:
    """Every rank calls this (FSDP gathers the weights collectively); rank 0 writes."""
    from cinegen.parallel.data_parallel import full_state_dict, is_sharded
    from cinegen.training.checkpoint import save_checkpoint
    sharded = is_sharded(model)
    state = full_state_dict(model) if sharded else None
    if info.main:
        save_checkpoint(path, kind, cfg, model, ema, None if sharded else opt, step, extra=extra, model_state=state)
