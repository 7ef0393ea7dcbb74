"""Flow-matching loss at fixed t on 16 rendered clips that no run trained on (data seed 99, 17x64x64, the documented
holdout): the shipped 2x2 DiT, its 1x1 re-patch at step 0, and any DiT files given (their last-step weights).
MODEL_CARD.md, "Re-patching".

    python scripts/repatch_loss.py [runs/rp1/last.safetensors ...]
"""
import dataclasses
import sys

import torch

from cinegen.config import DataConfig, TextConfig
from cinegen.data.clips import render_pool
from cinegen.data.world import DEFAULT_HOLDOUT
from cinegen.diffusion.flow import interpolate
from cinegen.io.video import video_to_tensor
from cinegen.models.dit import VideoDiT
from cinegen.models.loading import load_dit, load_vae
from cinegen.models.text_encoder import TextEncoder
from cinegen.training.train_dit import grow_from, repatch_config


def main():
    torch.manual_seed(0)
    clips = render_pool(DataConfig(num_clips=16, seed=99, holdout=DEFAULT_HOLDOUT), quiet=True, workers=1)
    vae = load_vae("src/cinegen/weights/vae.safetensors")
    with torch.no_grad():
        x0 = vae.encode(torch.stack([video_to_tensor(c.video) for c in clips]))          # (16, C, 5, 8, 8)
    text, mask = TextEncoder(TextConfig()).encode([c.caption for c in clips])
    old, _ = load_dit("src/cinegen/weights/dit.safetensors")
    fine_cfg = repatch_config(dataclasses.replace(old.cfg, patch=(1, 1, 1)), old.cfg)
    models = {"2x2 shipped (step 9)": old, "1x1 re-patched, step 0": grow_from(VideoDiT(fine_cfg), old).eval()}
    for path in sys.argv[1:]:
        models[path] = load_dit(path, raw=True)[0]
    g = torch.Generator().manual_seed(1)
    noises = [torch.randn(x0.shape, generator=g) for _ in range(2)]
    with torch.no_grad():
        for name, m in models.items():
            row = []
            for t in (0.1, 0.3, 0.5, 0.7):
                tt = torch.full((16,), t)
                err = [((m(interpolate(x0, n, tt), tt, text, mask) - (n - x0)) ** 2).mean().item() for n in noises]
                row.append(sum(err) / len(err))
            print(f"{name:40s} " + "  ".join(f"t={t}: {v:.4f}" for t, v in zip((0.1, 0.3, 0.5, 0.7), row)), flush=True)


if __name__ == "__main__":
    main()
