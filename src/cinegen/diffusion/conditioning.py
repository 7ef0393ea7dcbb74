"""The one conditioning mechanism behind image-to-video, extension, loops, connecting clips and keyframes.

Given clean latents for some latent frames, the DiT receives cond = [mask, mask * clean] next to x_t
(models/dit.py). Training shows random masks of the kinds below (as Open-Sora and LTX-Video do), so one set
of weights can animate a still, continue a clip either way, or bridge two clips.

Shapes: latents (B, C, T, H, W); mask (B, 1, T, H, W) in {0, 1}, 1 = frame given.
"""

from __future__ import annotations

import torch

MASK_KINDS = ("first", "last", "head", "tail", "ends")   # i2v, i2v at end, extend fwd, extend back, connect/loop


def make_cond(clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, C, T, H, W), (B, 1, T, H, W) -> (B, C + 1, T, H, W)."""
    return torch.cat([mask, mask * clean], dim=1)


def frame_mask(num_frames: int, frames: list[int], shape_hw: tuple[int, int], batch: int = 1) -> torch.Tensor:
    """Mask with the given latent frame indices set (negative indices count from the end). (B, 1, T, H, W)."""
    mask = torch.zeros(batch, 1, num_frames, *shape_hw)
    for f in frames:
        if not -num_frames <= f < num_frames:
            raise ValueError(f"conditioning frame {f} is outside a {num_frames}-frame latent")
        mask[:, :, f] = 1.0
    return mask


def random_mask(kind: str, num_frames: int, generator: torch.Generator | None = None) -> list[int]:
    """Latent frame indices to give clean for one training sample of the given kind."""
    if num_frames < 2:
        return []
    k = int(torch.randint(1, max(2, num_frames // 2 + 1), (1,), generator=generator))
    return {"first": [0], "last": [num_frames - 1], "head": list(range(k)),
            "tail": list(range(num_frames - k, num_frames)), "ends": [0, num_frames - 1]}[kind]


def random_masks(batch: int, num_frames: int, shape_hw: tuple[int, int], prob: float,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """A training batch of masks: each sample is conditioned with probability `prob`, on a random kind."""
    mask = torch.zeros(batch, 1, num_frames, *shape_hw)
    for i in range(batch):
        if float(torch.rand((), generator=generator)) < prob:
            kind = MASK_KINDS[int(torch.randint(len(MASK_KINDS), (1,), generator=generator))]
            for f in random_mask(kind, num_frames, generator):
                mask[i, :, f] = 1.0
    return mask
