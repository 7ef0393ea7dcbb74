"""LoRA adapters for cinegen's DiT at inference: read an adapter file, check that it was trained on this very base
model, and merge it into the weights (W += scale * alpha / rank * B @ A), so sampling costs nothing extra.
Several adapters combine: each is merged in turn at its own scale.

An adapter file (training/lora.py writes it) is what diffusers' `save_lora_weights` writes for a transformer:
keys `transformer.<module>.lora_A.weight` (r, in) and `transformer.<module>.lora_B.weight` (out, r), peft's names,
and metadata `lora_adapter_metadata` = {"transformer.r", "transformer.lora_alpha", "transformer.target_modules"}.
cinegen adds `cinegen_lora` = {"base_model": sha256 of the base DiT's weights (weights_hash), "base_file", ...}.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

PREFIX = "transformer."
DIFFUSERS_KEY = "lora_adapter_metadata"
CINEGEN_KEY = "cinegen_lora"


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 of a model's weights (names and float32 values, in name order): the identity an adapter records."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


@dataclass(frozen=True)
class Adapter:
    path: Path
    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]    # module name -> (A (r, in), B (out, r))
    rank: int
    alpha: float
    base: str                                              # weights_hash of the DiT it was trained on
    base_file: str

    def delta(self, name: str) -> torch.Tensor:
        """(out, in): what the adapter adds to module `name`'s weight at scale 1."""
        a, b = self.pairs[name]
        return (self.alpha / self.rank) * (b.float() @ a.float())


def read_adapter(path: str | Path) -> Adapter:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--lora file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:             # not a safetensors file at all
        raise ValueError(f"{path} is not a LoRA adapter (safetensors): {e}") from None
    if CINEGEN_KEY not in meta:
        raise ValueError(f"{path} is not a cinegen LoRA adapter (no {CINEGEN_KEY} metadata): adapters of other "
                         "models load through their Diffusers pipelines")
    info, peft = json.loads(meta[CINEGEN_KEY]), json.loads(meta.get(DIFFUSERS_KEY, "{}"))
    pairs = {}
    for key, a in tensors.items():
        if key.endswith(".lora_A.weight"):
            name = key.removeprefix(PREFIX).removesuffix(".lora_A.weight")
            b = tensors.get(f"{PREFIX}{name}.lora_B.weight")
            if b is None:
                raise ValueError(f"{path} has {key} but no matching lora_B weight")
            pairs[name] = (a, b)
    if not pairs:
        raise ValueError(f"{path} holds no lora_A / lora_B weights")
    rank = int(peft.get("transformer.r", next(iter(pairs.values()))[0].shape[0]))
    alpha = float(peft.get("transformer.lora_alpha", rank))
    return Adapter(path, pairs, rank, alpha, info["base_model"], info.get("base_file", ""))


@torch.no_grad()
def merge_adapters(models: list[torch.nn.Module], specs) -> list[int]:
    """Merges each adapter of `specs` (config.LoraSpec: path, scale) into the model of `models` whose weights it
    was trained on (a model with a high-noise expert has two DiTs); every adapter is read and checked before any
    weight changes. Returns, per spec, the index of the model it went into. Raises ValueError naming the adapter
    and both base models when none matches."""
    if not specs:
        return []
    hashes = [weights_hash(m) for m in models]
    adapters = [read_adapter(s.path) for s in specs]
    targets = []
    for spec, adapter in zip(specs, adapters):
        if adapter.base not in hashes:
            raise ValueError(f"{spec.path} was trained on another base model ({adapter.base_file or 'unnamed'}, "
                             f"weights {adapter.base[:12]}); this model's weights are "
                             f"{', '.join(h[:12] for h in hashes)}: load it with the model it was trained on")
        model = models[hashes.index(adapter.base)]
        modules = dict(model.named_modules())
        for name, (a, b) in adapter.pairs.items():
            layer = modules.get(name)
            if not isinstance(layer, torch.nn.Linear) or tuple(layer.weight.shape) != (b.shape[0], a.shape[1]):
                raise ValueError(f"{spec.path}: {name} is not a linear layer of shape {(b.shape[0], a.shape[1])} in "
                                 "this DiT")
        targets.append(hashes.index(adapter.base))
    for spec, adapter, index in zip(specs, adapters, targets):
        modules = dict(models[index].named_modules())
        for name in adapter.pairs:
            weight = modules[name].weight
            weight.add_((spec.scale * adapter.delta(name)).to(weight.device, weight.dtype))
    return targets
