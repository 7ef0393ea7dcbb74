"""Voice-over: dialogue and narration lines spoken by espeak-ng (Debian's offline TTS, voices included), placed
at their shot's start and mixed into one mono track at 48 kHz (what post expects; espeak-ng's 22.05 kHz is
resampled once, polyphase, 320/147).

espeak-ng is a system package (`make test`/`make demo` install it with apt when they can); without it,
`synthesize` raises a clear error instead of rendering a silent film.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ESPEAK_RATE = 22050            # espeak-ng's native rate
SAMPLE_RATE = 48000            # the film's and every WAV's rate
FADE = 0.01                    # seconds of fade-out where a line is cut short (no click)
BASE_WPM, MAX_WPM = 160, 280   # speaking speed, and the fastest it may go to fit a line into its shot
LEAD_IN = 0.1                  # seconds of silence before a line starts in its shot


@dataclass(frozen=True)
class VoiceLine:
    start: float               # seconds into the film
    end: float                 # end of the shot: the line must be over by then
    text: str


def espeak_binary() -> str:
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        raise ValueError("voice-over needs espeak-ng (apt-get install espeak-ng); it is not installed")
    return exe


@functools.cache
def available_voices() -> frozenset[str] | None:
    """What `-v` accepts (language codes, voice names, voice files, lower case), or None without espeak-ng."""
    exe = shutil.which("espeak-ng") or shutil.which("espeak")
    if exe is None:
        return None
    out = subprocess.run([exe, "--voices"], capture_output=True, text=True, timeout=30).stdout
    names = set()
    for row in out.splitlines()[1:]:
        cols = row.split()
        if len(cols) >= 5:
            names.update(c.lower() for c in (cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]))
    return frozenset(names)


def check_voice(voice: str) -> str:
    """ValueError naming a voice espeak-ng does not have (a +variant such as en+f3 is allowed)."""
    voices = available_voices()
    if voices is not None and voice.split("+")[0].lower() not in voices:
        raise ValueError(f"unknown voice {voice!r}; `espeak-ng --voices` lists them (e.g. en, en-us, fr, de)")
    return voice


def synthesize(text: str, voice: str = "en", wpm: int = BASE_WPM) -> np.ndarray:
    """Text -> float32 mono samples at SAMPLE_RATE."""
    from scipy.signal import resample_poly
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        result = subprocess.run([espeak_binary(), "-v", voice, "-s", str(wpm), "-w", str(wav), "--", text],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not wav.is_file():
            raise ValueError(f"espeak-ng could not speak with voice {voice!r}: {result.stderr.strip()}")
        with wave.open(str(wav)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise RuntimeError(f"unexpected espeak-ng output: {w.getsampwidth()} bytes x {w.getnchannels()} channels")
            if w.getframerate() != ESPEAK_RATE:
                raise RuntimeError(f"espeak-ng spoke at {w.getframerate()} Hz, expected {ESPEAK_RATE}")
            pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0
    return resample_poly(pcm, 320, 147).astype(np.float32)             # 22050 * 320 / 147 = 48000


def fit_line(line: VoiceLine, voice: str) -> tuple[np.ndarray, list[str]]:
    """Speaks a line fast enough to end with its shot; a line too long even at MAX_WPM is cut, with a warning."""
    room = max(0.0, line.end - line.start - LEAD_IN)
    warnings = []
    speech = synthesize(line.text, voice)
    seconds = len(speech) / SAMPLE_RATE
    if seconds > room:
        wpm = min(MAX_WPM, int(BASE_WPM * seconds / max(room, 1e-3)) + 1)
        speech = synthesize(line.text, voice, wpm)
        if len(speech) / SAMPLE_RATE > room:
            warnings.append(f"line {line.text!r} needs {len(speech) / SAMPLE_RATE:.1f} s at {wpm} words/min "
                            f"but its shot leaves {room:.1f} s: cut short")
            speech = fade_out(speech[: int(room * SAMPLE_RATE)])
    return speech, warnings


def fade_out(speech: np.ndarray, seconds: float = FADE) -> np.ndarray:
    """A linear fade over the last `seconds`, so a line cut mid-word ends without a click."""
    n = min(len(speech), int(seconds * SAMPLE_RATE))
    out = speech.copy()
    if n:
        out[-n:] *= np.linspace(1.0, 0.0, n, dtype=np.float32)
    return out


def place(pieces: list[tuple[int, np.ndarray]], samples: int) -> np.ndarray:
    """One mono track of `samples` samples with each (start sample, samples) piece at its place; the timeline
    places each line's WAV at the same start sample."""
    track = np.zeros(samples, dtype=np.float32)
    for at, speech in pieces:
        piece = speech[: max(0, len(track) - at)]
        track[at:at + len(piece)] += piece
    return np.clip(track, -1.0, 1.0)


def write_wav(samples: np.ndarray, path: Path) -> Path:
    """16-bit mono WAV (what editing suites import without complaint), written atomically."""
    from cinegen.io.files import atomic_write

    def write(tmp: str) -> None:
        with wave.open(tmp, "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    atomic_write(path, write)
    return path
