"""`cinegen dataset check DIR` and `cinegen dataset prepare DIR --out CACHE`: one's own footage (data/folder.py),
checked without being touched, then encoded once into a resumable cache (data/shards.py)."""

from __future__ import annotations

import statistics
from collections import Counter
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

app = typer.Typer(no_args_is_help=True, help="Your own footage: check a folder of clips, prepare it for training.")
out_console = Console()
BUCKET_HELP = "FRAMESxHEIGHTxWIDTH, repeatable (default: 17x64x64, 17x64x96, 17x96x64)"


def _config(folder: Path, bucket: Optional[list[str]], fps: Optional[float], skip_bad: bool, **more):
    from cinegen.data.folder import FolderConfig
    from cinegen.toyworld.source import parse_bucket
    given = {"buckets": tuple(parse_bucket(b) for b in bucket) if bucket else None, "fps": fps, **more}
    return FolderConfig(root=str(folder), skip_bad=skip_bad, **{k: v for k, v in given.items() if v is not None})


@app.command("check")
def check_cmd(folder: Path = typer.Argument(..., help="the footage folder"),
              bucket: Optional[list[str]] = typer.Option(None, help=BUCKET_HELP),
              fps: Optional[float] = typer.Option(None, help="frame rate clips are resampled to (default 8)"),
              skip_bad: bool = typer.Option(False, help="exit 0 even if some files cannot be used (they are left out)")):
    """Probe every file and list every problem by file name; exit 1 when a file cannot be used. Writes nothing."""
    from cinegen.data.folder import survey
    from cinegen.runtime import progress_bar
    cfg = _config(folder, bucket, fps, skip_bad)
    with progress_bar() as bar:
        task = bar.add_task("probing", total=None, status="")
        found = survey(cfg, progress=lambda rel: bar.update(task, advance=1, status=escape(rel)))
    out_console.print(_summary(found, cfg))
    if found.problems:
        out_console.print(_problems(found))
    bad = found.bad
    if bad and not skip_bad:
        out_console.print(f"[bold red]{len(bad)} file(s) cannot be used[/]: fix them, or leave them out with --skip-bad")
        raise typer.Exit(1)
    usable = len([m for m in found.usable if m.rel in found.buckets])
    out_console.print(f"{usable} file(s) ready" + (f"; {len(bad)} left out" if bad else ""))


def _summary(found, cfg) -> Table:
    from cinegen.data.folder import resampled_frames, window_starts
    videos = [m for m in found.media if m.kind == "video" and not m.error]
    images = [m for m in found.media if m.kind == "image" and not m.error]
    frames = [m.frames for m in videos]
    table = Table("", "", title=f"{cfg.root}", show_header=False)
    table.add_row("files", f"{len(found.media)}: {len(videos)} readable video(s), {len(images)} readable image(s), "
                           f"{sum(1 for m in found.media if m.error)} unreadable")
    table.add_row("total duration", f"{sum(m.duration for m in videos):.1f} s")
    table.add_row("sizes", _counts(f"{m.width}x{m.height}" for m in videos + images))
    table.add_row("frame rates", _counts(f"{m.fps:g} fps" for m in videos))
    if frames:
        table.add_row("frames per video", f"min {min(frames)}, median {statistics.median(frames):g}, max {max(frames)}")
    windows: Counter = Counter()
    files: Counter = Counter()
    for m in found.usable:
        if m.rel in found.buckets:
            b = found.buckets[m.rel]
            files[b] += 1
            windows[b] += len(window_starts(resampled_frames(m, cfg.fps), b[0], cfg.stride, cfg.max_windows))
    table.add_row(f"buckets at {cfg.fps:g} fps", "\n".join(f"{t}x{h}x{w}: {files[(t, h, w)]} file(s), "
                                                          f"{windows[(t, h, w)]} window(s)"
                                                          for t, h, w in sorted(files)) or "none")
    return table


def _counts(values) -> str:
    return ", ".join(f"{v} ({n})" for v, n in Counter(values).most_common(8)) or "-"


def _problems(found) -> Table:
    table = Table("file", "", "problem", title="problems")
    for p in sorted(found.problems, key=lambda p: (not p.fatal, p.rel)):
        table.add_row(escape(p.rel), "[red]error[/]" if p.fatal else "[yellow]warning[/]", escape(p.message))
    return table


@app.command("prepare")
def prepare_cmd(folder: Path = typer.Argument(..., help="the footage folder"),
                out: Path = typer.Option(..., help="the cache folder (a killed run resumes there)"),
                model: Optional[Path] = typer.Option(None, help="the cinegen model to train (default: the shipped "
                                                                 "model): its VAE and text encoder encode the clips"),
                bucket: Optional[list[str]] = typer.Option(None, help=BUCKET_HELP),
                fps: Optional[float] = typer.Option(None, help="frame rate clips are resampled to (default 8)"),
                stride: Optional[int] = typer.Option(None, help="frames between window starts (default: back to back)"),
                max_windows: Optional[int] = typer.Option(None, help="windows per file at most (default: all)"),
                scene_cuts: bool = typer.Option(False, help="no window crosses a scene cut (PySceneDetect: the "
                                                            "footage extra)"),
                skip_bad: bool = typer.Option(False, help="leave out the files that cannot be used"),
                shard_clips: int = typer.Option(256, help="windows per shard")):
    """Cut the footage into windows, resample, resize and centre-crop into buckets, and encode latents and captions
    with the model's VAE and text encoder into a sharded cache with a manifest. Writes only under --out."""
    from cinegen.data.shards import model_parts, prepare
    from cinegen.models.loading import load_vae
    from cinegen.models.text_encoder import TextEncoder
    from cinegen.runtime import default_device
    cfg = _config(folder, bucket, fps, skip_bad, stride=stride, max_windows=max_windows, scene_cuts=scene_cuts)
    if shard_clips < 1:
        raise ValueError(f"--shard-clips must be >= 1, got {shard_clips}")
    vae_path, text_cfg = model_parts(model)
    device = default_device()
    manifest = prepare(cfg, load_vae(vae_path, device), TextEncoder(text_cfg, device), vae_path, out, shard_clips)
    clips = sum(s["clips"] for s in manifest["shards"])
    out_console.print(f"{len(manifest['files'])} file(s), {clips} window(s) in {len(manifest['shards'])} shard(s) "
                      f"under {out}" + (f"; left out: {', '.join(manifest['skipped'])}" if manifest["skipped"] else ""))
