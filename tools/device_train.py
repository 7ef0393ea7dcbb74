"""One lent-GPU lease of training: optionally the autoencoder, then either or both of the shipped pair of DiTs.

    python tools/device_train.py OUT_DIR [--vae-seconds 200] [--dit low:170] [--dit expert:110] [--clips 4000]

Each stage is a stage of step 12's recipe (configs/cinegen-default/) with the lease's step counts, clips and time
limits as overrides, bounded by the trainers' own train.max_minutes, which still finalise:
  1. (--vae-seconds) the shipped VAE fine-tuned on clips of every combination: the holdout list is a test of the
     DiT's composition of words, and a pixel codec that never reads a caption need not be kept from the pixels;
     with --decoder-blocks N only its decoder, grown to N residual blocks per stage (the latent space and so the
     shipped DiTs stay valid: the encoder keeps a small object's shape, the decoder loses it; docs/history.md);
  2. the latent cache built once with that VAE: clips rendered on every core and encoded on the GPU; prompts
     encoded by tools/travel_minilm.py's packed MiniLM (unpacked to /tmp/minilm_toy), checked for NaN (a word
     piece the packed copy lacks);
  3. each --dit TARGET:SECONDS in turn from its shipped weights: `low` trains t <= 0.8 (dit.safetensors), `expert`
     t >= 0.8 (dit_high.safetensors), with 02-dit-low.toml and 03-dit-expert.toml (twins, shift 3, the documented
     holdout; the low DiT's object weight 3, or --object-weight W);
  4. (--decoder-seconds) a decoder trained on the new DiTs' own latents (the recipe of the shipped step 8 and of DH
     in docs/history.md): `cinegen dit-latents` re-imagines --pair-clips rendered clips with the new pair (on the GPU),
     then a vae stage with decoder_only, dit_latents and the shape loss, grown to --decoder-blocks (2 unless given);
     a DiT changes what its latents hold, and the decoder has to learn to draw it;
  5. `cinegen export --int8 --raw --text-encoder minilm` of the new set (the files name the real MiniLM, not the
     packed copy); the changed files come back in 15 MB parts (the device tool returns files up to 16 MB):
     `cat dit_high.safetensors.part* > dit_high.safetensors`.
Step counts come from the rates measured on an H200 (2026-12-04): VAE 31 ms per step at batch 16, DiT 97-128 ms per
step at batch 128; the trainers log their own rate (`N steps in S s: X ms per step`) for the next plan. A wrong
guess costs little: each stage stops at its train.max_minutes with its learning rate decayed by time
(training.common.schedule_step), and --budget shrinks the DiT stages to what is left of the call. The decoder
stage's step count uses the VAE's rate, and its pairs are not bounded in time (1000 clips: 20-step SDEdit at batch 64,
well under a minute of GPU time by the DiT's rate, plus the rendering on every core).
"""

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

from cinegen.toyworld.world import DEFAULT_HOLDOUT

WEIGHTS = Path("src/cinegen/weights")
CONFIGS = Path("configs/cinegen-default")       # step 12's recipe: every stage here overrides only the lease's part
CLI = [sys.executable, "-m", "cinegen.cli"]
# target -> (the shipped file it continues, its recipe: the noise range, data, holdout and terms)
TARGETS = {"low": ("dit.safetensors", "02-dit-low.toml"), "expert": ("dit_high.safetensors", "03-dit-expert.toml")}
PAIRS = "/tmp/pairs.safetensors"


def steps_for(seconds: float, rate: float) -> int:
    """The step count a stage plans for its seconds at the given rate; its --max-minutes still stops it on time."""
    return max(int(seconds / rate), 1)


def max_minutes(seconds: float) -> list[str]:
    return [f"train.max_minutes={seconds / 60:.3f}"]


def vae_cmd(args, seconds: float) -> list[str]:
    """The whole VAE (step 12's stage 1), or with --decoder-blocks only its decoder, grown (stage 4)."""
    recipe = "04-decoder.toml" if args.decoder_blocks else "01-vae.toml"
    cmd = train(recipe, "out=/tmp/vae", f"init={WEIGHTS / 'vae.safetensors'}",
                f"train.steps={steps_for(seconds, args.vae_rate)}", f"train.batch_size={args.vae_batch}",
                f"data.num_clips={args.vae_clips}", f"data.seed={args.vae_seed}") + max_minutes(seconds)
    return cmd + ([f"model.decoder_res_blocks={args.decoder_blocks}"] if args.decoder_blocks else [])


