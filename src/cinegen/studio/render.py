"""Renders a storyboard into a film folder:

    film/film.mp4        every shot joined (H.264) + voice-over (AAC) + soft subtitles (mov_text)
    film/film.srt, .vtt  subtitles timed to their shots
    film/film.otio, .edl the timeline, referencing each shot's own MP4 in film/shots/
    film/render.json     what was rendered, what came from the cache, the estimate, warnings

Shots are cached by content: a shot's key hashes everything that decides its pixels (prompt, seconds, size, seed,
steps, guidance, fps, the bytes of its images, the model's weights). Re-rendering a board after changing one
shot re-renders that shot (and a connect transition touching it) only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from cinegen import requests as R
from cinegen.config import SampleConfig
from cinegen.estimate import Estimate, estimate
from cinegen.io.files import atomic_write
from cinegen.io.provenance import provenance_tags
from cinegen.io.video import read_image, write_mp4
from cinegen.modes import fit_video
from cinegen.runtime import part, report
from cinegen.studio import voice
from cinegen.studio.board import Board, Shot
from cinegen.studio.editorial import Segment, write_subtitles, write_timeline


@dataclass
class FilmResult:
    folder: Path
    segments: list[Segment]
    rendered: list[str] = field(default_factory=list)      # segment names rendered this time
    cached: list[str] = field(default_factory=list)        # segment names taken from the cache
    warnings: list[str] = field(default_factory=list)

    @property
    def film(self) -> Path:
        return self.folder / "film.mp4"


def shot_config(board: Board, shot: Shot, index: int) -> SampleConfig:
    w, h = board.shot_size(shot)
    return SampleConfig(seconds=shot.seconds, fps=board.fps, width=w, height=h, steps=board.steps,
                        guidance=board.guidance, seed=shot.seed if shot.seed is not None else board.seed + index)


def _native_pipe(backend):
    """The TextToVideo of a cinegen backend: estimates count its DiT and VAE."""
    pipe = getattr(backend, "pipe", None)
    if pipe is None or not hasattr(pipe, "dit"):
        raise ValueError(f"storyboards render on cinegen models; {backend.name} is not one")
    return pipe


def board_estimate(backend, board: Board, gpu: str = "H100") -> list[tuple[str, Estimate]]:
    """The cost of every shot and transition, before anything renders."""
    pipe = _native_pipe(backend)
    rows = []
    for i, shot in enumerate(board.shots):
        cfg = shot_config(board, shot, i)
        if shot.transition == "connect":
            w, h = board.film_size
            # the bridge window: 2 context latents around the new ones
            bridge = replace(cfg, width=w, height=h, seconds=shot.transition_seconds + 8 / board.fps)
            rows.append((f"transition {i}", estimate(pipe.dit.cfg, pipe.vae.cfg, bridge, gpu=gpu)))
        rows.append((f"shot {i}", estimate(pipe.dit.cfg, pipe.vae.cfg, cfg, gpu=gpu)))
    return rows


def _file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def model_digest(folder: Path) -> str:
    """Identifies the weights, so a new model never reuses an old model's shots."""
    h = hashlib.sha256()
    for name in ("dit.safetensors", "vae.safetensors"):
        h.update(_file_digest(folder / name).encode())
    return h.hexdigest()[:16]


