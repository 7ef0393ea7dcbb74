"""Checks a video against the scene its prompt describes, by colour: the toy world's exact RGB vocabulary
makes every object findable without a learned detector.

For each prompted object: colour (a blob of that colour is present), shape (the world's own shape that overlaps
the blob best, sized to its convex hull, at its best rotation),
count (exactly the prompted colours are present, one blob each), motion (centroid/area tracks: direction,
parabolic bounce with a rebound, accelerating fall, spin as a shape change in place, growth/shrink).
Per clip: background (black / gray / sky / photo) and temporal flicker of the background.
Beside them, read only by `make bench`'s issue-35 section: smear() of a bouncing object (squash, fringe, ghost).

Video: (T, H, W, 3) uint8.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from skimage.morphology import convex_hull_image

from cinegen.toyworld.world import ALL_COLOURS, COLOURS, SHAPES, ObjectSpec, SceneSpec, canonical_caption, shape_mask

COLOUR_NAMES = list(COLOURS)
PALETTE = np.array([COLOURS[c] for c in COLOUR_NAMES], np.float32)     # (K, 3)
MAX_COLOUR_DIST = 45.0        # RGB distance for a vocabulary colour; the sky's blue and the ground's green sit 52-64 away
MIN_PRESENT = 0.5             # an object must be visible in at least this share of frames
EDGE_MARGIN = 3               # pixels (at 64x64) around vocabulary colours left out of the background: decoded edges
MIN_BACKGROUND = 0.1          # the share of the video that must remain for the margin to apply

# Written into every eval report; `compare` refuses to pair reports of different versions, since a changed check
# would read as a change of model. Bump it whenever a check changes.
ANALYZER_VERSION = "2026-11-27.2"       # .2: the shape check by templates sized to the convex hull (was: one area ratio)
ANALYZER_BEFORE_VERSIONS = "before 2026-11-27"       # what a report without the field was scored by


@dataclass
class Track:
    present: np.ndarray       # (T,) bool
    xy: np.ndarray            # (T, 2) centroid in normalised units (NaN when absent)
    area: np.ndarray          # (T,) pixels
    masks: list               # per-frame bool mask of the main blob (or None)
    blobs: np.ndarray         # (T,) number of significant blobs of the colour


@dataclass
class ClipReport:
    checks: dict[str, bool] = field(default_factory=dict)     # "obj0.colour" -> passed, "background" -> passed
    flicker: float = 0.0

    @property
    def score(self) -> float:
        return float(np.mean(list(self.checks.values()))) if self.checks else 0.0


def colour_labels(video: np.ndarray, palette: np.ndarray = PALETTE) -> np.ndarray:
    """(T, H, W) int: index of the nearest vocabulary colour within MAX_COLOUR_DIST, else -1."""
    d = np.linalg.norm(video[..., None, :].astype(np.float32) - palette, axis=-1)    # (T, H, W, K)
    nearest = d.argmin(-1)
    return np.where(d.min(-1) < MAX_COLOUR_DIST, nearest, -1)


def min_blob_area(h: int, w: int) -> float:
    return 10.0 * (h * w) / 4096.0       # well below a small triangle (~50 px at 64x64), far above noise specks


def track_colour(labels: np.ndarray, k: int) -> Track:
    t_len, h, w = labels.shape
    present, xy, area, masks, blobs = np.zeros(t_len, bool), np.full((t_len, 2), np.nan), np.zeros(t_len), [], np.zeros(t_len, int)
    for t in range(t_len):
        comp, n = ndimage.label(labels[t] == k)
        sizes = ndimage.sum(np.ones_like(comp), comp, index=np.arange(1, n + 1)) if n else np.zeros(0)
        big = np.flatnonzero(sizes >= min_blob_area(h, w))
        blobs[t] = len(big)
        if len(big) == 0:
            masks.append(None)
            continue
        mask = comp == (big[sizes[big].argmax()] + 1)
        ys, xs = np.nonzero(mask)
        present[t], xy[t], area[t] = True, (xs.mean() / w, ys.mean() / h), mask.sum()
        masks.append(mask)
    return Track(present, xy, area, masks, blobs)


# each shape's area over r^2, r the size the world draws it at (toyworld.world._sdf), so a template can match a blob's area
SHAPE_AREA = {"ball": math.pi, "ring": math.pi, "box": 1.7 ** 2, "triangle": 3 * math.sqrt(3) / 4}
# rotations tried: a box repeats every 90 degrees, a triangle every 120; discs and rings look the same at any angle
SHAPE_ANGLES = {"ball": (0.0,), "ring": (0.0,), "box": tuple(np.deg2rad(np.arange(0, 90, 6))),
                "triangle": tuple(np.deg2rad(np.arange(0, 120, 6)))}


def classify_shape(mask: np.ndarray) -> str:
    """The shape whose template overlaps the blob most (IoU): each of the world's shapes drawn by its own SDF at the
    centroid of the blob's convex hull, with the hull's area, at its best rotation. The hull, not the blob, sizes
    the templates: a decoded ring whose band has a gap, or a ball with a dark blotch inside, keeps its outline. The
    IoU is taken with the blob as found, so a ring must show its hole.

    Why templates, not one number: the check used to be the blob's area over the disc through its farthest pixel
    (ball > 0.8 > box > 0.52 > triangle). One stray edge pixel moves that farthest pixel, and a small real ball only
    reached 0.85: under a Gaussian blur of sigma 1.2 real renders of the evaluation's scenes were read right in 0.82
    (triangles 21 of 48), against 0.96 here (docs/history.md, "The shape check"; tools/shape_check_study.py)."""
    hull = convex_hull_image(mask)
    ys, xs = np.nonzero(hull)
    pad = max(np.ptp(ys), np.ptp(xs)) // 2 + 2             # room for a template wider than the blob's box
    y0, x0 = max(ys.min() - pad, 0), max(xs.min() - pad, 0)
    win = mask[y0:ys.max() + pad + 1, x0:xs.max() + pad + 1]                 # (h, w) around the blob
    cy, cx = ys.mean() - y0, xs.mean() - x0
    best = (-1.0, "")
    for shape in SHAPES:
        r = math.sqrt(hull.sum() / SHAPE_AREA[shape])
        for angle in SHAPE_ANGLES[shape]:
            t = shape_mask(shape, *win.shape, cx, cy, r, angle)
            best = max(best, ((t & win).sum() / (t | win).sum(), shape))
    return best[1]


def classify_shape_by_ratio(mask: np.ndarray) -> str:
    """The shape check before analyzer 2026-11-27.2, kept as the baseline that tests and
    tools/shape_check_study.py measure classify_shape against: a hole makes a ring; otherwise the blob's area over
    the disc through its farthest pixel (ball ~1, box ~0.64, triangle ~0.41)."""
    filled = ndimage.binary_fill_holes(mask)
    if filled.sum() > 1.15 * mask.sum():
        return "ring"
    ys, xs = np.nonzero(filled)
    r_max = np.sqrt((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2).max() + 0.5
    ratio = filled.sum() / (np.pi * r_max ** 2)
    return "ball" if ratio > 0.8 else "box" if ratio > 0.52 else "triangle"


def shape_of(track: Track) -> str | None:
    votes = [classify_shape(m) for m in track.masks if m is not None]
    return max(set(votes), key=votes.count) if votes else None


def displacement(track: Track) -> np.ndarray | None:
    """(dx, dy) in frame units from the first to the last frame the object is seen; None if seen in under 2."""
    idx = np.flatnonzero(track.present)
    return track.xy[idx[-1]] - track.xy[idx[0]] if len(idx) > 1 else None


def motion_ok(track: Track, motion: str, shape: str) -> bool:
    shift = displacement(track)
    if shift is None:
        return False
    idx = np.flatnonzero(track.present)
    x, y, a = track.xy[idx, 0], track.xy[idx, 1], track.area[idx]
    dx, dy = shift
    growth = a[-1] / max(a[0], 1.0)
    still = max(np.ptp(x), np.ptp(y)) < 0.06
    if motion == "stays still":
        return still and 0.75 < growth < 1.33
    if motion in ("moves left", "moves right"):
        return abs(dx) > 0.1 and abs(dx) > 2 * abs(dy) and (dx < 0) == (motion == "moves left")
    if motion in ("moves up", "moves down"):
        return abs(dy) > 0.1 and abs(dy) > 2 * abs(dx) and (dy < 0) == (motion == "moves up")
    if motion == "grows":
        return growth > 1.5
    if motion == "shrinks":
        return growth < 0.67
    if motion == "bounces":
        return _bounces(y)
    if motion == "falls":
        return _falls(y, idx)
    if motion == "spins":
        return still and 0.75 < growth < 1.33 and _shape_changes(track)
    raise ValueError(f"unknown motion {motion!r}")


def _bounces(y: np.ndarray) -> bool:
    """Goes down by more than 5% of the frame to a floor contact, then comes back up by at least 4%: a rebound.

    The contact is any frame, not only the lowest one: a decoded ball often lands a second time a pixel below its
    first landing, and that lowest point, at the clip's end, has no rebound after it."""
    rest_min = np.minimum.accumulate(y[::-1])[::-1]                     # lowest height (max up) from each frame on
    return bool(np.any((y - y[0] > 0.05) & (y - rest_min > 0.04)))


