"""Every knob of cinegen: one frozen dataclass per component, named presets, and typed overrides.

Constants that describe data (VAE strides, latent channel statistics, text width) live here and are saved
with each checkpoint, so train, sample and serve can never disagree about them.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field

from cinegen import defaults


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
    # (docs/history.md), so the decoder can grow (train_vae.with_decoder_blocks) and leave the latent space alone.
    decoder_res_blocks: int = 0
    latent_mean: tuple[float, ...] = ()   # per-channel statistics measured after training (empty = 0 / 1)
    latent_std: tuple[float, ...] = ()

    @property
    def spatial_factor(self) -> int:
        return self.patch * 2 ** self.spatial_down

    @property
    def temporal_factor(self) -> int:
        return 2 ** self.temporal_down


@dataclass(frozen=True)
class VAELossConfig:
    """The autoencoder's training loss (training/train_vae.vae_loss); a run's choice, not part of the model file."""
    kl_weight: float = 1e-6          # small KL: we want a near-deterministic autoencoder with a smooth latent
    edge_weight: float = 1.0         # extra loss weight on edges in space and time (objects), train_vae.edge_weights

    def __post_init__(self):
        if self.kl_weight < 0 or self.edge_weight < 0:
            raise ValueError(f"loss weights must be >= 0, got kl_weight={self.kl_weight}, edge_weight={self.edge_weight}")


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
    """How to sample one render. Checked here, once, for everything that needs no model; the model's own rules
    (size multiples, the frame grid: geometry.Geometry) and the solver's name are checked where the model is."""
    seconds: float = defaults.SECONDS
    fps: float = defaults.FPS
    width: int = defaults.WIDTH
    height: int = defaults.HEIGHT
    steps: int = defaults.STEPS
    solver: str = defaults.SOLVER    # a key of diffusion.samplers.SAMPLERS
    guidance: float = defaults.GUIDANCE   # classifier-free guidance scale; 1 = off
    # the scale while a high-noise expert predicts (Wan2.2 guides its two experts apart); None = `guidance`
    guidance_high: float | None = None
    negative_prompt: str = ""
    seed: int = defaults.SEED
    cache: float = defaults.CACHE    # TeaCache-style step skipping threshold (0 = off; see diffusion.samplers)
    # use the model's few-step adapter (models/fewstep.py) when it serves this render; False: the plain sampler
    distilled: bool = True

    def __post_init__(self):
        if not 0 <= self.seconds <= defaults.MAX_SECONDS:
            raise ValueError(f"seconds must be between 0 and {defaults.MAX_SECONDS:g}, got {self.seconds}")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        for name in ("width", "height"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"{name} must be a positive whole number of pixels, got {v!r}")
        if not isinstance(self.steps, int) or not 1 <= self.steps <= defaults.MAX_STEPS:
            raise ValueError(f"steps must be between 1 and {defaults.MAX_STEPS}, got {self.steps}")
        if not self.guidance >= 0:
            raise ValueError(f"guidance must be >= 0, got {self.guidance}")
        if self.guidance_high is not None and not self.guidance_high >= 0:
            raise ValueError(f"guidance_high must be >= 0, got {self.guidance_high}")
        if not self.cache >= 0:
            raise ValueError(f"cache threshold must be >= 0, got {self.cache}")


def check_strength(strength: float) -> None:
    """SDEdit strength (edit, remix): 0 keeps the source, 1 ignores it."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")


def check_prompt(prompt: str) -> None:
    """Raises ValueError naming what is wrong with a prompt; the one check the CLI, server and boards share."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt must be a non-empty string")
    if len(prompt) > defaults.MAX_PROMPT_CHARS:
        raise ValueError(f"prompt is {len(prompt)} characters; at most {defaults.MAX_PROMPT_CHARS}")


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
    # auto: bf16 autocast on a CUDA GPU and on a CPU with AMX tiles (bf16 matmuls about 4x fp32 there; docs/history.md
    # "Seventh session", `make bench` (g)), fp32 on other CPUs, where bf16 is usually slower; fp32 | bf16 force one
    precision: str = "auto"
    # stop after this many minutes and still finalise (0 = no limit): a lent GPU's call ends at a fixed time, and a
    # killed run would leave only a checkpoint too large to bring back; the learning rate then decays by time
    max_minutes: float = 0.0

    def __post_init__(self):
        from cinegen.runtime import PRECISIONS
        at_least = {"steps": 0, "batch_size": 1, "warmup": 0, "grad_accum": 1, "log_every": 1, "ckpt_every": 1}
        for name, low in at_least.items():
            if getattr(self, name) < low:
                raise ValueError(f"train.{name} must be >= {low}, got {getattr(self, name)}")
        if not (self.lr > 0 and self.grad_clip > 0 and 0 <= self.ema_decay < 1 and self.max_minutes >= 0):
            raise ValueError(f"train needs lr > 0, grad_clip > 0, 0 <= ema_decay < 1 and max_minutes >= 0, got "
                             f"{self.lr}, {self.grad_clip}, {self.ema_decay} and {self.max_minutes}")
        if not (0 <= self.text_dropout < 1 and 0 <= self.cond_prob <= 1):
            raise ValueError(f"train.text_dropout must be in [0, 1) and cond_prob in [0, 1], got {self.text_dropout} "
                             f"and {self.cond_prob}")
        if self.parallel not in defaults.PARALLEL_STRATEGIES:
            raise ValueError(f"train.parallel must be one of {defaults.PARALLEL_STRATEGIES}, got {self.parallel!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"train.precision must be one of {PRECISIONS}, got {self.precision!r}")

    @property
    def time_limit(self) -> float | None:
        """max_minutes in seconds, None for no limit."""
        return self.max_minutes * 60 if self.max_minutes else None


@dataclass(frozen=True)
class LoraConfig:
    """A dit stage's [lora] section: rank > 0 trains low-rank adapters on the init DiT (frozen) instead of the
    whole model, and the run writes a small adapter file (`generate --lora FILE[:SCALE]` loads it)."""
    rank: int = 0                    # 0: no adapter, every weight trains
    alpha: float = 0.0               # the adapter's scale is alpha / rank; 0: alpha = rank (scale 1)
    # the DiT's linear layers that get adapters (peft's target_modules: a name or the end of a dotted path):
    # self-attention (qkv, proj), cross-attention (q, kv, proj) and each block's MLP
    targets: tuple[str, ...] = ("qkv", "proj", "q", "kv", "mlp.0", "mlp.2")
    dropout: float = 0.0

    def __post_init__(self):
        if self.rank < 0 or self.alpha < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"lora needs rank >= 0, alpha >= 0 and 0 <= dropout < 1, got {self.rank}, {self.alpha} "
                             f"and {self.dropout}")
        if self.rank and not self.targets:
            raise ValueError("lora.targets is empty: name the layers that get adapters, e.g. [\"qkv\", \"proj\"]")

    @property
    def scale_alpha(self) -> float:
        return self.alpha or float(self.rank)


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
    Only the form is checked here; a model's size rules check the values."""
    try:
        w, h = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise ValueError(f"bad size {text!r}: expected WIDTHxHEIGHT, e.g. 64x64") from None
    return w, h



