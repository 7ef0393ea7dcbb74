"""Rectified-flow maths (minRF, SD3, Wan2.1 convention).

    t = 0 is data, t = 1 is noise;  x_t = (1 - t) * x0 + t * eps;  target velocity v = eps - x0;
    sampling integrates dx/dt = v from t = 1 down to t = 0.

Training t is logit-normal (SD3 sec. 3.1) and then shifted towards noise for larger token grids, because
more tokens carry more redundant signal at a given noise level (SD3 sec. 5.3.2; Open-Sora 2.0 and Wan use it
for videos of different size and length).
"""

from __future__ import annotations

import math

import torch

from cinegen.config import FlowConfig


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t for per-sample t (B,). x0, noise: (B, ...)."""
    t = t.view(-1, *([1] * (x0.ndim - 1)))
    return (1 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return noise - x0


def shift_for(num_tokens: int, cfg: FlowConfig) -> float:
    """Resolution/duration-dependent shift: base_shift * sqrt(L / base_tokens), clamped to [1, max_shift]."""
    return float(min(cfg.max_shift, max(1.0, cfg.base_shift * math.sqrt(num_tokens / cfg.base_tokens))))


def shift_t(t: torch.Tensor, shift: float) -> torch.Tensor:
    """Maps t so that more of the schedule sits near noise when shift > 1: t' = s t / (1 + (s - 1) t)."""
    return shift * t / (1 + (shift - 1) * t)


def sample_t(batch: int, num_tokens: int, cfg: FlowConfig, generator=None, device=None) -> torch.Tensor:
    """Logit-normal training times, shifted for the token count, mapped into [t_min, t_max]. (B,) in (0, 1)."""
    u = torch.randn(batch, generator=generator, device=device) * cfg.logit_std + cfg.logit_mean
    t = shift_t(torch.sigmoid(u), shift_for(num_tokens, cfg))
    return cfg.t_min + (cfg.t_max - cfg.t_min) * t          # exactly t for the default range [0, 1]


def flow_loss(model_fn, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor,
              loss_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample MSE between model_fn(x_t, t) and eps - x0, averaged where loss_mask (broadcastable) is 1.

    Conditioning frames (given clean to the model) carry loss_mask 0: predicting them teaches nothing.
    Returns (B,), so the caller can log it binned by t (minRF's habit).
    """
    return masked_mse(model_fn(interpolate(x0, noise, t), t), velocity_target(x0, noise), loss_mask)


def masked_mse(v: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample mean of (v - target)^2 over cells, each counted `weight` (broadcastable; None = 1) times and
    divided by the sample's total weight. (B, ...) -> (B,), in fp32."""
    err = (v.float() - target.float()) ** 2                                          # (B, C, T, H, W)
    if weight is None:
        return err.flatten(1).mean(1)
    w = weight.expand_as(err).float()
    return (err * w).flatten(1).sum(1) / w.flatten(1).sum(1).clamp(min=1.0)
