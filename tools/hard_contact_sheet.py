"""A contact sheet of hard-set prompts (issue 35): for one case of each chosen section, the world's own render
(upper row) and the model's output (lower row), a few evenly spaced frames each, every frame 64 px high.

    python tools/hard_contact_sheet.py docs/hard_eval_contact_sheet.png [MODEL_FOLDER]

The cases are the hard set's own (eval/hard.py, seed 0, the seen split's first case per section in which every
object moves or changes size), scored as
`cinegen eval --set hard` scores them; the prompts and which checks failed are printed, for the model card.
"""

from __future__ import annotations

import sys

import numpy as np
from PIL import Image, ImageDraw

from cinegen.config import SampleConfig
from cinegen.eval import hard
from cinegen.pipeline import TextToVideo

SECTIONS = ("multi", "collide", "64x96", "8 s", "photo camera", "extend backward", "loop")
FRAMES = 8
ROW = 64                         # pixels per frame row
LABEL = 12                       # pixels of caption strip above each case


def _strip(video: np.ndarray) -> np.ndarray:
    """FRAMES evenly spaced frames side by side, each scaled to ROW pixels high: (ROW, W, 3)."""
    idx = np.linspace(0, len(video) - 1, FRAMES).round().astype(int)
    scale = ROW / video.shape[1]
    size = (round(video.shape[2] * scale), ROW)
    return np.concatenate([np.asarray(Image.fromarray(video[i]).resize(size, Image.NEAREST)) for i in idx], axis=1)


def _moves(case) -> bool:
    """Whether every object of the case changes place or size: a still object shows little on a sheet."""
    return all(o.motion not in ("stays still", "spins") for o in case.scene.objects)


def main(out: str, model: str | None = None) -> None:
    pipe = TextToVideo.from_pretrained(model)
    holdout = tuple(pipe.dit.extra.get("holdout", ()))
    cfg = SampleConfig()
    cases, _ = hard.hard_cases(3, holdout, 0, SECTIONS, feasible=hard.world_passes(pipe, cfg))
    blocks = []
    for section in SECTIONS:
        seen = [c for c in cases if c.section == section and c.split == "seen"]
        case = next((c for c in seen if _moves(c)), seen[0])
        videos = []
        world = hard.run_case(pipe, case, cfg, generate=False, keep=videos.append)
        scored = hard.run_case(pipe, case, cfg, keep=videos.append)
        failed = [k for k, v in scored.checks.items() if not v]
        print(f"{case.section}: {case.prompt} ({case.width}x{case.height}, {case.seconds:g} s): "
              f"model {scored.score:.2f}, world {world.score:.2f}; failed: {', '.join(failed) or 'none'}")
        rows = [_strip(v) for v in videos]
        width = max(r.shape[1] for r in rows)
        rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
        label = Image.new("RGB", (width, LABEL), "white")
        ImageDraw.Draw(label).text((2, 0), f"{case.section}: world (top), model (bottom)", fill="black")
        blocks.append(np.concatenate([np.asarray(label), *rows], axis=0))
    width = max(b.shape[1] for b in blocks)
    sheet = np.concatenate([np.pad(b, ((0, 4), (0, width - b.shape[1]), (0, 0)), constant_values=255)
                            for b in blocks], axis=0)
    Image.fromarray(sheet).quantize(128).save(out, optimize=True)          # a palette: a small file
    print(f"wrote {out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/hard_eval_contact_sheet.png", *sys.argv[2:3])
