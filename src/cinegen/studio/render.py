"""Renders a storyboard into a film folder:

    film/film.mp4        every shot joined (H.264) + voice-over (AAC) + soft subtitles (mov_text)
    film/film.srt, .vtt  subtitles timed to their shots
    film/film.otio, .edl the timeline, referencing each shot's own MP4 in film/shots/ (relative paths)
    film/film.fcpxml, .xml, .aaf  the same timeline through OTIO's FCPXML, FCP7 and AAF adapters, where installed
    film/render.json     what was rendered, what came from the cache, the estimate, warnings, each shot's model

Shots are cached by content: a shot's key hashes everything that decides its pixels (prompt, seconds, size, seed,
steps, guidance, the bytes of its images, the model's weights) and holds its native frames (.npy); its MP4 is
conformed to the board's delivery rate on every render (see conform.py), so changing `fps` re-renders nothing.
A shot may name its own model (shot_models.py): it renders at that model's rate and nearest size, and is
conformed and resized to the board's like any other (a warning says so); a connect bridge is rendered by the
model of the shot it leads into.
Re-rendering a board after changing one shot re-renders that shot (and a connect transition touching it) only.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path

import numpy as np

from cinegen import requests as R
from cinegen.config import SampleConfig
from cinegen.estimate import NOT_MODELLED, SORA_PER_MINUTE, Estimate, estimate, human_dollars, human_time
from cinegen.io.files import atomic_write
from cinegen.io.provenance import METHOD, check_watermark_size, embed_watermark, provenance_tags, sign_c2pa
from cinegen.io.video import read_image, write_mp4
from cinegen.modes import fit_video
from cinegen.runtime import part, report
from cinegen.studio import voice
from cinegen.studio.board import Board, Shot
from cinegen.studio.conform import conform, cut_points, native_latents, rate_label, retime
from cinegen.studio.editorial import Segment, subtitle_cues, write_subtitles, write_timeline
from cinegen.studio.shot_models import board_models, file_digest, model_digest  # noqa: F401 (model_digest: re-exported)


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


def shot_config(board: Board, shot: Shot, index: int, backend) -> SampleConfig:
    """The render of a shot on its model: at the model's native rate, the fewest grid frames that cover its
    seconds, at the shot's size (or the nearest the model renders; board_notes says so)."""
    geometry = backend.capabilities.geometry
    w, h = backend.size_for(*board.shot_size(shot))
    latents = native_latents(shot.seconds, geometry.fps, geometry.frame_stride)
    cfg = SampleConfig(seconds=geometry.seconds_of(latents, geometry.fps), fps=geometry.fps, width=w, height=h,
                       steps=board.steps, guidance=board.guidance,
                       seed=shot.seed if shot.seed is not None else board.seed + index)
    # what the board leaves alone (and the negative prompt, which boards do not set) is the model's own default:
    # a Wan shot samples with Wan's steps, guidance and negative prompt
    unset = frozenset({"steps", "guidance"} - board.model_fields_set) | {"negative_prompt"}
    return backend.prepare(R.Text(prompt=shot.prompt, sample=cfg), unset)[0].sample


def bridge_config(board: Board, shot: Shot, cfg: SampleConfig, backend) -> SampleConfig:
    """A connect bridge's render: whole latent frames covering transition_seconds (it is retimed to fit), at the
    film's size or the nearest its model renders."""
    geometry = backend.capabilities.geometry
    w, h = backend.size_for(*board.film_size)
    latents = max(1, math.ceil(shot.transition_seconds * geometry.fps / geometry.frame_stride - 1e-9))
    return replace(cfg, width=w, height=h, seconds=geometry.frame_stride * latents / geometry.fps)


def board_segments(board: Board) -> list[tuple[str, str, int, float]]:
    """(name, kind, shot index, board seconds) of every segment of the film, in order."""
    out = []
    for i, shot in enumerate(board.shots):
        if shot.transition == "connect" and i > 0:
            out.append((f"transition {i}", "transition", i, shot.transition_seconds))
        out.append((f"shot {i}", "shot", i, shot.seconds))
    return out


