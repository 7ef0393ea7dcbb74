"""Calibrates the analyzer's smear check (analyzer.smear; issue 35, MODEL_CARD.md "Limitations").

    python tools/smear_study.py [N] [MODEL_DIR]

For N large objects of random colour and shape on black, gray and sky (default 40), prints the share of clips
read as smeared and each measure's spread (median, 90th percentile, max, and how many pass each limit) for:
the world's own bounces; the world's clips through the model's autoencoder (MODEL_DIR, default the shipped one)
for objects that stay still, move right and bounce (what a model decoded by it can reach); synthetic
smears of the world's bounces (a slab at the landing, a coloured fringe, a faint ghost, a split); and the
README's clip (docs/demo.gif, left column: the shipped model's "a large red ball bounces on a black background").
Each object's smear is measured as if it bounced (the check reads only bouncing objects).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen.eval.analyzer import SMEAR_SHARE, SQUASH_LIMIT, smear, tracks_of
from cinegen.toyworld.world import COLOURS, SHAPES, ObjectSpec, SceneSpec, parse_caption, render_scene, shape_mask

GIF = Path(__file__).parent.parent / "docs" / "demo.gif"
LIMITS = {"squash": SQUASH_LIMIT, "stretch": SQUASH_LIMIT, "fringe": SMEAR_SHARE, "ghost": SMEAR_SHARE, "breaks": 0}


def scenes(n: int, motion: str = "bounces", seed: int = 5) -> list[SceneSpec]:
    rng = np.random.default_rng(seed)
    return [SceneSpec((ObjectSpec(str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), "large", motion),),
                      str(rng.choice(["black", "gray", "sky"]))) for _ in range(n)]


def as_bounce(scene: SceneSpec) -> SceneSpec:
    return replace(scene, objects=tuple(replace(o, motion="bounces") for o in scene.objects))


# --- Synthetic smears of a world clip (one object): each changes a single frame, the landing, or the last ones ---

def landing(video: np.ndarray, scene: SceneSpec) -> int:
    """The frame where the object is lowest (the first landing of a bounce)."""
    return int(np.nanargmax(tracks_of(video, scene)[0].xy[:, 1]))


def _object(video: np.ndarray, scene: SceneSpec, t: int) -> np.ndarray:
    """(H, W) bool: the object's pixels at frame t, its anti-aliased edge included."""
    from scipy import ndimage
    return ndimage.binary_dilation(tracks_of(video, scene)[0].masks[t])


def _background(video: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """The world's frames of the scene without its objects (plain backgrounds do not depend on the seed)."""
    t, h, w, _ = video.shape
    return render_scene(replace(scene, objects=()), w, h, t).video


def slab(video: np.ndarray, scene: SceneSpec, squash: float = 0.35) -> np.ndarray:
    """The object at its landing squashed into a slab: its pixels' rows pressed to `squash` of their height
    against the floor, its width kept (the README's red ball)."""
    out, t = video.copy(), landing(video, scene)
    mask = _object(video, scene, t)
    ys, xs = np.nonzero(mask)
    out[t][mask] = _background(video, scene)[t][mask]
    bottom = ys.max()
    flat = np.clip(bottom - np.round((bottom - ys) * squash).astype(int), 0, video.shape[1] - 1)
    out[t, flat, xs] = video[t, ys, xs]
    return out


def fringe(video: np.ndarray, scene: SceneSpec, width: int = 2) -> np.ndarray:
    """A green rim (red on a green object) `width` pixels wide around the object's top half at its landing."""
    from scipy import ndimage
    colour = COLOURS["red" if scene.objects[0].colour == "green" else "green"]
    out, t = video.copy(), landing(video, scene)
    mask = _object(video, scene, t)
    rim = ndimage.binary_dilation(mask, iterations=width) & ~mask
    rim[int(np.nonzero(mask)[0].mean()):] = False
    out[t][rim] = colour
    return out


def _apart(video: np.ndarray, scene: SceneSpec, alpha: float, frames: int) -> np.ndarray:
    """A disc of the object's colour, half its size, at `alpha` over the background, in the corner of the frame
    farthest from the object, in the last `frames` frames: apart from it, so it is no motion blur."""
    out = video.copy()
    _, h, w, _ = video.shape
    colour = np.array(COLOURS[scene.objects[0].colour], np.float32)
    for t in range(len(video) - frames, len(video)):
        ys, xs = np.nonzero(_object(video, scene, t))
        r = (ys.max() - ys.min() + 1) / 4
        cx, cy = (w - 1.5 * r if xs.mean() < w / 2 else 1.5 * r), (h - 1.5 * r if ys.mean() < h / 2 else 1.5 * r)
        patch = shape_mask("ball", h, w, cx, cy, r)
        out[t][patch] = np.round((1 - alpha) * video[t][patch] + alpha * colour).astype(np.uint8)
    return out


def ghost(video: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """A faint patch of the object's colour (35% over the background) apart from it in the last two frames: the
    README clip's ghost."""
    return _apart(video, scene, 0.35, 2)


def split(video: np.ndarray, scene: SceneSpec) -> np.ndarray:
    """A piece of the object's own colour apart from it in the last frame: two blobs where the world shows one."""
    return _apart(video, scene, 1.0, 1)


README_PROMPT = "a large red ball bounces on a black background"


def readme_clip(path: Path = GIF) -> tuple[np.ndarray, np.ndarray]:
    """(generated, world) of the README's first row (tools/demo_gif.py: rows of generated | world, every frame
    drawn 2x, 4-pixel gaps): the shipped model's README_PROMPT, 64x64."""
    from PIL import Image, ImageSequence
    gif = np.stack([np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(Image.open(path))])   # (T, H, W, 3)
    return gif[:, 0:128:2, 0:128:2], gif[:, 0:128:2, 136:264:2]


SYNTHETIC = {"slab": slab, "fringe": fringe, "ghost": ghost, "split": split}


def summary(label: str, measured: list) -> None:
    print(f"{label}: smeared {sum(s.smeared for s in measured)}/{len(measured)}")
    for k, limit in LIMITS.items():
        a = np.array([getattr(s, k) for s in measured], float)
        print(f"  {k:7s} median {np.median(a):.3f}  p90 {np.quantile(a, 0.9):.3f}  max {a.max():.3f}  "
              f"over the limit ({limit}) {int((a > limit).sum())}")


def main(n: int = 40, model_dir: str | None = None) -> None:
    from cinegen.pipeline import TextToVideo
    roundtrip = TextToVideo.from_pretrained(model_dir, "cpu").roundtrip
    worlds = [(render_scene(s, 64, 64, 17, 8.0, seed=i).video, s) for i, s in enumerate(scenes(n))]
    summary("world, bounces", [smear(v, v, s) for v, s in worlds])
    for motion in ("stays still", "moves right", "bounces"):
        clips = [(render_scene(s, 64, 64, 17, 8.0, seed=i).video, s) for i, s in enumerate(scenes(n, motion))]
        summary(f"autoencoder round trip, {motion}", [smear(roundtrip(v), v, as_bounce(s)) for v, s in clips])
    for name, fake in SYNTHETIC.items():
        summary(f"synthetic {name}", [smear(fake(v, s), v, s) for v, s in worlds])
    if GIF.is_file():
        gen, real = readme_clip()
        print("README clip (docs/demo.gif):", smear(gen, real, parse_caption(README_PROMPT)))


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40, sys.argv[2] if len(sys.argv) > 2 else None)
