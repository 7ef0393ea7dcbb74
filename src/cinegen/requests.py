"""Typed render requests: one frozen dataclass per mode, each validated once, in its __post_init__, before any
model is loaded or any work is done. The CLI, the server worker and the studio build these and hand them to a
backend's `generate(request, progress)` (backends/base.py).

    Text(prompt="a large red ball bounces on a black background", sample=SampleConfig(seconds=2))
    Animate(prompt=..., image=still, at="end")           Extend(prompt=..., video=clip, backward=True)
    Connect(prompt=..., video=a, video_b=b)              Loop(video=clip)
    Keyframes(prompt=..., keyframes=((0, img0), (16, img1)))   Edit(prompt=..., video=clip, strength=0.6)
    Image(prompt=...)                                    (a single frame)
    Inpaint(prompt=..., video=clip, mask=white_where_new)   (mask: one (H, W, 3) image or a (T, H, W, 3) video)

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


MASK_THRESHOLD = 128          # a mask pixel at or above this (of 255) is regenerated; below it is kept
MASK_GREY_TOLERANCE = 48      # the most a mask pixel's channels may differ (video compression tints a grey mask)
ASPECT_TOLERANCE = 0.02       # relative aspect difference between mask and video that is still "the same"


@dataclass(frozen=True, kw_only=True, eq=False)
class Inpaint(Request):
    """The clip with the mask's white pixels regenerated towards the prompt and its black pixels kept. The mask is
    one image (applied to every frame) or a video of as many frames as the clip; it is greyscale, thresholded at
    MASK_THRESHOLD, and of the clip's aspect (any size: it is resized with the clip). The clip's length is kept."""
    mode: ClassVar[str] = "inpaint"
    video: np.ndarray
    mask: np.ndarray

    def __post_init__(self):
        super().__post_init__()
        _check_video("video", self.video)
        m = self.mask
        if not isinstance(m, np.ndarray) or m.ndim not in (3, 4) or m.shape[-1] != 3 or min(m.shape[:-1]) < 1:
            raise ValueError(f"mask must be an (H, W, 3) image or a (T, H, W, 3) video, "
                             f"got {getattr(m, 'shape', type(m).__name__)}")
        if m.ndim == 4 and len(m) not in (1, len(self.video)):
            raise ValueError(f"mask video has {len(m)} frames, the video {len(self.video)}: give one mask frame "
                             f"per video frame, or one image for all")
        (h, w), (vh, vw) = m.shape[-3:-1], self.video.shape[1:3]
        if abs((w / h) / (vw / vh) - 1) > ASPECT_TOLERANCE:
            raise ValueError(f"mask is {w}x{h}, the video {vw}x{vh}: the mask must have the video's aspect "
                             f"(it is resized to the video's size)")
        spread = int((m.max(axis=-1).astype(np.int16) - m.min(axis=-1)).max())
        if spread > MASK_GREY_TOLERANCE:
            raise ValueError(f"mask must be black and white (white = regenerate), but it has coloured pixels "
                             f"(channels up to {spread} apart): is it the right file?")
        if not self.mask_video().any():
            raise ValueError(f"mask is all black (no pixel >= {MASK_THRESHOLD}): nothing to regenerate")

    def mask_video(self) -> np.ndarray:
        """The mask as (T, H, W) booleans, one frame per video frame (True = regenerate)."""
        m = self.mask.mean(axis=-1) >= MASK_THRESHOLD                   # (H, W) or (T', H, W)
        m = m if m.ndim == 3 else m[None]
        return np.broadcast_to(m, (len(self.video), *m.shape[1:])) if len(m) == 1 else m


MODES = {cls.mode: cls for cls in (Text, Image, Animate, Extend, Connect, Loop, Keyframes, Edit, Inpaint)}
# cinegen's own model: its DiT was trained on whole-frame masks only (diffusion/conditioning.py), so it does not
# inpaint regions; the open-weights families that can say so in backends/families.py
NATIVE_MODES = tuple(m for m in MODES if m != "inpaint")
