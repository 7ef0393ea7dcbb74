"""Image and video prompting on top of TextToVideo.generate: animate, extend, loop, connect, edit, image,
keyframes and long videos. Each mode only builds `Conditions` (clean latent frames + mask) or an SDEdit source
and calls the one generate path.

Pixel frame f lives in latent frame (f + 3) // 4 (the first frame is alone). Context taken from an existing clip
is re-encoded from pixels as its own clip, so its first latent frame is a true "first frame" latent, which is
what the model saw in training.

Videos: (T, H, W, 3) uint8. Images: (H, W, 3) uint8.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from cinegen.config import SampleConfig
from cinegen.diffusion.conditioning import frame_mask
from cinegen.pipeline import Conditions, TextToVideo

# --- Pixel helpers ---

def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Centre-crops to the target aspect and resizes (Lanczos). (H, W, 3) uint8 -> (height, width, 3)."""
    from PIL import Image
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise ValueError(f"image must be (H, W, 3) with H, W >= 1, got {image.shape}")
    h, w = image.shape[:2]
    scale = max(width / w, height / h)
    cw, ch = min(w, round(width / scale)), min(h, round(height / scale))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = Image.fromarray(np.ascontiguousarray(image[y0:y0 + ch, x0:x0 + cw]))
    return np.asarray(crop.resize((width, height), Image.LANCZOS))


def fit_video(video: np.ndarray, width: int, height: int) -> np.ndarray:
    if video.ndim != 4 or video.shape[0] < 1:
        raise ValueError(f"video must be (T, H, W, 3) with at least one frame, got {video.shape}")
    if video.shape[1:3] == (height, width):
        return video
    return np.stack([fit_image(f, width, height) for f in video])


