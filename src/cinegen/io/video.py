"""Video files: H.264 MP4 (yuv420p, plays in browsers) via PyAV, PNG frames, and reading clips/images back."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from cinegen.io.files import atomic_write


def video_to_tensor(video: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.array(video)).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


def tensor_to_video(x: torch.Tensor) -> np.ndarray:
    """(3, T, H, W) float in [-1, 1] -> (T, H, W, 3) uint8."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).cpu().numpy()


def write_mp4(video: np.ndarray, path: str | Path, fps: float | Fraction = 8.0, metadata: dict | None = None, crf: int = 18,
              audio: tuple[np.ndarray, int] | None = None, subtitles: list[tuple[float, float, str]] | None = None,
              language: str = "eng") -> Path:
    """(T, H, W, 3) uint8 -> H.264 MP4 (yuv420p, plays in browsers), written to a temp file and renamed.

    fps: a Fraction is used exactly (24000/1001 for 23.976); a float is read to 1/1000. The moov atom is
    written first (faststart), so a browser or a player on a network share starts playing before the end
    arrives. H.264 with yuv420p needs even sizes; our sizes are multiples of 16. `metadata` goes into the container
    (generator, model, prompt hash, seed) so every output says where it came from. `audio`: (samples float32
    in [-1, 1], sample rate), mono, muxed as AAC. `subtitles`: (start s, end s, text) cues, muxed as a soft
    mov_text track (the subtitle codec MP4 players understand).
    """
    import av
    video = _check_video(video)
    path = Path(path)

    def write(tmp: str) -> None:
        # use_metadata_tags: the MP4 muxer otherwise drops keys outside its short list (title, comment, ...);
        # faststart: moov before mdat (a second pass over the file at close)
        with av.open(tmp, mode="w", format="mp4", options={"movflags": "use_metadata_tags+faststart"}) as container:
            for k, v in (metadata or {}).items():
                container.metadata[k] = str(v)
            rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1000)
            stream = container.add_stream("libx264", rate=rate)
            stream.width, stream.height = video.shape[2], video.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(crf), "preset": "medium"}
            audio_stream = _add_audio(container, audio, language) if audio is not None else None
            sub_stream = _add_subtitles(container, language) if subtitles else None
            for frame in video:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
            if audio_stream is not None:
                _mux_audio(container, audio_stream, *audio)
            if sub_stream is not None:
                _mux_subtitles(container, sub_stream, subtitles)
    atomic_write(path, write)
    return path


def _add_audio(container, audio, language: str):
    samples, rate = audio
    if samples.ndim != 1 or not rate > 0:
        raise ValueError(f"audio must be mono samples (N,) with a positive rate, got {samples.shape} at {rate}")
    stream = container.add_stream("aac", rate=int(rate))
    stream.layout = "mono"
    stream.metadata["language"] = language
    return stream


def _mux_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    import av
    frame = av.AudioFrame.from_ndarray(np.clip(samples, -1, 1).astype(np.float32)[None], format="fltp", layout="mono")
    frame.sample_rate, frame.pts = int(rate), 0
    container.mux(stream.encode(frame))                      # the encoder cuts it into AAC frames itself
    container.mux(stream.encode(None))


def _add_subtitles(container, language: str):
    stream = container.add_mux_stream("mov_text", time_base=Fraction(1, 1000))
    stream.metadata["language"] = language
    return stream


def _mux_subtitles(container, stream, cues: list[tuple[float, float, str]]) -> None:
    """PyAV cannot encode subtitles, so the samples are built by hand: a mov_text sample is a 16-bit big-endian
    length followed by the UTF-8 text (3GPP TS 26.245); no style boxes are needed for plain text."""
    import struct

    import av
    for start, end, text in sorted(cues):
        body = text.encode("utf-8")[:65535]
        packet = av.Packet(struct.pack(">H", len(body)) + body)
        packet.stream, packet.time_base = stream, Fraction(1, 1000)
        packet.pts = packet.dts = round(start * 1000)
        packet.duration = max(1, round((end - start) * 1000))
        container.mux(packet)


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