@dataclass
class BoardEstimate:
    """The cost of every segment of a board and the film's minutes, priced on `gpu` (or timed on this CPU)."""
    gpu: str
    rows: list[tuple[str, Estimate]]
    film_seconds: float
    timed: bool = False            # True: wall times measured on this machine, not FLOPs over a datasheet rate

    @property
    def wall_seconds(self) -> float:
        return sum(e.wall_seconds for _, e in self.rows)

    @property
    def dollars(self) -> float:
        return sum(e.dollars for _, e in self.rows)

    def table(self, title: str):
        from rich.table import Table
        t = Table("segment", "tokens", "TFLOP", f"{self.gpu} time", "cost", title=f"estimate for {title} (before rendering)")
        for name, est in self.rows:
            t.add_row(name, f"{est.tokens:,}", f"{est.total_flops / 1e12:,.3f}", human_time(est.wall_seconds),
                      human_dollars(est.dollars))
        t.add_row("total", "", f"{sum(e.total_flops for _, e in self.rows) / 1e12:,.3f}", human_time(self.wall_seconds),
                  human_dollars(self.dollars))
        return t

    def notes(self) -> list[str]:
        minutes = self.film_seconds / 60
        ref = SORA_PER_MINUTE
        how = "timed on this machine's CPU" if self.timed else f"FLOPs over {self.gpu}'s datasheet rate"
        return [f"per minute of film: {human_time(self.wall_seconds / minutes)}, {human_dollars(self.dollars / minutes)} "
                f"({how}); the seed's Sora figure: {human_dollars(ref['dollars'])} and about {ref['minutes']:g} min on "
                f"{ref['gpus']} per minute", NOT_MODELLED]


def _timed(backend, request_for) -> tuple[float, float]:
    """(seconds per step, seconds fixed) of the real request on this machine, from 1- and 2-step runs: text
    encoding, the VAE encode of images and context frames, and decoding are all in the fixed part. A first,
    untimed run takes the one-off costs of a cold process (the text encoder loading: about 7 s for the tiny test
    model's board against 0.4 s of sampling), which the 1-step run alone used to pay, so a cold estimate read 15x
    too high."""
    import time
    backend.generate(request_for(1))
    runs = []
    for steps in (1, 2):
        t = time.perf_counter()
        backend.generate(request_for(steps))
        runs.append(time.perf_counter() - t)
    per_step = max(runs[1] - runs[0], 0.0)
    return per_step, max(runs[0] - per_step, 0.0)


def board_estimate(models, board: Board, gpu: str = "H100") -> BoardEstimate:
    """The cost of every shot and transition on the model that renders it, before anything renders. models: a
    shot_models.BoardModels (or one backend for every shot). gpu="cpu": each distinct render is timed on this
    machine (1 and 2 steps: per-step and fixed cost, text encoding and decoding included), the rest is FLOPs over
    the GPU's datasheet rate. Identical configurations on one model are counted once."""
    models = board_models(models)
    timed = gpu.lower() == "cpu"
    seen: dict = {}

    def cost(backend, cfg: SampleConfig, request_for, kind: str, flops_cfg: SampleConfig | None = None) -> Estimate:
        key = (id(backend), kind, cfg.seconds, cfg.width, cfg.height, cfg.steps, cfg.guidance, cfg.solver)
        backend.check(backend.prepare(request_for(cfg.steps))[0])    # a mode the model lacks fails before any render
        if key not in seen:
            dit, vae, text_tokens = backend.estimate_configs()
            est = estimate(dit, vae, flops_cfg or cfg, gpu="H100" if timed else gpu, text_tokens=text_tokens)
            if timed:
                per_step, fixed = _timed(backend, request_for)
                wall = fixed + per_step * cfg.steps
                est = replace(est, gpu_seconds=wall, wall_seconds=wall, dollars=0.0)
            seen[key] = est
        return seen[key]
    rows = []
    for i, shot in enumerate(board.shots):
        backend = models.of(shot).backend
        geo = backend.capabilities.geometry
        cfg = shot_config(board, shot, i, backend)
        if shot.transition == "connect" and i > 0:
            bridge = bridge_config(board, shot, cfg, backend)
            clip = np.zeros((geo.frames_of(3), bridge.height, bridge.width, 3), np.uint8)
            request = lambda steps, b=bridge, c=clip: R.Connect(prompt=shot.prompt, video=c, video_b=c, bridge_only=True,
                                                                  sample=replace(b, steps=steps))
            # the FLOPs of the bridge window: 2 context latents around the new ones
            window = replace(bridge, seconds=bridge.seconds + 2 * geo.frame_stride / geo.fps)
            rows.append((f"transition {i}", cost(backend, bridge, request, "connect", window)))
        kind = "image" if shot.image else "keyframes" if shot.keyframes else "text"
        rows.append((f"shot {i}", cost(backend, cfg, lambda steps, s=shot, c=cfg: shot_request(s, replace(c, steps=steps)),
                                       kind)))
    seconds = sum(p[3] for p in board_segments(board))
    return BoardEstimate("CPU" if timed else gpu, rows, seconds, timed)


