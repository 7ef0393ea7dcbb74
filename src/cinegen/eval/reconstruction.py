"""Reconstruction PSNR of video autoencoders, all on the same held-out world clips, overall and by background.

    cinegen eval-vae runs/a/vae.safetensors runs/b/vae.safetensors --num-clips 48 --seed 0

Why a command of its own: `train-vae` scores each run on 16 clips drawn from that run's own data seed, so two runs'
numbers come from different clips, and the mix of backgrounds alone moves the mean by a dB or more (photos read
19-22 dB, flat backgrounds 27-30). Here every file reads the same clips, and each is paired with the first.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from cinegen.data.sources import Sample
from cinegen.runtime import progress_bar
from cinegen.toyworld.world import BACKGROUNDS
from cinegen.training.metrics import clip_psnrs


def latent_shift(latents: list[torch.Tensor], reference: list[torch.Tensor]) -> float:
    """RMS change of the normalised latents of the same clips over the reference's RMS: how far a retrained
    autoencoder moved the latent space that DiTs were trained on (0 for a decoder-only fine-tune)."""
    num = sum(float((z - r).pow(2).sum()) for z, r in zip(latents, reference))
    den = sum(float(r.pow(2).sum()) for r in reference)
    return math.sqrt(num / max(den, 1e-12))


def summarise(clips: list[Sample], scores: list[float], reference: list[float] | None = None) -> dict:
    """Mean PSNR, by background (toy-world samples), and (given the first file's scores on the same clips) the
    paired change."""
    row = {"psnr": float(np.mean(scores)), "by_background": {}}
    for bg in BACKGROUNDS:
        mine = [s for c, s in zip(clips, scores) if c.extras["clip"].scene.background == bg]
        if mine:
            row["by_background"][bg] = {"psnr": float(np.mean(mine)), "clips": len(mine)}
    if reference is not None:
        diff = np.asarray(scores) - np.asarray(reference)
        row["vs_first"] = {"mean": float(diff.mean()),
                           "se": float(diff.std(ddof=1) / math.sqrt(len(diff))) if len(diff) > 1 else float("nan")}
    return row


def compare_vaes(paths: list[Path], clips: list[Sample], device="cpu") -> list[dict]:
    """One row per file, each scored on the same clips; rows after the first are paired with it."""
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
