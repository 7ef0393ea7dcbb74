"""The toy world as a data source (data.sources.VideoSource): pools of rendered clips with captions, object maps for
the latent cache, object tracks for DiT-latent pairs, and the world's two plug-in loss terms.

A recipe's tables:

    [data]                       # ToyWorldConfig
    source = "toyworld"
    num_clips = 4000
    buckets = [[17, 64, 64], [17, 64, 96]]
    holdout = ["purple triangle"]
    twins = true

    [terms]                      # ToyWorldTerms
    object_weight = 3.0          # a dit stage: latent cells that touch an object count 1 + 3 times
    shape_weight = 0.1           # a vae stage on DiT latents: the shape reader's loss
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from cinegen.data.sources import SPLITS, Sample, TermContext, VideoSource
from cinegen.runtime import progress_bar
from cinegen.toyworld.world import (
    WORLD_VERSION,
    Clip,
    SceneOdds,
    canonical_caption,
    caption_vocabulary,
    check_size,
    mirror_clip,
    object_count_odds,
    paraphrase_caption,
    random_clip,
    reverse_clip,
    validate_holdout,
)

# render seed offset of each split: training clips (plus the rank under torchrun), the clips train-vae measures
# latent statistics on, and the held-out clips train-vae scores and eval-vae reads: never a training clip
SEED_OFFSETS = {"train": 0, "stats": 10_000, "heldout": 20_000}
PARALLEL_FROM = 256      # clips; below this, starting worker processes costs more than it saves


@dataclass(frozen=True)
class ToyWorldConfig:
    num_clips: int = 2000
    buckets: tuple[tuple[int, int, int], ...] = ((17, 64, 64),)   # (frames, height, width) grids
    bucket_weights: tuple[float, ...] = ()     # one per bucket; empty: equal
    fps: float = 8.0
    holdout: tuple[str, ...] = ()              # attribute combinations no clip shows, e.g. "purple triangle"
    max_objects: int = 3
    seed: int = 0
    twins: bool = False      # also each clip mirrored / played backwards with opposite words (world.mirror_clip)
    # world.SceneOdds: weights of the scene draws (empty: the world's own odds); odds_objects: one per count
    # 1..max_objects; odds_backgrounds: black, gray, sky, photo; odds_shapes: ball, box, triangle, ring; odds_sizes:
    # small, large
    odds_objects: tuple[float, ...] = ()
    odds_backgrounds: tuple[float, ...] = ()
    odds_shapes: tuple[float, ...] = ()
    odds_sizes: tuple[float, ...] = ()

    def __post_init__(self):
        if self.num_clips < 0:
            raise ValueError(f"data.num_clips must be >= 0, got {self.num_clips}")
        for frames, height, width in self.buckets:
            if frames < 1:
                raise ValueError(f"data.buckets: a bucket needs at least 1 frame, got {(frames, height, width)}")
            check_size(width, height)
        if self.bucket_weights and len(self.bucket_weights) != len(self.buckets):
            raise ValueError(f"data.bucket_weights has {len(self.bucket_weights)} weights for "
                             f"{len(self.buckets)} buckets")
        validate_holdout(self.holdout)
        try:
            object_count_odds(self.max_objects, self.odds.objects)     # SceneOdds checks the others
        except ValueError as e:
            raise ValueError(f"data.{e}") from None

    @property
    def odds(self) -> SceneOdds:
        return SceneOdds(self.odds_objects, self.odds_backgrounds, self.odds_shapes, self.odds_sizes)


@dataclass(frozen=True)
class ToyWorldTerms:
    # extra loss weight on latent cells that touch an object (dit stages): the cell's error counts
    # (1 + object_weight) times. Objects are a few percent of the cells, so an unweighted loss is mostly background
    object_weight: float = 0.0
    # weight of the shape reader's loss on decoded DiT latents (vae stages with dit_latents; losses.ShapeTerm)
    shape_weight: float = 0.0
    shape_reader_steps: int = 1500    # training steps of that reader, on the run's rendered clips

    def __post_init__(self):
        for name in ("object_weight", "shape_weight"):
            if not 0 <= getattr(self, name) <= 100:
                raise ValueError(f"terms.{name} must be in [0, 100], got {getattr(self, name)}")
        if self.shape_reader_steps < 1:
            raise ValueError(f"terms.shape_reader_steps must be >= 1, got {self.shape_reader_steps}")


def parse_bucket(text: str) -> tuple[int, int, int]:
    """"FRAMESxHEIGHTxWIDTH" (e.g. "17x64x64") -> (frames, height, width)."""
    try:
        t, h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"bad bucket {text!r}: expected FRAMESxHEIGHTxWIDTH, e.g. 17x64x64") from None
    return t, h, w


class ToyWorld(VideoSource):
    name = "toyworld"
    config_class = ToyWorldConfig
    terms_class = ToyWorldTerms
    version = WORLD_VERSION

    def clips(self, split: str = "train", num: int | None = None, shard: int = 0, quiet: bool = False,
              workers: int | None = None) -> list[Sample]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        n = self.cfg.num_clips if num is None else num
        return render_pool(self.cfg, n, SEED_OFFSETS[split] + shard, quiet, workers)

    def latent_extras(self, sample: Sample, vae_cfg) -> dict[str, torch.Tensor]:
        from cinegen.toyworld.losses import object_map
        return {"objects": object_map(sample.extras["clip"], vae_cfg).to(torch.uint8)}

    def pair_extras(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        from cinegen.toyworld.shapes import clip_tracks
        tracks, shapes = clip_tracks([s.extras["clip"] for s in samples])
        return {"tracks": tracks, "shapes": shapes}

    def loss_terms(self, kind: str, terms: ToyWorldTerms, ctx: TermContext) -> list:
        from cinegen.toyworld import losses
        if kind == "dit" and terms.shape_weight:
            raise ValueError("terms.shape_weight is a loss on decoded DiT latents: it belongs to a vae stage with "
                             "dit_latents")
        if kind == "vae" and terms.object_weight:
            raise ValueError("terms.object_weight weights the DiT's flow-matching loss: it belongs to a dit stage")
        if kind == "dit":
            return [losses.ObjectWeight(terms.object_weight)] if terms.object_weight else []
        return [losses.shape_term(terms, ctx)] if terms.shape_weight else []

    def facts(self) -> dict:
        return {"holdout": list(self.cfg.holdout), "vocabulary": list(caption_vocabulary())}


def render_pool(cfg: ToyWorldConfig, num: int, seed_offset: int = 0, quiet: bool = False,
                workers: int | None = None) -> list[Sample]:
    """Renders `num` clips spread over the config's buckets; deterministic in (cfg.seed, seed_offset, index).
    cfg.twins: each clip is followed by its word-swapped twins (mirror_clip, reverse_clip) where they exist.
    workers: processes (default: every core for big pools); the pool is the same whatever the number."""
    if workers is None:    # under torchrun every rank renders its own pool: share the cores between them
        cores = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = max(cores, 1) if num >= PARALLEL_FROM else 1
    samples: list[Sample] = []
    with progress_bar(disable=quiet) as bar, contextlib.ExitStack() as stack:
        task = bar.add_task("rendering clips", total=num, status="")
        if workers > 1:   # spawn, not fork: the parent may already run torch's threads
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            rendered = pool.map(partial(_render_one, cfg, seed_offset=seed_offset), range(num), chunksize=16)
        else:
            rendered = (_render_one(cfg, i, seed_offset) for i in range(num))
        for group in rendered:                       # in index order either way
            samples += group
            bar.advance(task)
    return samples


def _render_one(cfg: ToyWorldConfig, index: int, seed_offset: int) -> list[Sample]:
    """Clip `index` (one generator per clip: clip i is the same whatever the pool size), then its twins."""
    rng = np.random.default_rng([cfg.seed, seed_offset, index])
    weights = np.array(cfg.bucket_weights or [1.0] * len(cfg.buckets), dtype=float)
    frames, h, w = cfg.buckets[int(rng.choice(len(cfg.buckets), p=weights / weights.sum()))]
    clip = random_clip(rng, w, h, frames, cfg.fps, cfg.holdout, cfg.max_objects, odds=cfg.odds)
    clips = [clip]
    if cfg.twins:
        clips += [t for t in (mirror_clip(clip, cfg.holdout), reverse_clip(clip, cfg.holdout)) if t]
    words = np.random.default_rng([cfg.seed, seed_offset, index, 1])   # apart: the clips stay as they were
    return [sample_of(c, words) for c in clips]


def sample_of(clip: Clip, rng: np.random.Generator) -> Sample:
    """A rendered clip as a Sample: its own caption, the canonical one and a paraphrase (the model must follow
    wording it was not drilled on); extras["clip"] is the clip itself, for its scene and object tracks."""
    captions = (clip.caption, canonical_caption(clip.scene), paraphrase_caption(clip.scene, rng))
    return Sample(clip.video, captions, clip.fps, {"clip": clip})