def trim_to_grid(video: np.ndarray, factor: int = 4) -> np.ndarray:
    """Keeps the first 1 + factor*k frames (the VAE's frame grid)."""
    return video[: 1 + (len(video) - 1) // factor * factor]


def _cfg_for_latents(cfg: SampleConfig, latent_frames: int) -> SampleConfig:
    """A SampleConfig whose frame count gives exactly `latent_frames` latent frames."""
    return replace(cfg, seconds=4 * (latent_frames - 1) / cfg.fps)


def _with_context(pipe: TextToVideo, context: np.ndarray, prompt: str, cfg: SampleConfig, new_latents: int,
                  callback=None) -> np.ndarray:
    """Generates `new_latents` latent frames after a pixel context of 1 + 4c frames; returns only the new frames."""
    ctx = pipe.encode_video(context)                                                  # (1, C, 1+c, h, w)
    n_ctx = ctx.shape[2]
    total = n_ctx + new_latents
    latents = torch.zeros(1, ctx.shape[1], total, *ctx.shape[3:])
    latents[:, :, :n_ctx] = ctx
    cond = Conditions(latents, frame_mask(total, list(range(n_ctx)), tuple(ctx.shape[3:])))
    video = pipe.generate(prompt, _cfg_for_latents(cfg, total), conditions=cond, callback=callback)
    return video[len(context):]


# --- Modes ---

def image(pipe: TextToVideo, prompt: str, cfg: SampleConfig) -> np.ndarray:
    """A single frame: a one-latent-frame generation (the VAE encodes frame 0 alone)."""
    return pipe.generate(prompt, replace(cfg, seconds=0.0))[0]


def animate(pipe: TextToVideo, still: np.ndarray, prompt: str, cfg: SampleConfig, at: str = "start",
            callback=None) -> np.ndarray:
    """Image-to-video: the still becomes the first frame (or, with at="end", the last, by generating in reverse)."""
    if at not in ("start", "end"):
        raise ValueError(f"at must be 'start' or 'end', got {at!r}")
    first = fit_image(still, cfg.width, cfg.height)[None]                            # (1, H, W, 3)
    new = _with_context(pipe, first, prompt, cfg, (cfg.num_frames - 1) // 4, callback)
    video = np.concatenate([first, new])
    return video if at == "start" else video[::-1].copy()


def extend(pipe: TextToVideo, video: np.ndarray, prompt: str, cfg: SampleConfig, backward: bool = False,
           context_latents: int = 2, callback=None) -> np.ndarray:
    """Adds cfg.seconds of video after (or before) the clip; every original frame is kept as it was.

    Backward extension runs the same forward machinery on the time-reversed clip and reverses the result.
    """
    clip = fit_video(video, cfg.width, cfg.height)
    if backward:
        clip = clip[::-1]
    c = min(context_latents, (len(clip) - 1) // 4)
    context = clip[len(clip) - 1 - 4 * c:]
    new_latents = max(1, round(cfg.seconds * cfg.fps / 4))
    new = _with_context(pipe, np.ascontiguousarray(context), prompt, cfg, new_latents, callback)
    out = np.concatenate([clip, new])
    return out[::-1].copy() if backward else out


def connect(pipe: TextToVideo, a: np.ndarray, b: np.ndarray, prompt: str, cfg: SampleConfig,
            context_latents: int = 1) -> np.ndarray:
    """A transition of about cfg.seconds that starts on a's last frames and ends on b's first frames.

    Clean latents of a's tail (re-encoded as a clip) lead the window and b's head trails it: the same
    mask mechanism as extension, with frames given at both ends ("ends"/"tail" masks in training).
    """
    a, b = fit_video(a, cfg.width, cfg.height), fit_video(b, cfg.width, cfg.height)
    ca = min(context_latents, (len(a) - 1) // 4)
    head = pipe.encode_video(np.ascontiguousarray(a[len(a) - 1 - 4 * ca:]))            # (1, C, 1+ca, h, w)
    tail = pipe.encode_video(trim_to_grid(b)[: 1 + 4 * context_latents])               # (1, C, 1+cb, h, w)
    middle = max(1, round(cfg.seconds * cfg.fps / 4))
    n_head, n_tail = head.shape[2], tail.shape[2] - 1
    total = n_head + middle + n_tail
    latents = torch.zeros(1, head.shape[1], total, *head.shape[3:])
    latents[:, :, :n_head] = head
    latents[:, :, total - n_tail:] = tail[:, :, 1:]      # b's in-context latents; its lone first frame is dropped
    given = list(range(n_head)) + list(range(total - n_tail, total))
    cond = Conditions(latents, frame_mask(total, given, tuple(head.shape[3:])))
    return pipe.generate(prompt, _cfg_for_latents(cfg, total), conditions=cond)


def transition(pipe: TextToVideo, a: np.ndarray, b: np.ndarray, prompt: str, cfg: SampleConfig) -> np.ndarray:
    """Only the new frames of `connect`: played between a and b, they lead from a's end into b's start."""
    a = fit_video(a, cfg.width, cfg.height)
    bridge = connect(pipe, a, b, prompt, cfg)
    # connect's window starts with a's last 1 + 4 frames and ends with 4 frames of b's head (context_latents=1)
    n_head = 1 + 4 * min(1, (len(a) - 1) // 4)
    return bridge[n_head:len(bridge) - 4]


def loop(pipe: TextToVideo, video: np.ndarray, prompt: str, cfg: SampleConfig) -> np.ndarray:
    """The clip plus a bridge from its end back to its start: played on repeat, the seam flows."""
    clip = fit_video(video, cfg.width, cfg.height)
    return np.concatenate([clip, transition(pipe, clip, clip, prompt, cfg)])


def edit(pipe: TextToVideo, video: np.ndarray, prompt: str, cfg: SampleConfig, strength: float = 0.6) -> np.ndarray:
    """Video-to-video (SDEdit): noise the source to t = strength and denoise towards the new prompt."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    clip = trim_to_grid(fit_video(video, cfg.width, cfg.height))
    source = pipe.encode_video(clip)
    return pipe.generate(prompt, _cfg_for_latents(cfg, source.shape[2]), source=source, strength=strength)


def keyframes(pipe: TextToVideo, prompt: str, cfg: SampleConfig, frames: list[tuple[int, np.ndarray]]) -> np.ndarray:
    """A clip that passes through the given (pixel frame index, image) keyframes."""
    shape = pipe.latent_shape(cfg)
    latents = torch.zeros(shape)
    given = []
    for f, img in frames:
        if not 0 <= f < cfg.num_frames:
            raise ValueError(f"keyframe index {f} is outside a {cfg.num_frames}-frame clip")
        j = (f + 3) // 4
        latents[:, :, j] = pipe.encode_video(fit_image(img, cfg.width, cfg.height)[None])[:, :, 0]
        given.append(j)
    return pipe.generate(prompt, cfg, conditions=Conditions(latents, frame_mask(shape[2], given, shape[3:])))


def text_to_video(pipe: TextToVideo, prompt: str, cfg: SampleConfig, window_seconds: float = 2.0,
                  callback=None) -> np.ndarray:
    """Plain text-to-video at any length: one pass up to the training length, windowed extension beyond it."""
    if cfg.seconds > window_seconds:
        return long_video(pipe, prompt, cfg, window_seconds)
    return pipe.generate(prompt, cfg, callback=callback)


def long_video(pipe: TextToVideo, prompt: str, cfg: SampleConfig, window_seconds: float = 2.0,
               context_latents: int = 2, on_window=None) -> np.ndarray:
    """cfg.seconds of video by windowed extension: each window sees only the last 1 + 4c frames, so working
    memory is bounded by the window, whatever the length."""
    first = pipe.generate(prompt, replace(cfg, seconds=min(cfg.seconds, window_seconds)))
    chunks, have = [first], len(first)
    window_latents = round(window_seconds * cfg.fps / 4) + 1
    while have < cfg.num_frames:
        context = np.concatenate(chunks)[-(1 + 4 * context_latents):]
        new = min(window_latents - context_latents - 1, (cfg.num_frames - have + 3) // 4)
        chunks.append(_with_context(pipe, context, prompt, replace(cfg, seed=cfg.seed + len(chunks)), new))
        have += len(chunks[-1])
        if on_window:
            on_window(have, cfg.num_frames)
    return np.concatenate(chunks)[: cfg.num_frames]
