"""Batched serving: a worker renders compatible queued jobs (same model, size, seconds, steps; text-to-video) in
one batched backend call. Each job gets what it gets alone, keeps its own lease, progress, cancel and files; claims
keep the round-robin order across keys and stay leases (two workers never render one job)."""

import sqlite3
import threading
import time

import numpy as np
import pytest

from cinegen.server.store import JobStore, Queued, QueueState, always, batch_cost
from cinegen.server.worker import Worker, is_text_job, video_dir

PROMPTS = ["a large red ball bounces on a black background", "a small blue box moves left on a gray background",
           "a green triangle spins on a white background", "a yellow ball moves right on a black background"]


def text_jobs(store, n, owner="s", size="32x32", seconds="1", model="m"):
    return [store.create(owner, model, PROMPTS[i % len(PROMPTS)], seconds, size, "create", {})["id"] for i in range(n)]


class Recorder:
    """Wraps a worker's backend and its write_outputs: the batches it rendered, and each job's video as written."""

    def __init__(self, worker: Worker, model: str = "m"):
        self.batches, self.singles, self.written = [], [], {}
        backend = worker.backend(model)
        generate_batch, generate, write = backend.generate_batch, backend.generate, worker.write_outputs

        def batched(requests, progress=None):
            self.batches.append([r.prompt for r in requests])
            return generate_batch(requests, progress=progress)

        def single(request, progress=None):
            self.singles.append(request.prompt)
            return generate(request, progress=progress)

        def write_outputs(vid, video, fps, tags):
            self.written[vid] = video
            return write(vid, video, fps, tags)        # the staging folder publish() moves
        backend.generate_batch, backend.generate, worker.write_outputs = batched, single, write_outputs


@pytest.fixture
def worker(tmp_path, tiny_model_dir):
    return Worker(tmp_path, {"m": tiny_model_dir, "m2": tiny_model_dir}, steps=3, batch=4, batch_wait=0)


def test_a_job_rendered_in_a_batch_equals_the_job_rendered_alone(worker):
    ids = text_jobs(worker.store, 3)
    rec = Recorder(worker)
    assert worker.run_once()
    assert rec.batches == [PROMPTS[:3]] and rec.singles == []         # one call for the three
    for vid in ids:
        row = worker.store.get(vid)
        assert row["status"] == "completed" and row["progress"] == 100
        assert (video_dir(worker.data_dir, vid) / "video.mp4").is_file()
        alone, _ = worker.render(row)                                  # the same job, its own seed, by itself
        assert np.abs(rec.written[vid].astype(int) - alone).max() <= 1
    assert not np.array_equal(rec.written[ids[0]], rec.written[ids[1]])
    assert not worker.run_once()


def test_the_same_prompt_in_one_batch_keeps_each_jobs_own_seed(worker):
    ids = [worker.store.create("s", "m", PROMPTS[0], "1", "32x32", "create", {})["id"] for _ in range(2)]
    rec = Recorder(worker)
    assert worker.run_once() and len(rec.batches) == 1
    assert not np.array_equal(rec.written[ids[0]], rec.written[ids[1]])


def test_incompatible_jobs_are_not_batched(worker, tmp_path):
    store = worker.store
    first = text_jobs(store, 1)[0]
    (tmp_path / "still.png").write_bytes(b"")
    others = [text_jobs(store, 1, size="64x32")[0], text_jobs(store, 1, seconds="2")[0], text_jobs(store, 1, model="m2")[0],
              store.create("s", "m", PROMPTS[1], "1", "32x32", "create", {"input_reference": str(tmp_path / "still.png")})["id"],
              store.create("s", "m", PROMPTS[1], "1", "32x32", "remix", {"source": str(tmp_path / "x.mp4")})["id"]]
    same = text_jobs(store, 1)[0]
    rec = Recorder(worker)
    assert worker.run_once()
    assert len(rec.batches) == 1 and len(rec.batches[0]) == 2
    assert {store.get(v)["status"] for v in (first, same)} == {"completed"}
    assert {store.get(v)["status"] for v in others} == {"queued"}


def test_a_batch_of_one_renders_as_before(worker):
    vid = text_jobs(worker.store, 1)[0]
    rec = Recorder(worker)
    assert worker.run_once()
    assert rec.batches == [] and rec.singles == [PROMPTS[0]]
    assert worker.store.get(vid)["status"] == "completed"


def test_batch_1_renders_one_job_at_a_time(tmp_path, tiny_model_dir):
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, batch=1)
    ids = text_jobs(w.store, 2)
    rec = Recorder(w)
    assert w.run_once()
    assert rec.batches == [] and [w.store.get(v)["status"] for v in ids] == ["completed", "queued"]


