"""The DiT's own latents paired with the real clips they came from: data for a decoder that draws what the DiT draws.

Why: the shipped decoder was trained on encoder latents only, and the DiT's latents are not encoder latents. A small
object's shape is read at 0.56 from the DiT's latent by a probe fitted on encoder latents, but at 0.27 (chance 0.25)
from the frame the decoder draws from it (docs/history.md, "Where shape is lost"). LTX-Video gives its decoder the last
denoising step for the same reason. Here each real clip is re-imagined (SDEdit) from a random strength with its own
caption: the DiT's final latents carry its habits (soft shapes, small drift), and the clip stays the answer the
decoder should give. Only a decoder is trained on these (a vae stage with `decoder_only = true` and
`dit_latents = FILE`), so the encoder, the latent space and every DiT trained on it stay valid.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import SampleConfig
from cinegen.data.sources import Sample
from cinegen.io.files import atomic_write
from cinegen.io.video import video_to_tensor
from cinegen.runtime import progress_bar


@dataclasses.dataclass
class LatentPairs:
    videos: torch.Tensor         # (N, T, H, W, 3) uint8: the real clips
    latents: torch.Tensor        # (N, C, t, h, w): the DiT's latents re-imagined from each clip
    strength: torch.Tensor       # (N,): the SDEdit strength each came from
    meta: dict = dataclasses.field(default_factory=dict)   # how they were made (model, data, latent_mean)
    # the source's per-clip tensors (VideoSource.pair_extras; the toy world's object tracks (N, K, T, 3) and
    # shapes (N, K), which its shape loss reads)
    extras: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return self.videos.shape[0]


def make_pairs(pipe, clips: list[Sample], strengths: tuple[float, ...], steps: int = 20, batch: int = 8,
               seed: int = 0, quiet: bool = False, extras: dict | None = None) -> LatentPairs:
    """SDEdit of every clip with its own caption; batch k of clips uses strengths[k % len(strengths)] (one strength
    per batch: generate_batch takes one), clip i the noise of seed + i. Every clip must have the same size.
    extras: per-clip tensors to keep beside the pairs (the source's pair_extras of `clips`)."""
    sizes = {c.video.shape for c in clips}
    if len(sizes) != 1:
        raise ValueError(f"latent pairs need clips of one size (one --bucket), got sizes {sorted(sizes)}")
    if not strengths or not all(0.0 < s < 1.0 for s in strengths):
        raise ValueError(f"strengths must be in (0, 1): 0 keeps the encoder's latent, 1 ignores the clip; got {strengths}")
    frames, height, width, _ = clips[0].video.shape
    latents, used = [], []
    with progress_bar(disable=quiet) as bar:
        task = bar.add_task("DiT latents", total=len(clips), status="")
        for k, start in enumerate(range(0, len(clips), batch)):
            group = clips[start:start + batch]
            strength = strengths[k % len(strengths)]
            cfg = SampleConfig(seconds=(frames - 1) / group[0].fps, fps=group[0].fps, width=width, height=height,
                               steps=steps, seed=seed + start)
            source = torch.cat([pipe.encode_video(c.video) for c in group])                 # (b, C, t, h, w)
            latents.append(pipe.generate_batch([c.caption for c in group], cfg, source=source, strength=strength,
                                               return_latents=True).cpu())
            used += [strength] * len(group)
            bar.update(task, advance=len(group))
    meta = {"latent_mean": pipe.vae.latent_mean.flatten().tolist(), "strengths": list(strengths), "steps": steps,
            "seed": seed}
    return LatentPairs(torch.from_numpy(np.stack([c.video for c in clips])), torch.cat(latents),
                       torch.tensor(used, dtype=torch.float32), meta, dict(extras or {}))


def save_pairs(pairs: LatentPairs, path: Path) -> None:
    tensors = {"videos": pairs.videos.contiguous(), "latents": pairs.latents.float().contiguous(),
               "strength": pairs.strength.contiguous()}
    tensors.update({f"extras.{k}": v.contiguous() for k, v in pairs.extras.items()})
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata={"info": json.dumps(pairs.meta)}))


def load_pairs(path: Path, latent_channels: int | None = None) -> LatentPairs:
    """latent_channels: the decoder's; a file from another latent space is refused with the numbers. Files from
    before `extras.*` keep the toy world's tracks and shapes under their own names, and load the same."""
    try:
        with safe_open(str(path), framework="pt") as f:
            extras = {k.removeprefix("extras."): f.get_tensor(k) for k in f.keys()
                      if k.startswith("extras.") or k in ("tracks", "shapes")}
            pairs = LatentPairs(f.get_tensor("videos"), f.get_tensor("latents"), f.get_tensor("strength"),
                                json.loads((f.metadata() or {}).get("info", "{}")), extras)
    except Exception as e:         # not a safetensors file, or one without these tensors
        raise ValueError(f"{path} is not a DiT-latent pair file (cinegen dit-latents): {e}") from None
    if len(pairs) == 0:
        raise ValueError(f"{path} holds no pairs")
    if latent_channels is not None and pairs.latents.shape[1] != latent_channels:
        raise ValueError(f"{path} holds {pairs.latents.shape[1]}-channel latents, the decoder takes {latent_channels}")
    return pairs


def sample_pair_batch(pairs: LatentPairs, rng: np.random.Generator, batch_size: int):
    """(latents (B, C, t, h, w), videos (B, 3, T, H, W) in [-1, 1], extras {name: (B, ...)}): whole clips, no flips
    (a flipped latent is not the latent of the flipped clip: the convolutions are not mirror-symmetric)."""
    idx = torch.from_numpy(rng.integers(len(pairs), size=batch_size))
    video = torch.stack([video_to_tensor(v) for v in pairs.videos[idx].numpy()])        # (B, 3, T, H, W)
    return pairs.latents[idx].float(), video, {k: v[idx] for k, v in pairs.extras.items()}
