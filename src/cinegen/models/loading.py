"""Reading cinegen's model files: one safetensors file per component holding weights, EMA, optimizer tensors and
JSON metadata (training/checkpoint.py writes them). The inference path loads models from here and never from
training code.

Layout of keys: `model.*`, `ema.*`, `optim.<param index>.<state name>`, and `qscale.*` for weights stored as
int8 (shipped files only: training.checkpoint.quantize_int8); metadata: `kind`, `config` (the component config as
JSON), `step`, `optim_groups`, `extra`. No pickle anywhere. Prefixes added by DDP (`module.`) and torch.compile
(`_orig_mod.`) are stripped here and only here.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open

from cinegen.config import DiTConfig, FlowConfig, VAEConfig, from_dict
from cinegen.models.dit import VideoDiT
from cinegen.models.vae import VideoVAE
from cinegen.runtime import threads


def load_checkpoint(path) -> dict:
    """Returns {kind, config (dict), step, extra, model, ema, optim} with state dicts split by prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    out: dict = {"model": {}, "ema": {}, "optim": {}, "qscale": {}}
    with safe_open(str(path), framework="pt") as f, _one_thread():
        meta = f.metadata() or {}
        for key in f.keys():
            prefix, _, rest = key.partition(".")
            if prefix in out:
                out[prefix][_strip_prefixes(rest)] = f.get_tensor(key)
    if "kind" not in meta:
        raise ValueError(f"{path} is not a cinegen checkpoint (no 'kind' metadata)")
    with _one_thread():
        _dequantize(out["model"], out.pop("qscale"))
    out.update(kind=meta["kind"], config=json.loads(meta["config"]), step=int(meta.get("step", 0)),
               extra=json.loads(meta.get("extra", "{}")), optim_groups=json.loads(meta.get("optim_groups", "null")))
    return out


def read_meta(path) -> tuple[int, dict]:
    """A checkpoint's step and `extra` metadata, without loading its tensors (a resume check or an export
    reading a 288 MB training checkpoint)."""
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return int(meta.get("step", 0)), json.loads(meta.get("extra", "{}"))


def read_extra(path) -> dict:
    return read_meta(path)[1]


def _dequantize(weights: dict, scales: dict) -> None:
    for k, scale in scales.items():
        q = weights[k]
        weights[k] = q.float().mul_(scale.float().view(-1, *[1] * (q.ndim - 1)))           # (O, I...) * (O, 1...)


def _one_thread():
    """Copies and casts of weights on one thread: they are memory-bound, and on a busy CPU a second thread makes
    every small op wait for the slower one (a shipped DiT loaded in 1.2 s on two threads, 0.1 s on one)."""
    return threads(1)


def _strip_prefixes(key: str) -> str:
    for p in ("module.", "_orig_mod."):
        key = key.replace(p, "")
    return key


def _checked(path, kind: str, label: str) -> dict:
    ck = load_checkpoint(path)
    if ck["kind"] != kind:
        raise ValueError(f"{path} holds a {ck['kind']!r} checkpoint, not a {label}")
    return ck


def load_dit(path, device="cpu", raw: bool = False) -> tuple[VideoDiT, FlowConfig]:
    """The EMA weights (or, raw=True, a training checkpoint's last-step weights) and the noise schedule.
    An exported file holds one set of weights (the EMA it was exported from): both give that."""
    ck = _checked(path, "dit", "DiT")
    with torch.device("meta"):              # no random init of weights that are loaded next (0.4 s per DiT on a CPU)
        model = VideoDiT(from_dict(DiTConfig, ck["config"]))
    with _one_thread():
        state = {k: v.float() for k, v in (ck["model"] if raw else (ck["ema"] or ck["model"])).items()}
    model.load_state_dict(state, assign=True)          # strict: every parameter comes from the file
    flow = from_dict(FlowConfig, ck["extra"].get("flow", {}))
    model.extra = ck["extra"]           # holdout list and training facts, for eval and the model card
    return model.to(device).eval(), flow


def load_vae(path, device="cpu") -> VideoVAE:
    ck = _checked(path, "vae", "VAE")
    with torch.device("meta"):              # as load_dit: no random init of weights that are loaded next
        vae = VideoVAE(from_dict(VAEConfig, ck["config"]))
    with _one_thread():
        state = {k: v.float() for k, v in (ck["ema"] or ck["model"]).items()}
    vae.load_state_dict(state, assign=True)
    return vae.to(device).eval()
