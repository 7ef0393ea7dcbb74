"""LoRA fine-tuning of open weights: the transformer of a local Diffusers folder (Wan2.1/2.2, LTX-Video) trained
with peft adapters on a footage folder, on its own VAE's latents and its own text encoder's prompts, by the same
flow-matching loss as cinegen's DiT (t = 0 data, t = 1 noise, v = noise - x0: the FlowMatchEuler convention those
pipelines sample with). The adapter is saved with the pipeline's own `save_lora_weights`, so `load_lora_weights`
and other tools read it.

    cinegen train --data footage/ --model Wan2.1-T2V-1.3B-Diffusers/ --lora-rank 16 out=runs/wan-look train.steps=500

A recipe of kind "peer" (PeerStage: out, pipeline) with [train], [lora] and [data]. Checkpoints (the adapter's
weights, the optimizer, the step) resume as cinegen's own runs do; train.max_minutes stops early and still writes
the adapter. The adapter is the last step's weights (no EMA: the base model's own files are never copied).
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from cinegen.config import FlowConfig, LoraConfig, TrainConfig
from cinegen.diffusion.flow import interpolate, sample_t, velocity_target
from cinegen.extras import require
from cinegen.io.files import atomic_write
from cinegen.io.video import video_to_tensor
from cinegen.runtime import autocast, default_device, progress_bar
from cinegen.training.common import lr_at, out_of_time, schedule_step, time_used

log = logging.getLogger(__name__)
ADAPTER_FILE = "pytorch_lora_weights.safetensors"      # diffusers' default weight_name: load_lora_weights(out)


@dataclass(frozen=True)
class PeerStage:
    """The top level of a `kind = "peer"` recipe."""
    out: str = "runs/peer-lora"      # out/last.safetensors while training, out/pytorch_lora_weights.safetensors at the end
    pipeline: str = ""               # the local Diffusers folder whose transformer gets the adapters

    def __post_init__(self):
        if not self.pipeline:
            raise ValueError("a peer stage needs pipeline = a local Diffusers folder (--model FOLDER)")


@dataclass(frozen=True)
class Family:
    """How one pipeline family encodes clips and prompts and calls its transformer."""
    targets: tuple[str, ...]                 # default adapter layers: the attention projections
    grid: Callable                           # pipe -> (s, m): clips of 1 + k * s frames, sizes multiples of m
    encode: Callable                         # (pipe, video (B, 3, T, H, W) in [-1, 1]) -> x0 (B, C, t, h, w)
    embed: Callable                          # (pipe, captions) -> the transformer's text kwargs
    forward: Callable                        # (pipe, x_t, t (B,), text kwargs, fps) -> velocity like x_t


def _wan_encode(pipe, video):
    z = pipe.vae.encode(video).latent_dist.mode()                                       # (B, C, t, h, w)
    mean = torch.tensor(pipe.vae.config.latents_mean).view(1, -1, 1, 1, 1).to(z)
    std = torch.tensor(pipe.vae.config.latents_std).view(1, -1, 1, 1, 1).to(z)
    return (z - mean) / std                                  # the inverse of WanPipeline's decode step


def _wan_embed(pipe, captions):
    emb, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=pipe.transformer.device)
    return {"encoder_hidden_states": emb}


def _wan_forward(pipe, x, t, text, fps):
    return pipe.transformer(hidden_states=x, timestep=t * 1000, return_dict=False, **text)[0]


def _ltx_encode(pipe, video):
    z = pipe.vae.encode(video).latent_dist.mode()
    return pipe._normalize_latents(z, pipe.vae.latents_mean, pipe.vae.latents_std, pipe.vae.config.scaling_factor)


def _ltx_embed(pipe, captions):
    emb, mask, _, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=pipe.transformer.device)
    return {"encoder_hidden_states": emb, "encoder_attention_mask": mask}


def _ltx_forward(pipe, x, t, text, fps):
    _, _, f, h, w = x.shape
    p, pt = pipe.transformer_spatial_patch_size, pipe.transformer_temporal_patch_size
    rope = (pipe.vae_temporal_compression_ratio / fps, pipe.vae_spatial_compression_ratio,
            pipe.vae_spatial_compression_ratio)
    v = pipe.transformer(hidden_states=pipe._pack_latents(x, p, pt), timestep=t * 1000, num_frames=f, height=h,
                         width=w, rope_interpolation_scale=rope, return_dict=False, **text)[0]      # (B, L, C p p pt)
    return pipe._unpack_latents(v, f, h, w, p, pt)                                                   # (B, C, f, h, w)


ATTENTION = ("to_q", "to_k", "to_v", "to_out.0")
FAMILIES = {
    "WanPipeline": Family(ATTENTION, lambda p: (p.vae_scale_factor_temporal,
                                                p.vae_scale_factor_spatial * p.transformer.config.patch_size[1]),
                          _wan_encode, _wan_embed, _wan_forward),
    "LTXPipeline": Family(ATTENTION, lambda p: (p.vae_temporal_compression_ratio * p.transformer_temporal_patch_size,
                                                p.vae_spatial_compression_ratio * p.transformer_spatial_patch_size),
                          _ltx_encode, _ltx_embed, _ltx_forward)}


def load_pipeline(folder: str | Path, device: str):
    diffusers = require("diffusers", "peers", "LoRA training of open weights")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        pipe = diffusers.DiffusionPipeline.from_pretrained(str(folder), local_files_only=True, torch_dtype=torch.float32)
    except (OSError, ValueError) as e:
        raise ValueError(f"cannot load the Diffusers pipeline in {folder}: {e}") from None
    name = type(pipe).__name__
    if name not in FAMILIES:
        raise ValueError(f"{folder} holds a {name}; LoRA training takes {', '.join(sorted(FAMILIES))}")
    return pipe.to(device), FAMILIES[name]


def check_buckets(samples, pipe, family: Family, folder) -> None:
    stride, multiple = family.grid(pipe)
    for frames, height, width in sorted({s.video.shape[:3] for s in samples}):
        if (frames - 1) % stride or height % multiple or width % multiple:
            raise ValueError(f"bucket {frames}x{height}x{width} does not fit {folder}: it takes 1 + {stride}k frames "
                             f"and sizes in multiples of {multiple} (set data.buckets)")


@torch.no_grad()
def encode_clips(pipe, family: Family, samples) -> dict[tuple, tuple[torch.Tensor, list[dict]]]:
    """Per clip grid: the clips' latents (N, C, t, h, w) and each one's text kwargs (batch of one)."""
    grouped: dict[tuple, tuple[list, list]] = {}
    device = pipe.transformer.device
    with progress_bar() as bar:
        task = bar.add_task("encoding footage", total=len(samples), status="")
        for s in samples:
            z = family.encode(pipe, video_to_tensor(s.video)[None].to(device))
            latents, texts = grouped.setdefault(s.video.shape[:3], ([], []))
            latents.append(z[0].cpu())
            texts.append({k: v.cpu() for k, v in family.embed(pipe, [s.caption]).items()})
            bar.advance(task)
    return {k: (torch.stack(z), texts) for k, (z, texts) in grouped.items()}


def peer_batch(encoded: dict, rng: np.random.Generator, batch_size: int, text_dropout: float, empty: dict):
    """One grid's batch: x0 (B, C, t, h, w) and the text kwargs stacked (the empty prompt where dropped for CFG)."""
    keys = list(encoded)
    sizes = np.array([len(encoded[k][0]) for k in keys], dtype=float)
    latents, texts = encoded[keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]]
    idx = rng.integers(len(latents), size=batch_size)
    chosen = [empty if rng.random() < text_dropout else texts[i] for i in idx]
    return latents[idx], {k: torch.cat([c[k] for c in chosen]) for k in chosen[0]}


