"""Every knob of cinegen: one frozen dataclass per component, named presets, and typed overrides.

Constants that describe data (VAE strides, latent channel statistics, text width) live here and are saved
with each checkpoint, so train, sample and serve can never disagree about them.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field


@dataclass(frozen=True)
class VAEConfig:
    in_channels: int = 3
    latent_channels: int = 16        # 16 as in Wan2.1/HunyuanVideo; toy-world clips need no more
    patch: int = 4                   # space-to-depth at the input (LTX-Video style): cheap first stage on CPU
    spatial_down: int = 1            # extra 2x spatial downsamples after the patch: total = patch * 2**spatial_down
    temporal_down: int = 2           # causal 2x temporal downsamples: T = 1 + 4k -> 1 + k
    channels: tuple[int, ...] = (64, 128, 128)   # width per stage; len = 1 + max(spatial_down, temporal_down)
    res_blocks: int = 1              # residual blocks per stage
    # the decoder's residual blocks per stage (0 = res_blocks). The encoder's latents hold more than the decoder
    # draws: a probe reads a small object's shape from a 3x3 latent patch 95% right, the decoded frame only 49%
    # (MODEL_CARD.md), so the decoder can grow (train_vae.with_decoder_blocks) and leave the latent space alone.
    decoder_res_blocks: int = 0
    kl_weight: float = 1e-6          # small KL: we want a near-deterministic autoencoder with a smooth latent
    edge_weight: float = 1.0         # extra loss weight on edges in space and time (objects), training/train_vae.py
    shape_weight: float = 0.0        # weight of the shape reader's loss on decoded DiT latents (training/shape_loss.py)
    shape_reader_steps: int = 1500   # training steps of that reader, on the run's rendered clips
    latent_mean: tuple[float, ...] = ()   # per-channel statistics measured after training (empty = 0 / 1)
    latent_std: tuple[float, ...] = ()

    @property
    def spatial_factor(self) -> int:
        return self.patch * 2 ** self.spatial_down

    @property
    def temporal_factor(self) -> int:
        return 2 ** self.temporal_down


@dataclass(frozen=True)
class DiTConfig:
    latent_channels: int = 16        # must equal VAEConfig.latent_channels
    patch: tuple[int, int, int] = (1, 2, 2)   # (pt, ph, pw) spacetime patch in latent units
    width: int = 256                 # D
    depth: int = 8
    heads: int = 4                   # nh; head dim hd = D / nh, split three ways for 3D RoPE
    mlp_ratio: float = 4.0
    text_dim: int = 384              # Dt: MiniLM-L6 hidden size
    rope_theta: float = 10000.0
    conditioning: bool = True        # extra input channels: mask (1) + clean latents (C) for image/video prompts

    @property
    def in_channels(self) -> int:
        return self.latent_channels * (2 if self.conditioning else 1) + (1 if self.conditioning else 0)


@dataclass(frozen=True)
class FlowConfig:
    """Rectified flow: t=0 is data, t=1 is noise, x_t = (1-t) x0 + t eps, v = eps - x0 (diffusion/flow.py)."""
    logit_mean: float = 0.0          # logit-normal training t (SD3): most weight on mid t
    logit_std: float = 1.0
    base_shift: float = 1.0          # shift at base_tokens; grows as sqrt(tokens / base_tokens) (SD3 sec. 5.3.2)
    base_tokens: int = 256
    max_shift: float = 6.0
    # training range of t: the whole schedule by default; a part of it for an expert denoiser (Wan2.2's
    # high-noise expert trains and samples only t >= its boundary, where layout and motion are decided)
    t_min: float = 0.0
    t_max: float = 1.0

    def __post_init__(self):
        # checked here, not per training step: a bad `--flow` fails before the latent cache is built
        if not 0.0 <= self.t_min < self.t_max <= 1.0:
            raise ValueError(f"flow t range must satisfy 0 <= t_min < t_max <= 1, got t_min={self.t_min}, "
                             f"t_max={self.t_max}")


@dataclass(frozen=True)
class TextConfig:
    name: str = "minilm"             # "minilm" (shipped offline) or a local path to any HF encoder (e.g. T5)
    max_tokens: int = 32             # S: captions are short; longer prompts are truncated with a warning
    dim: int = 384                   # Dt
    # hidden-state layers whose tokens are laid end to end (S * len(layers) tokens): -1 is the contextual last
    # layer; 0 the word-embedding layer, which keeps word identity that MiniLM's last layer blurs ("left" and
    # "right" end up at cosine 0.63 there, "red" and "blue" at 0.32)
    layers: tuple[int, ...] = (-1,)


@dataclass(frozen=True)
class SampleConfig:
    seconds: float = 2.0
    fps: float = 8.0
    width: int = 64
    height: int = 64
    steps: int = 20
    solver: str = "euler"            # euler | heun | dpmpp_2m
    guidance: float = 4.0            # classifier-free guidance scale; 1 = off
    # the scale while a high-noise expert predicts (Wan2.2 guides its two experts apart); None = `guidance`
    guidance_high: float | None = None
    negative_prompt: str = ""
    seed: int = 0
    cache: float = 0.0               # TeaCache-style step skipping threshold (0 = off; see diffusion.samplers)

    @property
    def num_frames(self) -> int:
        """Frames for `seconds` at `fps`, rounded to the VAE's 1 + 4k grid."""
        return 1 + 4 * max(0, round(self.seconds * self.fps / 4))


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 100
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    grad_accum: int = 1
    text_dropout: float = 0.1        # drop captions for classifier-free guidance
    cond_prob: float = 0.3           # fraction of samples trained with clean-latent conditioning (issue 3)
    log_every: int = 25
    ckpt_every: int = 250
    seed: int = 0
    parallel: str = "ddp"            # ddp | fsdp (FSDP2 fully_shard) when launched with torchrun
    # auto: bf16 autocast on a CUDA GPU and on a CPU with AMX tiles (bf16 matmuls about 4x fp32 there; MODEL_CARD.md
    # "Seventh session", `make bench` (g)), fp32 on other CPUs, where bf16 is usually slower; fp32 | bf16 force one
    precision: str = "auto"
    # extra loss weight on latent cells that touch an object: the cell's error counts (1 + object_weight) times.
    # Objects are a few percent of the cells, so an unweighted loss is mostly background (the VAE's edge_weight
    # answers the same problem in pixels); 0 = plain flow-matching loss
    object_weight: float = 0.0


