"""Toy world: a procedural video generator whose clips can be checked by colour.

Every clip is a list of objects (colour, shape, size, motion) over a background, rendered at any size
(multiples of 16), frame count and fps, with an English caption. The canonical caption form
`a [small|large] <colour> <shape> <motion> on a <background> background` always parses back
(`parse_caption`), which is how the evaluation analyzer knows what a prompt asked for.

Coordinates are normalised: x, y in [0, 1] of the frame width/height, y grows downwards (image rows).
Objects move in screen space; a camera move (pan/zoom) only moves the photo background, so an object's
motion word always describes what is seen on screen.

Shapes: video (T, H, W, 3) uint8.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from functools import lru_cache

import numpy as np

# --- Vocabulary (exact RGB so clips can be checked by colour) ---

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 180, 60),
    "blue": (40, 80, 220),
    "yellow": (235, 210, 40),
    "purple": (150, 60, 200),
    "orange": (240, 140, 30),
    "cyan": (40, 200, 210),
    "white": (240, 240, 240),
}
SHAPES = ("ball", "box", "triangle", "ring")
# Words no default training uses (random clips draw from COLOURS only): the renderer draws them and the analyzer
# reads them where a scene names them, so a fine-tuning demo can teach the shipped model something it never saw
# (tools/footage_demo.py). Every standard prompt set and score stays as it was.
EXTRA_COLOURS: dict[str, tuple[int, int, int]] = {"pink": (240, 110, 190)}
ALL_COLOURS = {**COLOURS, **EXTRA_COLOURS}
SIZES = ("small", "large")
MOTIONS = ("stays still", "moves left", "moves right", "moves up", "moves down", "bounces", "falls", "spins",
           "grows", "shrinks")
BACKGROUNDS = ("black", "gray", "sky", "photo")
CAMERAS = ("static", "pans left", "pans right", "zooms in", "zooms out")
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")

SIZE_RADIUS = {"small": 0.10, "large": 0.17}   # object radius as a fraction of min(H, W)
SPEED = 0.22                                    # frame widths per second for moves left/right/up/down
GRAVITY = 2.2                                   # frame heights per second^2 for bounces/falls
RESTITUTION = 0.8                               # fraction of speed kept at each floor contact
GROUND_TOP = 0.8                                # sky background: the green ground band starts here
WALL_RGB = (110, 75, 45)                        # occluding wall: brown, outside the colour vocabulary
SKY_TOP, SKY_BOTTOM, GROUND_RGB = (70, 110, 190), (170, 200, 235), (60, 120, 50)
GRAY_RGB = (128, 128, 128)

# Bumped whenever rendering changes, and written into latent caches, so that a cache rendered by another world
# is noticed. 2026-11-27: triangles are triangles (before, a trapezoid: the top half of the apex was cut off).
WORLD_VERSION = "2026-11-27"

# A default holdout list: these combinations never appear in the default model's training data, so the
# evaluation can measure composition of attributes that were only seen apart (docs/history.md).
DEFAULT_HOLDOUT = ("purple triangle", "orange ring bounces", "cyan box moves left", "yellow ball falls")


@dataclass(frozen=True)
class ObjectSpec:
    colour: str
    shape: str
    size: str
    motion: str

    def words(self) -> str:
        return f"{self.size} {self.colour} {self.shape} {self.motion}"


@dataclass(frozen=True)
class SceneSpec:
    objects: tuple[ObjectSpec, ...]
    background: str = "black"
    camera: str = "static"
    photo: str = "astronaut"
    collide: bool = False        # two objects move towards each other and bounce apart
    occluder: bool = False       # a wall stands mid-frame; moving objects pass behind it


@dataclass(frozen=True)
class Clip:
    video: np.ndarray            # (T, H, W, 3) uint8
    caption: str
    scene: SceneSpec
    fps: float
    tracks: dict = field(default_factory=dict)   # object index -> (T, 3) array of (x, y, radius) in pixels


# --- Holdout matching ---

def matches_holdout(obj: ObjectSpec, holdout: tuple[str, ...]) -> bool:
    """True when every word of some holdout phrase names an attribute of `obj` ("orange ring bounces")."""
    attrs = set(obj.words().split())
    return any(set(h.lower().split()) <= attrs for h in holdout)


def validate_holdout(holdout: tuple[str, ...]) -> None:
    vocab = set(COLOURS) | set(SHAPES) | set(SIZES) | {w for m in MOTIONS for w in m.split()}
    for phrase in holdout:
        bad = [w for w in phrase.lower().split() if w not in vocab]
        if bad or not phrase.strip():
            raise ValueError(f"holdout phrase {phrase!r} has words outside the vocabulary: {bad}")


# --- Random scenes ---

@dataclass(frozen=True)
class SceneOdds:
    """Weights of random_scene's draws, each normalised where it is used; empty: the world's own odds, drawn exactly
    as before (the same clips for the same seed). A decoder trained for the hard set asks for more objects, rings,
    small objects and photos than the DiT's training mix (configs/cinegen-default/07-decoder-hard.toml)."""
    objects: tuple[float, ...] = ()       # one per object count 1..max_objects; empty: object_count_odds
    backgrounds: tuple[float, ...] = ()   # one per BACKGROUNDS; empty: BACKGROUND_ODDS
    shapes: tuple[float, ...] = ()        # one per SHAPES; empty: equal
    sizes: tuple[float, ...] = ()         # one per SIZES; empty: equal

    def __post_init__(self):
        for name, names in (("backgrounds", BACKGROUNDS), ("shapes", SHAPES), ("sizes", SIZES)):
            weights = getattr(self, name)
            if weights and len(weights) != len(names):
                raise ValueError(f"odds_{name} needs one weight per {names}, got {list(weights)}")
        for name in ("objects", "backgrounds", "shapes", "sizes"):
            weights = getattr(self, name)
            if weights and (min(weights) < 0 or sum(weights) <= 0):
                raise ValueError(f"odds_{name} must be >= 0 with a positive sum, got {list(weights)}")


