"""A small CNN that reads which toy-world shape sits at the centre of a crop (the decoder's shape loss).

Pixel losses let a decoder draw every small object as a soft blob: a blob costs little more than a sharp triangle
under L1/MSE (MODEL_CARD, "Where shape is lost"). A reader trained on rendered frames, whose labels the renderer
gives for free, turns "draw the right shape" into a loss, as a perceptual loss does for natural images.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from cinegen.data.world import SHAPES


class ShapeReader(nn.Module):
    """(N, 3, S, S) crops in [-1, 1], scaled so the object spans the same share of every crop -> (N, len(SHAPES))
    logits in the order of data.world.SHAPES."""

    def __init__(self, width: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),          # S/2
            nn.Conv2d(2 * width, 2 * width, 3, stride=2, padding=1), nn.SiLU(),      # S/4
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                     # (N, 2 * width)
            nn.Linear(2 * width, len(SHAPES)),
        )

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        return self.net(crops)
