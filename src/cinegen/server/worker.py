"""The render worker: claims jobs from the store, renders each as one typed request through the model's backend
(the same `generate(request, progress)` the CLI and the studio call), writes the MP4, thumbnail and spritesheet
atomically, then marks the job done. Every mode reports through the one progress callback, so every job sends
heartbeats and a deleted job stops within a sampling step; a lease keeper renews the claim between callbacks too
(while the model loads, while files are written), so a slow load never lets a second worker take the job.

Batching: a worker that claims a text-to-video job also claims up to `batch` - 1 compatible queued jobs (same
model, render size, seconds, steps: the backend's batch_key), in the store's round-robin order, waiting at most
`batch_wait` seconds for more, and renders them in one backend.generate_batch call. Each job keeps its own seed
(its frames are those it gets alone), warnings, progress, lease, files and webhook; a job deleted meanwhile is
dropped from what is written, and the batch stops once none is left. Backends that do not batch (Diffusers) and
every other mode render one job at a time.

A job asked at a size its model does not list renders at `render_size` and is resized to `size` (Lanczos);
an extension keeps the source's frames as they were and resizes only the new ones.

Run inside `cinegen serve` (it starts worker processes) or alone with `cinegen worker` against the same data
directory, as many as the machine holds.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen import defaults
from cinegen import requests as R
from cinegen.config import SampleConfig, parse_size
from cinegen.io.provenance import provenance_tags
from cinegen.server.store import JobStore, is_text_job

log = logging.getLogger(__name__)


Prepared = tuple[R.Request, list[str]]        # a job's request as its model renders it, and the job's warnings


class JobCancelled(Exception):
    """The job was deleted or taken back while rendering."""


class JobRequeued(Exception):
    """The worker is shutting down past its grace period: the job goes back to the queue."""


def video_dir(data_dir: Path, vid: str) -> Path:
    return Path(data_dir) / "videos" / vid


def sample_config(row: dict, steps: int) -> SampleConfig:
    w, h = parse_size(row.get("render_size") or row["size"])
    return SampleConfig(seconds=float(row["seconds"]), width=w, height=h, steps=steps,
                        seed=int.from_bytes(row["id"].encode()[-4:], "little"))


def public_message(e: Exception) -> str:
    """An error as a client may read it: no server filesystem path (uploads, the data directory)."""
    return re.sub(r"(?:[A-Za-z]:)?(?:/[^\s/'\"]+)+/?", "<file>", f"{type(e).__name__}: {e}")


class LeaseKeeper:
    """Renews the claims on a worker's jobs (one, or a batch) every `every` seconds from a thread until stopped;
    `lost(vid)` once a job is no longer this worker's (deleted, or requeued after a stall)."""

    def __init__(self, store: JobStore, vids: list[str], worker: str, every: float):
        self.held, self._lost = set(vids), set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, worker, every), daemon=True)

    def add(self, vids) -> None:
        with self._lock:
            self.held |= set(vids)

    def lost(self, vid: str) -> bool:
        with self._lock:
            return vid in self._lost

    def _run(self, store, worker, every):
        while not self._stop.wait(every):
            with self._lock:
                vids = self.held - self._lost
            try:
                kept = store.heartbeat_many(vids, worker)
            except Exception:                # a busy database: the next renewal tries again
                log.warning("lease renewal of %s failed", sorted(vids), exc_info=True)
                continue
            with self._lock:
                self._lost |= vids - kept

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


