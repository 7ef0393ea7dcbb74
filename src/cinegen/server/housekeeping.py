"""The app process's background work: expiry (a finished video's files are deleted at expires_at; its object keeps
the status it finished with, as OpenAI's does, and /content answers 404 `expired`), garbage collection (uploads no
job reads any more, temp files of interrupted writes, output folders of deleted videos), the disk measure the quota
reads, and webhook delivery (webhooks.py). None of it runs in a worker, so a render never waits on a slow disk walk
or a slow webhook receiver."""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from pathlib import Path

from cinegen.server.store import JobStore
from cinegen.server.worker import remove_outputs

log = logging.getLogger(__name__)


def disk_usage(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:              # deleted while we walked
                pass
    return total


def collect(data_dir: Path, store: JobStore, max_age: float, now: float | None = None) -> list[Path]:
    """Expires old videos and deletes what nothing needs; returns the paths removed."""
    now = time.time() if now is None else now
    data_dir = Path(data_dir)
    removed = []
    for vid in store.expire(now):
        remove_outputs(data_dir, vid)
        removed.append(data_dir / "videos" / vid)
    store.prune_events(now - 7 * 24 * 3600)             # webhook retries end long before a week
    keep = store.referenced_files()
    for sub in ("uploads", "characters"):
        for p in (data_dir / sub).glob("*") if (data_dir / sub).is_dir() else ():
            if str(p) not in keep and _older(p, now, max_age) and (sub == "uploads" or p.name.startswith(".")):
                p.unlink(missing_ok=True)
                removed.append(p)
    videos = data_dir / "videos"
    if videos.is_dir():
        known = store.known_videos()
        for folder in videos.iterdir():
            # a video deleted (its folder left by a failed removal), or a worker's staging folder (".<id>.<x>.tmp",
            # still being written while young: a long encode may not touch it for minutes)
            age = max_age if folder.name.startswith(".") else 60.0
            if folder.name not in known and _older(folder, now, age):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
            elif folder.is_dir():
                for tmp in folder.glob(".*.tmp"):                           # an atomic write cut short by a kill
                    if _older(tmp, now, max_age):
                        tmp.unlink(missing_ok=True)
                        removed.append(tmp)
    return removed


def _older(path: Path, now: float, age: float) -> bool:
    try:
        return now - path.stat().st_mtime > age
    except OSError:
        return False


def background_threads(settings, store: JobStore, state, stop: threading.Event) -> list[threading.Thread]:
    """Starts housekeeping (and webhook delivery when a URL is configured); `state.disk_used` is kept current."""
    def housekeeping():
        while True:
            try:
                collect(settings.data_dir, store, settings.upload_max_age)
                state.disk_used = disk_usage(Path(settings.data_dir))
            except Exception:
                log.exception("housekeeping failed; trying again later")
            if stop.wait(settings.housekeeping_every):
                return
    threads = [threading.Thread(target=housekeeping, name="cinegen-housekeeping", daemon=True)]
    if settings.webhook_url:
        from cinegen.server.webhooks import Sender
        sender = Sender(store, settings.webhook_url, settings.webhook_secret)
        threads.append(threading.Thread(target=sender.run, args=(stop,), name="cinegen-webhooks", daemon=True))
    for t in threads:
        t.start()
    return threads
