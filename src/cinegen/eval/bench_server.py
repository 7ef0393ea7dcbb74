"""The service under load, measured end to end against real `cinegen serve` processes on loopback, written to its
own section of BENCHMARKS.md (the rest of the file is left as it is):

  - throughput: jobs per minute with 1 and with 2 render workers (same jobs, same model, warm workers; runs of the
    two alternate, so a busy machine's drift hits both; the ratio is what a second worker buys here);
  - status polls: p50 / p99 latency of GET /v1/videos/{id} with 200 requests in flight at once (a minimal asyncio
    HTTP client, so the load generator's own CPU, reported with the server's, is a small part of what is timed);
  - recovery: a worker SIGKILLed mid-job: seconds until its job is back in the queue, rendering again on the
    replacement worker, and completed.

    python -m cinegen.eval.bench_server [--out BENCHMARKS.md] [--jobs 6] [--steps 8] [--model FOLDER] [--resume]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

START, END = "<!-- bench_server:start -->", "<!-- bench_server:end -->"
BODY = {"prompt": "a large red ball bounces on a black background", "model": "cinegen-default", "size": "64x64",
        "seconds": "2"}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(workers: int, steps: int, model: Path | None):
    """A `cinegen serve` process on a free loopback port with its own data dir; yields (url, data_dir, process)."""
    import httpx
    data = Path(tempfile.mkdtemp(prefix="cinegen-bench-"))
    port = _free_port()
    cmd = [sys.executable, "-m", "cinegen.cli", "serve", "--port", str(port), "--data-dir", str(data), "--workers",
           str(workers), "--steps", str(steps), "--rate-limit", "1e9", "--max-active-jobs", "100000", "--grace", "5"]
    if model is not None:
        cmd += ["--model", f"cinegen-default={model}"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if httpx.get(url + "/v1/videos", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        yield url, data, proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _submit(url: str, n: int) -> list[str]:
    import httpx
    return [httpx.post(url + "/v1/videos", json=BODY, timeout=30).json()["id"] for _ in range(n)]


def _wait_done(url: str, ids: list[str], timeout: float = 1800) -> float:
    import httpx
    deadline = time.time() + timeout
    while time.time() < deadline:
        states = [httpx.get(f"{url}/v1/videos/{v}", timeout=30).json()["status"] for v in ids]
        if all(s in ("completed", "failed") for s in states):
            if "failed" in states:
                raise RuntimeError(f"a benchmark job failed: {states}")
            return time.time()
        time.sleep(0.2)
    raise TimeoutError(f"jobs not done after {timeout}s")


def throughput(workers: int, jobs: int, steps: int, model: Path | None) -> dict:
    """Jobs per minute once every worker has its model loaded (one warm-up job per worker first)."""
    with serve(workers, steps, model) as (url, _, _):
        _wait_done(url, _submit(url, workers))
        start = time.time()
        ids = _submit(url, jobs)
        end = _wait_done(url, ids)
    return {"workers": workers, "jobs": jobs, "seconds": end - start, "jobs_per_minute": 60 * jobs / (end - start)}


def polls(concurrency: int = 200, total: int = 4000) -> dict:
    """Latency of status polls with `concurrency` requests in flight (no workers: the app alone is measured).
    The load comes from a minimal HTTP/1.1 client on asyncio streams (one kept-alive connection per lane), and its
    CPU time is reported next to the server's: the load generator shares this machine's cores, and httpx's async
    client, used before, spent about three times the server's CPU per request, so the tail it measured was mostly
    its own."""
    with serve(0, 1, None) as (url, _, proc):
        import psutil
        ids = _submit(url, 50)
        server, me = psutil.Process(proc.pid), psutil.Process()
        cpu = [sum(server.cpu_times()[:2]), sum(me.cpu_times()[:2])]
        latencies, wall, resent = asyncio.run(_poll_load(url, ids, concurrency, total))
        cpu = [sum(server.cpu_times()[:2]) - cpu[0], sum(me.cpu_times()[:2]) - cpu[1]]
    q = statistics.quantiles(latencies, n=100)
    return {"concurrency": concurrency, "requests": total, "p50_ms": 1000 * q[49], "p99_ms": 1000 * q[98],
            "requests_per_second": total / wall, "resent": resent, "server_cpu_ms_per_request": 1000 * cpu[0] / total,
            "client_cpu_ms_per_request": 1000 * cpu[1] / total}


async def _poll_load(url: str, ids: list[str], concurrency: int, total: int) -> tuple[list[float], float, int]:
    """`concurrency` lanes, each a kept-alive connection sending GET /v1/videos/{id} one after another, until
    `total` answers (each must be 200). A connection the server closed is opened again and the request resent."""
    host, port = url.split("//", 1)[1].split(":")
    latencies: list[float] = []
    resent = [0]
    jobs = iter(range(total))

    async def lane():
        reader = writer = None
        for i in jobs:
            request = f"GET /v1/videos/{ids[i % len(ids)]} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
            t = time.perf_counter()
            for attempt in range(3):
                try:
                    if writer is None:
                        reader, writer = await asyncio.open_connection(host, int(port))
                    writer.write(request)
                    head = await reader.readuntil(b"\r\n\r\n")
                    break
                except (ConnectionError, asyncio.IncompleteReadError):
                    resent[0] += 1
                    writer = None
                    if attempt == 2:
                        raise
            status = int(head.split(b" ", 2)[1])
            length = next(int(h.split(b":", 1)[1]) for h in head.lower().split(b"\r\n") if h.startswith(b"content-length:"))
            await reader.readexactly(length)
            if status != 200:
                raise RuntimeError(f"a status poll answered {status}")
            latencies.append(time.perf_counter() - t)
        if writer is not None:
            writer.close()
    start = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start, resent[0]


def recovery(steps: int, model: Path | None) -> dict:
    """SIGKILL the worker rendering a job; time until the job is requeued, rendering again, and completed."""
    import psutil

    from cinegen.server.store import JobStore
    with serve(1, steps, model) as (url, data, proc):
        _wait_done(url, _submit(url, 1))                          # the worker is warm
        vid = _submit(url, 1)[0]
        store = JobStore(data / "jobs.sqlite")
        while not (store.get(vid)["status"] == "in_progress" and store.get(vid)["progress"] > 0):
            time.sleep(0.02)
        first = store.get(vid)["claimed_by"]
        victim = next(p for p in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(p.cmdline()))
        os.kill(victim.pid, signal.SIGKILL)
        killed = time.time()
        requeued = rendering = None
        while store.get(vid)["status"] != "completed":
            row = store.get(vid)
            if requeued is None and row["claimed_by"] != first:
                requeued = time.time()
            if rendering is None and row["claimed_by"] not in (None, first) and row["progress"] > 0:
                rendering = time.time()
            if time.time() - killed > 600:
                raise TimeoutError("the killed worker's job never completed")
            time.sleep(0.02)
        done = time.time()
    return {"requeued_s": (requeued or done) - killed, "rendering_again_s": (rendering or done) - killed,
            "completed_s": done - killed}


def markdown(r: dict) -> list[str]:
    runs = {w: [t["jobs_per_minute"] for t in r["throughput"] if t["workers"] == w] for w in (1, 2)}
    base = statistics.median(runs[1])
    p, rec = r["polls"], r["recovery"]
    return [START, "## (s) The service under load (`python -m cinegen.eval.bench_server`)", "",
            f"Machine: {r['machine']}. Real `cinegen serve` processes on loopback, shipped model, jobs of "
            f"{BODY['size']} {BODY['seconds']} s at {r['steps']} steps; each worker process runs torch on one thread "
            "(OMP_NUM_THREADS=1); workers warm "
            "(model loaded) before timing. "
            "The machine is shared: its 1-minute load average before and after each part was "
            + ", ".join(f"{k} {a:.1f} -> {b:.1f}" for k, (a, b) in r.get("load", {}).items()) + ".", "",
            f"Throughput: {r['throughput'][0]['jobs']} jobs per run, 1- and 2-worker runs alternating.", "",
            "| render workers | jobs / minute, each run | median | vs 1 worker |", "|---|---|---|---|",
            *(f"| {w} | {', '.join(f'{x:.2f}' for x in runs[w])} | {statistics.median(runs[w]):.2f} | "
              f"{statistics.median(runs[w]) / base:.2f}x |" for w in (1, 2)), "",
            f"Status polls (GET /v1/videos/{{id}}, {p['concurrency']} in flight on kept-alive connections, "
            f"{p['requests']} requests, no workers): p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, "
            f"{p['requests_per_second']:.0f} requests/s; CPU per request: server "
            f"{p.get('server_cpu_ms_per_request', float('nan')):.2f} ms, load generator "
            f"{p.get('client_cpu_ms_per_request', float('nan')):.2f} ms (same machine) "
            f"({p['resent']} requests resent after the server closed a kept-alive connection; their latency "
            "includes the resend).", "",
            f"Recovery after `kill -9` of the worker rendering a job (1 worker): back in the queue after "
            f"{rec['requeued_s']:.2f} s, rendering again on the replacement after {rec['rendering_again_s']:.1f} s "
            f"(a new process loads the model), completed after {rec['completed_s']:.1f} s.", "", END]


def write_section(out: Path, lines: list[str]) -> None:
    """Replaces this tool's section of `out` (between its markers), or appends it."""
    from cinegen.eval.sections import replace_section
    replace_section(out, "bench_server", lines)


def main(argv: list[str] | None = None) -> None:
    from cinegen.eval.bench import machine
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("BENCHMARKS.md"))
    ap.add_argument("--jobs", type=int, default=6)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2, help="1- and 2-worker runs alternate this many times (a busy "
                    "machine's drift hits both); the table gives each run and the median")
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--json", type=Path, default=Path("out/bench_server.json"),
                    help="raw numbers, written after each part; parts already there are kept with --resume")
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args(argv)
    r = json.loads(args.json.read_text()) if args.resume and args.json.exists() else {}
    r.update(machine=machine(), steps=args.steps)
    parts = {"throughput": lambda: [throughput(w, args.jobs, args.steps, args.model)
                                    for _ in range(args.rounds) for w in (1, 2)],
             "polls": polls, "recovery": lambda: recovery(args.steps, args.model)}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    for name, part in parts.items():
        if name not in r:
            load = os.getloadavg()[0]                 # other work on the machine, which these numbers include
            r[name] = part()
            r.setdefault("load", {})[name] = [load, os.getloadavg()[0]]
            args.json.write_text(json.dumps(r, indent=2))
    write_section(args.out, markdown(r))
    print("\n".join(markdown(r)))


if __name__ == "__main__":
    main(sys.argv[1:])
