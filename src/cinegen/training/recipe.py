"""Recipes: one TOML file per training stage (configs/), read into typed configs, with command-line overrides.

    cinegen train --config configs/cinegen-default/02-dit-low.toml train.steps=100 data.num_clips=400 out=/tmp/x

A recipe's top level names the stage's kind and its files (VAEStage or DiTStage); each [section] is one config
dataclass, checked field by field (an unknown key or a value of the wrong type is an error naming it):

    kind = "dit"                          # vae | dit | distill (training/distill.py: a few-step adapter)
    out = "runs/dit"                      # the run folder (resumes from out/last.safetensors)
    vae = "runs/vae/vae.safetensors"      # dit: the autoencoder whose latents the DiT learns
    [model]   preset = "shipped", then any DiTConfig / VAEConfig field
    [train]   TrainConfig                 [flow]  FlowConfig (dit)      [text]  TextConfig (dit; dim = model.text_dim)
    [loss]    VAELossConfig (vae)         [data]  source = "toyworld", then that source's config
    [terms]   the source's plug-in loss terms (toyworld: object_weight for dit, shape_weight for vae)
    [lora]    LoraConfig (dit): rank > 0 trains adapters on init instead of the whole DiT

`--data DIR|CACHE` (load_recipe's `data`) replaces [data] with a footage folder (data/folder.py) or a prepared
cache (data/shards.py); without a recipe file it starts from footage_defaults: fine-tuning the shipped model.

Overrides are KEY=VALUE (top level) or SECTION.KEY=VALUE; a value is read as JSON where it parses (3, 0.5,
true, [[17,64,64]]) and as a string otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass
from pathlib import Path

from cinegen.config import (
    DIT_PRESETS,
    VAE_PRESETS,
    DiTConfig,
    FlowConfig,
    LoraConfig,
    TextConfig,
    TrainConfig,
    VAEConfig,
    VAELossConfig,
    from_table,
    to_dict,
)
from cinegen.data.sources import VideoSource, source_class
from cinegen.training.distill import DistillStage
from cinegen.training.peer_lora import PeerStage


@dataclass(frozen=True)
class VAEStage:
    """The top level of a `kind = "vae"` recipe."""
    out: str = "runs/vae"            # the run folder: out/last.safetensors while training, out/vae.safetensors at the end
    init: str = ""                   # a trained VAE file to start from ("": from scratch); its architecture wins,
                                     # bar a decoder grown to model.decoder_res_blocks
    decoder_only: bool = False       # freeze the encoder: decoding sharpens, the latent space (and its DiTs) stay
    dit_latents: str = ""            # DiT latents paired with their clips (cinegen dit-latents): the decoder also
                                     # learns to draw them (needs decoder_only)
    dit_share: float = 0.5           # share of the steps that decode dit_latents
    crop: int = 64                   # training crop in pixels (the autoencoder is fully convolutional)
    crops: tuple[tuple[int, int], ...] = ()   # (height, width) crops, one drawn per batch; empty: crop x crop
    eval_clips: int = 16             # held-out clips the finished file's PSNR is measured on

    def __post_init__(self):
        if self.decoder_only and not self.init:
            raise ValueError("decoder_only needs init (a trained VAE whose encoder is kept)")
        if self.dit_latents and not self.decoder_only:
            raise ValueError("dit_latents needs decoder_only: the DiT's latents belong to the frozen encoder's space")
        if not 0.0 < self.dit_share <= 1.0:
            raise ValueError(f"dit_share must be in (0, 1], got {self.dit_share}")
        if self.crop < 8 or self.eval_clips < 1:
            raise ValueError(f"crop must be >= 8 and eval_clips >= 1, got {self.crop} and {self.eval_clips}")
        bad = [c for c in self.crops if len(c) != 2 or min(c) < 8]
        if bad:
            raise ValueError(f"crops must be [height, width] pairs of at least 8 pixels, got {list(bad[0])}")

    @property
    def crop_sizes(self) -> tuple[tuple[int, int], ...]:
        return tuple(tuple(c) for c in self.crops) or ((self.crop, self.crop),)


@dataclass(frozen=True)
class DiTStage:
    """The top level of a `kind = "dit"` recipe."""
    out: str = "runs/dit"            # the run folder: out/latents.safetensors (the cache), out/last.safetensors,
                                     # out/dit.safetensors at the end
    vae: str = ""                    # the trained VAE whose latents the DiT learns
    init: str = ""                   # a trained DiT to start from: the same width, as deep or shallower (grown)

    def __post_init__(self):
        if not self.vae:
            raise ValueError("a dit stage needs vae = the trained VAE file whose latents it learns")


STAGES = {"vae": VAEStage, "dit": DiTStage, "peer": PeerStage, "distill": DistillStage}
SECTIONS = {"vae": {"model": VAEConfig, "train": TrainConfig, "loss": VAELossConfig},
            "dit": {"model": DiTConfig, "train": TrainConfig, "flow": FlowConfig, "text": TextConfig, "lora": LoraConfig},
            "peer": {"train": TrainConfig, "lora": LoraConfig},      # open weights: the model is the pipeline's
            "distill": {"train": TrainConfig}}     # the model is a trained folder (stage.model), not a config
PRESETS = {"vae": VAE_PRESETS, "dit": DIT_PRESETS}
SOURCE_SECTIONS = ("data", "terms")       # typed by the data source the [data] table names


@dataclass(frozen=True)
class Recipe:
    kind: str
    stage: VAEStage | DiTStage | PeerStage | DistillStage
    model: VAEConfig | DiTConfig | None      # None: a peer or distill stage (the model is a folder)
    train: TrainConfig
    source: VideoSource
    terms: object                    # the source's terms_class
    loss: VAELossConfig | None = None
    flow: FlowConfig | None = None
    text: TextConfig | None = None
    lora: LoraConfig | None = None

    def tables(self) -> dict:
        """The whole recipe, every default filled in, as the TOML tables it reads from (a trained file keeps it)."""
        out = {"kind": self.kind, **to_dict(self.stage), "train": to_dict(self.train), "data": self.source.table(),
               "terms": to_dict(self.terms)}
        if self.model is not None:
            out["model"] = to_dict(self.model)
        for name in SECTIONS[self.kind]:
            out.setdefault(name, to_dict(getattr(self, name)))
        return out


def load_recipe(path: Path | None, overrides: list[str] = (), kind: str | None = None,
                data: str | None = None, model: Path | None = None) -> Recipe:
    """The recipe of `path` (None: every default) with `overrides` applied. kind: the stage kind a command
    insists on (`train-vae`: "vae"); a file of another kind is an error. data: a footage folder or a prepared
    cache, in place of the recipe's [data] (and its [terms], which belong to the data it replaces); with no
    recipe file, the run fine-tunes the shipped model, or `model` (footage_defaults)."""
    if path is not None:
        tables = _read(path)
    else:
        tables = footage_defaults(kind or "dit", model) if data else {}
    if model is not None and (path is not None or not data):
        raise ValueError("--model names the model that --data fine-tunes without a recipe; with --config, set "
                         "init= (and vae=) instead")
    if data:
        tables["data"] = data_table(data)
        tables.pop("terms", None)
    for key, raw in _split(overrides):
        _set(tables, key, raw)
    stage_kind = _raw(tables.pop("kind", kind))
    if stage_kind not in STAGES:
        raise ValueError(f"name the stage's kind: kind = one of {sorted(STAGES)} (in the recipe or as kind=...), "
                         f"got {stage_kind!r}")
    if kind is not None and stage_kind != kind:
        raise ValueError(f"{path} is a {stage_kind} stage; this command trains {kind} stages")
    return _build(stage_kind, tables)


def data_table(data: str) -> dict:
    """--data PATH as a [data] table: a prepared cache (it has a manifest) or a footage folder."""
    from cinegen.data.shards import MANIFEST
    path = Path(data)
    if not path.is_dir():
        raise FileNotFoundError(f"--data folder not found: {data}")
    if (path / MANIFEST).is_file():
        return {"source": "cache", "path": str(path)}
    return {"source": "folder", "root": str(path)}


def footage_defaults(kind: str, model: Path | None = None) -> dict:
    """The tables a `--data` run without a recipe file starts from: the shipped model (or `model`, a cinegen model
    folder) fine-tuned as it is. A dit stage: its VAE, its DiT as init, with that DiT's own architecture, noise
    schedule and text encoder; a vae stage: its VAE as init."""
    from cinegen.backends.diffusers import is_diffusers_folder
    from cinegen.config import from_dict
    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.models.loading import load_checkpoint
    folder = Path(model) if model else WEIGHTS_DIR
    if is_diffusers_folder(folder):
        if kind == "vae":
            raise ValueError(f"train-vae fine-tunes cinegen's autoencoder; {folder} is a Diffusers pipeline")
        return {"kind": "peer", "pipeline": str(folder)}
    if kind == "vae":
        return {"kind": "vae", "init": str(folder / "vae.safetensors")}
    dit = load_checkpoint(folder / "dit.safetensors")
    return {"kind": "dit", "vae": str(folder / "vae.safetensors"), "init": str(folder / "dit.safetensors"),
            "model": to_dict(from_dict(DiTConfig, dit["config"])), "flow": dit["extra"].get("flow", {}),
            "text": dit["extra"].get("text", {})}


def load_data(overrides: list[str]) -> VideoSource:
    """A data source from data.KEY=VALUE overrides alone (a command that reads clips but trains nothing)."""
    tables: dict = {}
    for key, raw in _split(overrides):
        if not key.startswith("data."):
            raise ValueError(f"bad argument {key}={raw}: expected data.KEY=VALUE (a [data] field)")
        _set(tables, key, raw)
    return _source(tables.get("data", {}))


def _read(path: Path) -> dict:
    if not Path(path).is_file():
        raise FileNotFoundError(f"recipe not found: {path}")
    with open(path, "rb") as f:
        try:
            return tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path} is not valid TOML: {e}") from None


def _split(overrides) -> list[tuple[str, str]]:
    out = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"bad override {item!r}: expected KEY=VALUE or SECTION.KEY=VALUE")
        out.append((key, raw))
    return out


@dataclass(frozen=True)
class _Override:
    """A command-line value: parsed as JSON where it parses, with the text as typed (a str field keeps that)."""
    value: object
    raw: str


def _set(tables: dict, key: str, raw: str) -> None:
    section, _, name = key.rpartition(".")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    target = tables.setdefault(section, {}) if section else tables
    if not isinstance(target, dict):
        raise ValueError(f"bad override {key}={raw}: {section} is a value, not a [section]")
    target[name] = _Override(value, raw)


def _raw(v):
    """An override's text as typed; a table's value as it is."""
    return v.raw if isinstance(v, _Override) else v


def _typed(cls, table: dict) -> dict:
    """A table's values, overrides read for their field's type: a str field keeps the text as typed (out=2026)."""
    hints = typing.get_type_hints(cls)
    return {k: (v.raw if hints.get(k) is str else v.value) if isinstance(v, _Override) else v for k, v in table.items()}


def _is_table(v) -> bool:
    return isinstance(v, dict)


def _build(kind: str, tables: dict) -> Recipe:
    sections = SECTIONS[kind]
    known = set(sections) | set(SOURCE_SECTIONS)
    unknown = sorted(k for k, v in tables.items() if _is_table(v) and k not in known)
    if unknown:
        raise ValueError(f"unknown section [{unknown[0]}] in a {kind} recipe; it takes {sorted(known)}")
    tops = {k: v for k, v in tables.items() if not _is_table(v)}
    stage = from_table(STAGES[kind], _typed(STAGES[kind], tops), "")
    model = _model(kind, sections["model"], tables.get("model", {})) if "model" in sections else None
    built = {name: from_table(cls, _typed(cls, tables.get(name, {})), name)
             for name, cls in sections.items() if name != "model"}
    source = _source(tables.get("data", {}))
    terms = from_table(source.terms_class, _typed(source.terms_class, tables.get("terms", {})), "terms")
    if kind == "dit":
        built["text"] = _text_for(built["text"], model, _typed(TextConfig, tables.get("text", {})))
    return Recipe(kind, stage, model, built.pop("train"), source, terms, **built)


def _model(kind: str, cls, table: dict):
    """[model]: `preset` (a name in VAE_PRESETS / DIT_PRESETS, default "default"), then that config's fields."""
    table = dict(table)
    preset = _raw(table.pop("preset", "default"))
    if preset not in PRESETS[kind]:
        raise ValueError(f"unknown model.preset {preset!r}; choose one of {sorted(PRESETS[kind])}")
    return from_table(PRESETS[kind][preset], _typed(cls, table), "model")


def _source(table: dict) -> VideoSource:
    """[data]: `source` (a name in data.sources.SOURCES, default "toyworld"), then that source's config fields."""
    table = dict(table)
    cls = source_class(_raw(table.pop("source", "toyworld")))
    return cls(from_table(cls.config_class, _typed(cls.config_class, table), "data"))


def _text_for(text: TextConfig, model: DiTConfig, table: dict) -> TextConfig:
    """The prompt encoder's width is the DiT's text_dim: written once, in [model]."""
    if "dim" in table and table["dim"] != model.text_dim:
        raise ValueError(f"text.dim={table['dim']} but model.text_dim={model.text_dim}: the DiT reads the encoder's "
                         "width; set model.text_dim only")
    return dataclasses.replace(text, dim=model.text_dim)
