"""Typed render requests: one frozen dataclass per mode, each validated once, in its __post_init__, before any
model is loaded or any work is done. The CLI, the server worker and the studio build these and hand them to a
backend's `generate(request, progress)` (backends/base.py).

    Text(prompt="a large red ball bounces on a black background", sample=SampleConfig(seconds=2))
    Animate(prompt=..., image=still, at="end")           Extend(prompt=..., video=clip, backward=True)
    Connect(prompt=..., video=a, video_b=b)              Loop(video=clip)
    Keyframes(prompt=..., keyframes=((0, img0), (16, img1)))   Edit(prompt=..., video=clip, strength=0.6)
    Image(prompt=...)                                    (a single frame)

What depends on the model (its sizes and frame grid, its solvers) is checked by the backend (`check`), also
before any work. Videos are (T, H, W, 3) uint8, images (H, W, 3) uint8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from cinegen import defaults
from cinegen.config import SampleConfig, check_prompt, check_strength


def _check_image(name: str, image) -> None:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"{name} must be an (H, W, 3) image, got {getattr(image, 'shape', type(image).__name__)}")


def _check_video(name: str, video) -> None:
    if not isinstance(video, np.ndarray) or video.ndim != 4 or video.shape[3] != 3 or video.shape[0] < 1:
        raise ValueError(f"{name} must be a (T, H, W, 3) video with at least one frame, "
                         f"got {getattr(video, 'shape', type(video).__name__)}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Request:
    """What every mode has: a prompt and how to sample."""
    mode: ClassVar[str] = ""
    prompt: str
    sample: SampleConfig = field(default_factory=SampleConfig)

    def __post_init__(self):
        check_prompt(self.prompt)
        if not isinstance(self.sample, SampleConfig):
            raise ValueError(f"sample must be a SampleConfig, got {type(self.sample).__name__}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Text(Request):
    """Text-to-video at any length (windowed extension past the training length)."""
    mode: ClassVar[str] = "text"


@dataclass(frozen=True, kw_only=True, eq=False)
class Image(Request):
    """A single frame."""
    mode: ClassVar[str] = "image"


@dataclass(frozen=True, kw_only=True, eq=False)
class Animate(Request):
    """Image-to-video: the still becomes the first frame (at="start") or the last (at="end")."""
    mode: ClassVar[str] = "animate"
    image: np.ndarray
    at: str = "start"

    def __post_init__(self):
        super().__post_init__()
        _check_image("image", self.image)
        if self.at not in ("start", "end"):
            raise ValueError(f"at must be 'start' or 'end', got {self.at!r}")


@dataclass(frozen=True, kw_only=True, eq=False)
class Extend(Request):
    """sample.seconds more video after the clip (or before it, backward=True); the clip's frames are kept."""
    mode: ClassVar[str] = "extend"
    video: np.ndarray
    backward: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_video("video", self.video)


@dataclass(frozen=True, kw_only=True, eq=False)
class Connect(Request):
    """A transition of about sample.seconds from the end of `video` into the start of `video_b`: the window with
    their frames at both ends, or (bridge_only) just the new frames, to play between the two clips."""
    mode: ClassVar[str] = "connect"
    prompt: str = defaults.CONNECT_PROMPT
    video: np.ndarray
    video_b: np.ndarray
    bridge_only: bool = False

    def __post_init__(self):
        super().__post_init__()
        _check_video("video", self.video)
        _check_video("video_b", self.video_b)


@dataclass(frozen=True, kw_only=True, eq=False)
class Loop(Request):
    """The clip plus a bridge of about sample.seconds from its end back to its start."""
    mode: ClassVar[str] = "loop"
    prompt: str = defaults.CONNECT_PROMPT
    video: np.ndarray

    def __post_init__(self):
        super().__post_init__()
        _check_video("video", self.video)


@dataclass(frozen=True, kw_only=True, eq=False)
class Keyframes(Request):
    """A clip that passes through images at given pixel frame indices: ((frame, image), ...)."""
    mode: ClassVar[str] = "keyframes"
    keyframes: tuple[tuple[int, np.ndarray], ...]

    def __post_init__(self):
        super().__post_init__()
        if not self.keyframes:
            raise ValueError("keyframes must name at least one (frame, image) pair")
        for i, (frame, image) in enumerate(self.keyframes):
            if not isinstance(frame, int) or frame < 0:
                raise ValueError(f"keyframe {i}: frame index must be a whole number >= 0, got {frame!r}")
            _check_image(f"keyframe {i} image", image)


@dataclass(frozen=True, kw_only=True, eq=False)
class Edit(Request):
    """Video-to-video (SDEdit): the clip re-imagined towards the prompt; strength 0 keeps it, 1 ignores it."""
    mode: ClassVar[str] = "edit"
    video: np.ndarray
    strength: float = defaults.STRENGTH

    def __post_init__(self):
        super().__post_init__()
        _check_video("video", self.video)
        check_strength(self.strength)


MODES = {cls.mode: cls for cls in (Text, Image, Animate, Extend, Connect, Loop, Keyframes, Edit)}
