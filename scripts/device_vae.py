"""Trains VAE candidates side by side on a lent GPU within a wall-clock budget (scripts/device_check.sh).

    python scripts/device_vae.py OUT_DIR BUDGET_SECONDS [BATCH CLIPS MIN_STEPS]   (the last three: for a CPU dry run)

Each candidate's step count is set from a 20-step pilot on random clips at the longest training window
(17 frames, batch 16), so the cosine schedule ends inside the budget. The shippable files (fp16, as
`cinegen export` writes them) go to OUT_DIR, split in 15 MB parts where larger (the device tool returns files
up to 16 MB); join them with `cat name.part* > name`.
"""

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
BATCH, CLIPS, MIN_STEPS, RENDER_AND_FINALISE_S = 16, 1500, 200, 110
DEV = "cuda" if torch.cuda.is_available() else "cpu"


def sync() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()


def pilot_seconds_per_step(sets: list[str]) -> float:
    model = VideoVAE(override(VAEConfig(), sets)).to(DEV).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.rand(BATCH, 3, 17, 64, 64, device=DEV) * 2 - 1
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


def main(out: Path, budget: float) -> None:
    start = time.time()
    per_step = {name: pilot_seconds_per_step(sets) for name, sets in CANDIDATES.items()}
    train_s = budget - (time.time() - start) - RENDER_AND_FINALISE_S
    steps = {name: max(MIN_STEPS, int(train_s / sum(per_step.values()))) for name in CANDIDATES}   # run concurrently
    print("pilot s/step", per_step, "-> steps", steps, flush=True)
    procs = {}
    for name, sets in CANDIDATES.items():
        cmd = [sys.executable, "-m", "cinegen.cli", "train-vae", "--out", f"/tmp/{name}", "--steps", str(steps[name]),
               "--batch-size", str(BATCH), "--num-clips", str(CLIPS), "--log-every", "500", "--ckpt-every", "100000"]
        cmd += [a for s in sets for a in ("--set", s)]
        procs[name] = subprocess.Popen(cmd, stdout=open(f"/tmp/{name}.log", "w"), stderr=subprocess.STDOUT)
    for name, proc in procs.items():
        proc.wait()
        src = Path(f"/tmp/{name}/vae.safetensors")
        print(name, "exit", proc.returncode, "file", src.is_file(), f"{time.time() - start:.0f} s", flush=True)
        print("".join(open(f"/tmp/{name}.log").readlines()[-12:]), flush=True)
        if src.is_file():
            fp16 = Path(f"/tmp/{name}.fp16.safetensors")
            subprocess.run([sys.executable, "-c", f"""
import torch
from cinegen.training import checkpoint as c
from cinegen.training.train_vae import load_vae
src = c.load_checkpoint('{src}')
m = load_vae('{src}')
c.save_checkpoint('{fp16}', 'vae', m.cfg, m, step=src['step'], extra=src['extra'], dtype=torch.float16)
"""], check=False)
            subprocess.run(["split", "-b", "15M", "-d", str(fp16), str(out / f"{name}.safetensors.part")], check=False)


if __name__ == "__main__":
    if len(sys.argv) > 3:
        BATCH, CLIPS, MIN_STEPS = (int(a) for a in sys.argv[3:6])
    main(Path(sys.argv[1]), float(sys.argv[2]))
