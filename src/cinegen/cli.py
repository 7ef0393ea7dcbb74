"""`cinegen` command line: parses arguments into config dataclasses and calls library functions. No logic here.

Errors: library code raises ValueError (or FileNotFoundError) with a message naming the bad value; `_Commands`
turns any that escapes a command into one red line and exit code 2, so commands need no try/except of their own.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape
from typer.core import TyperGroup

from cinegen import config as C
from cinegen import defaults
from cinegen.cli_models import (
    CTX_PARAM,
    chosen_load_options,
    ctx_parameter,
    estimate_configs,
    load_options,
    models_cmd,
    record_unset,
    start_command,
    unset_sample_fields,
)

console = Console(stderr=True)
SOLVER_NAMES = " | ".join(defaults.SOLVERS)


class _Commands(TyperGroup):
    """Bad input is a one-line error and exit code 2, never a traceback, whichever command it reaches."""

    def invoke(self, ctx):
        start_command()
        try:
            return super().invoke(ctx)
        except (ValueError, FileNotFoundError) as e:
            console.print(f"[bold red]error:[/] {escape(str(e))}")     # escaped: messages may hold [brackets]
            raise typer.Exit(2) from None


app = typer.Typer(cls=_Commands, add_completion=False, no_args_is_help=True,
                  help="cinegen: open, trainable text-to-video.")


from cinegen.commands import dataset as _dataset  # noqa: E402 (needs nothing above; beside the app it joins)

app.add_typer(_dataset.app, name="dataset")     # issue 31: check and prepare one's own footage


@app.callback()
def _root() -> None:
    """cinegen: open, trainable text-to-video."""


def _setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(console=console, show_path=False)])
    # torchao (peers extra) logs its optional CUDA/Triton kernels missing whenever transformers imports it: noise
    # on a CPU; errors still show
    for name in ("torchao", "torch.utils._pytree"):       # the latter: torchao's enum registrations, deprecated
        logging.getLogger(name).setLevel(logging.ERROR)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {escape(message)}")
    raise typer.Exit(2)


# --- Training (issue 29): a recipe file per stage (configs/), overrides on the command line ---

OVERRIDES_HELP = ("KEY=VALUE overrides of the recipe: top-level keys (out=runs/x, init=...) or SECTION.KEY "
                  "(train.steps=100, data.num_clips=40, model.preset=tiny, terms.object_weight=3)")
CONFIG_HELP = "recipe file: one stage, e.g. configs/cinegen-default/02-dit-low.toml (configs/README.md)"


DATA_HELP = ("your own footage: a folder of clips and captions, or a cache from `cinegen dataset prepare`, in place "
             "of the recipe's [data]; without --config the run fine-tunes the shipped model")
BASE_HELP = "with --data and no --config: the cinegen model folder to fine-tune (default: the shipped model)"


@app.command("train")
def train_cmd(overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
              config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
              data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
              model: Optional[Path] = typer.Option(None, help=BASE_HELP),
              lora_rank: int = typer.Option(0, help="train a LoRA adapter of this rank on the init DiT (lora.rank)"),
              lora_alpha: float = typer.Option(0.0, help="the adapter's alpha (scale alpha / rank; 0: = rank)"),
              lora_targets: Optional[list[str]] = typer.Option(None, help="layers that get adapters, repeatable "
                                                                           "(default: attention and MLP)")):
    """Train one stage of a recipe: the autoencoder (kind = "vae") or a diffusion transformer (kind = "dit")."""
    lora = [f"lora.rank={lora_rank}"] if lora_rank else []
    lora += [f"lora.alpha={lora_alpha}"] if lora_alpha else []
    lora += [f"lora.targets={json.dumps(lora_targets)}"] if lora_targets else []
    _train(config, lora + (overrides or []), None, data, model)


@app.command("train-vae")
def train_vae_cmd(overrides: Optional[list[str]] = typer.Argument(None, help=OVERRIDES_HELP),
                  config: Optional[Path] = typer.Option(None, "--config", help=CONFIG_HELP),
                  data: Optional[Path] = typer.Option(None, "--data", help=DATA_HELP),
                  model: Optional[Path] = typer.Option(None, help=BASE_HELP)):
    """Train the causal video autoencoder: `cinegen train kind=vae`, with the same recipe sections."""
    _train(config, overrides, "vae", data, model)


def _train(config: Optional[Path], overrides: Optional[list[str]], kind: Optional[str], data: Optional[Path],
           model: Optional[Path] = None) -> None:
    import sys

    from cinegen.training.recipe import load_recipe
    from cinegen.training.stages import run_stage
    _setup_logging()
    recipe = load_recipe(config, overrides or [], kind, str(data) if data else None, model)
    path = run_stage(recipe, command=" ".join(["cinegen"] + sys.argv[1:]))
    console.print(f"{recipe.kind} stage written to {path}")


@app.command("dit-latents")
def dit_latents_cmd(
    out: Path = typer.Option(..., help="file to write (safetensors): real clips and the DiT's latents of them"),
    data: Optional[list[str]] = typer.Argument(None, help="the clips, as a recipe's [data] section: data.KEY=VALUE "
                                               "(data.num_clips=1000 data.seed=7 data.buckets=[[17,64,64]] ...)"),
    model: Optional[Path] = typer.Option(None, help="model folder (default: the shipped model)"),
    strength: list[float] = typer.Option([0.4, 0.5, 0.6, 0.7, 0.8], help="SDEdit strengths, one per batch in turn"),
    steps: int = typer.Option(20, help="sampling steps of a whole schedule (SDEdit runs the last `strength` of it)"),
    batch_size: int = typer.Option(8),
    text_encoder: Optional[str] = typer.Option(None, help="a local copy of the prompt encoder the DiT was trained "
                                               "with, in place of the one its file names (e.g. on a GPU lease)"),
):
    """Re-imagine rendered clips with their own captions (SDEdit) and keep the DiT's latents beside the clips:
    data for a vae stage with decoder_only and dit_latents, a decoder that draws what the DiT draws."""
    from cinegen.training.dit_latents import make_pairs, save_pairs
    from cinegen.training.recipe import load_data
    _setup_logging()
    source = load_data(data or [])
    pipe = _load_pipeline(model, text_encoder=text_encoder)
    samples = source.clips("train")
    pairs = make_pairs(pipe, samples, tuple(strength), steps=steps, batch=batch_size, extras=source.pair_extras(samples))
    pairs.meta.update(model=str(model or "shipped"), data=source.table())
    save_pairs(pairs, out)
    console.print(f"{len(pairs)} pairs written to {out}")


def _require_file(path: Optional[Path], option: str) -> None:
    if path is not None and not path.is_file():
        _fail(f"{option} file not found: {path}")


# --- Rendering: every mode builds one typed request (cinegen.requests) and calls one backend's generate ---

GUIDANCE_HIGH_HELP = "guidance while the high-noise expert predicts (default: --guidance)"
ModelOpt = typer.Option(None, help="a name from `cinegen models`, a cinegen model folder (dit + vae .safetensors) "
                                    "or a Diffusers folder (default: the shipped model)")


def _sample_options(seconds: float | None = defaults.SECONDS, seconds_help: str = "seconds of video"):
    """The sampling options of every rendering command, written once: the decorated command gets them as one
    SampleConfig `sample` (checked there). seconds=None: the command takes its length from its input."""
    options = [
        ("size", str, typer.Option(defaults.SIZE, help="WIDTHxHEIGHT, multiples of the model's token size (16)")),
        ("steps", int, typer.Option(defaults.STEPS, help="sampling steps")),
        ("seed", int, typer.Option(defaults.SEED)),
        ("guidance", float, typer.Option(defaults.GUIDANCE, help="classifier-free guidance scale; 1 = off")),
        ("guidance_high", Optional[float], typer.Option(None, help=GUIDANCE_HIGH_HELP)),
        ("solver", str, typer.Option(defaults.SOLVER, help=SOLVER_NAMES)),
        ("negative", str, typer.Option("", help="negative prompt")),
        ("cache", float, typer.Option(defaults.CACHE, help="skip transformer calls whose input barely changed "
                                                           "(TeaCache-style); 0 = off")),
        ("fps", float, typer.Option(defaults.FPS, help="frames per second of the output")),
        ("distilled", bool, typer.Option(True, help="use the model's few-step adapter (fewstep.safetensors) at the "
                                                    "step counts it was distilled for")),
    ]
    if seconds is not None:
        options.insert(0, ("seconds", float, typer.Option(seconds, help=seconds_help)))

    def decorate(fn):
        sig = inspect.signature(fn)
        params = [p for p in sig.parameters.values() if p.name != "sample"]
        params += [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=o, annotation=t) for n, t, o in options]
        params.append(ctx_parameter())

        @functools.wraps(fn)
        def command(**kwargs):
            record_unset(kwargs.pop(CTX_PARAM), [n for n, _, _ in options])
            picked = {n: kwargs.pop(n) for n, _, _ in options}
            w, h = C.parse_size(picked.pop("size"))
            sample = C.SampleConfig(width=w, height=h, negative_prompt=picked.pop("negative"), **picked)
            return fn(sample=sample, **kwargs)
        command.__signature__ = sig.replace(parameters=params)
        command.__annotations__ = {**{k: v for k, v in fn.__annotations__.items() if k != "sample"},
                                   **{n: t for n, t, _ in options}, CTX_PARAM: typer.Context}
        return command
    return decorate


def _load_pipeline(model: Optional[Path], text_encoder: Optional[str] = None):
    """A cinegen model's TextToVideo itself, for the commands that read its parts (evaluation, training data)."""
    from cinegen.pipeline import TextToVideo
    return TextToVideo.from_pretrained(model, text_encoder=text_encoder)


