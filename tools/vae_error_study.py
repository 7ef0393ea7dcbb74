"""Where an autoencoder's reconstruction error lies, and what a linear code of the same size reaches
(MODEL_CARD.md, "Sixth session": where the autoencoder's error lies).

    python tools/vae_error_study.py [VAE_FILE ...] [--num-clips 48] [--pca-clips 400]

On the held-out clips that `cinegen eval-vae` reads (seed 0), for each file (default: the shipped VAE):
- PSNR by background, split into the pixels near an object (within 1.5 radii + 2 px of its track, from the
  world's own tracks) and the rest, with the object region's share of the pixels and of the squared error;
- PSNR by frame index (the causal VAE codes frame 0 alone, then 4 frames per latent frame).
Then the linear reference: PCA of the 4x8x8x3 pixel blocks that one latent cell covers, fitted on clips of the
training seeds, keeping k components per block (k = 16 is the shipped latent's 16 channels), scored on frames
1-16 of the same held-out clips. Not a bound on a non-linear code, a yardstick: a VAE that only matches it has
learned little beyond a block transform.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from cinegen.io.video import video_to_tensor
from cinegen.toyworld.source import ToyWorld, ToyWorldConfig
from cinegen.toyworld.world import Clip
from cinegen.training.metrics import psnr_of_mse


def object_region(clip: Clip) -> np.ndarray:
    """(T, H, W) bool: pixels within 1.5 radii + 2 px of any object's centre, frame by frame."""
    t, h, w = clip.video.shape[:3]
    yy, xx = np.mgrid[0:h, 0:w] + 0.5                                   # pixel centres, as the world draws
    mask = np.zeros((t, h, w), bool)
    for track in clip.tracks.values():                                  # (T, 3): x, y, radius in pixels
        cx, cy, r = (track[:, i, None, None] for i in range(3))        # each (T, 1, 1)
        mask |= (xx - cx) ** 2 + (yy - cy) ** 2 <= (1.5 * r + 2) ** 2
    return mask


@torch.no_grad()
def error_table(vae, clips: list[Clip]) -> dict[str, dict]:
    """Per background: whole-clip PSNR (mean over clips), object-region and rest PSNR, shares, per-frame PSNR."""
    acc: dict[str, dict] = {}
    for clip in clips:
        x = video_to_tensor(clip.video)[None]                           # (1, 3, T, H, W)
        se = (vae.decode(vae.encode(x)).clamp(-1, 1) - x).pow(2).mean(1)[0].numpy()   # (T, H, W)
        near = object_region(clip)
        a = acc.setdefault(clip.scene.background, {"clip": [], "sums": np.zeros(4), "frame": []})
        a["clip"].append(psnr_of_mse(se.mean()))
        a["sums"] += [se[near].sum(), near.sum(), se[~near].sum(), (~near).sum()]   # error and pixels: near, rest
        a["frame"].append(se.mean(axis=(1, 2)))                         # (T,)
    out = {}
    for bg, a in acc.items():
        so, no, sr, nr = a["sums"]
        out[bg] = {"clips": len(a["clip"]), "psnr": float(np.mean(a["clip"])),
                   "object_psnr": psnr_of_mse(so / no), "rest_psnr": psnr_of_mse(sr / nr),
                   "object_pixels": no / (no + nr), "object_error": so / (so + sr),
                   "by_frame": [psnr_of_mse(m) for m in np.mean(a["frame"], axis=0)]}
    return out


def cell_blocks(clips: list[Clip]) -> dict[str, np.ndarray]:
    """Frames 1-16 of each clip cut into the pixel blocks of one latent cell, grouped by background."""
    out: dict[str, list] = {}
    for clip in clips:
        v = clip.video[1:17].astype(np.float32) / 127.5 - 1                       # (16, H, W, 3) in [-1, 1]
        b = rearrange(v, "(t a) (h p) (w q) c -> (t h w) (a p q c)", a=4, p=8, q=8)   # (cells, 768)
        out.setdefault(clip.scene.background, []).append(b)
    return {bg: np.concatenate(b) for bg, b in out.items()}


def pca_reference(train: list[Clip], test: list[Clip], ks=(16, 32, 64, 128)) -> dict[str, dict[int, float]]:
    """PSNR of keeping k principal components of each cell's block, fitted per background on `train`."""
    fit, held = cell_blocks(train), cell_blocks(test)
    out = {}
    for bg, y in held.items():
        mu = fit[bg].mean(0)
        _, _, vt = np.linalg.svd(fit[bg] - mu, full_matrices=False)   # rows of vt: components, largest first
        y = y - mu
        out[bg] = {k: psnr_of_mse(float(((y @ vt[:k].T @ vt[:k] - y) ** 2).mean())) for k in ks}
    return out


def main() -> None:
    from cinegen.models.loading import load_vae
    from cinegen.pipeline import WEIGHTS_DIR
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("vae", nargs="*", type=Path, default=[WEIGHTS_DIR / "vae.safetensors"])
    ap.add_argument("--num-clips", type=int, default=48)
    ap.add_argument("--pca-clips", type=int, default=400, help="training-seed clips the PCA is fitted on (0 = skip)")
    args = ap.parse_args()
    world = ToyWorld(ToyWorldConfig(buckets=((17, 64, 64),), seed=0))
    held = [s.extras["clip"] for s in world.clips("heldout", num=args.num_clips, quiet=True, workers=1)]
    for path in args.vae:
        print(f"\n{path}: background, clips, PSNR | near objects: PSNR, share of pixels, share of error | rest PSNR")
        for bg, r in error_table(load_vae(path, "cpu").eval(), held).items():
            print(f"  {bg:6s} {r['clips']:3d} {r['psnr']:6.2f} | {r['object_psnr']:6.2f} {r['object_pixels']:5.3f} "
                  f"{r['object_error']:5.2f} | {r['rest_psnr']:6.2f}")
            print("         by frame: " + " ".join(f"{v:.1f}" for v in r["by_frame"]))
    if args.pca_clips:
        train = [s.extras["clip"] for s in world.clips("train", num=args.pca_clips, quiet=True, workers=1)]
        print(f"\nblock PCA (4x8x8x3 = 768 values per latent cell), fitted on {args.pca_clips} training clips:")
        for bg, row in pca_reference(train, held).items():
            print(f"  {bg:6s} " + "  ".join(f"k={k}: {v:.2f}" for k, v in row.items()))


if __name__ == "__main__":
    main()