def dit_cmd(args, target: str, vae: Path, steps: int, seconds: float | None = None) -> list[str]:
    """A DiT continued from its shipped weights with step 12's recipe (stage 2 or 3) on this lease's clips."""
    name, recipe = TARGETS[target]
    cmd = train(recipe, f"vae={vae}", f"out=/tmp/dit_{target}", f"init={WEIGHTS / name}", f"data.seed={args.seed}",
                f"data.num_clips={args.clips}", f"train.steps={steps}", f"train.batch_size={args.batch}",
                f"train.lr={args.lr}", "text.name=/tmp/minilm_toy")
    cmd += [f"terms.object_weight={args.object_weight}"] if target == "low" and args.object_weight is not None else []
    return cmd + (max_minutes(seconds) if seconds else [])


def train(recipe: str, *overrides: str) -> list[str]:
    return CLI + ["train", "--config", str(CONFIGS / recipe), *overrides]


def pairs_cmd(args, model: Path) -> list[str]:
    """The new DiTs' own latents of rendered clips (the holdout kept out: the decoder must not learn how the DiT
    draws a held-out combination)."""
    return CLI + ["dit-latents", "--out", PAIRS, "--model", str(model), f"data.num_clips={args.pair_clips}",
                  "data.seed=11", "--batch-size", "64", "--text-encoder", "/tmp/minilm_toy", holdout_arg()]


def decoder_cmd(args, vae: Path, seconds: float) -> list[str]:
    """Decoder-only training, half of its steps on the pairs, with the shape loss (step 8's recipe, as DH, on
    step 12's decoder stage at batch 16)."""
    return train("04-decoder.toml", "out=/tmp/vdec", f"init={vae}",
                 f"model.decoder_res_blocks={args.decoder_blocks or 2}", f"dit_latents={PAIRS}", "dit_share=0.5",
                 "terms.shape_weight=0.1", f"train.steps={steps_for(seconds, args.vae_rate)}",
                 f"data.num_clips={args.vae_clips}", "data.seed=13", holdout_arg()) + max_minutes(seconds)


def holdout_arg() -> str:
    return "data.holdout=" + json.dumps(list(DEFAULT_HOLDOUT))


def export(vae: Path, pair: dict[str, Path], out: str = "/tmp/m") -> None:
    subprocess.run(CLI + ["export", "--vae", str(vae), "--dit", str(pair["dit.safetensors"]),
                          "--dit-high", str(pair["dit_high.safetensors"]), "--int8", "--raw", "--out", out,
                          "--text-encoder", "minilm"], check=True)   # the files name the real MiniLM, not /tmp's copy


def run(cmd: list[str], log: Path) -> None:
    start = time.time()
    with open(log, "a") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"exit {code} after {time.time() - start:.0f} s: {' '.join(cmd[3:6])}", flush=True)
    if code:
        print("".join(open(log).readlines()[-15:]), flush=True)
        sys.exit(code)


def check_prompts(cache: Path) -> None:
    with safe_open(str(cache), "pt") as f:
        emb = f.get_tensor("text_emb")
    if emb.isnan().any():
        sys.exit(f"{int(emb.isnan().any(-1).any(-1).sum())} caption(s) use a word piece the packed MiniLM lacks")


# seconds a DiT stage spends outside its --max-minutes (process start, model load, final checkpoint), and what the
# exports and the split files need at the end
STAGE_OVERHEAD, EXPORT_RESERVE = 20.0, 40.0


def fit_budget(targets: list[tuple[str, float]], left: float | None) -> list[tuple[str, float]]:
    """The DiT stages scaled down together, so that a lease's command ends (and returns its files) inside its limit."""
    if left is None:
        return targets
    room = left - EXPORT_RESERVE - STAGE_OVERHEAD * len(targets)
    scale = min(1.0, max(room, 0.0) / sum(s for _, s in targets))
    if scale < 1.0:
        print(f"{left:.0f} s left: DiT stages scaled by {scale:.2f}", flush=True)
    return [(t, max(s * scale, 5.0)) for t, s in targets]


