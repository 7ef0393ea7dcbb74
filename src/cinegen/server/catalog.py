"""What the service offers: its local models, the OpenAI model names mapped onto them, and the sizes and lengths a
request may ask for, with the size each one renders at.

    models = {"cinegen-default": ModelSpec("cinegen-default")}      # anything load_backend(name_or_path) takes
    aliases = {"sora-2": "cinegen-default", "sora-2-pro": "wan-14b"}  # operator's map; dated names follow theirs

An unmodified Sora app sends model="sora-2", size="720x1280", seconds="4". A size the mapped model lists as its
own renders natively; any other allowed size (OpenAI's four) renders at the model's own scale (the same pixel
count as its first listed size, the requested aspect ratio, on its size grid) and is resized to the requested size
by a Lanczos resampler; the video object's `rendered_size` says which size the model drew.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from cinegen import defaults
from cinegen import requests as R
from cinegen.config import parse_size

OPENAI_SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
OPENAI_SECONDS = ("4", "8", "12")
EXTENSION_SECONDS = ("4", "8", "12", "16", "20")            # the SDK's allowed lengths of one extension
OPENAI_MODELS = ("sora-2", "sora-2-pro")
_DATED = re.compile(r"^(sora-2(?:-pro)?)-\d{4}-\d{2}-\d{2}$")   # sora-2-2025-10-06 -> sora-2


@dataclass(frozen=True)
class ModelSpec:
    """A local model: `path` is what load_backend takes (a folder, a registry name, or None for the shipped
    model); `sizes` the sizes it renders natively (the first is its default and its scale); `seconds` the
    lengths it offers besides OpenAI's; `modes` what it can do (None: read from its folder)."""
    path: Path | str | None = None
    sizes: tuple[str, ...] = ("64x64", "96x64", "64x96", "128x128")
    seconds: tuple[str, ...] = ("1", "2", "4", "8")
    modes: tuple[str, ...] | None = None

    @property
    def allowed_sizes(self) -> tuple[str, ...]:
        return self.sizes + tuple(s for s in OPENAI_SIZES if s not in self.sizes)

    @property
    def allowed_seconds(self) -> tuple[str, ...]:
        return self.seconds + tuple(s for s in OPENAI_SECONDS if s not in self.seconds)

    @property
    def available_modes(self) -> tuple[str, ...]:
        return self.modes if self.modes is not None else folder_modes(self.path)

    def can(self, mode: str) -> bool:
        return mode in self.available_modes


@functools.lru_cache(maxsize=64)
def _diffusers_info(path):
    """A served model's FolderInfo (its configs, read once) when it is a Diffusers folder, else None; `path` is
    anything load_backend takes."""
    from cinegen.backends.diffusers import FolderInfo, is_diffusers_folder
    from cinegen.backends.registry import resolve
    folder = resolve(path).path
    return FolderInfo.read(folder) if is_diffusers_folder(folder) else None


def folder_modes(path) -> tuple[str, ...]:
    """Modes a served model can do, from its files alone: a Diffusers folder's from its pipeline classes, a
    cinegen model (or the shipped one) every mode but inpaint."""
    info = _diffusers_info(path)
    return tuple(info.modes) if info is not None else R.NATIVE_MODES


def batches(path, seconds: float) -> bool:
    """Whether a served model renders text-to-video jobs of this length in batches, from its files alone (as its
    backend's batch_key would answer): a cinegen model does for one window's length (longer renders are windowed),
    a Diffusers folder never does."""
    return _diffusers_info(path) is None and seconds <= defaults.WINDOW_SECONDS


def model_family(path) -> str:
    info = _diffusers_info(path)
    return info.family if info is not None else "cinegen"


@dataclass(frozen=True)
class Catalog:
    models: dict[str, ModelSpec]
    default_model: str = "cinegen-default"
    aliases: dict[str, str] = field(default_factory=dict)     # API name -> local model; OpenAI's names default below

    def resolve(self, name: str | None) -> str:
        """The local model for a requested name; raises KeyError for a name the service does not serve."""
        name = name or OPENAI_MODELS[0]
        if name in self.models:
            return name
        if name in self.aliases:
            return self.aliases[name]
        dated = _DATED.match(name)
        if dated:
            return self.resolve(dated.group(1))
        if name in OPENAI_MODELS and self.models:   # the default model, or the first served one if it is not served
            return self.default_model if self.default_model in self.models else next(iter(self.models))
        raise KeyError(name)

    def names(self) -> list[str]:
        return sorted({*self.models, *self.aliases, *OPENAI_MODELS})


def render_size(spec: ModelSpec, size: str, multiple: tuple[int, int] = (16, 16)) -> str:
    """The size a model draws for a requested size: the size itself when the model lists it, else the requested
    aspect ratio at the pixel count of the model's first size, each side on its (width, height) multiple."""
    if size in spec.sizes:
        return size
    w, h = parse_size(size)
    base_w, base_h = parse_size(spec.sizes[0])
    area, aspect = base_w * base_h, w / h
    rw = max(multiple[0], round(math.sqrt(area * aspect) / multiple[0]) * multiple[0])
    rh = max(multiple[1], round(math.sqrt(area / aspect) / multiple[1]) * multiple[1])
    return f"{rw}x{rh}"


def size_multiple(spec: ModelSpec) -> tuple[int, int]:
    """(width, height) multiples of a model's sizes, read from its files where they say (else 16, what every
    backend here needs)."""
    geo = _geometry(spec.path)
    return (geo.width_multiple, geo.height_multiple) if geo is not None else (16, 16)


def size_check(path):
    """check_size(width, height) of a served model from its files' metadata alone (a Diffusers family's own
    rules, e.g. CogVideoX-I2V's one size, included), or None for a folder without model files (its worker checks)."""
    from cinegen.backends.diffusers import DiffusersBackend
    info = _diffusers_info(path)
    if info is not None:
        return DiffusersBackend(info).check_size
    geo = _geometry(path)
    return geo.check_size if geo is not None else None


@functools.lru_cache(maxsize=64)
def _geometry(path):
    from cinegen.backends.registry import resolve
    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.geometry import read_geometry
    info = _diffusers_info(path)
    if info is not None:
        return info.geometry()
    folder = Path(resolve(path).path or WEIGHTS_DIR)
    return read_geometry(folder) if (folder / "dit.safetensors").is_file() else None
