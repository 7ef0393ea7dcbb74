"""Inference time grids: 1-D tensors of t from 1 (noise) down to 0 (data), steps + 1 entries."""

from __future__ import annotations

import torch

from cinegen.config import check_strength
from cinegen.diffusion.flow import shift_t


def linear_ts(steps: int) -> torch.Tensor:
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(1.0, 0.0, steps + 1)


def shifted_ts(steps: int, shift: float) -> torch.Tensor:
    """The training shift applied to a uniform grid, so sampling spends its steps where training did."""
    return shift_t(linear_ts(steps), shift)


def truncated_ts(ts: torch.Tensor, strength: float) -> torch.Tensor:
    """The tail of a grid that starts at t <= strength (SDEdit: start from a partly noised source)."""
    check_strength(strength)
    keep = ts[ts <= strength + 1e-6]
    if keep.numel() == 0 or keep[0] < strength - 1e-6:
        keep = torch.cat([torch.tensor([strength]), keep])
    return keep
