"""The render worker: claims jobs from the store, renders each as one typed request through the model's backend
(the same `generate(request, progress)` the CLI and the studio call), writes the MP4, thumbnail and spritesheet
atomically, then marks the job done. Every mode reports through the one progress callback, so every job sends
heartbeats and a deleted job stops within a sampling step; a lease keeper renews the claim between callbacks too
(while the model loads, while files are written), so a slow load never lets a second worker take the job.

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
from dataclasses import replace
from pathlib import Path

import numpy as np

from cinegen import defaults
from cinegen import requests as R
from cinegen.config import SampleConfig, parse_size
from cinegen.io.provenance import provenance_tags
from cinegen.server.store import JobStore

log = logging.getLogger(__name__)


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
    """Renews a job's claim every `every` seconds from a thread until stopped; `lost` once the job is no longer
    this worker's (deleted, or requeued after a stall)."""

    def __init__(self, store: JobStore, vid: str, worker: str, every: float):
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(store, vid, worker, every), daemon=True)

    def _run(self, store, vid, worker, every):
        while not self._stop.wait(every):
            try:
                if not store.heartbeat(vid, worker):
                    self.lost.set()
                    return
            except Exception:                # a busy database: the next renewal tries again
                log.warning("lease renewal of %s failed", vid, exc_info=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


class Worker:
    def __init__(self, data_dir: Path, models: dict, steps: int = 20, worker_id: str | None = None,
                 stale_after: float = 60.0, database: str | None = None):
        """data_dir: outputs (a shared filesystem when workers run on several machines); models: name ->
        what load_backend takes (a folder or a registry name); database: a postgresql:// URL for a shared queue,
        else the SQLite file data_dir/jobs.sqlite."""
        self.data_dir = Path(data_dir)
        self.store = JobStore(database or self.data_dir / "jobs.sqlite", stale_after=stale_after)
        self.models, self.steps = models, steps
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
        row = self.store.claim(self.worker_id)
        if row is None:
            return False
        vid = row["id"]
        with LeaseKeeper(self.store, vid, self.worker_id, self.lease_every) as lease:
            try:
                video, cfg = self.render(row, lease)
                tags = provenance_tags(row["model"], row["prompt"], cfg.seed, video_id=vid)
                self._check(vid, lease)
                self.publish(vid, self.write_outputs(vid, video, cfg.fps, tags))
            except JobCancelled:
                log.info("job %s cancelled", vid)
                remove_outputs(self.data_dir, vid)
            except JobRequeued:
                log.info("job %s requeued (shutting down)", vid)
                self.store.requeue(self.worker_id, vid)
            except Exception as e:                   # a bad job must fail alone, never take the worker down
                log.exception("job %s failed", vid)
                self.store.finish(vid, self.worker_id, error=("render_failed", public_message(e)))
        return True

    def _check(self, vid: str, lease: LeaseKeeper, progress: int | None = None) -> None:
        if self.abort.is_set():
            raise JobRequeued(vid)
        if lease.lost.is_set() or not self.store.heartbeat(vid, self.worker_id, progress):
            raise JobCancelled(vid)

    def _progress(self, vid: str, lease: LeaseKeeper):
        """The one progress callback as heartbeats: percent done; a deleted job (or a shutdown past its grace)
        raises, which stops the render within one sampling step."""
        def callback(d):
            self._check(vid, lease, min(99, int(100 * d["step"] / max(1, d["steps"]))))
        return callback

    def render(self, row: dict, lease: LeaseKeeper | None = None) -> tuple[np.ndarray, SampleConfig]:
        """The job's video at its requested size, and the settings it was rendered with: the model's own defaults
        (fps, guidance, negative prompt) for what a job does not set, its duration on the model's frame grid. What
        the model cannot follow and what it changed are the job's warnings, shown while it renders."""
        backend = self.backend(row.get("backend") or row["model"])
        request, notes = backend.prepare(job_request(row, self.steps), JOB_UNSET)
        self.store.set_warnings(row["id"], self.worker_id, backend.warnings(request) + notes)
        progress = self._progress(row["id"], lease) if lease is not None else None
        video = backend.generate(request, progress=progress)
        return to_requested_size(row, request, video), request.sample

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

    def publish(self, vid: str, staged: Path) -> None:
        """Completes the job and moves its staged files into place in one store transaction: a DELETE committed
        before it leaves the job not ours (the files are dropped, never shown); one after it finds them in place
        and removes them before it answers. So once DELETE has answered no file of the job exists or appears."""
        folder = video_dir(self.data_dir, vid)
        try:
            def move():
                shutil.rmtree(folder, ignore_errors=True)      # a leftover of an attempt killed mid-publish
                os.replace(staged, folder)
            try:
                if not self.store.finish(vid, self.worker_id, publish=move):
                    log.info("job %s was deleted while its files were written; dropped", vid)
            except BaseException:
                shutil.rmtree(folder, ignore_errors=True)      # moved, then the commit failed: the job is not done
                raise
        finally:
            shutil.rmtree(staged, ignore_errors=True)         # gone once moved; dropped when not


JOB_UNSET = frozenset({"fps", "guidance", "negative_prompt"})     # SampleConfig fields a job never sets


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
    still = params.get("input_reference") or params.get("character")
    if kind == "create" and still:
        return R.Animate(prompt=prompt, image=read_image(still), sample=cfg)
    if kind == "create":
        return R.Text(prompt=prompt, sample=cfg)
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
