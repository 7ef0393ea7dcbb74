"""Export a trained model for shipping: EMA weights only, cast to fp16 (the DiT's matrices optionally int8),
configs and training facts kept."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from cinegen.training import checkpoint as ckpt_io


def export_model(vae_path: Path, dit_path: Path, out: Path, int8: bool = False, raw: bool = False) -> list[Path]:
    """Writes out/vae.safetensors and out/dit.safetensors (what TextToVideo.from_pretrained reads).
    int8: store the DiT's large matrices as int8 (about half the file; the VAE stays fp16, because pixels are
    less forgiving than velocities). raw: the DiT checkpoint's last-step weights instead of its EMA (a short
    fine-tune's EMA still leans on the weights it started from)."""
    from cinegen.training.train_dit import load_dit
    from cinegen.training.train_vae import load_vae
    vae = load_vae(vae_path)
    dit, _ = load_dit(dit_path, raw=raw)
    out = Path(out)
    _save_if_changed(out / "vae.safetensors", "vae", vae, ckpt_io.read_meta(vae_path), int8=False)
    _save_if_changed(out / "dit.safetensors", "dit", dit, ckpt_io.read_meta(dit_path), int8=int8)
    return [out / "vae.safetensors", out / "dit.safetensors"]


def _save_if_changed(path: Path, kind: str, model, meta: tuple[int, dict], int8: bool) -> None:
    """Writes beside `path`, then keeps the old file when the content is equal: an unchanged model re-exported
    leaves the file (and git) alone. meta: the source checkpoint's (step, extra)."""
    new = path.with_name(f".{path.name}.export")
    step, extra = meta
    ckpt_io.save_checkpoint(new, kind, model.cfg, model, step=step, extra=extra, dtype=torch.float16, int8=int8)
    if ckpt_io.same_content(new, path):
        new.unlink()
    else:
        os.replace(new, path)