def _backend(model: Optional[Path], **options):
    """The model through the one backend layer, with the load options the command was given (cli_models)."""
    from cinegen.backends import load_backend
    return load_backend(model, **_backend_options(**options))


def _backend_options(**options) -> dict:
    """The load options set: those left at their defaults are not passed, so a backend is refused only an
    option the user actually set."""
    return {k: v for k, v in {**chosen_load_options(), **options}.items() if v}


def _bar_progress(bar, task, status=lambda d: d["phase"]):
    """The one progress callback drawn on a rich bar: {"phase", "step", "steps"} -> the bar's position and status."""
    return lambda d: bar.update(task, total=d["steps"], completed=d["step"], status=status(d))


def _render(backend, request):
    """backend.generate(request) with a progress bar fed by the one progress callback. Returns the video and the
    request as rendered (the backend's own defaults and frame grid applied: its fps is the file's)."""
    from cinegen.runtime import progress_bar
    request = _prepared(backend, request)
    backend.check(request)                       # before the bar: a bad request fails with no work done
    for warning in backend.warnings(request):     # words the model never trained on, a prompt past its window
        console.print(f"[bold yellow]warning:[/] {escape(warning)}")
    with progress_bar() as bar:
        task = bar.add_task(request.mode, total=None, status="")
        return backend.generate(request, progress=_bar_progress(bar, task)), request


def _prepared(backend, request):
    """The request as the backend renders it: its defaults for options the user did not set, durations on its
    frame grid; each change is printed."""
    request, notes = backend.prepare(request, unset_sample_fields())
    for note in notes:
        console.print(f"[yellow]warning:[/] {escape(note)}")
    return request


