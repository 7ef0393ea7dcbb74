"""A folder of one's own footage as a data source: video files (anything PyAV decodes) and still images (one-frame
clips), captioned by a sidecar `name.txt` beside each file or by `metadata.jsonl` / `metadata.csv` rows with
`file_name` and `text` (the Hugging Face videofolder convention; file_name is relative to the metadata file's
folder). Folders may nest. A sidecar wins over a metadata row for the same file.

    [data]                       # FolderConfig
    source = "folder"
    root = "footage/"
    buckets = [[17, 64, 64], [17, 64, 96]]    # (frames, height, width): aspect-ratio and duration buckets
    fps = 8.0                                 # every clip is resampled to this rate
    scene_cuts = true                         # windows never cross a cut (PySceneDetect, the footage extra)

Each file goes to the bucket nearest its aspect ratio among those it is long enough for (the longest of those
first); a long clip is cut into windows of the bucket's length, each resized to cover the bucket and centre-cropped.
`survey` probes the folder without changing it and lists every problem by file name (`cinegen dataset check`).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cinegen.data.sources import SPLITS, Sample, VideoSource

log = logging.getLogger(__name__)
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v", ".mpg", ".mpeg", ".ts", ".gif")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
METADATA_FILES = ("metadata.jsonl", "metadata.csv")
UPSCALE_WARNING = 2.0      # a file smaller than its bucket by more than this factor is named (it will look soft)


@dataclass(frozen=True)
class FolderConfig:
    root: str = ""
    buckets: tuple[tuple[int, int, int], ...] = ((17, 64, 64), (17, 64, 96), (17, 96, 64))
    fps: float = 8.0
    stride: int = 0                # frames (at fps) between window starts; 0 = the window's length (no overlap)
    max_windows: int = 0           # per file, evenly spread; 0 = every window
    scene_cuts: bool = False       # cut windows at scene changes (PySceneDetect)
    skip_bad: bool = False         # leave unusable files out (named in the log) instead of refusing the folder
    heldout: tuple[str, ...] = ()  # files (relative to root) never trained on: train-vae's held-out PSNR

    def __post_init__(self):
        if not self.buckets:
            raise ValueError("data.buckets must name at least one (frames, height, width) bucket")
        for frames, height, width in self.buckets:
            if frames < 1 or height < 8 or width < 8:
                raise ValueError(f"data.buckets: bad bucket {(frames, height, width)}: at least 1 frame and 8x8 pixels")
        if not self.fps > 0 or self.stride < 0 or self.max_windows < 0:
            raise ValueError(f"data.fps must be > 0 and stride, max_windows >= 0, got {self.fps}, {self.stride}, "
                             f"{self.max_windows}")


@dataclass(frozen=True)
class Media:
    """One probed file. frames: decoded frames (1 for an image); error: why it cannot be read ("" if it can)."""
    path: Path
    rel: str                       # relative to the root, with "/" separators: the name every message uses
    kind: str                      # "video" | "image"
    width: int = 0
    height: int = 0
    fps: float = 0.0
    frames: int = 0
    error: str = ""

    @property
    def duration(self) -> float:
        return self.frames / self.fps if self.kind == "video" and self.fps else 0.0


@dataclass(frozen=True)
class Problem:
    rel: str
    message: str
    fatal: bool = True             # the file cannot be used; False: a warning


@dataclass
class Survey:
    media: list[Media]
    captions: dict[str, str]                         # rel -> caption
    buckets: dict[str, tuple[int, int, int]]         # rel -> bucket, for every usable file
    problems: list[Problem] = field(default_factory=list)

    @property
    def bad(self) -> set[str]:
        return {p.rel for p in self.problems if p.fatal}

    @property
    def usable(self) -> list[Media]:
        return [m for m in self.media if m.rel not in self.bad]


# --- finding, probing and captioning files ---

def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def find_media(root: Path) -> tuple[list[Path], list[Problem]]:
    """Every video and image under root (sorted; hidden files and folders skipped), and a warning for each other
    file that is neither a caption nor metadata."""
    media, problems = [], []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = _rel(path, root)
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        suffix = path.suffix.lower()
        if suffix in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
            media.append(path)
        elif suffix != ".txt" and path.name not in METADATA_FILES:
            problems.append(Problem(rel, "not a video or image file: ignored", fatal=False))
    return media, problems


def probe(path: Path, root: Path) -> Media:
    """Reads the whole file (every frame decoded, none kept), so that a file corrupt halfway is caught here."""
    rel = _rel(path, root)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return _probe_image(path, rel)
    import av
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                return Media(path, rel, "video", error="no video stream")
            stream = container.streams.video[0]
            width, height = stream.codec_context.width, stream.codec_context.height
            fps = float(stream.average_rate or stream.guessed_rate or 0)
            frames = sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, UnicodeDecodeError, OSError) as e:
        return Media(path, rel, "video", error=f"unreadable or corrupt video ({_short(e)})")
    if frames == 0:
        return Media(path, rel, "video", width, height, fps, error="no frames could be decoded")
    if not fps > 0:
        return Media(path, rel, "video", width, height, 0.0, frames, error="no frame rate in the file")
    return Media(path, rel, "video", width, height, fps, frames)


def _probe_image(path: Path, rel: str) -> Media:
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(path) as im:
            im.load()                                    # decodes the pixels: a truncated file fails here
            width, height = im.size
    except (UnidentifiedImageError, OSError, ValueError) as e:
        return Media(path, rel, "image", error=f"unreadable or corrupt image ({_short(e)})")
    return Media(path, rel, "image", width, height, 0.0, 1)


def _short(e: Exception) -> str:
    return " ".join(str(e).split())[:160] or type(e).__name__


def read_captions(root: Path) -> tuple[dict[str, str], list[Problem]]:
    """rel -> caption from every metadata.jsonl / metadata.csv under root, then every sidecar .txt (which wins)."""
    captions: dict[str, str] = {}
    problems: list[Problem] = []
    for name in METADATA_FILES:
        for meta in sorted(root.rglob(name)):
            rows, bad = _metadata_rows(meta, _rel(meta, root))
            problems += bad
            for file_name, text in rows:
                target = meta.parent / file_name
                if not target.is_file():
                    problems.append(Problem(_rel(meta, root), f"names {file_name!r}, which is not in the folder",
                                            fatal=False))
                    continue
                captions[_rel(target, root)] = text
    for txt in sorted(root.rglob("*.txt")):
        for sibling in txt.parent.glob(txt.stem + ".*"):
            if sibling.suffix.lower() in VIDEO_EXTENSIONS + IMAGE_EXTENSIONS:
                try:
                    captions[_rel(sibling, root)] = txt.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as e:
                    problems.append(Problem(_rel(sibling, root), f"caption file {txt.name} is unreadable ({_short(e)})"))
    return {k: " ".join(v.split()) for k, v in captions.items()}, problems


def _metadata_rows(path: Path, rel: str) -> tuple[list[tuple[str, str]], list[Problem]]:
    rows, problems = [], []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return [], [Problem(rel, f"unreadable metadata file ({_short(e)})", fatal=False)]
    if path.suffix == ".csv":
        records = list(enumerate(csv.DictReader(text.splitlines()), start=2))
    else:
        records = []
        for n, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                try:
                    records.append((n, json.loads(line)))
                except json.JSONDecodeError as e:
                    problems.append(Problem(rel, f"line {n} is not JSON ({e.msg}): ignored", fatal=False))
    for n, record in records:
        if not isinstance(record, dict) or not isinstance(record.get("file_name"), str) or "text" not in record:
            problems.append(Problem(rel, f"line {n} lacks a file_name and a text column: ignored", fatal=False))
        else:
            rows.append((record["file_name"], str(record["text"] or "")))
    return rows, problems


# --- buckets and windows ---

def resampled_frames(media: Media, fps: float) -> int:
    """Frames of a file at `fps` (1 for an image)."""
    if media.kind == "image":
        return 1
    return max(1, math.ceil(media.frames * fps / media.fps - 1e-6))


def pick_bucket(media: Media, cfg: FolderConfig) -> tuple[int, int, int] | None:
    """The bucket nearest the file's aspect ratio among those it is long enough for (longest first); an image
    takes the nearest bucket's size as one frame. None: the clip is shorter than every video bucket."""
    aspect = math.log(media.width / media.height)
    if media.kind == "image":
        _, h, w = min(cfg.buckets, key=lambda b: abs(aspect - math.log(b[2] / b[1])))
        return 1, h, w
    length = resampled_frames(media, cfg.fps)
    fits = [b for b in cfg.buckets if b[0] <= length and b[0] > 1]
    if not fits:
        return None
    return min(fits, key=lambda b: (round(abs(aspect - math.log(b[2] / b[1])), 6), -b[0]))