def peer_loss(pipe, family: Family, x0, text, fps: float, gen: torch.Generator | None = None) -> torch.Tensor:
    device = pipe.transformer.device
    x0 = x0.to(device)
    t = sample_t(x0.shape[0], int(np.prod(x0.shape[2:])), FlowConfig(), generator=gen).to(device)
    noise = torch.randn(x0.shape, generator=gen).to(device)
    v = family.forward(pipe, interpolate(x0, noise, t), t, {k: v.to(device) for k, v in text.items()}, fps)
    return torch.nn.functional.mse_loss(v.float(), velocity_target(x0, noise))


def add_adapters(pipe, family: Family, lora: LoraConfig) -> list[torch.nn.Parameter]:
    """peft adapters on the transformer (its own weights frozen); lora.targets at their default name the
    family's attention projections. Returns the trainable parameters."""
    peft = require("peft", "peers", "LoRA training of open weights")
    targets = family.targets if lora.targets == LoraConfig().targets else lora.targets
    pipe.transformer.requires_grad_(False)
    try:
        pipe.transformer.add_adapter(peft.LoraConfig(r=lora.rank, lora_alpha=lora.scale_alpha,
                                                     target_modules=list(targets), lora_dropout=lora.dropout))
    except ValueError as e:
        raise ValueError(f"lora.targets {list(targets)} name no layer of the transformer ({e})") from None
    return [p for p in pipe.transformer.parameters() if p.requires_grad]


