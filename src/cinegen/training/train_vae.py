"""train_vae(cfg): the video autoencoder's training loop, as a list of named steps.

    cinegen train --config configs/cinegen-default/01-vae.toml           # one process
    torchrun --nproc_per_node 2 -m cinegen.cli train --config ...        # DDP (gloo on CPU, nccl on GPU)
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cinegen.config import TrainConfig, VAEConfig, VAELossConfig, to_dict
from cinegen.data.sources import Sample, TermContext, VideoSource
from cinegen.io.video import video_to_tensor
from cinegen.models.loading import load_vae
from cinegen.models.vae import ResBlock, VideoVAE
from cinegen.runtime import autocast, precision_label, progress_bar
from cinegen.training import checkpoint as ckpt_io
from cinegen.training.common import (
    DistInfo,
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
from cinegen.training.dit_latents import load_pairs, sample_pair_batch
from cinegen.training.metrics import clip_psnrs, psnr_of_mse

log = logging.getLogger(__name__)
FRAME_CHOICES = (1, 5, 9, 17)    # images and clips long enough that the decoder sees its steady state (no zero history)


def edge_weights(video: torch.Tensor, strength: float) -> torch.Tensor:
    """Per-pixel loss weights 1 + strength * (normalised local gradient magnitude), (B, 1, T, H, W).

    Objects are a few percent of the pixels, so a plain MSE learns flat backgrounds first and objects last;
    weighting edges (in space and time: moving objects) spends the reconstruction budget where shapes are.
    """
    g = video.new_zeros(video.shape[0], 1, *video.shape[2:])                 # (B, 1, T, H, W)
    for dim in (2, 3, 4):
        d = video.diff(dim=dim).abs().sum(1, keepdim=True)                   # (B, 1, ...) one shorter along dim
        g = g + F.pad(d, [0, 0] * (4 - dim) + [0, 1])                        # pad back at the end of dim
    return 1 + strength * g / g.mean(dim=(1, 2, 3, 4), keepdim=True).clamp(min=1e-6)


def vae_loss(vae: torch.nn.Module, video: torch.Tensor, kl_weight: float, edge_weight: float = 0.0,
             latents: torch.Tensor | None = None) -> tuple[torch.Tensor, dict]:
    """(Edge-weighted) MSE + L1 reconstruction plus a small KL to N(0, 1). video: (B, 3, T, H, W) in [-1, 1].
    latents: decode these (a DiT's latents of `video`) instead of the video's own; there is no KL then.
    parts["recon"] is the reconstruction, for the loss terms that read it."""
    recon, mean, logvar = vae(video, latents)
    err = recon - video
    sq = err.pow(2)
    mse = sq.mean()
    w = edge_weights(video, edge_weight) if edge_weight else 1.0
    rec = (w * (sq + err.abs())).mean()
    kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean() if mean is not None else recon.new_zeros(())
    return rec + kl_weight * kl, {"mse": mse.item(), "kl": kl.item(), "recon": recon}


@torch.no_grad()
def latent_stats(vae: VideoVAE, clips, device) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std of raw latents, so the DiT sees roughly unit-variance inputs."""
    zs = [vae.encode_dist(video_to_tensor(c.video)[None].to(device))[0] for c in clips]
    z = torch.cat([t.transpose(0, 1).flatten(1) for t in zs], dim=1)       # (C, N)
    return tuple(z.mean(1).tolist()), tuple(z.std(1).tolist())


@dataclass
class VAEBatch:
    video: torch.Tensor                  # (B, 3, T, H, W) in [-1, 1]: the clips to draw
    latents: torch.Tensor | None = None  # (B, C, t, h, w) DiT latents of them to decode, or None (a round trip)
    extras: dict = field(default_factory=dict)   # the pairs' extras (toy world: object tracks and shapes)


def train_vae(stage, cfg: VAEConfig, loss_cfg: VAELossConfig, train: TrainConfig, source: VideoSource,
              terms_cfg=None) -> Path:
    """Trains (or resumes) the VAE; writes out/last.safetensors periodically and out/vae.safetensors at the end.

    stage: a recipe's VAEStage. init: start from a trained VAE file (its config wins, bar a decoder grown to
    cfg.decoder_res_blocks). decoder_only: freeze the encoder, so the latent space (and every DiT trained on it)
    stays valid while reconstructions sharpen. dit_latents: a file of DiT latents paired with their real clips
    (training/dit_latents.py); a share dit_share of the steps decodes those instead of encoder latents.
    terms_cfg: the source's [terms], for its plug-in loss terms (data.sources.LossTerm).
    """
    info = setup_distributed()
    device = device_for(info)
    seed_everything(train.seed + info.rank)
    out = Path(stage.out)
    model = grow_decoder(load_vae(stage.init), cfg).train() if stage.init else VideoVAE(cfg)
    cfg = model.cfg                      # with init, the file's architecture and latent statistics win
    if stage.decoder_only:
        model.encoder.requires_grad_(False)
    pairs = _dit_pairs(Path(stage.dit_latents), cfg) if stage.dit_latents else None
    ddp, model, ema, opt, step = build_training_state(model, train, out, device, info)
    pool = source.clips("train", shard=info.rank, quiet=not info.main)
    terms = source.loss_terms("vae", terms_cfg, TermContext(out, device, info, pool, pairs)) if terms_cfg else []
    rng = np.random.default_rng(train.seed * 7919 + info.rank + step)
    # a 5-frame bucket cannot give 17-frame windows; stills (one-frame clips of a footage folder) give only images
    shortest = min([c.video.shape[0] for c in pool if c.video.shape[0] > 1] or [1])
    frame_choices = [f for f in FRAME_CHOICES if f <= shortest]
    crops = stage.crop_sizes
    _check_crops(pool, crops)
    if info.main:
        log.info("VAE %.2fM params, %d clips, batch %d x %d ranks, %s; terms %s",
                 sum(p.numel() for p in model.parameters()) / 1e6, len(pool), train.batch_size, info.world,
                 precision_label(device, train.precision), [t.name for t in terms] or "none")
    started, means, first = time.monotonic(), LoggedMeans(), step
    with progress_bar(disable=not info.main) as bar:
        task = bar.add_task("train-vae", total=train.steps, completed=step, status="")
        while step < train.steps:
            used = time_used(started, train.time_limit, device)
            if out_of_time(used, train.time_limit, step, train.steps):
                save_training_checkpoint(out / "last.safetensors", "vae", cfg, model, ema, opt, step, info)
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(schedule_step(step, first, train.steps, used), train.lr, train.warmup, train.steps)
            batch = _next_batch(pool, frame_choices, pairs, stage.dit_share, rng, train.batch_size, crops)
            with autocast(device, train.precision):
                loss, parts = _loss(ddp, batch, loss_cfg, terms, device)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
            opt.step()
            update_ema(ema, model, train.ema_decay)
            step += 1
            bar.update(task, completed=step, status=f"loss {loss.item():.4f} psnr~{psnr_of_mse(parts['mse']):.1f}")
            means.add("DiT latents" if batch.latents is not None else "round trips", loss, parts)
            if info.main and step % train.log_every == 0:
                log.info("step %d | %s", step, means.report())
            if step % train.ckpt_every == 0 or step == train.steps:
                save_training_checkpoint(out / "last.safetensors", "vae", cfg, model, ema, opt, step, info)
    final = _finalise(cfg, ema, source, out, device, info, stage.eval_clips, keep_stats=stage.decoder_only, step=step,
                      extra={"loss": to_dict(loss_cfg)})
    del ddp, opt
    teardown_distributed()
    return final


def _loss(ddp, batch: VAEBatch, loss_cfg: VAELossConfig, terms, device) -> tuple[torch.Tensor, dict]:
    """vae_loss on the batch plus each plug-in term's value (logged under its name)."""
    video, latents = batch.video.to(device), None if batch.latents is None else batch.latents.to(device)
    loss, parts = vae_loss(ddp, video, loss_cfg.kl_weight, loss_cfg.edge_weight, latents)
    for term in terms:
        value = term(batch, parts["recon"], video, None)
        if value is not None:
            loss, parts[term.name] = loss + value, value
    return loss, parts


class LoggedMeans:
    """Mean of each loss part since the last log line, apart for each kind of step (the autoencoder's own round
    trips; decoding the DiT's latents). One logged step says little, and with dit_share the logged steps can all
    land on one kind (11 in a row in one run, as the random stream happened to fall)."""

    def __init__(self):
        self.sums: dict[str, dict[str, float]] = {}
        self.counts: dict[str, int] = {}

    def add(self, kind: str, loss: torch.Tensor, parts: dict) -> None:
        sums = self.sums.setdefault(kind, {})
        for name, value in [("loss", loss), *((p, v) for p, v in parts.items() if p != "recon")]:
            value = value.detach() if isinstance(value, torch.Tensor) else value    # the loss still holds its graph
            sums[name] = sums.get(name, 0.0) + float(value)
        self.counts[kind] = self.counts.get(kind, 0) + 1

    def report(self) -> str:
        """'round trips (24 steps): loss 0.0123 mse 0.00101 kl 1.52 | DiT latents (26 steps): ...', then resets."""
        lines = []
        for kind, sums in self.sums.items():
            n = self.counts[kind]
            lines.append(f"{kind} ({n} steps): " + " ".join(f"{name} {total / n:.{5 if name == 'mse' else 4}f}"
                                                            for name, total in sums.items()))
        self.sums, self.counts = {}, {}
        return " | ".join(lines)


def _dit_pairs(path: Path, cfg: VAEConfig):
    """The DiT-latent pairs to train on, checked against this autoencoder's latent space."""
    if not path.is_file():
        raise FileNotFoundError(f"dit_latents file not found: {path}")
    pairs = load_pairs(path, cfg.latent_channels)
    made_with = pairs.meta.get("latent_mean")
    if made_with is None or not np.allclose(made_with, cfg.latent_mean or [0.0] * cfg.latent_channels, atol=1e-5):
        raise ValueError(f"{path} was made with another autoencoder's latent space (latent means {made_with}, "
                         f"this one's {cfg.latent_mean}): remake it with this VAE")
    return pairs


def _next_batch(pool: list[Sample], frame_choices: list[int], pairs, share: float, rng: np.random.Generator,
                batch_size: int, crops: tuple[tuple[int, int], ...]) -> VAEBatch:
    """DiT latents with their clips a `share` of the time, else windows of the pool's clips (one of frame_choices
    long, one of crops (height, width) in size) for the autoencoder's own round trip."""
    if pairs is not None and rng.random() < share:
        latents, video, extras = sample_pair_batch(pairs, rng, batch_size)
        return VAEBatch(video, latents, extras)
    frames = frame_choices[int(rng.integers(len(frame_choices)))]
    crop = crops[int(rng.integers(len(crops)))] if len(crops) > 1 else crops[0]   # one crop: the draws as before
    return VAEBatch(sample_windows(pool, rng, batch_size, frames, crop))


def _check_crops(pool: list[Sample], crops: tuple[tuple[int, int], ...]) -> None:
    """Every crop fits some clip of the pool (a 96-high crop needs a clip at least 96 high)."""
    for h, w in crops:
        if not any(c.video.shape[1] >= h and c.video.shape[2] >= w for c in pool):
            raise ValueError(f"crop {h}x{w} (height x width) is larger than every training clip: add a bucket that "
                             "holds it or drop the crop")


def sample_windows(pool: list[Sample], rng: np.random.Generator, batch_size: int, frames: int,
                   crop: int | tuple[int, int]) -> torch.Tensor:
    """Random windows of `frames` frames and `crop` pixels (a side, or (height, width)) from the clips that hold
    them, random horizontal flips. (B, 3, T, crop_h, crop_w)."""
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    out = []
    pool = [c for c in pool if c.video.shape[0] >= frames and c.video.shape[1] >= ch and c.video.shape[2] >= cw]
    for _ in range(batch_size):
        video = pool[int(rng.integers(len(pool)))].video
        t0 = int(rng.integers(video.shape[0] - frames + 1))
        y0 = int(rng.integers(video.shape[1] - ch + 1))
        x0 = int(rng.integers(video.shape[2] - cw + 1))
        window = video[t0:t0 + frames, y0:y0 + ch, x0:x0 + cw]
        if rng.random() < 0.5:
            window = window[:, :, ::-1]
        out.append(video_to_tensor(np.ascontiguousarray(window)))
    return torch.stack(out)


def _finalise(cfg: VAEConfig, ema: VideoVAE, source: VideoSource, out: Path, device, info: DistInfo, eval_clips: int,
              keep_stats: bool = False, step: int = 0, extra: dict | None = None) -> Path:
    """Measures latent statistics and held-out PSNR with the EMA weights and writes the shippable file.

    keep_stats: the encoder was frozen, so the latent statistics a DiT was trained with are kept exactly
    (re-measuring them on another clip pool would shift every latent the DiT sees).
    """
    final = out / "vae.safetensors"
    if not info.main:
        return final
    if not keep_stats:
        stats_clips = source.clips("stats", num=64, quiet=True)
        mean, std = latent_stats(ema, stats_clips, device)
        cfg = dataclasses.replace(cfg, latent_mean=mean, latent_std=std)
    model = VideoVAE(cfg).to(device)
    model.load_state_dict(ema.state_dict())
    heldout = source.clips("heldout", num=eval_clips, quiet=True)
    score = float(np.mean(clip_psnrs(model, heldout, device)))
    log.info("VAE held-out PSNR %.2f dB on %d clips", score, len(heldout))
    ckpt_io.save_checkpoint(final, "vae", cfg, model, step=step, extra={**(extra or {}), "psnr_heldout": score})
    return final


def grow_decoder(vae: VideoVAE, cfg: VAEConfig) -> VideoVAE:
    """`vae` with the residual blocks per decoder stage that `cfg` asks for beyond its own (the new ones start as
    identities); the encoder and everything else stay the file's."""
    if cfg.decoder_res_blocks > (vae.cfg.decoder_res_blocks or vae.cfg.res_blocks):
        vae = with_decoder_blocks(vae, cfg.decoder_res_blocks)
    return vae


def with_decoder_blocks(vae: VideoVAE, blocks: int) -> VideoVAE:
    """The same autoencoder with `blocks` residual blocks per decoder stage: each trained block keeps its weights,
    and the new ones follow it in its stage with their last conv at zero, so they start as identities (the skip
    path) and the grown decoder decodes exactly as before until it is trained. The encoder is untouched."""
    old_n = vae.cfg.decoder_res_blocks or vae.cfg.res_blocks
    if blocks <= old_n:
        raise ValueError(f"decoder_res_blocks must grow the decoder beyond {old_n} blocks per stage, got {blocks}")
    grown = VideoVAE(dataclasses.replace(vae.cfg, decoder_res_blocks=blocks))
    old, new = vae.decoder.blocks, grown.decoder.blocks
    mapping = _block_mapping(old, new)
    state = {k: v for k, v in vae.state_dict().items() if not k.startswith("decoder.blocks.")}
    for i, j in mapping.items():
        state.update({f"decoder.blocks.{j}.{k}": v for k, v in old[i].state_dict().items()})
    kept = set(mapping.values())
    for j, block in enumerate(new):
        if j not in kept:
            nn.init.zeros_(block.conv2.conv.weight)
            nn.init.zeros_(block.conv2.conv.bias)
            state.update({f"decoder.blocks.{j}.{k}": v for k, v in block.state_dict().items()})
    grown.load_state_dict(state)
    return grown


def _block_mapping(old, new) -> dict[int, int]:
    """Old decoder block index -> new index. Both lists are stages of residual blocks between upsamples; the k-th
    block of a stage maps to the k-th block of the same stage, and the i-th upsample to the i-th upsample."""
    def stages(blocks):                       # [[indices of stage 0's blocks], upsample index, [stage 1...], ...]
        out, cur = [], []
        for i, block in enumerate(blocks):
            if isinstance(block, ResBlock):
                cur.append(i)
            else:
                out += [cur, [i]]
                cur = []
        return out + [cur]
    return {i: j for so, sn in zip(stages(old), stages(new)) for i, j in zip(so, sn)}
