"""The shape reader behind the decoder's shape loss (losses.ShapeTerm): a small CNN that names the toy-world shape
at the centre of a crop, crops around every rendered object, and the reader's training on rendered frames.

Pixel losses let a decoder draw every small object as a soft blob: a blob costs little more than a sharp triangle
under L1/MSE (docs/history.md, "Where shape is lost"). A reader trained on rendered frames, whose labels the
renderer gives for free, turns "draw the right shape" into a loss, as a perceptual loss does for natural images.

    tracks: (B, K, T, 3) per object and frame (x, y, radius) in pixels, as world.py draws them;
    shapes: (B, K) index into world.SHAPES, -1 where a clip has fewer than K objects.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar
from cinegen.toyworld.world import SHAPES, Clip
from cinegen.training import checkpoint as ckpt_io
from cinegen.training.common import DistInfo, broadcast_module

log = logging.getLogger(__name__)
CROP = 16          # pixels of a crop's side
SPAN = 1.6         # a crop reaches SPAN radii from the object's centre: the whole outline and a margin


class ShapeReader(nn.Module):
    """(N, 3, S, S) crops in [-1, 1], scaled so the object spans the same share of every crop -> (N, len(SHAPES))
    logits in the order of world.SHAPES."""

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


def object_tracks(clip: Clip, max_objects: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(tracks (K, T, 3), shapes (K,)) of one clip, K = max_objects: each object's (x, y, radius) in pixels per
    frame, as world.py drew it, and its index in SHAPES; a missing object has track 0 and shape -1."""
    tracks = torch.zeros(max_objects, clip.video.shape[0], 3)
    shapes = torch.full((max_objects,), -1, dtype=torch.long)
    for k, obj in enumerate(clip.scene.objects[:max_objects]):
        tracks[k] = torch.from_numpy(np.asarray(clip.tracks[k], dtype=np.float32))
        shapes[k] = SHAPES.index(obj.shape)
    return tracks, shapes


def clip_tracks(clips: list[Clip], max_objects: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(tracks (N, K, T, 3), shapes (N, K)) of clips of one length (object_tracks of each)."""
    tracks, shapes = zip(*[object_tracks(c, max_objects) for c in clips])
    return torch.stack(tracks), torch.stack(shapes)


def object_crops(video: torch.Tensor, tracks: torch.Tensor, jitter: torch.Tensor | None = None) -> torch.Tensor:
    """Differentiable crops, CROP x CROP, each reaching SPAN radii around an object's centre.
    video (B, 3, T, H, W), tracks (B, K, T, 3) -> (B * T * K, 3, CROP, CROP), ordered (b, t, k).
    jitter: (B, T, K, 3) offsets of (x, y) in radii and of the radius as a factor's log (reader training)."""
    b, _, t, h, w = video.shape
    k = tracks.shape[1]
    frames = rearrange(video, "b c t h w -> (b t) c h w")                          # (B*T, 3, H, W)
    xyr = rearrange(tracks, "b k t c -> (b t) k c")                                # (B*T, K, 3)
    if jitter is not None:
        j = rearrange(jitter, "b t k c -> (b t) k c")
        r = xyr[..., 2] * j[..., 2].exp()
        xyr = torch.stack([xyr[..., 0] + j[..., 0] * r, xyr[..., 1] + j[..., 1] * r, r], dim=-1)
    lin = torch.linspace(-SPAN, SPAN, CROP, device=video.device)
    r = xyr[..., 2].clamp(min=1.0)[..., None]                                      # (B*T, K, 1)
    gx = (xyr[..., :1] + lin * r) / w * 2 - 1                                      # (B*T, K, S): pixel x -> [-1, 1]
    gy = (xyr[..., 1:2] + lin * r) / h * 2 - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)   # (B*T, K, S, S, 2)
    grid = rearrange(grid, "n k s u c -> n (k s) u c")                             # K crops stacked in height
    crops = F.grid_sample(frames, grid, align_corners=False)                        # (B*T, 3, K*S, S)
    return rearrange(crops, "n c (k s) u -> (n k) c s u", k=k)


