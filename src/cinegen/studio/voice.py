"""Voice-over: dialogue and narration lines spoken by espeak-ng (Debian's offline TTS, voices included), placed
at their shot's start and mixed into one mono track.

espeak-ng is a system package (`make test`/`make demo` install it with apt when they can); without it,
`synthesize` raises a clear error instead of rendering a silent film.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050            # espeak-ng's native rate
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


def synthesize(text: str, voice: str = "en", wpm: int = BASE_WPM) -> np.ndarray:
    """Text -> float32 mono samples at SAMPLE_RATE."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        result = subprocess.run([espeak_binary(), "-v", voice, "-s", str(wpm), "-w", str(wav), "--", text],
                                capture_output=True, text=True, timeout=60)
        if result.returncode != 0 or not wav.is_file():
            raise ValueError(f"espeak-ng could not speak with voice {voice!r}: {result.stderr.strip()}")
        with wave.open(str(wav)) as w:
            if w.getsampwidth() != 2 or w.getnchannels() != 1:
                raise RuntimeError(f"unexpected espeak-ng output: {w.getsampwidth()} bytes x {w.getnchannels()} channels")
            if w.getframerate() != SAMPLE_RATE:
                raise RuntimeError(f"espeak-ng spoke at {w.getframerate()} Hz, expected {SAMPLE_RATE}")
            return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


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
            speech = speech[: int(room * SAMPLE_RATE)]
    return speech, warnings


def place(pieces: list[tuple[float, np.ndarray]], duration: float) -> np.ndarray:
    """One mono track of `duration` seconds with each (start seconds, samples) piece at its place."""
    track = np.zeros(int(round(duration * SAMPLE_RATE)), dtype=np.float32)
    for start, speech in pieces:
        at = int((start + LEAD_IN) * SAMPLE_RATE)
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