def parse_targets(specs: list[str]) -> list[tuple[str, float]]:
    out = []
    for spec in specs:
        target, _, seconds = spec.partition(":")
        if target not in TARGETS or not seconds.replace(".", "", 1).isdigit():
            sys.exit(f"--dit {spec!r}: expected TARGET:SECONDS with TARGET in {sorted(TARGETS)}")
        out.append((target, float(seconds)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--vae-seconds", type=float, default=0.0)
    ap.add_argument("--dit", action="append", default=[], help="TARGET:SECONDS, TARGET low or expert; repeatable")
    ap.add_argument("--clips", type=int, default=4000, help="source clips for the DiT (twins come on top)")
    ap.add_argument("--vae-clips", type=int, default=1500)
    ap.add_argument("--vae-seed", type=int, default=0, help="the VAE stage's clip seed (0: step 11's clips; another "
                    "seed gives clips it has not seen)")
    ap.add_argument("--vae-batch", type=int, default=16, help="the VAE stage's batch; give --vae-rate for it too "
                    "(on an H200 a step at batch 4 took 26 ms, 84%% of one at 16: keep 16 or more there)")
    ap.add_argument("--decoder-blocks", type=int, default=0, help="train only the VAE's decoder, grown to this many "
                                                                   "residual blocks per stage (0: fine-tune it all)")
    ap.add_argument("--object-weight", type=float, default=None, help="the low DiT's extra loss weight on object "
                    "cells (terms.object_weight; default: the recipe's, 3)")
    ap.add_argument("--decoder-seconds", type=float, default=0.0, help="then a decoder trained on the new DiTs' own "
                    "latents for this long (after their pairs are made)")
    ap.add_argument("--pair-clips", type=int, default=1000, help="rendered clips re-imagined for the decoder stage")
    ap.add_argument("--budget", type=float, default=0.0, help="wall-clock seconds for the whole run (0: no limit): "
                    "the DiT stages shrink in proportion to fit what the VAE stage and the cache left")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--seed", type=int, default=3, help="data seed (3: the clips of the 2026-11-26 lease)")
    ap.add_argument("--vae-rate", type=float, default=0.031, help="seconds per VAE step (H200, batch 16; "
                    "31 ms measured 2026-12-04)")
    ap.add_argument("--dit-rate", type=float, default=0.1, help="seconds per DiT step (H200, batch 128; 97-128 ms "
                    "measured 2026-12-04)")
    args = ap.parse_args()
    targets = parse_targets(args.dit)
    args.out.mkdir(parents=True, exist_ok=True)
    start, log = time.time(), args.out / "train_log.txt"
    vae = WEIGHTS / "vae.safetensors"
    if args.vae_seconds:
        run(vae_cmd(args, args.vae_seconds), log)
        vae = Path("/tmp/vae/vae.safetensors")
    trained = {}
    if targets or args.decoder_seconds:
        subprocess.run([sys.executable, "tools/travel_minilm.py", "unpack", ".devcarry/minilm_toy",
                        "/tmp/minilm_toy"], check=True)
    if targets:
        first = f"/tmp/dit_{targets[0][0]}"
        run(dit_cmd(args, targets[0][0], vae, 0), log)          # builds the latent cache only (0 steps)
        check_prompts(Path(first) / "latents.safetensors")
        targets = fit_budget(targets, args.budget - (time.time() - start) if args.budget else None)
        for target, seconds in targets:
            Path(f"/tmp/dit_{target}").mkdir(exist_ok=True)
            if f"/tmp/dit_{target}" != first:                     # same data and VAE: the same cache
                shutil.copy(Path(first) / "latents.safetensors", f"/tmp/dit_{target}/latents.safetensors")
            run(dit_cmd(args, target, vae, steps_for(seconds, args.dit_rate), seconds), log)
            trained[TARGETS[target][0]] = Path(f"/tmp/dit_{target}/last.safetensors")
    pair = {name: trained.get(name, WEIGHTS / name) for name in ("dit.safetensors", "dit_high.safetensors")}
    export(vae, pair)
    if args.decoder_seconds:
        run(pairs_cmd(args, Path("/tmp/m")), log)
        run(decoder_cmd(args, vae, args.decoder_seconds), log)
        vae = Path("/tmp/vdec/vae.safetensors")
        export(vae, pair)
    for name in ["vae.safetensors"] * bool(args.vae_seconds or args.decoder_seconds) + list(trained):
        subprocess.run(["split", "-b", "15M", "-d", f"/tmp/m/{name}", str(args.out / f"{name}.part")], check=True)
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
