"""Few-step distillation: rectified-flow reflow (Liu et al. 2022; InstaFlow, Liu et al. 2024) with the
classifier-free guidance distilled in (Meng et al. 2023), trained as LoRA adapters on the shipped DiTs.

    cinegen train --config configs/cinegen-default/06-distill.toml

1. Teacher pairs: the model samples `pairs` prompts from fixed noise with its guided many-step sampler
   (teacher_steps Euler steps at `guidance`), which gives a deterministic coupling noise -> clean latents.
2. Reflow: the student learns the straight line between each pair, v(x_t, t, prompt) = noise - x0 at
   x_t = (1 - t) x0 + t noise, in one unguided pass. On straight paths Euler is exact at any step count, so one
   adapter serves 4, 2 and 1 steps, and the states it meets while sampling are the ones it trained on.
   Training times are drawn partly on the few-step grids themselves (grid_share) and partly from the model's
   training distribution. Each t goes to the DiT that predicts there (the high-noise expert for t >= its boundary).

Why reflow: it is flow matching itself with a different coupling (same loss, same parametrisation, starts at the
teacher's weights), so it converges in minutes of CPU; the teacher pairs cost teacher_steps passes each and are
generated once. Consistency (sCM/rCM) and DMD2 need a critic or Jacobian-vector products and far more steps.
"""

from __future__ import annotations

import json
import logging
import random
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from cinegen import defaults
from cinegen.config import SampleConfig
from cinegen.diffusion.flow import interpolate, sample_t, shift_for
from cinegen.diffusion.schedules import shifted_ts
from cinegen.io.files import atomic_write
from cinegen.models.fewstep import FILE, PARTS, FewStepInfo, fingerprint, save_fewstep
from cinegen.models.lowrank import add_lora, lora_state
from cinegen.pipeline import WEIGHTS_DIR, TextToVideo, initial_noise
from cinegen.runtime import progress_bar
from cinegen.training.common import lr_at, out_of_time, schedule_step, seed_everything

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillStage:
    """The top level of a `kind = "distill"` recipe."""
    out: str = "runs/distill"        # out/pairs.safetensors (teacher pairs), out/fewstep.safetensors, out/model/
    model: str = ""                  # the model folder to distil ("": the shipped model)
    steps: tuple[int, ...] = (4, 2, 1)    # the step counts the adapter serves
    teacher_steps: int = defaults.TEACHER_STEPS
    guidance: float = defaults.GUIDANCE   # the teacher's scale, baked into the adapter
    rank: int = 8                    # LoRA rank on every Linear of both DiTs
    pairs: int = 256                 # teacher renders (prompt, noise) -> clean latents
    pair_batch: int = 8
    seconds: float = defaults.SECONDS
    width: int = defaults.WIDTH
    height: int = defaults.HEIGHT
    grid_share: float = 0.5          # share of training times drawn on the few-step grids

    def __post_init__(self):
        if not self.steps or any(s < 1 for s in self.steps):
            raise ValueError(f"steps must be step counts >= 1, got {list(self.steps)}")
        if self.teacher_steps < 2 or self.rank < 1 or self.pairs < 1 or self.pair_batch < 1:
            raise ValueError("teacher_steps >= 2, rank >= 1, pairs >= 1 and pair_batch >= 1 are needed, got "
                             f"{self.teacher_steps}, {self.rank}, {self.pairs} and {self.pair_batch}")
        if not 0.0 <= self.grid_share <= 1.0:
            raise ValueError(f"grid_share must be in [0, 1], got {self.grid_share}")


def distill(stage: DistillStage, train, source) -> Path:
    """Writes out/fewstep.safetensors and out/model/ (the base files linked, plus the adapter) and returns the
    adapter's path. train: TrainConfig (steps, batch_size, lr, warmup, weight_decay, grad_clip, log_every, seed,
    max_minutes); source: the data source whose training captions are the prompts."""
    out, folder = Path(stage.out), Path(stage.model) if stage.model else WEIGHTS_DIR
    seed_everything(train.seed)
    pipe = TextToVideo.from_pretrained(folder, device="cpu")
    pairs = teacher_pairs(pipe, stage, source, out / "pairs.safetensors")
    students = {"dit": pipe.dit} | ({"dit_high": pipe.high_noise[0]} if pipe.high_noise else {})
    params = [p for m in students.values() for p in add_lora(m, stage.rank)]
    losses = _train(pipe, students, params, pairs, stage, train)
    info = FewStepInfo(tuple(stage.steps), stage.guidance, {"steps": stage.teacher_steps, "solver": "euler"},
                       {p: fingerprint(folder / f"{p}.safetensors") for p in PARTS
                        if (folder / f"{p}.safetensors").is_file()})
    path = out / FILE
    save_fewstep(path, {k: lora_state(m) for k, m in students.items()}, info)
    (out / "losses.json").write_text(json.dumps(losses))
    _model_folder(folder, path, out / "model")
    log.info("few-step adapter written to %s (%.1f MB); a model folder using it: %s", path,
             path.stat().st_size / 1e6, out / "model")
    return path


