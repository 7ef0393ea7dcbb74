"""The job lifecycle below the HTTP layer: leases, cancellation of every mode, round-robin claims, queue estimates,
expiry and garbage collection, file permissions, webhooks, and supervised worker processes."""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from PIL import Image

from cinegen.io.video import write_mp4
from cinegen.server.store import JobStore
from cinegen.server.worker import Worker, video_dir

PROMPT = "a large red ball bounces on a black background"


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sources")
    clip = folder / "clip.mp4"
    write_mp4(np.random.default_rng(0).integers(0, 255, (9, 32, 32, 3), dtype=np.uint8), clip, 8)
    still = folder / "still.png"
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(still)
    return {"clip": str(clip), "still": str(still)}


KINDS = {                       # kind, params: every mode the API makes
    "text": ("create", {}),
    "animate": ("create", {"input_reference": "still"}),
    "character": ("create", {"character": "still"}),
    "extend": ("extend", {"source": "clip", "extra_seconds": "1"}),
    "remix": ("remix", {"source": "clip"}),
    "edit": ("edit", {"source": "clip"}),
}


@pytest.fixture(scope="module")
def slow_worker(tmp_path_factory, tiny_model_dir):
    data = tmp_path_factory.mktemp("cancel")
    worker = Worker(data, {"m": tiny_model_dir}, steps=400)
    worker.backend("m")                       # loaded once for every mode
    return worker


@pytest.mark.parametrize("mode", list(KINDS))
def test_delete_stops_every_mode_within_one_step_and_nothing_is_written(slow_worker, sources, mode):
    kind, params = KINDS[mode]
    params = {k: sources.get(v, v) for k, v in params.items()}
    store, w = slow_worker.store, slow_worker
    vid = store.create("studio", "m", PROMPT, "1", "32x32", kind, params)["id"]
    calls = []
    original = w._progress

    def recording(v, lease):
        inner = original(v, lease)

        def callback(d):
            calls.append(time.time())
            inner(d)
        return callback
    w._progress = recording
    try:
        thread = threading.Thread(target=w.run_once)
        thread.start()
        deadline = time.time() + 60
        while time.time() < deadline and len(calls) < 3:
            time.sleep(0.01)
        assert len(calls) >= 3, "the render never reported progress"
        assert store.delete(vid, "studio")
        deleted_at = time.time()                  # once committed (a busy store may hold the delete a few steps)
        thread.join(timeout=60)
    finally:
        w._progress = original
    assert not thread.is_alive()
    assert sum(t > deleted_at for t in calls) <= 1          # the step after the delete raises; no further step
    assert not video_dir(w.data_dir, vid).exists()


def test_a_slow_model_load_keeps_its_lease_so_no_job_is_rendered_twice(tmp_path, tiny_model_dir):
    store = JobStore(tmp_path / "jobs.sqlite", stale_after=1.0)
    vid = store.create("studio", "m", PROMPT, "1", "32x32", "create", {})["id"]
    a = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, worker_id="a", stale_after=1.0)
    real = a.backend
    real("m")                                               # imports done: the wait below is the load alone

    def slow_backend(model):
        time.sleep(3.0)                                     # three times the lease
        return real(model)
    a.backend = slow_backend
    b = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, worker_id="b", stale_after=1.0)
    thread = threading.Thread(target=a.run_once)
    thread.start()
    while store.get(vid)["claimed_by"] != "a":
        time.sleep(0.01)
    stolen = []
    while thread.is_alive():
        row = b.store.claim("b")
        if row is not None:
            stolen.append(row["id"])
        time.sleep(0.1)
    thread.join()
    assert stolen == []
    row = store.get(vid)
    assert row["status"] == "completed" and row["attempts"] == 1


