"""What training reads: a data source gives Samples (a clip, its captions, its fps and source-specific extras) and
may name plug-in loss terms that only it can feed (the toy world's object weighting and shape reader).

    source = source_class("toyworld")(ToyWorldConfig(num_clips=4000, twins=True))    # a recipe's [data] table
    samples = source.clips("train")                    # list[Sample]
    terms = source.loss_terms("dit", terms_cfg, ctx)   # what the trainer adds to its loss (a recipe's [terms])

The trainers know nothing of any source's world: they call these methods and add what the terms return. A new
dataset format is one file, a subclass of VideoSource with a config dataclass, plus its line in SOURCES.

Shapes: Sample.video (T, H, W, 3) uint8. Latent extras (latent_extras) are (c, t, h, w) per clip on the latents'
grid, so a trainer crops them with the latents; pair extras (pair_extras) are per clip, any shape.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from cinegen.config import to_dict

SPLITS = ("train", "stats", "heldout")   # training clips; clips for latent statistics; clips never trained on


@dataclass(frozen=True)
class Sample:
    video: np.ndarray                  # (T, H, W, 3) uint8
    captions: tuple[str, ...]          # one or more captions of this clip; the first is its own
    fps: float
    extras: dict = field(default_factory=dict)   # source-specific (toy world: its scene and object tracks)

    @property
    def caption(self) -> str:
        return self.captions[0]


class LossTerm(Protocol):
    """A plug-in term of a trainer's loss. batch: the trainer's batch (its `extras` hold the source's tensors);
    prediction / target: what the trainer's own loss compares (the DiT's velocity and eps - x0; the decoder's
    reconstruction and the clip); t: the batch's times (B,), or None for the autoencoder. Returns a scalar the
    trainer adds to its loss, or None when this batch holds nothing for the term."""
    name: str
    needs: tuple[str, ...]             # the batch extras it reads (a trainer refuses data without them)

    def __call__(self, batch: Any, prediction: torch.Tensor, target: torch.Tensor,
                 t: torch.Tensor | None) -> torch.Tensor | None: ...


@dataclass
class TermContext:
    """What a source's loss terms may take from the run that uses them."""
    out: Path                          # the run folder: a term's own state lives there, so a resume keeps it
    device: torch.device
    info: Any = None                   # training.common.DistInfo under torchrun
    pool: list[Sample] = field(default_factory=list)    # the run's training clips (autoencoder runs)
    pairs: Any = None                  # training.dit_latents.LatentPairs of a decoder run on DiT latents, or None


@dataclass(frozen=True)
class NoTerms:
    """The [terms] section of a source that has no loss terms."""


class VideoSource:
    """The base of every data source. A subclass sets `name`, `config_class` (the frozen dataclass of a recipe's
    [data] section, less its `source` key), optionally `terms_class` ([terms]) and `version` (written into latent
    caches; a cache from another version is named when loaded), implements clips(), and may override the rest."""
    name: ClassVar[str]
    config_class: ClassVar[type]
    terms_class: ClassVar[type] = NoTerms
    version: ClassVar[str] = "1"

    def __init__(self, cfg):
        self.cfg = cfg

    def clips(self, split: str = "train", num: int | None = None, shard: int = 0, quiet: bool = False) -> list[Sample]:
        """The samples of a split (SPLITS); num: how many source clips (default: the config's); shard: a torchrun
        rank's own share of the training split (other clips than rank 0's)."""
        raise NotImplementedError

    def encoded(self, vae_path: Path, text_cfg):
        """The latent cache (data.latent_cache.LatentCache) of a source that holds latents already (a prepared
        footage folder), checked against the run's VAE file and text config; None: the trainer encodes clips()."""
        return None

    def latent_extras(self, sample: Sample, vae_cfg) -> dict[str, torch.Tensor]:
        """Tensors (c, t, h, w) on the latent grid of `vae_cfg` that the latent cache keeps beside each clip."""
        return {}

    def pair_extras(self, samples: list[Sample]) -> dict[str, torch.Tensor]:
        """Per-clip tensors (N, ...) that a DiT-latent pair file keeps beside its clips."""
        return {}

    def loss_terms(self, kind: str, terms, ctx: TermContext) -> list[LossTerm]:
        """The terms that `terms` (a terms_class) switches on for a `kind` ("vae" or "dit") stage."""
        return []

    def facts(self) -> dict:
        """JSON-able facts a trained model keeps about its data (the toy world: the holdout list, for eval)."""
        return {}

    def table(self) -> dict:
        """The recipe's [data] table this source was made from."""
        return {"source": self.name, **to_dict(self.cfg)}


# name -> "module:class", imported on first use, so that training never imports a source it does not run
SOURCES = {"toyworld": "cinegen.toyworld.source:ToyWorld", "folder": "cinegen.data.folder:FolderSource",
           "cache": "cinegen.data.shards:PreparedCache"}


def source_class(name: str) -> type[VideoSource]:
    if name not in SOURCES:
        raise ValueError(f"unknown data source {name!r}; choose one of {sorted(SOURCES)}")
    module, _, attr = SOURCES[name].partition(":")
    return getattr(importlib.import_module(module), attr)
