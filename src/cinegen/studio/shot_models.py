"""Which model renders each shot of a board: the board's own (the CLI's --model) or the one a shot names.

    shots:
      - prompt: a red ball bounces            # the board's model
        seconds: 2
      - prompt: a red ball rolls into a box
        seconds: 2
        model: wan-1.3b                        # a `cinegen models` name, or a folder (relative to the board)

Each distinct model is loaded once (`load_backend`, with the load options models.toml gives it; the CLI's load
options go to the board's own model), whatever the number of shots naming it. A shot's model renders at its own
frame rate and, where it cannot render the board's size, at the size nearest to it; render.py conforms every
shot to the board's size and delivery rate and says so.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ShotModel:
    backend: object                     # backends.base.VideoBackend
    digest: str                         # model_digest: identifies the weights in shot cache keys and provenance
    path: Path | None = None            # the folder it was loaded from (None: not known, e.g. built in a test)

    @property
    def label(self) -> str:
        """What provenance tags and render.json name the model by: NAME@DIGEST."""
        return f"{self.backend.name}@{self.digest}"


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_digest(folder: Path) -> str:
    """Identifies the weights, so a new model never reuses an old model's shots. A Diffusers folder (many GB):
    its JSON configs' contents and each weight file's name, size and modification time."""
    h = hashlib.sha256()
    folder = Path(folder)
    if (folder / "model_index.json").is_file():
        for path in sorted(folder.rglob("*")):
            if path.suffix == ".json":
                h.update(f"{path.relative_to(folder)}:{file_digest(path)}".encode())
            elif path.is_file():
                st = path.stat()
                h.update(f"{path.relative_to(folder)}:{st.st_size}:{st.st_mtime_ns}".encode())
        return h.hexdigest()[:16]
    for name in ("dit.safetensors", "vae.safetensors"):
        h.update(file_digest(folder / name).encode())
    return h.hexdigest()[:16]


def load_shot_model(model: str | Path | None, **options) -> ShotModel:
    """A registry name, a folder, or None (the shipped model), loaded through the one backend layer."""
    from cinegen.backends import load_backend
    from cinegen.backends.registry import resolve
    from cinegen.defaults import WEIGHTS_DIR
    path = resolve(model).path or WEIGHTS_DIR
    return ShotModel(load_backend(model, **options), model_digest(path), Path(path).resolve())


class BoardModels:
    """The board's own model and every model its shots name, each loaded once, on first use."""

    def __init__(self, default: ShotModel, base: str | Path = ".", load=None):
        """load: name -> ShotModel (default: load_shot_model, with the load options models.toml gives it)."""
        self.default, self.base, self._load = default, Path(base), load or (lambda name: load_shot_model(name))
        self._loaded: dict[str, ShotModel] = {}

    def get(self, name: str | None) -> ShotModel:
        """The model a shot's `model` names (None: the board's own). ValueError naming one that is neither a
        registered name nor a folder, or that does not load."""
        if name is None:
            return self.default
        key = self._locate(name)
        if key not in self._loaded:
            from cinegen.backends.registry import load_registry
            from cinegen.defaults import WEIGHTS_DIR
            entry = load_registry().get(key)
            path = (entry.path or WEIGHTS_DIR) if entry else Path(key)
            same = self.default.path is not None and Path(path).resolve() == self.default.path
            try:
                self._loaded[key] = self.default if same else self._load(key)
            except FileNotFoundError as e:            # pydantic reports ValueErrors with the board's line
                raise ValueError(str(e)) from None
        return self._loaded[key]

    def _locate(self, name: str) -> str:
        """A registry name as it is; a relative folder relative to the board (as its images are)."""
        from cinegen.backends.registry import load_registry
        if name in load_registry() or Path(name).is_absolute() or not (self.base / name).is_dir():
            return name
        return str(self.base / name)

    def of(self, shot) -> ShotModel:
        return self.get(shot.model)


def board_models(models, model_id: str = "") -> BoardModels:
    """A BoardModels as it is, or one backend (every shot renders on it, its weights identified by model_id)."""
    return models if isinstance(models, BoardModels) else BoardModels(ShotModel(models, model_id))