def teacher_pairs(pipe: TextToVideo, stage: DistillStage, source, path: Path) -> dict:
    """{"noise", "x0": (N, C, t, h, w), "prompts": list[str]}: the guided teacher's renders of the source's training
    captions, made once and kept in `path` (a rerun with the same stage reuses them)."""
    key = json.dumps([stage.pairs, stage.teacher_steps, stage.guidance, stage.seconds, stage.width, stage.height,
                      source.table()], sort_keys=True)
    if path.is_file():
        from safetensors import safe_open
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata()
        if meta.get("key") == key:
            t = load_file(str(path))
            return {"noise": t["noise"], "x0": t["x0"], "prompts": json.loads(meta["prompts"])}
    prompts = [s.caption for s in source.clips("train", num=stage.pairs, quiet=True)][:stage.pairs]
    cfg = SampleConfig(seconds=stage.seconds, width=stage.width, height=stage.height, steps=stage.teacher_steps,
                       guidance=stage.guidance, seed=0, distilled=False)
    noise, x0 = [], []
    with progress_bar() as bar:
        task = bar.add_task("teacher pairs", total=len(prompts), status="")
        for i in range(0, len(prompts), stage.pair_batch):
            batch = prompts[i:i + stage.pair_batch]
            batch_cfg = replace(cfg, seed=i)                                 # render i + j uses seed i + j
            x0.append(pipe.generate_batch(batch, batch_cfg, return_latents=True).cpu())
            noise.append(initial_noise(pipe.latent_shape(batch_cfg), i, len(batch)))
            bar.update(task, completed=i + len(batch))
            log.info("teacher pairs: %d of %d", i + len(batch), len(prompts))
    pairs = {"noise": torch.cat(noise), "x0": torch.cat(x0), "prompts": prompts}
    meta = {"key": key, "prompts": json.dumps(prompts)}
    atomic_write(path, lambda tmp: save_file({"noise": pairs["noise"], "x0": pairs["x0"]}, tmp, metadata=meta))
    return pairs


def _train(pipe: TextToVideo, students: dict, params: list, pairs: dict, stage: DistillStage, train) -> list[float]:
    """The reflow loop; returns the logged mean losses."""
    opt = torch.optim.AdamW(params, lr=train.lr, weight_decay=train.weight_decay)
    n, shape = len(pairs["prompts"]), pairs["x0"].shape
    tokens = shape[2] * shape[3] * shape[4] // (pipe.dit.cfg.patch[0] * pipe.dit.cfg.patch[1] * pipe.dit.cfg.patch[2])
    grid = _grid_times(stage.steps, shift_for(tokens, pipe.flow))
    flow = replace(pipe.flow, t_min=0.0, t_max=1.0)                                   # the whole schedule
    emb, mask = pipe.text_encoder.encode(pairs["prompts"])                            # (N, S, Dt), (N, S)
    boundary = pipe.high_noise[1] if pipe.high_noise else 2.0
    rng, gen = random.Random(train.seed), torch.Generator().manual_seed(train.seed)
    started, logged, window = time.monotonic(), [], []
    for m in students.values():
        m.train()
    limit = 60 * train.max_minutes or None
    for step in range(train.steps):
        used = (time.monotonic() - started) / limit if limit else 0.0
        if out_of_time(used, limit, step, train.steps):
            break
        idx = torch.tensor([rng.randrange(n) for _ in range(train.batch_size)])
        t = sample_t(len(idx), tokens, flow, generator=gen)
        on_grid = torch.rand(len(idx), generator=gen) < stage.grid_share
        t = torch.where(on_grid, grid[torch.randint(len(grid), (len(idx),), generator=gen)], t)     # (B,)
        x0, noise = pairs["x0"][idx], pairs["noise"][idx]
        x_t, target = interpolate(x0, noise, t), noise - x0
        pred = torch.empty_like(x_t)
        for name, part in (("dit", t < boundary), ("dit_high", t >= boundary)):
            if part.any():
                pred[part] = students[name](x_t[part], t[part], emb[idx][part], mask[idx][part])
        loss = torch.mean((pred - target) ** 2)
        for g in opt.param_groups:
            g["lr"] = lr_at(schedule_step(step, 0, train.steps, used), train.lr, train.warmup, train.steps)   # decays by time too
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
        opt.step()
        window.append(float(loss))
        if (step + 1) % train.log_every == 0:
            logged.append(sum(window) / len(window))
            log.info("step %d/%d reflow loss %.4f (%.1f s)", step + 1, train.steps, logged[-1], time.monotonic() - started)
            window = []
    if window:
        logged.append(sum(window) / len(window))
    for m in students.values():
        m.eval()
    return logged


def _grid_times(steps: tuple[int, ...], shift: float) -> torch.Tensor:
    """Every time a few-step Euler run of these step counts evaluates the model at (t = 0 is never evaluated)."""
    ts = torch.cat([shifted_ts(k, shift)[:-1] for k in steps])
    return torch.unique(ts)


def _model_folder(base: Path, adapter: Path, folder: Path) -> None:
    """out/model/: the base model's files linked, plus the adapter: `--model out/model` renders with it."""
    folder.mkdir(parents=True, exist_ok=True)
    for f in base.glob("*.safetensors"):
        if f.name != FILE:
            link = folder / f.name
            link.unlink(missing_ok=True)
            link.symlink_to(f.resolve())
    target = folder / FILE
    target.unlink(missing_ok=True)
    target.symlink_to(adapter.resolve())