def _save_outputs(video, output: Path, frames_dir: Optional[Path], cfg: C.SampleConfig, prompt: str, model,
                  watermark: bool = False, c2pa: Optional[tuple[Path, Path]] = None) -> None:
    from cinegen.io.provenance import METHOD, embed_watermark, provenance_tags, sign_c2pa
    from cinegen.io.video import write_frames, write_mp4
    if watermark:
        video = embed_watermark(video)        # the size was checked before rendering (check_watermark_size)
    meta = provenance_tags(str(model or "cinegen-default"), prompt, cfg.seed, watermark=METHOD if watermark else "none")
    write_mp4(video, output, cfg.fps, metadata=meta)
    if c2pa:
        try:
            sign_c2pa(output, *c2pa, tags=meta)
        except ValueError as e:
            raise ValueError(f"{e} (the unsigned video is at {output})") from None
    if frames_dir:
        write_frames(video, frames_dir)
    console.print(f"wrote {output} ({video.shape[0]} frames, {video.shape[2]}x{video.shape[1]}, {cfg.fps:g} fps)")


def _render_and_save(model: Optional[Path], request, output: Path) -> None:
    video, request = _render(_backend(model), request)
    _save_outputs(video, output, None, request.sample, request.prompt, model)


@app.command("generate")
@load_options
@_sample_options()
def generate_cmd(
    prompt: str = typer.Argument(..., help="what to show, e.g. 'a large red ball bounces on a black background'"),
    output: Path = typer.Option(Path("out.mp4"), "-o", "--output"),
    frames_dir: Optional[Path] = typer.Option(None, help="also write PNG frames here"),
    model: Optional[Path] = ModelOpt,
    watermark: bool = typer.Option(False, help="embed the invisible cinegen watermark (frames >= 256x256)"),
    c2pa_cert: Optional[Path] = typer.Option(None, help="sign a C2PA manifest: PEM certificate chain (ES256)"),
    c2pa_key: Optional[Path] = typer.Option(None, help="... and its PEM private key"),
    sample: C.SampleConfig = None,
):
    """Generate a video from a text prompt and write an H.264 MP4."""
    from cinegen import requests as R
    from cinegen.io.provenance import check_c2pa_credentials, check_watermark_size
    _setup_logging()
    request = R.Text(prompt=prompt, sample=sample)
    if (c2pa_cert is None) != (c2pa_key is None):
        raise ValueError("--c2pa-cert and --c2pa-key go together")
    if watermark:                                               # checked before rendering, so no work is lost
        check_watermark_size(sample.width, sample.height)
    if c2pa_cert is not None:                                   # also before rendering
        check_c2pa_credentials(c2pa_cert, c2pa_key)
    video, request = _render(_backend(model), request)
    _save_outputs(video, output, frames_dir, request.sample, prompt, model, watermark, (c2pa_cert, c2pa_key) if c2pa_cert else None)


# --- Image and video prompting (issue 3): each command is one request ---

def _read_video(path: Path):
    from cinegen.io.video import read_video
    return read_video(path)[0]


def _read_image(path: Path):
    from cinegen.io.video import read_image
    return read_image(path)


