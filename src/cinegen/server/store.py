"""Persistent job store: SQLite in WAL mode (default, zero setup: one server and several worker processes on one
machine) or PostgreSQL (several machines share one queue; claims use FOR UPDATE SKIP LOCKED).

A job row is the Video object plus what the worker needs (kind, params, input file). Workers claim the oldest
queued job with one atomic UPDATE ... RETURNING, keep a heartbeat while rendering, and a job whose heartbeat is
older than `stale_after` seconds (its worker died) goes back to the queue. Nothing is lost on a crash: the row
is the truth and output files are written atomically before the row says "completed".
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from pathlib import Path

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
CREATE INDEX IF NOT EXISTS videos_owner_seq ON videos (owner, seq);
CREATE INDEX IF NOT EXISTS videos_status_seq ON videos (status, seq);
"""
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
        finally:
            setup.close()

    def connect(self):
        conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    @contextmanager
    def transaction(self, conn):
        conn.execute("BEGIN IMMEDIATE")
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

    def connect(self):
        from psycopg.rows import dict_row
        return self.psycopg.connect(self.url, autocommit=True, row_factory=dict_row)

    @contextmanager
    def transaction(self, conn):
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
    def _conn(self):
        """One connection per thread; each `with` is one transaction."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.db.connect()
        with self.db.transaction(conn):
            yield _Cursor(conn, self.db.placeholder)


    # --- API side ---

    def create(self, owner: str, model: str, prompt: str, seconds: str, size: str, kind: str, params: dict,
               remixed_from: str | None = None, ttl: int = 7 * 24 * 3600) -> dict:
        now = int(time.time())
        vid = new_video_id()
        seq = time.time_ns()            # creation order; unique in practice and needs no cross-writer counter
        with self._conn() as c:
            c.execute("INSERT INTO videos (id, owner, status, progress, created_at, expires_at, model, prompt, seconds, size,"
                      " remixed_from_video_id, kind, params, seq) VALUES (?, ?, 'queued', 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                      (vid, owner, now, now + ttl, model, prompt, seconds, size, remixed_from, kind, json.dumps(params), seq))
        return self.get(vid, owner)

    def get(self, vid: str, owner: str | None = None) -> dict | None:
        with self._conn() as c:
            row = c.execute("SELECT * FROM videos WHERE id = ?", (vid,)).fetchone()
        if row is None or (owner is not None and row["owner"] != owner):
            return None
        return dict(row)

    def list(self, owner: str, after: str | None, limit: int, order: str) -> tuple[list[dict], bool]:
        """Cursor pagination by insertion order (seq); `after` is a video id from the previous page."""
        desc = order == "desc"
        with self._conn() as c:
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

    # --- worker side ---

    def claim(self, worker: str) -> dict | None:
        """Atomically takes the oldest queued job (requeueing stale ones first)."""
        now = time.time()
        with self._conn() as c:
            c.execute("UPDATE videos SET status = 'queued', claimed_by = NULL WHERE status = 'in_progress' AND heartbeat < ?",
                      (now - self.stale_after,))
            row = c.execute("UPDATE videos SET status = 'in_progress', claimed_by = ?, heartbeat = ?, progress = 0 "
                            "WHERE id = (SELECT id FROM videos WHERE status = 'queued' ORDER BY seq LIMIT 1"
                            f"{self.db.claim_lock}) RETURNING *", (worker, now)).fetchone()
        return dict(row) if row else None

    def heartbeat(self, vid: str, worker: str, progress: int) -> bool:
        """Records progress; False when the job is no longer this worker's (deleted or requeued)."""
        with self._conn() as c:
            return c.execute("UPDATE videos SET progress = ?, heartbeat = ? WHERE id = ? AND claimed_by = ? AND "
                             "status = 'in_progress'", (progress, time.time(), vid, worker)).rowcount > 0

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

    def finish(self, vid: str, worker: str, error: tuple[str, str] | None = None) -> bool:
        status = "failed" if error else "completed"
        code, message = error or (None, None)
        with self._conn() as c:
            return c.execute("UPDATE videos SET status = ?, progress = ?, completed_at = ?, error_code = ?, error_message = ? "
                             "WHERE id = ? AND claimed_by = ? AND status = 'in_progress'",
                             (status, 100 if not error else 0, int(time.time()), code, message, vid, worker)).rowcount > 0


def video_object(row: dict) -> dict:
    """The OpenAI Video object for a job row (every field, exact types)."""
    out = {k: row[k] for k in VIDEO_FIELDS}
    out["object"] = "video"
    out["progress"] = int(row["progress"])
    out["error"] = {"code": row["error_code"], "message": row["error_message"]} if row["error_code"] else None
    warnings = json.loads(row.get("params") or "{}").get("warnings")
    if warnings is not None:             # cinegen's own field: set once a worker has read the prompt with its model
        out["warnings"] = warnings
    return out
