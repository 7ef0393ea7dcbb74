"""Persistent job store: SQLite in WAL mode (default, zero setup: one server and several worker processes on one
machine) or PostgreSQL (several machines share one queue; claims use FOR UPDATE SKIP LOCKED).

A job row is the Video object plus what the worker needs (kind, params, input file). A claim is a lease: one
atomic UPDATE ... RETURNING takes a queued job, and the worker renews it (heartbeat) while it loads the model and
renders; a job whose lease is older than `stale_after` seconds (its worker died) goes back to the queue, and a
supervisor that sees its worker die releases the job at once. Claims go round-robin across owners (API keys): the
next job is the oldest of the owner with the fewest jobs rendering and the longest wait since its last start, so
one key's burst cannot starve another's lone job; a worker batching jobs claims the rest of its batch in
that same order (claim_like). Nothing is lost on a crash: the row is the truth and output
files are written atomically before the row says "completed". Finished jobs leave an event row (the webhook
outbox) in the same transaction.
"""

from __future__ import annotations

import heapq
import json
import secrets
import sqlite3
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Hashable, NamedTuple

from cinegen import defaults

SCHEMA = """
CREATE TABLE IF NOT EXISTS videos (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    status TEXT NOT NULL,
    progress INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    completed_at INTEGER,
    expires_at INTEGER,
    model TEXT NOT NULL,
    prompt TEXT,
    seconds TEXT NOT NULL,
    size TEXT NOT NULL,
    remixed_from_video_id TEXT,
    error_code TEXT,
    error_message TEXT,
    kind TEXT NOT NULL,
    params TEXT NOT NULL,
    seq INTEGER NOT NULL,
    claimed_by TEXT,
    heartbeat DOUBLE PRECISION
);
CREATE TABLE IF NOT EXISTS characters (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY,
    type TEXT NOT NULL,
    video_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt DOUBLE PRECISION NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0,
    last_error TEXT
);
CREATE INDEX IF NOT EXISTS videos_owner_seq ON videos (owner, seq);
CREATE INDEX IF NOT EXISTS videos_status_seq ON videos (status, seq);
"""
# columns added after the first release: (name, SQL type); opening an older store adds them
ADDED_COLUMNS = (("backend", "TEXT"), ("render_size", "TEXT"), ("started_at", "DOUBLE PRECISION"),
                 ("attempts", "INTEGER NOT NULL DEFAULT 0"), ("batch_size", "INTEGER"))
VIDEO_FIELDS = ("id", "created_at", "completed_at", "expires_at", "model", "progress", "prompt", "remixed_from_video_id",
                "seconds", "size", "status")


def new_video_id() -> str:
    return "video_" + secrets.token_hex(16)