def test_claims_go_round_robin_across_keys(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = [store.create("key-a", "m", f"a{i}", "1", "32x32", "create", {})["id"] for i in range(5)]
    b = store.create("key-b", "m", "b0", "1", "32x32", "create", {})["id"]
    first = store.claim("w1")["id"]
    assert first == a[0]
    assert store.queue_position(store.get(b)) == 0              # next in line although five of a's came first
    assert store.queue_position(store.get(a[2])) == 2           # a[1] and b before it
    assert store.claim("w2")["id"] == b                          # a lone job waits only for the one rendering
    store.finish(first, "w1")
    assert [store.claim("w1")["id"] for _ in range(4)] == a[1:]


def test_queued_video_objects_say_their_place_and_estimated_start(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))},
                              api_keys={"ka": "a", "kb": "b"}, workers=1, queue_view_ttl=0)
    c = TestClient(create_app(settings))
    auth = {"ka": {"Authorization": "Bearer ka"}, "kb": {"Authorization": "Bearer kb"}}
    body = {"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}
    ids = [c.post("/v1/videos", json=body, headers=auth["ka"]).json()["id"] for _ in range(3)]
    lone = c.post("/v1/videos", json=body, headers=auth["kb"]).json()
    assert lone["queue_position"] == 1 and lone["estimated_start_at"] is None     # no job has finished yet
    store = JobStore(tmp_path / "jobs.sqlite")
    row = store.claim("w")
    store.finish(row["id"], "w")                                                   # one measured job
    v = c.get(f"/v1/videos/{ids[2]}", headers=auth["ka"]).json()
    assert v["queue_position"] == 2 and v["estimated_start_at"] >= v["created_at"]


def test_expired_videos_lose_their_files_and_the_sdk_still_reads_them(tmp_path, tiny_model_dir):
    """Past expires_at the files are deleted; the object keeps a status the SDK knows (OpenAI has no "expired"),
    /content answers 404 `expired` in OpenAI's envelope, and a remix of it is refused."""
    import typing

    import openai
    from fastapi.testclient import TestClient
    from openai.types import Video

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    from cinegen.server.housekeeping import collect
    settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))}, ttl_seconds=60)
    c = TestClient(create_app(settings))
    sdk = openai.OpenAI(base_url=f"{c.base_url}/v1", api_key="local", http_client=c, max_retries=0)
    statuses = set(typing.get_args(Video.model_fields["status"].annotation))
    body = {"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}
    vid, bad = (c.post("/v1/videos", json=body).json()["id"] for _ in range(2))
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, batch=1)       # one job per run_once: the second is failed by hand
    assert w.run_once()
    row = w.store.claim(w.worker_id)                                             # the second one fails
    w.store.finish(row["id"], w.worker_id, error=("render_failed", "boom"))
    assert (video_dir(tmp_path, vid) / "video.mp4").exists()
    collect(tmp_path, JobStore(tmp_path / "jobs.sqlite"), 3600, now=time.time() + 30)
    assert sdk.videos.retrieve(vid).status == "completed" and sdk.videos.download_content(vid).content   # not yet
    collect(tmp_path, JobStore(tmp_path / "jobs.sqlite"), 3600, now=time.time() + 120)
    assert not video_dir(tmp_path, vid).exists()
    for v in [*sdk.videos.list(), sdk.videos.retrieve(vid), sdk.videos.retrieve(bad)]:
        assert v.status in statuses and v.expires_at < time.time() + 120
    assert (sdk.videos.retrieve(vid).status, sdk.videos.retrieve(bad).status) == ("completed", "failed")
    assert sdk.videos.retrieve(bad).error.message == "boom"
    with pytest.raises(openai.NotFoundError) as gone:
        sdk.videos.download_content(vid)
    assert gone.value.code == "expired" and "files are deleted" in gone.value.message
    with pytest.raises(openai.BadRequestError) as remix:
        sdk.videos.remix(vid, prompt=PROMPT)
    assert remix.value.code == "expired" and remix.value.param == "video_id"


