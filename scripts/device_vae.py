"""Trains VAE candidates one after another on a lent GPU within a wall-clock budget (scripts/device_check.sh).

    python scripts/device_vae.py OUT_DIR BUDGET_SECONDS [--only vaeB] [--batch 16 --clips 1500 --min-steps 200]

Each candidate gets an equal share of the budget. Its step count is set from a 20-step pilot (longest training
window, 17 frames) so that the cosine schedule ends inside its share, and `train-vae --max-minutes` stops it
there anyway, still finalising, if the real run is slower. One process at a time: two CUDA processes side by
side ran 20x slower per step than the pilot on an H200 (2026-11-26). The shippable files (fp16, as `cinegen
export` writes them) go to OUT_DIR in 15 MB parts (the device tool returns files up to 16 MB): join them with
`cat NAME.safetensors.part* > NAME.safetensors`.
"""

import argparse
import subprocess
import sys
import time
from pathlib import Path

import torch

from cinegen.config import VAEConfig, override
from cinegen.models.vae import VideoVAE
from cinegen.training.train_vae import vae_loss

# name -> VAEConfig overrides; neither holds attribute combinations out (the VAE never reads captions)
CANDIDATES = {"vaeA": [], "vaeB": ["channels=[96,192,192]", "res_blocks=2"]}
RENDER_AND_FINALISE_S = 45
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def pilot_seconds_per_step(sets: list[str], batch: int) -> float:
    model = VideoVAE(override(VAEConfig(), sets)).to(DEV).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(batch, 3, 17, 64, 64, device=DEV) * 2 - 1
    times = []
    for _ in range(20):
        sync()
        start = time.perf_counter()
        with torch.autocast(DEV, dtype=torch.bfloat16, enabled=DEV == "cuda"):
            loss, _ = vae_loss(model, x, 1e-6, 1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sync()
        times.append(time.perf_counter() - start)
    return sorted(times[5:])[len(times[5:]) // 2]


def train_one(name: str, sets: list[str], share: float, args, out: Path) -> None:
    start = time.time()
    per_step = pilot_seconds_per_step(sets, args.batch)
    train_s = share - (time.time() - start) - RENDER_AND_FINALISE_S
    steps = max(args.min_steps, int(train_s / per_step))
    print(f"{name}: pilot {per_step * 1e3:.1f} ms/step -> {steps} steps in {train_s:.0f} s", flush=True)
    cmd = [sys.executable, "-m", "cinegen.cli", "train-vae", "--out", f"/tmp/{name}", "--steps", str(steps),
           "--batch-size", str(args.batch), "--num-clips", str(args.clips), "--log-every", "500",
           "--ckpt-every", "100000", "--max-minutes", f"{max(train_s, 10) / 60:.3f}"]
    cmd += [a for s in sets for a in ("--set", s)]
    with open(f"/tmp/{name}.log", "w") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    src = Path(f"/tmp/{name}/vae.safetensors")
    print(name, "exit", code, "file", src.is_file(), f"{time.time() - start:.0f} s", flush=True)
    print("".join(open(f"/tmp/{name}.log").readlines()[-8:]), flush=True)
    if src.is_file():
        fp16 = Path(f"/tmp/{name}.fp16.safetensors")
        from cinegen.models.loading import load_vae, read_meta
        from cinegen.training import checkpoint as ckpt_io
        (step, extra), model = read_meta(src), load_vae(src)
        ckpt_io.save_checkpoint(fp16, "vae", model.cfg, model, step=step, extra=extra, dtype=torch.float16)
        subprocess.run(["split", "-b", "15M", "-d", str(fp16), str(out / f"{name}.safetensors.part")], check=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("budget", type=float, help="seconds for all candidates together")
    ap.add_argument("--only", nargs="*", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--clips", type=int, default=1500)
    ap.add_argument("--min-steps", type=int, default=200)
    args = ap.parse_args()
    start = time.time()
    for i, name in enumerate(args.only):
        share = (args.budget - (time.time() - start)) / (len(args.only) - i)
        train_one(name, CANDIDATES[name], share, args, args.out)


if __name__ == "__main__":
    main()