def _falls(y: np.ndarray, frames: np.ndarray) -> bool:
    """Moves down by > 10% of the frame, accelerating, then rests with no rebound.

    The landing is the first frame within 15% of the drop of the lowest point: decoded video settles onto the
    floor over a few frames, and fitting those flat frames would hide the acceleration before them.
    Acceleration is the t^2 term of a quadratic fit of y up to the landing (time scaled to 0..1): a drop from rest
    under gravity gives about the whole drop, constant-speed 'moves down' about 0. A rebound is any rise of more
    than 4% of the frame after the landing (the largest drawdown below the running lowest point).
    """
    drop = y.max() - y[0]
    land = int(np.flatnonzero(y >= y.max() - max(0.02, 0.15 * drop))[0])
    rebound = float(np.max(np.maximum.accumulate(y[land:]) - y[land:]))
    if drop < 0.1 or y[-1] - y[0] < 0.1 or land < 2 or rebound > 0.04:
        return False
    t = (frames[: land + 1] - frames[0]) / max(frames[land] - frames[0], 1)
    return float(np.polyfit(t, y[: land + 1], 2)[0]) > 0.3 * drop


def _shape_changes(track: Track) -> bool:
    """Spin: the centred blob's overlap with its first-frame self falls below 0.8 at some frame."""
    masks = [m for m in track.masks if m is not None]
    ref = _centred(masks[0])
    return min(_iou(ref, _centred(m)) for m in masks[1:]) < 0.8