def test_garbage_collection_keeps_what_jobs_read(tmp_path):
    from cinegen.server.housekeeping import collect
    store = JobStore(tmp_path / "jobs.sqlite")
    uploads = tmp_path / "uploads"
    uploads.mkdir()
    used, stale, fresh = uploads / "used.img", uploads / "stale.img", uploads / "fresh.img"
    for p in (used, stale, fresh):
        p.write_bytes(b"x")
    store.create("s", "m", PROMPT, "1", "32x32", "create", {"input_reference": str(used)})
    orphan = tmp_path / "videos" / "video_gone"
    orphan.mkdir(parents=True)
    (orphan / "video.mp4").write_bytes(b"x")
    writing, abandoned = tmp_path / "videos" / ".video_a.x1.tmp", tmp_path / "videos" / ".video_b.x2.tmp"
    writing.mkdir(), abandoned.mkdir()                  # worker staging folders: a long encode, a killed worker
    old = time.time() - 7200
    for p in (used, stale, orphan / "video.mp4", orphan, abandoned):
        os.utime(p, (old, old))
    os.utime(writing, (time.time() - 600, time.time() - 600))
    removed = collect(tmp_path, store, max_age=3600)
    assert used.exists() and fresh.exists() and not stale.exists() and not orphan.exists()
    assert writing.exists() and set(removed) == {stale, orphan, abandoned}


def test_outputs_are_readable_by_the_group(tmp_path, tiny_model_dir):
    store = JobStore(tmp_path / "jobs.sqlite")
    vid = store.create("s", "m", PROMPT, "1", "32x32", "create", {})["id"]
    old = os.umask(0o027)
    try:
        assert Worker(tmp_path, {"m": tiny_model_dir}, steps=2).run_once()
    finally:
        os.umask(old)
    for name in ("video.mp4", "thumbnail.webp", "spritesheet.jpg"):
        assert (video_dir(tmp_path, vid) / name).stat().st_mode & 0o777 == 0o640
    assert video_dir(tmp_path, vid).stat().st_mode & 0o777 == 0o750          # the staging folder, moved in place
    assert store.get(vid)["status"] == "completed"


