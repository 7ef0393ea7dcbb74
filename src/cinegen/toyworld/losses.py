"""The toy world's plug-in loss terms (data.sources.LossTerm), which only a world that knows where its objects are
can feed: ObjectWeight for a DiT stage, ShapeTerm for a decoder trained on DiT latents. ToyWorld.loss_terms builds
them from a recipe's [terms] table; the trainers add what they return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from cinegen.data.sources import TermContext
from cinegen.diffusion.flow import masked_mse
from cinegen.toyworld.shapes import ShapeReader, load_or_train_reader, shape_loss
from cinegen.toyworld.world import Clip

log = logging.getLogger(__name__)

# --- Object maps: where the objects are, in latent cells (the DiT's loss weights them up) ---

OBJECT_MARGIN_PX = 2.0       # a cell within this many pixels of an object's outline counts: its edge lives there


def object_map(clip: Clip, vae_cfg) -> torch.Tensor:
    """(1, t, h, w) in {0, 1}: 1 where a latent cell's pixels, in any frame it encodes, come within
    OBJECT_MARGIN_PX of the circle of the object's track radius r. Every shape fits in that circle except a box,
    whose corners reach 1.2 r: a large box's overshoot the margin by 0.2 px (rarely into an unmarked cell).
    Causal grouping as the VAE's: frame 0 alone, then temporal_factor frames per latent frame;
    spatial_factor x spatial_factor pixels per cell."""
    n, height, width = clip.video.shape[:3]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    pixels = np.zeros((n, height, width), bool)                                    # (T, H, W)
    for track in clip.tracks.values():                                             # (T, 3): x, y, radius in px
        for f, (cx, cy, r) in enumerate(track):
            pixels[f] |= (xx - cx) ** 2 + (yy - cy) ** 2 <= (r + OBJECT_MARGIN_PX) ** 2
    tf, sf = vae_cfg.temporal_factor, vae_cfg.spatial_factor
    x = torch.from_numpy(pixels).float()[None, None]                               # (1, 1, T, H, W)
    first = torch.nn.functional.max_pool3d(x[:, :, :1], (1, sf, sf))               # (1, 1, 1, h, w)
    rest = torch.nn.functional.max_pool3d(x[:, :, 1:], (tf, sf, sf)) if n > 1 else first[:, :, :0]
    return torch.cat([first, rest], 2)[0]                                          # (1, t, h, w)


@dataclass
class ObjectWeight:
    """Latent cells that touch an object count (1 + weight) times in the flow-matching loss (shipped since step 9,
    docs/history.md "The low-noise DiT learns the objects"). Objects are about a quarter of the cells, so an
    unweighted loss is mostly background; the autoencoder's edge weight answers the same problem in pixels.

    The trainer's own loss is the plain masked mean over cells, so this term returns what weighting changes: the
    weighted mean (each sample's error over its weights, as diffusion.flow.masked_mse normalises) less the plain
    one. Their sum is exactly the weighted loss that steps 9 to 12 trained with."""
    weight: float
    name: str = "object_weight"
    needs: tuple[str, ...] = ("objects",)

    def __call__(self, batch, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor | None):
        """batch.loss_mask (B, 1, T, H, W): 0 on conditioning frames; batch.extras["objects"] the same shape."""
        objects = batch.extras["objects"].to(prediction.device).float()
        mask = batch.loss_mask.to(prediction.device)
        weighted = masked_mse(prediction, target, mask * (1 + self.weight * objects))      # (B,)
        return (weighted - masked_mse(prediction, target, mask)).mean()


# --- The decoder's shape loss ---

READER_FILE = "shape_reader.safetensors"


@dataclass
class ShapeTerm:
    """The shape reader's cross-entropy on every object of a decoded DiT-latent clip, times `weight` (the decoder of
    step 8 trained with it, docs/history.md "The decoder learns the DiT's own latents"). Round-trip batches carry no
    tracks: nothing to add there."""
    reader: ShapeReader
    weight: float
    name: str = "shape"
    needs: tuple[str, ...] = ("tracks", "shapes")

    def __call__(self, batch, prediction: torch.Tensor, target: torch.Tensor, t: torch.Tensor | None):
        """prediction: the decoded clip (B, 3, T, H, W); batch.extras: tracks (B, K, T, 3), shapes (B, K)."""
        if "tracks" not in batch.extras:
            return None
        dev = prediction.device
        return self.weight * shape_loss(self.reader, prediction, batch.extras["tracks"].to(dev),
                                        batch.extras["shapes"].to(dev))


def shape_term(terms, ctx: TermContext) -> ShapeTerm:
    """The frozen reader of a vae stage, trained on the run's rendered clips of the pairs' size, or resumed from the
    run folder so that a resumed run keeps its loss (one reader for every torchrun rank: load_or_train_reader)."""
    pairs = ctx.pairs
    if pairs is None or "tracks" not in pairs.extras:
        raise ValueError("terms.shape_weight needs dit_latents with object tracks (a file from this version of "
                         "`cinegen dit-latents`): the shape loss reads the decoded DiT latents")
    size = tuple(pairs.videos.shape[1:])

    def reader_clips() -> list[Clip]:
        clips = [s.extras["clip"] for s in ctx.pool if s.video.shape == size]
        if len(clips) < 10:
            raise ValueError(f"the shape reader trains on rendered clips of the pairs' size {size}: this run renders "
                             f"{len(clips)} of them; add that bucket to data.buckets")
        return clips
    reader = load_or_train_reader(ctx.out / READER_FILE, reader_clips, terms.shape_reader_steps, terms, ctx.info,
                                  ctx.device)
    return ShapeTerm(reader, terms.shape_weight)
