"""Export a trained model for shipping: EMA weights only, cast to fp16 (the DiT's matrices optionally int8),
configs and training facts kept."""

from __future__ import annotations

from pathlib import Path

import torch

from cinegen.training import checkpoint as ckpt_io


def export_model(vae_path: Path, dit_path: Path, out: Path, int8: bool = False) -> list[Path]:
    """Writes out/vae.safetensors and out/dit.safetensors (what TextToVideo.from_pretrained reads).
    int8: store the DiT's large matrices as int8 (about half the file; the VAE stays fp16, because pixels are
    less forgiving than velocities)."""
    from cinegen.training.train_dit import load_dit
    from cinegen.training.train_vae import load_vae
    vae = load_vae(vae_path)
    dit, _ = load_dit(dit_path)
    vae_src, dit_src = ckpt_io.load_checkpoint(vae_path), ckpt_io.load_checkpoint(dit_path)   # step and extra
    out = Path(out)
    ckpt_io.save_checkpoint(out / "vae.safetensors", "vae", vae.cfg, vae, step=vae_src["step"], extra=vae_src["extra"],
                            dtype=torch.float16)
    ckpt_io.save_checkpoint(out / "dit.safetensors", "dit", dit.cfg, dit, step=dit_src["step"], extra=dit_src["extra"],
                            dtype=torch.float16, int8=int8)
    return [out / "vae.safetensors", out / "dit.safetensors"]