BACKGROUND_ODDS = (0.3, 0.25, 0.25, 0.2)
WORLD_ODDS = SceneOdds()


def _p(weights: tuple[float, ...]) -> np.ndarray | None:
    """Normalised weights for rng.choice; None (uniform, the draw the world has always made) when empty."""
    return np.asarray(weights, dtype=float) / sum(weights) if weights else None


def _random_object(rng: np.random.Generator, holdout: tuple[str, ...], motions=MOTIONS,
                   odds: SceneOdds = WORLD_ODDS) -> ObjectSpec:
    for _ in range(1000):
        shape = str(rng.choice(SHAPES, p=_p(odds.shapes)))
        allowed = [m for m in motions if not (m == "spins" and shape in ("ball", "ring"))]   # symmetric: a spin is invisible
        obj = ObjectSpec(str(rng.choice(list(COLOURS))), shape, str(rng.choice(SIZES, p=_p(odds.sizes))),
                         str(rng.choice(allowed)))
        if not matches_holdout(obj, holdout):
            return obj
    raise ValueError(f"holdout list {holdout} excludes every object")


def random_scene(rng: np.random.Generator, holdout: tuple[str, ...] = (), max_objects: int = 3,
                 p_collide: float = 0.1, p_occluder: float = 0.1, odds: SceneOdds = WORLD_ODDS) -> SceneSpec:
    """Draws a scene; objects in one scene have distinct colours so each stays identifiable."""
    background = str(rng.choice(BACKGROUNDS, p=_p(odds.backgrounds or BACKGROUND_ODDS)))
    camera = str(rng.choice(CAMERAS)) if background == "photo" else "static"
    photo = str(rng.choice(PHOTOS))
    roll = rng.random()
    if max_objects >= 2 and roll < p_collide:
        a, b = _distinct_objects(rng, holdout, 2, motions=("moves right", "moves left"), odds=odds)
        return SceneSpec((replace(a, motion="moves right"), replace(b, motion="moves left")), background, camera,
                         photo, collide=True)
    if roll < p_collide + p_occluder:
        (a,) = _distinct_objects(rng, holdout, 1, motions=("moves left", "moves right"), odds=odds)
        return SceneSpec((a,), background, camera, photo, occluder=True)
    n = int(rng.choice(np.arange(1, max_objects + 1), p=object_count_odds(max_objects, odds.objects)))
    return SceneSpec(tuple(_distinct_objects(rng, holdout, n, odds=odds)), background, camera, photo)


