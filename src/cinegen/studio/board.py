"""Storyboards: a YAML (or JSON) list of shots, validated all at once with the line of every bad field.

    title: The red ball
    size: 64x64            # defaults for every shot
    fps: 24                # delivery rate: 23.976, 24, 25, 29.97 or 30 (the model renders at its own, see conform.py)
    voice: en              # espeak-ng voice for dialogue and narration
    shots:
      - prompt: a large red ball bounces on a black background
        seconds: 2
        narration: Our hero enters.
      - prompt: a large red ball moves right on a gray background
        seconds: 2
        transition: connect          # generate a bridge from the previous shot instead of a hard cut
        image: still.png             # optional: the shot starts on this image (paths relative to the board)
        keyframes: [{frame: 8, image: mid.png}]
        dialogue: Where am I going?
        speaker: BALL
        model: wan-1.3b              # optional: another model renders this shot (see shot_models.py)

Pydantic checks types and values; `load_board` maps each error's location back to its YAML node so the report
says "line 12: shots[1].seconds: ...". YAML is a superset of JSON, so JSON boards take the same path.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Literal, Optional

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from cinegen import defaults
from cinegen.config import parse_size
from cinegen.studio.conform import DEFAULT_RATE, DELIVERY_RATES, delivery_rate


class BoardError(ValueError):
    """Every problem in a board, one per line of the message."""

    def __init__(self, path: Path, problems: list[str]):
        self.problems = problems
        super().__init__(f"{path}: {len(problems)} problem(s)\n" + "\n".join(f"  {p}" for p in problems))


def _size(value: str, info: ValidationInfo | None) -> str:
    """WIDTHxHEIGHT, checked against the model's geometry when load_board was given one."""
    w, h = parse_size(value)
    geometry = ((info and info.context) or {}).get("geometry")
    if geometry is not None:
        geometry.check_size(w, h)
    elif w < 1 or h < 1:
        raise ValueError(f"size must be positive, got {value!r}")
    return f"{w}x{h}"


def _existing_image(value: Optional[str], info: ValidationInfo) -> Optional[str]:
    """A path (relative to the board) to a file Pillow can open as an image: checked here, not at render time."""
    from PIL import Image, UnidentifiedImageError
    if value is None:
        return None
    base = Path((info.context or {}).get("base", "."))
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise ValueError(f"file not found: {path}")
    try:
        with Image.open(path) as im:
            im.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"not an image Pillow can read: {path} ({type(e).__name__})") from None
    return str(path)


class Keyframe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    frame: int = Field(ge=0)
    image: str

    _image = field_validator("image")(_existing_image)


