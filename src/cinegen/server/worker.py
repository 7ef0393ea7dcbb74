"""The render worker: claims jobs from the store, renders each as one typed request through the model's backend
(the same `generate(request, progress)` the CLI and the studio call), writes the MP4, thumbnail and spritesheet
atomically, then marks the job done. Every mode reports through the one progress callback, so every job sends
heartbeats and a deleted job stops within a sampling step.

Run inside `cinegen serve` (it starts worker processes) or alone with `cinegen worker` against the same data
directory, as many as the machine holds.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import time
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


def video_dir(data_dir: Path, vid: str) -> Path:
    return Path(data_dir) / "videos" / vid


def sample_config(row: dict, steps: int) -> SampleConfig:
    w, h = parse_size(row["size"])
    return SampleConfig(seconds=float(row["seconds"]), width=w, height=h, steps=steps,
                        seed=int.from_bytes(row["id"].encode()[-4:], "little"))


class Worker:
    def __init__(self, data_dir: Path, models: dict[str, Path], steps: int = 20, worker_id: str | None = None,
                 stale_after: float = 60.0, database: str | None = None):
        """data_dir: outputs (a shared filesystem when workers run on several machines); database: a postgresql://
        URL for a shared queue, else the SQLite file data_dir/jobs.sqlite."""
        self.data_dir = Path(data_dir)
        self.store = JobStore(database or self.data_dir / "jobs.sqlite", stale_after=stale_after)
        self.models, self.steps = models, steps
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._backends: dict = {}

    def backend(self, model: str):
        if model not in self._backends:
            from cinegen.backends import load_backend
            self._backends[model] = load_backend(self.models[model])
        return self._backends[model]

    def run_forever(self, poll: float = 0.5, stop=None) -> None:
        log.info("worker %s polling %s", self.worker_id, self.store.path)
        while stop is None or not stop.is_set():
            if not self.run_once():
                time.sleep(poll)

    def run_once(self) -> bool:
        row = self.store.claim(self.worker_id)
        if row is None:
            return False
        try:
            video, cfg = self.render(row)
            tags = provenance_tags(row["model"], row["prompt"], cfg.seed, video_id=row["id"])
            self.write_outputs(row["id"], video, cfg.fps, tags)
            self.store.finish(row["id"], self.worker_id)
        except JobCancelled:
            log.info("job %s cancelled", row["id"])
        except Exception as e:                   # a bad job must fail alone, never take the worker down
            log.exception("job %s failed", row["id"])
            self.store.finish(row["id"], self.worker_id, error=("render_failed", f"{type(e).__name__}: {e}"))
        return True

    def _progress(self, vid: str):
        """The one progress callback as heartbeats: percent done, and a deleted job raises to stop the render."""
        def callback(d):
            if not self.store.heartbeat(vid, self.worker_id, min(99, int(100 * d["step"] / max(1, d["steps"])))):
                raise JobCancelled(vid)
        return callback

    def render(self, row: dict) -> tuple[np.ndarray, SampleConfig]:
        """The job's video and the settings it was rendered with: the model's own defaults (fps, guidance,
        negative prompt) for what a job does not set, its duration on the model's frame grid. What the model
        cannot follow and what it changed are the job's warnings, shown while it renders."""
        backend = self.backend(row["model"])
        request, notes = backend.prepare(job_request(row, self.steps), JOB_UNSET)
        self.store.set_warnings(row["id"], self.worker_id, backend.warnings(request) + notes)
        return backend.generate(request, progress=self._progress(row["id"])), request.sample

    def write_outputs(self, vid: str, video: np.ndarray, fps: float, tags: dict) -> None:
        from cinegen.io.video import write_mp4
        folder = video_dir(self.data_dir, vid)
        folder.mkdir(parents=True, exist_ok=True)
        write_mp4(video, folder / "video.mp4", fps, metadata=tags)
        write_still(video[len(video) // 2], folder / "thumbnail.webp", "WEBP")
        write_still(spritesheet(video), folder / "spritesheet.jpg", "JPEG")


JOB_UNSET = frozenset({"fps", "guidance", "negative_prompt"})     # SampleConfig fields a job never sets


def job_request(row: dict, steps: int) -> R.Request:
    """The typed request a stored job is."""
    import json

    from cinegen.io.video import read_image, read_video
    params, prompt, cfg, kind = json.loads(row["params"]), row["prompt"], sample_config(row, steps), row["kind"]
    if kind == "create" and params.get("input_reference"):
        return R.Animate(prompt=prompt, image=read_image(params["input_reference"]), sample=cfg)
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