@dataclass(frozen=True)
class DataConfig:
    num_clips: int = 2000
    buckets: tuple[tuple[int, int, int], ...] = ((17, 64, 64),)   # (frames, height, width) grids
    bucket_weights: tuple[float, ...] = (1.0,)
    fps: float = 8.0
    holdout: tuple[str, ...] = ()
    max_objects: int = 3
    seed: int = 0
    twins: bool = False              # also each clip mirrored / played backwards with opposite words (data.world)


VAE_PRESETS = {
    "tiny": VAEConfig(latent_channels=4, channels=(8, 16, 16), patch=2),
    "default": VAEConfig(),
}
DIT_PRESETS = {
    "tiny": DiTConfig(latent_channels=4, width=32, depth=2, heads=2, text_dim=384),
    "small": DiTConfig(width=192, depth=6, heads=3),
    "default": DiTConfig(depth=6),   # sized for ~1 h of training on a 2-core CPU and a ~20 MB fp16 file
    "shipped": DiTConfig(depth=12),  # the model in src/cinegen/weights: "default" grown to depth 12 (MODEL_CARD.md)
    "base": DiTConfig(width=512, depth=12, heads=8),
}


def parse_size(text: str) -> tuple[int, int]:
    """"WIDTHxHEIGHT" (e.g. "96x64") -> (width, height); the one parser for sizes in the CLI, boards and server.
    Only the form is checked here; data.world.check_size checks the values."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"bad size {text!r}: expected WIDTHxHEIGHT, e.g. 64x64") from None
    return w, h


# --- Serialisation and overrides ---

def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


# Fields that older model files and checkpoints carry (the shipped ones included) and this code no longer has.
# Each maps to the value it held when its feature was off, or to ANY for a training-only setting that never shaped
# the weights. A file is loaded without them; one that had a removed experiment switched on is refused with its
# name, since these weights would not compute what they were trained to. docs/history.md keeps each experiment's
# numbers; the code is in git at commit b580f1d.
ANY = object()
RETIRED = {
    "VAEConfig": {"refine_channels": (0, 'a refinement stage ("Where shape is lost", decoder A)'),
                  "adv_weight": (0.0, 'the adversarial loss ("Where shape is lost", run C)')},
    "DiTConfig": {"rope_step": ((1.0, 1.0, 1.0), 'a re-patched DiT ("Re-patching")')},
}


def from_dict(cls, d: dict):
    """Builds `cls` from a dict, turning JSON lists back into tuples; unknown keys are an error, retired ones
    (RETIRED) are dropped."""
    hints = typing.get_type_hints(cls)
    d = _without_retired(cls.__name__, d)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields: {sorted(unknown)}")
    return cls(**{k: _coerce(hints[k], v) for k, v in d.items()})


def _without_retired(name: str, d: dict) -> dict:
    retired = RETIRED.get(name, {})
    for key, (off, what) in retired.items():
        value = d.get(key, off)
        if off is not ANY and (tuple(value) if isinstance(value, list) else value) != off:
            raise ValueError(f"this file's {name} has {key}={value}: {what}, an experiment removed from cinegen "
                             f"(docs/history.md); use cinegen at git commit b580f1d to load it")
    return {k: v for k, v in d.items() if k not in retired}


def _coerce(tp, v):
    origin = typing.get_origin(tp)
    if origin is tuple and isinstance(v, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], x) for x in v)
        return tuple(_coerce(a, x) for a, x in zip(args, v))
    return v


def override(cfg, overrides: list[str]):
    """Applies `key=value` strings, parsing each value as JSON and checking it against the field's type."""
    updates = {}
    hints = typing.get_type_hints(type(cfg))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in hints:
            raise ValueError(f"bad override {item!r}: expected key=value with key in {sorted(hints)}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        value = _coerce(hints[key], value)
        current = getattr(cfg, key)
        if current is not None and not isinstance(value, type(current)) and not (
                isinstance(current, float) and isinstance(value, int)):
            raise ValueError(f"override {key}={raw!r}: expected {type(current).__name__}")
        updates[key] = float(value) if isinstance(current, float) else value
    return dataclasses.replace(cfg, **updates)


__all__ = ["VAEConfig", "DiTConfig", "FlowConfig", "TextConfig", "SampleConfig", "TrainConfig", "DataConfig",
           "VAE_PRESETS", "DIT_PRESETS", "parse_size", "to_dict", "from_dict", "override", "field"]
