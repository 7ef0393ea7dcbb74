"""Backends: every model cinegen runs, behind one interface (base.VideoBackend). `load_backend` picks one."""

from cinegen.backends.base import Capabilities, VideoBackend
from cinegen.backends.registry import load_backend

__all__ = ["Capabilities", "VideoBackend", "load_backend"]
