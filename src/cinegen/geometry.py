"""The frame and size rules of a loaded model, derived once from its VAE and its DiT's patch, so that no mode,
estimate or server check writes a stride of its own.

    geo = Geometry.of(vae.cfg, dit.cfg)          # shipped model: frame_stride 4, cell 8, patch (1, 2, 2)
    geo.frames(2.0, 8.0) == 17                   # pixel frames lie on the VAE's 1 + 4k grid
    geo.latent_frames(17) == 5                   # the first frame is alone, then one latent frame per 4
    geo.check_size(64, 48)                       # multiples of cell * patch (16 here)

Pixel frame f lives in latent frame (f + stride - 1) // stride: frame 0 alone, then groups of `frame_stride`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from cinegen import defaults
from cinegen.config import DiTConfig, VAEConfig, from_dict


@dataclass(frozen=True)
class Geometry:
    frame_stride: int                      # pixel frames per latent frame after the first (the VAE's temporal factor)
    cell: int                              # pixels per side of a latent cell (the VAE's spatial factor)
    patch: tuple[int, int, int] = (1, 1, 1)   # (pt, ph, pw) latent cells per token
    fps: float = defaults.FPS              # the rate the model was trained at

    @classmethod
    def of(cls, vae: VAEConfig, dit: DiTConfig, fps: float = defaults.FPS) -> "Geometry":
        return cls(vae.temporal_factor, vae.spatial_factor, tuple(dit.patch), fps)

    # --- sizes ---

    @property
    def width_multiple(self) -> int:
        return self.cell * self.patch[2]

    @property
    def height_multiple(self) -> int:
        return self.cell * self.patch[1]

    def check_size(self, width: int, height: int) -> None:
        """Raises ValueError naming the side that is not a positive multiple of what one token covers."""
        for name, v, m in (("width", width, self.width_multiple), ("height", height, self.height_multiple)):
            if not isinstance(v, int) or isinstance(v, bool) or v < m or v % m:
                raise ValueError(f"{name} must be a positive multiple of {m}, got {v!r}")

    def nearest_size(self, width: int, height: int) -> tuple[int, int]:
        """The size nearest (width, height) whose sides are positive multiples of what one token covers."""
        return tuple(max(m, round(v / m) * m) for v, m in ((width, self.width_multiple),
                                                            (height, self.height_multiple)))

    # --- frames ---

    def frames(self, seconds: float, fps: float) -> int:
        """Pixel frames for `seconds` at `fps`, rounded to the nearest point of the 1 + stride*k grid."""
        return 1 + self.frame_stride * max(0, round(seconds * fps / self.frame_stride))

    def latent_frames(self, frames: int) -> int:
        """Latent frames that encode `frames` pixel frames (those past the last full group are dropped)."""
        return 1 + (frames - 1) // self.frame_stride

    def frames_of(self, latent_frames: int) -> int:
        """Pixel frames that `latent_frames` latent frames decode to."""
        return 1 + self.frame_stride * (latent_frames - 1)

    def seconds_of(self, latent_frames: int, fps: float) -> float:
        """The `seconds` that gives exactly `latent_frames` latent frames at `fps` (frames() inverts it)."""
        return self.frame_stride * (latent_frames - 1) / fps

    def latent_index(self, frame: int) -> int:
        """The latent frame that pixel frame `frame` lives in."""
        return (frame + self.frame_stride - 1) // self.frame_stride

    def on_grid(self, frames: int) -> int:
        """The most frames <= `frames` that lie on the grid (a clip trimmed to what the VAE encodes whole)."""
        return self.frames_of(self.latent_frames(frames))

    def new_latents(self, seconds: float, fps: float) -> int:
        """Latent frames to add for `seconds` more video (extension, bridges): at least one."""
        return max(1, round(seconds * fps / self.frame_stride))

    # --- latents and tokens ---

    def latent_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) latent cells of a (frames, height, width) clip."""
        return self.latent_frames(frames), height // self.cell, width // self.cell

    def token_grid(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(t, h, w) spacetime patches: the DiT's token grid."""
        return tuple(n // p for n, p in zip(self.latent_grid(frames, height, width), self.patch))

    def tokens(self, frames: int, height: int, width: int) -> int:
        """L, the tokens of one DiT pass."""
        return math.prod(self.token_grid(frames, height, width))


def read_geometry(folder: str | Path) -> Geometry:
    """A cinegen model folder's geometry from its files' metadata alone: no weights are read (the server's app
    process checks sizes with it without loading a model)."""
    from safetensors import safe_open
    configs = {}
    for kind in ("vae", "dit"):
        with safe_open(str(Path(folder) / f"{kind}.safetensors"), framework="numpy") as f:
            configs[kind] = json.loads((f.metadata() or {}).get("config", "{}"))
    return Geometry.of(from_dict(VAEConfig, configs["vae"]), from_dict(DiTConfig, configs["dit"]))