def object_count_odds(max_objects: int, weights: tuple[float, ...] = ()) -> np.ndarray:
    """Odds of 1..max_objects objects: `weights` (one per count), or the world's 0.7 / 0.2 / 0.1."""
    if weights and len(weights) != max_objects:
        raise ValueError(f"odds_objects needs one weight per count 1..{max_objects}, got {list(weights)}")
    return _p(tuple(weights) or (0.7, 0.2, 0.1)[:max_objects])


def _distinct_objects(rng, holdout, n, motions=MOTIONS, odds: SceneOdds = WORLD_ODDS) -> list[ObjectSpec]:
    objs: list[ObjectSpec] = []
    while len(objs) < n:
        obj = _random_object(rng, holdout, motions, odds)
        if obj.colour not in {o.colour for o in objs}:
            objs.append(obj)
    return objs


# --- Captions ---

_MOTION_PARAPHRASE = {
    "stays still": ["stays still", "sits still", "rests in place"],
    "moves left": ["moves left", "slides to the left", "travels left"],
    "moves right": ["moves right", "slides to the right", "travels right"],
    "moves up": ["moves up", "rises", "floats upward"],
    "moves down": ["moves down", "sinks", "drifts downward"],
    "bounces": ["bounces", "bounces on the ground", "bounces up and down"],
    "falls": ["falls", "drops down", "falls to the ground"],
    "spins": ["spins", "rotates", "turns around"],
    "grows": ["grows", "gets bigger", "expands"],
    "shrinks": ["shrinks", "gets smaller", "contracts"],
}
_SHAPE_PARAPHRASE = {"ball": ["ball", "disc"], "box": ["box", "square"], "triangle": ["triangle"], "ring": ["ring"]}
_BG_PARAPHRASE = {
    "black": ["on a black background", "against black"],
    "gray": ["on a gray background", "against a gray backdrop"],
    "sky": ["on a sky background", "under a blue sky above green grass"],
    "photo": ["on a photo background", "over a photograph"],
}


def canonical_caption(scene: SceneSpec) -> str:
    """`a [small|large] <colour> <shape> <motion> on a <background> background`, objects joined by "and"."""
    objs = " and ".join(f"a {o.size} {o.colour} {o.shape} {o.motion}" for o in scene.objects)
    text = f"{objs} on a {scene.background} background"
    return text + _scene_suffix(scene)


def _scene_suffix(scene: SceneSpec) -> str:
    parts = []
    if scene.collide:
        parts.append("they collide")
    if scene.occluder:
        parts.append("passing behind a wall")
    if scene.camera != "static":
        parts.append(f"camera {scene.camera}")
    return "".join(f", {p}" for p in parts)


def paraphrase_caption(scene: SceneSpec, rng: np.random.Generator) -> str:
    """Natural variants of the canonical caption; `parse_caption` reads these too."""
    def pick(options):
        return options[int(rng.integers(len(options)))]
    objs = " and ".join(
        f"a {o.size} {o.colour} {pick(_SHAPE_PARAPHRASE[o.shape])} {pick(_MOTION_PARAPHRASE[o.motion])}"
        for o in scene.objects)
    return f"{objs} {pick(_BG_PARAPHRASE[scene.background])}{_scene_suffix(scene)}"


