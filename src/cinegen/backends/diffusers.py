"""Open weights from a local path: a Diffusers folder (e.g. Wan2.1-T2V-1.3B-Diffusers) runs through diffusers.

    cinegen generate --model /path/to/Wan2.1-T2V-1.3B-Diffusers "a red ball bounces" --size 832x480

Nothing is ever downloaded: diffusers is called with local_files_only=True and HF_HUB_OFFLINE. Text-to-video
only for now; any other mode is refused before loading work starts, naming the modes the folder can do.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cinegen import requests as R
from cinegen.backends.base import Capabilities
from cinegen.config import check_prompt
from cinegen.geometry import Geometry
from cinegen.runtime import default_device, report

# Wan2.1/2.2, LTX-Video, CogVideoX and HunyuanVideo all use a 4x temporal, 8x spatial VAE; their transformers
# patch 2x2 in space, so sizes are multiples of 16 and frame counts 1 + 4k.
DIFFUSERS_GEOMETRY = Geometry(frame_stride=4, cell=8, patch=(1, 2, 2))


def is_diffusers_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "model_index.json").is_file()


class DiffusersBackend:
    """A diffusers text-to-video pipeline behind the backend interface."""

    def __init__(self, pipe, name: str):
        self.pipe, self.name = pipe, name
        self.capabilities = Capabilities(("text",), DIFFUSERS_GEOMETRY)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> "DiffusersBackend":
        from cinegen.extras import require
        DiffusionPipeline = require("diffusers", "peers", f"{path} (a Diffusers pipeline)").DiffusionPipeline
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        device = device or default_device()
        dtype = torch.bfloat16 if device == "cuda" else torch.float32      # bf16 on GPU; the CPU wants fp32
        try:
            pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load the Diffusers pipeline in {path}: {e}") from None
        return cls(pipe.to(device), Path(path).name)

    def check(self, request: R.Request) -> None:
        self.capabilities.check_mode(request, self.name)
        check_prompt(request.prompt)
        cfg = request.sample
        self.capabilities.geometry.check_size(cfg.width, cfg.height)
        if cfg.guidance_high is not None:        # not mapped onto Wan2.2's guidance_scale_2: untested here
            raise ValueError(f"guidance_high={cfg.guidance_high} applies to cinegen models with a high-noise "
                             f"expert, not to the Diffusers pipeline {self.name}")

    def warnings(self, request: R.Request) -> list[str]:
        """None: open weights ship no training vocabulary, and their pipelines handle their own token windows."""
        return []

    def generate(self, request: R.Request, progress=None) -> np.ndarray:
        self.check(request)
        cfg = request.sample

        def on_step(pipe, i, t, kwargs):
            report(progress, "sampling", i + 1, cfg.steps, t=float(t) / 1000.0)
            return kwargs
        out = self.pipe(prompt=request.prompt, negative_prompt=cfg.negative_prompt or None, height=cfg.height,
                        width=cfg.width, num_frames=self.capabilities.geometry.frames(cfg.seconds, cfg.fps),
                        num_inference_steps=cfg.steps, guidance_scale=cfg.guidance,
                        generator=torch.Generator().manual_seed(cfg.seed), output_type="np",
                        callback_on_step_end=on_step)
        frames = np.asarray(out.frames[0])                                         # (T, H, W, 3) float in [0, 1]
        return (frames.clip(0, 1) * 255).round().astype(np.uint8)
