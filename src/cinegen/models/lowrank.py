"""Low-rank adapters as plain nn.Modules (LoRA, Hu et al. 2021) on a model's nn.Linear layers: W' = W + scale * B @ A.

The few-step adapter (models/fewstep.py, trained by training/distill.py) uses these; adapters of one's own footage
are peft adapters in diffusers' file layout (training/lora.py writes them, models/lora.py merges them).

Training wraps each Linear in a LoRALinear (the base weights frozen, B starts at zero so the wrapped model computes
exactly what the base did); inference merges the trained deltas into a copy of the base model, so an adapted
model runs as fast as the original. Tensors are keyed `<module path>.lora_a` (r, in) and `<module path>.lora_b`
(out, r).
"""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable rank-r update."""

    def __init__(self, base: nn.Linear, rank: int, scale: float = 1.0):
        super().__init__()
        self.base, self.scale = base, scale
        for p in base.parameters():
            p.requires_grad_(False)
        self.lora_a = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_b = nn.Parameter(torch.zeros(base.out_features, rank))       # zero: starts as the base model
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))                   # as nn.Linear (and peft) initialise A

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.scale * ((x @ self.lora_a.t()) @ self.lora_b.t())


def linear_names(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]


def add_lora(model: nn.Module, rank: int) -> list[nn.Parameter]:
    """Wraps every Linear of `model` in place; freezes everything else. Returns the trainable parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = []
    for name in linear_names(model):
        parent, _, child = name.rpartition(".")
        holder = model.get_submodule(parent) if parent else model
        wrapped = LoRALinear(getattr(holder, child), rank)
        setattr(holder, child, wrapped)
        params += [wrapped.lora_a, wrapped.lora_b]
    return params


def lora_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter tensors of a model wrapped by add_lora, keyed by the wrapped Linear's path."""
    return {f"{name}.{kind}": getattr(m, kind).detach().clone()
            for name, m in model.named_modules() if isinstance(m, LoRALinear) for kind in ("lora_a", "lora_b")}


def merged(model: nn.Module, tensors: dict[str, torch.Tensor], scale: float = 1.0) -> nn.Module:
    """A copy of `model` with the adapter merged into its weights (the original is left as it was). The copy
    shares every tensor the adapter does not change with the original (copying them too took three times as long);
    an adapted layer gets a new weight, never an in-place sum."""
    out = copy.deepcopy(model, {id(t): t for t in (*model.parameters(), *model.buffers())})
    names = set(linear_names(out))
    paths = {k.rpartition(".")[0] for k in tensors}
    unknown = sorted(paths - names)
    if unknown:
        raise ValueError(f"the adapter names layers this model lacks: {', '.join(unknown[:3])}")
    with torch.no_grad():
        for path in sorted(paths):
            layer = out.get_submodule(path)
            a, b = tensors[f"{path}.lora_a"].float(), tensors[f"{path}.lora_b"].float()
            if a.shape[1] != layer.in_features or b.shape[0] != layer.out_features:
                raise ValueError(f"adapter layer {path} is {b.shape[0]}x{a.shape[1]}, the model's is "
                                 f"{layer.out_features}x{layer.in_features}")
            layer.weight = nn.Parameter(layer.weight + scale * (b @ a).to(layer.weight.dtype),
                                        requires_grad=layer.weight.requires_grad)
    return out