def window_starts(length: int, window: int, stride: int, max_windows: int,
                  segments: list[tuple[int, int]] | None = None) -> list[int]:
    """First frames of the windows of `window` frames in a clip of `length` frames, inside each (start, end)
    segment (scene), `stride` apart (0: back to back); at most max_windows (0: all), evenly spread."""
    starts = []
    for begin, end in segments or [(0, length)]:
        starts += list(range(begin, min(end, length) - window + 1, stride or window))
    if max_windows and len(starts) > max_windows:
        starts = [starts[round(i * (len(starts) - 1) / max(1, max_windows - 1))] for i in range(max_windows)]
    return starts


def survey(cfg: FolderConfig, progress=None) -> Survey:
    """Probes every file under cfg.root and names each problem; never writes anything. progress(rel) after each."""
    root = _root(cfg)
    paths, problems = find_media(root)
    captions, caption_problems = read_captions(root)
    problems += caption_problems
    media, buckets = [], {}
    for path in paths:
        m = probe(path, root)
        media.append(m)
        problems += _media_problems(m, captions, cfg)
        if not m.error and (bucket := pick_bucket(m, cfg)) is not None:
            buckets[m.rel] = bucket
        if progress is not None:
            progress(m.rel)
    if not media:
        problems.append(Problem(".", f"no video or image files under {root}"))
    return Survey(media, captions, buckets, problems)


