"""Patch discriminator for the autoencoder's adversarial loss (pix2pix's PatchGAN, as the VAEs of Open-Sora,
LTX-Video and Wan2.1 use): a logit per overlapping patch of a single frame, "real frame" vs "decoded frame".

Why: a decoder trained only on MSE/L1 returns the mean of every shape its latent could stand for, so a small
triangle comes back as a soft blob. A critic that can tell soft blobs from rendered shapes pushes the decoder to
commit to sharp edges. Frames only (2D): the decoder's 3D layers already carry motion.

Shapes: frames (N, 3, H, W) in [-1, 1] -> logits (N, 1, H/8, W/8).
"""

from __future__ import annotations

import torch
import torch.nn as nn


class PatchDiscriminator(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for i, c in enumerate(channels):              # each stage halves H and W: receptive field ~ 22 px
            layers += [nn.Conv2d(cin, c, 4, stride=2, padding=1)]
            layers += [nn.GroupNorm(8, c)] if i else []   # no norm on raw pixels (pix2pix)
            layers += [nn.LeakyReLU(0.2)]
            cin = c
        layers.append(nn.Conv2d(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames)                        # (N, 1, H/8, W/8)
