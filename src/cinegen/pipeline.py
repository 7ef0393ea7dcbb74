"""TextToVideo.generate: the ONE inference path. CLI, server, evaluation and tests all call it.

    pipe = TextToVideo.from_pretrained()          # the shipped default model (src/cinegen/weights)
    video = pipe.generate("a large red ball bounces on a black background", SampleConfig(seconds=2))
    # video: (T, H, W, 3) uint8

Conditioning (issue 3) enters as latent-frame conditions (`Conditions`: clean latents + mask) and SDEdit as a
source latent plus a strength; the higher-level modes (animate, extend, loop, connect, edit) only build those.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cinegen import defaults
from cinegen.config import FlowConfig, SampleConfig, TextConfig, check_prompt, from_dict
from cinegen.diffusion.conditioning import make_cond
from cinegen.diffusion.flow import interpolate, shift_for
from cinegen.diffusion.samplers import cfg_model_fn, get_solver, step_cache
from cinegen.diffusion.schedules import shifted_ts, truncated_ts
from cinegen.geometry import Geometry
from cinegen.io.video import tensor_to_video, video_to_tensor
from cinegen.models.dit import VideoDiT, same_interface
from cinegen.models.fewstep import FewStep
from cinegen.models.loading import load_dit, load_vae
from cinegen.models.text_encoder import TextEncoder
from cinegen.models.vae import VideoVAE
from cinegen.runtime import autocast, default_device, report, sampling_threads
from cinegen.vocabulary import prompt_warnings, read_vocabulary

log = logging.getLogger(__name__)
WEIGHTS_DIR = defaults.WEIGHTS_DIR


@dataclass(frozen=True)
class Conditions:
    """Clean latents for some latent frames: latents (1, C, T, h, w), mask (1, 1, T, h, w) with 1 = given."""
    latents: torch.Tensor
    mask: torch.Tensor


def initial_noise(shape: tuple[int, ...], seed: int, n: int) -> torch.Tensor:
    """The starting noise of n renders of one latent `shape` (1, C, t, h, w): render i uses seed + i."""
    return noise_of(shape, range(seed, seed + n))


def noise_of(shape: tuple[int, ...], seeds) -> torch.Tensor:
    """The starting noise of one render of latent `shape` (1, C, t, h, w) per seed: (N, C, t, h, w). Each seed's
    noise is drawn alone, so a render gets the same noise in a batch as on its own."""
    return torch.cat([torch.randn(shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])


class TextToVideo:
    def __init__(self, dit: VideoDiT, vae: VideoVAE, text_encoder: TextEncoder, flow: FlowConfig, device="cpu",
                 compile: bool = False, high_noise: tuple[VideoDiT, float] | None = None,
                 vocabulary: frozenset[str] | None = None, fewstep: FewStep | None = None):
        """high_noise: (expert DiT, boundary t): the expert predicts while t >= boundary (Wan2.2's two experts:
        one for the noisy start, where layout and motion are decided, one for the rest). vocabulary: the words of
        the captions the DiT was trained with (None: unknown), for prompt_warnings. fewstep: the folder's few-step
        adapter (models/fewstep.py), used for the renders it serves."""
        if dit.cfg.latent_channels != vae.cfg.latent_channels:
            raise ValueError(f"DiT expects {dit.cfg.latent_channels} latent channels, VAE gives {vae.cfg.latent_channels}")
        self.dit, self.vae, self.text_encoder, self.flow = dit.eval(), vae.eval(), text_encoder, flow
        self.geometry = Geometry.of(vae.cfg, dit.cfg)
        self.device = torch.device(device)
        # torch.compile is optional: it pays off on GPUs and long runs, costs a warm-up on every new token grid
        self.dit_fn = torch.compile(self.dit, dynamic=True) if compile else self.dit
        self.high_noise, self.fewstep = None, fewstep
        self._experts = (dit, high_noise[0] if high_noise else None)       # uncompiled: the adapter merges into these
        if high_noise is not None:
            expert, boundary = high_noise
            if not same_interface(expert.cfg, dit.cfg):
                raise ValueError("the high-noise expert must take the same latents, conditioning and prompt tokens "
                                 f"as the DiT: {expert.cfg} against {dit.cfg}")
            self.high_noise = (torch.compile(expert.eval(), dynamic=True) if compile else expert.eval(), float(boundary))
        self.last_stats = {"calls": 0, "skipped": 0}
        self.vocabulary = vocabulary

    def _is_high_noise(self, t: torch.Tensor) -> bool:
        """Whether the high-noise expert predicts at time t (B,), all equal while sampling."""
        return self.high_noise is not None and float(t.flatten()[0]) >= self.high_noise[1]

    def _dit_for(self, t: torch.Tensor, students=None):
        """The DiT that predicts at t: the expert or the low-noise DiT (students: their adapted copies)."""
        if students is not None:
            return students[1] if self._is_high_noise(t) else students[0]
        return self.high_noise[0] if self._is_high_noise(t) else self.dit_fn

    def _students(self, cfg: SampleConfig, plain: bool):
        """The few-step adapted (DiT, expert) when the folder's adapter serves this render, else None."""
        if self.fewstep is None or not self.fewstep.info.serves(cfg, plain):
            return None
        return self.fewstep.students(*self._experts)

    def guidance_at(self, cfg: SampleConfig):
        """cfg.guidance, or a function of t: cfg.guidance_high while the high-noise expert predicts."""
        if cfg.guidance_high is None:
            return cfg.guidance
        if self.high_noise is None:
            raise ValueError(f"guidance_high={cfg.guidance_high} needs a model with a high-noise expert "
                             "(dit_high.safetensors); this one has none: use guidance alone")
        return lambda t: cfg.guidance_high if self._is_high_noise(t) else cfg.guidance

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, device: str | None = None, compile: bool = False,
                        text_encoder: str | None = None, loras=()) -> "TextToVideo":
        """Loads `path`/dit.safetensors and `path`/vae.safetensors (default: the shipped weights) onto `device`
        (default: the GPU when there is one). text_encoder: another copy of the encoder the DiT was trained with
        (a local folder, e.g. a GPU lease's packed MiniLM), in place of the one its file names. loras: adapters
        (config.LoraSpec) merged into the DiT they were trained on (models/lora.py)."""
        device = device or default_device()
        folder = Path(path) if path else WEIGHTS_DIR
        for name in ("dit.safetensors", "vae.safetensors"):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"no {name} in {folder}: pass a folder holding dit.safetensors and vae.safetensors")
        dit, flow = load_dit(folder / "dit.safetensors", device)
        vae = load_vae(folder / "vae.safetensors", device)
        high_noise = None
        if (folder / "dit_high.safetensors").is_file():          # a high-noise expert (cinegen export --dit-high)
            expert, expert_flow = load_dit(folder / "dit_high.safetensors", device)
            high_noise = (expert, expert_flow.t_min)
        if loras:
            from cinegen.models.lora import merge_adapters
            merge_adapters([dit] + ([high_noise[0]] if high_noise else []), list(loras))
        # the prompt encoder the DiT was trained with (older checkpoints: the shipped MiniLM)
        text_cfg = from_dict(TextConfig, dit.extra.get("text", {"dim": dit.cfg.text_dim}))
        if text_encoder:
            text_cfg = replace(text_cfg, name=text_encoder)
        return cls(dit, vae, TextEncoder(text_cfg, device=device), flow, device, compile, high_noise,
                   read_vocabulary(folder, dit.extra), FewStep.find(folder))

    # --- latent geometry ---

    def check(self, prompt: str, cfg: SampleConfig) -> None:
        """What SampleConfig cannot check alone: the prompt, this model's sizes, the solver's name."""
        check_prompt(prompt)
        self.geometry.check_size(cfg.width, cfg.height)
        get_solver(cfg.solver)

    def prompt_warnings(self, prompt: str) -> list[str]:
        """Warnings about what of `prompt` this model cannot follow: words outside its training captions, and a
        prompt longer than the text encoder's window (vocabulary.prompt_warnings). Empty when all is read."""
        tokens, ignored = self.text_encoder.overflow(prompt)
        return prompt_warnings(prompt, self.vocabulary, tokens, self.text_encoder.cfg.max_tokens, ignored)

    def num_frames(self, cfg: SampleConfig) -> int:
        """Pixel frames of a `cfg.seconds` render: on this model's frame grid."""
        return self.geometry.frames(cfg.seconds, cfg.fps)

    def latent_shape(self, cfg: SampleConfig) -> tuple[int, int, int, int, int]:
        """(1, C, t, h, w) of a render."""
        grid = self.geometry.latent_grid(self.num_frames(cfg), cfg.height, cfg.width)
        return (1, self.vae.cfg.latent_channels, *grid)

    def encode_video(self, video: np.ndarray) -> torch.Tensor:
        """(T, H, W, 3) uint8, T = 1 + 4k -> normalised latents (1, C, t, h, w)."""
        with torch.no_grad():
            return self.vae.encode(video_to_tensor(video)[None].to(self.device), chunk_frames=16)

    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """(1, C, t, h, w) -> (T, H, W, 3) uint8, decoded chunk by chunk so memory does not grow with length."""
        with torch.no_grad():
            return tensor_to_video(self.vae.decode(latents, chunk_frames=4)[0])

    def roundtrip(self, video: np.ndarray) -> np.ndarray:
        """(T, H, W, 3) uint8 through the autoencoder and back: the best any generated video can look."""
        return self.decode_latents(self.encode_video(video))

    # --- the one generate path ---

    @torch.no_grad()
    def generate(self, prompt: str, cfg: SampleConfig = SampleConfig(), *, conditions: Conditions | None = None,
                 source: torch.Tensor | None = None, strength: float = 1.0, progress=None,
                 return_latents: bool = False):
        """Text (+ optional conditions or SDEdit source) -> video (T, H, W, 3) uint8.

        conditions: clean latent frames to keep (image-to-video, extension, loops, keyframes).
        source: (1, C, t, h, w) latents of a video to re-imagine (SDEdit); strength 0 keeps it, 1 ignores it.
        progress: the one progress callback (runtime.report): {"phase": "sampling", "step", "steps", "t"} after each
        solver step, then {"phase": "decoding", ...}; raising from it stops the call within a step.
        """
        out = self.generate_batch([prompt], cfg, conditions=conditions, source=source, strength=strength,
                                  progress=progress, return_latents=return_latents)
        return out if return_latents else out[0]

    @torch.no_grad()
    def generate_batch(self, prompts: list[str], cfg: SampleConfig = SampleConfig(), *,
                       conditions: Conditions | None = None, source: torch.Tensor | None = None, strength: float = 1.0,
                       progress=None, return_latents: bool = False, seeds: list[int] | None = None):
        """Several prompts in one batch (one DiT call per step for all of them, both CFG halves included).
        Prompt i uses seed cfg.seed + i (or seeds[i]), so it gets what `generate` gives it alone with that seed.
        source: (1 or N, C, t, h, w) latents to re-imagine, one shared or one per prompt.
        Returns (N, T, H, W, 3) uint8 (or the (N, C, t, h, w) latents)."""
        if not prompts:
            raise ValueError("prompts must not be empty")
        for p in prompts:
            self.check(p, cfg)
        n = len(prompts)
        seeds = range(cfg.seed, cfg.seed + n) if seeds is None else seeds
        if len(seeds) != n:
            raise ValueError(f"seeds must hold one seed per prompt ({n}), got {len(seeds)}")
        if source is not None and source.shape[0] not in (1, n):
            raise ValueError(f"source must hold 1 or {n} (one per prompt) latent videos, got {source.shape[0]}")
        shape = self.latent_shape(cfg) if source is None else (1, *source.shape[1:])     # one prompt's noise
        noise = noise_of(shape, seeds).to(self.device)                                         # (N, C, t, h, w)
        tokens = math.prod(n // p for n, p in zip(shape[2:], self.dit.cfg.patch))                 # L of one pass
        ts = shifted_ts(cfg.steps, shift_for(tokens, self.flow))
        x = noise
        if source is not None:
            ts = truncated_ts(ts, strength)
            x = interpolate(source.to(self.device).expand_as(noise), noise, torch.full((n,), float(ts[0]), device=self.device))
        students = self._students(cfg, plain=conditions is None and source is None)
        # a distilled adapter has the guidance baked in: one unguided pass per step
        guidance = 1.0 if students else self.guidance_at(cfg)
        model_fn = cfg_model_fn(self._velocity_fn(prompts, cfg.negative_prompt, conditions, students), guidance)
        model_fn, self.last_stats = step_cache(model_fn, cfg.cache)      # {"calls", "skipped"}; cache 0 never skips
        steps = len(ts) - 1
        cb = None if progress is None else (lambda d: report(progress, "sampling", d["i"] + 1, steps, t=d["t"]))
        with sampling_threads(self.device):             # a busy CPU: fewer threads, each op waits on fewer
            latents = get_solver(cfg.solver).sample(model_fn, x, ts.to(self.device), callback=cb) if steps > 0 else x
        if conditions is not None:
            m = conditions.mask.to(self.device)
            latents = m * conditions.latents.to(self.device) + (1 - m) * latents   # given frames stay exact
        if return_latents:
            return latents
        report(progress, "decoding", steps, steps)
        with sampling_threads(self.device):
            return np.stack([self.decode_latents(latents[i:i + 1]) for i in range(n)])

    def _velocity_fn(self, prompts: list[str], negative: str, conditions: Conditions | None, students=None):
        n = len(prompts)
        emb, mask = self.text_encoder.encode(list(prompts) + [negative] * n)           # (2N, S, Dt), (2N, S)
        emb, mask = emb.to(self.device), mask.to(self.device)
        cond = None if conditions is None else make_cond(conditions.latents, conditions.mask).to(self.device)

        def velocity(x: torch.Tensor, t: torch.Tensor, guided: bool) -> torch.Tensor:
            e, m = (emb, mask) if guided else (emb[:n], mask[:n])                       # [positives; negatives]
            c = None if cond is None else cond.expand(x.shape[0], -1, -1, -1, -1)
            with autocast(self.device):                                                 # bf16 on GPU, fp32 on CPU
                return self._dit_for(t, students)(x, t, e, m, c).float()
        return velocity
