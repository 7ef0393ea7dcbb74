"""`make bench` sections of issue 34 (speed where users wait), each a ratio measured side by side in one run:

  (h) cold start: a fresh `cinegen generate` (2 s at 64x64) and `cinegen serve` until it answers HTTP, against a
      fresh `python -c "import torch"`, interleaved, median of repeats;
  (i) few-step sampling: adherence and seconds per clip of the distilled adapter at its step counts, of plain
      Euler at the same counts, and of the 20-step sampler, on the same prompts and seeds;
  and the DiT-vs-Wan parity check of section (a): within 3% (the retired 1.2x goal's regression check).
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from cinegen import defaults

PROMPT = "a large red ball bounces on a black background"
PARITY = 0.03        # our DiT pass may be at most 3% slower than diffusers' Wan transformer at the same sizes


def parity(rows: list[dict], tolerance: float = PARITY) -> dict:
    """Section (a)'s rows -> {"ok", "worst"}: ok while every size runs at least (1 - tolerance) of Wan's speed."""
    worst = min(r["speedup"] for r in rows)
    return {"ok": worst >= 1 - tolerance, "worst": worst, "tolerance": tolerance}


# --- (h) cold start ---

def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cinegen.cli", *args]


def _run(cmd: list[str], env: dict, cwd: Path | None = None) -> None:
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=cwd)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed: {r.stderr.strip()[-300:]}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_ready_seconds(env: dict, data_dir: Path, timeout: float = 120.0) -> float:
    """Seconds from starting `cinegen serve` (one worker) until its API answers HTTP at all (any status)."""
    port = _free_port()
    start = time.perf_counter()
    proc = subprocess.Popen(_cli("serve", "--port", str(port), "--data-dir", str(data_dir), "--workers", "1"),
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while time.perf_counter() - start < timeout:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/videos", timeout=1)
                return time.perf_counter() - start
            except urllib.error.HTTPError:                 # an answer (401 without a key): ready
                return time.perf_counter() - start
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"cinegen serve exited with {proc.returncode} before answering") from None
                time.sleep(0.02)
        raise RuntimeError(f"cinegen serve did not answer within {timeout:.0f} s")
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stops a process started in its own session and everything it started (serve's render workers)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)         # whatever is left of the group
    except ProcessLookupError:
        pass
    proc.wait()


COLD_STEPS = tuple(dict.fromkeys((defaults.STEPS, defaults.TEACHER_STEPS, 4)))     # the default first


def cold_start(model_dir: Path | None = None, repeats: int = 5, steps: tuple[int, ...] = COLD_STEPS,
               serve: bool = True) -> dict:
    """Median wall seconds of fresh processes, interleaved: import torch; generate at each step count with the
    prompt's embedding on disk (a prompt rendered before) and, at steps[0], with an empty text cache (a new
    prompt); serve until it answers. The ratios are over import torch. Each process picks its threads as a user's
    would (runtime.sampling_threads: a busy machine gets fewer); an $OMP_NUM_THREADS of the caller is dropped."""
    with tempfile.TemporaryDirectory(prefix="cinegen-cold-") as tmp:
        return _cold_start(Path(tmp), model_dir, repeats, steps, serve)


def _cold_start(work: Path, model_dir: Path | None, repeats: int, steps: tuple[int, ...], serve: bool) -> dict:
    from cinegen.eval.timing import interleaved
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CINEGEN_TEXT_CACHE": str(work / "text")}
    env.pop("OMP_NUM_THREADS", None)
    model = ["--model", str(model_dir)] if model_dir else []
    gen = lambda s: _cli("generate", PROMPT, "--seconds", "2", "--size", "64x64", "--steps", str(s),      # noqa: E731
                         "-o", str(work / "out.mp4"), *model)
    misses = iter(range(10 ** 6))
    calls = {"import torch": lambda: _run([sys.executable, "-c", "import torch"], env)}
    calls.update({f"generate {s} steps": (lambda s=s: _run(gen(s), env)) for s in steps})
    calls[f"generate {steps[0]} steps, new prompt"] = lambda: _run(gen(steps[0]), {
        **env, "CINEGEN_TEXT_CACHE": str(work / f"empty-{next(misses)}")})
    if serve:
        serve_times = []
        calls["serve until it answers"] = lambda: serve_times.append(serve_ready_seconds(env, work / "serve"))
    times = interleaved(calls, repeats=repeats, warmup=1)        # the warm-up fills the text cache and page cache
    if serve:                                                    # until it answered, not until it was stopped again
        times["serve until it answers"] = statistics.median(serve_times[1:])
    base = times["import torch"]
    return {"seconds": times, "ratio": {k: v / base for k, v in times.items()}, "repeats": repeats,
            "clip": "64x64 2 s", "model": str(model_dir or "shipped"), "default_steps": defaults.STEPS}


def cold_start_table(c: dict) -> list[str]:
    lines = [f"## (h) Cold start vs `python -c \"import torch\"` (fresh processes, interleaved, median of "
             f"{c['repeats']}; model {c['model']}, clip {c['clip']})", "",
             "| command | seconds | x import torch |", "|---|---|---|"]
    lines += [f"| {k} | {v:.2f} | {c['ratio'][k]:.2f}x |" for k, v in c["seconds"].items()]
    default = f" `generate` renders {c['default_steps']} steps unless told otherwise." if "default_steps" in c else ""
    return lines + ["", "Goal (issue 34): generate and serve within 2x import torch. `serve` loads its model in the "
                    f"worker process, not before answering.{default}", ""]


# --- (i) few-step sampling ---

def fewstep_grid(pipe, holdout, n: int, teacher_steps: int = defaults.TEACHER_STEPS, steps: tuple[int, ...] = (4, 2, 1),
                 default_steps: int = defaults.STEPS) -> dict:
    """Adherence (seen prompts) and seconds per clip of a TextToVideo: the teacher, plain Euler at the default step
    count and at each of `steps`, and the distilled adapter (when its folder has one) at each of `steps`, all on
    the same prompts and seeds (evaluate's seed 0)."""
    from cinegen.config import SampleConfig
    from cinegen.eval.run import evaluate
    served = pipe.fewstep.info.steps if pipe.fewstep else ()
    plain = [s for s in dict.fromkeys((default_steps, *steps)) if s != teacher_steps]
    runs = [("teacher", teacher_steps, False)] + [("plain Euler", s, False) for s in plain]
    runs += [("distilled", s, True) for s in steps if s in served]
    rows = []
    for kind, s, distilled in runs:
        cfg = SampleConfig(steps=s, distilled=distilled)
        start = time.perf_counter()
        r = evaluate(pipe.generate, holdout, cfg, n_seen=n, n_heldout=0)
        rows.append({"sampler": kind, "steps": s, "adherence": r["splits"]["seen"]["generated"]["adherence"],
                     "seconds_per_clip": (time.perf_counter() - start) / n,
                     "passes": s * (1 if distilled or cfg.guidance == 1 else 2)})     # guided: two halves per step
    for r in rows:
        r["adherence_vs_teacher"] = r["adherence"] - rows[0]["adherence"]
        r["speedup"] = rows[0]["seconds_per_clip"] / r["seconds_per_clip"]
    adapter = pipe.fewstep and (f"shipped weights/{pipe.fewstep.path.name}" if pipe.fewstep.folder == defaults.WEIGHTS_DIR
                                else str(pipe.fewstep.path))
    return {"rows": rows, "clips": n, "adapter": adapter or None}


def fewstep_table(f: dict) -> list[str]:
    note = f"adapter {f['adapter']}" if f["adapter"] else "no few-step adapter in this model folder: plain Euler only"
    lines = [f"## (i) Few-step sampling: distilled vs the {f['rows'][0]['steps']}-step sampler ({f['clips']} seen "
             f"prompts, same seeds; {note})", "",
             "| sampler | steps | DiT passes | adherence | vs teacher (points) | s/clip | speed-up |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['sampler']} | {r['steps']} | {r.get('passes', '-')} | {r['adherence']:.1%} | "
              f"{100 * r['adherence_vs_teacher']:+.1f} | {r['seconds_per_clip']:.2f} | {r['speedup']:.2f}x |" for r in f["rows"]]
    return lines + ["", "s/clip: each sampler's clips one after the other, not interleaved (scoring included): on a busy "
                    "machine the load's drift lands in it, and the DiT passes are the fair cost.", ""]


def parity_line(p: dict) -> list[str]:
    verdict = "holds" if p["ok"] else "BROKEN"
    return [f"Parity check (issue 34): cinegen's pass within {p['tolerance']:.0%} of Wan's at every size: {verdict} "
            f"(slowest ratio {p['worst']:.2f}x).", ""]
