"""Provenance: what every output says about where it came from, and an optional invisible watermark.

Metadata: each MP4 carries `generator`, `model`, `prompt_sha256` and `seed` tags (see `provenance_tags`),
readable by any MP4 tool (`ffprobe`, PyAV). The prompt itself is hashed, not stored, so a shared clip does not
leak a studio's prompt, yet a studio holding the prompt can prove the match.

Watermark: invisible-watermark's DWT-DCT-SVD method (the one Stable Diffusion ships) embeds a fixed 32-bit
cinegen signature in every frame; `detect_watermark` decodes each frame and votes. Measured here: the signature
survives H.264 re-encoding at CRF 23 with every bit intact, while unmarked clips match about half the bits
(chance). The library refuses frames smaller than 256x256, so marking a smaller video is an error, not a
silent no-op.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

GENERATOR = "cinegen 0.1.0"
METHOD = "dwtDctSvd"
MIN_SIDE = 256
# 32 bits drawn once from a fixed seed: the cinegen signature
SIGNATURE = [int(b) for b in np.random.default_rng(0xC1E6E4).integers(0, 2, 32)]
DETECT_THRESHOLD = 0.9          # share of signature bits that must match; unmarked clips score about 0.5


def provenance_tags(model: str, prompt: str, seed: int, **extra) -> dict[str, str]:
    tags = {"generator": GENERATOR, "model": model, "seed": str(seed),
            "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest()}
    tags.update({k: str(v) for k, v in extra.items()})
    return tags


def read_tags(path: str | Path) -> dict[str, str]:
    import av
    with av.open(str(path)) as container:
        return dict(container.metadata)


def _check_size(video: np.ndarray) -> None:
    h, w = video.shape[1:3]
    if min(h, w) < MIN_SIDE:
        raise ValueError(f"the invisible watermark needs frames of at least {MIN_SIDE}x{MIN_SIDE} "
                         f"(invisible-watermark's limit); this video is {w}x{h}")


def embed_watermark(video: np.ndarray) -> np.ndarray:
    """(T, H, W, 3) uint8 RGB -> the same frames carrying the cinegen signature."""
    from imwatermark import WatermarkEncoder
    _check_size(video)
    enc = WatermarkEncoder()
    enc.set_watermark("bits", SIGNATURE)
    # the library works on OpenCV's BGR order
    return np.stack([enc.encode(np.ascontiguousarray(f[:, :, ::-1]), METHOD)[:, :, ::-1] for f in video])


@dataclass(frozen=True)
class WatermarkResult:
    detected: bool
    bit_accuracy: float          # share of signature bits matched after a per-bit vote over frames
    frames: int


def detect_watermark(video: np.ndarray) -> WatermarkResult:
    from imwatermark import WatermarkDecoder
    _check_size(video)
    dec = WatermarkDecoder("bits", len(SIGNATURE))
    bits = np.array([dec.decode(np.ascontiguousarray(f[:, :, ::-1]), METHOD) for f in video], dtype=float)  # (T, 32)
    voted = (bits.mean(axis=0) > 0.5).astype(int)
    accuracy = float(np.mean(voted == np.array(SIGNATURE)))
    return WatermarkResult(accuracy >= DETECT_THRESHOLD, accuracy, len(video))
