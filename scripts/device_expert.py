"""Continues the high-noise expert (MODEL_CARD step 6) on a lent GPU within a wall-clock budget.

    python scripts/device_expert.py OUT_DIR BUDGET_SECONDS [--clips 4000 --batch 128 --lr 3e-4]

The text encoder travels as scripts/travel_minilm.py's packed copy (.devcarry/minilm_toy, unpacked to
/tmp/minilm_toy); the latent cache is built there (clips rendered on every core, encoded on the GPU). Steps:
one step to build the cache (checked for NaN prompt embeddings: a word piece the packed copy lacks), a
300-step pilot whose rate the trainer logs, then the run itself with its cosine schedule sized to what is left (`--max-minutes`
stops it anyway). The expert comes back as `cinegen export --int8` writes it, last-step weights and EMA, in 15 MB
parts (the device tool returns files up to 16 MB): `cat dit_high_raw.safetensors.part* > dit_high.safetensors`.
"""

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open

HOLDOUT = ("purple triangle", "orange ring bounces", "cyan box moves left", "yellow ball falls")
RUN = Path("/tmp/expert")
EXPORT_S = 40
PILOT_STEPS = 300      # ~25 s on an H200 (about 77 ms per step at batch 128): long enough to time the steady rate


def train_cmd(args, steps: int, minutes: float | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "cinegen.cli", "train", "--vae", "src/cinegen/weights/vae.safetensors",
           "--out", str(RUN), "--init", "src/cinegen/weights/dit_high.safetensors", "--preset", "shipped", "--twins",
           "--seed", "3", "--num-clips", str(args.clips), "--steps", str(steps), "--batch-size", str(args.batch),
           "--lr", str(args.lr), "--flow", "base_shift=3", "--flow", "base_tokens=80", "--flow", "t_min=0.8",
           "--text-encoder", "/tmp/minilm_toy", "--log-every", "250", "--ckpt-every", "100000"]
    cmd += [a for b in ["17x64x64"] * 4 + ["17x64x96"] for a in ("--bucket", b)]
    cmd += [a for h in HOLDOUT for a in ("--holdout", h)]
    return cmd + (["--max-minutes", f"{minutes:.3f}"] if minutes else [])


def run(cmd: list[str], log: Path) -> float:
    start = time.time()
    with open(log, "a") as f:
        code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT).returncode
    print(f"exit {code} after {time.time() - start:.0f} s: {' '.join(cmd[3:5])} ... --steps "
          f"{cmd[cmd.index('--steps') + 1]}", flush=True)
    if code:
        print("".join(open(log).readlines()[-15:]), flush=True)
        sys.exit(code)
    return time.time() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("budget", type=float)
    ap.add_argument("--clips", type=int, default=4000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-4)
    args = ap.parse_args()
    start, log = time.time(), args.out / "train_log.txt"
    subprocess.run([sys.executable, "scripts/travel_minilm.py", "unpack", ".devcarry/minilm_toy", "/tmp/minilm_toy"],
                   check=True)
    run(train_cmd(args, 1), log)
    with safe_open(str(RUN / "latents.safetensors"), "pt") as f:
        emb = f.get_tensor("text_emb")
    if emb.isnan().any():
        sys.exit(f"{int(emb.isnan().any(-1).any(-1).sum())} caption(s) use a word piece the packed MiniLM lacks")
    pilot = run(train_cmd(args, PILOT_STEPS + 1), log)
    # the trainer's own rate over the pilot's steps (a start's fixed cost, cache load and model, is not in it)
    per_step = float(re.findall(r"steps in [\d.]+ s: ([\d.]+) ms per step", log.read_text())[-1]) / 1e3
    fixed = max(pilot - PILOT_STEPS * per_step, 0.0)
    left = max(args.budget - (time.time() - start) - EXPORT_S - fixed, 20.0)
    steps = PILOT_STEPS + 1 + int(left / per_step)
    print(f"pilot: {per_step * 1e3:.0f} ms per step, {fixed:.0f} s to start; training to step {steps}", flush=True)
    run(train_cmd(args, steps, minutes=left / 60), log)
    for name, raw in (("raw", ["--raw"]), ("ema", [])):
        dst = Path(f"/tmp/m_{name}")
        subprocess.run([sys.executable, "-m", "cinegen.cli", "export", "--vae", "src/cinegen/weights/vae.safetensors",
                        "--dit", "src/cinegen/weights/dit.safetensors", "--dit-high", str(RUN / "last.safetensors"),
                        "--int8", "--out", str(dst), *raw], check=True)
        subprocess.run(["split", "-b", "15M", "-d", str(dst / "dit_high.safetensors"),
                        str(args.out / f"dit_high_{name}.safetensors.part")], check=True)
    print(f"done in {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
