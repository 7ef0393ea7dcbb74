"""A footage folder prepared once for DiT training (`cinegen dataset prepare DIR --out CACHE`): its windows'
latents and captions' embeddings in safetensors shards, plus a manifest.

    CACHE/manifest.json          {"format", "settings": {data, vae (path, sha256), text}, "root", "complete",
                                  "shards": [{"file", "clips"}], "files": {rel: {sha256, bytes, shard, windows}},
                                  "skipped": {rel: why}}
    CACHE/shard-00000.safetensors  a latent cache (data/latent_cache.py, format 2) of some files' windows

A shard is written whole (temp file, then rename), then the manifest names it and its files (also atomically), so a
killed run leaves at worst stray temp files, which the next run deletes, and resumes with the first file no shard
holds. A file whose contents changed since it was prepared, or other settings, are refused with their names.
`PreparedCache` reads the folder back as a data source (`[data] source = "cache"`, `path = CACHE`) whose latents
the DiT trainer takes as they are.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch

from cinegen.config import TextConfig, to_dict
from cinegen.data.folder import FolderConfig, FolderSource, load_windows, survey
from cinegen.data.latent_cache import LatentBucket, LatentCache, LatentEncoder, load_latent_cache, save_latent_cache
from cinegen.data.sources import VideoSource
from cinegen.io.files import atomic_write
from cinegen.runtime import progress_bar

MANIFEST = "manifest.json"
FORMAT = "1"
SHARD_CLIPS = 256            # windows per shard: what a killed run may have to encode again


def file_hash(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def settings_of(cfg: FolderConfig, vae_path: Path, text_cfg: TextConfig) -> dict:
    """What the cache's contents depend on (not the root, which may move, nor skip_bad / heldout)."""
    data = {k: v for k, v in to_dict(cfg).items() if k not in ("root", "skip_bad", "heldout")}
    return json.loads(json.dumps({"data": data, "vae": {"path": str(vae_path), "sha256": file_hash(vae_path)},
                                  "text": to_dict(text_cfg)}))


def read_manifest(folder: Path) -> dict | None:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a cinegen cache manifest: {e}") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError(f"{path} is not a cinegen cache manifest (format {FORMAT})")
    return manifest


def _write_manifest(folder: Path, manifest: dict) -> None:
    atomic_write(folder / MANIFEST, lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=1)))


def prepare(cfg: FolderConfig, vae, text_encoder, vae_path: Path, out: Path, shard_clips: int = SHARD_CLIPS,
            quiet: bool = False) -> dict:
    """Encodes every usable file of cfg.root into shards under `out` (resuming a run there); returns the manifest.
    vae / text_encoder: the model's, on the device to encode on; vae_path: its file (hashed into the settings)."""
    out = Path(out)
    settings = settings_of(cfg, vae_path, text_encoder.cfg)
    manifest = read_manifest(out) or {"format": FORMAT, "settings": settings, "root": str(cfg.root), "complete": False,
                                      "shards": [], "files": {}, "skipped": {}}
    _check_settings(out, manifest["settings"], settings)
    out.mkdir(parents=True, exist_ok=True)
    for stray in out.glob(".*.tmp"):          # what a killed run was writing: never named by the manifest
        stray.unlink()
    source = FolderSource(cfg)
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task("probing footage", total=None, status="")
        found = survey(cfg, progress=lambda rel: bar.update(task, advance=1, status=rel))
        usable = source.usable(found)                                # refuses bad files unless skip_bad
        manifest["skipped"] = {p.rel: p.message for p in found.problems if p.fatal}
        hashes = {m.rel: file_hash(m.path) for m in usable}
        todo = [m for m in usable if not _done(manifest, m.rel, hashes[m.rel], out)]
        bar.update(task, description="encoding footage", total=len(todo), completed=0, status="")
        encoder, pending = LatentEncoder(vae, text_encoder, source), {}
        for m in todo:
            samples = load_windows(m, found.captions[m.rel], cfg)
            encoder.add(samples)
            pending[m.rel] = {"sha256": hashes[m.rel], "bytes": m.path.stat().st_size, "windows": len(samples)}
            if encoder.clips >= shard_clips:
                _flush(out, manifest, encoder, pending, vae.cfg, text_encoder.cfg)
                encoder, pending = LatentEncoder(vae, text_encoder, source), {}
            bar.update(task, advance=1, status=f"{sum(s['clips'] for s in manifest['shards']) + encoder.clips} clips, "
                                               f"{len(manifest['shards'])} shard(s)")
        if pending:
            _flush(out, manifest, encoder, pending, vae.cfg, text_encoder.cfg)
    manifest["complete"] = True
    _write_manifest(out, manifest)
    return manifest


def _check_settings(out: Path, saved: dict, settings: dict) -> None:
    if saved != settings:
        keys = sorted(f"{section}.{k}" for section in settings for k in set(settings[section]) | set(saved.get(section, {}))
                      if saved.get(section, {}).get(k) != settings[section].get(k))
        raise ValueError(f"{out} was prepared with other settings ({', '.join(keys)} differ): give another --out, "
                         "or delete it to prepare it anew")