def _read(reader: ShapeReader, video: torch.Tensor, tracks: torch.Tensor, shapes: torch.Tensor,
          jitter: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, labels) of every present object in every frame: (M, len(SHAPES)), (M,)."""
    logits = reader(object_crops(video, tracks, jitter))                           # (B*T*K, len(SHAPES))
    labels = shapes[:, None, :].expand(-1, video.shape[2], -1).reshape(-1)         # (B, K) -> (B*T*K,), order (b, t, k)
    keep = labels >= 0
    return logits[keep], labels[keep]


def shape_loss(reader: ShapeReader, video: torch.Tensor, tracks: torch.Tensor, shapes: torch.Tensor,
               jitter: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the reader on every present object in every frame of video (B, 3, T, H, W)."""
    return F.cross_entropy(*_read(reader, video, tracks, shapes, jitter))


def train_shape_reader(clips: list[Clip], steps: int = 1500, batch: int = 8, seed: int = 0,
                       quiet: bool = False) -> tuple[ShapeReader, float]:
    """A reader trained on rendered frames (crops jittered by up to 0.15 radii and 15% in scale, so that it reads
    a shape drawn a pixel off its track); returns it frozen, with its accuracy on the last tenth of the clips.
    Seeded on a forked RNG, so the calling run's own random stream is left as it was."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _train_reader(clips, steps, batch, np.random.default_rng(seed), quiet)


def _train_reader(clips: list[Clip], steps: int, batch: int, rng: np.random.Generator, quiet: bool):
    split = len(clips) - max(1, len(clips) // 10)
    videos = torch.stack([video_to_tensor(c.video) for c in clips])                # (N, 3, T, H, W)
    tracks, shapes = clip_tracks(clips)
    reader = ShapeReader()
    opt = torch.optim.AdamW(reader.parameters(), lr=2e-3)
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task("shape reader", total=steps, status="")
        for _ in range(steps):
            idx = torch.from_numpy(rng.integers(split, size=batch))
            v, tr = videos[idx], tracks[idx]
            jitter = (torch.rand(batch, v.shape[2], tr.shape[1], 3) * 2 - 1) * 0.15     # (B, T, K, 3)
            loss = shape_loss(reader, v, tr, shapes[idx], jitter)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.update(task, advance=1, status=f"loss {loss.item():.3f}")
    reader.eval().requires_grad_(False)
    return reader, reader_accuracy(reader, videos[split:], tracks[split:], shapes[split:])


@torch.no_grad()
def reader_accuracy(reader: ShapeReader, videos: torch.Tensor, tracks: torch.Tensor, shapes: torch.Tensor) -> float:
    """Share of present objects (every frame) whose shape the reader names."""
    logits, labels = _read(reader, videos, tracks, shapes)
    return float((logits.argmax(1) == labels).float().mean())


def load_or_train_reader(path: Path, clips: Callable[[], list[Clip]], steps: int, config, info: DistInfo,
                         device: torch.device) -> ShapeReader:
    """A run's frozen reader, on `device`: resumed from `path`, so that a resumed run keeps its loss, or trained
    (rank 0) on clips() and saved there. Under torchrun every rank takes rank 0's weights: one reader, one loss."""
    reader = ShapeReader()
    if path.exists():
        reader.load_state_dict(ckpt_io.load_checkpoint(path)["model"])
    elif info.main:
        train_clips = clips()
        reader, accuracy = train_shape_reader(train_clips, steps=steps)
        log.info("shape reader: %.3f of the objects' shapes read right on %d held-out rendered clips", accuracy,
                 max(1, len(train_clips) // 10))
        ckpt_io.save_checkpoint(path, "shape_reader", config, reader, extra={"accuracy": accuracy})
    reader = reader.to(device).eval().requires_grad_(False)
    broadcast_module(reader, info)
    return reader
