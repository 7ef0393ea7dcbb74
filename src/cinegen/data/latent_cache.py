"""Pre-encoded training data for the DiT: VAE latents per bucket, prompt embeddings, and the data source's extras,
in one safetensors file.

Encoding every clip once (instead of every step) is what makes DiT training affordable on a CPU.
Keys: `latents.<T>x<H>x<W>` (N, C, t, h, w); `captions.<T>x<H>x<W>` (N, K) indices into the caption table;
`extras.<name>.<T>x<H>x<W>` (N, c, t, h, w) each of the source's latent extras (data.sources.VideoSource.
latent_extras; the toy world's `objects`: 1 where a latent cell touches an object); `text_emb` (N_captions, S, Dt)
and `text_len` (N_captions,). Metadata: `format` ("2"), `captions` (JSON list; index 0 is the empty prompt used for
classifier-free guidance), `source` (the recipe's [data] table that made the clips), `source_version`,
`vae_config`, `text_config`.

Caches written before format 2 (no `format` key) still load: they are toy-world caches whose `data_config` is the
[data] table, `world_version` the source version (absent: before 2026-11-27), and `objects.<grid>` the objects
extra; their `tracks.*` / `shapes.*` fed the DiT shape loss, which was removed, and are left unread.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import to_dict
from cinegen.data.sources import VideoSource
from cinegen.io.files import atomic_write
from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar

log = logging.getLogger(__name__)
FORMAT = "2"
LEGACY_WORLD = "before 2026-11-27"       # what a toy-world cache without `world_version` was rendered by


@dataclass
class LatentBucket:
    latents: torch.Tensor        # (N, C, t, h, w)
    captions: torch.Tensor       # (N, K) long indices into the caption table
    extras: dict[str, torch.Tensor] = field(default_factory=dict)   # name -> (N, c, t, h, w)


@dataclass
class LatentCache:
    buckets: dict[tuple[int, int, int], LatentBucket]
    text_emb: torch.Tensor       # (N_captions, S, Dt)
    text_len: torch.Tensor       # (N_captions,)
    captions: list[str]
    source: dict = field(default_factory=dict)    # the [data] table that made the clips
    source_version: str = ""

    def text(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B,) caption indices -> (B, S, Dt) embeddings and (B, S) bool mask."""
        emb = self.text_emb[idx]
        mask = torch.arange(emb.shape[1])[None] < self.text_len[idx][:, None]
        return emb, mask

    def missing(self, names) -> list[str]:
        """The extras among `names` that some bucket lacks."""
        return [n for n in names if any(n not in b.extras for b in self.buckets.values())]


def build_latent_cache(vae, text_encoder, source: VideoSource, path: Path, batch: int = 16) -> LatentCache:
    """Encodes the source's training clips on the VAE's device; the cache itself lives on the CPU."""
    samples = source.clips("train")
    encoder = LatentEncoder(vae, text_encoder, source, batch)
    with progress_bar() as bar:
        task = bar.add_task("encoding latents", total=len(samples), status="")
        for start in range(0, len(samples), batch):
            encoder.add(samples[start:start + batch])
            bar.advance(task, len(samples[start:start + batch]))
    cache = encoder.finish()
    save_latent_cache(cache, path, vae.cfg, text_encoder.cfg)
    return cache


class LatentEncoder:
    """Clips in, a LatentCache out: add() encodes samples as they come (grouped by grid, `batch` at a time);
    finish() embeds every caption seen once. Whole caches (build_latent_cache) and the shards of a prepared
    footage folder (data/shards.py) are both made by it."""

    def __init__(self, vae, text_encoder, source: VideoSource, batch: int = 16):
        self.vae, self.text_encoder, self.source, self.batch = vae, text_encoder, source, batch
        self.device = next(vae.parameters()).device
        self.index = {"": 0}
        self.grouped: dict[tuple, list] = defaultdict(list)
        self.clips = 0

    @torch.no_grad()
    def add(self, samples: list) -> None:
        for start in range(0, len(samples), self.batch):
            chunk = samples[start:start + self.batch]
            for grid in sorted({s.video.shape[:3] for s in chunk}):
                same = [s for s in chunk if s.video.shape[:3] == grid]
                x = torch.stack([video_to_tensor(s.video) for s in same]).to(self.device)
                z = self.vae.encode(x).cpu()                                                  # (b, C, t, h, w)
                for s, zi in zip(same, z):
                    caps = [self.index.setdefault(c, len(self.index)) for c in s.captions]
                    self.grouped[tuple(grid)].append((zi, caps, self.source.latent_extras(s, self.vae.cfg)))
            self.clips += len(chunk)

    def finish(self) -> LatentCache:
        captions = list(self.index)
        emb, length = _embed(self.text_encoder, captions)
        return LatentCache({k: _bucket(v) for k, v in self.grouped.items()}, emb, length, captions,
                           self.source.table(), self.source.version)


