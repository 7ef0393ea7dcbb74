"""The CLI's model side: the load options every rendering command takes (--offload, --vae-tiling, --dtype, --lora,
--quantize, --attention, --compile) and `cinegen models`. cli.py registers these; the options reach
`load_backend`, which refuses any that the chosen backend does not take.

Which options need a GPU: --offload (CUDA only; refused on a CPU), --attention other than those a CPU runs
(diffusers.CPU_ATTENTION; refused on a CPU) and, in practice, --compile (slow to warm up on a CPU). --vae-tiling,
--dtype, --lora, --quantize int8wo and the CPU attention backends run on a CPU too (tests/test_peers.py runs them).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from typing import Optional

import typer

# what the running command was given: {"load": {option: value}, "unset": frozenset of sampling option names}
_COMMAND = contextvars.ContextVar("cinegen_command", default=None)

LOAD_OPTIONS = [
    ("offload", Optional[str], typer.Option(None, help="Diffusers: keep weights on the CPU and move them to the "
                                            "GPU as needed: model | sequential | group (CUDA)")),
    ("vae_tiling", bool, typer.Option(False, "--vae-tiling", help="Diffusers: decode in tiles (less memory)")),
    ("dtype", Optional[str], typer.Option(None, help="Diffusers: bf16 | fp16 | fp32 (default: bf16 on a GPU)")),
    ("lora", list[str], typer.Option([], help="a LoRA adapter FILE[:SCALE] (repeatable: adapters combine); "
                                   "cinegen models: one trained by `train --lora-rank`")),
    ("quantize", Optional[str], typer.Option(None, help="Diffusers: int8wo (torchao weight-only int8)")),
    ("attention", Optional[str], typer.Option(None, help="Diffusers: attention backend (native, flash, sage, ...)")),
    ("compile", bool, typer.Option(False, "--compile", help="torch.compile the transformer (worth it on GPUs and "
                                   "long runs)")),
]


def load_options(fn):
    """Adds the load options to a command; their set values go to `chosen_load_options()` for `_backend`."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t) for n, t, o in LOAD_OPTIONS]

    @functools.wraps(fn)
    def command(**kwargs):
        from cinegen.config import parse_lora
        picked = {n: kwargs.pop(n) for n, _, _ in LOAD_OPTIONS}
        picked["loras"] = tuple(parse_lora(x) for x in picked.pop("lora"))
        _state()["load"] = {k: v for k, v in picked.items() if v}
        return fn(**kwargs)
    command.__signature__ = sig.replace(parameters=params)
    command.__annotations__ = {**fn.__annotations__, **{n: t for n, t, _ in LOAD_OPTIONS}}
    return command


def _state() -> dict:
    state = _COMMAND.get()
    if state is None:
        state = {}
        _COMMAND.set(state)
    return state


def start_command() -> None:
    """A fresh state for a command run (several runs share a process in tests and in the studio)."""
    _COMMAND.set({})


def chosen_load_options() -> dict:
    return dict(_state().get("load", {}))


CTX_PARAM = "cinegen_ctx"


def ctx_parameter() -> inspect.Parameter:
    """The typer.Context parameter a decorator adds to read where each option's value came from."""
    return inspect.Parameter(CTX_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)


def record_unset(ctx, names) -> None:
    """Remembers which sampling options the user left at their defaults: a backend fills those with its own."""
    _state()["unset"] = frozenset(n for n in names if getattr(ctx.get_parameter_source(n), "name", "DEFAULT")
                                  == "DEFAULT")


def unset_sample_fields() -> frozenset:
    """SampleConfig field names the user did not set (the CLI's `negative` is `negative_prompt`)."""
    return frozenset("negative_prompt" if n == "negative" else n for n in _state().get("unset", frozenset()))


def estimate_configs(model: str):
    """(DiTConfig, VAEConfig, text tokens) for `cinegen estimate --model`: a preset or peer name, else a
    Diffusers folder or registry name whose configs are read (no weights)."""
    from cinegen.estimate import peer_config
    try:
        return peer_config(model)
    except ValueError as unknown:
        from cinegen.backends.diffusers import FolderInfo, is_diffusers_folder
        from cinegen.backends.registry import load_registry
        entry = load_registry().get(model)
        path = entry.path if entry else model
        if not is_diffusers_folder(path):
            raise ValueError(f"{unknown}, a Diffusers folder or a `cinegen models` name") from None
        return FolderInfo.read(path).estimate_configs()


def models_cmd(json_: bool = typer.Option(False, "--json", help="print the list as JSON")):
    """List the models `--model` can name (the shipped one and those in models.toml) with what each can do."""
    import json

    from rich.console import Console
    from rich.table import Table

    from cinegen.backends.registry import describe, load_registry, registry_file
    rows = [describe(e) for e in load_registry().values()]
    if json_:
        print(json.dumps(rows, indent=2))
        return
    table = Table("name", "family", "class", "modes", "fps", "steps", "guidance", "path",
                  title=f"models (registry: {registry_file() or 'none; see README, Open weights'})")
    for r in rows:
        table.add_row(r["name"], r["family"], r["class"], ", ".join(r["modes"]), f"{r['fps']:g}", str(r["steps"]),
                      f"{r['guidance']:g}", r["path"])
    Console().print(table)