def _done(manifest: dict, rel: str, sha: str, out: Path) -> bool:
    entry = manifest["files"].get(rel)
    if entry is None:
        return False
    if entry["sha256"] != sha:
        raise ValueError(f"{rel} changed since it was prepared into {out / entry['shard']}: delete {out} to prepare "
                         "the folder anew")
    return True


def _flush(out: Path, manifest: dict, encoder: LatentEncoder, pending: dict, vae_cfg, text_cfg) -> None:
    name = f"shard-{len(manifest['shards']):05d}.safetensors"
    save_latent_cache(encoder.finish(), out / name, vae_cfg, text_cfg)
    manifest["shards"].append({"file": name, "clips": encoder.clips})
    manifest["files"].update({rel: {**entry, "shard": name} for rel, entry in pending.items()})
    _write_manifest(out, manifest)


def load_prepared(folder: Path, text_cfg: TextConfig | None = None, vae_path: Path | None = None) -> LatentCache:
    """Every shard of a prepared folder as one LatentCache. text_cfg / vae_path: the run's; a cache made with
    another text encoder or another VAE file is refused."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        raise FileNotFoundError(f"no {MANIFEST} in {folder}: prepare it with cinegen dataset prepare")
    if not manifest.get("complete"):
        raise ValueError(f"{folder} is only partly prepared: run cinegen dataset prepare again to finish it")
    vae = manifest["settings"]["vae"]
    if vae_path is not None and file_hash(Path(vae_path)) != vae["sha256"]:
        raise ValueError(f"{folder} holds latents of the VAE {vae['path']} (sha256 {vae['sha256'][:12]}), not of "
                         f"{vae_path}: prepare it again with the model this run trains")
    shards = [load_latent_cache(folder / s["file"], text_cfg) for s in manifest["shards"]]
    if not shards:
        raise ValueError(f"{folder} holds no clips")
    return merge_caches(shards)


def merge_caches(caches: list[LatentCache]) -> LatentCache:
    """One cache of several: caption tables joined (each caption embedded once), buckets of one grid stacked."""
    from cinegen.models.text_encoder import pad_embeddings
    index: dict[str, int] = {}
    embs: list[torch.Tensor] = []
    parts: dict[tuple, list[LatentBucket]] = {}
    for c in caches:
        lut = []
        for i, cap in enumerate(c.captions):
            if cap not in index:
                index[cap] = len(index)
                embs.append(c.text_emb[i, :c.text_len[i]])                                    # (S_i, Dt)
            lut.append(index[cap])
        for grid, b in c.buckets.items():
            parts.setdefault(grid, []).append(LatentBucket(b.latents, torch.tensor(lut)[b.captions], b.extras))
    emb, mask = pad_embeddings(embs)
    buckets = {grid: _stack(bs) for grid, bs in parts.items()}
    return LatentCache(buckets, emb, mask.sum(1), list(index), caches[0].source, caches[0].source_version)


def _stack(buckets: list[LatentBucket]) -> LatentBucket:
    k = max(b.captions.shape[1] for b in buckets)
    caps = [b.captions.repeat(1, math.ceil(k / b.captions.shape[1]))[:, :k] for b in buckets]
    names = set.intersection(*(set(b.extras) for b in buckets))
    return LatentBucket(torch.cat([b.latents for b in buckets]), torch.cat(caps),
                        {n: torch.cat([b.extras[n] for b in buckets]) for n in names})


@dataclass(frozen=True)
class PreparedConfig:
    path: str = ""               # a folder written by cinegen dataset prepare


class PreparedCache(VideoSource):
    """A prepared folder as a data source: latents only, for DiT stages (a vae stage needs the footage itself)."""
    name = "cache"
    config_class = PreparedConfig

    def clips(self, split: str = "train", num: int | None = None, shard: int = 0, quiet: bool = False):
        raise ValueError(f"{self.cfg.path} is a prepared cache: it holds latents, not clips; train the autoencoder "
                         "on the footage folder itself (--data DIR)")

    def encoded(self, vae_path: Path, text_cfg: TextConfig) -> LatentCache:
        return load_prepared(Path(self.cfg.path), text_cfg, vae_path)

    def facts(self) -> dict:
        manifest = read_manifest(Path(self.cfg.path)) or {}
        return {"footage": manifest.get("root", ""), "cache": self.cfg.path}


def model_parts(model: Path | None) -> tuple[Path, TextConfig]:
    """A cinegen model folder's (default: the shipped model's) VAE file and the text config its DiT was trained
    with: what a prepared cache must be encoded with to train that model."""
    from cinegen.config import from_dict
    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.models.loading import read_extra
    folder = Path(model) if model else WEIGHTS_DIR
    for name in ("vae.safetensors", "dit.safetensors"):
        if not (folder / name).is_file():
            raise FileNotFoundError(f"no {name} in {folder}: --model takes a cinegen model folder")
    text = read_extra(folder / "dit.safetensors").get("text")
    return folder / "vae.safetensors", from_dict(TextConfig, text) if text else TextConfig()