def parse_caption(text: str) -> SceneSpec:
    """Parses a canonical (or paraphrased) caption back into a SceneSpec; raises ValueError naming the bad part."""
    low = " ".join(text.lower().strip().rstrip(".").split())
    camera = next((c for c in CAMERAS[1:] if f"camera {c}" in low), "static")
    collide, occluder = "collide" in low, "behind a wall" in low
    body = low.split(",")[0]
    background = _parse_background(body)
    body = re.split(r"\s+(?:on a|against|under a|over a)\s+", body)[0]
    objects = tuple(_parse_object(part) for part in re.split(r"\s+and\s+(?=an?\s)", body))
    return SceneSpec(objects, background, camera, collide=collide, occluder=occluder)


def _parse_background(body: str) -> str:
    for bg, phrases in _BG_PARAPHRASE.items():
        if any(p in body for p in phrases) or f"on a {bg} background" in body:
            return bg
    raise ValueError(f"caption {body!r} names no known background (one of {BACKGROUNDS})")


def _parse_object(part: str) -> ObjectSpec:
    m = re.match(r"an?\s+(small|large)\s+(\w+)\s+(\w+)\s+(.+)$", part.strip())
    if not m:
        raise ValueError(f"cannot parse object {part!r}: expected 'a <size> <colour> <shape> <motion>'")
    size, colour, shape_word, motion_words = m.groups()
    shape = next((s for s, names in _SHAPE_PARAPHRASE.items() if shape_word in names), None)
    motion = next((mo for mo, names in _MOTION_PARAPHRASE.items() if motion_words in names), None)
    if colour not in ALL_COLOURS or shape is None or motion is None:
        raise ValueError(f"unknown colour/shape/motion in {part!r}")
    return ObjectSpec(colour, shape, size, motion)


def caption_vocabulary() -> tuple[str, ...]:
    """Every word a training caption can hold, canonical or paraphrased (sorted): what a model trained on this
    world has read. Saved with the model (the source's facts; vocabulary.json for the shipped one), so that the
    inference path, which never imports the world, can name a prompt's words the model never trained on."""
    obj = ObjectSpec("red", "ball", "small", "bounces")
    texts = [canonical_caption(SceneSpec((obj, obj), bg, cam, collide=True, occluder=True))
             for bg in BACKGROUNDS for cam in CAMERAS]
    tables = (list(COLOURS), SIZES, *_SHAPE_PARAPHRASE.values(), *_MOTION_PARAPHRASE.values(), *_BG_PARAPHRASE.values())
    texts += [t for table in tables for t in table]
    return tuple(sorted(set(re.findall(r"[a-z]+", " ".join(texts).lower()))))


# --- Trajectories: per-frame (x, y, scale, angle) in normalised units ---

def _trajectory(obj: ObjectSpec, times: np.ndarray, rng: np.random.Generator, r: float, floor: float,
                duration: float, aspect: float) -> np.ndarray:
    """Returns (T, 4): x, y (normalised), scale factor, rotation angle. `r` is the radius in height units."""
    rx = r / aspect                                  # radius in width units
    x0 = rng.uniform(0.2, 0.8)
    y0 = rng.uniform(0.25, min(0.75, floor - r))
    x, y = np.full_like(times, x0), np.full_like(times, y0)
    scale, angle = np.ones_like(times), np.zeros_like(times)
    travel = SPEED * max(duration, 1.0)
    m = obj.motion
    if m in ("moves left", "moves right"):
        sign = -1 if m == "moves left" else 1
        start = rng.uniform(rx + 0.02, max(rx + 0.03, 1 - rx - travel)) if sign > 0 else \
            rng.uniform(min(1 - rx - 0.03, rx + travel), 1 - rx - 0.02)
        x = start + sign * SPEED * times
    elif m in ("moves up", "moves down"):
        sign = -1 if m == "moves up" else 1
        lo, hi = r + 0.02, floor - r - 0.02
        start = rng.uniform(lo, max(lo + 0.01, hi - travel)) if sign > 0 else rng.uniform(min(hi - 0.01, lo + travel), hi)
        y = start + sign * SPEED * times
    elif m in ("bounces", "falls"):
        y = _gravity_path(times, rng.uniform(r + 0.05, 0.35), floor - r, bounce=m == "bounces")
    elif m == "spins":
        angle = (2 * math.pi * rng.choice([-0.5, 0.5])) * times
    elif m in ("grows", "shrinks"):
        g = np.clip(times / max(duration, 1e-6), 0, 1)
        scale = 0.55 + 0.9 * g if m == "grows" else 1.45 - 0.9 * g
    return np.stack([x, y, scale, angle], axis=1)


