"""Pools of rendered toy-world clips and the tensor conversions every trainer and evaluator uses."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from functools import partial

import numpy as np
import torch

from cinegen.config import DataConfig
from cinegen.data.world import Clip, mirror_clip, random_clip, reverse_clip
from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar


def _render_one(cfg: DataConfig, index: int, seed_offset: int) -> list[Clip]:
    """Clip `index` (one generator per clip: clip i is the same whatever the pool size), then its twins."""
    rng = np.random.default_rng([cfg.seed, seed_offset, index])
    weights = np.array(cfg.bucket_weights, dtype=float) / sum(cfg.bucket_weights)
    frames, h, w = cfg.buckets[int(rng.choice(len(cfg.buckets), p=weights))]
    clip = random_clip(rng, w, h, frames, cfg.fps, cfg.holdout, cfg.max_objects)
    if not cfg.twins:
        return [clip]
    return [clip] + [t for t in (mirror_clip(clip, cfg.holdout), reverse_clip(clip, cfg.holdout)) if t]


PARALLEL_FROM = 256      # clips; below this, starting worker processes costs more than it saves


def render_pool(cfg: DataConfig, num_clips: int | None = None, seed_offset: int = 0, quiet: bool = False,
                workers: int | None = None) -> list[Clip]:
    """Renders clips spread over the config's buckets; deterministic in (cfg.seed, seed_offset, index).
    cfg.twins: each clip is followed by its word-swapped twins (mirror_clip, reverse_clip) where they exist.
    workers: processes (default: every core for big pools); the pool is the same whatever the number."""
    n = num_clips if num_clips is not None else cfg.num_clips
    if workers is None:    # under torchrun every rank renders its own pool: share the cores between them
        cores = (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        workers = max(cores, 1) if n >= PARALLEL_FROM else 1
    clips: list[Clip] = []
    with progress_bar(disable=quiet) as bar, contextlib.ExitStack() as stack:
        task = bar.add_task("rendering clips", total=n, status="")
        if workers > 1:   # spawn, not fork: the parent may already run torch's threads
            pool = stack.enter_context(ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")))
            rendered = pool.map(partial(_render_one, cfg, seed_offset=seed_offset), range(n), chunksize=16)
        else:
            rendered = (_render_one(cfg, i, seed_offset) for i in range(n))
        for group in rendered:                       # in index order either way
            clips += group
            bar.advance(task)
    return clips


def sample_vae_batch(pool: list[Clip], rng: np.random.Generator, batch_size: int, frames: int, crop: int) -> torch.Tensor:
    """Random windows of `frames` frames and `crop`x`crop` pixels, random horizontal flips. (B, 3, T, crop, crop)."""
    out = []
    for _ in range(batch_size):
        video = pool[int(rng.integers(len(pool)))].video
        t0 = int(rng.integers(video.shape[0] - frames + 1))
        y0 = int(rng.integers(video.shape[1] - crop + 1))
        x0 = int(rng.integers(video.shape[2] - crop + 1))
        window = video[t0:t0 + frames, y0:y0 + crop, x0:x0 + crop]
        if rng.random() < 0.5:
            window = window[:, :, ::-1]
        out.append(video_to_tensor(np.ascontiguousarray(window)))
    return torch.stack(out)
