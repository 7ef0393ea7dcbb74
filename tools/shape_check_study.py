"""How well does the analyzer's shape check read shapes that are plainly there? (MODEL_CARD.md, "The shape check")

    python tools/shape_check_study.py [MODEL_DIR ...]

Renders the evaluation's scenes (96 + 48 of set 0, 96 of set 1; the first object of each), degrades them, and
reads each object's shape by majority over frames with the current check (`classify_shape`: best template IoU)
and the one before analyzer 2026-11-27.2 (`classify_shape_by_ratio`), printing accuracy and the confusions
(true:read counts). Degradations: none, Gaussian blur sigma 0.8 and 1.2 (what a viewer still reads through), and a
round trip through each MODEL_DIR's autoencoder (its drawing, not a model's prompt-following: the clip is the truth).
"""

from __future__ import annotations

import sys
from collections import Counter

import numpy as np
from scipy import ndimage

from cinegen.eval.analyzer import COLOUR_NAMES, classify_shape, classify_shape_by_ratio, colour_labels, track_colour
from cinegen.eval.run import heldout_scenes, seen_scenes
from cinegen.toyworld.world import DEFAULT_HOLDOUT, SHAPES, render_scene

RULES = {"templates": classify_shape, "ratio (old)": classify_shape_by_ratio}


def read(video: np.ndarray, colour: str) -> dict[str, str | None]:
    masks = [m for m in track_colour(colour_labels(video), COLOUR_NAMES.index(colour)).masks if m is not None]
    votes = {name: [rule(m) for m in masks] for name, rule in RULES.items()}
    return {name: max(set(v), key=v.count) if v else None for name, v in votes.items()}


def blur(sigma: float):
    return lambda v: np.clip(ndimage.gaussian_filter(v.astype(np.float32), (0, sigma, sigma, 0)), 0, 255).astype(np.uint8)


def main() -> None:
    from cinegen.pipeline import TextToVideo
    scenes = seen_scenes(96, DEFAULT_HOLDOUT, 0) + heldout_scenes(48, DEFAULT_HOLDOUT, 0) + seen_scenes(96, DEFAULT_HOLDOUT, 1)
    conds = {"real": lambda v: v, "blur 0.8": blur(0.8), "blur 1.2": blur(1.2)}
    conds |= {f"round trip {d}": TextToVideo.from_pretrained(d, "cpu").roundtrip for d in sys.argv[1:]}
    conf = {(c, r): Counter() for c in conds for r in RULES}
    for i, scene in enumerate(scenes):
        obj = scene.objects[0]
        video = render_scene(scene, 64, 64, 17, 8.0, seed=i).video
        for c, degrade in conds.items():
            for r, label in read(degrade(video), obj.colour).items():
                conf[(c, r)][(obj.shape, label)] += 1
    for (c, r), counts in conf.items():
        acc = sum(n for (t, p), n in counts.items() if t == p) / sum(counts.values())
        confusions = "  ".join(f"{t}:" + ",".join(f"{p or '-'} {counts[(t, p)]}" for p in (*SHAPES, None) if counts[(t, p)])
                               for t in SHAPES)
        print(f"{c:28s} {r:12s} {acc:.3f}   {confusions}", flush=True)


if __name__ == "__main__":
    main()