def test_deleting_one_job_of_a_batch_stops_only_that_job(tmp_path, tiny_model_dir):
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=300, batch=3, batch_wait=0)
    ids = text_jobs(w.store, 3)
    rec = Recorder(w)
    thread = threading.Thread(target=w.run_once)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline and min(w.store.get(v)["progress"] for v in ids) < 2:
        time.sleep(0.02)
    assert min(w.store.get(v)["progress"] for v in ids) >= 2, "the batch never reported progress for every job"
    assert w.store.delete(ids[1], "s")
    thread.join(timeout=120)
    assert not thread.is_alive() and len(rec.batches) == 1
    assert [w.store.get(v)["status"] for v in (ids[0], ids[2])] == ["completed", "completed"]
    assert w.store.get(ids[1]) is None and ids[1] not in rec.written
    assert not video_dir(tmp_path, ids[1]).exists()


def test_deleting_every_job_of_a_batch_stops_the_render_within_a_step(tmp_path, tiny_model_dir):
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=400, batch=2, batch_wait=0)
    ids = text_jobs(w.store, 2)
    steps = []
    backend = w.backend("m")
    original = backend.generate_batch
    backend.generate_batch = lambda requests, progress=None: original(
        requests, progress=lambda d: (steps.append(time.time()), progress(d)))
    thread = threading.Thread(target=w.run_once)
    thread.start()
    while len(steps) < 3 and thread.is_alive():
        time.sleep(0.01)
    for vid in ids:
        assert w.store.delete(vid, "s")
    deleted_at = time.time()                  # once the last is gone: the batch may run on while one job is left
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert sum(t > deleted_at for t in steps) <= 1
    assert not any(video_dir(tmp_path, v).exists() for v in ids)


