"""What a render will cost before it starts: FLOPs from the model config, over a GPU's rate, in GPU-seconds,
wall time and dollars.

FLOPs are counted, not guessed: the real DiT and VAE modules run on PyTorch's meta device (shapes only, no
memory, no arithmetic) under torch.utils.flop_counter.FlopCounterMode, so attention's growth with the square of
the token count, the guidance passes and the VAE decode are all in the number. Time is FLOPs over
(datasheet dense bf16 rate x utilisation); the default utilisation (0.4) matches a published Wan2.1-14B timing
(see docs/ESTIMATES.md), and `calibrate_cpu` measures this machine's own rate by timing real steps.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from cinegen.config import DIT_PRESETS, VAE_PRESETS, DiTConfig, SampleConfig, VAEConfig
from cinegen.diffusion.samplers import get_solver
from cinegen.geometry import Geometry

# Dense bf16 tensor-core peaks from the vendors' datasheets (FLOP/s, without sparsity).
GPU_PEAK = {"H100": 989e12, "H800": 989e12, "H200": 989e12, "B200": 2250e12, "A100": 312e12, "A800": 312e12,
            "L40S": 362e12, "RTX4090": 165e12}
GPU_PRICE = {"H100": 2.5, "H800": 2.5, "H200": 3.5, "B200": 5.0, "A100": 1.5, "A800": 1.5, "L40S": 1.0, "RTX4090": 0.5}

# Peers' published architectures, expressed in our configs (our blocks match Wan's: self-attn, cross-attn, MLP).
PEER_DIT = {
    "wan2.1-14b": DiTConfig(width=5120, depth=40, heads=40, mlp_ratio=13824 / 5120, text_dim=4096, conditioning=False),
    "wan2.1-1.3b": DiTConfig(width=1536, depth=30, heads=12, mlp_ratio=8960 / 1536, text_dim=4096, conditioning=False),
}
# An approximation of Wan2.1's VAE decoder cost (full-resolution stage at 96 channels, 384 at the bottom).
PEER_VAE = VAEConfig(patch=1, spatial_down=3, temporal_down=2, channels=(96, 192, 384, 384), res_blocks=2)
PEER_TEXT_TOKENS = {"wan2.1-14b": 512, "wan2.1-1.3b": 512}


@dataclass(frozen=True)
class Estimate:
    tokens: int                  # L per DiT pass
    dit_flops_per_pass: float
    passes: int                  # the solver's model calls x (2 with classifier-free guidance)
    vae_flops: float
    total_flops: float
    gpu_seconds: float
    wall_seconds: float
    dollars: float

    def rows(self) -> list[tuple[str, str]]:
        return [("tokens per pass", f"{self.tokens:,}"), ("DiT TFLOP per pass", f"{self.dit_flops_per_pass / 1e12:,.2f}"),
                ("DiT passes", str(self.passes)), ("VAE decode TFLOP", f"{self.vae_flops / 1e12:,.2f}"),
                ("total PFLOP", f"{self.total_flops / 1e15:,.2f}"), ("GPU-hours", f"{self.gpu_seconds / 3600:,.3f}"),
                ("wall time", _human(self.wall_seconds)), ("cost (USD)", f"${self.dollars:,.2f}")]


def _human(seconds: float) -> str:
    return human_time(seconds)


def human_time(seconds: float) -> str:
    """What a producer reads: '0.4 s', '12 s', '4 min 05 s', '7 h 29 min', '3 d 4 h'."""
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    s = round(seconds)
    if s < 3600:
        return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"
    if s < 86400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86400} d {s % 86400 // 3600} h"


def human_dollars(d: float) -> str:
    return f"${d:,.4f}" if d < 0.01 else f"${d:,.2f}"


# The seed's reference point for a minute of 1080p: Sora-class serving at about $90 and 30 min on 8xH800 per minute.
SORA_PER_MINUTE = {"dollars": 90.0, "minutes": 30.0, "gpus": "8xH800"}
NOT_MODELLED = ("not modelled: text encoding, data movement, kernel launch and Python overheads (they dominate tiny "
                "models on GPUs), MP4/voice/timeline writing, queueing, and the sparse or windowed attention, step "
                "distillation and caching that published 1080p systems use; a GPU estimate assumes 40% of the "
                "datasheet peak")


def attention_share(dit: DiTConfig, tokens: int, text_tokens: int, per_pass: float) -> float:
    """The share of a DiT pass spent in the two self-attention products (4 L^2 d a block): what makes 1080p dear."""
    return min(1.0, dit.depth * 4 * tokens * tokens * dit.width / per_pass)


def count_flops(fn) -> float:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return float(counter.get_total_flops())


def dit_pass_flops(cfg: DiTConfig, latent_grid: tuple[int, int, int], text_tokens: int) -> float:
    """FLOPs of one DiT forward for one sample over a (t, h, w) latent grid, counted on the meta device."""
    from cinegen.models.dit import VideoDiT
    with torch.device("meta"):
        model = VideoDiT(cfg)
        x = torch.empty(1, cfg.latent_channels, *latent_grid)
        text = torch.empty(1, text_tokens, cfg.text_dim)
        mask = torch.ones(1, text_tokens, dtype=torch.bool)
        t = torch.empty(1)
    return count_flops(lambda: model(x, t, text, mask))


def vae_decode_flops(cfg: VAEConfig, latent_grid: tuple[int, int, int]) -> float:
    from cinegen.models.vae import VideoVAE
    with torch.device("meta"):
        vae = VideoVAE(cfg)
        z = torch.empty(1, cfg.latent_channels, *latent_grid)
    return count_flops(lambda: vae.decoder(z, None))


def latent_grid(vae: VAEConfig, sample: SampleConfig, dit: DiTConfig = DiTConfig()) -> tuple[int, int, int]:
    """(t, h, w) latent cells of a render, on the model's geometry (its size rules are checked here)."""
    geo = Geometry.of(vae, dit)
    geo.check_size(sample.width, sample.height)
    return geo.latent_grid(geo.frames(sample.seconds, sample.fps), sample.height, sample.width)