def _gravity_path(times: np.ndarray, y_start: float, y_floor: float, bounce: bool) -> np.ndarray:
    """Drops from rest at y_start; bounces with restitution (or rests on the floor). Exact piecewise parabolas."""
    ys = np.empty_like(times)
    for i, t in enumerate(times):
        y, v, t_left = y_start, 0.0, float(t)
        while True:
            # time to reach the floor from (y, v) under gravity: y + v*s + g/2 s^2 = y_floor
            s = (-v + math.sqrt(v * v + 2 * GRAVITY * (y_floor - y))) / GRAVITY
            if s >= t_left:
                ys[i] = y + v * t_left + 0.5 * GRAVITY * t_left ** 2
                break
            t_left -= s
            v_hit = v + GRAVITY * s
            if not bounce or v_hit * RESTITUTION < 0.05:
                ys[i] = y_floor
                break
            y, v = y_floor, -v_hit * RESTITUTION
    return ys


def _collide_paths(paths: list[np.ndarray], radii_w: list[float], times: np.ndarray) -> None:
    """Two objects approach each other, touch at 40% of the clip and swap velocities (equal-mass elastic)."""
    a, b = paths
    a[:, 1] = b[:, 1] = (a[0, 1] + b[0, 1]) / 2
    xa, xb = radii_w[0] + 0.02, 1 - radii_w[1] - 0.02
    gap = xb - xa - radii_w[0] - radii_w[1]
    t_hit = 0.4 * max(float(times[-1]), 1.0)
    v = gap / 2 / t_hit
    after = np.maximum(times - t_hit, 0)
    a[:, 0] = xa + v * np.minimum(times, t_hit) - v * after
    b[:, 0] = xb - v * np.minimum(times, t_hit) + v * after


# --- Rendering ---

def _sdf(shape: str, px: np.ndarray, py: np.ndarray, r: float, angle: float) -> np.ndarray:
    """Signed distance (pixels) to the shape's edge; negative inside. px, py: (H, W) offsets from the centre."""
    c, s = math.cos(angle), math.sin(angle)
    u, v = c * px + s * py, -s * px + c * py
    if shape == "ball":
        return np.hypot(px, py) - r
    if shape == "box":
        return np.maximum(np.abs(u), np.abs(v)) - 0.85 * r
    if shape == "ring":
        return np.abs(np.hypot(px, py) - 0.72 * r) - 0.28 * r
    # equilateral triangle pointing up (in image rows, up is -v), circumradius r: three edges at inradius r/2,
    # the base below the centre and two slanted ones meeting at the apex r above it. (Until WORLD_VERSION
    # 2026-11-27 a fourth edge at r/2 above the centre cut the top half of the apex off: a trapezoid.)
    d = v - r / 2
    for k in (1, 2):
        a = 2 * math.pi * k / 3
        d = np.maximum(d, -(math.cos(a) * -v + math.sin(a) * u) - r / 2)
    return d


def shape_mask(shape: str, height: int, width: int, cx: float, cy: float, r: float, angle: float = 0.0) -> np.ndarray:
    """(height, width) bool: the pixels whose centres lie inside the shape drawn at (cx, cy) in pixels, size r."""
    py, px = np.mgrid[0:height, 0:width].astype(np.float32)                 # (H, W) pixel centres
    return _sdf(shape, px - cx, py - cy, r, angle) < 0


@lru_cache(maxsize=8)
def _photo(name: str) -> np.ndarray:
    import skimage.data
    img = getattr(skimage.data, name)()
    return np.ascontiguousarray(img[..., :3]).astype(np.float32)