def train_peer_lora(stage: PeerStage, train: TrainConfig, lora: LoraConfig, source) -> Path:
    """Trains (or resumes) the adapters and returns out/pytorch_lora_weights.safetensors."""
    from cinegen.training import checkpoint as ckpt_io
    if not lora.rank:
        raise ValueError("open weights are fine-tuned with LoRA adapters only: set --lora-rank (lora.rank > 0)")
    out, device = Path(stage.out), torch.device(default_device())
    pipe, family = load_pipeline(stage.pipeline, str(device))
    samples = source.clips("train")
    check_buckets(samples, pipe, family, stage.pipeline)
    encoded = encode_clips(pipe, family, samples)
    empty = {k: v.cpu() for k, v in family.embed(pipe, [""]).items()}
    params = add_adapters(pipe, family, lora)
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay, betas=(0.9, 0.99))
    step = _resume(out / "last.safetensors", pipe, opt)
    log.info("LoRA rank %d on %s: %.3fM trainable parameters, %d clips%s", lora.rank, type(pipe).__name__,
             sum(p.numel() for p in params) / 1e6, len(samples), f"; resumed at step {step}" if step else "")
    rng = np.random.default_rng(train.seed * 7919 + step)
    gen = torch.Generator().manual_seed(train.seed * 31 + step)
    fps = samples[0].fps
    pipe.transformer.train()
    with progress_bar() as bar:
        task = bar.add_task("train", total=train.steps, completed=step, status="")
        started, first = time.monotonic(), step
        while step < train.steps:
            used = time_used(started, train.time_limit, device)
            if out_of_time(used, train.time_limit, step, train.steps):
                break
            for g in opt.param_groups:
                g["lr"] = lr_at(schedule_step(step, first, train.steps, used), train.lr, train.warmup, train.steps)
            x0, text = peer_batch(encoded, rng, train.batch_size, train.text_dropout, empty)
            with autocast(device, train.precision):
                loss = peer_loss(pipe, family, x0, text, fps, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
            opt.step()
            step += 1
            bar.update(task, completed=step, status=f"loss {loss.item():.4f}")
            if step % train.log_every == 0:
                log.info("step %d loss %.4f", step, loss.item())
            if step % train.ckpt_every == 0 or step == train.steps:
                ckpt_io.save_checkpoint(out / "last.safetensors", "peer-lora", lora, None, None, opt, step,
                                        model_state=_adapter_params(pipe))
    ckpt_io.save_checkpoint(out / "last.safetensors", "peer-lora", lora, None, None, opt, step,
                            model_state=_adapter_params(pipe))
    return save_peer_adapter(pipe, out / ADAPTER_FILE)


def _adapter_params(pipe) -> dict[str, torch.Tensor]:
    return {k: v for k, v in pipe.transformer.state_dict().items() if "lora_" in k}


def _resume(path: Path, pipe, opt) -> int:
    if not path.is_file():
        return 0
    from cinegen.models.loading import load_checkpoint
    from cinegen.training.checkpoint import optimizer_state
    ck = load_checkpoint(path)
    if ck["kind"] != "peer-lora" or set(ck["model"]) != set(_adapter_params(pipe)):
        raise ValueError(f"{path} is a checkpoint of another run (other adapters): give a new out folder")
    pipe.transformer.load_state_dict(ck["model"], strict=False)
    if (state := optimizer_state(ck)) is not None:
        opt.load_state_dict(state)
    return ck["step"]


def save_peer_adapter(pipe, path: Path) -> Path:
    """The transformer's adapters through the pipeline's own save_lora_weights (diffusers' names and metadata),
    written to a temp file and renamed into place."""
    peft_utils = require("peft.utils", "peers", "LoRA training of open weights")
    state = peft_utils.get_peft_model_state_dict(pipe.transformer)
    meta = pipe.transformer.peft_config["default"].to_dict()

    def write(tmp: str) -> None:
        with tempfile.TemporaryDirectory(dir=Path(tmp).parent) as folder:
            type(pipe).save_lora_weights(folder, transformer_lora_layers=state, weight_name=ADAPTER_FILE,
                                         transformer_lora_adapter_metadata=meta)
            os.replace(Path(folder) / ADAPTER_FILE, tmp)
    atomic_write(path, write)
    return path
