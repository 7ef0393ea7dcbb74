"""Export a trained model for shipping: EMA weights only, cast to fp16 (the DiT's matrices optionally int8),
configs and training facts kept."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from cinegen.models.loading import read_meta
from cinegen.training import checkpoint as ckpt_io

log = logging.getLogger(__name__)


def export_model(vae_path: Path, dit_path: Path, out: Path, int8: bool = False, raw: bool = False,
                 dit_high: Path | None = None, text_name: str | None = None) -> list[Path]:
    """Writes out/vae.safetensors and out/dit.safetensors (what TextToVideo.from_pretrained reads).
    int8: store the DiT's large matrices as int8 (about half the file; the VAE stays fp16, because pixels are
    less forgiving than velocities). raw: the DiT checkpoint's last-step weights instead of its EMA (a short
    fine-tune's EMA still leans on the weights it started from). dit_high: a high-noise expert (trained with
    `--flow t_min=...`), written as out/dit_high.safetensors; without it a stale expert in `out` is removed, since
    it was made for another DiT. text_name: the text encoder the DiT files name (default: the one they were trained
    with). A lent GPU trains with a packed copy of MiniLM at a /tmp path (tools/travel_minilm.py); the shipped
    files must name the real one, or every later load would look for that path (or use the packed copy there)."""
    from cinegen.models.dit import same_interface
    from cinegen.models.loading import load_dit, load_vae
    vae = load_vae(vae_path)
    dit, dit_flow = load_dit(dit_path, raw=raw)
    expert = None
    if dit_high is not None:
        expert, flow = load_dit(dit_high, raw=raw)
        if flow.t_min <= 0 or not same_interface(expert.cfg, dit.cfg) or _prompt_tokens(expert) != _prompt_tokens(dit):
            raise ValueError(f"{dit_high} is not a high-noise expert for this DiT: it needs the same latents, "
                             "conditioning, text encoder and prompt tokens, and a training range starting above t = 0 "
                             f"(--flow t_min=...), got t_min={flow.t_min}")
    # sampling runs every t from 1 to 0: some model must have been trained at each (a low-noise DiT, trained with
    # --flow t_max=..., never saw the steps above its t_max, which its expert takes)
    takeover = 1.0 if expert is None else flow.t_min                     # where the expert starts (1: nowhere)
    if dit_flow.t_max < takeover:
        raise ValueError(f"{dit_path} was trained on t <= {dit_flow.t_max} only, and "
                         + ("no --dit-high expert takes the steps above it" if expert is None else
                            f"the expert {dit_high} starts at t = {takeover}: no model was trained between"))
    out = Path(out)
    export_vae(vae_path, out, vae)
    _save_if_changed(out / "dit.safetensors", "dit", dit, _renamed(read_meta(dit_path), text_name), int8=int8)
    paths = [out / "vae.safetensors", out / "dit.safetensors"]
    if expert is not None:
        _save_if_changed(out / "dit_high.safetensors", "dit", expert, _renamed(read_meta(dit_high), text_name),
                         int8=int8)
        paths.append(out / "dit_high.safetensors")
    elif (out / "dit_high.safetensors").is_file():
        (out / "dit_high.safetensors").unlink()
        log.info("removed %s: it was the high-noise expert of another DiT", out / "dit_high.safetensors")
    return paths


def export_vae(vae_path: Path, out: Path, vae=None) -> Path:
    """Writes out/vae.safetensors as shipped: the file's EMA weights in fp16, its config and training facts. A
    decoder-only run exported here keeps the encoder and latent statistics its DiTs were trained with."""
    from cinegen.models.loading import load_vae
    path = Path(out) / "vae.safetensors"
    _save_if_changed(path, "vae", vae if vae is not None else load_vae(vae_path), read_meta(vae_path), int8=False)
    return path


def _renamed(meta: tuple[int, dict], text_name: str | None) -> tuple[int, dict]:
    """A DiT checkpoint's (step, extra) with its text encoder's name replaced (None: as it is)."""
    step, extra = meta
    if text_name is None:
        return meta
    return step, {**extra, "text": {**extra.get("text", {}), "name": text_name}}


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


def _prompt_tokens(dit) -> dict:
    """What a DiT's prompt tokens are: the text encoder's settings, less its name (a lent GPU loads the same MiniLM
    from another path, tools/travel_minilm.py)."""
    return {k: v for k, v in dit.extra.get("text", {}).items() if k != "name"}