def _background(scene: SceneSpec, n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """(T, H, W, 3) float32 background frames."""
    if scene.background == "black":
        return np.zeros((n, h, w, 3), np.float32)
    if scene.background == "gray":
        return np.broadcast_to(np.array(GRAY_RGB, np.float32), (n, h, w, 3)).copy()
    if scene.background == "sky":
        rows = np.linspace(0, 1, h, dtype=np.float32)[:, None]
        sky = (1 - rows / GROUND_TOP) * np.array(SKY_TOP) + rows / GROUND_TOP * np.array(SKY_BOTTOM)
        sky[rows[:, 0] >= GROUND_TOP] = GROUND_RGB
        return np.broadcast_to(sky[None, :, None, :], (n, h, w, 3)).astype(np.float32)
    return _photo_frames(scene, n, h, w, rng)


def _photo_frames(scene: SceneSpec, n: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """Crops a window that pans or zooms over a shipped photo; bilinear sampling via torch.grid_sample."""
    import torch
    import torch.nn.functional as F
    img = torch.from_numpy(_photo(scene.photo)).permute(2, 0, 1)[None]           # (1, 3, Hi, Wi)
    hi, wi = img.shape[-2:]
    g = torch.linspace(0, 1, n) if n > 1 else torch.zeros(1)
    base = min(hi / h, wi / w) * 0.6                                            # source pixels per output pixel
    zoom = {"zooms in": 1 - 0.4 * g, "zooms out": 0.6 + 0.4 * g}.get(scene.camera, torch.ones(n))
    half_w, half_h = base * zoom * w / wi, base * zoom * h / hi                 # half-window in [-1, 1] units
    pan = {"pans left": -1.0, "pans right": 1.0}.get(scene.camera, 0.0)
    cx = torch.full((n,), float(rng.uniform(-0.2, 0.2))) + pan * (0.5 - g) * -0.5
    cy = torch.full((n,), float(rng.uniform(-0.2, 0.2)))
    ys, xs = torch.linspace(-1, 1, h), torch.linspace(-1, 1, w)
    grid_x = cx[:, None, None] + xs[None, None, :] * half_w[:, None, None]       # (T, 1, W)
    grid_y = cy[:, None, None] + ys[None, :, None] * half_h[:, None, None]       # (T, H, 1)
    grid = torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)          # (T, H, W, 2)
    out = F.grid_sample(img.expand(n, -1, -1, -1), grid, align_corners=True)     # (T, 3, H, W)
    return out.permute(0, 2, 3, 1).numpy()                                       # (T, H, W, 3)


def render_scene(scene: SceneSpec, width: int = 64, height: int = 64, num_frames: int = 17, fps: float = 8.0,
                 seed: int = 0, caption: str | None = None) -> Clip:
    """Renders a scene to a clip. width/height: multiples of 16; num_frames >= 1."""
    check_size(width, height)
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    rng = np.random.default_rng(seed)
    times = np.arange(num_frames) / fps
    duration = (num_frames - 1) / fps
    frames = _background(scene, num_frames, height, width, rng)
    floor = GROUND_TOP if scene.background == "sky" else 1.0
    radii = [SIZE_RADIUS[o.size] * min(width, height) / height for o in scene.objects]   # height units
    paths = [_trajectory(o, times, rng, r, floor, duration, width / height) for o, r in zip(scene.objects, radii)]
    if scene.collide and len(paths) == 2:
        _collide_paths(paths, [r * height / width for r in radii], times)
    if scene.occluder:
        paths[0][:, 1] = np.clip(paths[0][:, 1], 0.3, 0.7)
    tracks = {}
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32) + 0.5
    for i, (obj, r, path) in enumerate(zip(scene.objects, radii, paths)):
        tracks[i] = _draw_object(frames, obj, r * height, path, xx, yy, width, height)
    if scene.occluder:
        x0 = int(width * 0.45)
        frames[:, :, x0:x0 + max(4, width // 10)] = WALL_RGB
    video = np.clip(np.rint(frames), 0, 255).astype(np.uint8)
    return Clip(video, caption or canonical_caption(scene), scene, fps, tracks)


def _draw_object(frames, obj, r_px, path, xx, yy, width, height) -> np.ndarray:
    rgb = np.array(ALL_COLOURS[obj.colour], np.float32)
    track = np.zeros((len(frames), 3), np.float32)
    for t, (x, y, scale, angle) in enumerate(path):
        cx, cy, r = x * width, y * height, r_px * scale
        d = _sdf(obj.shape, xx - cx, yy - cy, r, angle)
        alpha = np.clip(0.5 - d, 0.0, 1.0)[..., None]                # 1-pixel anti-aliased edge
        frames[t] = frames[t] * (1 - alpha) + rgb * alpha
        track[t] = (cx, cy, r)
    return track


def check_size(width: int, height: int) -> None:
    for name, v in (("width", width), ("height", height)):
        if not isinstance(v, int) or v < 16 or v % 16:
            raise ValueError(f"{name} must be a positive multiple of 16, got {v!r}")


def random_clip(rng: np.random.Generator, width=64, height=64, num_frames=17, fps=8.0,
                holdout: tuple[str, ...] = (), max_objects: int = 3, paraphrase_p: float = 0.5,
                odds: SceneOdds = WORLD_ODDS) -> Clip:
    """A random scene (drawn with `odds`), rendered, with a canonical or paraphrased caption."""
    scene = random_scene(rng, holdout, max_objects, odds=odds)
    caption = paraphrase_caption(scene, rng) if rng.random() < paraphrase_p else canonical_caption(scene)
    return render_scene(scene, width, height, num_frames, fps, seed=int(rng.integers(2**31)), caption=caption)


# --- Word-swapped twins: the same clip mirrored or played backwards, with the opposite words ---
# Trained on a clip and its twin, the model sees two videos that only the direction word tells apart, so it
# cannot leave the direction to the noise (docs/history.md: the shipped DiT does exactly that).

_MIRRORED = {"moves left": "moves right", "moves right": "moves left", "pans left": "pans right",
             "pans right": "pans left"}
_REVERSED = {**_MIRRORED, "moves up": "moves down", "moves down": "moves up", "grows": "shrinks",
             "shrinks": "grows", "zooms in": "zooms out", "zooms out": "zooms in", "stays still": "stays still",
             "spins": "spins", "static": "static"}


def mirror_clip(clip: Clip, holdout: tuple[str, ...] = ()) -> Clip | None:
    """The clip flipped left-right, "left" and "right" swapped in its scene and caption; None when that would
    show a held-out combination (e.g. "cyan box moves left" from a "cyan box moves right")."""
    width = clip.video.shape[2]
    tracks = {k: np.stack([width - 1 - v[:, 0], v[:, 1], v[:, 2]], 1) for k, v in clip.tracks.items()}
    return _twin(clip, _MIRRORED, np.ascontiguousarray(clip.video[:, :, ::-1]), tracks, holdout, keep_others=True)


def reverse_clip(clip: Clip, holdout: tuple[str, ...] = ()) -> Clip | None:
    """The clip played backwards with opposite words (up/down, left/right, grows/shrinks, pans, zooms); None when
    a motion has no backwards twin (falls and bounces run against gravity) or the twin is held out."""
    tracks = {k: v[::-1].copy() for k, v in clip.tracks.items()}
    return _twin(clip, _REVERSED, np.ascontiguousarray(clip.video[::-1]), tracks, holdout, keep_others=False)


def _twin(clip: Clip, swap: dict, video: np.ndarray, tracks: dict, holdout, keep_others: bool) -> Clip | None:
    def word(w):
        return swap.get(w, w) if keep_others else swap.get(w)
    motions = [word(o.motion) for o in clip.scene.objects]
    if None in motions or word(clip.scene.camera) is None:
        return None
    objects = tuple(replace(o, motion=m) for o, m in zip(clip.scene.objects, motions))
    if any(matches_holdout(o, holdout) for o in objects):
        return None
    scene = replace(clip.scene, objects=objects, camera=word(clip.scene.camera))
    return Clip(video, canonical_caption(scene), scene, clip.fps, tracks)