def board_notes(models, board: Board) -> list[str]:
    """What conforming a board of several models changes, said before rendering and kept in render.json: a shot
    whose model renders another size than the board asks (resized to the film's), and models of different
    native rates (each conformed to the board's delivery rate)."""
    models = board_models(models)
    notes, rates = [], {}
    film = "x".join(map(str, board.film_size))
    for i, shot in enumerate(board.shots):
        backend = models.of(shot).backend
        rates.setdefault(backend.capabilities.geometry.fps, backend.name)
        asked = board.shot_size(shot)
        got = backend.size_for(*asked)
        if got != asked:
            notes.append(f"shot {i}: {backend.name} cannot render {asked[0]}x{asked[1]}; it renders the nearest size "
                         f"it can, {got[0]}x{got[1]}, resized to the film's {film}")
    if len(rates) > 1:
        said = ", ".join(f"{fps:g} fps ({name})" for fps, name in rates.items())
        notes.append(f"the board's models render at {said}: each shot is conformed to the board's "
                     f"{board.fps:g} fps by frame repetition (see cinegen.studio.conform)")
    return notes


def shot_key(board: Board, shot: Shot, index: int, model_id: str, backend) -> str:
    cfg = shot_config(board, shot, index, backend)
    payload = {"prompt": shot.prompt, "cfg": cfg.__dict__, "model": model_id,
               "image": shot.image and file_digest(shot.image),
               "keyframes": [(k.frame, file_digest(k.image)) for k in shot.keyframes]}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def shot_request(shot: Shot, cfg: SampleConfig) -> R.Request:
    """The one request a shot is: animate from its image, pass through its keyframes, or plain text."""
    if shot.image:
        return R.Animate(prompt=shot.prompt, image=read_image(shot.image), sample=cfg)
    if shot.keyframes:
        return R.Keyframes(prompt=shot.prompt, sample=cfg,
                           keyframes=tuple((k.frame, read_image(k.image)) for k in shot.keyframes))
    return R.Text(prompt=shot.prompt, sample=cfg)


def _cached(folder: Path, key: str, make) -> tuple[np.ndarray, bool]:
    """Native frames for `key` from film/shots/ (lossless .npy), or made and stored. Returns (frames, hit)."""
    npy = folder / "shots" / f"{key}.npy"
    if npy.is_file():
        return np.load(npy), True
    frames = make()
    atomic_write(npy, lambda tmp: _save_npy(tmp, frames))
    return frames, False


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:                   # a file object: np.save would append ".npy" to a bare temp name
        np.save(f, array)


@dataclass(frozen=True)
class Marking:
    """What the film and every shot's media carry besides tags: the invisible watermark, a C2PA signature."""
    watermark: bool = False
    c2pa: tuple[Path, Path] | None = None          # (certificate chain, private key)


