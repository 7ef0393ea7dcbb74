"""Video files: H.264 MP4 (yuv420p, plays in browsers) via PyAV, PNG frames, and reading clips/images back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np

from cinegen.training.checkpoint import atomic_write


def write_mp4(video: np.ndarray, path: str | Path, fps: float = 8.0, metadata: dict | None = None, crf: int = 18) -> Path:
    """(T, H, W, 3) uint8 -> H.264 MP4, written to a temp file and renamed (never a half-written output).

    H.264 with yuv420p needs even sizes; our sizes are multiples of 16. `metadata` goes into the container
    (e.g. generator, model, prompt hash, seed) so every output says where it came from.
    """
    import av
    video = _check_video(video)
    path = Path(path)

    def write(tmp: str) -> None:
        # use_metadata_tags: the MP4 muxer otherwise drops keys outside its short list (title, comment, ...)
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "use_metadata_tags"}) as container:
            for k, v in (metadata or {}).items():
                container.metadata[k] = str(v)
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height = video.shape[2], video.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
    atomic_write(path, write)
    return path


def _check_video(video: np.ndarray) -> np.ndarray:
    if video.ndim != 4 or video.shape[-1] != 3 or video.dtype != np.uint8 or video.shape[0] < 1:
        raise ValueError(f"video must be (T, H, W, 3) uint8 with T >= 1, got {video.shape} {video.dtype}")
    return np.ascontiguousarray(video)


def write_frames(video: np.ndarray, folder: str | Path) -> list[Path]:
    """One PNG per frame: folder/frame_0000.png, ..."""
    from PIL import Image
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, frame in enumerate(_check_video(video)):
        p = folder / f"frame_{i:04d}.png"
        atomic_write(p, lambda tmp, f=frame: Image.fromarray(f).save(tmp, format="PNG"))
        paths.append(p)
    return paths


def write_image(image: np.ndarray, path: str | Path) -> Path:
    from PIL import Image
    atomic_write(Path(path), lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
    return Path(path)


def read_video(path: str | Path, max_frames: int | None = None) -> tuple[np.ndarray, float]:
    """Any video PyAV decodes -> ((T, H, W, 3) uint8, fps). ValueError for unreadable or empty files."""
    import av
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"video file not found: {path}")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{path} has no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 8)
            frames = []
            for frame in container.decode(stream):
                frames.append(frame.to_ndarray(format="rgb24"))
                if max_frames and len(frames) >= max_frames:
                    break
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot decode video {path}: {e}") from None
    if not frames:
        raise ValueError(f"{path} contains zero frames")
    return np.stack(frames), fps


def read_image(path: str | Path) -> np.ndarray:
    """Any image Pillow opens -> (H, W, 3) uint8. ValueError for unreadable files."""
    from PIL import Image, UnidentifiedImageError
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"image file not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"cannot read image {path}: {e}") from None