def _embed(text_encoder, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, S, Dt) embeddings, (N,) lengths of every caption, 256 at a time."""
    from cinegen.models.text_encoder import pad_embeddings
    per_caption = []
    for start in range(0, len(captions), 256):
        emb, mask = text_encoder.encode(captions[start:start + 256])                          # (n, S, Dt)
        per_caption += [e[:m.sum()] for e, m in zip(emb, mask)]
    emb, mask = pad_embeddings(per_caption)                                                   # (N, S, Dt)
    return emb, mask.sum(1)


def _bucket(items: list) -> LatentBucket:
    """items: one (latents, caption indices, extras) per clip of one grid. A clip with fewer captions than another
    repeats its own, so that training draws each clip's captions alike."""
    z, caps, extras = zip(*items)
    k = max(len(c) for c in caps)
    caps = [(list(c) * k)[:k] for c in caps]
    return LatentBucket(torch.stack(z), torch.tensor(caps), {n: torch.stack([e[n] for e in extras]) for n in extras[0]})


def save_latent_cache(cache: LatentCache, path: Path, vae_cfg, text_cfg=None) -> None:
    tensors = {"text_emb": cache.text_emb.contiguous(), "text_len": cache.text_len.contiguous()}
    for (t, h, w), b in cache.buckets.items():
        grid = f"{t}x{h}x{w}"
        tensors[f"latents.{grid}"] = b.latents.contiguous()
        tensors[f"captions.{grid}"] = b.captions.contiguous()
        tensors.update({f"extras.{name}.{grid}": x.contiguous() for name, x in b.extras.items()})
    meta = {"format": FORMAT, "captions": json.dumps(cache.captions), "source": json.dumps(cache.source),
            "source_version": cache.source_version, "vae_config": json.dumps(to_dict(vae_cfg))}
    if text_cfg is not None:
        meta["text_config"] = json.dumps(to_dict(text_cfg))
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_latent_cache(path: Path, text_cfg=None, source: VideoSource | None = None) -> LatentCache:
    """text_cfg: the run's text encoder config; a cache whose prompt embeddings came from another one is refused.
    source: the run's data source; a cache made by another version of it is named in a warning (and kept: a
    resumed run trains on the data it started with)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        _check_text(path, meta, text_cfg)
        legacy = "format" not in meta
        if legacy and "data_config" not in meta:
            raise ValueError(f"{path} is not a cinegen latent cache (no format or data_config metadata): delete it "
                             "and the run builds the cache again")
        buckets = {_grid(k): _read_bucket(f, k.split(".", 1)[1], legacy) for k in f.keys() if k.startswith("latents.")}
        emb, length = f.get_tensor("text_emb"), f.get_tensor("text_len")
    table = {"source": "toyworld", **json.loads(meta["data_config"])} if legacy else json.loads(meta["source"])
    version = meta.get("world_version", LEGACY_WORLD) if legacy else meta.get("source_version", "")
    cache = LatentCache(buckets, emb, length, json.loads(meta["captions"]), table, version)
    if source is not None and table.get("source") == source.name and version != source.version:
        log.warning("latent cache %s was made by %s version %s, this code's is %s; its clips stay as they are (delete "
                    "it to make them anew)", path, source.name, version, source.version)
    return cache


def _check_text(path: Path, meta: dict, text_cfg) -> None:
    if text_cfg is not None and "text_config" in meta and json.loads(meta["text_config"]) != json.loads(
            json.dumps(to_dict(text_cfg))):
        raise ValueError(f"latent cache {path} was built with text encoder {meta['text_config']}, this run uses "
                         f"{to_dict(text_cfg)}: delete it or use another out folder")


def _grid(key: str) -> tuple[int, int, int]:
    return tuple(int(v) for v in key.split(".", 1)[1].split("x"))


def _read_bucket(f, grid: str, legacy: bool) -> LatentBucket:
    keys = set(f.keys())
    if legacy:    # format 1 kept the toy world's object maps as objects.<grid> (uint8, as now)
        extras = {"objects": f.get_tensor(f"objects.{grid}")} if f"objects.{grid}" in keys else {}
    else:
        extras = {k.split(".")[1]: f.get_tensor(k) for k in keys if k.startswith("extras.") and k.endswith("." + grid)}
    return LatentBucket(f.get_tensor(f"latents.{grid}"), f.get_tensor(f"captions.{grid}"), extras)