@dataclass(frozen=True)
class LoraSpec:
    """One adapter to load: `--lora FILE[:SCALE]` (repeatable; several adapters combine, each at its scale)."""
    path: str
    scale: float = 1.0


def parse_lora(text: str) -> LoraSpec:
    """"adapter.safetensors" or "adapter.safetensors:0.7" -> LoraSpec; the one parser for --lora everywhere.
    Only the form is checked here (the file's existence and base model are checked when it is loaded)."""
    text = str(text)
    path, sep, scale = text.rpartition(":")
    if not sep or "/" in scale or "\\" in scale:   # no ":SCALE" (a ":" may belong to the path)
        path, scale = text, "1"
    try:
        value = float(scale)
    except ValueError:
        raise ValueError(f"bad --lora {text!r}: expected FILE or FILE:SCALE, e.g. style.safetensors:0.8") from None
    if not path or value != value or abs(value) > 10:
        raise ValueError(f"bad --lora {text!r}: the scale must be a number between -10 and 10")
    return LoraSpec(path, value)

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
# training settings that VAE files kept in their config until the loss moved to VAELossConfig and the toy world's
# [terms]: whatever they held, the weights load the same
RETIRED["VAEConfig"].update({k: (ANY, "") for k in ("kl_weight", "edge_weight", "shape_weight", "shape_reader_steps")})


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
    """Applies `key=value` strings, parsing each value as JSON (a str field keeps the text as typed) and checking it
    against the field's type."""
    hints = typing.get_type_hints(type(cfg))
    updates = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or key not in hints:
            raise ValueError(f"bad override {item!r}: expected key=value with key in {sorted(hints)}")
        try:
            value = raw if hints[key] is str else json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        updates[key] = _checked(hints[key], getattr(cfg, key), value, f"override {key}={raw!r}")
    return dataclasses.replace(cfg, **updates)


def from_table(base, table: dict, section: str = ""):
    """`base` (a config, or a config class for its defaults) with the values of a recipe table (TOML, or overrides
    already parsed) checked against each field's type; an unknown key is an error naming it and the keys there are."""
    cls = base if isinstance(base, type) else type(base)
    hints = typing.get_type_hints(cls)
    where = f"{section}." if section else ""
    updates = {}
    for key, value in table.items():
        if key not in hints:
            raise ValueError(f"unknown key {where}{key}; {f'[{section}]' if section else 'the top level'} takes "
                             f"{sorted(hints)}")
        updates[key] = _checked(hints[key], _default(cls, key) if isinstance(base, type) else getattr(base, key),
                                value, f"{where}{key} = {value!r}")
    return cls(**updates) if isinstance(base, type) else dataclasses.replace(base, **updates)


def _default(cls, key: str):
    f = {f.name: f for f in dataclasses.fields(cls)}[key]
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _checked(tp, current, value, what: str):
    """value as field type `tp` (lists to tuples; an int where a float goes), or ValueError naming `what`."""
    value = _coerce(tp, value)
    if current is not None and current is not dataclasses.MISSING and not isinstance(value, type(current)) and not (
            isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool)):
        raise ValueError(f"{what}: expected {type(current).__name__}")
    return float(value) if isinstance(current, float) else value


__all__ = ["VAEConfig", "VAELossConfig", "DiTConfig", "LoraConfig", "FlowConfig", "TextConfig", "SampleConfig", "TrainConfig",
           "VAE_PRESETS", "DIT_PRESETS", "parse_size", "check_prompt", "check_strength", "to_dict", "from_dict",
           "from_table", "override", "field"]