def shot_key(board: Board, shot: Shot, index: int, model_id: str) -> str:
    cfg = shot_config(board, shot, index)
    payload = {"prompt": shot.prompt, "cfg": cfg.__dict__, "model": model_id,
               "image": shot.image and _file_digest(shot.image),
               "keyframes": [(k.frame, _file_digest(k.image)) for k in shot.keyframes]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def shot_request(shot: Shot, cfg: SampleConfig) -> R.Request:
    """The one request a shot is: animate from its image, pass through its keyframes, or plain text."""
    if shot.image:
        return R.Animate(prompt=shot.prompt, image=read_image(shot.image), sample=cfg)
    if shot.keyframes:
        return R.Keyframes(prompt=shot.prompt, sample=cfg,
                           keyframes=tuple((k.frame, read_image(k.image)) for k in shot.keyframes))
    return R.Text(prompt=shot.prompt, sample=cfg)


def _cached(folder: Path, key: str, fps: float, make) -> tuple[np.ndarray, bool]:
    """Frames for `key` from film/shots/ (lossless .npy beside the MP4), or made and stored. Returns (frames, hit)."""
    npy, mp4 = folder / "shots" / f"{key}.npy", folder / "shots" / f"{key}.mp4"
    if npy.is_file() and mp4.is_file():
        return np.load(npy), True
    frames = make()
    atomic_write(npy, lambda tmp: _save_npy(tmp, frames))
    write_mp4(frames, mp4, fps)
    return frames, False


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:                   # a file object: np.save would append ".npy" to a bare temp name
        np.save(f, array)


def render_storyboard(backend, board: Board, folder: str | Path, model_id: str, progress=None) -> FilmResult:
    """Renders (or reuses) every shot, joins them and writes the film, subtitles, voice-over and timeline.

    progress: the one progress callback (runtime.report); each shot's and transition's sampling counts as one
    part of the board, a segment taken from the cache as done at once.
    """
    folder = Path(folder)
    film_w, film_h = board.film_size
    result = FilmResult(folder, [])
    pieces, prev, prev_key, start = [], None, None, 0.0
    total = len(board.shots) + sum(s.transition == "connect" for s in board.shots)

    def render(request: R.Request, name: str):
        return lambda: backend.generate(request, progress=part(progress, len(result.segments), total, name))
    for i, shot in enumerate(board.shots):
        cfg = shot_config(board, shot, i)
        key = shot_key(board, shot, i, model_id)
        frames, hit = _cached(folder, key, board.fps, render(shot_request(shot, cfg), f"shot {i}"))
        frames = fit_video(frames, film_w, film_h)
        if shot.transition == "connect" and prev is not None:
            tkey = hashlib.sha256(f"{prev_key}>{key}:{shot.transition_seconds}".encode()).hexdigest()[:16]
            tcfg = replace(cfg, width=film_w, height=film_h, seconds=shot.transition_seconds)
            bridge_request = R.Connect(prompt=shot.prompt, video=prev, video_b=frames, bridge_only=True, sample=tcfg)
            bridge, thit = _cached(folder, tkey, board.fps, render(bridge_request, f"transition {i}"))
            start = _add(result, pieces, Segment(f"transition {i}", folder / "shots" / f"{tkey}.mp4", start,
                                                 len(bridge), board.fps), bridge, thit, progress, total)
        seg = Segment(f"shot {i}", folder / "shots" / f"{key}.mp4", start, len(frames), board.fps, shot.line)
        if shot.line:
            speech, warnings = voice.fit_line(voice.VoiceLine(start, start + seg.seconds, shot.line), board.voice)
            result.warnings += warnings
            seg = replace(seg, voice_media=voice.write_wav(speech, folder / "voice" / f"{key}.wav"))
            pieces.append(("speech", start, speech))
        start = _add(result, pieces, seg, frames, hit, progress, total)
        prev, prev_key = frames, key
    _write_film(board, folder, result, pieces, start, model_id)
    return result


def _add(result: FilmResult, pieces: list, seg: Segment, frames: np.ndarray, hit: bool, progress, total: int) -> float:
    result.segments.append(seg)
    (result.cached if hit else result.rendered).append(seg.name)
    pieces.append(("frames", seg.start, frames))
    report(progress, seg.name, len(result.segments), total)
    return seg.start + seg.seconds


def _write_film(board: Board, folder: Path, result: FilmResult, pieces: list, duration: float, model_id: str) -> None:
    video = np.concatenate([p[2] for p in pieces if p[0] == "frames"])                # (T, H, W, 3)
    speech = [(p[1], p[2]) for p in pieces if p[0] == "speech"]
    cues = [(s.start, s.start + s.seconds, s.line) for s in result.segments if s.line]
    audio = (voice.place(speech, duration), voice.SAMPLE_RATE) if speech else None
    prompts = " | ".join(s.prompt for s in board.shots)
    tags = provenance_tags(f"cinegen-default@{model_id}", prompts, board.seed, title=board.title)
    write_mp4(video, folder / "film.mp4", board.fps, metadata=tags, audio=audio, subtitles=cues or None)
    write_subtitles(cues, folder / "film.srt", folder / "film.vtt")
    write_timeline(board.title, result.segments, board.fps, folder / "film.otio", folder / "film.edl")
    manifest = {"title": board.title, "model": model_id, "seconds": duration, "frames": len(video),
                "segments": [{"name": s.name, "media": str(s.media.relative_to(folder)), "start": s.start,
                              "frames": s.frames, "line": s.line} for s in result.segments],
                "rendered": result.rendered, "cached": result.cached, "warnings": result.warnings}
    atomic_write(folder / "render.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