class Shot(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    prompt: str = Field(min_length=1, max_length=defaults.MAX_PROMPT_CHARS)
    seconds: float = Field(gt=0, le=60)
    size: Optional[str] = None
    seed: Optional[int] = None
    image: Optional[str] = None
    keyframes: list[Keyframe] = []
    dialogue: Optional[str] = Field(default=None, min_length=1)
    narration: Optional[str] = Field(default=None, min_length=1)
    speaker: Optional[str] = None
    transition: Literal["cut", "connect"] = "cut"
    transition_seconds: float = Field(default=1.0, gt=0, le=10)
    model: Optional[str] = Field(default=None, min_length=1)     # None: the board's model

    _image = field_validator("image")(_existing_image)

    @field_validator("size")
    @classmethod
    def _check_size(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        """Parsed here; checked against the shot's own model in _fits_its_model."""
        return None if v is None else _size(v, None)

    @field_validator("model")
    @classmethod
    def _check_model(cls, v: Optional[str], info: ValidationInfo) -> Optional[str]:
        models = (info.context or {}).get("models")
        if v is not None and models is not None:
            models.get(v)                      # loaded once here; a name that is no model is reported at its line
        return v

    @model_validator(mode="after")
    def _one_line(self) -> "Shot":
        if self.dialogue and self.narration:
            raise ValueError("give either dialogue or narration for a shot, not both")
        if self.image and self.keyframes:
            raise ValueError("give either image or keyframes for a shot, not both")
        return self

    @property
    def modes(self) -> tuple[str, ...]:
        """The request modes (requests.MODES) rendering this shot takes: itself, and the bridge into it."""
        own = "animate" if self.image else "keyframes" if self.keyframes else "text"
        return (own, "connect") if self.transition == "connect" else (own,)

    @model_validator(mode="after")
    def _fits_its_model(self, info: ValidationInfo) -> "Shot":
        """The shot's model can do what the shot asks (its modes) at the size it names."""
        context = info.context or {}
        if context.get("models") is None:
            if self.size and context.get("geometry") is not None:
                context["geometry"].check_size(*parse_size(self.size))
            return self
        backend = context["models"].get(self.model).backend
        for mode in self.modes:
            if mode not in backend.capabilities.modes:
                why = {"animate": " (the shot's image)", "connect": " (transition: connect)"}.get(mode, "")
                raise ValueError(f"model {backend.name} cannot do {mode!r}{why}; it can do: "
                                 f"{', '.join(backend.capabilities.modes)}")
        if self.size:
            backend.check_size(*parse_size(self.size))
        return self

    @property
    def line(self) -> Optional[str]:
        """The spoken/subtitled line, if any."""
        text = self.dialogue or self.narration
        if text and self.dialogue and self.speaker:
            return f"{self.speaker}: {text}"
        return text


class Board(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    title: str = "untitled"
    size: str = defaults.SIZE
    fps: float = float(DELIVERY_RATES[DEFAULT_RATE])
    steps: int = Field(default=defaults.STEPS, ge=1, le=defaults.MAX_STEPS)
    guidance: float = Field(default=defaults.GUIDANCE, ge=0)
    seed: int = defaults.SEED
    voice: str = "en"
    shots: list[Shot] = Field(min_length=1)

    @field_validator("size")
    @classmethod
    def _check_size(cls, v: str, info: ValidationInfo) -> str:
        return _size(v, info)

    @field_validator("fps")
    @classmethod
    def _check_fps(cls, v: float) -> float:
        return float(delivery_rate(v))

    @property
    def rate(self) -> Fraction:
        """The exact delivery rate (24000/1001 for 23.976)."""
        return delivery_rate(self.fps)

    @field_validator("voice")
    @classmethod
    def _check_voice(cls, v: str) -> str:
        from cinegen.studio.voice import check_voice
        return check_voice(v)

    def shot_size(self, shot: Shot) -> tuple[int, int]:
        return parse_size(shot.size or self.size)

    @property
    def film_size(self) -> tuple[int, int]:
        """(width, height) of the joined film: every shot is fitted to it."""
        return parse_size(self.size)


def _line_of(node: yaml.Node | None, loc: tuple) -> int | None:
    """Walks the composed YAML node tree along a pydantic error location; the deepest node found gives the line."""
    line = None
    for key in loc:
        if node is None:
            break
        line = node.start_mark.line + 1
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
            if node is None:   # an unknown or missing key: point at the mapping that holds it
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            break
    if node is not None:
        line = node.start_mark.line + 1
    return line


def _loc_str(loc: tuple) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(board)"


# A board is read and validated whole before anything renders; these bounds keep --check interactive (a 500-shot
# board validates in about a second) and a film within what one render.json and one timeline sensibly hold.
MAX_SHOTS = 500
MAX_BOARD_BYTES = 1_000_000


def _duplicate_keys(node: yaml.Node | None) -> list[str]:
    """YAML lets a later key silently replace an earlier one; a board reports it instead, with both lines."""
    problems = []
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for k, v in node.value:
            key = getattr(k, "value", None)
            if key in seen:
                problems.append(f"line {k.start_mark.line + 1}: duplicate key {key!r} (first given at line {seen[key]})")
            else:
                seen[key] = k.start_mark.line + 1
            problems += _duplicate_keys(v)
    elif isinstance(node, yaml.SequenceNode):
        for v in node.value:
            problems += _duplicate_keys(v)
    return problems


def _first_connect(root: yaml.Node, data: dict) -> list[str]:
    shots = data.get("shots")
    if isinstance(shots, list) and shots and isinstance(shots[0], dict) and shots[0].get("transition") == "connect":
        line = _line_of(root, ("shots", 0, "transition"))
        return [f"line {line}: shots[0].transition: the first shot has nothing to connect from; use 'cut'"]
    return []


def load_board(path: str | Path, geometry=None, models=None) -> Board:
    """Parses and validates a board; raises BoardError listing every problem with its line. geometry: the
    board's model's (geometry.Geometry), so that sizes it cannot render are reported here, with their lines.
    models: a shot_models.BoardModels, so that each shot's model is loaded (once) and checked against what the
    shot asks of it (its modes, its size), with the shot's line."""
    path = Path(path)
    if not path.is_file():
        raise BoardError(path, [f"file not found: {path}"])
    if path.stat().st_size > MAX_BOARD_BYTES:
        raise BoardError(path, [f"a board may be at most {MAX_BOARD_BYTES:,} bytes; this one is {path.stat().st_size:,} "
                                "(split the film into several boards)"])
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        raise BoardError(path, [f"{where}not valid YAML/JSON: {getattr(e, 'problem', e)}"]) from None
    if not isinstance(data, dict):
        raise BoardError(path, ["line 1: a board is a mapping with a 'shots' list"])
    if isinstance(data.get("shots"), list) and len(data["shots"]) > MAX_SHOTS:
        raise BoardError(path, [f"line {_line_of(root, ('shots',))}: shots: a board holds at most {MAX_SHOTS} shots; "
                                f"this one has {len(data['shots'])} (split the film into several boards)"])
    problems = _duplicate_keys(root) + _first_connect(root, data)
    try:
        board = Board.model_validate(data, context={"base": path.parent, "geometry": geometry,
                                                           "models": models})
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"line {line}: {_loc_str(loc)}: {msg}" if line else f"{_loc_str(loc)}: {msg}")
    if problems:
        problems.sort(key=lambda p: int(p.split(":")[0].removeprefix("line ")) if p.startswith("line ") else 0)
        raise BoardError(path, problems) from None
    return board