def test_a_batch_claims_in_round_robin_order_across_keys(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = text_jobs(store, 4, owner="key-a")
    b = text_jobs(store, 1, owner="key-b")[0]
    first = store.claim("w")
    assert first["id"] == a[0]
    more = store.claim_like("w", first, 2, accept=is_text_job)
    assert [r["id"] for r in more] == [b, a[1]]                   # b's lone job is next in fair order, then a's
    assert all(r["status"] == "in_progress" and r["claimed_by"] == "w" for r in more)


def test_a_lone_job_of_another_key_is_next_after_a_batch_it_cannot_join(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    a = text_jobs(store, 5, owner="key-a")
    b = text_jobs(store, 1, owner="key-b", size="64x32")[0]      # incompatible with a's batch
    first = store.claim("w1")
    assert [r["id"] for r in store.claim_like("w1", first, 2, accept=is_text_job)] == a[1:3]
    assert store.claim("w2")["id"] == b                            # not a[3]: b waits only for the batch rendering


def test_two_workers_batching_never_render_a_job_twice(tmp_path, tiny_model_dir):
    store = JobStore(tmp_path / "jobs.sqlite", stale_after=1.0)
    ids = text_jobs(store, 8)
    workers = [Worker(tmp_path, {"m": tiny_model_dir}, steps=2, worker_id=name, stale_after=1.0, batch=3,
                      batch_wait=0.1) for name in ("a", "b")]
    recs = [Recorder(w) for w in workers]
    threads = [threading.Thread(target=lambda w=w: [None for _ in iter(w.run_once, False)]) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    written = [set(r.written) for r in recs]
    assert not written[0] & written[1] and written[0] | written[1] == set(ids)
    assert all(store.get(v)["status"] == "completed" and store.get(v)["attempts"] == 1 for v in ids)


def test_concurrent_batch_claims_are_disjoint(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    ids = text_jobs(store, 40)
    got = {"a": [], "b": []}

    def claimer(name):
        s = JobStore(tmp_path / "jobs.sqlite")
        while (row := s.claim(name)) is not None:
            got[name] += [row["id"]] + [r["id"] for r in s.claim_like(name, row, 3, accept=is_text_job)]
    threads = [threading.Thread(target=claimer, args=(n,)) for n in got]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(got["a"] + got["b"]) == sorted(ids)               # every job once, none twice
    assert all(store.get(v)["claimed_by"] == name for name, vids in got.items() for v in vids)


def test_a_batch_that_fails_renders_its_jobs_alone(worker):
    ids = text_jobs(worker.store, 2)
    rec = Recorder(worker)
    backend = worker.backend("m")

    def broken(requests, progress=None):
        rec.batches.append([r.prompt for r in requests])
        raise RuntimeError("out of memory")
    backend.generate_batch = broken
    assert worker.run_once()
    assert len(rec.batches) == 1 and rec.singles == PROMPTS[:2]
    assert [worker.store.get(v)["status"] for v in ids] == ["completed", "completed"]


def test_native_backend_batches_plain_text_to_video_only(tiny_model_dir):
    from dataclasses import replace

    from cinegen import requests as R
    from cinegen.backends.native import NativeBackend
    from cinegen.config import SampleConfig
    backend = NativeBackend.from_pretrained(tiny_model_dir)
    cfg = SampleConfig(seconds=1, width=32, height=32, steps=2)
    text = R.Text(prompt="a red ball", sample=cfg)
    assert backend.batch_key(text) == backend.batch_key(R.Text(prompt="a blue box", sample=replace(cfg, seed=9)))
    assert backend.batch_key(text) != backend.batch_key(R.Text(prompt="a red ball", sample=replace(cfg, steps=3)))
    for alone in (R.Text(prompt="a", sample=replace(cfg, seconds=5)), R.Text(prompt="a", sample=replace(cfg, cache=0.1)),
                  R.Animate(prompt="a", image=np.zeros((32, 32, 3), np.uint8), sample=cfg),
                  R.Image(prompt="a", sample=cfg)):
        assert backend.batch_key(alone) is None
    with pytest.raises(ValueError, match="batch_key"):
        backend.generate_batch([text, R.Text(prompt="a", sample=replace(cfg, steps=3))])


@pytest.mark.parametrize("batch, jobs", [(1, 4), (4, 4), (4, 1)])
def test_each_job_is_prepared_once(tmp_path, tiny_model_dir, batch, jobs):
    """The worker reads a job's batch key from the job as prepared, and renders that same prepared request."""
    w = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, batch=batch, batch_wait=0)
    ids = text_jobs(w.store, jobs)
    backend = w.backend("m")
    prepare, prepared = backend.prepare, []

    def counting(request, unset=frozenset()):
        prepared.append(request.prompt)
        return prepare(request, unset)
    backend.prepare = counting
    rec = Recorder(w)
    while w.run_once():
        pass
    assert sorted(prepared) == sorted(PROMPTS[:jobs])                  # every job, each once
    assert len(rec.batches) == (1 if batch > 1 and jobs > 1 else 0)
    assert {w.store.get(v)["status"] for v in ids} == {"completed"}
    assert [w.store.get(v)["batch_size"] for v in ids] == [min(batch, jobs)] * jobs


@pytest.mark.parametrize("batch", [1, 2])
def test_a_worker_that_lost_its_job_leaves_the_files_of_the_worker_that_took_it(tmp_path, tiny_model_dir, batch):
    """A worker whose job was taken back while it rendered (it looked dead) drops its result and removes nothing:
    the job's files in place are those of the worker that took the job over and completed it."""
    a = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, batch=batch, batch_wait=0, worker_id="a")
    b = Worker(tmp_path, {"m": tiny_model_dir}, steps=2, batch=1, worker_id="b")
    ids = text_jobs(a.store, batch)
    backend = a.backend("m")
    generate, generate_batch = backend.generate, backend.generate_batch

    def taken_away(videos):          # meanwhile the first job went back to the queue and b rendered it
        assert a.store.requeue("a", ids[0]) == 1 and b.run_once()
        return videos
    backend.generate = lambda request, progress=None: taken_away(generate(request, progress=progress))
    backend.generate_batch = lambda requests, progress=None: taken_away(generate_batch(requests, progress=progress))
    assert a.run_once()
    rows = [a.store.get(v) for v in ids]
    assert [(r["status"], r["claimed_by"]) for r in rows] == [("completed", "b")] + [("completed", "a")] * (batch - 1)
    assert all((video_dir(tmp_path, v) / "video.mp4").is_file() for v in ids)


# --- start estimates: the queued jobs ahead grouped into the batches the workers render them in ---

KEY, OTHER = ("m", "32x32", "1"), ("m", "64x32", "1")
NOW, ONE = 1000.5, 20.0   # a clock half past a second (a sum off by a rounding never crosses one); a job alone


def queue(keys, owner="s", owners=None, rendering=()):
    return QueueState([Queued(owner, seq, key) for seq, key in enumerate(keys)], owners or {}, list(rendering), ONE)


def starts(state, batch, workers=1, batches=always):
    """(place, estimated start) of every queued job, in queue order."""
    return [state.place(job.owner, job.seq, workers, NOW, batch, batches) for job in state.queued]


def at(seconds: float) -> int:
    """The estimate of a start `seconds` from now."""
    return int(NOW + seconds)


def test_the_batch_cost_model_is_the_measured_batch_speed_up():
    assert batch_cost(1) == 1.0
    assert batch_cost(4) == pytest.approx(4 / 1.71, rel=0.01)       # BENCHMARKS.md (j): 1.71x jobs/hour at batch 4


def test_batching_workers_start_queued_compatible_jobs_sooner_as_the_cost_model_says():
    state = queue([KEY] * 8)
    alone, batched = starts(state, 1), starts(state, 4)
    assert alone == [(i, at(i * ONE)) for i in range(8)]
    after_first = at(ONE * batch_cost(4))                             # the second batch starts once the first is done
    assert batched == [(i, at(0)) for i in range(4)] + [(i, after_first) for i in range(4, 8)]
    assert batched[0] == alone[0] and all(b[1] < a[1] for a, b in zip(alone[1:], batched[1:]))
    assert starts(state, 2) == [(i, at((i // 2) * ONE * batch_cost(2))) for i in range(8)]


def test_incompatible_jobs_do_not_batch_in_the_estimate():
    """Jobs of another key (size, seconds, model) batch only among themselves; a job that is not plain
    text-to-video (key None) and every job of a model that does not batch render alone."""
    state = queue([KEY, OTHER, KEY, OTHER, KEY, None, KEY, OTHER])
    first, second = ONE * batch_cost(4), ONE * (batch_cost(4) + batch_cost(3))
    when = [0, first, 0, first, 0, second, 0, first]
    place = [0, 4, 1, 5, 2, 7, 3, 6]                                  # KEY's four, OTHER's three, then the lone job
    assert starts(state, 4) == [(p, at(t)) for p, t in zip(place, when)]
    assert starts(state, 4, batches=lambda key: False) == starts(state, 1)


def test_batch_1_keeps_the_one_job_a_worker_estimates():
    """Two workers, one busy for 6 s more with an owner's job: the other owner's job goes first on the free one,
    then one job per job's time on whichever frees first (the estimate before batching)."""
    state = QueueState([Queued("a", 1, KEY), Queued("a", 2, KEY), Queued("b", 3, KEY)], {"a": (1, 5.0)},
                       [(NOW - (ONE - 6), 1)], ONE)
    assert starts(state, 1, workers=2) == [(1, at(6)), (2, at(ONE)), (0, at(0))]
    assert [state.position(o, s) for o, s, _ in state.queued] == [1, 2, 0]


def test_a_rendering_batch_frees_its_worker_after_the_batch_cost():
    state = queue([KEY], rendering=[(NOW - 5, 3)])                    # one worker on a batch of 3 for 5 s
    assert starts(state, 4) == [(0, at(ONE * batch_cost(3) - 5))]


def test_the_store_reads_keys_batches_and_each_jobs_time_alone(tmp_path):
    store = JobStore(tmp_path / "jobs.sqlite")
    done = text_jobs(store, 4)
    rows = [store.claim("w")] + store.claim_like("w", store.get(done[0]), 3)
    assert [r["id"] for r in rows] == done
    [(since, jobs)] = store.queue_state().rendering
    assert jobs == 4 and since == min(r["started_at"] for r in rows)
    for vid in done:
        store.finish(vid, "w", batch=4)
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:            # the batch took 47 s: 20 s a job alone
        db.execute("UPDATE videos SET started_at = completed_at - ?", (ONE * batch_cost(4),))
    (tmp_path / "still.png").write_bytes(b"")
    queued = text_jobs(store, 2) + text_jobs(store, 1, size="64x32") + [
        store.create("s", "m", PROMPTS[0], "1", "32x32", "create", {"input_reference": str(tmp_path / "still.png")})["id"]]
    state = store.queue_state()
    assert state.duration == pytest.approx(ONE) and state.rendering == []
    assert [(j.seq, j.key) for j in state.queued] == [(store.get(v)["seq"], k) for v, k in
                                                      zip(queued, [KEY, KEY, ("m", "64x32", "1"), None])]


def test_queued_video_objects_estimate_with_the_servers_batch(tmp_path, tiny_model_dir):
    from fastapi.testclient import TestClient

    from cinegen.server.app import ModelSpec, ServerSettings, create_app
    store = JobStore(tmp_path / "jobs.sqlite")
    first = text_jobs(store, 1, owner="local")[0]                  # a server without API keys: one owner
    store.claim("w")
    store.finish(first, "w")
    with sqlite3.connect(tmp_path / "jobs.sqlite") as db:
        db.execute("UPDATE videos SET started_at = completed_at - ?", (ONE,))
    last = text_jobs(store, 8, owner="local")[-1]

    def estimate(batch):
        settings = ServerSettings(data_dir=tmp_path, models={"m": ModelSpec(tiny_model_dir, sizes=("32x32",))},
                                  batch=batch, queue_view_ttl=0)
        v = TestClient(create_app(settings)).get(f"/v1/videos/{last}").json()
        return v["queue_position"], v["estimated_start_at"] - v["created_at"]
    (place1, wait1), (place4, wait4) = estimate(1), estimate(4)
    assert place1 == place4 == 7
    assert 7 * ONE - 2 <= wait1 <= 7 * ONE + 2                        # seven jobs ahead, one at a time
    assert ONE * batch_cost(4) - 2 <= wait4 <= ONE * batch_cost(4) + 2   # one batch of four ahead
