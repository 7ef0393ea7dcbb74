"""LoRA training of cinegen's DiT: peft puts low-rank adapters on the chosen linear layers of a trained DiT (its
weights frozen), train_dit trains them like any model (EMA, checkpoints, resume, time limit), and the finished run
writes only the adapters, in diffusers' LoRA layout (models/lora.py reads and merges them).

    cinegen train --data footage/ --lora-rank 8 out=runs/my-look train.steps=400 train.lr=1e-3
    cinegen generate "..." --lora runs/my-look/lora.safetensors:0.8
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from cinegen.config import LoraConfig, to_dict
from cinegen.extras import require
from cinegen.io.files import atomic_write
from cinegen.models.lora import CINEGEN_KEY, DIFFUSERS_KEY, PREFIX

ADAPTER = "default"           # peft's adapter name inside the module's state dict: dropped from the saved keys


def add_lora(model: torch.nn.Module, cfg: LoraConfig) -> torch.nn.Module:
    """The model, in place, with adapters on cfg.targets and only those trainable. The adapters' B starts at zero
    (peft's default), so the model computes exactly what the base did until it trains."""
    peft = require("peft", "peers", "LoRA training (train --lora-rank)")
    config = peft.LoraConfig(r=cfg.rank, lora_alpha=cfg.scale_alpha, target_modules=list(cfg.targets),
                             lora_dropout=cfg.dropout)
    try:
        peft.inject_adapter_in_model(config, model, adapter_name=ADAPTER)
    except ValueError as e:                    # no layer matched the targets
        raise ValueError(f"lora.targets {list(cfg.targets)} name no linear layer of the DiT ({e})") from None
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)
    return model


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapters' weights under diffusers' names: transformer.<module>.lora_A.weight / lora_B.weight."""
    out = {}
    for key, value in model.state_dict().items():
        if ".lora_A." in key or ".lora_B." in key:
            out[PREFIX + key.replace(f".{ADAPTER}.", ".")] = value.detach().float().cpu().contiguous()
    return out


def save_adapter(path: Path, model: torch.nn.Module, cfg: LoraConfig, base_hash: str, base_file: str,
                 step: int, extra: dict | None = None) -> Path:
    tensors = adapter_state(model)
    meta = {"format": "pt",
            DIFFUSERS_KEY: json.dumps({"transformer.r": cfg.rank, "transformer.lora_alpha": cfg.scale_alpha,
                                       "transformer.target_modules": list(cfg.targets)}),
            CINEGEN_KEY: json.dumps({"base_model": base_hash, "base_file": base_file, "step": step,
                                     "lora": to_dict(cfg), **(extra or {})})}
    atomic_write(Path(path), lambda tmp: save_file(tensors, tmp, metadata=meta))
    return Path(path)
