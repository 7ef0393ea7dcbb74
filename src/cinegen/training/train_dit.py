"""train_dit(cfg): flow-matching training of the video DiT on cached latents, as a list of named steps.

    cinegen train --config configs/cinegen-default/02-dit-low.toml               # one process
    torchrun --nproc_per_node 2 -m cinegen.cli train --config ...                # DDP (gloo on CPU)

Each batch comes from one bucket (one token grid): frames, height and width vary between batches, never
inside one. Short clips and single images are cut from the cached clips for free, because the causal VAE's
first latent frames depend only on the first frames.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cinegen.config import DiTConfig, FlowConfig, LoraConfig, TrainConfig
from cinegen.data.latent_cache import LatentCache
from cinegen.diffusion.conditioning import make_cond, random_masks
from cinegen.diffusion.flow import interpolate, masked_mse, sample_t, velocity_target
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


@dataclass
class Batch:
    x0: torch.Tensor                  # (B, C, T, H, W) clean latents
    text: torch.Tensor                # (B, S, Dt) prompt embeddings (the empty prompt where dropped for CFG)
    text_mask: torch.Tensor           # (B, S) bool
    given: torch.Tensor               # (B, 1, T, H, W) 1 on latent frames given clean as conditioning, else 0
    extras: dict = field(default_factory=dict)   # the cache's extras, cropped like x0 (toy world: "objects")

    @property
    def loss_mask(self) -> torch.Tensor:
        """(B, 1, T, H, W): the loss counts where the model must predict, not on the frames it was given."""
        return 1 - self.given


def sample_batch(cache: LatentCache, rng: np.random.Generator, train: TrainConfig, conditioning: bool = True,
                 gen: torch.Generator | None = None) -> Batch:
    """One bucket's batch, temporally cropped to whole clips, short clips or single images, its captions dropped
    for CFG at train.text_dropout and a share train.cond_prob of it given random conditioning frames."""
    keys = list(cache.buckets)
    sizes = np.array([len(cache.buckets[k].latents) for k in keys], dtype=float)
    bucket = cache.buckets[keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]]
    keep = TEMPORAL_CROPS[int(rng.choice(len(TEMPORAL_CROPS), p=[p for _, p in TEMPORAL_CROPS]))][0]
    b = train.batch_size
    idx = rng.integers(len(bucket.latents), size=b)
    x0 = bucket.latents[idx][:, :, :keep]                                                    # (B, C, T, H, W)
    caps = bucket.captions[idx, rng.integers(bucket.captions.shape[1], size=b)]             # (B,)
    caps[torch.from_numpy(rng.random(b) < train.text_dropout)] = 0                          # 0 = empty prompt
    text, text_mask = cache.text(caps)
    given = random_masks(b, x0.shape[2], x0.shape[3:], train.cond_prob if conditioning else 0.0, generator=gen)
    extras = {k: v[idx][:, :, :keep] for k, v in bucket.extras.items()}                     # (B, c, T, H, W)
    return Batch(x0, text, text_mask, given, extras)


def training_loss(model, batch: Batch, flow: FlowConfig, terms: tuple = (), gen: torch.Generator | None = None):
    """Flow-matching loss on a batch, plus each plug-in term's (data.sources.LossTerm). Returns (mean loss, t,
    per-sample flow loss (B,), for the loss-by-t log)."""
    b, _, t_len, h, w = batch.x0.shape
    pt, ph, pw = _patch(model)
    dev = next(model.parameters()).device
    t = sample_t(b, (t_len // pt) * (h // ph) * (w // pw), flow, generator=gen).to(dev)
    x0, noise = batch.x0.to(dev), torch.randn(batch.x0.shape, generator=gen).to(dev)
    cond = make_cond(x0, batch.given.to(dev)) if _conditioning(model) else None
    v = model(interpolate(x0, noise, t), t, batch.text.to(dev), batch.text_mask.to(dev), cond)
    target = velocity_target(x0, noise)
    per_sample = masked_mse(v, target, batch.loss_mask.to(dev))                              # (B,)
    loss = per_sample.mean()
    for term in terms:
        extra = term(batch, v, target, t)
        loss = loss if extra is None else loss + extra
    return loss, t, per_sample


def _patch(model):
    return ckpt_io.unwrap(model).cfg.patch


def _conditioning(model) -> bool:
    return ckpt_io.unwrap(model).cfg.conditioning


def train_dit(cfg: DiTConfig, flow: FlowConfig, train: TrainConfig, cache: LatentCache, out: Path,
              extra: dict | None = None, init: VideoDiT | None = None, terms: tuple = (),
              lora: LoraConfig | None = None, base_file: str = "") -> Path:
    """Trains (or resumes) the DiT; out/last.safetensors every ckpt_every steps, out/dit.safetensors at the end.

    extra: JSON-able facts stored with the weights (holdout list, the recipe) for the model card and eval.
    init: a trained DiT to start from (same width, equal or smaller depth: check it with check_growable before
    building the latent cache; see grow_from); a resumed run's own checkpoint wins over it.
    terms: plug-in loss terms (data.sources.LossTerm); the cache must hold the extras each needs.
    train.max_minutes: training time after which the run checkpoints and finalises early (a lent GPU's call).
    lora: train low-rank adapters on `init` (frozen) instead of the whole DiT; the run ends with out/lora.safetensors,
    which records init's weights hash (base_file: init's file, named in it) instead of out/dit.safetensors.
    """
    extra = {**(extra or {}), "flow": flow.__dict__, "train": train.__dict__}
    for term in terms:
        if cache.missing(term.needs):
            raise ValueError(f"loss term {term.name} needs the latent cache extras {cache.missing(term.needs)}, which "
                             "this cache lacks (a cache from before them): delete it and the run builds it again")
    info = setup_distributed()
    device = device_for(info)
    seed_everything(train.seed + info.rank)
    out = Path(out)
    model = VideoDiT(cfg) if init is None else grow_from(VideoDiT(cfg), init)
    if init is not None and info.main:
        log.info("initialised from a trained DiT (depth %d -> %d)", init.cfg.depth, cfg.depth)
    base_hash = _with_lora(model, init, lora) if lora is not None else ""
    ddp, model, ema, opt, step = build_training_state(model, train, out, device, info)
    rng = np.random.default_rng(train.seed * 7919 + 1000 * info.rank + step)
    gen = torch.Generator().manual_seed(train.seed * 31 + 1000 * info.rank + step)
    if info.main:
        log.info("DiT %.2fM params; %d caption(s); buckets %s; batch %d x %d accum x %d ranks; %s; terms %s",
                 sum(p.numel() for p in model.parameters()) / 1e6, len(cache.captions),
                 {k: len(v.latents) for k, v in cache.buckets.items()}, train.batch_size, train.grad_accum, info.world,
                 precision_label(device, train.precision), [t.name for t in terms] or "none")
    binned = TimeBinnedLoss()
    with progress_bar(disable=not info.main) as bar:
        task = bar.add_task("train", total=train.steps, completed=step, status="")
        started, first = time.monotonic(), step
        while step < train.steps:
            used = time_used(started, train.time_limit, device)
            if out_of_time(used, train.time_limit, step, train.steps):
                save_training_checkpoint(out / "last.safetensors", "dit", cfg, model, ema, opt, step, info, extra)
                break
            lr = lr_at(schedule_step(step, first, train.steps, used), train.lr, train.warmup, train.steps)
            loss = _train_step(ddp, model, ema, opt, cache, train, flow, terms, rng, gen, lr, binned)
            step += 1
            bar.update(task, completed=step, status=f"loss {loss:.4f}")
            if info.main and step % train.log_every == 0:
                log.info("step %d loss %.4f | loss by t-bin %s", step, loss, binned.report())
            if step % train.ckpt_every == 0 or step == train.steps:
                save_training_checkpoint(out / "last.safetensors", "dit", cfg, model, ema, opt, step, info, extra)
    if info.main and step > first:          # the rate a lease plans its step count with (tools/device_train.py)
        seconds = time.monotonic() - started
        log.info("%d steps in %.1f s: %.1f ms per step", step - first, seconds, 1e3 * seconds / (step - first))
    final = out / ("lora.safetensors" if lora is not None else "dit.safetensors")
    if info.main and lora is not None:
        from cinegen.training.lora import save_adapter
        save_adapter(final, ema, lora, base_hash, base_file, step, extra)
    elif info.main:
        ckpt_io.save_checkpoint(final, "dit", cfg, ema, step=step, extra=extra)
    del ddp, opt
    teardown_distributed()
    return final


def _with_lora(model: VideoDiT, init: VideoDiT | None, lora: LoraConfig) -> str:
    """Puts adapters on `model` (a copy of init) and returns init's weights hash, which the adapter records."""
    from cinegen.models.lora import weights_hash
    from cinegen.training.lora import add_lora
    if init is None or init.cfg != model.cfg:
        raise ValueError("a LoRA run trains adapters on a trained DiT as it is: set init = its file, and the run's "
                         "model to init's architecture")
    base = weights_hash(init)
    add_lora(model, lora)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    log.info("LoRA rank %d (alpha %g) on %s: %.3fM trainable parameters", lora.rank, lora.scale_alpha,
             list(lora.targets), trainable / 1e6)
    return base


def _train_step(ddp, model, ema, opt, cache, train: TrainConfig, flow, terms, rng, gen, lr: float, binned) -> float:
    for g in opt.param_groups:
        g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    total = 0.0
    device = next(model.parameters()).device
    for _ in range(train.grad_accum):
        batch = sample_batch(cache, rng, train, _conditioning(model), gen)
        with autocast(device, train.precision):
            loss, t, per_sample = training_loss(ddp, batch, flow, terms, gen)
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
        raise ValueError(f"init DiT {old} differs from the run's {new} in more than depth")
    if new.depth < old.depth:
        raise ValueError(f"init DiT has depth {old.depth}, deeper than the run's {new.depth}")


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