class Worker:
    def __init__(self, data_dir: Path, models: dict, steps: int = 20, worker_id: str | None = None,
                 stale_after: float = 60.0, database: str | None = None, batch: int = defaults.BATCH,
                 batch_wait: float = defaults.BATCH_WAIT):
        """data_dir: outputs (a shared filesystem when workers run on several machines); models: name ->
        what load_backend takes (a folder or a registry name); database: a postgresql:// URL for a shared queue,
        else the SQLite file data_dir/jobs.sqlite. batch: the most compatible jobs rendered in one batched call
        (1: one at a time); batch_wait: seconds to wait for more once a batch holds fewer."""
        if batch < 1 or batch_wait < 0:
            raise ValueError(f"batch must be at least 1 and batch_wait at least 0, got {batch} and {batch_wait}")
        self.data_dir = Path(data_dir)
        self.store = JobStore(database or self.data_dir / "jobs.sqlite", stale_after=stale_after)
        self.models, self.steps, self.batch, self.batch_wait = models, steps, batch, batch_wait
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_every = max(0.05, stale_after / 4)
        self.stop, self.abort = threading.Event(), threading.Event()   # stop: after this job; abort: requeue it now
        self._backends: dict = {}

    def backend(self, model: str):
        if model not in self._backends:
            from cinegen.backends import load_backend
            path = self.models[model]
            self._backends[model] = load_backend(str(path) if path is not None else None)
        return self._backends[model]

    def run_forever(self, poll: float = 0.5, stop=None) -> None:
        stop = stop or self.stop
        log.info("worker %s polling %s", self.worker_id, self.store.path)
        while not stop.is_set() and not self.abort.is_set():
            if not self.run_once():
                stop.wait(poll)

    def run_once(self) -> bool:
        """Claims the next job in fair order and renders it, in one batch with the compatible jobs queued behind
        it (up to `batch`) when its model batches; False when the queue is empty."""
        row = self.store.claim(self.worker_id)
        if row is None:
            return False
        with LeaseKeeper(self.store, [row["id"]], self.worker_id, self.lease_every) as lease:
            key, prepared = self._batch_key(row) if self.batch > 1 else (None, None)
            rows = [row] if key is None else self._gather(row, key, lease)
            if len(rows) == 1:
                self._run_job(row, lease, prepared)
            else:
                self._run_batch(rows, key, lease, {row["id"]: prepared})
        return True

    def _run_job(self, row: dict, lease: LeaseKeeper, prepared: Prepared | None = None) -> None:
        """Renders one job and delivers it; prepared: its request and warnings when already read (else here).
        A job cancelled meanwhile leaves nothing to remove: its files only ever exist staged, and publish moves
        them into place only while the job is still this worker's."""
        vid = row["id"]
        try:
            video, request = self.render(row, lease, prepared)
            self._deliver(row, request, video, lease)
        except JobCancelled:
            log.info("job %s cancelled", vid)
        except JobRequeued:
            log.info("job %s requeued (shutting down)", vid)
            self.store.requeue(self.worker_id, vid)
        except Exception as e:                   # a bad job must fail alone, never take the worker down
            log.exception("job %s failed", vid)
            self.store.finish(vid, self.worker_id, error=("render_failed", public_message(e)))

    def _deliver(self, row: dict, request: R.Request, video: np.ndarray, lease: LeaseKeeper, batch: int = 1) -> None:
        """Writes a rendered job's files and publishes them as it completes (dropped: it was deleted meanwhile);
        batch: the jobs its render call rendered."""
        vid, cfg = row["id"], request.sample
        tags = provenance_tags(row["model"], row["prompt"], cfg.seed, video_id=vid)
        self._check(vid, lease)
        self.publish(vid, self.write_outputs(vid, to_requested_size(row, request, video), cfg.fps, tags), batch)

    # --- batches ---

    def _batch_key(self, row: dict) -> tuple:
        """The backend's batch key of a job (loading its model, under the job's lease), or None: it renders alone;
        and the job prepared to read it (its render takes that, never preparing it twice), or None."""
        if not is_text_job(row):
            return None, None
        try:
            backend = self.backend(row.get("backend") or row["model"])
            prepared = self._prepare(backend, row)
            return backend.batch_key(prepared[0]), prepared
        except Exception:                # the job's own render reports the error (its model, its prompt)
            log.warning("job %s cannot batch", row["id"], exc_info=True)
            return None, None

    def _gather(self, row: dict, key, lease: LeaseKeeper) -> list[dict]:
        """`row` and up to batch - 1 compatible queued jobs, claimed in fair order; waits at most batch_wait
        seconds for more while the batch is short (never once the worker is stopping)."""
        rows, deadline = [row], time.monotonic() + self.batch_wait
        while True:
            more = self.store.claim_like(self.worker_id, row, self.batch - len(rows), accept=is_text_job)
            lease.add(r["id"] for r in more)
            rows += more
            left = deadline - time.monotonic()
            if len(rows) >= self.batch or left <= 0 or self.stop.is_set() or self.abort.is_set():
                return rows
            time.sleep(min(BATCH_POLL, left))

    def _run_batch(self, rows: list[dict], key, lease: LeaseKeeper, prepared: dict[str, Prepared]) -> None:
        """Renders jobs of one batch key in one backend call and delivers each alone: its own files, progress,
        warnings and completion. A job deleted meanwhile is left out of what is written; a batch that fails for
        any other reason is rendered again one job at a time, so a bad job fails alone. prepared: job id -> its
        request and warnings, for the jobs already prepared (the others are prepared here, each once)."""
        backend = self.backend(rows[0].get("backend") or rows[0]["model"])
        jobs, alone = [], []
        for row in rows:
            try:
                job = prepared.get(row["id"]) or self._prepare(backend, row)
                self.store.set_warnings(row["id"], self.worker_id, job[1])
            except Exception as e:
                log.exception("job %s failed", row["id"])
                self.store.finish(row["id"], self.worker_id, error=("render_failed", public_message(e)))
                continue
            (jobs if backend.batch_key(job[0]) == key else alone).append((row, job))
        alive = {row["id"] for row, _ in jobs}
        try:
            videos = backend.generate_batch([job[0] for _, job in jobs], progress=self._batch_progress(alive, lease)) \
                if jobs else []
        except JobRequeued:
            for vid in alive | {row["id"] for row, _ in alone}:
                self.store.requeue(self.worker_id, vid)
            log.info("batch of %d requeued (shutting down)", len(jobs))
            videos, alone = [], []
        except JobCancelled:
            videos = []
        except Exception:
            log.exception("batch of %d failed; rendering its jobs one at a time", len(jobs))
            videos, alone = [], [j for j in jobs if j[0]["id"] in alive] + alone
        for (row, job), video in zip(jobs, videos):
            if row["id"] not in alive:
                log.info("job %s cancelled", row["id"])
                continue
            try:
                self._deliver(row, job[0], video, lease, batch=len(jobs))
            except JobCancelled:               # nothing to remove: see _run_job
                log.info("job %s cancelled", row["id"])
            except Exception as e:
                log.exception("job %s failed", row["id"])
                self.store.finish(row["id"], self.worker_id, error=("render_failed", public_message(e)))
        for row, job in alone:
            self._run_job(row, lease, job)

    def _batch_progress(self, alive: set, lease: LeaseKeeper):
        """The batch's one progress callback as every job's heartbeat: a job deleted meanwhile leaves `alive` (its
        result is discarded); the render stops once none is left, or at once on a shutdown past its grace."""
        def callback(d):
            if self.abort.is_set():
                raise JobRequeued(sorted(alive))
            held = {vid for vid in alive if not lease.lost(vid)}
            alive.intersection_update(self.store.heartbeat_many(held, self.worker_id, percent(d)))
            if not alive:
                raise JobCancelled("every job of the batch")
        return callback

    def _check(self, vid: str, lease: LeaseKeeper, progress: int | None = None) -> None:
        if self.abort.is_set():
            raise JobRequeued(vid)
        if lease.lost(vid) or not self.store.heartbeat(vid, self.worker_id, progress):
            raise JobCancelled(vid)

    def _progress(self, vid: str, lease: LeaseKeeper):
        """The one progress callback as heartbeats: percent done; a deleted job (or a shutdown past its grace)
        raises, which stops the render within one sampling step."""
        def callback(d):
            self._check(vid, lease, percent(d))
        return callback

    def _prepare(self, backend, row: dict) -> Prepared:
        """The job's request as its model renders it, and the warnings the job shows while it renders."""
        request, notes = backend.prepare(job_request(row, self.steps), JOB_UNSET)
        return request, backend.warnings(request) + notes

    def render(self, row: dict, lease: LeaseKeeper | None = None,
               prepared: Prepared | None = None) -> tuple[np.ndarray, R.Request]:
        """The job's video as its model rendered it, and the request it was rendered from: the model's own
        defaults (fps, guidance, negative prompt) for what a job does not set, its duration on the model's frame
        grid. What the model cannot follow and what it changed are the job's warnings, shown while it renders.
        prepared: the job's request and warnings when already read (else read here)."""
        backend = self.backend(row.get("backend") or row["model"])
        request, warnings = prepared or self._prepare(backend, row)
        self.store.set_warnings(row["id"], self.worker_id, warnings)
        progress = self._progress(row["id"], lease) if lease is not None else None
        return backend.generate(request, progress=progress), request

    def write_outputs(self, vid: str, video: np.ndarray, fps: float, tags: dict) -> Path:
        """Writes the files into a hidden staging folder next to the job's own and returns it (publish moves it)."""
        import tempfile

        from cinegen.io.files import current_umask
        from cinegen.io.video import write_mp4
        folder = video_dir(self.data_dir, vid)
        folder.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{vid}.", suffix=".tmp"))
        try:
            os.chmod(staged, 0o777 & ~current_umask())         # mkdtemp's 0700 would hide it from the group
            write_mp4(video, staged / "video.mp4", fps, metadata=tags)
            write_still(video[len(video) // 2], staged / "thumbnail.webp", "WEBP")
            write_still(spritesheet(video), staged / "spritesheet.jpg", "JPEG")
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged

    def publish(self, vid: str, staged: Path, batch: int = 1) -> None:
        """Completes the job and moves its staged files into place in one store transaction: a DELETE committed
        before it leaves the job not ours (the files are dropped, never shown); one after it finds them in place
        and removes them before it answers. So once DELETE has answered no file of the job exists or appears.
        batch: the jobs rendered in the call that rendered this one (the store keeps it for start estimates)."""
        folder = video_dir(self.data_dir, vid)
        try:
            def move():
                shutil.rmtree(folder, ignore_errors=True)      # a leftover of an attempt killed mid-publish
                os.replace(staged, folder)
            try:
                if not self.store.finish(vid, self.worker_id, publish=move, batch=batch):
                    log.info("job %s was deleted while its files were written; dropped", vid)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)      # moved, then the commit failed: the job is not done
                raise
        finally:
            shutil.rmtree(staged, ignore_errors=True)         # gone once moved; dropped when not


JOB_UNSET = frozenset({"fps", "guidance", "negative_prompt"})     # SampleConfig fields a job never sets
BATCH_POLL = 0.05        # seconds between looks at the queue while a batch waits for more jobs


def percent(d: dict) -> int:
    """A progress dict as the percent a job shows while it renders (100 once it is completed)."""
    return min(99, int(100 * d["step"] / max(1, d["steps"])))


def to_requested_size(row: dict, request: R.Request, video: np.ndarray) -> np.ndarray:
    """Resizes a render to the job's size (Lanczos); an extension keeps its source's own frames."""
    from cinegen.modes import fit_video
    w, h = parse_size(row["size"])
    if isinstance(request, R.Extend):
        source = fit_video(request.video, w, h)
        return np.concatenate([source, fit_video(video[len(request.video):], w, h)])
    return fit_video(video, w, h)


def job_request(row: dict, steps: int) -> R.Request:
    """The typed request a stored job is."""
    from cinegen.io.video import read_image, read_video
    params, prompt, cfg, kind = json.loads(row["params"]), row["prompt"], sample_config(row, steps), row["kind"]
    if is_text_job(row):
        return R.Text(prompt=prompt, sample=cfg)
    if kind == "create":
        return R.Animate(prompt=prompt, image=read_image(params.get("input_reference") or params["character"]),
                         sample=cfg)
    source = read_video(params["source"])[0]
    if kind == "extend":
        return R.Extend(prompt=prompt, video=source, sample=replace(cfg, seconds=float(params["extra_seconds"])))
    if kind in ("remix", "edit"):
        return R.Edit(prompt=prompt, video=source, strength=float(params.get("strength", defaults.STRENGTH)), sample=cfg)
    raise ValueError(f"unknown job kind {kind!r}")


def spritesheet(video: np.ndarray, columns: int = 4, count: int = 8) -> np.ndarray:
    """`count` evenly spaced frames in a grid. (T, H, W, 3) -> (rows*H, columns*W, 3)."""
    idx = np.linspace(0, len(video) - 1, min(count, len(video))).round().astype(int)
    frames = list(video[idx]) + [np.zeros_like(video[0])] * (-len(idx) % columns)
    rows = [np.concatenate(frames[i:i + columns], axis=1) for i in range(0, len(frames), columns)]
    return np.concatenate(rows, axis=0)


def write_still(image: np.ndarray, path: Path, fmt: str) -> None:
    from PIL import Image

    from cinegen.io.files import atomic_write
    atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format=fmt))


def remove_outputs(data_dir: Path, vid: str) -> None:
    shutil.rmtree(video_dir(data_dir, vid), ignore_errors=True)
