"""`load_backend(name_or_path)`: the one way the CLI, the server worker and the studio get a model."""

from __future__ import annotations

from pathlib import Path


def load_backend(model: str | Path | None = None, **options):
    """None or "cinegen-default": the shipped model; a folder with dit.safetensors + vae.safetensors: a cinegen
    model; a folder with model_index.json: a Diffusers pipeline. options: the backend's loading options (device;
    for cinegen models also compile and text_encoder). Raises ValueError/FileNotFoundError naming the problem."""
    from cinegen.backends.diffusers import DiffusersBackend, is_diffusers_folder
    from cinegen.backends.native import NativeBackend
    if model in (None, "cinegen-default"):
        return NativeBackend.from_pretrained(None, **options)
    if not Path(model).is_dir():
        raise FileNotFoundError(f"model folder not found: {model}")
    if is_diffusers_folder(model):
        unknown = set(options) - {"device"}
        if unknown:
            raise ValueError(f"{', '.join(sorted('--' + o.replace('_', '-') for o in unknown))} applies to cinegen "
                             f"models only, not to the Diffusers pipeline in {model}")
        return DiffusersBackend.from_pretrained(model, **options)
    return NativeBackend.from_pretrained(model, **options)
