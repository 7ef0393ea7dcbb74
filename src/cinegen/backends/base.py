"""The one interface every model runs behind: what it can do, and `generate(request, progress)`.

A backend declares its capabilities (modes, frame rate, size and frame rules) so that the CLI, the server and
the studio can refuse a request it cannot serve before any work starts, with a message naming what it can.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from cinegen.geometry import Geometry
from cinegen.requests import Request


@dataclass(frozen=True)
class Capabilities:
    modes: tuple[str, ...]              # keys of requests.MODES
    geometry: Geometry                  # frame grid, size multiples, native fps

    def check_mode(self, request: Request, name: str) -> None:
        if request.mode not in self.modes:
            raise ValueError(f"model {name} cannot do {request.mode!r}; it can do: {', '.join(self.modes)}")


class VideoBackend(Protocol):
    name: str
    capabilities: Capabilities

    def prepare(self, request: Request, unset=frozenset()) -> tuple[Request, list[str]]:
        """The request as this model renders it, and a warning for each change: its own defaults for the
        SampleConfig fields named in `unset` (those the user left alone), a duration rounded to its frame grid."""

    def check(self, request: Request) -> None:
        """Raises ValueError naming what this model cannot render of `request` (mode, size, solver, ...)."""

    def check_size(self, width: int, height: int) -> None:
        """Raises ValueError naming a size this model cannot render, and the sizes near it that it can."""

    def size_for(self, width: int, height: int) -> tuple[int, int]:
        """The size this model renders nearest to (width, height): the same where it can render that."""

    def warnings(self, request: Request) -> list[str]:
        """One-line warnings about what of the request the model cannot follow (vocabulary.prompt_warnings: words
        it never trained on, a prompt past its text window); rendering goes ahead. Empty when there are none."""

    def generate(self, request: Request, progress=None) -> np.ndarray:
        """The video (T, H, W, 3) uint8 (an Image request: (H, W, 3)). progress: runtime.report's one callback;
        raising from it cancels the render within one sampling step."""

    def batch_key(self, request: Request) -> Hashable | None:
        """Requests with equal keys may render together in one generate_batch call, each getting what `generate`
        gives it alone (its own prompt and seed); None: this request renders alone (a backend that does not batch
        answers None for every request)."""

    def generate_batch(self, requests: list[Request], progress=None) -> list[np.ndarray]:
        """One video per request, in one batched call; every request has the same non-None batch_key. progress:
        as generate's, once for the whole batch. (A backend whose batch_key is always None never gets this call.)"""
