"""A model folder's few-step adapter: `fewstep.safetensors`, LoRA deltas (models/lowrank.py) for its DiT and its
high-noise expert, distilled (training/distill.py) so that a few Euler steps without classifier-free guidance
draw what the guided many-step sampler draws. TextToVideo uses it on its own when a render asks for one of the
step counts it was distilled for, at its guidance, with the plain Euler solver; `SampleConfig.distilled=False`
(`--no-distilled`) keeps the plain sampler.

Keys: `dit.<layer>.lora_a|lora_b` and `dit_high.<layer>.lora_a|lora_b`. Metadata: kind = "fewstep", steps (the
step counts it serves, JSON), guidance (the teacher's scale, baked in), teacher (how the teacher sampled),
base (fingerprints of the DiT files it was distilled from: a retrained model does not silently take it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import SampleConfig
from cinegen.io.files import atomic_write
from cinegen.models.lowrank import merged
from cinegen.runtime import threads

FILE = "fewstep.safetensors"
PARTS = ("dit", "dit_high")          # the DiT files an adapter may adapt (dit_high: the high-noise expert)


def fingerprint(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256: which base weights an adapter belongs to."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class FewStepInfo:
    steps: tuple[int, ...]          # the step counts the adapter serves
    guidance: float                 # the teacher's classifier-free guidance, now baked into the adapter
    teacher: dict                   # {"steps", "solver"} of the teacher runs it was distilled from
    base: dict                      # {"dit": fingerprint, "dit_high": fingerprint}

    def serves(self, cfg: SampleConfig, plain: bool) -> bool:
        """Whether a render runs on the adapter: a plain text render (no conditioning frames, no SDEdit source:
        the distillation saw none; forced onto the modes, 4 distilled steps lost 25 points on edit and 5 on
        animate against 20 guided steps, 16 scenes each, 2026-12-07) at a distilled step count, with the
        guidance it baked in and no other knob the adapter cannot honour (a negative prompt, a separate
        high-noise guidance, the step cache)."""
        return (cfg.distilled and plain and cfg.steps in self.steps and cfg.solver == "euler"
                and cfg.guidance == self.guidance and cfg.guidance_high is None and not cfg.negative_prompt
                and cfg.cache == 0)


def save_fewstep(path: Path, parts: dict[str, dict[str, torch.Tensor]], info: FewStepInfo) -> None:
    """parts: {"dit": lora tensors, "dit_high": ...}; stored in fp16 (a LoRA delta needs no more)."""
    tensors = {f"{part}.{k}": v.detach().to(torch.float16).contiguous() for part, t in parts.items() for k, v in t.items()}
    meta = {"kind": "fewstep", "steps": json.dumps(list(info.steps)), "guidance": repr(info.guidance),
            "teacher": json.dumps(info.teacher), "base": json.dumps(info.base)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def read_info(path: Path) -> FewStepInfo:
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("kind") != "fewstep":
        raise ValueError(f"{path} is not a few-step adapter (no kind = 'fewstep' metadata)")
    return FewStepInfo(tuple(json.loads(meta["steps"])), float(meta["guidance"]), json.loads(meta["teacher"]),
                       json.loads(meta["base"]))


def load_parts(path: Path) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    with safe_open(str(path), framework="pt") as f:
        for key in f.keys():
            part, _, rest = key.partition(".")
            out.setdefault(part, {})[rest] = f.get_tensor(key)
    return out


class FewStep:
    """The adapter of one model folder: its facts read at once, its tensors merged on first use."""

    def __init__(self, folder: Path):
        self.folder, self.path = Path(folder), Path(folder) / FILE
        self.info = read_info(self.path)
        self._students = None

    @classmethod
    def find(cls, folder: Path) -> FewStep | None:
        return cls(folder) if (Path(folder) / FILE).is_file() else None

    def students(self, dit, high):
        """(the adapted DiT, the adapted high-noise expert or None), merged once. Refuses an adapter distilled
        from other weights than this folder's."""
        if self._students is None:
            for part in PARTS:
                want, base = self.info.base.get(part), self.folder / f"{part}.safetensors"
                have = fingerprint(base) if base.is_file() else None
                if want != have:
                    raise ValueError(f"{self.path} was distilled from other {part} weights ({want}) than "
                                     f"{self.folder}'s ({have}); retrain it or render with --no-distilled")
            parts = load_parts(self.path)
            with threads(1):                # weight copies and sums, memory-bound: as loading does them
                self._students = (merged(dit, parts.get("dit", {})),
                                  None if high is None else merged(high, parts.get("dit_high", {})))
        return self._students