def render_storyboard(models, board: Board, folder: str | Path, model_id: str = "", progress=None,
                      marking: Marking = Marking()) -> FilmResult:
    """Renders (or reuses) every shot on its model at that model's native rate, conforms it to the board's
    delivery rate, cut points (conform.py) and size, and writes the film, subtitles, voice-over, timelines and
    render.json. models: a shot_models.BoardModels, or one backend for every shot (its weights: model_id).

    progress: the one progress callback (runtime.report); each shot's and transition's sampling counts as one
    part of the board, a segment taken from the cache as done at once.
    """
    folder = Path(folder)
    models = board_models(models, model_id)
    rate = board.rate
    film_w, film_h = board.film_size
    if marking.watermark:
        check_watermark_size(film_w, film_h)
    plan = board_segments(board)
    bounds = cut_points([p[3] for p in plan], rate)
    result = FilmResult(folder, [], warnings=board_notes(models, board))
    pieces, medias, speech, prev, prev_key = [], [], [], None, None

    def render(backend, request: R.Request, name: str):
        return lambda: backend.generate(request, progress=part(progress, len(result.segments), len(plan), name))

    def add(k: int, key: str, native: np.ndarray, hit: bool, backend, model: str, **fields) -> Segment:
        name, kind, index, _ = plan[k]
        shot, fps = board.shots[index], backend.capabilities.geometry.fps
        n = bounds[k + 1] - bounds[k]
        native_size = f"{native.shape[2]}x{native.shape[1]}"
        native = fit_video(native, film_w, film_h)
        if marking.watermark:
            native = embed_watermark(native)
        if kind == "shot":                      # trimmed to its cut; the frames beyond it are handles
            media = conform(native, fps, rate)
            media = media if len(media) >= n else conform(native, fps, rate, n)
        else:                                   # a bridge must meet the next shot: retimed onto its cut
            media = retime(native, n)
        seed = shot_config(board, shot, index, backend).seed
        seg = Segment(name, folder / "shots" / f"{key}.mp4", bounds[k], n, rate, available=len(media), kind=kind,
                      metadata={"index": index, "shot_id": key, "prompt": shot.prompt, "seed": seed, "model": model,
                                "native_frames": len(native), "native_fps": fps, "native_size": native_size},
                      **fields)
        tags = provenance_tags(model, shot.prompt, seed, title=f"{board.title}: {name}", **_mark_tags(marking))
        _write_marked(media, seg.media, rate, tags, marking)
        medias.append((media, tags))
        result.segments.append(seg)
        (result.cached if hit else result.rendered).append(name)
        pieces.append(media[:n])
        report(progress, name, len(result.segments), len(plan))
        return seg

    k = 0
    for i, shot in enumerate(board.shots):
        sm = models.of(shot)
        backend = sm.backend
        cfg = shot_config(board, shot, i, backend)
        key = shot_key(board, shot, i, sm.digest, backend)
        frames, hit = _cached(folder, key, render(backend, shot_request(shot, cfg), f"shot {i}"))
        if plan[k][1] == "transition":
            tkey = hashlib.sha256(f"{prev_key}>{key}:{shot.transition_seconds}".encode()).hexdigest()[:16]
            bcfg = bridge_config(board, shot, cfg, backend)
            bridge_request = R.Connect(prompt=shot.prompt, video=fit_video(prev, bcfg.width, bcfg.height),
                                       video_b=fit_video(frames, bcfg.width, bcfg.height), bridge_only=True, sample=bcfg)
            bridge, thit = _cached(folder, tkey, render(backend, bridge_request, f"transition {i}"))
            add(k, tkey, bridge, thit, backend, sm.label)
            k += 1
        fields = {}
        if shot.line:
            seconds = float((bounds[k + 1] - bounds[k]) / rate)
            line, warnings = voice.fit_line(voice.VoiceLine(0.0, seconds, shot.line), board.voice)
            result.warnings += warnings
            at = round(bounds[k] * voice.SAMPLE_RATE / rate) + round(voice.LEAD_IN * voice.SAMPLE_RATE)
            fields = {"line": shot.line, "voice_media": voice.write_wav(line, folder / "voice" / f"{key}.wav"),
                      "voice_start": at, "voice_samples": len(line)}
            speech.append((at, line))
        add(k, key, frames, hit, backend, sm.label, **fields)
        k += 1
        prev, prev_key = frames, key
    _join_bridges(result, medias, rate, marking)
    labels = list(dict.fromkeys(s.metadata["model"] for s in result.segments))
    _write_film(board, folder, result, np.concatenate(pieces), speech, labels, marking)
    return result


