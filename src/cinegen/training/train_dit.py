"""train_dit(cfg): flow-matching training of the video DiT on cached latents, as a list of named steps.

    cinegen train --vae runs/vae/vae.safetensors --out runs/dit --steps 4000       # one process
    torchrun --nproc_per_node 2 -m cinegen.cli train ...                           # DDP (gloo on CPU)

Each batch comes from one bucket (one token grid): frames, height and width vary between batches, never
inside one. Short clips and single images are cut from the cached clips for free, because the causal VAE's
first latent frames depend only on the first frames.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from cinegen.config import DiTConfig, FlowConfig, TrainConfig
from cinegen.data.latent_cache import LatentCache
from cinegen.diffusion.conditioning import make_cond, random_masks
from cinegen.diffusion.flow import flow_loss, sample_t
from cinegen.models.dit import VideoDiT
from cinegen.runtime import autocast, precision_label, progress_bar
from cinegen.training import checkpoint as ckpt_io
from cinegen.training.common import (
    build_training_state,
    device_for,
    lr_at,
    out_of_time,
    save_training_checkpoint,
    schedule_step,
    seed_everything,
    setup_distributed,
    teardown_distributed,
    time_used,
    update_ema,
)

log = logging.getLogger(__name__)
# (latent frames to keep, probability): full clips mostly, some short clips, some single images (t2i)
TEMPORAL_CROPS = ((None, 0.75), (3, 0.15), (1, 0.10))


class TimeBinnedLoss:
    """Running mean of the loss in 10 bins of t (minRF's diagnostic: where in the schedule the model is weak)."""

    def __init__(self):
        self.sum, self.count = np.zeros(10), np.zeros(10)

    def add(self, t: torch.Tensor, loss: torch.Tensor) -> None:
        bins = (t.detach().cpu().numpy() * 10).astype(int).clip(0, 9)
        np.add.at(self.sum, bins, loss.detach().cpu().numpy())
        np.add.at(self.count, bins, 1)

    def report(self) -> str:
        means = self.sum / np.maximum(self.count, 1)
        self.sum[:], self.count[:] = 0, 0
        return " ".join(f"{m:.3f}" for m in means)


class Batch(NamedTuple):
    x0: torch.Tensor                      # (B, C, T, H, W) latents
    caps: torch.Tensor                    # (B,) caption indices, 0 = the empty prompt
    objects: torch.Tensor | None          # (B, 1, T, H, W) object maps, or None for a cache without them


def sample_batch(cache: LatentCache, rng: np.random.Generator, batch_size: int, text_dropout: float) -> Batch:
    """One bucket's batch, temporally cropped to whole clips, short clips or single images."""
    keys = list(cache.buckets)
    sizes = np.array([len(cache.buckets[k].latents) for k in keys], dtype=float)
    bucket = cache.buckets[keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]]
    keep = TEMPORAL_CROPS[int(rng.choice(len(TEMPORAL_CROPS), p=[p for _, p in TEMPORAL_CROPS]))][0]
    idx = rng.integers(len(bucket.latents), size=batch_size)
    x0 = bucket.latents[idx][:, :, :keep]                                                    # (B, C, T, H, W)
    caps = bucket.captions[idx, rng.integers(bucket.captions.shape[1], size=batch_size)]    # (B,)
    caps[torch.from_numpy(rng.random(batch_size) < text_dropout)] = 0                       # 0 = empty prompt
    objects = None if bucket.objects is None else bucket.objects[idx][:, :, :keep]          # (B, 1, T, H, W)
    return Batch(x0, caps, objects)


