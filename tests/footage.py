"""Tiny footage folders of real files (MP4s written with PyAV, PNGs with Pillow) for the folder-dataset tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cinegen.io.video import write_image, write_mp4


def moving_square(frames: int, height: int, width: int, colour=(220, 40, 40), seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8: a square crossing a grey background, so that frames differ."""
    rng = np.random.default_rng(seed)
    video = np.full((frames, height, width, 3), 40, np.uint8)
    side = max(4, min(height, width) // 4)
    y = int(rng.integers(0, height - side))
    for t in range(frames):
        x = int((width - side) * t / max(1, frames - 1))
        video[t, y:y + side, x:x + side] = colour
    return video


def make_footage(root: Path) -> Path:
    """A folder with every caption convention and nesting:
    a.mp4 + a.txt (sidecar), wide.mp4 (96x64, metadata.jsonl), sub/long.mp4 (24 fps, 4 s; sub/metadata.csv),
    still.png (metadata.jsonl)."""
    root.mkdir(parents=True, exist_ok=True)
    write_mp4(moving_square(17, 64, 64), root / "a.mp4", fps=8)
    (root / "a.txt").write_text("a red square moves right\n")
    write_mp4(moving_square(20, 64, 96, (40, 200, 40), 1), root / "wide.mp4", fps=8)
    write_image(moving_square(1, 80, 80, (40, 40, 220), 2)[0], root / "still.png")
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "wide.mp4", "text": "a green square, wide"}) + "\n"
                                         + json.dumps({"file_name": "still.png", "text": "a blue square"}) + "\n")
    (root / "sub").mkdir(exist_ok=True)
    write_mp4(moving_square(96, 72, 72, (200, 200, 40), 3), root / "sub" / "long.mp4", fps=24)
    (root / "sub" / "metadata.csv").write_text("file_name,text\nlong.mp4,\"a yellow square, long\"\n")
    return root


def add_bad_files(root: Path) -> dict[str, str]:
    """Problems, each with the words its message must hold: corrupt, no caption, empty caption, too short, odd size."""
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    (root / "broken.txt").write_text("a broken file")
    write_mp4(moving_square(17, 64, 64), root / "nocap.mp4", fps=8)
    write_mp4(moving_square(17, 64, 64), root / "empty.mp4", fps=8)
    (root / "empty.txt").write_text("   \n")
    write_mp4(moving_square(5, 64, 64), root / "short.mp4", fps=8)
    (root / "short.txt").write_text("too short")
    write_image(moving_square(1, 63, 65)[0], root / "odd.png")
    (root / "odd.txt").write_text("odd sizes")
    (root / "notes.doc").write_text("not footage")
    with open(root / "metadata.jsonl", "a") as f:
        f.write('{"file_name": "gone.mp4", "text": "a file that is not there"}\n{"text": "no file name"}\n')
    return {"metadata.jsonl": "gone.mp4", "broken.mp4": "corrupt", "nocap.mp4": "no caption", "empty.mp4": "empty caption",
            "short.mp4": "too short", "odd.png": "odd size", "notes.doc": "not a video"}

