"""`make bench` section (j), batched serving (issue 34): jobs per hour of one render worker draining a queue of 8
jobs, one at a time (`cinegen serve --batch 1`) against in batches (`--batch N`), measured side by side in one run.

The worker is the server's own (server/worker.py): it claims from a SQLite job store, renders through the model's
backend, writes each job's MP4, thumbnail and spritesheet and marks it completed, so the numbers include what a
batch does not speed up (files, heartbeats). One worker object, its model loaded once (warm, as a serving worker
is); runs of the two settings alternate so that a busy machine's drift hits both; the median of each is reported.

    python -m cinegen.eval.bench_batch [--out BENCHMARKS.md] [--rounds 3]    # this section alone, others kept
"""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from cinegen import defaults

SECTION = "bench_batch"      # its markers in BENCHMARKS.md: a run of this section alone leaves the others as they are

MODEL = "cinegen-default"
PROMPTS = ("a large red ball bounces on a black background", "a small blue box moves left on a gray background",
           "a green triangle moves right on a white background", "a large yellow ball moves up on a black background",
           "a small red box bounces on a gray background", "a blue triangle moves down on a black background",
           "a large green box moves left on a white background", "a small yellow triangle bounces on a gray background")


def drain(worker, jobs: int, size: str, seconds: str) -> float:
    """Seconds for `worker` to render `jobs` text-to-video jobs queued at once, until the last is completed."""
    ids = [worker.store.create("bench", MODEL, PROMPTS[i % len(PROMPTS)], seconds, size, "create", {})["id"]
           for i in range(jobs)]
    start = time.perf_counter()
    while worker.run_once():
        pass
    took = time.perf_counter() - start
    failed = [v for v in ids if worker.store.get(v)["status"] != "completed"]
    if failed:
        raise RuntimeError(f"benchmark jobs did not complete: {[worker.store.get(v)['error_message'] for v in failed]}")
    return took


def batched_serving(model_dir: Path, jobs: int = 8, batch: int = defaults.BATCH, rounds: int = 3, steps: int = defaults.STEPS,
                    size: str = defaults.SIZE, seconds: str = f"{defaults.SECONDS:g}") -> dict:
    """Jobs per hour draining `jobs` queued jobs with batch 1 and with `batch`, `rounds` alternating runs each."""
    from cinegen.server.worker import Worker
    load = os.getloadavg()[0]                   # other work on the machine, which these numbers include
    data = Path(tempfile.mkdtemp(prefix="cinegen-bench-batch-"))
    try:
        worker = Worker(data, {MODEL: model_dir}, steps=steps, batch=batch, batch_wait=0.0)
        for b in (batch, 1):                    # warm-up: the model loaded, every prompt encoded, both batch shapes
            worker.batch = b
            drain(worker, min(jobs, batch if b > 1 else 1), size, seconds)
        runs: dict[int, list[float]] = {1: [], batch: []}
        for _ in range(rounds):
            for b in (1, batch):
                worker.batch = b
                runs[b].append(3600 * jobs / drain(worker, jobs, size, seconds))
    finally:
        shutil.rmtree(data, ignore_errors=True)
    median = {b: statistics.median(r) for b, r in runs.items()}
    return {"jobs": jobs, "batch": batch, "steps": steps, "size": size, "seconds": seconds, "rounds": rounds,
            "jobs_per_hour": {str(b): r for b, r in runs.items()}, "median": {str(b): m for b, m in median.items()},
            "speedup": median[batch] / median[1], "load": [load, os.getloadavg()[0]]}


def batched_serving_table(r: dict, goal: str) -> list[str]:
    """Section (j) as markdown lines (shared with bench_gpu); goal: issue 34's target on this kind of machine."""
    one, many = r["jobs_per_hour"]["1"], r["jobs_per_hour"][str(r["batch"])]
    load = r.get("load")
    return [f"<!-- {SECTION}:start -->",
            f"## (j) Batched serving: one render worker draining {r['jobs']} queued jobs, batch 1 vs batch {r['batch']}",
            "", f"Shipped model, text-to-video {r['size']} {r['seconds']} s at {r['steps']} steps, distinct prompts; the "
            "server's own worker (claims, heartbeats, MP4 + thumbnail + spritesheet per job), model loaded once, "
            f"{r['rounds']} runs of each setting alternating. Written by `make bench`; this section alone: "
            "`python -m cinegen.eval.bench_batch`. " + (f"The machine is shared: its 1-minute load average was "
                                                       f"{load[0]:.1f} before and {load[1]:.1f} after. " if load else "")
            + f"Goal (issue 34): {goal}.", "",
            "| worker | jobs / hour, each run | median | vs one at a time |", "|---|---|---|---|",
            f"| `--batch 1` (one at a time) | {', '.join(f'{x:.0f}' for x in one)} | {r['median']['1']:.0f} | 1.00x |",
            f"| `--batch {r['batch']}` | {', '.join(f'{x:.0f}' for x in many)} | {r['median'][str(r['batch'])]:.0f} | "
            f"{r['speedup']:.2f}x |", "",
            "Each run against the one-at-a-time run beside it: " + ", ".join(f"{b / a:.2f}x" for a, b in zip(one, many))
            + ".", "", f"Machine: {r['machine']}.", f"<!-- {SECTION}:end -->"]


def main(argv: list[str] | None = None) -> None:
    import argparse
    import json

    from cinegen.eval.sections import machine, replace_section
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--json", type=Path, default=Path("out/bench_batch.json"))
    ap.add_argument("--model", type=Path, default=defaults.WEIGHTS_DIR)
    ap.add_argument("--jobs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=defaults.BATCH)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    r = {**batched_serving(args.model, args.jobs, args.batch, args.rounds), "machine": machine()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=2))
    lines = batched_serving_table(r, "at least 1.5x on the CPU")
    replace_section(args.out, SECTION, lines)
    print("\n".join(lines))


if __name__ == "__main__":
    import sys
    main(sys.argv[1:])
