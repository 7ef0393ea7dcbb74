"""`load_backend(name_or_path)`: the one way the CLI, the server worker and the studio get a model, and the model
registry: a `models.toml` naming local folders, so that `--model wan-1.3b` and a server request's `model` work.

    # models.toml ($CINEGEN_MODELS, else ./models.toml, else ~/.config/cinegen/models.toml)
    [models.wan-1.3b]
    path = "/models/Wan2.1-T2V-1.3B-Diffusers"
    offload = "model"              # any load option of the backend: dtype, vae_tiling, lora, attention, ...
    lora = ["style.safetensors:0.8"]
    sizes = ["832x480", "480x832"] # what `cinegen serve` offers of it (first: the default), and
    seconds = ["2", "5"]           # the durations it accepts

Relative paths are relative to the file. Nothing here reads weights: `describe` works from JSON and metadata.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_NAME = "cinegen-default"
NATIVE_OPTIONS = frozenset({"device", "compile", "text_encoder", "loras"})
SERVE_KEYS = ("sizes", "seconds")       # models.toml keys for the server's offer, not load options


@dataclass(frozen=True)
class ModelEntry:
    name: str
    path: Path | None                  # None: the shipped model
    options: dict = field(default_factory=dict)      # load options (load_backend's)
    serve: dict = field(default_factory=dict)        # what `cinegen serve` offers: sizes, seconds


def registry_file() -> Path | None:
    for candidate in (os.environ.get("CINEGEN_MODELS"), "models.toml", Path.home() / ".config/cinegen/models.toml"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def load_registry(path: str | Path | None = None) -> dict[str, ModelEntry]:
    """{name: entry}: the shipped model, then those a models.toml names. Raises ValueError naming a bad entry."""
    import tomllib
    entries = {DEFAULT_NAME: ModelEntry(DEFAULT_NAME, None)}
    path = Path(path) if path else registry_file()
    if path is None:
        return entries
    try:
        table = tomllib.loads(path.read_text()).get("models", {})
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"cannot read the model registry {path}: {e}") from None
    for name, item in table.items():
        if not isinstance(item, dict) or not isinstance(item.get("path"), str):
            raise ValueError(f"{path}: [models.{name}] needs path = \"FOLDER\"")
        folder = Path(item["path"]).expanduser()
        folder = folder if folder.is_absolute() else path.parent / folder
        options = {k: v for k, v in item.items() if k not in ("path", *SERVE_KEYS)}
        if "lora" in options:
            from cinegen.config import parse_lora
            options["loras"] = tuple(parse_lora(x) for x in _as_list(options.pop("lora")))
        serve = {k: tuple(str(x) for x in _as_list(item[k])) for k in SERVE_KEYS if k in item}
        entries[name] = ModelEntry(name, folder, options, serve)
    return entries


def _as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def resolve(model: str | Path | None) -> ModelEntry:
    """A registry name, or a folder path (then it is its own entry, with no options)."""
    key = str(model) if model is not None else DEFAULT_NAME
    entries = load_registry()
    if key in entries:
        return entries[key]
    if not Path(key).is_dir():
        names = ", ".join(entries)
        raise FileNotFoundError(f"model {key!r} is neither a registered name ({names}) nor a folder")
    return ModelEntry(Path(key).name, Path(key))


def load_backend(model: str | Path | None = None, **options):
    """None, "cinegen-default" or a registry name or a folder: a cinegen model (dit.safetensors + vae.safetensors)
    or a Diffusers pipeline (model_index.json). options: the backend's load options (cinegen models: device,
    compile, text_encoder; Diffusers: diffusers.LoadOptions' fields), over the registry's. An option the backend
    does not take is a ValueError naming it, never ignored."""
    from cinegen.backends.diffusers import DiffusersBackend, is_diffusers_folder
    from cinegen.backends.native import NativeBackend
    entry = resolve(model)
    options = {**entry.options, **options}
    if is_diffusers_folder(entry.path):
        _refuse(options, DiffusersBackend.OPTIONS, "cinegen models", entry)
        return DiffusersBackend.from_pretrained(entry.path, **options)
    _refuse(options, NATIVE_OPTIONS, "Diffusers pipelines", entry)
    return NativeBackend.from_pretrained(entry.path, name=entry.name, **options)


def _refuse(options: dict, allowed, other: str, entry: ModelEntry) -> None:
    from cinegen.backends.diffusers import DiffusersBackend
    unknown = sorted(set(options) - set(allowed))
    typos = sorted(set(unknown) - NATIVE_OPTIONS - DiffusersBackend.OPTIONS)
    if typos:                                       # e.g. a misspelt key in models.toml
        known = sorted((NATIVE_OPTIONS | DiffusersBackend.OPTIONS | {"lora"}) - {"loras"})
        raise ValueError(f"model {entry.name}: unknown option {', '.join(typos)}; options are {', '.join(known)}")
    if unknown:
        flags = ", ".join("--lora" if o == "loras" else "--" + o.replace("_", "-") for o in unknown)
        raise ValueError(f"{flags} applies to {other} only, not to {entry.name} ({entry.path or 'the shipped model'})")


def describe(entry: ModelEntry) -> dict:
    """What a model is and can do, from its files' JSON and metadata alone (no weights are loaded)."""
    from cinegen.backends.diffusers import FolderInfo, is_diffusers_folder
    if is_diffusers_folder(entry.path):
        info = FolderInfo.read(entry.path)
        d = info.defaults()
        return {"name": entry.name, "path": str(entry.path), "kind": "diffusers", "family": info.family,
                "class": info.folder_class, "modes": list(info.modes), "fps": d["fps"], "steps": d["steps"],
                "guidance": d["guidance"]}
    from cinegen import defaults
    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.requests import NATIVE_MODES
    path = entry.path or WEIGHTS_DIR
    if not (Path(path) / "dit.safetensors").is_file():
        raise ValueError(f"model {entry.name}: {path} holds neither model_index.json nor dit.safetensors")
    return {"name": entry.name, "path": str(path), "kind": "cinegen", "family": "cinegen", "class": "TextToVideo",
            "modes": list(NATIVE_MODES), "fps": defaults.FPS, "steps": defaults.STEPS, "guidance": defaults.GUIDANCE}
