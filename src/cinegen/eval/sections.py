"""What every benchmark report shares: the machine it ran on, and sections of a markdown report that one tool
owns (between <!-- NAME:start --> and <!-- NAME:end -->), written in place so that the others stay as they are."""

from __future__ import annotations

import platform
from pathlib import Path

import torch


def machine() -> str:
    import os
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores visible, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{gpu}, Python {platform.python_version()}")


def kept_sections(out: Path, skip: tuple[str, ...] = ()) -> list[str]:
    """Sections other tools own (between <!-- NAME:start --> and <!-- NAME:end -->, e.g. bench_server's): kept
    as they are when this benchmark rewrites the file (but those named in `skip`: this run wrote them anew)."""
    import re
    text = Path(out).read_text() if Path(out).exists() else ""
    found = re.finditer(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", text, flags=re.S)
    return [line for m in found if m.group(1) not in skip for line in (*m.group(0).splitlines(), "")]


def replace_section(out: Path, name: str, lines: list[str]) -> None:
    """Writes one marked section (lines from <!-- name:start --> to <!-- name:end -->) in place of its old copy in
    `out`, or at its end; the rest of the file is left as it is."""
    from cinegen.io.files import atomic_write
    text = Path(out).read_text() if Path(out).exists() else "# Benchmarks\n"
    start, end, block = f"<!-- {name}:start -->", f"<!-- {name}:end -->", "\n".join(lines)
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    atomic_write(out, lambda tmp: Path(tmp).write_text(text))
