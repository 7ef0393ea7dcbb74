"""Pre-encoded training data for the DiT: VAE latents per bucket plus prompt embeddings, in one safetensors file.

Encoding every clip once (instead of every step) is what makes DiT training affordable on a CPU.
Keys: `latents.<T>x<H>x<W>` (N, C, t, h, w) and `captions.<T>x<H>x<W>` (N, K) indices into the caption table;
`objects.<T>x<H>x<W>` (N, 1, t, h, w), 1 where a latent cell touches an object (for `--object-weight`), with
`tracks.<T>x<H>x<W>` (N, K, T, 3) each object's (x, y, radius) in pixels per frame and `shapes.<T>x<H>x<W>` (N, K)
its index in data.world.SHAPES, -1 for no object (for `--shape-weight`); caches from before them lack the keys,
and `add_object_maps` re-renders their clips to add them;
`text_emb` (N_captions, S, Dt) and `text_len` (N_captions,). Metadata: `captions` (JSON list; index 0 is the
empty prompt used for classifier-free guidance), `data_config`, `vae_config`, `world_version` (the toy world's
WORLD_VERSION that rendered the clips; absent before 2026-11-27).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import DataConfig, TextConfig, VAEConfig, from_dict, to_dict
from cinegen.data.clips import render_pool
from cinegen.data.world import SHAPES, WORLD_VERSION, Clip, canonical_caption, paraphrase_caption
from cinegen.io.files import atomic_write
from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar

log = logging.getLogger(__name__)
WORLD_BEFORE_VERSIONS = "before 2026-11-27"       # what a cache without the field was rendered by

CAPTIONS_PER_CLIP = 3        # canonical + two paraphrases: the model must follow wording it was not drilled on


@dataclass
class LatentBucket:
    latents: torch.Tensor        # (N, C, t, h, w)
    captions: torch.Tensor       # (N, K) long indices into the caption table
    objects: torch.Tensor | None = None   # (N, 1, t, h, w) 1 where a latent cell touches an object, else 0
    tracks: torch.Tensor | None = None    # (N, K, T, 3) per object and pixel frame: x, y, radius in pixels
    shapes: torch.Tensor | None = None    # (N, K) long index into data.world.SHAPES, -1 where there is no object


@dataclass
class LatentCache:
    buckets: dict[tuple[int, int, int], LatentBucket]
    text_emb: torch.Tensor       # (N_captions, S, Dt)
    text_len: torch.Tensor       # (N_captions,)
    captions: list[str]

    def text(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) caption indices -> (B, S, Dt) embeddings and (B, S) bool mask."""
        emb = self.text_emb[idx]
        mask = torch.arange(emb.shape[1])[None] < self.text_len[idx][:, None]
        return emb, mask


@torch.no_grad()
def build_latent_cache(vae, text_encoder, data: DataConfig, path: Path, batch: int = 16) -> LatentCache:
    """Renders data's clips and encodes them on the VAE's device; the cache itself lives on the CPU."""
    device = next(vae.parameters()).device
    clips = render_pool(data)
    rng = np.random.default_rng(data.seed + 1)
    captions, index = [""], {"": 0}
    grouped: dict[tuple, list] = defaultdict(list)
    with progress_bar() as bar:
        task = bar.add_task("encoding latents", total=len(clips), status="")
        for start in range(0, len(clips), batch):
            chunk = clips[start:start + batch]
            for shape in {c.video.shape[:3] for c in chunk}:
                same = [c for c in chunk if c.video.shape[:3] == shape]
                z = vae.encode(torch.stack([video_to_tensor(c.video) for c in same]).to(device)).cpu()  # (b, C, t, h, w)
                for c, zi in zip(same, z):
                    texts = [c.caption, canonical_caption(c.scene)] + [paraphrase_caption(c.scene, rng)
                                                                       for _ in range(CAPTIONS_PER_CLIP - 2)]
                    grouped[tuple(shape)].append((zi, [index.setdefault(t, len(index)) for t in texts],
                                                  object_map(c, vae.cfg), *object_tracks(c)))
            bar.advance(task, len(chunk))
    captions = list(index)
    from cinegen.models.text_encoder import pad_embeddings
    per_caption = []
    for start in range(0, len(captions), 256):
        emb, mask = text_encoder.encode(captions[start:start + 256])                          # (n, S, Dt)
        per_caption += [e[:m.sum()] for e, m in zip(emb, mask)]
    emb, mask = pad_embeddings(per_caption)                                                   # (N, S, Dt)
    buckets = {k: _bucket(v) for k, v in grouped.items()}
    cache = LatentCache(buckets, emb, mask.sum(1), captions)
    save_latent_cache(cache, path, data, vae.cfg, text_encoder.cfg)
    return cache


def _bucket(items: list) -> LatentBucket:
    """items: one (latents, caption indices, object map, tracks, shapes) per clip of one grid."""
    z, caps, maps, tracks, shapes = zip(*items)
    return LatentBucket(torch.stack(z), torch.tensor(caps), torch.stack(maps), torch.stack(tracks), torch.stack(shapes))


