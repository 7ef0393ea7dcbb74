"""Reconstruction PSNR: the number train-vae finalises its file with, and that eval-vae compares files by."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from cinegen.io.video import video_to_tensor


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error between [-1, 1] images (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    return psnr_of_mse(F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item())


@torch.no_grad()
def clip_psnrs(vae, clips, device, on_clip: Callable[[], None] | None = None,
               latents: list[torch.Tensor] | None = None) -> list[float]:
    """Each whole clip's round trip through the posterior mean, in clip order (clips: anything with a `video`
    (T, H, W, 3) uint8); each clip's (normalised) latent is appended to `latents` when given."""
    vae.eval()
    scores = []
    for clip in clips:
        x = video_to_tensor(clip.video)[None].to(device)                   # (1, 3, T, H, W)
        z = vae.encode(x)                                                  # (1, C, 1+k, H/8, W/8)
        scores.append(psnr(vae.decode(z), x))
        if latents is not None:
            latents.append(z.cpu())
        if on_clip is not None:
            on_clip()
    return scores
