"""Scale-out: several workers (standing in for several machines) share one PostgreSQL queue.

A throwaway PostgreSQL cluster is started in a temp folder on a loopback port (Debian's postgresql package,
installed by `make test`); without it these tests skip and say why.
"""

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from cinegen.server.store import JobStore
from tests.conftest import free_port

pytest.importorskip("psycopg")
BIN = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
pytestmark = pytest.mark.skipif(not BIN or os.geteuid() != 0 or shutil.which("runuser") is None,
                                reason="needs Debian's postgresql package and root (to run it as the postgres user)")


def _as_postgres(*cmd):
    subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def pg_url():
    # not pytest's tmp_path: its parents are private to root, and the server runs as the postgres user
    root = Path(tempfile.mkdtemp(prefix="cinegen-pg-"))
    data = root / "data"
    shutil.chown(root, "postgres")
    os.chmod(root, 0o755)
    port = free_port()
    _as_postgres(f"{BIN[-1]}/initdb", "-D", str(data), "-A", "trust", "-U", "postgres")
    _as_postgres(f"{BIN[-1]}/pg_ctl", "-D", str(data), "-w", "-l", str(root / "log"), "-o",
                 f"-p {port} -k {root} -c listen_addresses=127.0.0.1", "start")
    yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _as_postgres(f"{BIN[-1]}/pg_ctl", "-D", str(data), "-m", "immediate", "stop")
    shutil.rmtree(root, ignore_errors=True)


def test_concurrent_claims_take_each_job_exactly_once(pg_url):
    store = JobStore(pg_url)
    ids = {store.create("studio", "m", f"prompt {i}", "1", "32x32", "create", {})["id"] for i in range(40)}
    claimed, lock = [], threading.Lock()

    def worker(name):
        own = JobStore(pg_url)                       # its own connection, like another machine
        while (row := own.claim(name)) is not None:
            with lock:
                claimed.append((row["id"], name))
            own.finish(row["id"], name)

    _take_all(worker, claimed, ids, store)


def _take_all(worker, claimed, ids, store):
    """Four machines at once run `worker`; every job of `ids` was claimed once, none twice, and completed."""
    threads = [threading.Thread(target=worker, args=(f"machine-{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    got = [vid for vid, _ in claimed if vid in ids]
    assert sorted(got) == sorted(ids)                 # every job once, none twice
    assert all(store.get(v)["status"] == "completed" for v in ids)


def test_heartbeats_keep_sub_second_precision_in_postgres(pg_url):
    """REAL is 4 bytes in PostgreSQL: epoch seconds came back rounded to 128 s, so a fresh claim could read as a
    minute stale and be requeued under its worker: the double claims the test above caught, in the 4 s of every
    128 s where rounding goes down by more than the 60 s stale limit."""
    import psycopg
    with psycopg.connect(pg_url, autocommit=True) as conn:              # a store made before the fix
        conn.execute("ALTER TABLE videos ALTER COLUMN heartbeat TYPE REAL")
    store = JobStore(pg_url)                                            # opening it migrates the column
    vid = store.create("studio", "m", "p", "1", "32x32", "create", {})["id"]
    while (row := store.claim("machine-a")) is not None and row["id"] != vid:
        store.finish(row["id"], "machine-a")
    assert store.heartbeat(vid, "machine-a", 50)
    now = time.time()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        stored = conn.execute("SELECT heartbeat FROM videos WHERE id = %s", (vid,)).fetchone()[0]
    assert abs(stored - now) < 1.0
    assert store.claim("machine-b") is None                             # a live job is not handed out again


def test_worker_processes_render_from_the_shared_queue(pg_url, tmp_path, tiny_model_dir):
    store = JobStore(pg_url)
    ids = [store.create("studio", "cinegen-default", "a large red ball bounces on a black background", "1", "32x32",
                        "create", {})["id"] for _ in range(4)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "cinegen.cli", "worker", "--data-dir", str(tmp_path), "--database", pg_url,
           "--model", f"cinegen-default={tiny_model_dir}", "--steps", "2"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        deadline = time.time() + 180
        while time.time() < deadline and any(store.get(v)["status"] != "completed" for v in ids):
            time.sleep(0.3)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert all(store.get(v)["status"] == "completed" for v in ids)
    assert all((tmp_path / "videos" / v / "video.mp4").exists() for v in ids)


def test_batch_claims_take_each_job_exactly_once(pg_url):
    """Batched serving on the shared queue: a worker claims a job, then up to three compatible ones, in one
    transaction each; four claimers at once never share a job, and a batch's leases renew together."""
    from cinegen.server.worker import is_text_job
    store = JobStore(pg_url)
    ids = {store.create(f"key-{i % 3}", "batch-m", f"prompt {i}", "1", "48x48", "create", {})["id"] for i in range(40)}
    claimed, lock = [], threading.Lock()

    def worker(name):
        own = JobStore(pg_url)
        while (row := own.claim(name)) is not None:
            batch = [row] + own.claim_like(name, row, 3, accept=is_text_job)
            assert own.heartbeat_many([r["id"] for r in batch], name, 50) == {r["id"] for r in batch}
            with lock:
                claimed.extend((r["id"], name) for r in batch)
            for r in batch:
                own.finish(r["id"], name)
    _take_all(worker, claimed, ids, store)