def estimate(dit: DiTConfig, vae: VAEConfig, sample: SampleConfig, gpu: str = "H100", gpus: int = 1,
             utilisation: float = 0.4, price_per_gpu_hour: float | None = None, text_tokens: int = 32,
             peak_flops: float | None = None) -> Estimate:
    """Cost of one video. The work is assumed to split evenly over `gpus` (sequence-parallel inference)."""
    if gpu not in GPU_PEAK and peak_flops is None:
        raise ValueError(f"unknown gpu {gpu!r}; choose one of {sorted(GPU_PEAK)} or give peak_flops")
    if not 0 < utilisation <= 1 or gpus < 1:
        raise ValueError(f"utilisation must be in (0, 1] and gpus >= 1, got {utilisation}, {gpus}")
    grid = latent_grid(vae, sample, dit)
    tokens = math.prod(n // p for n, p in zip(grid, dit.patch))                              # L of one pass
    per_pass = dit_pass_flops(dit, grid, text_tokens)
    passes = get_solver(sample.solver).model_calls(sample.steps) * (2 if sample.guidance != 1.0 else 1)
    vae_flops = vae_decode_flops(vae, grid)
    total = per_pass * passes + vae_flops
    rate = (peak_flops or GPU_PEAK[gpu]) * utilisation
    gpu_seconds = total / rate
    price = price_per_gpu_hour if price_per_gpu_hour is not None else GPU_PRICE.get(gpu, 0.0)
    return Estimate(tokens, per_pass, passes, vae_flops, total, gpu_seconds, gpu_seconds / gpus, gpu_seconds / 3600 * price)


def calibrate_cpu(dit: DiTConfig = DIT_PRESETS["default"], vae: VAEConfig = VAE_PRESETS["default"],
                  sample: SampleConfig = SampleConfig(), repeats: int = 5) -> dict:
    """Times real DiT passes (random weights: the arithmetic is the same) and returns this machine's rate."""
    from cinegen.models.dit import VideoDiT
    torch.manual_seed(0)
    model = VideoDiT(dit).eval()
    grid = latent_grid(vae, sample, dit)
    x, t = torch.randn(2, dit.latent_channels, *grid), torch.rand(2)
    text, mask = torch.randn(2, 32, dit.text_dim), torch.ones(2, 32, dtype=torch.bool)
    with torch.no_grad():
        model(x, t, text, mask)                                          # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x, t, text, mask)
        seconds = (time.perf_counter() - start) / repeats
    flops = 2 * dit_pass_flops(dit, grid, 32)
    return {"seconds_per_cfg_pass": seconds, "flops_per_cfg_pass": flops, "achieved_flops": flops / seconds}


def peer_config(name: str) -> tuple[DiTConfig, VAEConfig, int]:
    if name in PEER_DIT:
        return PEER_DIT[name], PEER_VAE, PEER_TEXT_TOKENS[name]
    if name in DIT_PRESETS:
        return DIT_PRESETS[name], VAE_PRESETS.get(name, VAE_PRESETS["default"]), 32
    raise ValueError(f"unknown model config {name!r}; choose one of {sorted(PEER_DIT) + sorted(DIT_PRESETS)}")


__all__ = ["estimate", "calibrate_cpu", "peer_config", "Estimate", "GPU_PEAK", "GPU_PRICE", "replace"]
