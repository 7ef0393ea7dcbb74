"""Open weights from a local path: a Diffusers folder (e.g. Wan2.1-T2V-1.3B-Diffusers) runs through diffusers.

    cinegen generate --model /path/to/Wan2.1-T2V-1.3B-Diffusers "a red ball bounces" --size 832x480

Nothing is ever downloaded: diffusers is called with local_files_only=True and HF_HUB_OFFLINE. The wrapper has
the same `generate(prompt, SampleConfig, callback=...) -> (T, H, W, 3) uint8` as TextToVideo, so the CLI and
the server treat both alike. Conditioning modes (animate, extend, ...) need our own VAE/DiT and say so.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from cinegen.config import SampleConfig


def is_diffusers_folder(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "model_index.json").is_file()


class DiffusersVideo:
    """A diffusers text-to-video pipeline behind cinegen's generate signature."""

    def __init__(self, pipe, name: str):
        self.pipe, self.name = pipe, name

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | None = None) -> "DiffusersVideo":
        try:
            from diffusers import DiffusionPipeline
        except ImportError:
            raise ValueError("this model folder is a Diffusers pipeline; install diffusers and accelerate "
                             "(pip install 'cinegen[peers]') to run it") from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = torch.bfloat16 if device == "cuda" else torch.float32      # bf16 on GPU; the CPU wants fp32
        try:
            pipe = DiffusionPipeline.from_pretrained(str(path), local_files_only=True, dtype=dtype)
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot load the Diffusers pipeline in {path}: {e}") from None
        return cls(pipe.to(device), Path(path).name)

    def generate(self, prompt: str, cfg: SampleConfig = SampleConfig(), callback=None) -> np.ndarray:
        from cinegen.pipeline import validate_request
        validate_request(prompt, cfg)
        if cfg.guidance_high is not None:        # not mapped onto Wan2.2's guidance_scale_2: untested here
            raise ValueError(f"guidance_high={cfg.guidance_high} applies to cinegen models with a high-noise "
                             f"expert, not to the Diffusers pipeline {self.name}")
        steps = cfg.steps

        def on_step(pipe, i, t, kwargs):
            if callback is not None:
                callback({"i": i, "t": float(t) / 1000.0, "steps": steps})
            return kwargs
        out = self.pipe(prompt=prompt, negative_prompt=cfg.negative_prompt or None, height=cfg.height, width=cfg.width,
                        num_frames=cfg.num_frames, num_inference_steps=steps, guidance_scale=cfg.guidance,
                        generator=torch.Generator().manual_seed(cfg.seed), output_type="np",
                        callback_on_step_end=on_step)
        frames = np.asarray(out.frames[0])                                         # (T, H, W, 3) float in [0, 1]
        return (frames.clip(0, 1) * 255).round().astype(np.uint8)
