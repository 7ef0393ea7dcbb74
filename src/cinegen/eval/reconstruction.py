"""Reconstruction PSNR of video autoencoders, all on the same held-out world clips, overall and by background.

    cinegen eval-vae runs/a/vae.safetensors runs/b/vae.safetensors --num-clips 48 --seed 0

Why a command of its own: `train-vae` scores each run on 16 clips drawn from that run's own data seed, so two runs'
numbers come from different clips, and the mix of backgrounds alone moves the mean by a dB or more (photos read
19-22 dB, flat backgrounds 27-30). Here every file reads the same clips, and each is paired with the first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from cinegen.data.world import BACKGROUNDS, Clip
from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar

# render_pool's seed offset of the held-out clips that train-vae scores and eval-vae reads: never a training clip
HELDOUT_SEED_OFFSET = 20_000


def psnr_of_mse(mse: float) -> float:
    """PSNR in dB of a mean squared error between [-1, 1] images (peak-to-peak 2)."""
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB of two tensors in [-1, 1] (peak-to-peak 2)."""
    return psnr_of_mse(F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item())


@torch.no_grad()
def clip_psnrs(vae, clips: list[Clip], device, on_clip: Callable[[], None] | None = None,
               latents: list[torch.Tensor] | None = None) -> list[float]:
    """Each whole clip's round trip through the posterior mean, in clip order; each clip's (normalised) latent is
    appended to `latents` when given."""
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


def latent_shift(latents: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """RMS change of the normalised latents of the same clips over the reference's RMS: how far a retrained
    autoencoder moved the latent space that DiTs were trained on (0 for a decoder-only fine-tune)."""
    num = sum(float((z - r).pow(2).sum()) for z, r in zip(latents, reference))
    den = sum(float(r.pow(2).sum()) for r in reference)
    return math.sqrt(num / max(den, 1e-12))


def summarise(clips: list[Clip], scores: list[float], reference: list[float] | None = None) -> dict:
    """Mean PSNR, by background, and (given the first file's scores on the same clips) the paired change."""
    row = {"psnr": float(np.mean(scores)), "by_background": {}}
    for bg in BACKGROUNDS:
        mine = [s for c, s in zip(clips, scores) if c.scene.background == bg]
        if mine:
            row["by_background"][bg] = {"psnr": float(np.mean(mine)), "clips": len(mine)}
    if reference is not None:
        diff = np.asarray(scores) - np.asarray(reference)
        row["vs_first"] = {"mean": float(diff.mean()),
                           "se": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")}
    return row


def compare_vaes(paths: list[Path], clips: list[Clip], device="cpu") -> list[dict]:
    """One row per file, each scored on the same clips; rows after the first are paired with it."""
    # imported here: train_vae imports this module
    from cinegen.models.loading import load_vae
    rows, first, first_latents = [], None, None
    with progress_bar() as bar:
        for path in paths:
            task = bar.add_task(f"round trips: {Path(path).parent.name}/{Path(path).name}", total=len(clips), status="")
            latents: list[torch.Tensor] = []
            scores = clip_psnrs(load_vae(path, device), clips, device, on_clip=lambda: bar.advance(task), latents=latents)
            row = {"vae": str(path), **summarise(clips, scores, first), "clip_psnr": scores}
            if first_latents is not None:
                if [z.shape for z in latents] != [z.shape for z in first_latents]:
                    raise ValueError(f"{path} has another latent grid than {paths[0]}: their latents cannot be compared")
                row["latent_shift"] = latent_shift(latents, first_latents)
            rows.append(row)
            first, first_latents = first or scores, first_latents or latents
    return rows