def _media_problems(m: Media, captions: dict[str, str], cfg: FolderConfig) -> list[Problem]:
    if m.error:
        return [Problem(m.rel, m.error)]
    out = []
    if m.rel not in captions:
        out.append(Problem(m.rel, "no caption (no sidecar .txt and no metadata row)"))
    elif not captions[m.rel]:
        out.append(Problem(m.rel, "empty caption"))
    bucket = pick_bucket(m, cfg)
    if bucket is None:
        shortest = min(b[0] for b in cfg.buckets if b[0] > 1) if any(b[0] > 1 for b in cfg.buckets) else 1
        out.append(Problem(m.rel, f"too short: {resampled_frames(m, cfg.fps)} frames at {cfg.fps:g} fps "
                                  f"({m.duration:.2f} s), the shortest video bucket needs {shortest}"
                           if shortest > 1 else "a video, but every bucket is a single frame"))
    if m.width % 2 or m.height % 2:
        out.append(Problem(m.rel, f"odd size {m.width}x{m.height}", fatal=False))
    if bucket is not None and min(m.width / bucket[2], m.height / bucket[1]) < 1 / UPSCALE_WARNING:
        out.append(Problem(m.rel, f"small: {m.width}x{m.height} is upscaled to the {bucket[2]}x{bucket[1]} bucket",
                           fatal=False))
    return out


def _root(cfg: FolderConfig) -> Path:
    if not cfg.root:
        raise ValueError("data.root is not set: name the footage folder (cinegen ... --data DIR)")
    root = Path(cfg.root)
    if not root.is_dir():
        raise FileNotFoundError(f"footage folder not found: {root}")
    return root


# --- decoding into buckets ---

def load_windows(m: Media, caption: str, cfg: FolderConfig) -> list[Sample]:
    """A usable file as its training windows: resampled to cfg.fps, resized to cover its bucket, centre-cropped."""
    frames, height, width = pick_bucket(m, cfg)
    if m.kind == "image":
        from PIL import Image
        with Image.open(m.path) as im:
            video = fit(np.asarray(im.convert("RGB"))[None], height, width)
        return [Sample(video, (caption,), cfg.fps, {"file": m.rel})]
    video = decode_resampled(m, cfg.fps, height, width)                         # (T, H, W, 3)
    segments = scene_segments(m, cfg.fps) if cfg.scene_cuts else None
    starts = window_starts(len(video), frames, cfg.stride, cfg.max_windows, segments)
    return [Sample(video[s:s + frames], (caption,), cfg.fps, {"file": m.rel, "start": s / cfg.fps}) for s in starts]


def decode_resampled(m: Media, fps: float, height: int, width: int) -> np.ndarray:
    """(T, height, width, 3) uint8: the frames nearest each 1/fps step, each scaled to cover height x width on
    decoding (so a long 4K file never sits in memory whole) and centre-cropped."""
    import av
    count = resampled_frames(m, fps)
    wanted = {min(m.frames - 1, int(i * m.fps / fps + 1e-6)): i for i in range(count)}
    scale = max(height / m.height, width / m.width)
    sw, sh = max(width, round(m.width * scale)), max(height, round(m.height * scale))
    out = np.zeros((count, height, width, 3), np.uint8)
    try:
        with av.open(str(m.path)) as container:
            for index, frame in enumerate(container.decode(container.streams.video[0])):
                if index in wanted:
                    out[wanted[index]] = _crop(frame.to_ndarray(width=sw, height=sh, format="rgb24"), height, width)
    except av.error.FFmpegError as e:
        raise ValueError(f"{m.rel}: unreadable or corrupt video ({_short(e)})") from None
    for j in range(1, count):             # a frame the decoder skipped repeats the one before it
        if j not in wanted.values():
            out[j] = out[j - 1]
    return out