def _centred(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    shift = (mask.shape[0] // 2 - int(round(ys.mean())), mask.shape[1] // 2 - int(round(xs.mean())))
    return np.roll(mask, shift, axis=(0, 1))


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def background_mask(labels: np.ndarray) -> np.ndarray:
    """(T, H, W) bool: pixels of no vocabulary colour and at least EDGE_MARGIN (scaled to the frame) from any.

    A decoded object's edge blends its colour into the background over 2-3 pixels; those mixed pixels are no
    vocabulary colour, yet they belong to the object, not the background. Counted as background, the edge of one
    large cyan box on black raised the pixels' spread from about 5 to 21 and the clip failed "black" (std < 20).
    Falls back to every non-vocabulary pixel when the margin would leave under MIN_BACKGROUND of the video.
    """
    bg = labels < 0
    r = max(1, round(EDGE_MARGIN * min(labels.shape[1:]) / 64))
    near = ndimage.binary_dilation(~bg, structure=np.ones((1, 2 * r + 1, 2 * r + 1), bool))    # per frame
    far = bg & ~near
    return far if far.mean() >= MIN_BACKGROUND else bg


def classify_background(video: np.ndarray, labels: np.ndarray) -> str:
    """From background pixels (background_mask): dark -> black, flat mid gray -> gray, blue over green -> sky."""
    bg = background_mask(labels)
    pix = video[bg].astype(np.float32) if bg.any() else video.reshape(-1, 3).astype(np.float32)
    mean, std = pix.mean(0), pix.std(0).mean()
    if mean.max() < 40 and std < 20:
        return "black"
    if abs(mean - 128).max() < 25 and std < 20 and np.ptp(mean) < 20:
        return "gray"
    h = video.shape[1]
    top = video[:, : h // 3].reshape(-1, 3).astype(np.float32).mean(0)
    bottom = video[:, int(h * 0.85):].reshape(-1, 3).astype(np.float32).mean(0)
    if top[2] > top[0] + 40 and bottom[1] > bottom[0] + 30 and bottom[1] > bottom[2] + 20:
        return "sky"
    # photos are textured but spatially smooth; white noise changes as much between neighbours as overall
    smooth = np.abs(np.diff(video.astype(np.float32), axis=2)).mean() < 0.7 * std
    return "photo" if std > 25 and smooth else "unknown"


def flicker(video: np.ndarray, labels: np.ndarray) -> float:
    """Mean absolute frame-to-frame change (0-255) of pixels that are background in both frames."""
    if len(video) < 2:
        return 0.0
    bg = (labels[1:] < 0) & (labels[:-1] < 0)
    diff = np.abs(video[1:].astype(np.float32) - video[:-1].astype(np.float32)).mean(-1)
    return float(diff[bg].mean()) if bg.any() else 0.0


def analyze(video: np.ndarray, scene: SceneSpec) -> ClipReport:
    """Scores one clip against its scene: a check per object attribute plus the background."""
    if video.ndim != 4 or video.shape[-1] != 3:
        raise ValueError(f"video must be (T, H, W, 3), got {video.shape}")
    # the vocabulary, plus any extra colour (world.EXTRA_COLOURS) the scene names: standard scenes read as before
    names = COLOUR_NAMES + sorted({o.colour for o in scene.objects} - set(COLOUR_NAMES))
    labels = colour_labels(video, np.array([ALL_COLOURS[c] for c in names], np.float32))
    report = ClipReport(flicker=flicker(video, labels))
    tracks = {k: track_colour(labels, k) for k in range(len(names))}
    seen = {names[k] for k, tr in tracks.items() if tr.present.mean() >= MIN_PRESENT}
    if scene.background == "photo":
        # photos hold vocabulary colours of their own (the astronaut's white suit): there, only the
        # prompted colours are counted, and an extra object in a photo goes unnoticed
        seen &= {o.colour for o in scene.objects}
    for i, obj in enumerate(scene.objects):
        _check_object(report, f"obj{i}", obj, tracks[names.index(obj.colour)], seen, scene)
    report.checks["background"] = classify_background(video, labels) == scene.background
    return report


def _check_object(report: ClipReport, key: str, obj: ObjectSpec, track: Track, seen: set, scene: SceneSpec) -> None:
    visible = track.present.mean() >= MIN_PRESENT
    wanted = {o.colour for o in scene.objects}
    report.checks[f"{key}.colour"] = visible
    report.checks[f"{key}.shape"] = visible and shape_of(track) == obj.shape
    report.checks[f"{key}.count"] = visible and seen == wanted and int(np.median(track.blobs[track.present])) == 1
    report.checks[f"{key}.motion"] = visible and motion_ok(track, obj.motion, obj.shape)


# --- Checks of the hard evaluation set (eval/hard.py): several objects, lengths, seams. Each compares a generated
# clip's tracks with the world's own render of the same prompt (`real`), so a check asks what the world does. ---

MIN_TRACKED = 0.9             # identity: the share of frames an object must be seen in, as exactly one blob
JUMP_MARGIN = 0.08            # frame units a centroid may step, between two frames, beyond the world's largest step
MAGNITUDE_RANGE = (0.5, 2.0)  # a motion's extent over the world's own, for the same prompt and length
MIN_EXTENT = 0.03             # below this the world's motion has no extent to compare (frame units, log area)
SEAM_POSITION = 0.06          # frame units from the world's continuation, at the first new frame of an extension
SEAM_FRAMES = 3               # frames after a seam whose mean velocity is compared
SEAM_VELOCITY = (0.5, 0.01)   # |v - v_world| <= 0.5 |v_world| + 0.01 frame units per frame
LOOP_SEAM = 2.0               # a loop's wrap may change at most this many times the clip's median frame step ...
LOOP_LEVELS = 1.0             # ... plus this many levels (0-255), so a still clip's tiny steps still allow a seam


def tracks_of(video: np.ndarray, scene: SceneSpec) -> list[Track]:
    """One Track per prompted object, by its colour (objects in one scene have distinct colours)."""
    labels = colour_labels(video)
    return [track_colour(labels, COLOUR_NAMES.index(o.colour)) for o in scene.objects]


def _steps(track: Track) -> np.ndarray:
    """Centroid steps (frame units) between consecutive frames where the object is seen in both."""
    both = track.present[1:] & track.present[:-1]
    return np.linalg.norm(np.diff(track.xy, axis=0), axis=1)[both]


def identity_ok(track: Track, real: Track) -> bool:
    """The object stays one object: seen as exactly one blob in MIN_TRACKED of the frames, and it never jumps
    (no centroid step beyond the world's largest step plus JUMP_MARGIN): no fusing, splitting, swapping places."""
    single = (track.present & (track.blobs == 1)).mean() >= MIN_TRACKED
    steps, real_steps = _steps(track), _steps(real)
    limit = (real_steps.max() if len(real_steps) else 0.0) + JUMP_MARGIN
    return bool(single and len(steps) and steps.max() <= limit)


def motion_extent(track: Track, motion: str) -> float | None:
    """How far a motion goes: the span of x (moves left/right), of y (up, down, bounces, falls) or of log area
    (grows, shrinks); None for motions without an extent (stays still, spins) or an object seen in under 2 frames."""
    idx = np.flatnonzero(track.present)
    if len(idx) < 2:
        return None
    if motion in ("moves left", "moves right"):
        return float(np.ptp(track.xy[idx, 0]))
    if motion in ("moves up", "moves down", "bounces", "falls"):
        return float(np.ptp(track.xy[idx, 1]))
    if motion in ("grows", "shrinks"):
        return float(np.ptp(np.log(np.maximum(track.area[idx], 1.0))))
    return None


def magnitude_ok(track: Track, real: Track, motion: str) -> bool | None:
    """The motion's extent within MAGNITUDE_RANGE of the world's for the same prompt (not only its direction: a 4 s
    bounce of 9 px where the world's travels 32 fails). None: nothing to compare (no extent in the world's)."""
    want = motion_extent(real, motion)
    if want is None or want < MIN_EXTENT:
        return None
    got = motion_extent(track, motion)
    return got is not None and MAGNITUDE_RANGE[0] * want <= got <= MAGNITUDE_RANGE[1] * want


def collide_ok(left: Track, right: Track) -> bool:
    """"they collide": the two objects approach, meet inside the clip and bounce apart, each keeping its side
    (the one that starts on the left stays left in 90% of frames: no passing through, no swapping)."""
    both = left.present & right.present
    if both.mean() < MIN_TRACKED:
        return False
    gap = right.xy[both, 0] - left.xy[both, 0]                   # centroid distance, frame widths
    k = int(gap.argmin())
    return bool((gap > 0).mean() >= 0.9 and 0 < k < len(gap) - 1 and gap[0] - gap[k] >= 0.1 and gap[-1] - gap[k] >= 0.05)


def seam_checks(track: Track, real: Track, seam: int) -> dict[str, bool]:
    """Continuity where generated frames follow given ones (frame `seam` is the last given one): the position at
    the first new frame within SEAM_POSITION of the world's continuation, and the mean velocity over the next
    SEAM_FRAMES frames within SEAM_VELOCITY of the world's (an object that jumps, stops or turns back fails)."""
    span = slice(seam, seam + SEAM_FRAMES + 1)
    p, r = track.present[span], real.present[span]
    if not (p.all() and r.all()) or len(p) < 2:
        return {"position": False, "velocity": False}
    xy, rxy = track.xy[span], real.xy[span]
    v, rv = (xy[-1] - xy[0]) / (len(p) - 1), (rxy[-1] - rxy[0]) / (len(p) - 1)     # frame units per frame
    scale, floor = SEAM_VELOCITY
    return {"position": bool(np.linalg.norm(xy[1] - rxy[1]) <= SEAM_POSITION),
            "velocity": bool(np.linalg.norm(v - rv) <= scale * np.linalg.norm(rv) + floor)}


def frame_steps(video: np.ndarray) -> np.ndarray:
    """(T-1,) mean absolute change (levels 0-255) between consecutive frames."""
    return np.abs(np.diff(video.astype(np.float32), axis=0)).mean(axis=(1, 2, 3))


def loop_seam_ok(video: np.ndarray) -> bool:
    """Played on repeat, the wrap (last frame -> first) changes no more than an ordinary step: at most LOOP_SEAM
    times the median frame step plus LOOP_LEVELS (the issue: the wrap changed 28 levels against 1-5)."""
    wrap = float(np.abs(video[0].astype(np.float32) - video[-1].astype(np.float32)).mean())
    return wrap <= LOOP_SEAM * float(np.median(frame_steps(video))) + LOOP_LEVELS


# --- Smear (issue 35; MODEL_CARD.md "Limitations": a large object bouncing on black "lands as a squashed slab with
# a green fringe and leaves a faint ghost in the last frames"). Read by the issue-35 targets section of `make bench`
# (eval/targets.py) only: it is no check of analyze() or of the hard set, so no eval report changes and
# ANALYZER_VERSION, which `compare` pairs reports by, need not change. ---

SMEAR_MOTIONS = ("bounces",)  # the objects whose landings are looked at
SQUASH_LIMIT = 2.0            # the blob's height over width may differ from the world's by at most this factor,
                              # either way (flatter: squashed, taller: stretched): "far beyond" the world's 1.0
                              # and a decoder's 1.12 on objects that do not bounce, below the README slab's 3.05
SMEAR_BAND = 4                # pixels (at 64x64) around an object: its decoded edge, where a fringe sits
FRINGE_DIST = 60.0            # RGB distance from every blend of the object's colour with the background
GHOST_DIST = 30.0             # RGB distance from the clip's own background, away from every object
SMEAR_SHARE = 0.1             # a fringe or ghost of more than this share of the object's area (the world's) smears
BLUR_HUE = 0.5                # motion blur: a pixel off the nearest blend of an object's colour with the background
                              # by at most this share of its distance from the background (a faint pixel's hue)


@dataclass(frozen=True)
class Smear:
    """How far a clip's bouncing objects smear, each the worst frame of the worst object."""
    squash: float       # how many times flatter (height/width) the blob is than the world's in the same frame (>= 1)
    stretch: float      # how many times taller
    fringe: float       # pixels of neither the object's colour nor a blend of it with the background, in the band
                        # around the object, over the world's object area
    ghost: float        # the largest blob off the background away from every object (a faint copy, a streak
                        # of another colour; not the object's own motion blur), over the world's object area
    breaks: int         # frames where the world shows the object and the clip shows it as no blob or several
    photo: bool = False  # fringe and ghost are not measured over a moving photo (no background to compare with)

    def causes(self) -> tuple[str, ...]:
        """The measures over their limits."""
        limits = {"squash": SQUASH_LIMIT, "stretch": SQUASH_LIMIT, "fringe": SMEAR_SHARE, "ghost": SMEAR_SHARE,
                  "breaks": 0}
        return tuple(k for k, limit in limits.items() if getattr(self, k) > limit)

    @property
    def smeared(self) -> bool:
        return bool(self.causes())


def smear(video: np.ndarray, real: np.ndarray, scene: SceneSpec) -> Smear:
    """Does a bouncing object smear? `real`: the world's own render of the scene (render_scene), as many frames.

    Four ways; the world's renders, rigid shapes on still backgrounds, show none of them:
      squash   the blob's height/width (second moments) beyond SQUASH_LIMIT of the world's in the same frame:
      stretch  flatter (the slab at the landing) or taller (a blob drawn out along its fall);
      fringe   pixels in the SMEAR_BAND around the object that are no blend of its colour with the background
               (decoding blurs an edge into blends; a green rim on a red ball is none);
      ghost    a blob of pixels GHOST_DIST off the clip's own background beyond the band around every
               vocabulary-coloured object: a faint copy left behind, or a streak of another colour (a trail of
               blends of the object's own colour, joined to it, is motion blur and not counted);
      breaks   the object gone, or in several blobs, in a frame where the world shows it.
    Fringe and ghost compare with the clip's own background (the per-pixel median of its object-free frames), so a
    background a little off in colour everywhere, which the background check judges, is not read as a smear; over
    a moving photo they are not measured. A decoded ring's band broken into arcs is closed first (one object).

    Calibration (tools/smear_study.py, 40 clips each, large objects of every colour and shape on black, gray and
    sky, 64x64 2 s): the world's bounces 0 smeared (also under a blur of sigma 1, at 128x128, 64x96 and 4 s: tests);
    through the shipped autoencoder, objects that stay still or move right 0 (squash and stretch at most 1.12,
    fringe 0.07, ghost 0.04), bounces 14 (10 lose or split the object in a frame, 9 stretch it: a landing moves
    about 12 pixels a frame and turns, "moves right" 2, likely too fast for its 4x temporal compression; that is
    the ceiling of a model decoded by it); synthetic slabs, fringes,
    ghosts and splits 40 each; the README's clip of the shipped model (docs/demo.gif) smears by squash 3.05,
    fringe 0.26 and ghost 0.11."""
    bouncing = [i for i, o in enumerate(scene.objects) if o.motion in SMEAR_MOTIONS]
    if not bouncing:
        raise ValueError(f"no object of the scene {canonical_caption(scene)!r} bounces")
    labels = colour_labels(video)
    h, w = labels.shape[1:]
    band = max(1, round(SMEAR_BAND * min(h, w) / 64))
    near = ndimage.binary_dilation(labels >= 0, structure=_disc(band)[None])             # (T, H, W) per frame
    plain = scene.background != "photo" and scene.camera == "static"
    bg = _still_background(video, near) if plain else None
    gen, ref = _closed_tracks(labels, scene, band), _closed_tracks(colour_labels(real), scene, band)
    # the world's object area (a rigid shape: its median over frames); fringe and ghost are counted in it
    area = {i: float(np.median(ref[i].area[ref[i].present])) if ref[i].present.any() else float(h * w)
            for i in bouncing}
    # (T, H, W) per object: how far each pixel is from every blend of the object's colour with the background
    off_blend = [_blend_distance(video, bg, np.array(COLOURS[o.colour], np.float32)) for o in scene.objects] \
        if plain else []
    fringe = [_fringe(gen[i], off_blend[i], band) / area[i] for i in bouncing] if plain else [0.0]
    squash, stretch = zip(*(_flattening(gen[i], ref[i]) for i in bouncing))
    return Smear(squash=max(squash), stretch=max(stretch), fringe=max(fringe),
                 ghost=_ghost(video, near, bg, np.min(off_blend, axis=0)) / min(area.values()) if plain else 0.0,
                 breaks=max(int((ref[i].present & ~(gen[i].present & (gen[i].blobs == 1))).sum()) for i in bouncing),
                 photo=not plain)


def _disc(r: int) -> np.ndarray:
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return xx ** 2 + yy ** 2 <= r * r


def _closed_tracks(labels: np.ndarray, scene: SceneSpec, band: int) -> list[Track]:
    """tracks_of, with each colour's pixels closed over half the band first: a decoded ring's band, broken into
    arcs by a few off-colour pixels, is still one object, and its outline, not its largest arc, has its shape."""
    tracks = []
    for obj in scene.objects:
        k = COLOUR_NAMES.index(obj.colour)
        closed = ndimage.binary_closing(labels == k, structure=_disc(max(1, band // 2))[None])      # per frame
        tracks.append(track_colour(np.where(closed, k, labels), k))
    return tracks


def _aspect(mask: np.ndarray) -> float:
    """Height over width of a blob, from its second moments (a pixel's own extent added, so a line is not 0)."""
    ys, xs = np.nonzero(mask)
    return math.sqrt((ys.var() + 1 / 12) / (xs.var() + 1 / 12))


def _flattening(track: Track, real: Track) -> tuple[float, float]:
    """(squash, stretch): the largest factors by which the blob is flatter and taller than the world's in the same
    frame (1: never)."""
    both = [t for t in range(len(track.masks)) if track.masks[t] is not None and real.masks[t] is not None]
    ratios = [_aspect(track.masks[t]) / _aspect(real.masks[t]) for t in both]
    return float(max([1.0] + [1 / r for r in ratios])), float(max([1.0] + ratios))


def _still_background(video: np.ndarray, near: np.ndarray) -> np.ndarray:
    """(H, W, 3): each pixel's median over the frames where no object is near it; a pixel never free takes its
    row's median (the world's plain backgrounds change only from row to row)."""
    pix = np.where(near[..., None], np.nan, video.astype(np.float32))                  # (T, H, W, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)                                 # an all-NaN pixel: NaN
        bg = np.nanmedian(pix, axis=0)                                                  # (H, W, 3)
        rows = np.nanmedian(pix, axis=(0, 2))                                           # (H, 3)
    bg = np.where(np.isnan(bg), rows[:, None, :], bg)
    return np.where(np.isnan(bg), np.nanmedian(video.reshape(-1, 3), axis=0), bg)


def _blend_distance(video: np.ndarray, bg: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """(T, H, W): each pixel's RGB distance from the nearest blend a*colour + (1-a)*background, a in [0, 1]."""
    c, d = video.astype(np.float32) - bg, colour - bg                                   # (T, H, W, 3), (H, W, 3)
    alpha = np.clip((c * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-6), 0, 1)          # (T, H, W)
    return np.linalg.norm(c - alpha[..., None] * d, axis=-1)


def _fringe(track: Track, off_blend: np.ndarray, band: int) -> float:
    """The most pixels, in one frame, around the object's blob (within `band`) that are FRINGE_DIST from every
    blend of the object's colour with the background (off_blend: _blend_distance for its colour)."""
    worst = 0
    for t, mask in enumerate(track.masks):
        if mask is not None:
            ring = ndimage.binary_dilation(mask, structure=_disc(band)) & ~mask
            worst = max(worst, int((off_blend[t][ring] > FRINGE_DIST).sum()))
    return float(worst)


def _ghost(video: np.ndarray, near: np.ndarray, bg: np.ndarray, off_blend: np.ndarray) -> float:
    """The largest blob, in one frame, of pixels GHOST_DIST off the background beyond the band around every
    object, but for motion blur: pixels of a blend's hue (off_blend, the least of _blend_distance over the
    scene's colours, within BLUR_HUE of their distance from the background) joined to an object's band. A faint
    copy apart from the object, or a streak of another colour (the README clip's green patch), is a ghost; a
    trail of the object's own colour behind it is the blur a camera shows too."""
    dist = np.linalg.norm(video.astype(np.float32) - bg, axis=-1)                      # (T, H, W)
    off, hue = (dist > GHOST_DIST) & ~near, off_blend <= BLUR_HUE * dist
    worst = 0
    for t in range(len(video)):
        comp, _ = ndimage.label(off[t] & hue[t] | near[t])                             # blur, and what it joins
        blur = np.isin(comp, np.unique(comp[near[t]])) & off[t]
        ghosts, n = ndimage.label(off[t] & ~blur)
        if n:
            worst = max(worst, int(np.bincount(ghosts.ravel())[1:].max()))
    return float(worst)