def training_loss(model, cache: LatentCache, x0, caps, flow: FlowConfig, cond_prob: float, gen,
                  weight: torch.Tensor | None = None) -> tuple:
    """Flow-matching loss on a batch with random conditioning masks. Returns (mean loss, t, per-sample loss).
    weight: (B, 1, T, H, W) per-cell loss weights (object cells weighted up), or None for uniform."""
    b, _, t_len, h, w = x0.shape
    text, text_mask = cache.text(caps)
    pt, ph, pw = _patch(model)
    t = sample_t(b, (t_len // pt) * (h // ph) * (w // pw), flow, generator=gen)
    mask = random_masks(b, t_len, (h, w), cond_prob if _conditioning(model) else 0.0, generator=gen)
    cond = make_cond(x0, mask) if _conditioning(model) else None
    noise = torch.randn(x0.shape, generator=gen)
    dev = next(model.parameters()).device
    loss_mask = (1 - mask) if weight is None else (1 - mask) * weight                       # (B, 1, T, H, W)

    def predict(xt, tt):
        return model(xt, tt, text.to(dev), text_mask.to(dev), None if cond is None else cond.to(dev))

    per_sample = flow_loss(predict, x0.to(dev), t.to(dev), noise.to(dev), loss_mask=loss_mask.to(dev))
    return per_sample.mean(), t, per_sample


def _patch(model):
    return ckpt_io.unwrap(model).cfg.patch


def _conditioning(model) -> bool:
    return ckpt_io.unwrap(model).cfg.conditioning


def train_dit(cfg: DiTConfig, flow: FlowConfig, train: TrainConfig, cache: LatentCache, out: Path,
              extra: dict | None = None, init: VideoDiT | None = None, time_limit: float | None = None) -> Path:
    """Trains (or resumes) the DiT; out/last.safetensors every ckpt_every steps, out/dit.safetensors at the end.

    extra: JSON-able facts stored with the weights (holdout list, training command) for the model card and eval.
    init: a trained DiT to start from (same width, equal or smaller depth: check it with check_growable before
    building the latent cache; see grow_from); a resumed run's own checkpoint wins over it.
    time_limit: seconds of training after which the run checkpoints and finalises early (a lent GPU's lease).
    """
    extra = {**(extra or {}), "flow": flow.__dict__, "train": train.__dict__}
    if train.object_weight and any(b.objects is None for b in cache.buckets.values()):
        raise ValueError("object_weight needs a latent cache with object maps (data.latent_cache.add_object_maps)")
    info = setup_distributed()
    device = device_for(info)
    seed_everything(train.seed + info.rank)
    out = Path(out)
    model = VideoDiT(cfg) if init is None else grow_from(VideoDiT(cfg), init)
    if init is not None and info.main:
        log.info("initialised from a trained DiT (depth %d -> %d)", init.cfg.depth, cfg.depth)
    ddp, model, ema, opt, step = build_training_state(model, train, out, device, info)
    rng = np.random.default_rng(train.seed * 7919 + 1000 * info.rank + step)
    gen = torch.Generator().manual_seed(train.seed * 31 + 1000 * info.rank + step)
    if info.main:
        log.info("DiT %.2fM params; %d caption(s); buckets %s; batch %d x %d accum x %d ranks; %s",
                 sum(p.numel() for p in model.parameters()) / 1e6, len(cache.captions),
                 {k: len(v.latents) for k, v in cache.buckets.items()}, train.batch_size, train.grad_accum, info.world,
                 precision_label(device, train.precision))
    binned = TimeBinnedLoss()
    with progress_bar(disable=not info.main) as bar:
        task = bar.add_task("train", total=train.steps, completed=step, status="")
        started, first = time.monotonic(), step
        while step < train.steps:
            used = time_used(started, time_limit, device)
            if out_of_time(used, time_limit, step, train.steps):
                save_training_checkpoint(out / "last.safetensors", "dit", cfg, model, ema, opt, step, info, extra)
                break
            lr_step = schedule_step(step, first, train.steps, used)
            loss = _train_step(ddp, model, ema, opt, cache, train, flow, rng, gen, lr_step, binned, device)
            step += 1
            bar.update(task, completed=step, status=f"loss {loss:.4f}")
            if info.main and step % train.log_every == 0:
                log.info("step %d loss %.4f | loss by t-bin %s", step, loss, binned.report())
            if step % train.ckpt_every == 0 or step == train.steps:
                save_training_checkpoint(out / "last.safetensors", "dit", cfg, model, ema, opt, step, info, extra)
    if info.main and step > first:          # the rate a lease plans its step count with (tools/device_train.py)
        seconds = time.monotonic() - started
        log.info("%d steps in %.1f s: %.1f ms per step", step - first, seconds, 1e3 * seconds / (step - first))
    final = out / "dit.safetensors"
    if info.main:
        ckpt_io.save_checkpoint(final, "dit", cfg, ema, step=step, extra=extra)
    del ddp, opt
    teardown_distributed()
    return final


def _train_step(ddp, model, ema, opt, cache, train: TrainConfig, flow, rng, gen, lr_step, binned, device) -> float:
    for g in opt.param_groups:
        g["lr"] = lr_at(lr_step, train.lr, train.warmup, train.steps)
    opt.zero_grad(set_to_none=True)
    total = 0.0
    for _ in range(train.grad_accum):
        batch = sample_batch(cache, rng, train.batch_size, train.text_dropout)
        weight = 1 + train.object_weight * batch.objects if train.object_weight else None
        with autocast(device, train.precision):
            loss, t, per_sample = training_loss(ddp, cache, batch.x0, batch.caps, flow, train.cond_prob, gen, weight)
        # explicit scaling so accumulated gradients equal one big batch's
        (loss / train.grad_accum).backward()
        binned.add(t, per_sample)
        total += loss.item() / train.grad_accum
    torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
    opt.step()
    update_ema(ema, model, train.ema_decay)
    return total


def check_growable(new: DiTConfig, old: DiTConfig) -> None:
    """Raises ValueError unless a trained DiT with config `old` can be grown into `new` (grow_from): the same
    DiT, as deep or deeper."""
    same = ("width", "heads", "latent_channels", "text_dim", "conditioning", "mlp_ratio", "rope_theta", "patch")
    if any(getattr(new, f) != getattr(old, f) for f in same):
        raise ValueError(f"--init DiT {old} differs from the run's {new} in more than depth")
    if new.depth < old.depth:
        raise ValueError(f"--init DiT has depth {old.depth}, deeper than the run's {new.depth}")


def grow_from(model: VideoDiT, trained: VideoDiT) -> VideoDiT:
    """Copies a trained DiT into a deeper one of the same width, block i to block i * depth // old_depth.

    The blocks in between keep their adaLN-Zero initialisation (zero gates, zero cross-attention output), so each
    is exactly the identity and the grown model computes what the trained one did at step 0; training then uses the
    extra depth. (Progressive stacking, Gong et al. 2019, copies trained blocks instead; identities keep step 0 exact.)
    """
    new, old = model.cfg, trained.cfg
    check_growable(new, old)
    state = {k: v for k, v in trained.state_dict().items() if not k.startswith("blocks.")}
    for i, block in enumerate(trained.blocks):
        j = i * new.depth // old.depth
        state.update({f"blocks.{j}.{k}": v for k, v in block.state_dict().items()})
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("blocks.") for k in missing), (missing, unexpected)
    return model