def fit(video: np.ndarray, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 resized (antialiased) to cover height x width, then centre-cropped to it."""
    import torch
    import torch.nn.functional as F
    t, h, w, _ = video.shape
    scale = max(height / h, width / w)
    size = (max(height, round(h * scale)), max(width, round(w * scale)))
    x = torch.from_numpy(np.array(video)).permute(0, 3, 1, 2).float()     # (T, 3, H, W)
    x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    x = x.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()            # (T, H', W', 3)
    return np.ascontiguousarray(_crop(x, height, width, axis=1))


def _crop(x: np.ndarray, height: int, width: int, axis: int = 0) -> np.ndarray:
    """Centre crop of the (H, W) axes starting at `axis`."""
    h, w = x.shape[axis], x.shape[axis + 1]
    y0, x0 = (h - height) // 2, (w - width) // 2
    index = [slice(None)] * x.ndim
    index[axis], index[axis + 1] = slice(y0, y0 + height), slice(x0, x0 + width)
    return x[tuple(index)]


def scene_segments(m: Media, fps: float) -> list[tuple[int, int]]:
    """(start, end) frames at `fps` of each scene PySceneDetect finds (one segment when it finds no cut)."""
    from cinegen.extras import require
    scenedetect = require("scenedetect", "footage", "data.scene_cuts")
    scenes = scenedetect.detect(str(m.path), scenedetect.ContentDetector(), show_progress=False)
    length = resampled_frames(m, fps)
    if not scenes:
        return [(0, length)]
    return [(round(a.seconds * fps), min(length, round(b.seconds * fps))) for a, b in scenes]


class FolderSource(VideoSource):
    name = "folder"
    config_class = FolderConfig
    version = "1"

    def clips(self, split: str = "train", num: int | None = None, shard: int = 0, quiet: bool = False) -> list[Sample]:
        """train: every window of every usable file bar the held-out ones (a torchrun rank takes every world-th
        file from its own); stats: the first `num` training windows; heldout: the windows of cfg.heldout (the
        training windows when it names none: a user folder has no held-out clips of its own)."""
        from cinegen.runtime import progress_bar
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
        found = self.usable()
        held = [m for m in found if m.rel in self.cfg.heldout]
        chosen = held if split == "heldout" and held else [m for m in found if m.rel not in self.cfg.heldout]
        if split == "train" and shard:
            import os
            world = int(os.environ.get("WORLD_SIZE", "1"))
            chosen = chosen[shard % world::world] or chosen
        samples: list[Sample] = []
        with progress_bar(disable=quiet) as bar:
            task = bar.add_task("reading footage", total=len(chosen), status="")
            for m in chosen:
                samples += load_windows(m, self._captions[m.rel], self.cfg)
                bar.advance(task)
                if split != "train" and num is not None and len(samples) >= num:
                    break
        return samples if num is None or split == "train" else samples[:num]

    def usable(self, found: Survey | None = None) -> list[Media]:
        """The files training reads; unusable ones are refused with their problems (or left out with skip_bad).
        found: the folder's survey when the caller has one already."""
        if found is not None or not hasattr(self, "_usable"):
            found = found or survey(self.cfg)
            bad = [p for p in found.problems if p.fatal]
            if bad and not self.cfg.skip_bad:
                raise ValueError(f"{len(found.bad)} file(s) in {self.cfg.root} cannot be used: "
                                 + "; ".join(f"{p.rel}: {p.message}" for p in bad[:10])
                                 + " (cinegen dataset check lists them; data.skip_bad=true leaves them out)")
            for p in bad:
                log.warning("left out %s: %s", p.rel, p.message)
            missing = set(self.cfg.heldout) - {m.rel for m in found.usable}
            if missing:
                raise ValueError(f"data.heldout names {sorted(missing)}, not usable files of {self.cfg.root}")
            self._usable, self._captions = found.usable, found.captions
        return self._usable

    def facts(self) -> dict:
        return {"footage": self.cfg.root}
