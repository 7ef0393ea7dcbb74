"""Side-by-side timing shared by the benchmarks: calls interleaved so that a busy machine slows each alike."""

from __future__ import annotations

import statistics
import time


def interleaved(fns: dict, repeats: int = 7, warmup: int = 2, sync=None) -> dict[str, float]:
    """Median seconds per call of each fn, timed in alternation so drift hits all of them equally.

    sync: called before reading the clock (torch.cuda.synchronize on a GPU, whose work is asynchronous)."""
    sync = sync or (lambda: None)
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {k: [] for k in fns}
    for i in range(repeats):
        # the order flips every round: a call right after another one's runs on warmer or cooler caches
        for k, fn in (fns.items() if i % 2 == 0 else reversed(fns.items())):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[k].append(time.perf_counter() - start)
    return {k: statistics.median(v) for k, v in times.items()}