def save_latent_cache(cache: LatentCache, path: Path, data: DataConfig, vae_cfg, text_cfg=None,
                      world_version: str = WORLD_VERSION) -> None:
    tensors = {"text_emb": cache.text_emb.contiguous(), "text_len": cache.text_len.contiguous()}
    for (t, h, w), b in cache.buckets.items():
        tensors[f"latents.{t}x{h}x{w}"] = b.latents.contiguous()
        tensors[f"captions.{t}x{h}x{w}"] = b.captions.contiguous()
        if b.objects is not None:
            tensors[f"objects.{t}x{h}x{w}"] = b.objects.to(torch.uint8).contiguous()
        if b.tracks is not None:
            tensors[f"tracks.{t}x{h}x{w}"] = b.tracks.float().contiguous()
            tensors[f"shapes.{t}x{h}x{w}"] = b.shapes.long().contiguous()
    meta = {"captions": json.dumps(cache.captions), "data_config": json.dumps(to_dict(data)),
            "vae_config": json.dumps(to_dict(vae_cfg)), "world_version": world_version}
    if text_cfg is not None:
        meta["text_config"] = json.dumps(to_dict(text_cfg))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_latent_cache(path: Path, text_cfg=None) -> LatentCache:
    """text_cfg: the run's text encoder config; a cache whose prompt embeddings came from another one is refused."""
    buckets: dict = {}
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        if text_cfg is not None and "text_config" in meta and json.loads(meta["text_config"]) != json.loads(
                json.dumps(to_dict(text_cfg))):
            raise ValueError(f"latent cache {path} was built with text encoder {meta['text_config']}, this run uses "
                             f"{to_dict(text_cfg)}: delete it or use another --out")
        world = meta.get("world_version", WORLD_BEFORE_VERSIONS)
        if world != WORLD_VERSION:
            # a warning, not a refusal: a resumed run keeps training on the data it started with
            log.warning("latent cache %s was rendered by the toy world of %s, this code renders %s (see "
                        "data.world.WORLD_VERSION: triangles were trapezoids before 2026-11-27); its clips stay as "
                        "they are: delete it to render them anew", path, world, WORLD_VERSION)
        for key in f.keys():
            if key.startswith("latents."):
                shape = tuple(int(v) for v in key.split(".", 1)[1].split("x"))
                grid = key.split(".", 1)[1]
                extra = {name: f.get_tensor(f"{name}.{grid}") for name in ("objects", "tracks", "shapes")
                         if f"{name}.{grid}" in f.keys()}
                if "objects" in extra:
                    extra["objects"] = extra["objects"].float()
                buckets[shape] = LatentBucket(f.get_tensor(key), f.get_tensor("captions." + grid), **extra)
        emb, length = f.get_tensor("text_emb"), f.get_tensor("text_len")
    return LatentCache(buckets, emb, length, json.loads(meta["captions"]))


# --- Object maps: where the objects are, in latent cells (the DiT's loss can weight them up) ---

OBJECT_MARGIN_PX = 2.0       # a cell within this many pixels of an object's outline counts: its edge lives there


def object_map(clip: Clip, vae_cfg: VAEConfig) -> torch.Tensor:
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


def object_tracks(clip: Clip, max_objects: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """(tracks (K, T, 3), shapes (K,)) of one clip, K = max_objects: each object's (x, y, radius) in pixels per
    frame, as data.world drew it, and its index in SHAPES; a missing object has track 0 and shape -1."""
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


def cache_has_object_maps(path: Path) -> bool:
    """Whether the cache file holds object maps, tracks and shapes for every bucket (reads the key list only)."""
    with safe_open(str(path), framework="pt") as f:
        keys = set(f.keys())
    grids = [k.split(".", 1)[1] for k in keys if k.startswith("latents.")]
    return all(f"{name}.{g}" in keys for g in grids for name in ("objects", "tracks", "shapes"))


def add_object_maps(path: Path) -> LatentCache:
    """Adds object maps, tracks and shapes to a cache built before they existed. The clips are re-rendered from the
    cache's own data config (rendering is deterministic per clip and far cheaper than encoding); each clip's
    caption must match the cached one, or the cache is refused rather than paired with the wrong objects.
    Rewrites the file atomically."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    data = from_dict(DataConfig, json.loads(meta["data_config"]))
    vae_cfg = from_dict(VAEConfig, json.loads(meta["vae_config"]))
    cache = load_latent_cache(path)
    grouped: dict[tuple, list[Clip]] = defaultdict(list)
    for c in render_pool(data):
        grouped[tuple(c.video.shape[:3])].append(c)
    for key, bucket in cache.buckets.items():
        clips = grouped.get(key, [])
        cached = [cache.captions[i] for i in bucket.captions[:, 0].tolist()]
        if len(clips) != len(bucket.latents) or [c.caption for c in clips] != cached:
            raise ValueError(f"latent cache {path}: re-rendering its data config does not give its clips back "
                             f"(bucket {key}: {len(clips)} clips rendered, {len(bucket.latents)} cached)")
        bucket.objects = torch.stack([object_map(c, vae_cfg) for c in clips])
        bucket.tracks, bucket.shapes = clip_tracks(clips)
    text_cfg = from_dict(TextConfig, json.loads(meta["text_config"])) if "text_config" in meta else None
    # the latents were encoded from the cache's own clips: its world version stays, whatever renders the maps
    save_latent_cache(cache, path, data, vae_cfg, text_cfg, meta.get("world_version", WORLD_BEFORE_VERSIONS))
    return cache
