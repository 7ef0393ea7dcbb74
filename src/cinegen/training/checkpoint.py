"""Writing checkpoints (the layout is described, and read, in models/loading.py), resuming, and the int8 export
format. Writes go through io.files.atomic_write, so a crash never leaves a half-written checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import to_dict
from cinegen.io.files import atomic_write
from cinegen.models.loading import load_checkpoint


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The bare module under DDP / FSDP / torch.compile wrappers."""
    while hasattr(model, "module") or hasattr(model, "_orig_mod"):
        model = getattr(model, "module", None) or model._orig_mod
    return model


def save_checkpoint(path, kind: str, config, model, ema=None, optimizer=None, step: int = 0,
                    extra: dict | None = None, dtype: torch.dtype | None = None, model_state: dict | None = None,
                    int8: bool = False) -> None:
    """kind: "vae" or "dit". dtype: cast weights (e.g. bf16 for shipped files); optimizer state stays fp32.
    model_state: the weights to write instead of model.state_dict() (FSDP's gathered full weights).
    int8: store the model's large matrices as int8 with a scale per output row (quantize_int8)."""
    state = model_state if model_state is not None else unwrap(model).state_dict()
    quantized = quantize_int8(state) if int8 else {}
    tensors = {f"model.{k}": _cast(v, dtype) for k, v in state.items() if f"model.{k}" not in quantized}
    tensors.update(quantized)
    if ema is not None:
        tensors.update({f"ema.{k}": _cast(v, dtype) for k, v in ema.state_dict().items()})
    meta = {"kind": kind, "config": json.dumps(to_dict(config)), "step": str(step), "extra": json.dumps(extra or {})}
    if optimizer is not None:
        state = optimizer.state_dict()
        for idx, st in state["state"].items():
            tensors.update({f"optim.{idx}.{name}": torch.as_tensor(v).contiguous() for name, v in st.items()})
        meta["optim_groups"] = json.dumps(state["param_groups"])
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def quantize_int8(state: dict, min_numel: int = 4096) -> dict:
    """Weight-only symmetric int8 with one fp16 scale per output row, for matrices of at least min_numel entries.

    Returns {"model.<k>": int8 (O, ...), "qscale.<k>": fp16 (O,)}; load_checkpoint multiplies them back. Halves a
    shipped fp16 file; biases, norms and small tensors stay as they are. (Hand-written: torchao's int8 weight-only
    quantisation does this too, but as a runtime tensor subclass, not as a safetensors layout.)
    """
    out = {}
    for k, v in state.items():
        if v.is_floating_point() and v.ndim >= 2 and v.numel() >= min_numel:
            w = v.detach().float().flatten(1)                                            # (O, I...)
            scale = (w.abs().amax(1) / 127).clamp(min=1e-12)                             # (O,)
            out[f"model.{k}"] = (w / scale[:, None]).round().clamp(-127, 127).to(torch.int8).view(v.shape)
            out[f"qscale.{k}"] = scale.to(torch.float16)
    return out


def _cast(v: torch.Tensor, dtype):
    return v.to(dtype) if dtype is not None and v.is_floating_point() else v


def same_content(a: Path, b: Path) -> bool:
    """True when two safetensors files hold equal tensors and metadata. Their bytes can still differ: safetensors
    writes the metadata map in no fixed order, so a re-export of unchanged weights is never byte-identical."""
    if not (Path(a).is_file() and Path(b).is_file()):
        return False
    with safe_open(str(a), framework="pt") as fa, safe_open(str(b), framework="pt") as fb:
        if fa.metadata() != fb.metadata() or set(fa.keys()) != set(fb.keys()):
            return False
        return all(torch.equal(fa.get_tensor(k), fb.get_tensor(k)) for k in fa.keys())


def optimizer_state(ckpt: dict) -> dict | None:
    """Rebuilds a torch optimizer state_dict from a loaded checkpoint (None when it holds none)."""
    if ckpt["optim_groups"] is None:
        return None
    state: dict = {}
    for key, v in ckpt["optim"].items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = v
    return {"state": dict(sorted(state.items())), "param_groups": ckpt["optim_groups"]}


def resume_weights(path, model: torch.nn.Module, ema: torch.nn.Module) -> tuple[int, dict | None]:
    """Loads weights and EMA from `path` if it exists. Returns (step to continue from, optimizer state or None)."""
    if not Path(path).exists():
        return 0, None
    ck = load_checkpoint(path)
    try:
        unwrap(model).load_state_dict(ck["model"])
        ema.load_state_dict(ck["ema"])
    except RuntimeError as e:          # another run's checkpoint in this folder: say so, and keep it
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise ValueError(f"{path} is a checkpoint of another architecture ({first}); resume with the settings it "
                         f"was trained with, or give a new --out") from None
    return ck["step"], optimizer_state(ck)

