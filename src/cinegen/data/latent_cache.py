"""Pre-encoded training data for the DiT: VAE latents per bucket plus prompt embeddings, in one safetensors file.

Encoding every clip once (instead of every step) is what makes DiT training affordable on a CPU.
Keys: `latents.<T>x<H>x<W>` (N, C, t, h, w) and `captions.<T>x<H>x<W>` (N, K) indices into the caption table;
`text_emb` (N_captions, S, Dt) and `text_len` (N_captions,). Metadata: `captions` (JSON list; index 0 is the
empty prompt used for classifier-free guidance), `data_config`, `vae_config`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import DataConfig, to_dict
from cinegen.data.clips import render_pool, video_to_tensor
from cinegen.data.world import canonical_caption, paraphrase_caption
from cinegen.training.checkpoint import atomic_write
from cinegen.training.common import progress_bar

CAPTIONS_PER_CLIP = 3        # canonical + two paraphrases: the model must follow wording it was not drilled on


@dataclass
class LatentBucket:
    latents: torch.Tensor        # (N, C, t, h, w)
    captions: torch.Tensor       # (N, K) long indices into the caption table


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
                    grouped[tuple(shape)].append((zi, [index.setdefault(t, len(index)) for t in texts]))
            bar.advance(task, len(chunk))
    captions = list(index)
    from cinegen.models.text_encoder import pad_embeddings
    per_caption = []
    for start in range(0, len(captions), 256):
        emb, mask = text_encoder.encode(captions[start:start + 256])                          # (n, S, Dt)
        per_caption += [e[:m.sum()] for e, m in zip(emb, mask)]
    emb, mask = pad_embeddings(per_caption)                                                   # (N, S, Dt)
    buckets = {k: LatentBucket(torch.stack([z for z, _ in v]), torch.tensor([c for _, c in v]))
               for k, v in grouped.items()}
    cache = LatentCache(buckets, emb, mask.sum(1), captions)
    save_latent_cache(cache, path, data, vae.cfg, text_encoder.cfg)
    return cache


def save_latent_cache(cache: LatentCache, path: Path, data: DataConfig, vae_cfg, text_cfg=None) -> None:
    tensors = {"text_emb": cache.text_emb.contiguous(), "text_len": cache.text_len.contiguous()}
    for (t, h, w), b in cache.buckets.items():
        tensors[f"latents.{t}x{h}x{w}"] = b.latents.contiguous()
        tensors[f"captions.{t}x{h}x{w}"] = b.captions.contiguous()
    meta = {"captions": json.dumps(cache.captions), "data_config": json.dumps(to_dict(data)),
            "vae_config": json.dumps(to_dict(vae_cfg))}
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
        for key in f.keys():
            if key.startswith("latents."):
                shape = tuple(int(v) for v in key.split(".", 1)[1].split("x"))
                buckets[shape] = LatentBucket(f.get_tensor(key), f.get_tensor("captions." + key.split(".", 1)[1]))
        emb, length = f.get_tensor("text_emb"), f.get_tensor("text_len")
    return LatentCache(buckets, emb, length, json.loads(meta["captions"]))
