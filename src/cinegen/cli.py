"""`cinegen` command line: parses arguments into config dataclasses and calls library functions. No logic here."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

from cinegen import config as C

app = typer.Typer(add_completion=False, no_args_is_help=True, help="cinegen: open, trainable text-to-video.")
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """cinegen: open, trainable text-to-video."""


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}")
    raise typer.Exit(2)


def _data_config(num_clips: int, buckets: list[str], fps: float, holdout: list[str], seed: int) -> C.DataConfig:
    from cinegen.data.world import validate_holdout
    parsed = []
    for b in buckets:
        try:
            t, h, w = (int(v) for v in b.lower().split("x"))
        except ValueError:
            _fail(f"bad bucket {b!r}: expected FRAMESxHEIGHTxWIDTH, e.g. 17x64x64")
        parsed.append((t, h, w))
    validate_holdout(tuple(holdout))
    return C.DataConfig(num_clips=num_clips, buckets=tuple(parsed), bucket_weights=tuple([1.0] * len(parsed)),
                        fps=fps, holdout=tuple(holdout), seed=seed)


@app.command("train-vae")
def train_vae_cmd(
    out: Path = typer.Option(Path("runs/vae"), help="run folder (resumes from out/last.safetensors)"),
    preset: str = typer.Option("default", help=f"VAE preset: {list(C.VAE_PRESETS)}"),
    steps: int = typer.Option(3000), batch_size: int = typer.Option(8), lr: float = typer.Option(1e-3),
    num_clips: int = typer.Option(600), crop: int = typer.Option(32, help="training crop size (fully convolutional)"),
    bucket: list[str] = typer.Option(["17x64x64"], help="FRAMESxHEIGHTxWIDTH render grid; repeatable"),
    holdout: list[str] = typer.Option([], help="attribute combinations to exclude, e.g. 'purple triangle'"),
    ckpt_every: int = typer.Option(200), seed: int = typer.Option(0),
    set_: list[str] = typer.Option([], "--set", help="VAEConfig override key=value"),
):
    """Train the causal video autoencoder on toy-world clips."""
    from cinegen.training.train_vae import train_vae
    _setup_logging()
    try:
        cfg = C.override(_preset(C.VAE_PRESETS, preset), set_)
        data = _data_config(num_clips, bucket, 8.0, holdout, seed)
    except ValueError as e:
        _fail(str(e))
    train = C.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup=100, ckpt_every=ckpt_every, seed=seed,
                          ema_decay=0.995)
    path = train_vae(cfg, train, data, out, crop=crop)
    console.print(f"VAE written to {path}")


def _preset(table: dict, name: str):
    if name not in table:
        _fail(f"unknown preset {name!r}; choose one of {sorted(table)}")
    return table[name]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
