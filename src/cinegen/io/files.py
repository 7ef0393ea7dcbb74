"""Writes that matter: to a temp file in the same folder, then renamed into place, so a crash never leaves a
half-written file, and with the permissions the process's umask gives a new file (as `open(path, "w")` would),
not the 0600 that `tempfile.mkstemp` creates."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def current_umask() -> int:
    """The process's umask, read without changing it where Linux says it (/proc); elsewhere set and restored."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write) -> None:
    """Calls write(tmp_path) then renames tmp onto path (atomic on POSIX within one filesystem). The result has
    mode 0666 & ~umask, like any file the process creates, so a service's group can read its outputs."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
