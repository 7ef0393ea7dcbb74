"""Optional stacks: the core install generates, trains and evaluates; the service, the studio, provenance marks
and open-weights peers each come with an extra (pyproject.toml's [project.optional-dependencies]).

A feature imports its optional packages through `require`, so a missing extra is one line naming it, e.g.
"cinegen serve needs the server extra: pip install 'cinegen[server]'". MissingExtra is a ValueError, so the
CLI reports it like any bad input (one red line, exit 2) and the server's handlers do too.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class MissingExtra(ValueError):
    """A feature's optional package is not installed."""

    def __init__(self, feature: str, extra: str, detail: str = ""):
        self.feature, self.extra = feature, extra
        super().__init__(f"{feature} needs the {extra} extra: pip install 'cinegen[{extra}]'{detail}")


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports and returns `module`, or raises MissingExtra naming `extra` (a key of pyproject's extras)."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # the package itself is absent: the extra is the fix; a broken dependency underneath it: say which
        missing = (e.name or "").split(".")[0]
        detail = "" if missing == module.split(".")[0] else f" ({type(e).__name__}: {e})"
        raise MissingExtra(feature, extra, detail) from e