@app.command("image")
@load_options
@_sample_options(seconds=None)
def image_cmd(prompt: str, output: Path = typer.Option(Path("still.png"), "-o", "--output"),
              model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Generate a single image (a one-frame video)."""
    from cinegen import requests as R
    from cinegen.io.video import write_image
    _setup_logging()
    frame, _ = _render(_backend(model), R.Image(prompt=prompt, sample=sample))
    write_image(frame, output)
    console.print(f"wrote {output}")


@app.command("animate")
@load_options
@_sample_options()
def animate_cmd(still: Path, prompt: str, output: Path = typer.Option(Path("animated.mp4"), "-o", "--output"),
                at: str = typer.Option("start", help="where the still goes: start | end"),
                model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Image-to-video: animate a still, which becomes the first (or last) frame."""
    from cinegen import requests as R
    _setup_logging()
    _render_and_save(model, R.Animate(prompt=prompt, image=_read_image(still), at=at, sample=sample), output)


@app.command("extend")
@load_options
@_sample_options(seconds_help="seconds to add")
def extend_cmd(clip: Path, prompt: str, output: Path = typer.Option(Path("extended.mp4"), "-o", "--output"),
               backward: bool = typer.Option(False), model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Extend a clip forwards (or backwards); its own frames are kept unchanged."""
    from cinegen import requests as R
    _setup_logging()
    _render_and_save(model, R.Extend(prompt=prompt, video=_read_video(clip), backward=backward, sample=sample), output)


@app.command("connect")
@load_options
@_sample_options(seconds_help="seconds of the transition")
def connect_cmd(a: Path, b: Path, prompt: str = typer.Argument(defaults.CONNECT_PROMPT, help="what happens in between"),
                output: Path = typer.Option(Path("connected.mp4"), "-o", "--output"),
                model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """A transition that starts on a's last frames and ends on b's first frames."""
    from cinegen import requests as R
    _setup_logging()
    request = R.Connect(prompt=prompt or defaults.CONNECT_PROMPT, video=_read_video(a), video_b=_read_video(b),
                        sample=sample)
    _render_and_save(model, request, output)


@app.command("loop")
@load_options
@_sample_options(seconds=defaults.LOOP_SECONDS, seconds_help="seconds of the bridge back to the start")
def loop_cmd(clip: Path, prompt: str = typer.Argument(defaults.CONNECT_PROMPT),
             output: Path = typer.Option(Path("loop.mp4"), "-o", "--output"),
             model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Make a clip loop seamlessly: append a bridge from its last frame back to its first."""
    from cinegen import requests as R
    _setup_logging()
    _render_and_save(model, R.Loop(prompt=prompt, video=_read_video(clip), sample=sample), output)


@app.command("edit")
@load_options
@_sample_options(seconds=None)
def edit_cmd(clip: Path, prompt: str, output: Path = typer.Option(Path("edited.mp4"), "-o", "--output"),
             strength: float = typer.Option(defaults.STRENGTH, help="0 keeps the input, 1 ignores it"),
             model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Video-to-video: re-imagine a clip with a new prompt (SDEdit); the clip's length is kept."""
    from cinegen import requests as R
    _setup_logging()
    _render_and_save(model, R.Edit(prompt=prompt, video=_read_video(clip), strength=strength, sample=sample), output)


@app.command("inpaint")
@load_options
@_sample_options(seconds=None)
def inpaint_cmd(prompt: str, video: Path = typer.Option(..., help="the clip to inpaint"),
                mask: Path = typer.Option(..., help="white = regenerate: an image for every frame, or a video of as "
                                                    "many frames as the clip"),
                output: Path = typer.Option(Path("inpainted.mp4"), "-o", "--output"),
                model: Optional[Path] = ModelOpt, sample: C.SampleConfig = None):
    """Regenerate the mask's white region of a clip towards the prompt; the rest and the clip's length are kept."""
    from cinegen import requests as R
    _setup_logging()
    still = mask.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
    request = R.Inpaint(prompt=prompt, video=_read_video(video), mask=_read_image(mask) if still else _read_video(mask),
                        sample=sample)
    _render_and_save(model, request, output)


def _hard_sections(names: list[str], set_: str) -> tuple[str, ...]:
    """The hard-set sections `--section` names (all of them when none), checked before any work."""
    from cinegen.eval.hard import SECTIONS
    if names and set_ == "easy":
        raise ValueError("--section picks hard-set sections: use it with --set hard or --set all")
    unknown = [n for n in names if n not in SECTIONS]
    if unknown:
        raise ValueError(f"--section {unknown[0]!r} is no hard-set section; they are: "
                         + ", ".join(repr(n) for n in SECTIONS))
    return tuple(dict.fromkeys(names)) or SECTIONS


@app.command("eval")
@load_options
@_sample_options()
def eval_cmd(
    model: Optional[Path] = ModelOpt,
    n_seen: int = typer.Option(24), n_heldout: int = typer.Option(16),
    out: Path = typer.Option(Path("eval.json"), help="JSON report"),
    modes_: bool = typer.Option(False, "--modes", help="also score animate/extend/edit/loop and long-video memory"),
    direction_pairs_: int = typer.Option(8, "--direction-pairs", help="same-seed 'moves left'/'moves right' pairs: "
                                                                      "does the word or the noise pick the direction"),
    compare: Optional[Path] = typer.Option(None, help="an earlier report of the same prompts: print the paired "
                                                      "change per split with its standard error"),
    set_: str = typer.Option("easy", "--set", help="easy (one object, 64x64, 2 s) | hard (several objects, sizes, "
                             "4-8 s, photos with camera moves, each mode: eval/hard.py; sets its own sizes) | all"),
    limit: int = typer.Option(2, min=1, help="hard set: cases per section and split"),
    section: list[str] = typer.Option([], "--section", help="hard set: only this section (repeatable; default: "
                                      "every one), e.g. --section 'extend backward' --section loop"),
    sample: C.SampleConfig = None,
):
    """Score generated videos with the colour analyzer: attribute adherence on seen vs held-out combinations."""
    from rich.table import Table

    from cinegen.eval.run import direction_pairs, evaluate, noise_baseline, write_report
    from cinegen.eval.targets import holdout_of
    from cinegen.runtime import progress_bar
    _setup_logging()
    if set_ not in ("easy", "hard", "all"):
        raise ValueError(f"--set must be easy, hard or all, got {set_!r}")
    easy = set_ != "hard"
    sections = _hard_sections(section, set_)
    earlier = _read_report(compare) if compare else None       # read first: a bad file fails before the long run
    from cinegen import requests as R
    backend = _backend(model)
    probe = _prepared(backend, R.Text(prompt="a prompt", sample=sample))      # a model's own defaults and grid
    backend.check(probe)
    cfg, seed = probe.sample, sample.seed   # --seed picks the prompt set and the sampling noise
    pipe = backend.pipe if hasattr(backend.pipe, "dit") else None               # cinegen's own TextToVideo
    if pipe is not None:
        pipe.guidance_at(cfg)               # a --guidance-high the model cannot use fails before the long run
    elif modes_ or set_ != "easy":
        what = "--modes scores" if modes_ else f"--set {set_} scores"
        raise ValueError(f"{what} cinegen models' own modes; {backend.name} is a Diffusers pipeline")
    generate = pipe.generate if pipe is not None else lambda p, c: backend.generate(R.Text(prompt=p, sample=c))
    holdout = holdout_of(pipe) if pipe is not None else ()
    roundtrip = getattr(pipe, "roundtrip", None)            # our autoencoder's ceiling (a Diffusers folder has none)
    with progress_bar() as bar:
        task = bar.add_task("evaluating", total=None, status="")
        scored = _bar_progress(bar, task, lambda d: f"{d['phase']} {d['score']:.2f}")
        result = evaluate(generate, holdout, cfg, n_seen if easy else 0, n_heldout if easy else 0, seed,
                          roundtrip_fn=roundtrip, progress=scored)
        if set_ != "easy":
            from cinegen.eval.hard import evaluate_hard, hard_table
            result["hard"] = evaluate_hard(pipe, holdout, cfg, limit, seed, sections, progress=scored,
                                           roundtrip_fn=roundtrip)
    result["noise_baseline"] = noise_baseline(cfg, backend.capabilities.geometry.frames(cfg.seconds, cfg.fps), holdout)
    if direction_pairs_ > 0 and easy:
        result["direction_pairs"] = direction_pairs(generate, holdout, cfg, direction_pairs_, seed)
    if modes_:
        from cinegen.defaults import WEIGHTS_DIR
        from cinegen.eval.modes_eval import evaluate_modes, long_video_memory
        result["modes"] = evaluate_modes(pipe, cfg, holdout)
        result["long_video_memory"] = long_video_memory(model or WEIGHTS_DIR,
                                                        "a large red ball moves right on a black background", cfg)
        console.print(result["modes"], result["long_video_memory"])
    write_report(result, out)
    table = Table("split", "clips", "all\npass", "adherence", "colour", "shape", "count", "motion", "background",
                  "flicker", "real\nclips", "autoencoder\nround trips")
    for name, r in result["splits"].items():
        g = r["generated"]
        if g["clips"]:
            a = g["by_attribute"]
            table.add_row(name, str(g["clips"]), f"{g['all_pass']:.2f}", f"{g['adherence']:.3f}",
                          *(f"{a.get(k, 0):.2f}" for k in
                          ("colour", "shape", "count", "motion", "background")), f"{g['flicker']:.2f}",
                          f"{r['real']['adherence']:.3f}",
                          f"{r['autoencoder']['adherence']:.3f}" if "autoencoder" in r else "-")
    if easy:
        console.print(table)
    if "hard" in result:
        console.print(hard_table(result["hard"]["sections"]))
    if "direction_pairs" in result:
        d = result["direction_pairs"]
        console.print(f"same seed, 'moves left' vs 'moves right' ({d['pairs']} pairs): both words followed in "
                      f"{d['follow_words']:.0%}, same direction for both words in {d['same_direction']:.0%}")
    console.print(f"noise baseline adherence {result['noise_baseline']:.3f}; report written to {out}")
    if earlier is not None:
        _print_comparison(compare, earlier, result)


def _read_report(path: Path, what: str = "--compare") -> dict:
    _require_file(path, what)
    try:
        report = json.loads(path.read_text())
    except ValueError as e:
        _fail(f"{what} {path} is not a cinegen eval report: {e!r}")
    if not isinstance(report, dict) or "splits" not in report:
        _fail(f"{what} {path} is not a cinegen eval report: it has no 'splits'")
    return report


def _print_comparison(path: Path, earlier: dict, result: dict) -> None:
    from cinegen.eval.run import paired_difference
    try:
        pairs = paired_difference(earlier, result)
    except (ValueError, KeyError) as e:
        _fail(f"cannot compare with {path} (this run's report is written): {e}")
    console.print(f"paired against {path} (same prompts and seeds; ± one standard error):", _paired_table(pairs))


def _paired_table(pairs: dict):
    """Adherence per split, then each attribute's pass rate per split, with the paired changes."""
    from rich.console import Group
    from rich.table import Table
    splits = Table("split", "clips", "before", "after", "paired change")
    attributes = Table("split", "attribute", "before", "after", "paired change")
    for split, p in pairs.items():
        splits.add_row(split, str(p["clips"]), f"{p['before']:.3f}", f"{p['after']:.3f}",
                       f"{p['change']:+.3f} ± {p['stderr']:.3f}")
        for name, (a, b) in p["by_attribute"].items():
            change, err = p["attribute_change"][name]
            attributes.add_row(split, name, f"{a:.3f}", f"{b:.3f}", f"{change:+.3f} ± {err:.3f}")
    return Group(splits, attributes)


@app.command("eval-vae")
def eval_vae_cmd(
    vae: Optional[list[Path]] = typer.Argument(None, help="VAE files (train-vae or a model folder's vae.safetensors; "
                                                          "default: the shipped one)"),
    num_clips: int = typer.Option(48), seed: int = typer.Option(0, help="data seed of the rendered clips"),
    bucket: str = typer.Option("17x64x64", help="FRAMESxHEIGHTxWIDTH of every clip"),
    out: Optional[Path] = typer.Option(None, help="also write the rows as JSON (with every clip's PSNR)"),
):
    """Reconstruction PSNR of one or more autoencoders on the same held-out clips (those train-vae never renders),
    overall and by background; each file after the first is paired with it (± one standard error)."""
    from rich.table import Table

    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.eval.reconstruction import compare_vaes
    from cinegen.eval.run import write_report
    from cinegen.toyworld.source import ToyWorld, ToyWorldConfig, parse_bucket
    from cinegen.toyworld.world import BACKGROUNDS
    _setup_logging()
    paths = list(vae or [WEIGHTS_DIR / "vae.safetensors"])
    for p in paths:
        if not p.is_file():
            _fail(f"VAE file not found: {p}")
    if num_clips < 1:
        _fail(f"--num-clips must be at least 1, got {num_clips}")
    clips = ToyWorld(ToyWorldConfig(num_clips=num_clips, buckets=(parse_bucket(bucket),), seed=seed)).clips("heldout")
    try:
        rows = compare_vaes(paths, clips)
    except (ValueError, KeyError) as e:
        _fail(str(e))
    if out is not None:
        write_report({"seed": seed, "bucket": bucket, "rows": rows}, out)
    counts = rows[0]["by_background"]
    table = Table("#", "PSNR dB", "vs #1", *(f"{bg} ({counts[bg]['clips']})" for bg in BACKGROUNDS if bg in counts),
                  "latent shift vs #1")
    for i, row in enumerate(rows, 1):
        d = row.get("vs_first")
        table.add_row(str(i), f"{row['psnr']:.2f}", f"{d['mean']:+.2f} ± {d['se']:.2f}" if d else "",
                      *(f"{row['by_background'][bg]['psnr']:.2f}" for bg in BACKGROUNDS if bg in counts),
                      f"{row['latent_shift']:.3f}" if "latent_shift" in row else "")
    console.print(f"{len(clips)} held-out clips ({bucket}, seed {seed}); PSNR by background (clips); latent shift: "
                  "RMS change of the normalised latents over their RMS (DiTs trained on #1's latents need "
                  "continuing when it is large):", table,
                  *(f"#{i}: {row['vae']}" for i, row in enumerate(rows, 1)), sep="\n")


@app.command("compare")
def compare_cmd(
    reports: list[Path] = typer.Argument(..., help="eval reports in pairs: BEFORE AFTER [BEFORE AFTER ...], each "
                                                   "pair of the same prompts and seeds"),
    out: Optional[Path] = typer.Option(None, help="also write the pooled comparison as JSON"),
):
    """Paired change between eval reports, pooled over several prompt sets (e.g. --seed 0 and --seed 1 runs of two
    models): every clip's score change counts once, so the standard error is that of all pooled clips."""
    from cinegen.eval.run import pooled_difference, write_report
    if len(reports) % 2:
        _fail(f"compare takes reports in BEFORE AFTER pairs; got {len(reports)} ({', '.join(map(str, reports))})")
    loaded = [_read_report(p, "compare") for p in reports]
    try:
        pooled = pooled_difference(list(zip(loaded[::2], loaded[1::2])))
    except (ValueError, KeyError) as e:
        _fail(f"cannot pair these reports: {e}")
    if out is not None:
        write_report(pooled, out)
    console.print(f"{len(reports) // 2} pair(s) pooled (same prompts and seeds within a pair; ± one standard error):",
                  _paired_table(pooled))


@app.command("export")
def export_cmd(
    vae: Path = typer.Option(..., help="VAE file (train-vae output)"),
    dit: Path = typer.Option(..., help="DiT checkpoint (last.safetensors or dit.safetensors)"),
    out: Path = typer.Option(Path("src/cinegen/weights"), help="model folder to write"),
    int8: bool = typer.Option(False, "--int8", help="store the DiT's large matrices as int8 (half the file)"),
    raw: bool = typer.Option(False, "--raw", help="the DiT checkpoint's last-step weights instead of its EMA"),
    dit_high: Optional[Path] = typer.Option(None, help="a high-noise expert DiT (trained with --flow t_min=...): "
                                            "it predicts the steps with t >= its t_min"),
    text_encoder: Optional[str] = typer.Option(None, help="the text encoder the DiT files name (default: the one "
                                               "they were trained with); `minilm` after a lease trained with the "
                                               "packed copy at a /tmp path"),
):
    """Write a shippable model folder: EMA weights only, fp16, with configs and training facts."""
    from cinegen.training.export import export_model
    _setup_logging()
    try:
        paths = export_model(vae, dit, out, int8=int8, raw=raw, dit_high=dit_high, text_name=text_encoder)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    for p in paths:
        console.print(f"wrote {p} ({p.stat().st_size / 1e6:.1f} MB)")


# --- Service (issue 4) ---

def _models_option(model: list[str]) -> dict:
    """The models a server offers: the registry's (`cinegen models`: the shipped one and models.toml's, with the
    sizes and seconds it names for them) and --model NAME=FOLDER|REGISTRY-NAME."""
    from cinegen.backends.registry import load_registry
    from cinegen.server.catalog import ModelSpec
    models = {name: ModelSpec(name, **entry.serve) for name, entry in load_registry().items()}
    for item in model:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            _fail(f"bad --model {item!r}: expected NAME=FOLDER (or NAME=REGISTRY-NAME)")
        models[name] = ModelSpec(Path(path) if Path(path).is_dir() else path)
    return models


def _aliases_option(alias: list[str], models: dict) -> dict:
    out = {}
    for item in alias:
        name, sep, target = item.partition("=")
        if not sep or target not in models:
            _fail(f"bad --alias {item!r}: expected API-NAME=MODEL with MODEL one of {sorted(models)}")
        out[name] = target
    return out


BATCH = typer.Option(defaults.BATCH, min=1, help="most compatible queued jobs (same model, size, seconds; "
                     "text-to-video) a worker renders in one batched call; 1: one at a time")
BATCH_WAIT = typer.Option(defaults.BATCH_WAIT, min=0.0, help="seconds a worker waits for more jobs to fill a batch")


@app.command("serve")
def serve_cmd(
    host: str = typer.Option("127.0.0.1"), port: int = typer.Option(8000),
    data_dir: Path = typer.Option(Path("cinegen-data"), help="SQLite job store, uploads and outputs"),
    workers: int = typer.Option(1, help="render worker processes to start (0: run `cinegen worker` yourself)"),
    api_keys: Optional[Path] = typer.Option(None, help='JSON {"keys": {"<key>": "<owner>"}}; also $CINEGEN_API_KEYS'),
    model: list[str] = typer.Option([], help="extra model NAME=FOLDER (cinegen-default is the shipped one)"),
    alias: list[str] = typer.Option([], help="API model name for a model, e.g. sora-2-pro=wan (sora-2, sora-2-pro "
                                    "and their dated names default to cinegen-default)"),
    steps: int = typer.Option(defaults.STEPS, help="sampling steps per job"),
    stale_after: float = typer.Option(60.0, help="seconds without a worker heartbeat before a job is re-queued"),
    database: Optional[str] = typer.Option(None, help="postgresql://... shared queue (default: SQLite in data-dir)"),
    grace: float = typer.Option(30.0, help="on SIGTERM/SIGINT: seconds running jobs may take to finish before "
                                "they go back to the queue"),
    max_active_jobs: int = typer.Option(16, help="queued + rendering jobs per API key"),
    rate_limit: float = typer.Option(600.0, help="requests per minute per API key"),
    ttl: int = typer.Option(7 * 24 * 3600, help="seconds a video's files are kept after its creation"),
    disk_quota: Optional[int] = typer.Option(None, help="bytes; new jobs are refused while data-dir holds more"),
    webhook_url: Optional[str] = typer.Option(None, help="POST video.completed / video.failed events here"),
    umask: str = typer.Option("027", help="octal umask of the service's files (027: the group may read them)"),
    batch: int = BATCH, batch_wait: float = BATCH_WAIT,
):
    """Run the OpenAI-Videos-compatible HTTP service with its web page and supervised render workers.
    Webhooks are signed with $CINEGEN_WEBHOOK_SECRET (a whsec_... secret, as OpenAI's SDK verifies)."""
    import os
    import signal

    from cinegen.extras import require
    uvicorn = require("uvicorn", "server", "cinegen serve")
    require("fastapi", "server", "cinegen serve")
    from cinegen.server.app import ServerSettings, create_app, load_api_keys
    from cinegen.server.limits import RateLimit
    from cinegen.server.supervisor import Supervisor
    _setup_logging()
    os.umask(int(umask, 8))
    models = _models_option(model)
    settings = ServerSettings(data_dir=data_dir, models=models, aliases=_aliases_option(alias, models),
                              api_keys=load_api_keys(api_keys), database=database, workers=max(1, workers), batch=batch,
                              max_active_jobs=max_active_jobs, rate_limit=RateLimit(per_minute=rate_limit),
                              ttl_seconds=ttl, disk_quota_bytes=disk_quota, webhook_url=webhook_url,
                              webhook_secret=os.environ.get("CINEGEN_WEBHOOK_SECRET"))
    try:
        app_ = create_app(settings)
    except ValueError as e:
        _fail(str(e))
    stopped = []           # uvicorn re-raises the signal it stopped on; ours records it instead of dying at once
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, _: stopped.append(s))
    supervisor = Supervisor(data_dir, {k: v.path for k, v in models.items()}, workers, steps, stale_after,
                            database, batch=batch, batch_wait=batch_wait).start()
    try:
        uvicorn.run(app_, host=host, port=port, log_level="info")
    finally:
        supervisor.shutdown(grace)


@app.command("worker")
def worker_cmd(
    data_dir: Path = typer.Option(Path("cinegen-data"), help="outputs; shared storage when workers span machines"),
    model: list[str] = typer.Option([]), steps: int = typer.Option(defaults.STEPS), stale_after: float = typer.Option(60.0),
    database: Optional[str] = typer.Option(None, help="postgresql://... shared queue (default: SQLite in data-dir)"),
    batch: int = BATCH, batch_wait: float = BATCH_WAIT,
):
    """A render worker for `cinegen serve --workers 0`; run as many as the machines hold against one database."""
    from cinegen.server.supervisor import run_worker_process
    _setup_logging()
    run_worker_process(data_dir, {k: v.path for k, v in _models_option(model).items()}, steps, stale_after, database,
                       batch=batch, batch_wait=batch_wait)


@app.command("verify")
def verify_cmd(clip: Path, prompt: Optional[str] = typer.Option(None, help="check the clip was made from this prompt"),
               watermark: bool = typer.Option(False, help="require the invisible watermark (also required when the "
                                                           "clip's tags say it was marked, or it has no cinegen tags)"),
               c2pa: bool = typer.Option(False, help="require a valid C2PA manifest (one present is always checked)"),
               json_: bool = typer.Option(False, "--json", help="print the report as JSON on stdout")):
    """Check a clip's provenance: tags, C2PA manifest, invisible watermark, prompt. Exit 0 when every check that
    applies holds, 1 when one fails (invalid manifest, watermark absent, prompt mismatch), 2 on bad input."""
    from cinegen.io.provenance import verify
    report = verify(clip, prompt=prompt, require_watermark=watermark, require_c2pa=c2pa)
    if json_:
        print(json.dumps(report, indent=2))
    else:
        for k in ("generator", "model", "seed", "prompt_sha256", "watermark"):
            console.print(f"{k}: {report['tags'].get(k, '(absent)')}")
        for name, check in report["checks"].items():
            mark = "[green]ok[/]" if check["ok"] else ("[red]FAILED[/]" if check["required"] else "[yellow]no[/]")
            console.print(f"{name}: {mark} {check['detail']}")
    if not report["ok"]:
        raise typer.Exit(1)


@app.command("storyboard")
@load_options
def storyboard_cmd(
    board: Path = typer.Argument(..., help="YAML or JSON storyboard (see cinegen.studio.board)"),
    output: Path = typer.Option(Path("film"), "-o", "--output", help="film folder"),
    check: bool = typer.Option(False, help="only validate the board and show the estimate"),
    gpu: str = typer.Option("H100", help="GPU the estimate is priced on, or 'cpu' (this machine, timed)"),
    fps: Optional[str] = typer.Option(None, help="delivery rate: 23.976, 24, 25, 29.97 or 30 (default: the board's)"),
    watermark: bool = typer.Option(False, help="embed the invisible watermark in the film and every shot (>= 256x256)"),
    c2pa_cert: Optional[Path] = typer.Option(None, help="sign the film and every shot: PEM certificate chain (ES256)"),
    c2pa_key: Optional[Path] = typer.Option(None, help="... and its PEM private key"),
    model: Optional[Path] = ModelOpt,
):
    """Render a multi-shot storyboard: joined MP4 with voice-over and subtitles, SRT/VTT, OTIO, EDL, FCPXML.
    --model (and its load options) renders every shot that names no `model:` of its own."""
    from cinegen.io.provenance import check_c2pa_credentials, check_watermark_size
    from cinegen.runtime import progress_bar
    from cinegen.studio.board import load_board
    from cinegen.studio.conform import delivery_rate
    from cinegen.studio.render import Marking, board_estimate, board_notes, render_storyboard
    from cinegen.studio.shot_models import BoardModels, load_shot_model
    _setup_logging()
    if (c2pa_cert is None) != (c2pa_key is None):
        raise ValueError("--c2pa-cert and --c2pa-key go together")
    if c2pa_cert is not None:
        check_c2pa_credentials(c2pa_cert, c2pa_key)
    models = BoardModels(load_shot_model(model, **_backend_options()), base=board.parent)
    plan = load_board(board, models.default.backend.capabilities.geometry, models)
    if fps is not None:
        plan = plan.model_copy(update={"fps": float(delivery_rate(fps))})
    if watermark:                                     # before rendering, so no work is lost
        check_watermark_size(*plan.film_size)
    estimate = board_estimate(models, plan, gpu)
    Console().print(estimate.table(board.name))
    for line in estimate.notes():
        console.print(line)
    notes = board_notes(models, plan)
    for note in notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    if check:
        console.print("board is valid")
        return
    marking = Marking(watermark, (c2pa_cert, c2pa_key) if c2pa_cert else None)
    with progress_bar() as bar:
        task = bar.add_task("rendering", total=len(estimate.rows), status="")
        result = render_storyboard(models, plan, output, progress=_bar_progress(bar, task), marking=marking)
    for w in (w for w in result.warnings if w not in notes):     # the notes were said above
        console.print(f"[yellow]warning:[/] {w}")
    console.print(f"wrote {result.film} ({len(result.rendered)} rendered, {len(result.cached)} from cache, "
                  f"{result.segments[-1].end} frames at {plan.fps:g} fps) with its subtitles and timelines in {output}")


app.command("models")(models_cmd)


@app.command("c2pa-credentials")
def c2pa_credentials_cmd(out: Path = typer.Option(Path("c2pa"), "-o", "--out"), name: str = typer.Option("cinegen studio")):
    """Make a private CA + ES256 signing certificate (chain.pem, key.pem) for C2PA manifests. Validators call
    them untrusted until the CA is on their trust list; use a C2PA-trusted CA for public distribution."""
    from cinegen.io.provenance import make_credentials
    chain, key = make_credentials(out, name)
    console.print(f"wrote {chain} and {key}")


@app.command("estimate")
def estimate_cmd(
    seconds: float = typer.Option(60.0), size: str = typer.Option("1920x1088", help="WIDTHxHEIGHT, multiples of 16"),
    fps: float = typer.Option(24.0), steps: int = typer.Option(50), guidance: float = typer.Option(5.0),
    solver: str = typer.Option(defaults.SOLVER, help=SOLVER_NAMES),
    gpu: str = typer.Option("H100", help="H100, H800, A100, ... or 'cpu' (this machine, timed)"),
    gpus: int = typer.Option(1),
    utilisation: float = typer.Option(0.4, help="share of the datasheet peak actually reached (MFU)"),
    price: Optional[float] = typer.Option(None, help="$ per GPU-hour (default: a typical cloud price per GPU)"),
    model: str = typer.Option("shipped", help="cinegen preset (shipped = the default model, default, base, ...), "
                                               "peer: wan2.1-14b, wan2.1-1.3b, or a Diffusers folder or `cinegen "
                                               "models` name (its configs are read)"),
    calibrate: bool = typer.Option(False, help="also time real DiT steps on this machine's CPU"),
):
    """Estimate FLOPs, GPU time, wall time and dollars for a render, before running it."""
    from rich.table import Table

    from cinegen.estimate import calibrate_cpu, estimate
    w, h = C.parse_size(size)
    peak = None
    if gpu.lower() == "cpu":
        # this machine: its rate measured by timing real DiT passes, so utilisation is already in the number
        cal = calibrate_cpu()
        peak, utilisation, price, gpu = cal["achieved_flops"], 1.0, price or 0.0, "CPU"
    dit, vae, text_tokens = estimate_configs(model)
    sample = C.SampleConfig(seconds=seconds, fps=fps, width=w, height=h, steps=steps, guidance=guidance, solver=solver)
    est = estimate(dit, vae, sample, gpu=gpu, gpus=gpus, utilisation=utilisation, price_per_gpu_hour=price,
                   text_tokens=text_tokens, peak_flops=peak)
    table = Table("quantity", "value", title=f"{model}: {seconds:g} s at {size}, {steps} steps on {gpus}x {gpu} "
                                               f"at {utilisation:.0%} utilisation")
    for k, v in est.rows():
        table.add_row(k, v)
    Console().print(table)
    from cinegen.estimate import NOT_MODELLED, SORA_PER_MINUTE, attention_share, human_dollars, human_time
    share = attention_share(dit, est.tokens, text_tokens, est.dit_flops_per_pass)
    per_min = 60 / max(seconds, 1e-9)
    console.print(f"per minute of video: {human_time(est.wall_seconds * per_min)}, {human_dollars(est.dollars * per_min)}; "
                  f"the seed's Sora figure: ${SORA_PER_MINUTE['dollars']:g} and about {SORA_PER_MINUTE['minutes']:g} min on "
                  f"{SORA_PER_MINUTE['gpus']}. Why it differs: {est.tokens:,} tokens per pass with full spacetime attention, "
                  f"{share:.0%} of each pass's FLOPs in attention (it grows with the square of the tokens), x {est.passes} passes")
    console.print(NOT_MODELLED)
    if calibrate:
        cal = calibrate_cpu()
        Console().print(f"this CPU: {cal['achieved_flops'] / 1e9:.1f} GFLOP/s achieved on the default DiT "
                        f"({cal['seconds_per_cfg_pass'] * 1000:.0f} ms per guided pass at 64x64, 2 s)")


def _preset(table: dict, name: str):
    if name not in table:
        _fail(f"unknown preset {name!r}; choose one of {sorted(table)}")
    return table[name]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
