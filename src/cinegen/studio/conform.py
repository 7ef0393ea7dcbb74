"""From the model's frame grid to the film's delivery rate, to the frame.

The model renders at its native rate (Geometry.fps, 8 fps for the shipped model) on its 1 + stride*k frame grid;
a board's durations are in seconds and its film runs at a delivery rate NLEs accept (24, 25, 30, 23.976, 29.97).

Cut points: the film's k-th boundary is round(T_k * rate) frames, where T_k is the board's running total of
seconds. Rounding the running total, not each segment, means the film never drifts from the board: every cut
lies within half a frame of where the board puts it, and the film lasts round(total * rate) frames.

Conform method: sample-and-hold ("pulldown-like repetition"): delivery frame j of a shot shows native frame
floor(j * native / rate). 8 -> 24 fps repeats each frame exactly 3 times; 8 -> 25 repeats on a 4,3,3,3,3,3,3,3
cadence (the first native frame of each second of a shot is held once more). We repeat rather than interpolate
because repetition invents no pixels (the frames an editor sees are the frames the model made, with their
watermark intact), is exact and deterministic (a cached shot conforms to the same frames every time), and
motion-compensated interpolation of 8 fps generative video ghosts badly on the
large motions our shots have; a blend would also soften every third frame. The cost is the judder of a 3:1
cadence, as in any low-rate material conformed to 24.

Shots render the fewest grid frames that cover the board's seconds (rounded up), are trimmed to their cut,
and keep the extra frames as handles in the timeline. Generated connect bridges are retimed instead (their
last frame must meet the next shot), by the same repetition spread evenly over the bridge.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np

# The delivery rates: SMPTE timecode rates that NLEs and OTIO's FCP/AAF adapters accept. 23.976 and 29.97 are
# the NTSC rates 24000/1001 and 30000/1001 (not the decimal approximations).
DELIVERY_RATES = {"23.976": Fraction(24000, 1001), "24": Fraction(24), "25": Fraction(25),
                  "29.97": Fraction(30000, 1001), "30": Fraction(30)}
DEFAULT_RATE = "24"


def delivery_rate(fps: float | str) -> Fraction:
    """The exact rate for 24, 25, 30, 23.976 (or 23.98) and 29.97; ValueError naming the value otherwise."""
    try:
        value = float(fps)
    except (TypeError, ValueError):
        value = math.nan
    for rate in DELIVERY_RATES.values():
        if abs(value - float(rate)) < 0.006:
            return rate
    raise ValueError(f"delivery fps must be one of {', '.join(DELIVERY_RATES)}, got {fps!r}")


def rate_label(rate: Fraction) -> str:
    return next(k for k, v in DELIVERY_RATES.items() if v == rate)


def drop_frame(rate: Fraction) -> bool:
    """29.97 timecode is written drop-frame (the broadcast convention; OTIO infers the same); 23.976 has none."""
    return rate == DELIVERY_RATES["29.97"]


def cut_points(seconds: list[float], rate: Fraction) -> list[int]:
    """Frame boundaries of consecutive segments of `seconds`: [0, b1, ..., b_n], from the running total."""
    bounds, total = [0], Fraction(0)
    for s in seconds:
        total += Fraction(s).limit_denominator(100000)
        bounds.append(round(total * rate))
    return bounds


def native_latents(seconds: float, native_fps: float, stride: int) -> int:
    """Latent frames whose pixel frames (1 + stride*(L-1)) cover `seconds` at the native rate."""
    need = max(1, math.ceil(Fraction(seconds).limit_denominator(100000) * Fraction(native_fps).limit_denominator(1000)))
    return 1 + math.ceil((need - 1) / stride)


def hold_indices(count: int, native_fps: float, rate: Fraction) -> np.ndarray:
    """Native frame shown by each of `count` delivery frames (sample-and-hold from the clip's start)."""
    native = Fraction(native_fps).limit_denominator(1000)
    return np.array([(j * native) // rate for j in range(count)], dtype=np.int64)


def conformed_length(native_frames: int, native_fps: float, rate: Fraction) -> int:
    """Delivery frames a clip of `native_frames` covers at `rate`: the shot's media length, handles included."""
    return int(native_frames * rate / Fraction(native_fps).limit_denominator(1000))


def conform(frames: np.ndarray, native_fps: float, rate: Fraction, count: int | None = None) -> np.ndarray:
    """A native clip at the delivery rate by repetition: `count` frames (default: all it covers)."""
    count = conformed_length(len(frames), native_fps, rate) if count is None else count
    return frames[np.minimum(hold_indices(count, native_fps, rate), len(frames) - 1)]


def retime(frames: np.ndarray, count: int) -> np.ndarray:
    """Spreads a clip over exactly `count` frames (repeating or dropping evenly); its last frame stays last."""
    if count < 1:
        raise ValueError(f"a segment needs at least one frame, got {count}")
    if count == 1:
        return frames[-1:]
    idx = np.round(np.arange(count) * (len(frames) - 1) / (count - 1)).astype(np.int64)
    return frames[idx]
