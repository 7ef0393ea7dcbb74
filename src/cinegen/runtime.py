"""What every long job needs at run time, in the lowest layer so that inference, data and training share it:
the device, bf16 autocast, and the one progress bar."""

from __future__ import annotations

import contextlib
import math
import os
import time

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def default_device() -> str:
    """The GPU when there is one: a studio's GPU machine should not sample on its CPU unless asked to."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(device: torch.device, precision: str = "auto") -> bool:
    """Whether to run in bf16 autocast. auto: on CUDA when the GPU has bf16; on a CPU only with AMX tiles (Intel
    Sapphire Rapids and later), where bf16 matmuls ran 3.8x fp32 and a VAE step 2x (docs/history.md "Seventh
    session"; `make bench` (g)); other CPUs emulate bf16 or gain little, so they stay in fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"bad precision {precision!r}: expected one of {PRECISIONS}")
    if precision != "auto":
        return precision == "bf16"
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    amx = getattr(torch.cpu, "_is_amx_tile_supported", None)      # private in torch 2.13; fp32 if it goes away
    return device.type == "cpu" and amx is not None and amx()


def autocast(device: torch.device, precision: str | None = None):
    """bf16 autocast where `use_bf16(device, precision)` says so; training loops pass their TrainConfig.precision.
    None (sampling) keeps every CPU in fp32 whatever its chip: a CFG pass at 64x64 is no faster in bf16 there
    (0.93x, `make bench` (g)), and fp32 keeps a seed's video the same on every CPU."""
    if precision is None:
        precision = "auto" if device.type == "cuda" else "fp32"
    if use_bf16(device, precision):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


@contextlib.contextmanager
def threads(n: int):
    """torch's intra-op threads set to n for a block, then back to what they were."""
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


_IMPORTED = time.monotonic()


def _process_age() -> float:
    """Seconds since this process started (Linux: /proc; elsewhere: since this module was imported)."""
    try:
        ticks = int(open("/proc/self/stat").read().rsplit(")", 1)[1].split()[19])      # field 22: starttime
        return float(open("/proc/uptime").read().split()[0]) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return time.monotonic() - _IMPORTED


def idle_cores() -> float:
    """Cores the rest of the machine leaves idle: the CPU count less the 1-minute load average, with this
    process's own part of that average taken out (its CPU rate so far, damped as the load average damps it: a
    process seconds old has barely entered it). Linux and macOS; elsewhere every core."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return float(os.cpu_count() or 1)
    age = max(_process_age(), 1e-3)
    own = time.process_time() / age * (1 - math.exp(-age / 60))
    return (os.cpu_count() or 1) - max(0.0, load - own)


def sampling_threads(device: torch.device):
    """The intra-op threads of a render on a CPU: as many as idle_cores() leaves, at least 1, at most torch's own
    count. A CPU pass of a small DiT is hundreds of small ops, each ending in a barrier where every thread waits
    for the slowest: on a busy 2-core machine (load ~10) 20 steps at 64x64 took 23.9 s on two threads and 3.3 s
    on one. An idle machine keeps every thread; $OMP_NUM_THREADS, when set, is obeyed as it is; GPUs untouched."""
    if device.type != "cpu" or os.environ.get("OMP_NUM_THREADS"):
        return contextlib.nullcontext()
    return threads(min(torch.get_num_threads(), int(idle_cores() + 0.5)))


def precision_label(device: torch.device, precision: str) -> str:
    """For a run's first log line: what `--precision auto` chose on this machine."""
    return f"{'bf16 autocast' if use_bf16(device, precision) else 'fp32'} (--precision {precision})"


def progress_bar(disable: bool = False):
    """The one rich progress bar of every long job (rendering, caching, training, evaluation): a rich Progress."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("{task.fields[status]}"), TimeRemainingColumn(), disable=disable)


# --- The one progress callback ---
# Every long call (a sampling pass, a mode, a storyboard, a server job) reports through one function of one dict:
#   {"phase": "sampling" | "decoding" | "window 2/3" | "shot 4" | ..., "step": done so far, "steps": the total}
# (a sampler adds "t"). The CLI draws it as a bar, the server turns it into heartbeats and percent, and raising
# from it (a deleted job) cancels the call within one step.


def report(progress, phase: str, step: int, steps: int, **extra) -> None:
    """Calls `progress` (None: nothing) with the one dict."""
    if progress is not None:
        progress({"phase": phase, "step": step, "steps": steps, **extra})


def part(progress, index: int, count: int, phase: str | None = None):
    """The callback for part `index` of `count` equal parts of a call (windows of a long video, the passes of a
    loop): its steps count towards the whole, so a bar or a heartbeat moves once from 0 to 100%."""
    if progress is None:
        return None

    def sub(d: dict) -> None:
        progress({**d, "phase": phase or d["phase"], "step": index * d["steps"] + d["step"],
                  "steps": count * d["steps"]})
    return sub
