"""run_stage(recipe): one recipe stage (training/recipe.py), with the steps around a trainer that every run of its
kind needs: resume checks, growing from a trained model, the latent cache built once under torchrun, and the data
source's plug-in loss terms. The CLI only parses the recipe and calls this.
"""

from __future__ import annotations

import logging
from pathlib import Path

from cinegen.config import FlowConfig, TextConfig, from_dict, to_dict
from cinegen.data.latent_cache import LatentCache, build_latent_cache, load_latent_cache
from cinegen.data.sources import TermContext, VideoSource
from cinegen.models.dit import VideoDiT
from cinegen.training.common import DistInfo, device_for, setup_distributed
from cinegen.training.recipe import Recipe
from cinegen.training.train_dit import check_growable, train_dit
from cinegen.training.train_vae import train_vae

log = logging.getLogger(__name__)


def run_stage(recipe: Recipe, command: str = "") -> Path:
    """Trains the stage and returns the finished file. command: the command line, kept in a DiT file's facts."""
    if recipe.kind == "vae":
        _require(recipe.stage.init, "init")
        return train_vae(recipe.stage, recipe.model, recipe.loss, recipe.train, recipe.source, recipe.terms)
    if recipe.kind == "peer":
        from cinegen.training.peer_lora import train_peer_lora
        return train_peer_lora(recipe.stage, recipe.train, recipe.lora, recipe.source)
    if recipe.kind == "distill":
        from cinegen.training.distill import distill
        return distill(recipe.stage, recipe.train, recipe.source)
    return _dit_stage(recipe, command)


def _dit_stage(recipe: Recipe, command: str) -> Path:
    stage, out = recipe.stage, Path(recipe.stage.out)
    _require(stage.vae, "vae")
    check_resume_flow(out / "last.safetensors", recipe.flow)
    trained = _init_dit(stage.init, recipe.model)         # before the cache is built: a bad init loses no work
    if recipe.lora is not None and recipe.lora.rank and (trained is None or trained.cfg != recipe.model):
        raise ValueError("a LoRA run (lora.rank > 0) trains adapters on a trained DiT as it is: set init = its file "
                         f"and keep its architecture ([model] {recipe.model} against init's "
                         f"{trained.cfg if trained is not None else 'none'})")
    info = setup_distributed()
    terms = recipe.source.loss_terms("dit", recipe.terms, TermContext(out, device_for(info), info))     # likewise
    cache = recipe.source.encoded(Path(stage.vae), recipe.text) or ensure_latent_cache(
        Path(stage.vae), recipe.source, out / "latents.safetensors", info, recipe.text)
    extra = {**recipe.source.facts(), "command": command, "text": to_dict(recipe.text), "recipe": recipe.tables()}
    lora = recipe.lora if recipe.lora is not None and recipe.lora.rank else None
    return train_dit(recipe.model, recipe.flow, recipe.train, cache, out, extra=extra, init=trained, terms=terms,
                     lora=lora, base_file=stage.init)


def _require(path: str, key: str) -> None:
    if path and not Path(path).is_file():
        raise FileNotFoundError(f"{key} file not found: {path}")


def check_resume_flow(last: Path, flow: FlowConfig) -> None:
    """A resumed run must keep its noise schedule: the saved model samples with the one it was trained with."""
    from cinegen.models.loading import read_extra
    if last.is_file():
        saved = from_dict(FlowConfig, read_extra(last).get("flow", {}))
        if saved != flow:
            raise ValueError(f"{last} was trained with {saved}; resume it with the same [flow] values (got {flow})")


def _init_dit(path: str, cfg) -> VideoDiT | None:
    """The trained DiT a run starts from (None without one), checked against the run's config."""
    if not path:
        return None
    from cinegen.models.loading import load_dit
    _require(path, "init")
    trained = load_dit(path)[0]
    check_growable(cfg, trained.cfg)
    return trained


def ensure_latent_cache(vae_path: Path, source: VideoSource, path: Path, info: DistInfo,
                        text_cfg: TextConfig) -> LatentCache:
    """Builds the latent cache once (rank 0, on its GPU if there is one: the VAE encodes clips ~100x faster there)
    and loads it on every rank."""
    import torch.distributed as dist

    from cinegen.models.loading import load_vae
    from cinegen.models.text_encoder import TextEncoder
    if info.main and not path.exists():
        device = device_for(info)
        build_latent_cache(load_vae(vae_path, device), TextEncoder(text_cfg, device), source, path)
    if dist.is_initialized():
        dist.barrier()
    return load_latent_cache(path, text_cfg, source)
