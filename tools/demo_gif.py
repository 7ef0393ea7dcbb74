"""Renders the README's demo GIF: real outputs of the shipped model, next to the toy-world reference render.

    .venv/bin/python tools/demo_gif.py docs/demo.gif
"""

import sys

import numpy as np
from PIL import Image

from cinegen.config import SampleConfig
from cinegen.pipeline import TextToVideo
from cinegen.toyworld.world import parse_caption, render_scene

PROMPTS = [
    "a large red ball bounces on a black background",
    "a large blue box moves right on a gray background",
    "a large yellow triangle falls on a sky background",
    "a large green ring moves left on a black background",
]


def main(out: str) -> None:
    pipe = TextToVideo.from_pretrained()
    cfg = SampleConfig(seconds=2, width=64, height=64, steps=20, seed=1)
    rows = []
    for prompt in PROMPTS:
        generated = pipe.generate(prompt, cfg)
        reference = render_scene(parse_caption(prompt), 64, 64, len(generated), cfg.fps, seed=1).video
        gap = np.full((len(generated), 64, 4, 3), 255, np.uint8)
        rows.append(np.concatenate([generated, gap, reference], axis=2))               # (T, 64, 132, 3)
    grid = np.concatenate([np.concatenate([r, np.full((len(r), 4, r.shape[2], 3), 255, np.uint8)], 1) for r in rows], 1)
    frames = [Image.fromarray(f).resize((f.shape[1] * 2, f.shape[0] * 2), Image.NEAREST) for f in grid]
    frames[0].save(out, save_all=True, append_images=frames[1:], duration=125, loop=0)
    print(f"wrote {out}: left column generated, right column the toy-world render of the same prompt")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "docs/demo.gif")
