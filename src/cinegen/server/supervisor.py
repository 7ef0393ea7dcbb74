"""Render worker processes under supervision (what `cinegen serve` runs next to the HTTP app).

- A worker that dies (a crash, the OOM killer, SIGKILL) is seen within `check_every` seconds: its job goes back to
  the queue at once (its lease is released, not left to go stale) and a new worker takes its place.
- shutdown() (the server got SIGTERM or SIGINT): every worker is asked to stop (SIGTERM: finish the job in hand,
  claim no other); one still busy after `grace` seconds is asked again (a second SIGTERM: give the job back to the
  queue within one sampling step); one that still has not exited is killed and its job requeued. No child
  process outlives the server: each also asks the kernel for SIGTERM should the server itself die (PR_SET_PDEATHSIG),
  and the resource tracker process that multiprocessing starts next to them is stopped and reaped last.

PR_SET_PDEATHSIG fires when the *thread* that started the child ends, not the process: replacements are started by
the watcher thread, so it stays alive (and never dies of an error) until shutdown has ended every worker.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
from pathlib import Path

from cinegen import defaults
from cinegen.server.store import JobStore

log = logging.getLogger(__name__)
PR_SET_PDEATHSIG = 1


def run_worker_process(data_dir: Path, models: dict, steps: int, stale_after: float, database: str | None,
                       worker_id: str | None = None, parent: int | None = None, batch: int = defaults.BATCH,
                       batch_wait: float = defaults.BATCH_WAIT) -> None:
    """A worker process's main. SIGTERM once: stop after the current job; twice: requeue it within a sampling
    step. SIGINT the same for a worker of its own (`cinegen worker`); a supervised one leaves SIGINT (a terminal's
    Ctrl-C reaches the whole process group) to its parent."""
    from cinegen.server.worker import Worker
    if parent is not None:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
        _die_with_parent(parent)
    worker = Worker(data_dir, models, steps=steps, worker_id=worker_id, stale_after=stale_after, database=database,
                    batch=batch, batch_wait=batch_wait)

    def on_term(*_):
        (worker.abort if worker.stop.is_set() else worker.stop).set()
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.SIG_IGN if parent is not None else on_term)
    worker.run_forever()
    worker.store.requeue(worker.worker_id)       # a job given back by abort is already queued; this is a no-op then


def _die_with_parent(parent: int) -> None:
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):              # not Linux: the supervisor's shutdown still ends us
        return
    if os.getppid() != parent:                     # the parent died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    def __init__(self, data_dir: Path, models: dict, count: int, steps: int, stale_after: float = 60.0,
                 database: str | None = None, check_every: float = 0.5, batch: int = defaults.BATCH,
                 batch_wait: float = defaults.BATCH_WAIT):
        self.args = (data_dir, models, steps, stale_after, database)
        self.batching = {"batch": batch, "batch_wait": batch_wait}
        self.store = JobStore(database or Path(data_dir) / "jobs.sqlite", stale_after=stale_after)
        self.count, self.check_every = count, check_every
        self.procs: dict[str, mp.Process] = {}
        self.started = 0
        self.restarts = 0
        self._unreleased: set[str] = set()          # dead workers whose jobs are not yet back in the queue
        self._stop, self._finished = threading.Event(), threading.Event()
        self._lock = threading.Lock()
        self._watcher: threading.Thread | None = None

    def _spawn(self) -> None:
        self.started += 1
        worker_id = f"{socket.gethostname()}:{os.getpid()}:w{self.started}"
        p = mp.get_context("spawn").Process(target=run_worker_process, args=(*self.args, worker_id, os.getpid()),
                                            kwargs=self.batching, name=worker_id)
        p.start()
        self.procs[worker_id] = p

    def start(self) -> "Supervisor":
        with self._lock:
            for _ in range(self.count):
                self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="cinegen-supervisor", daemon=True)
        self._watcher.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(self.check_every):
            try:
                self._replace_dead()
            except Exception:                  # a busy database, a failed start: the next round tries again
                log.exception("supervising the workers failed; trying again")
        self._finished.wait()                  # our replacements get PR_SET_PDEATHSIG when this thread ends

    def _replace_dead(self) -> None:
        """Reaps dead workers, starts one per missing worker, then gives their jobs back to the queue (a failure
        of either is retried next round: neither waits on the other)."""
        with self._lock:
            if self._stop.is_set():
                return
            for worker_id, p in list(self.procs.items()):
                if not p.is_alive():
                    p.join()
                    del self.procs[worker_id]
                    self._unreleased.add(worker_id)
                    self.restarts += 1
                    log.warning("worker %s exited (code %s); starting a new one", worker_id, p.exitcode)
            while len(self.procs) < self.count:
                self._spawn()
            for worker_id in sorted(self._unreleased):
                log.warning("%d job(s) of worker %s back in the queue", self.store.requeue(worker_id), worker_id)
                self._unreleased.discard(worker_id)

    def shutdown(self, grace: float = 30.0, abort_wait: float = 15.0) -> None:
        """Stops every worker: finish within `grace`, else requeue within `abort_wait`, else killed."""
        self._stop.set()
        with self._lock:                       # a replacement being started is in self.procs once we hold it
            procs = dict(self.procs)
        try:
            self._stop_workers(procs, grace, abort_wait)
        finally:
            self._finished.set()
            if self._watcher is not None:
                self._watcher.join(timeout=5)
        if not any(p.is_alive() for p in procs.values()):
            _stop_resource_tracker()

    def _stop_workers(self, procs: dict[str, mp.Process], grace: float, abort_wait: float) -> None:
        for p in procs.values():
            _signal(p, signal.SIGTERM)
        _join_all(procs.values(), grace)
        late = [p for p in procs.values() if p.is_alive()]
        for p in late:
            log.warning("worker %s still busy after %gs: its job goes back to the queue", p.name, grace)
            _signal(p, signal.SIGTERM)
        _join_all(late, abort_wait)
        for p in procs.values():
            if p.is_alive():
                p.kill()
            p.join(timeout=10)
        for worker_id in {*procs, *self._unreleased}:
            self.store.requeue(worker_id)
        self.procs.clear()


def _stop_resource_tracker(wait: float = 5.0) -> None:
    """multiprocessing's resource tracker (started with the first spawned worker) exits on its own only once it
    reads EOF on its pipe, a moment after the server is gone: close our end and reap it now, so nothing outlives
    the server. With every worker gone nothing else holds the pipe; one that still does gets it killed."""
    from multiprocessing import resource_tracker
    tracker = resource_tracker._resource_tracker
    try:
        with tracker._lock:
            fd, pid, tracker._fd, tracker._pid = tracker._fd, tracker._pid, None, None
    except AttributeError:                         # another Python's internals: it exits on EOF by itself
        return
    if fd is None or pid is None:
        return
    os.close(fd)
    deadline = time.monotonic() + wait
    try:
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)       # it blocks SIGTERM and SIGINT
                os.waitpid(pid, 0)
                return
            time.sleep(0.01)
    except ChildProcessError:                      # already reaped
        pass


def _signal(p: mp.Process, sig: int) -> None:
    try:
        if p.pid is not None and p.is_alive():
            os.kill(p.pid, sig)
    except ProcessLookupError:
        pass


def _join_all(procs, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