class _SQLite:
    """Embedded default: zero setup. BEGIN IMMEDIATE serialises writers, so claiming needs no row locks."""

    placeholder = "?"
    claim_lock = ""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        setup = sqlite3.connect(self.path, timeout=30)
        try:
            setup.execute("PRAGMA journal_mode=WAL")   # readers never block the writer: the API stays responsive
            setup.executescript(SCHEMA)
            have = {r[1] for r in setup.execute("PRAGMA table_info(videos)")}
            for name, kind in ADDED_COLUMNS:
                if name not in have:
                    setup.execute(f"ALTER TABLE videos ADD COLUMN {name} {kind}")
        finally:
            setup.close()

    def connect(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def transaction(self, conn, write: bool = True):
        conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")      # WAL: a read takes no lock a writer waits on
        try:
            yield conn
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


class _Postgres:
    """Scale-out: workers on many machines share one queue; SKIP LOCKED lets each claim a different job."""

    placeholder = "%s"
    claim_lock = " FOR UPDATE SKIP LOCKED"

    def __init__(self, url: str):
        from cinegen.extras import require
        psycopg = require("psycopg", "server", "a PostgreSQL queue (--database postgresql://...)")
        self.url, self.psycopg = url, psycopg
        with psycopg.connect(url, autocommit=True) as conn:
            for stmt in filter(str.strip, SCHEMA.split(";")):
                conn.execute(stmt.replace("seq INTEGER", "seq BIGINT"))
            # stores made before this fix hold heartbeats as REAL, which PostgreSQL keeps in 4 bytes: epoch seconds
            # rounded to 128 s, so a job claimed a moment ago could look a minute stale and be claimed again
            conn.execute("ALTER TABLE videos ALTER COLUMN heartbeat TYPE DOUBLE PRECISION")
            for name, kind in ADDED_COLUMNS:
                conn.execute(f"ALTER TABLE videos ADD COLUMN IF NOT EXISTS {name} {kind}")

    def connect(self):
        from psycopg.rows import dict_row
        return self.psycopg.connect(self.url, autocommit=True, row_factory=dict_row)

    @contextmanager
    def transaction(self, conn, write: bool = True):
        with conn.transaction():
            yield conn


class _Cursor:
    """Runs the store's `?`-style SQL on either backend."""

    def __init__(self, conn, placeholder: str):
        self.conn, self.placeholder = conn, placeholder

    def execute(self, sql: str, args=()):
        return self.conn.execute(sql.replace("?", self.placeholder), args)


class JobStore:
    """Jobs in SQLite (a path, the default) or PostgreSQL (a postgresql:// URL)."""

    def __init__(self, location: Path | str, stale_after: float = 60.0):
        self.path = location
        self.db = _Postgres(str(location)) if str(location).startswith(("postgresql://", "postgres://")) else _SQLite(location)
        self.stale_after = stale_after
        self._local = threading.local()

    @contextmanager
    def _conn(self, write: bool = True):
        """One connection per thread; each `with` is one transaction (write=False: a read, which in SQLite's WAL
        mode neither waits for the writer nor holds it up)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.db.connect()
        with self.db.transaction(conn, write):
            yield _Cursor(conn, self.db.placeholder)


    # --- API side ---

    def create(self, owner: str, model: str, prompt: str, seconds: str, size: str, kind: str, params: dict,
               remixed_from: str | None = None, ttl: int = 7 * 24 * 3600, backend: str | None = None,
               render_size: str | None = None) -> dict:
        """model: the name the client asked for (the video object echoes it); backend: the local model that renders
        it (default: the same name); render_size: the size it renders at before resizing to `size`."""
        now = int(time.time())
        vid = new_video_id()
        seq = time.time_ns()            # creation order; unique in practice and needs no cross-writer counter
        with self._conn() as c:
            c.execute("INSERT INTO videos (id, owner, status, progress, created_at, expires_at, model, prompt, seconds, size,"
                      " remixed_from_video_id, kind, params, seq, backend, render_size) "
                      "VALUES (?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (vid, owner, now, now + ttl, model, prompt, seconds, size, remixed_from, kind, json.dumps(params), seq,
                       backend or model, render_size or size))
        return self.get(vid, owner)

    def get(self, vid: str, owner: str | None = None) -> dict | None:
        with self._conn(write=False) as c:
            row = c.execute("SELECT * FROM videos WHERE id = ?", (vid,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return dict(row)

    def list(self, owner: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        """Cursor pagination by insertion order (seq); `after` is a video id from the previous page."""
        desc = order == "desc"
        with self._conn(write=False) as c:
            cursor_seq = None
            if after:
                row = c.execute("SELECT seq FROM videos WHERE id = ? AND owner = ?", (after, owner)).fetchone()
                if row is None:
                    raise KeyError(after)
                cursor_seq = row["seq"]
            where, args = "owner = ?", [owner]
            if cursor_seq is not None:
                where += " AND seq < ?" if desc else " AND seq > ?"
                args.append(cursor_seq)
            rows = c.execute(f"SELECT * FROM videos WHERE {where} ORDER BY seq {'DESC' if desc else 'ASC'} LIMIT ?",
                             (*args, limit + 1)).fetchall()
        return [dict(r) for r in rows[:limit]], len(rows) > limit

    def delete(self, vid: str, owner: str) -> bool:
        with self._conn() as c:
            return c.execute("DELETE FROM videos WHERE id = ? AND owner = ?", (vid, owner)).rowcount > 0

    def active_jobs(self, owner: str) -> int:
        """Queued and rendering jobs of one owner (its concurrent-job limit counts these)."""
        with self._conn(write=False) as c:
            return c.execute("SELECT COUNT(*) AS n FROM videos WHERE owner = ? AND status IN ('queued', 'in_progress')",
                             (owner,)).fetchone()["n"]

    def dependents(self, vid: str) -> list[dict]:
        """Queued jobs whose source is this video (remixes, extensions, edits by id)."""
        with self._conn(write=False) as c:
            return [dict(r) for r in c.execute("SELECT * FROM videos WHERE remixed_from_video_id = ? AND status = 'queued'",
                                               (vid,)).fetchall()]

    def queue_position(self, row: dict) -> int:
        return self.queue_state().position(row["owner"], row["seq"])

    def queue_state(self, recent: int = 20) -> "QueueState":
        """What queue places and start estimates are computed from, read in one transaction."""
        with self._conn(write=False) as c:
            queued = [Queued(r["owner"], r["seq"], like_key(dict(r))) for r in c.execute(
                "SELECT owner, seq, kind, params, seconds, COALESCE(backend, model) AS backend, "
                "COALESCE(render_size, size) AS render_size FROM videos WHERE status = 'queued' ORDER BY seq "
                "LIMIT 10000").fetchall()]
            owners = {r["owner"]: (int(r["n"] or 0), r["last"] or 0.0) for r in c.execute(
                "SELECT owner, SUM(CASE WHEN status = 'in_progress' THEN 1 ELSE 0 END) AS n, MAX(started_at) AS last "
                "FROM videos GROUP BY owner").fetchall()}
            rendering = [(r["since"] or time.time(), int(r["n"])) for r in c.execute(
                "SELECT MIN(started_at) AS since, COUNT(*) AS n FROM videos WHERE status = 'in_progress' "
                "GROUP BY claimed_by").fetchall()]
            alone = [max(0.0, r["d"]) / batch_cost(r["k"] or 1) for r in c.execute(
                "SELECT completed_at - started_at AS d, batch_size AS k FROM videos WHERE status = 'completed' AND "
                "started_at IS NOT NULL ORDER BY completed_at DESC LIMIT ?", (recent,)).fetchall()]
        return QueueState(queued, owners, rendering, sum(alone) / len(alone) if alone else None)

    def recent_duration(self, jobs: int = 20) -> float | None:
        """Mean seconds from claim to completion of the last `jobs` completed jobs, each as if it had rendered
        alone (a batched job's time over its batch's cost); None before the first."""
        return self.queue_state(jobs).duration

    def rendering(self) -> list[dict]:
        with self._conn(write=False) as c:
            return [dict(r) for r in c.execute("SELECT * FROM videos WHERE status = 'in_progress'").fetchall()]

    # --- characters ---

    def create_character(self, owner: str, name: str, path: str) -> dict:
        cid = "char_" + secrets.token_hex(16)
        with self._conn() as c:
            c.execute("INSERT INTO characters (id, owner, name, created_at, path) VALUES (?, ?, ?, ?, ?)",
                      (cid, owner, name, int(time.time()), path))
        return self.get_character(cid, owner)

    def get_character(self, cid: str, owner: str) -> dict | None:
        with self._conn(write=False) as c:
            row = c.execute("SELECT * FROM characters WHERE id = ? AND owner = ?", (cid, owner)).fetchone()
        return dict(row) if row else None

    # --- worker side ---

    def claim(self, worker: str) -> dict | None:
        """Atomically takes the next queued job, round-robin across owners (requeueing stale ones first)."""
        now = time.time()
        with self._conn() as c:
            c.execute("UPDATE videos SET status = 'queued', claimed_by = NULL WHERE status = 'in_progress' AND heartbeat < ?",
                      (now - self.stale_after,))
            row = self._claim_next(c, worker, now)
        return dict(row) if row else None

    def claim_like(self, worker: str, like: dict, n: int, accept=lambda row: True) -> list[dict]:
        """Up to n more queued jobs to render in one batch with `like` (a job this worker holds): the same model,
        render size, seconds and kind, and taken by `accept(row)`; claimed one by one in the round-robin order of
        `claim`, all in one transaction (each a lease, as claim's)."""
        if n <= 0:
            return []
        now, taken = time.time(), []
        with self._conn() as c:
            rows = c.execute("SELECT * FROM videos WHERE status = 'queued' AND COALESCE(backend, model) = ? AND "
                             "COALESCE(render_size, size) = ? AND seconds = ? AND kind = ? ORDER BY seq LIMIT 1000"
                             f"{self.db.claim_lock}", (like.get("backend") or like["model"],
                                                        like.get("render_size") or like["size"], like["seconds"],
                                                        like["kind"])).fetchall()
            ids = [r["id"] for r in rows if accept(dict(r))]
            while ids and len(taken) < n:
                # a later claim starts a moment later, so owners tied on jobs rendering take turns by their last start
                row = self._claim_next(c, worker, now + 1e-6 * (len(taken) + 1), ids)
                if row is None:
                    break
                taken.append(dict(row))
                ids.remove(row["id"])
        return taken

    def _claim_next(self, c, worker: str, now: float, among: list[str] | None = None):
        """Claims the queued job (of `among`, when given) that round-robin across owners takes next: the oldest of
        the owner with the fewest jobs rendering and the longest wait since its last start."""
        within = "" if among is None else f" AND q.id IN ({', '.join('?' * len(among))})"
        return c.execute(
            "UPDATE videos SET status = 'in_progress', claimed_by = ?, heartbeat = ?, started_at = ?, progress = 0, "
            f"attempts = attempts + 1 WHERE id = (SELECT q.id FROM videos q WHERE q.status = 'queued'{within} ORDER BY "
            "(SELECT COUNT(*) FROM videos r WHERE r.owner = q.owner AND r.status = 'in_progress'), "
            "COALESCE((SELECT MAX(s.started_at) FROM videos s WHERE s.owner = q.owner), 0), q.seq LIMIT 1"
            f"{self.db.claim_lock}) RETURNING *", (worker, now, now, *(among or ()))).fetchone()

    def heartbeat(self, vid: str, worker: str, progress: int | None = None) -> bool:
        """Renews the lease (and records progress); False when the job is no longer this worker's (deleted or
        requeued)."""
        return vid in self.heartbeat_many([vid], worker, progress)

    def heartbeat_many(self, vids, worker: str, progress: int | None = None) -> set[str]:
        """Renews the leases of several jobs (a batch) in one transaction, recording `progress` for each; returns
        the ids that are still this worker's."""
        vids = list(vids)
        if not vids:
            return set()
        keep = "progress" if progress is None else "?"
        with self._conn() as c:
            rows = c.execute(f"UPDATE videos SET progress = {keep}, heartbeat = ? WHERE id IN "
                             f"({', '.join('?' * len(vids))}) AND claimed_by = ? AND status = 'in_progress' RETURNING id",
                             (*([] if progress is None else [progress]), time.time(), *vids, worker)).fetchall()
        return {r["id"] for r in rows}

    def set_warnings(self, vid: str, worker: str, warnings: list[str]) -> bool:
        """Keeps the model's warnings about the job's prompt (backend.warnings) in its params, where video_object
        finds them: no column of their own, so stores made before them need no migration."""
        with self._conn() as c:
            row = c.execute("SELECT params FROM videos WHERE id = ? AND claimed_by = ?", (vid, worker)).fetchone()
            if row is None:
                return False
            params = {**json.loads(row["params"]), "warnings": list(warnings)}
            return c.execute("UPDATE videos SET params = ? WHERE id = ? AND claimed_by = ?",
                             (json.dumps(params), vid, worker)).rowcount > 0

    def requeue(self, worker: str, vid: str | None = None) -> int:
        """Gives a worker's job (or all its jobs: it died) back to the queue; returns how many."""
        where, args = "claimed_by = ? AND status = 'in_progress'", [worker]
        if vid is not None:
            where, args = where + " AND id = ?", args + [vid]
        with self._conn() as c:
            return c.execute(f"UPDATE videos SET status = 'queued', claimed_by = NULL, progress = 0 WHERE {where}",
                             args).rowcount

    def finish(self, vid: str, worker: str, error: tuple[str, str] | None = None, publish=None, batch: int = 1) -> bool:
        """Ends this worker's job; publish() (moving its files into place) runs inside the same transaction once
        the job is known to be still ours, so a delete is wholly before it or wholly after it. batch: the jobs
        rendered in the one call that rendered this one (start estimates read a job's time alone from it)."""
        status = "failed" if error else "completed"
        code, message = error or (None, None)
        now = int(time.time())
        with self._conn() as c:
            done = c.execute("UPDATE videos SET status = ?, progress = ?, completed_at = ?, error_code = ?, error_message = ?, "
                             "batch_size = ? WHERE id = ? AND claimed_by = ? AND status = 'in_progress'",
                             (status, 100 if not error else 0, now, code, message, batch, vid, worker)).rowcount > 0
            if done and publish is not None:
                publish()                  # raises: the transaction rolls back, the job is not completed
            if done:
                self._event(c, f"video.{status}", vid, now)
        return done

    def fail(self, vid: str, code: str, message: str) -> bool:
        """Fails a queued job before any worker takes it (its source was deleted)."""
        now = int(time.time())
        with self._conn() as c:
            done = c.execute("UPDATE videos SET status = 'failed', completed_at = ?, error_code = ?, error_message = ? "
                             "WHERE id = ? AND status = 'queued'", (now, code, message, vid)).rowcount > 0
            if done:
                self._event(c, "video.failed", vid, now)
        return done

    # --- housekeeping ---

    def expire(self, now: float | None = None) -> list[str]:
        """Marks finished jobs past expires_at as expired (the store's own status: video_object shows what OpenAI's
        four-status API would); returns their ids (the caller deletes their files)."""
        now = time.time() if now is None else now
        with self._conn() as c:
            rows = c.execute("UPDATE videos SET status = 'expired' WHERE status IN ('completed', 'failed') AND "
                             "expires_at < ? RETURNING id", (now,)).fetchall()
        return [r["id"] for r in rows]

    def referenced_files(self) -> set[str]:
        """Upload paths that queued or rendering jobs still read, and every character's image."""
        with self._conn(write=False) as c:
            params = c.execute("SELECT params FROM videos WHERE status IN ('queued', 'in_progress')").fetchall()
            chars = c.execute("SELECT path FROM characters").fetchall()
        paths = {v for r in params for v in json.loads(r["params"]).values() if isinstance(v, str)}
        return paths | {r["path"] for r in chars}

    def known_videos(self) -> set[str]:
        with self._conn(write=False) as c:
            return {r["id"] for r in c.execute("SELECT id FROM videos WHERE status <> 'expired'").fetchall()}

    # --- webhook outbox ---

    def _event(self, c, type_: str, vid: str, now: int) -> None:
        c.execute("INSERT INTO events (id, type, video_id, created_at, next_attempt) VALUES (?, ?, ?, ?, ?)",
                  ("evt_" + secrets.token_hex(16), type_, vid, now, float(now)))

    def due_events(self, now: float, limit: int = 20) -> list[dict]:
        with self._conn(write=False) as c:
            return [dict(r) for r in c.execute("SELECT * FROM events WHERE delivered = 0 AND next_attempt <= ? "
                                               "ORDER BY next_attempt LIMIT ?", (now, limit)).fetchall()]

    def event_result(self, eid: str, delivered: bool, next_attempt: float, error: str | None = None) -> None:
        with self._conn() as c:
            c.execute("UPDATE events SET delivered = ?, attempts = attempts + 1, next_attempt = ?, last_error = ? "
                      "WHERE id = ?", (int(delivered), next_attempt, error, eid))

    def prune_events(self, before: float) -> int:
        """Forgets events created before `before` (delivered, given up, or never sent: no webhook configured)."""
        with self._conn() as c:
            return c.execute("DELETE FROM events WHERE created_at < ?", (before,)).rowcount

    def events(self) -> list[dict]:
        with self._conn(write=False) as c:
            return [dict(r) for r in c.execute("SELECT * FROM events ORDER BY created_at").fetchall()]


def batch_cost(jobs: int) -> float:
    """A batch of `jobs` jobs' render time in single jobs' time: an approximation, linear in the batch size, one
    job plus defaults.BATCH_EXTRA for each further job (see there: measured on the CPU at batch 4)."""
    return 1.0 + defaults.BATCH_EXTRA * (max(1, jobs) - 1)


def is_text_job(row: dict) -> bool:
    """Whether a job is plain text-to-video (what worker.job_request makes an R.Text): the jobs that may batch."""
    params = json.loads(row["params"])
    return row["kind"] == "create" and not (params.get("input_reference") or params.get("character"))


def like_key(row: dict) -> tuple[str, str, str] | None:
    """What a queued job shares with the jobs it may render in one batch with (claim_like's match: model, render
    size, seconds; a worker's jobs all take its steps), or None: it renders alone whatever the worker's batch."""
    if not is_text_job(row):
        return None
    return (row.get("backend") or row["model"], row.get("render_size") or row["size"], row["seconds"])


class Queued(NamedTuple):
    owner: str
    seq: int
    key: Hashable | None       # like_key: jobs with equal keys may render in one batch; None: alone


def always(key) -> bool:
    return True


@dataclass(frozen=True)
class QueueState:
    queued: list[Queued]                       # every queued job, oldest first
    owners: dict[str, tuple[int, float]]       # owner -> (jobs rendering, last claim time)
    rendering: list[tuple[float, int]]         # (first claim time, jobs) of each worker's render (one, or a batch)
    duration: float | None                     # mean seconds a recent job took alone (None before the first)

    def claims(self, batch: int = 1, batches: Callable[[Hashable], bool] = always):
        """The queued jobs in the order workers claim them, as the batches they render in: the round-robin order
        of JobStore.claim played forward from the queue as it is now (each claim counts as one more job rendering
        for its owner), each batch's first job followed by up to batch - 1 queued jobs of its key, taken in that
        same order (JobStore.claim_like). batches(key): whether the served model batches jobs of that key."""
        lines: dict[str, deque] = {}                     # owner -> its queued jobs
        kin: dict[tuple, deque] = {}                     # (owner, key) -> its jobs that may join a batch
        for job in self.queued:
            lines.setdefault(job.owner, deque()).append(job)
            kin.setdefault((job.owner, job.key), deque()).append(job)
        state = {o: list(self.owners.get(o, (0, 0.0))) for o in lines}
        taken, tick = set(), time.time()

        def first(line):              # a line's oldest job not yet claimed (a batch takes jobs from the middle)
            while line and line[0] in taken:
                line.popleft()
            return line[0] if line else None

        def claim(heads: dict):
            nonlocal tick
            owner = min(heads, key=lambda o: (state[o][0], state[o][1], heads[o].seq))
            tick += 1e-3
            state[owner] = [state[owner][0] + 1, tick]
            taken.add(heads[owner])
            return heads[owner]

        while True:
            heads = {o: j for o, line in lines.items() if (j := first(line)) is not None}
            if not heads:
                return
            group = [claim(heads)]
            key = group[0].key
            while batch > len(group) and key is not None and batches(key):
                heads = {o: j for o in lines if (j := first(kin.get((o, key)))) is not None}
                if not heads:
                    break
                group.append(claim(heads))
            yield group

    def place(self, owner: str, seq: int, workers: int, now: float, batch: int = 1,
              batches: Callable[[Hashable], bool] = always) -> tuple[int, int | None]:
        """A queued job's place (the jobs claimed before it) and when it should start (None before any job has
        finished), for `workers` workers batching up to `batch` jobs: each worker frees up when its render has run
        for its cost, then takes the next batch in claim order; a batch of k jobs costs batch_cost(k) jobs' time
        (so batch 1 gives one job per mean duration a worker)."""
        one = self.duration or 0.0
        left = [max(0.0, one * batch_cost(k) - (now - since)) for since, k in self.rendering]
        free = sorted(left + [0.0] * max(0, max(1, workers) - len(left)))           # seconds until each worker is free
        position = 0
        for group in self.claims(batch, batches):
            start = heapq.heappop(free)
            for i, job in enumerate(group):
                if job.owner == owner and job.seq == seq:
                    return position + i, None if self.duration is None else int(now + start)
            heapq.heappush(free, start + one * batch_cost(len(group)))
            position += len(group)
        return position, None if self.duration is None else int(now + free[0])

    def position(self, owner: str, seq: int, batch: int = 1) -> int:
        """Jobs that claims take before this queued one."""
        return self.place(owner, seq, 1, time.time(), batch)[0]


def video_object(row: dict) -> dict:
    """The OpenAI Video object for a job row (every field, exact types)."""
    out = {k: row[k] for k in VIDEO_FIELDS}
    out["status"] = public_status(row)
    out["object"] = "video"
    out["progress"] = int(row["progress"])
    out["error"] = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    out["rendered_size"] = row.get("render_size") or row["size"]      # the model's own size, resized to `size`
    warnings = json.loads(row.get("params") or "{}").get("warnings")
    if warnings is not None:             # cinegen's own field: set once a worker has read the prompt with its model
        out["warnings"] = warnings
    return out


def public_status(row: dict) -> str:
    """OpenAI's status of a job row. The API has four (the SDK's Video.status): an expired job keeps the status it
    finished with, and its expires_at, now past, says its files are gone (/content answers 404 `expired`)."""
    if row["status"] == "expired":
        return "failed" if row["error_code"] else "completed"
    return row["status"]
