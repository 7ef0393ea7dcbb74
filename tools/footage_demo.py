"""The measured demonstration of issue 31: teach the shipped model a colour it never saw ("pink", the toy world's
extra vocabulary) from a folder of ordinary MP4s with captions, by LoRA, and score it before and after.

    nice -n 19 python tools/footage_demo.py --work /work/runs/footage --minutes 12

Stages (each skipped when its output exists, so a stopped run goes on where it stopped):
1. footage: WORK/footage/*.mp4 + .txt: `--pink` clips of pink objects (random shape, size, motion; black or gray
   background) and as many ordinary toy-world clips (the vocabulary the model knows, none of its held-out
   combinations), so the adapter learns the new word without forgetting the old ones.
2. cache: `cinegen dataset prepare` with the shipped model's VAE and text encoder.
3. two adapters, one per DiT of the shipped model: the main DiT (t <= 0.8) and the high-noise expert (t >= 0.8),
   `--minutes` each, in this process with torch.set_num_threads(1).
4. scores with the analyzer: adherence on pink prompts (the analyzer reads pink where a scene names it) and on the
   standard seen / held-out prompt sets of `cinegen eval`, without and with both adapters. WORK/report.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from cinegen.config import LoraSpec, SampleConfig
from cinegen.io.video import write_mp4
from cinegen.pipeline import WEIGHTS_DIR, TextToVideo
from cinegen.toyworld.world import (
    DEFAULT_HOLDOUT,
    MOTIONS,
    SHAPES,
    SIZES,
    ObjectSpec,
    SceneSpec,
    canonical_caption,
    random_clip,
    render_scene,
)

NEW = "pink"


def pink_scene(rng: np.random.Generator, backgrounds=("black", "gray")) -> SceneSpec:
    shape = str(rng.choice(SHAPES))
    motions = [m for m in MOTIONS if not (m == "spins" and shape in ("ball", "ring"))]
    return SceneSpec((ObjectSpec(NEW, shape, str(rng.choice(SIZES)), str(rng.choice(motions))),),
                     str(rng.choice(backgrounds)))


def render_footage(folder: Path, n_pink: int, seed: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n_pink):
        scene = pink_scene(rng)
        clip = render_scene(scene, 64, 64, 17, 8.0, seed=1000 + i)
        write_mp4(clip.video, folder / f"pink_{i:03d}.mp4", 8.0)
        (folder / f"pink_{i:03d}.txt").write_text(canonical_caption(scene))
        clip = random_clip(rng, 64, 64, 17, 8.0, DEFAULT_HOLDOUT, 2)
        write_mp4(clip.video, folder / f"known_{i:03d}.mp4", 8.0)
        (folder / f"known_{i:03d}.txt").write_text(clip.caption)


def prepare_cache(footage: Path, cache: Path) -> None:
    from cinegen.data.folder import FolderConfig
    from cinegen.data.shards import model_parts, prepare
    from cinegen.models.loading import load_vae
    from cinegen.models.text_encoder import TextEncoder
    vae_path, text_cfg = model_parts(None)
    prepare(FolderConfig(root=str(footage), buckets=((17, 64, 64),)), load_vae(vae_path), TextEncoder(text_cfg),
            vae_path, cache)


def train_adapter(cache: Path, out: Path, minutes: float, expert: bool, rank: int) -> Path:
    from cinegen.training.recipe import load_recipe
    from cinegen.training.stages import run_stage
    overrides = [f"out={out}", f"lora.rank={rank}", "train.steps=100000", f"train.max_minutes={minutes}",
                 "train.batch_size=8", "train.lr=1e-3", "train.warmup=20", "train.ema_decay=0.99",
                 "train.log_every=100", "train.ckpt_every=200"]
    if expert:                       # the expert's own file and noise range; same architecture as the main DiT
        overrides += [f"init={WEIGHTS_DIR / 'dit_high.safetensors'}", "flow.t_min=0.8", "flow.t_max=1.0"]
    return run_stage(load_recipe(None, overrides, None, data=str(cache)), command="tools/footage_demo.py")


def pink_adherence(pipe: TextToVideo, n: int, cfg: SampleConfig, seed: int = 7) -> dict:
    from cinegen.eval.analyzer import analyze
    from cinegen.eval.run import summarise
    rng = np.random.default_rng(seed)
    scenes = [pink_scene(rng, ("black",)) for _ in range(n)]
    reports = [analyze(pipe.generate(canonical_caption(s), SampleConfig(**{**cfg.__dict__, "seed": cfg.seed + i})), s)
               for i, s in enumerate(scenes)]
    return summarise(reports)


def standard(pipe: TextToVideo, cfg: SampleConfig, n_seen: int, n_heldout: int) -> dict:
    from cinegen.eval.run import evaluate
    holdout = tuple(pipe.dit.extra.get("holdout", ()))
    result = evaluate(pipe.generate, holdout, cfg, n_seen, n_heldout, cfg.seed)
    return {name: split["generated"] for name, split in result["splits"].items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--pink", type=int, default=48, help="pink clips (and as many ordinary ones)")
    ap.add_argument("--minutes", type=float, default=12.0, help="training minutes per adapter")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--n-pink", type=int, default=24, help="pink prompts scored")
    ap.add_argument("--n-seen", type=int, default=24)
    ap.add_argument("--n-heldout", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = args.work
    footage, cache = work / "footage", work / "cache"
    times = {}
    if not footage.is_dir():
        render_footage(footage, args.pink)
    if not (cache / "manifest.json").is_file() or not json.loads((cache / "manifest.json").read_text())["complete"]:
        prepare_cache(footage, cache)
    adapters = []
    for name, expert in (("lora-low", False), ("lora-high", True)):
        path = work / name / "lora.safetensors"
        if not path.is_file():
            started = time.monotonic()
            train_adapter(cache, work / name, args.minutes, expert, args.rank)
            times[name] = round(time.monotonic() - started, 1)
        adapters.append(LoraSpec(str(path)))
    cfg = SampleConfig()
    report = {"settings": vars(args) | {"work": str(work)}, "train_seconds": times, "sample_config": cfg.__dict__}
    for label, lora in (("before", ()), ("after", tuple(adapters))):
        pipe = TextToVideo.from_pretrained(device="cpu", lora=lora)
        report[label] = {"pink": pink_adherence(pipe, args.n_pink, cfg), "standard": standard(pipe, cfg, args.n_seen,
                                                                                                  args.n_heldout)}
        (work / "report.json").write_text(json.dumps(report, indent=1, default=float))
        print(label, json.dumps(report[label], default=float))
    report["adapter_bytes"] = {a.path: Path(a.path).stat().st_size for a in adapters}
    (work / "report.json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