@pytest.mark.parametrize("moment", ["between two files", "after the last file"])
def test_a_delete_while_the_files_are_written_leaves_no_file_then_or_later(tmp_path, tiny_model_dir, monkeypatch, moment):
    """DELETE answers while the worker writes the job's files (hooked at a fixed point, no sleeps): from its answer
    on, no file of the job exists at its path, none appears when the worker goes on, and nothing is left over."""
    from fastapi.testclient import TestClient

    import cinegen.server.worker as W
    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    c = TestClient(create_app(ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))})))
    vid = c.post("/v1/videos", json={"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}).json()["id"]
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=2)
    folder, seen = video_dir(tmp_path, vid), []

    def delete_now():
        assert c.delete(f"/v1/videos/{vid}").json()["deleted"]
        seen.append(folder.exists())
    real_still, real_write, real_finish = W.write_still, w.write_outputs, w.store.finish

    def still(*a):                                  # the MP4 is written, the thumbnail is next
        if not seen and moment == "between two files":
            delete_now()
        real_still(*a)

    def write(*a):
        staged = real_write(*a)
        if moment == "after the last file":
            delete_now()
        return staged

    def finish(*a, **k):
        seen.append(folder.exists())                # what a client could download the moment the worker finishes
        return real_finish(*a, **k)
    monkeypatch.setattr(W, "write_still", still)
    monkeypatch.setattr(w, "write_outputs", write)
    monkeypatch.setattr(w.store, "finish", finish)
    assert w.run_once()
    assert seen == [False, False] and not folder.exists()
    assert [p.name for p in (tmp_path / "videos").iterdir()] == []          # no staging folder left
    assert c.get(f"/v1/videos/{vid}").status_code == 404


def test_deleting_a_source_fails_its_queued_jobs_without_naming_server_paths(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))})
    c = TestClient(create_app(settings))
    src = c.post("/v1/videos", json={"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}).json()["id"]
    assert Worker(tmp_path, {"m": tiny_model_dir}, steps=2).run_once()
    remix = c.post(f"/v1/videos/{src}/remix", json={"prompt": "a blue ball"}).json()
    ext = c.post("/v1/videos/extensions", json={"prompt": "on", "seconds": "1", "video": {"id": src}}).json()
    assert c.delete(f"/v1/videos/{src}").json()["deleted"]
    for job in (remix, ext):
        v = c.get(f"/v1/videos/{job['id']}").json()
        assert v["status"] == "failed" and src in v["error"]["message"]
        assert str(tmp_path) not in v["error"]["message"] and "/" not in v["error"]["message"]


def test_a_job_whose_input_vanished_fails_without_naming_server_paths(tmp_path, tiny_model_dir):
    store = JobStore(tmp_path / "jobs.sqlite")
    vid = store.create("s", "m", PROMPT, "1", "32x32", "edit", {"source": str(tmp_path / "uploads" / "gone.vid")})["id"]
    assert Worker(tmp_path, {"m": tiny_model_dir}, steps=2).run_once()
    row = store.get(vid)
    assert row["status"] == "failed" and str(tmp_path) not in row["error_message"]


def _receiver(failures: int):
    """A webhook receiver on loopback that answers HTTP 500 to its first `failures` POSTs, then records each one;
    returns (server, [(body, headers)], [calls])."""
    got, calls = [], [0]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            calls[0] += 1
            if calls[0] > failures:
                got.append((body, dict(self.headers)))
            self.send_response(500 if calls[0] <= failures else 200)
            self.end_headers()

        def log_message(self, *args):
            pass
    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, got, calls


def test_webhooks_are_signed_for_the_sdk_and_retried(tmp_path):
    openai = pytest.importorskip("openai")
    from cinegen.server.webhooks import Sender
    store = JobStore(tmp_path / "jobs.sqlite")
    ok = store.create("s", "m", PROMPT, "1", "32x32", "create", {})["id"]
    bad = store.create("s", "m", PROMPT, "1", "32x32", "create", {})["id"]
    for vid, error in ((ok, None), (bad, ("render_failed", "boom"))):
        assert store.claim("w")["id"] == vid
        assert store.finish(vid, "w", error=error)          # a worker only writes the outbox row
    httpd, got, calls = _receiver(failures=1)
    secret = "whsec_" + __import__("base64").b64encode(b"a secret of the operator").decode()
    sender = Sender(store, f"http://127.0.0.1:{httpd.server_port}/hook", secret, backoff=(0.2, 0.2, 0.2))
    try:
        deadline = time.time() + 20
        while time.time() < deadline and len(got) < 2:
            sender.deliver_due()
            time.sleep(0.05)
    finally:
        httpd.shutdown()
    assert calls[0] == 3                         # one failure, retried, then both delivered
    sdk = openai.OpenAI(api_key="unused", webhook_secret=secret)
    events = {e.data.id: e for e in (sdk.webhooks.unwrap(body, headers) for body, headers in got)}
    assert events[ok].type == "video.completed" and events[bad].type == "video.failed"
    with pytest.raises(openai.InvalidWebhookSignatureError):
        sdk.webhooks.unwrap(got[0][0], got[0][1], secret="whsec_" + "b3RoZXI=")
    assert all(e["delivered"] for e in store.events())
    assert json.loads(got[0][0])["object"] == "event"


def test_the_server_process_sends_webhooks_in_the_background(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    httpd, got, _ = _receiver(failures=0)
    settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))},
                              webhook_url=f"http://127.0.0.1:{httpd.server_port}/", webhook_secret="plain-secret")
    try:
        with TestClient(create_app(settings)) as c:                 # the app's lifespan starts the sender
            vid = c.post("/v1/videos", json={"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}).json()["id"]
            store = JobStore(tmp_path / "jobs.sqlite")
            assert store.claim("w")["id"] == vid and store.finish(vid, "w")
            deadline = time.time() + 20
            while time.time() < deadline and not got:
                time.sleep(0.05)
    finally:
        httpd.shutdown()
    assert json.loads(got[0][0])["data"]["id"] == vid and got[0][1]["webhook-signature"].startswith("v1,")


class _FakeProcess:
    """Stands in for a worker process: the supervisor's bookkeeping is what is tested, not process start-up."""

    def __init__(self, name):
        self.name, self.pid, self.exitcode, self.alive = name, None, None, True

    def is_alive(self):
        return self.alive

    def join(self, timeout=None):
        pass

    def kill(self):
        self.alive = False


def test_a_dead_worker_is_replaced_even_while_the_store_fails_and_its_job_is_requeued_later(tmp_path, monkeypatch):
    import sqlite3

    from cinegen.server.supervisor import Supervisor
    sup = Supervisor(tmp_path, {}, count=2, steps=1, check_every=0.01)
    spawned = []

    def spawn():
        sup.started += 1
        spawned.append(_FakeProcess(f"w{sup.started}"))
        sup.procs[spawned[-1].name] = spawned[-1]
    monkeypatch.setattr(sup, "_spawn", spawn)
    vid = sup.store.create("s", "m", PROMPT, "1", "32x32", "create", {})["id"]
    sup.start()
    assert sup.store.claim("w1")["id"] == vid
    real, failures = sup.store.requeue, []

    def busy(worker, vid=None):                     # the first two tries find the database locked
        if len(failures) < 2:
            failures.append(worker)
            raise sqlite3.OperationalError("database is locked")
        return real(worker, vid)
    monkeypatch.setattr(sup.store, "requeue", busy)
    spawned[0].alive = False
    deadline = time.time() + 20
    while time.time() < deadline and sup.store.get(vid)["status"] != "queued":
        time.sleep(0.01)
    assert sup.store.get(vid)["status"] == "queued" and failures == ["w1", "w1"]
    assert [p.name for p in spawned] == ["w1", "w2", "w3"] and sorted(sup.procs) == ["w2", "w3"] and sup.restarts == 1
    assert sup._watcher.is_alive()                  # an error never ended the watcher
    sup.shutdown(grace=0.1, abort_wait=0.1)
    assert not sup._watcher.is_alive() and not any(p.alive for p in spawned) and sup.procs == {}


@pytest.mark.slow
def test_serve_replaces_a_killed_worker_and_leaves_no_process_on_sigterm(tmp_path, tiny_model_dir):
    """`cinegen serve --workers 2`: a SIGKILLed worker is replaced within seconds and its job completes; SIGTERM
    then stops the server, gives the job in hand back to the queue after the grace period, and no child lives on."""
    import signal
    import subprocess
    import sys

    import httpx
    import psutil

    from tests.conftest import free_port
    port = free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "cinegen.cli", "serve", "--port", str(port), "--data-dir", str(tmp_path), "--workers",
           "2", "--model", f"m={tiny_model_dir}", "--steps", "150", "--grace", "1", "--stale-after", "60"]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1/videos"
    body = {"prompt": PROMPT, "model": "m", "size": "64x64", "seconds": "1"}
    store = JobStore(tmp_path / "jobs.sqlite")

    def workers():
        alive = []
        for p in psutil.Process(proc.pid).children():
            try:
                if "spawn_main" in " ".join(p.cmdline()):
                    alive.append(p)
            except psutil.Error:                   # exited (a zombie until its parent reaps it)
                pass
        return alive

    def wait(condition, seconds):               # True once the condition held (it is not asked again)
        deadline = time.time() + seconds
        while time.time() < deadline:
            if condition():
                return True
            time.sleep(0.1)
        return False

    def replaced():
        # one listing per check: a SIGKILLed process that frees a large heap stays "running" for a second and its
        # command line reads empty half-way through, so two listings can disagree about it
        pids = [p.pid for p in workers()]
        return len(pids) == 2 and victim.pid not in pids and not victim.is_running()    # and reaped by the server
    try:
        assert wait(lambda: _up(url), 60), (tmp_path / "serve.log").read_text()
        made = [httpx.post(url, json=body).json() for _ in range(2)]
        ids = [m["id"] for m in made if "id" in m]
        assert len(ids) == 2, made
        assert wait(lambda: any(store.get(v)["progress"] > 0 for v in ids), 120)
        rendering = [v for v in ids if store.get(v)["status"] == "in_progress"]
        assert rendering
        before = workers()
        victim = before[0]                   # both render (two jobs, two workers): either one's job is in hand
        os.kill(victim.pid, signal.SIGKILL)
        killed_at = time.time()
        assert wait(replaced, 30), \
            ([(p.pid, p.status()) for p in psutil.Process(proc.pid).children()], victim.pid,
             (tmp_path / "serve.log").read_text()[-3000:])
        replaced_after = time.time() - killed_at
        assert wait(lambda: all(store.get(v)["status"] == "completed" for v in ids), 240)
        assert replaced_after < 10            # the watcher looks twice a second; slack for a loaded 2-core machine
        children = psutil.Process(proc.pid).children(recursive=True)
        last = httpx.post(url, json=body).json()["id"]
        assert wait(lambda: store.get(last)["progress"] > 0, 120)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0 or proc.returncode in (-signal.SIGTERM, 128 + signal.SIGTERM)
        assert store.get(last)["status"] in ("queued", "completed")          # given back, or done within grace
        assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _up(url) -> bool:
    import httpx
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_per_key_limits_answer_openais_429_with_retry_after(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    from cinegen.server.limits import RateLimit
    settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))},
                              api_keys={"ka": "a", "kb": "b"}, max_active_jobs=2,
                              rate_limit=RateLimit(per_minute=60, burst=4))
    app = create_app(settings)
    c = TestClient(app)
    a, b = {"Authorization": "Bearer ka"}, {"Authorization": "Bearer kb"}
    body = {"prompt": PROMPT, "model": "m", "size": "32x32", "seconds": "1"}
    assert [c.post("/v1/videos", json=body, headers=a).status_code for _ in range(3)] == [200, 200, 429]
    busy = c.post("/v1/videos", json=body, headers=a)                        # the 4th request of the burst
    assert busy.status_code == 429 and int(busy.headers["retry-after"]) >= 1
    assert busy.json()["error"]["code"] == "rate_limit_exceeded" and "jobs queued" in busy.json()["error"]["message"]
    flood = c.get("/v1/videos/video_guess", headers=a)                      # the 5th: over the request rate
    assert flood.status_code == 429 and flood.headers["retry-after"] == "1"
    assert set(flood.json()["error"]) == {"message", "type", "param", "code"}
    assert c.get("/v1/videos", headers=b).status_code == 200                 # another key has its own bucket
    full = TestClient(create_app(ServerSettings(data_dir=tmp_path / "q", models=settings.models, disk_quota_bytes=1)))
    full.app.state.disk_used = 10
    r = full.post("/v1/videos", json=body)
    assert r.status_code == 429 and r.json()["error"]["code"] == "insufficient_quota"


def test_the_service_benchmark_owns_one_section_that_make_bench_keeps(tmp_path):
    from cinegen.eval.bench import kept_sections
    from cinegen.eval.bench_server import END, START, write_section
    out = tmp_path / "BENCHMARKS.md"
    out.write_text("# Benchmarks\n\n## (a) other\n\nrow\n")
    write_section(out, [START, "## (s) first", END])
    write_section(out, [START, "## (s) second", END])                 # replaced in place, not appended again
    text = out.read_text()
    assert text.count(START) == 1 and "second" in text and "first" not in text and "## (a) other" in text
    assert kept_sections(out) == [START, "## (s) second", END, ""]
