"""Scores the image/video prompting modes with the same colour analyzer (`cinegen eval --modes`).

animate: a rendered first frame of a prompt's scene, animated with that prompt, checked against the scene.
extend:  the first second of a rendered clip, extended by a second; the new frames are checked against the scene.
edit:    a rendered clip re-imagined at strength 0.6 with a prompt of another colour, checked against the new one.
loop:    seam difference (last frame -> first frame) over the mean frame-to-frame difference (1 = seamless).
long:    peak resident memory of windowed generation at 2x, 4x, 8x the training length.
"""

from __future__ import annotations

import resource
from dataclasses import replace

import numpy as np

from cinegen import modes
from cinegen.config import SampleConfig
from cinegen.eval.analyzer import analyze
from cinegen.eval.run import seen_scenes
from cinegen.toyworld.world import COLOURS, canonical_caption, render_scene


def _other_colour(scene):
    obj = scene.objects[0]
    new = next(c for c in COLOURS if c != obj.colour and c != "white")
    return replace(scene, objects=(replace(obj, colour=new),))


def seam_ratio(video: np.ndarray) -> float:
    """|last -> first| difference over the mean consecutive-frame difference."""
    v = video.astype(np.float32)
    ordinary = np.abs(np.diff(v, axis=0)).mean()
    return float(np.abs(v[0] - v[-1]).mean() / max(ordinary, 1e-6))


def evaluate_modes(pipe, cfg: SampleConfig, holdout=(), n: int = 8, seed: int = 0) -> dict:
    scenes = seen_scenes(n, holdout, seed + 100)
    scores = {"animate": [], "extend": [], "edit": [], "loop_seam_ratio": [], "loop_input_seam_ratio": []}
    for i, scene in enumerate(scenes):
        prompt = canonical_caption(scene)
        c = replace(cfg, seed=cfg.seed + i)
        real = render_scene(scene, cfg.width, cfg.height, pipe.num_frames(cfg), cfg.fps, seed=i).video
        scores["animate"].append(analyze(modes.animate(pipe, real[0], prompt, c), scene).score)
        geo = pipe.geometry
        half = real[: geo.frames_of(1 + (geo.latent_frames(len(real)) - 1) // 2)]      # the first half, on the grid
        extended = modes.extend(pipe, half, prompt, replace(c, seconds=1.0))
        # score only what was generated (plus the last given frame): the kept part would flatter the number
        scores["extend"].append(analyze(extended[len(half) - 1:], scene).score)
        target = _other_colour(scene)
        scores["edit"].append(analyze(modes.edit(pipe, real, canonical_caption(target), c, 0.6), target).score)
        looped = modes.loop(pipe, real, prompt, replace(c, seconds=1.0))
        scores["loop_seam_ratio"].append(seam_ratio(looped))
        scores["loop_input_seam_ratio"].append(seam_ratio(real))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def peak_rss_mb() -> float:
    """This process's peak resident memory in MB since it started.

    On Linux, VmHWM of the current address space: ru_maxrss is not usable in a spawned child, because the kernel
    carries the forked parent's high-water mark across exec (a 1 GB parent made every probe read 1 GB).
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024                        # kB -> MB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024         # kB on Linux; other systems differ


def _peak_rss_worker(model_dir, prompt: str, cfg: SampleConfig, queue) -> None:
    from cinegen.pipeline import TextToVideo
    pipe = TextToVideo.from_pretrained(model_dir)
    before = peak_rss_mb()
    video = modes.long_video(pipe, prompt, cfg)
    queue.put((len(video), before, peak_rss_mb()))


def in_fresh_process(target, *args, timeout: float = 900.0):
    """Runs target(*args, queue) in a new (spawned) process and returns what it put on the queue. Memory probes
    need a fresh address space, whose peak (peak_rss_mb) starts from nothing. A child that dies (out of memory,
    import error) is an error, not a hang."""
    import multiprocessing as mp
    import queue as queue_mod
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    try:
        out = queue.get(timeout=timeout)
    except queue_mod.Empty:
        proc.kill()
        raise RuntimeError(f"memory probe process failed (exit code {proc.exitcode})") from None
    proc.join()
    return out


def long_video_memory(model_dir, prompt: str, cfg: SampleConfig, multiples=(1, 2, 4, 8)) -> dict:
    """Peak resident memory (MB) of windowed generation at multiples of the 2 s training length, each in a fresh
    process. Reports the peak after loading the model and the peak overall."""
    out = {}
    for m in multiples:
        frames, loaded, peak = in_fresh_process(_peak_rss_worker, model_dir, prompt, replace(cfg, seconds=2.0 * m))
        out[f"{m}x"] = {"frames": frames, "peak_mb_after_load": round(loaded, 1), "peak_mb": round(peak, 1)}
    return out