def _join_bridges(result: FilmResult, medias: list[tuple[np.ndarray, dict]], rate: Fraction, marking: Marking) -> None:
    """A shot beside a connect bridge gets media that holds the bridge as its handles, so the timelines can make
    the bridge an OTIO Transition over them (see editorial.py): [incoming bridge] + the shot (to its cut when a
    bridge follows, else with its own handles) + [outgoing bridge]. The bridge keeps its own MP4 as well."""
    segs = result.segments
    for i, seg in enumerate(segs):
        near = [j for j in (i - 1, i + 1) if seg.kind == "shot" and 0 <= j < len(segs) and segs[j].kind == "transition"]
        if not near:
            continue
        before = medias[i - 1][0] if i - 1 in near else medias[i][0][:0]
        own = medias[i][0][:seg.frames] if i + 1 in near else medias[i][0]
        after = medias[i + 1][0] if i + 1 in near else own[:0]
        joined = np.concatenate([before, own, after])                                   # (T, H, W, 3)
        ids = "+".join(segs[j].metadata["shot_id"] for j in near)
        path = seg.media.with_name(f"{seg.metadata['shot_id']}-{hashlib.sha256(ids.encode()).hexdigest()[:8]}.mp4")
        _write_marked(joined, path, rate, medias[i][1], marking)
        segs[i] = replace(seg, media=path, head=len(before), available=len(joined))


def _mark_tags(marking: Marking) -> dict:
    return {"watermark": METHOD if marking.watermark else "none"}


def _write_marked(video: np.ndarray, path: Path, rate: Fraction, tags: dict, marking: Marking, **kw) -> None:
    write_mp4(video, path, rate, metadata=tags, **kw)
    if marking.c2pa:
        sign_c2pa(path, *marking.c2pa, tags=tags)


def _write_film(board: Board, folder: Path, result: FilmResult, video: np.ndarray, speech: list, models: list[str],
                marking: Marking) -> None:
    """models: the label of every model the film's segments came from (one, unless shots name their own)."""
    rate = board.rate
    model = " + ".join(models)
    frames = len(video)                                                               # (T, H, W, 3)
    cues, warnings = subtitle_cues(result.segments, rate)
    result.warnings += warnings
    samples = round(frames * voice.SAMPLE_RATE / rate)
    audio = (voice.place(speech, samples), voice.SAMPLE_RATE) if speech else None
    prompts = " | ".join(s.prompt for s in board.shots)
    tags = provenance_tags(model, prompts, board.seed, title=board.title, **_mark_tags(marking))
    seconds_cues = [(float(a / rate), float(b / rate), t) for a, b, t in cues]
    _write_marked(video, folder / "film.mp4", rate, tags, marking, audio=audio, subtitles=seconds_cues or None)
    write_subtitles(cues, rate, folder / "film.srt", folder / "film.vtt")
    result.warnings += write_timeline(board.title, result.segments, rate, folder, voice.SAMPLE_RATE)
    manifest = {"title": board.title, "model": model, "models": models, "fps": rate_label(rate), "rate": str(rate),
                "native_fps": result.segments[0].metadata["native_fps"], "frames": frames, "seconds": float(frames / rate),
                "conform": "sample-and-hold frame repetition (shots trimmed, bridges retimed); see cinegen.studio.conform",
                "audio_rate": voice.SAMPLE_RATE, "audio_samples": samples if speech else 0,
                "segments": [{"name": s.name, "kind": s.kind, "media": s.media.relative_to(folder).as_posix(),
                              "start_frame": s.start, "frames": s.frames, "head_frames": s.head,
                              "available_frames": s.available,
                              "line": s.line, "shot_id": s.metadata["shot_id"], "prompt": s.metadata["prompt"],
                              "seed": s.metadata["seed"], "model": s.metadata["model"],
                              "native_fps": s.metadata["native_fps"], "native_size": s.metadata["native_size"],
                              "voice": s.voice_media and {"media": s.voice_media.relative_to(folder).as_posix(),
                                                          "start_sample": s.voice_start, "samples": s.voice_samples}}
                             for s in result.segments],
                "subtitles": [{"start_frame": a, "end_frame": b, "text": t} for a, b, t in cues],
                "rendered": result.rendered, "cached": result.cached, "warnings": result.warnings}
    atomic_write(folder / "render.json", lambda tmp: Path(tmp).write_text(json.dumps(manifest, indent=2)))
