"""cinegen's own model (TextToVideo + modes) as a backend: every mode but inpaint (requests.NATIVE_MODES), on the
model's own frame grid."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen import defaults, modes
from cinegen import requests as R
from cinegen.backends.base import Capabilities
from cinegen.pipeline import TextToVideo


class NativeBackend:
    def __init__(self, pipe: TextToVideo, name: str = "cinegen-default"):
        self.pipe, self.name = pipe, name
        self.capabilities = Capabilities(R.NATIVE_MODES, pipe.geometry)

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, name: str | None = None, **kwargs) -> "NativeBackend":
        """kwargs: TextToVideo.from_pretrained's (device, compile, text_encoder, loras)."""
        return cls(TextToVideo.from_pretrained(path, **kwargs), name or (Path(path).name if path else "cinegen-default"))

    def estimate_configs(self):
        """(DiTConfig, VAEConfig, text tokens) for cinegen.estimate."""
        return self.pipe.dit.cfg, self.pipe.vae.cfg, 32

    def prepare(self, request: R.Request, unset=frozenset()) -> tuple[R.Request, list[str]]:
        """cinegen's defaults are the CLI's own, and its modes place frames on the grid themselves."""
        return request, []

    def check(self, request: R.Request) -> None:
        self.capabilities.check_mode(request, self.name)
        self.pipe.check(request.prompt, request.sample)

    def check_size(self, width: int, height: int) -> None:
        self.pipe.geometry.check_size(width, height)

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        return self.pipe.geometry.nearest_size(width, height)

    def warnings(self, request: R.Request) -> list[str]:
        return self.pipe.prompt_warnings(request.prompt)

    def batch_key(self, request: R.Request):
        """Text-to-video in one sampling pass batches: a render's noise is drawn from its own seed and the DiT
        treats batch rows apart, so each gets its lone result. Not batched: long videos (windowed, modes.long_video),
        the step cache (it would skip steps for the whole batch at once) and every conditioned mode."""
        cfg = request.sample
        if type(request) is not R.Text or cfg.seconds > defaults.WINDOW_SECONDS or cfg.cache > 0:
            return None
        return replace(cfg, seed=0)           # everything but the seed: same size, length, steps, guidance, negative

    def generate_batch(self, requests: list[R.Request], progress=None) -> list[np.ndarray]:
        keys = {self.batch_key(r) for r in requests}
        if not requests or None in keys or len(keys) > 1:
            raise ValueError("generate_batch takes text-to-video requests that differ in prompt and seed only "
                             "(one batch_key)")
        for r in requests:
            self.check(r)
        videos = self.pipe.generate_batch([r.prompt for r in requests], requests[0].sample,
                                          seeds=[r.sample.seed for r in requests], progress=progress)
        return list(videos)

    def generate(self, request: R.Request, progress=None) -> np.ndarray:
        self.check(request)
        p, cfg = self.pipe, request.sample
        match request:
            case R.Text():
                return modes.text_to_video(p, request.prompt, cfg, progress=progress)
            case R.Image():
                return modes.image(p, request.prompt, cfg, progress=progress)
            case R.Animate():
                return modes.animate(p, request.image, request.prompt, cfg, at=request.at, progress=progress)
            case R.Extend():
                return modes.extend(p, request.video, request.prompt, cfg, backward=request.backward, progress=progress)
            case R.Connect():
                connect = modes.transition if request.bridge_only else modes.connect
                return connect(p, request.video, request.video_b, request.prompt, cfg, progress=progress)
            case R.Loop():
                return modes.loop(p, request.video, request.prompt, cfg, progress=progress)
            case R.Keyframes():
                return modes.keyframes(p, request.prompt, cfg, list(request.keyframes), progress=progress)
            case R.Edit():
                return modes.edit(p, request.video, request.prompt, cfg, strength=request.strength, progress=progress)
        raise ValueError(f"unknown request {type(request).__name__}")
