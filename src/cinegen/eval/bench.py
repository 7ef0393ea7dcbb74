"""`make bench`: performance against peers and the quality/speed trade-offs, written to BENCHMARKS.md.

Every speed number is a ratio against a reference run side by side in the same process on the same inputs
(interleaved repeats, median), so a busy machine slows both sides alike. Sections:

  (a) DiT denoising pass: cinegen VideoDiT vs diffusers' WanTransformer3DModel at the same width, depth, heads,
      patch, MLP width, text width and token count;
  (b) MFU: our DiT's achieved FLOP/s over this machine's measured fp32 matmul peak;
  (c) VAE encode/decode throughput vs diffusers' AutoencoderKLWan sized to a similar parameter count;
  (d) adherence vs steps and solver (Euler, Heun, DPM-Solver++(2M)) with the shipped model;
  (e) step caching (TeaCache-style): transformer calls saved, wall-time ratio and adherence cost;
  (f) peak memory vs video length: chunked vs whole-clip VAE decode, and windowed long generation;
  (h), (i) and the parity check of (a): cold start and few-step sampling (eval/bench_speed.py);
  (j) batched serving: jobs/hour of the server's worker draining 8 queued jobs, batch 1 vs batch 8 (eval/bench_batch.py);
  (k) issue 35's targets, measured against their goals (eval/targets.py): only when named, `--sections targets`.

    python -m cinegen.eval.bench [--out BENCHMARKS.md] [--quick] [--sections cold_start,fewstep]
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import torch

from cinegen.config import DIT_PRESETS, VAE_PRESETS, DiTConfig, SampleConfig, VAEConfig
from cinegen.diffusion.samplers import SAMPLERS
from cinegen.estimate import dit_pass_flops, latent_grid
from cinegen.eval.sections import kept_sections, machine, replace_section  # noqa: F401  (bench.machine: callers)
from cinegen.eval.timing import interleaved

TEXT_TOKENS = 32


def syncer(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else None


def params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- (a) + (b): the DiT pass against Wan's transformer, and MFU ---

def wan_transformer_like(cfg: DiTConfig):
    """diffusers' Wan2.1 transformer with our default DiT's sizes (same blocks: self-attn, cross-attn, MLP)."""
    from diffusers import WanTransformer3DModel
    return WanTransformer3DModel(patch_size=cfg.patch, num_attention_heads=cfg.heads, attention_head_dim=cfg.width // cfg.heads,
                                 in_channels=cfg.in_channels, out_channels=cfg.latent_channels, text_dim=cfg.text_dim,
                                 freq_dim=256, ffn_dim=int(cfg.width * cfg.mlp_ratio), num_layers=cfg.depth,
                                 rope_max_seq_len=1024).eval()


def dit_vs_wan(cfg: DiTConfig, grid: tuple[int, int, int], label: str, repeats: int = 7,
               device: str = "cpu", dtype: torch.dtype = torch.float32) -> dict:
    """One CFG-batched (B=2) denoising pass of each model on the same latents, text and timestep.

    grid: the latent grid (t, h, w); label: what clip it stands for. Both models hold their weights in `dtype`."""
    dev = torch.device(device)
    calls, ours, wan = dit_pair(cfg, grid, dev, dtype)
    with torch.no_grad():
        times = interleaved(calls, repeats, sync=syncer(dev))
    pt, ph, pw = cfg.patch
    tokens = grid[0] // pt * (grid[1] // ph) * (grid[2] // pw)
    flops = 2 * dit_pass_flops(cfg, grid, TEXT_TOKENS)                              # B = 2
    return {"size": label, "tokens": tokens, "cinegen_ms": times["cinegen"] * 1e3, "wan_ms": times["wan"] * 1e3,
            "speedup": times["wan"] / times["cinegen"], "cinegen_params": params(ours), "wan_params": params(wan),
            "achieved_gflops": flops / times["cinegen"] / 1e9}


def dit_pair(cfg: DiTConfig, grid: tuple[int, int, int], dev: torch.device, dtype: torch.dtype):
    """Our DiT and Wan's at cfg's sizes, and one pass of each on the same inputs: ({"cinegen", "wan"}, ours, wan)."""
    from cinegen.models.dit import VideoDiT
    torch.manual_seed(0)
    with dev:                                  # built on the device: a 1.3B model initialises in seconds there
        ours, wan = VideoDiT(cfg).eval().to(dtype), wan_transformer_like(cfg).to(dtype)
    kw = {"device": dev, "dtype": dtype}
    x = torch.randn(2, cfg.latent_channels, *grid, **kw)                           # (B, C, t, h, w)
    cond = torch.randn(2, cfg.in_channels - cfg.latent_channels, *grid, **kw) if cfg.conditioning else None
    x_in = torch.cat([x, cond], 1) if cond is not None else x                      # Wan takes the channels stacked
    t, text = torch.rand(2, **kw), torch.randn(2, TEXT_TOKENS, cfg.text_dim, **kw)
    mask = torch.ones(2, TEXT_TOKENS, dtype=torch.bool, device=dev)
    return ({"cinegen": lambda: ours(x, t, text, mask, cond),
             "wan": lambda: wan(x_in, t * 1000, text, return_dict=False)}, ours, wan)


def sample_label(sample: SampleConfig) -> str:
    return f"{sample.width}x{sample.height} {sample.seconds:g} s"


def matmul_peak(n: int = 2048, repeats: int = 10, device: str = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """This machine's matmul rate (FLOP/s) in `dtype`: the denominator of MFU."""
    dev = torch.device(device)
    a, b = torch.randn(n, n, device=dev, dtype=dtype), torch.randn(n, n, device=dev, dtype=dtype)
    seconds = interleaved({"mm": lambda: a @ b}, repeats, sync=syncer(dev))["mm"]
    return 2 * n ** 3 / seconds


# --- (c): VAE throughput against Wan's VAE ---

def wan_vae_like(target_params: int, latent_channels: int):
    """AutoencoderKLWan with the 4x8x8 compression and the base width whose size is nearest ours."""
    from diffusers import AutoencoderKLWan

    def make(base):
        return AutoencoderKLWan(base_dim=base, z_dim=latent_channels, latents_mean=[0.0] * latent_channels,
                                latents_std=[1.0] * latent_channels).eval()
    best = min((16, 24, 32, 48, 64, 96), key=lambda b: abs(params(make(b)) - target_params))
    return make(best), best


def vae_vs_wan(cfg: VAEConfig, frames: int = 17, size: int = 64, repeats: int = 5, device: str = "cpu",
               dtype: torch.dtype = torch.float32) -> dict:
    from cinegen.models.vae import VideoVAE
    dev = torch.device(device)
    torch.manual_seed(0)
    ours = VideoVAE(cfg).eval()
    wan, base = wan_vae_like(params(ours), cfg.latent_channels)
    ours, wan = ours.to(dev, dtype), wan.to(dev, dtype)
    video = torch.rand(1, 3, frames, size, size, device=dev, dtype=dtype) * 2 - 1     # (B, 3, T, H, W) in [-1, 1]
    with torch.no_grad():
        z_ours, z_wan = ours.encode(video), wan.encode(video).latent_dist.mode()
        enc = interleaved({"cinegen": lambda: ours.encode(video), "wan": lambda: wan.encode(video)}, repeats, 1,
                          sync=syncer(dev))
        dec = interleaved({"cinegen": lambda: ours.decode(z_ours), "wan": lambda: wan.decode(z_wan)}, repeats, 1,
                          sync=syncer(dev))
    return {"clip": f"{frames}x{size}x{size}", "wan_base_dim": base, "cinegen_params": params(ours), "wan_params": params(wan),
            "encode_fps": {k: frames / v for k, v in enc.items()}, "decode_fps": {k: frames / v for k, v in dec.items()},
            "encode_speedup": enc["wan"] / enc["cinegen"], "decode_speedup": dec["wan"] / dec["cinegen"]}


# --- (d) + (e): quality against steps, solver and caching, with the shipped model ---

def adherence_grid(pipe, holdout, n: int, steps=(4, 8, 16, 32, 50), solvers=tuple(SAMPLERS)) -> list[dict]:
    from cinegen.eval.run import evaluate
    rows = []
    for solver in solvers:
        for s in steps:
            cfg = SampleConfig(steps=s, solver=solver, distilled=False)     # the sampler itself; (i) has the adapter
            start = time.perf_counter()
            r = evaluate(pipe.generate, holdout, cfg, n_seen=n, n_heldout=0)
            rows.append({"solver": solver, "steps": s, "adherence": r["splits"]["seen"]["generated"]["adherence"],
                         "seconds_per_clip": (time.perf_counter() - start) / n})
    return rows


def cache_grid(pipe, holdout, n: int, thresholds=(0.0, 0.05, 0.1, 0.2), steps: int = 20) -> list[dict]:
    from cinegen.eval.run import evaluate
    rows = []
    for th in thresholds:
        stats = {"calls": 0, "skipped": 0}

        def gen(prompt, cfg):
            video = pipe.generate(prompt, cfg)
            for k in stats:
                stats[k] += pipe.last_stats[k]
            return video
        start = time.perf_counter()
        r = evaluate(gen, holdout, SampleConfig(steps=steps, cache=th), n_seen=n, n_heldout=0)
        rows.append({"threshold": th, "adherence": r["splits"]["seen"]["generated"]["adherence"],
                     "calls_per_clip": stats["calls"] / n, "skipped_per_clip": stats["skipped"] / n,
                     "seconds_per_clip": (time.perf_counter() - start) / n})
    base = rows[0]["seconds_per_clip"]
    for r in rows:
        r["speedup"] = base / r["seconds_per_clip"]
    return rows


# --- (f): peak memory vs length ---

def _decode_peak(model_dir, latent_frames: int, side: int, chunk: int | None, queue) -> None:
    from cinegen.eval.modes_eval import peak_rss_mb
    from cinegen.models.loading import load_vae
    vae = load_vae(Path(model_dir) / "vae.safetensors")          # the VAE alone: its load peak stays small
    z = torch.randn(1, vae.cfg.latent_channels, latent_frames, side, side)
    before = peak_rss_mb()
    with torch.no_grad():
        vae.decode(z, chunk_frames=chunk)
    queue.put((before, peak_rss_mb()))


def decode_memory(model_dir, multiples=(1, 2, 4, 8), size: int = 128) -> list[dict]:
    """Peak RSS (MB) above the loaded VAE for decoding 2 s x multiple at size x size, chunked (4 latent frames at a
    time, causal cache carried over) vs the whole clip at once."""
    from cinegen.eval.modes_eval import in_fresh_process
    rows = []
    for m in multiples:
        latent_frames = 1 + 4 * m                          # 2 s at 8 fps = 17 frames = 5 latent frames
        row = {"multiple": m, "frames": 1 + 4 * (latent_frames - 1), "size": f"{size}x{size}"}
        for name, chunk in (("chunked", 4), ("whole", None)):
            before, peak = in_fresh_process(_decode_peak, model_dir, latent_frames, size // 8, chunk)
            row[f"{name}_mb"] = round(peak - before, 1)
        rows.append(row)
    return rows


# --- (g): bf16 autocast against fp32 (what `--precision auto` decides from) ---

def precision_steps(dit_cfg: DiTConfig, vae_cfg: VAEConfig, dit_batch: int = 32, vae_batch: int = 4,
                    sizes=((64, 64), (256, 256)), repeats: int = 5, matmul_n: int = 2048) -> dict:
    """Median seconds of training steps (forward + backward) and CFG sampling passes, in fp32 and in bf16 autocast,
    interleaved on the same inputs. Random weights: speed does not depend on them."""
    from cinegen.config import VAELossConfig
    from cinegen.models.dit import VideoDiT
    from cinegen.models.vae import VideoVAE
    from cinegen.runtime import autocast, use_bf16
    from cinegen.training.train_vae import vae_loss
    loss = VAELossConfig()
    cpu, g = torch.device("cpu"), torch.Generator().manual_seed(0)
    dit, vae = VideoDiT(dit_cfg), VideoVAE(vae_cfg)
    text = torch.randn(dit_batch, TEXT_TOKENS, dit_cfg.text_dim, generator=g)              # (B, S, Dt)
    mask = torch.ones(dit_batch, TEXT_TOKENS, dtype=torch.bool)

    def dit_step(x, t):
        dit.zero_grad(set_to_none=True)
        dit(x, t, text[:len(x)], mask[:len(x)]).float().pow(2).mean().backward()

    def vae_step(video):
        vae.zero_grad(set_to_none=True)
        vae_loss(vae, video, loss.kl_weight, loss.edge_weight)[0].backward()

    def sample_pass(x, t):
        with torch.no_grad():
            dit(x, t, text[:2], mask[:2])

    small = latent_grid(vae_cfg, SampleConfig(width=64, height=64))
    cases = {f"DiT training step, batch {dit_batch}, 64x64 2 s":
             partial(dit_step, torch.randn(dit_batch, dit_cfg.latent_channels, *small, generator=g),   # (B, C, T, H, W)
                     torch.rand(dit_batch, generator=g)),
             f"VAE training step, batch {vae_batch}, 17x64x64":
             partial(vae_step, torch.rand(vae_batch, 3, 17, 64, 64, generator=g) * 2 - 1)}
    for w, h in sizes:
        grid = latent_grid(vae_cfg, SampleConfig(width=w, height=h))
        cases[f"DiT CFG sampling pass (batch 2), {w}x{h} 2 s"] = partial(
            sample_pass, torch.randn(2, dit_cfg.latent_channels, *grid, generator=g), torch.rand(2, generator=g))
    rows = []
    for label, fn in cases.items():
        def timed(precision, fn=fn):
            def run():
                with autocast(cpu, precision):
                    fn()
            return run
        t = interleaved({"fp32": timed("fp32"), "bf16": timed("bf16")}, repeats, warmup=1)
        rows.append({"case": label, "fp32_ms": 1e3 * t["fp32"], "bf16_ms": 1e3 * t["bf16"], "speedup": t["fp32"] / t["bf16"]})
    return {"rows": rows, "matmul_fp32_gflops": matmul_peak(matmul_n) / 1e9,
            "matmul_bf16_gflops": matmul_peak(matmul_n, dtype=torch.bfloat16) / 1e9, "matmul_n": matmul_n,
            "auto_uses_bf16": use_bf16(cpu, "auto")}


def precision_table(p: dict) -> list[str]:
    fp32, bf16 = p["matmul_fp32_gflops"], p["matmul_bf16_gflops"]
    lines = ["## (g) bf16 autocast vs fp32 on this CPU (`--precision auto` trains in bf16 only on CPUs with AMX tiles)", "",
             f"{p['matmul_n']}x{p['matmul_n']} matmul: {fp32:.0f} GFLOP/s fp32, {bf16:.0f} GFLOP/s bf16 "
             f"({bf16 / fp32:.2f}x). `--precision auto` here: "
             f"{'bf16 autocast' if p['auto_uses_bf16'] else 'fp32'} for training; sampling stays fp32 on every CPU.", "",
             "| case (shipped sizes, random weights) | fp32 ms | bf16 ms | speed-up |", "|---|---|---|---|"]
    lines += [f"| {r['case']} | {r['fp32_ms']:.1f} | {r['bf16_ms']:.1f} | {r['speedup']:.2f}x |" for r in p["rows"]]
    return lines + [""]


# --- report ---

def run(out: Path, quick: bool = False, model_dir: Path | None = None, only: tuple[str, ...] = (),
        target_sizes=None) -> dict:
    """only: the result keys of the sections to run (default: all but the opt-in "targets"), e.g. ("cold_start",
    "fewstep"). target_sizes: section (k)'s sample sizes (targets.Sizes; default its own, or tiny ones if quick)."""
    from cinegen.eval import bench_batch, bench_speed, targets
    from cinegen.eval.modes_eval import long_video_memory
    from cinegen.pipeline import WEIGHTS_DIR, TextToVideo
    from cinegen.runtime import progress_bar
    from cinegen.toyworld.world import DEFAULT_HOLDOUT
    given, model_dir = model_dir, model_dir or WEIGHTS_DIR
    dit, vae = DIT_PRESETS["default"], VAE_PRESETS["default"]
    sizes = [(64, 64)] if quick else [(64, 64), (128, 128), (256, 256)]
    n, steps = (4, (4, 8)) if quick else (12, (4, 8, 16, 32, 50))
    multiples = (1, 2) if quick else (1, 2, 4, 8)
    results = {"machine": machine(), "command": "make bench" + (" (quick)" if quick else "")}
    sections = [("(a) DiT vs Wan", "dit", lambda: [dit_vs_wan(dit, latent_grid(vae, s), sample_label(s), 3 if quick else 15)
                                                    for s in (SampleConfig(width=w, height=h) for w, h in sizes)]),
                ("(b) matmul peak", "matmul_peak_gflops", lambda: matmul_peak() / 1e9),
                ("(c) VAE vs Wan", "vae", lambda: vae_vs_wan(vae, repeats=2 if quick else 5)),
                ("(g) bf16 vs fp32", "precision", lambda: precision_steps(
                    dit if quick else DIT_PRESETS["shipped"], vae, 4 if quick else 32, 1 if quick else 4,
                    sizes=((64, 64),) if quick else ((64, 64), (256, 256)), repeats=2 if quick else 5))]
    if (model_dir / "dit.safetensors").is_file():
        loaded = {}
        pipe = lambda: loaded.get("pipe") or loaded.setdefault("pipe", TextToVideo.from_pretrained(model_dir))  # noqa: E731
        sections += [("(d) steps x solver", "adherence", lambda: adherence_grid(pipe(), DEFAULT_HOLDOUT, n, steps)),
                     ("(e) step cache", "cache", lambda: cache_grid(pipe(), DEFAULT_HOLDOUT, n,
                                                                    (0.0, 0.1) if quick else (0.0, 0.05, 0.1, 0.2))),
                     ("(f) decode memory", "decode_memory", lambda: decode_memory(model_dir, multiples)),
                     ("(f) long-video memory", "long_video_memory", lambda: long_video_memory(
                         model_dir, "a large red ball moves right on a black background",
                         SampleConfig(steps=4 if quick else 20), multiples)),
                     ("(h) cold start", "cold_start", lambda: bench_speed.cold_start(given, 2 if quick else 5)),
                     ("(i) few-step", "fewstep", lambda: bench_speed.fewstep_grid(pipe(), DEFAULT_HOLDOUT, n)),
                     ("(j) batched serving", "batched_serving",
                      lambda: {**bench_batch.batched_serving(model_dir, rounds=1 if quick else 3), "machine": machine()})]
        if "targets" in only:              # opt-in: many minutes of generation
            sizes = target_sizes or (targets.QUICK if quick else targets.Sizes())
            sections.append(("(k) issue 35 targets", "targets", lambda: {
                **targets.measure(pipe(), given, targets.holdout_of(pipe()), sizes), "machine": machine()}))
    if only:
        sections = [s for s in sections if s[1] in only]
    with progress_bar() as bar:
        task = bar.add_task("bench", total=len(sections), status="")
        for label, key, fn in sections:
            bar.update(task, status=label)
            results[key] = fn()
            bar.advance(task)
    if "dit" in results:
        results["parity"] = bench_speed.parity(results["dit"])
    before = Path(out).read_text() if only and Path(out).exists() else ""
    write_markdown(results, out)
    if before:                      # a run of some sections: the others keep their earlier numbers, said so
        carry_unmeasured(out, before, only)
    return results


def _sections(text: str) -> tuple[list[str], dict[str, list[str]]]:
    """(the lines before the first lettered section, {letter: that section's lines}) of a BENCHMARKS.md, leaving
    out marked sections (kept_sections) and an earlier carry note."""
    import re
    text = re.sub(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->\n*", "", text, flags=re.S)
    head, blocks, current = [], {}, None
    for line in text.splitlines():
        m = re.match(r"## \((\w)\)", line)
        if m:
            current = blocks.setdefault(m.group(1), [])
        elif line.startswith("## "):
            current = None
        if line.startswith(CARRY_NOTE):
            continue
        (current if current is not None else head if not blocks else []).append(line)
    return head, blocks


CARRY_NOTE = "Not re-run by the latest `--sections` run, carried from the run before:"


def _trimmed(lines: list[str]) -> list[str]:
    while lines and not lines[-1]:
        lines = lines[:-1]
    return lines


def carry_unmeasured(out: Path, before: str, only: tuple[str, ...]) -> None:
    """Puts back the lettered sections of the earlier file that this run did not measure, in letter order, and
    names them under the header."""
    from cinegen.io.files import atomic_write
    text = Path(out).read_text()
    head, fresh = _sections(text)
    _, old = _sections(before)
    carried = sorted(set(old) - set(fresh))
    if not carried:
        return
    note = [f"{CARRY_NOTE} " + ", ".join(f"({k})" for k in carried) + f" (this run: `--sections {','.join(only)}`).", ""]
    body = [line for k in sorted({**old, **fresh}) for line in (*_trimmed(fresh.get(k) or old[k]), "")]
    lines = [*_trimmed(head), "", *note]
    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(lines + body + kept_sections(out)) + "\n"))


def vae_table(v: dict, note: str = "", digits: int = 1) -> list[str]:
    """Section (c) as markdown lines (shared with bench_gpu)."""
    fps = lambda side, key: f"{v[key][side]:.{digits}f}"      # noqa: E731
    return [f"## (c) VAE throughput vs diffusers AutoencoderKLWan (base_dim {v['wan_base_dim']}, "
            f"{v['wan_params'] / 1e6:.2f}M params vs our {v['cinegen_params'] / 1e6:.2f}M; clip {v['clip']}{note})", "",
            "| | cinegen frames/s | Wan frames/s | speed-up |", "|---|---|---|---|",
            f"| encode | {fps('cinegen', 'encode_fps')} | {fps('wan', 'encode_fps')} | {v['encode_speedup']:.2f}x |",
            f"| decode | {fps('cinegen', 'decode_fps')} | {fps('wan', 'decode_fps')} | {v['decode_speedup']:.2f}x |", ""]


def write_markdown(r: dict, out: Path) -> None:
    """The sections present in r (a run of some sections writes only those)."""
    from cinegen.eval import bench_batch, bench_speed, targets
    from cinegen.io.files import atomic_write
    lines = ["# Benchmarks", "", f"Machine: {r['machine']}", "", f"Command: `{r['command']}` "
             "(`python -m cinegen.eval.bench`). Speed numbers are ratios of runs interleaved in one process on the "
             "same inputs (median of repeats). GPU numbers (bf16, against the same peers, up to Wan2.1-1.3B's sizes) are in "
             "docs/BENCHMARKS_GPU.md (`make bench-gpu`, run on a lent GPU).", ""]
    if "dit" in r:
        lines += dit_table(r)
    if "vae" in r:
        lines += vae_table(r["vae"])
    if "adherence" in r:
        lines += adherence_tables(r)
    if "precision" in r:
        lines += precision_table(r["precision"])
    if "cold_start" in r:
        lines += bench_speed.cold_start_table(r["cold_start"])
    if "fewstep" in r:
        lines += bench_speed.fewstep_table(r["fewstep"])
    if "batched_serving" in r:
        lines += bench_batch.batched_serving_table(r["batched_serving"], "at least 1.5x on the CPU") + [""]
    if "targets" in r:
        lines += targets.targets_table(r["targets"]) + [""]
    lines += kept_sections(out, skip=tuple(s for s, key in ((bench_batch.SECTION, "batched_serving"),
                                                            (targets.SECTION, "targets")) if key in r))
    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def dit_table(r: dict) -> list[str]:
    """Sections (a) and (b), and the parity check."""
    from cinegen.eval import bench_speed
    peak = r.get("matmul_peak_gflops")
    lines = ["## (a) DiT denoising pass vs diffusers WanTransformer3DModel (same width, depth, heads, patch, MLP, text width; "
             "CFG batch of 2, fp32)", "",
             "| clip | tokens | cinegen ms | Wan ms | speed-up (Wan / cinegen) | params cinegen / Wan | (b) MFU |",
             "|---|---|---|---|---|---|---|"]
    for d in r["dit"]:
        mfu = f"{d['achieved_gflops'] / peak:.0%}" if peak else "-"
        lines.append(f"| {d['size']} | {d['tokens']} | {d['cinegen_ms']:.1f} | {d['wan_ms']:.1f} | "
                     f"{d['speedup']:.2f}x | {d['cinegen_params'] / 1e6:.2f}M / {d['wan_params'] / 1e6:.2f}M | {mfu} |")
    lines += [""] + bench_speed.parity_line(bench_speed.parity(r["dit"]))
    if peak:
        lines += [f"(b) MFU = achieved FLOP/s (FLOPs counted by torch's FlopCounterMode) over this machine's measured "
                  f"fp32 matmul peak of {peak:.1f} GFLOP/s (2048x2048).", ""]
    return lines


def adherence_tables(r: dict) -> list[str]:
    """Sections (d), (e) and (f)."""
    lines = []
    if "adherence" in r:
        lines += ["## (d) Adherence (seen prompts) vs steps and solver, shipped model, 64x64 2 s, guidance 4", "",
                  "| solver | steps | adherence | s/clip |", "|---|---|---|---|"]
        lines += [f"| {a['solver']} | {a['steps']} | {a['adherence']:.1%} | {a['seconds_per_clip']:.2f} |" for a in r["adherence"]]
        lines += ["", "## (e) Step caching (TeaCache-style), Euler 20 steps", "",
                  "| threshold | transformer calls / clip | skipped | speed-up | adherence |", "|---|---|---|---|---|"]
        lines += [f"| {c['threshold']} | {c['calls_per_clip']:.1f} | {c['skipped_per_clip']:.1f} | {c['speedup']:.2f}x | "
                  f"{c['adherence']:.1%} |" for c in r["cache"]]
        lines += ["", "## (f) Peak memory vs length (fresh process each)", "",
                  "VAE decode: peak RSS above the loaded VAE, MB.", "",
                  "| length | frames | size | chunked decode | whole-clip decode |", "|---|---|---|---|---|"]
        lines += [f"| {m['multiple']}x 2 s | {m['frames']} | {m['size']} | {m['chunked_mb']} | {m['whole_mb']} |"
                  for m in r["decode_memory"]]
        lines += ["", "Windowed long generation at 64x64 (`modes.long_video`, whole pipeline incl. text encoder): "
                  "peak RSS once loaded, and overall.", "",
                  "| windowed generation | frames | peak RSS after load (MB) | peak RSS (MB) |", "|---|---|---|---|"]
        lines += [f"| {k} 2 s | {m['frames']} | {m['peak_mb_after_load']} | {m['peak_mb']} |"
                  for k, m in r["long_video_memory"].items()] + [""]     # every section ends on a blank line
    return lines


def arg_parser(doc: str, out: str, json_out: str, quick_help: str):
    """The options both benchmark entry points share (this module's and bench_gpu's)."""
    import argparse
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(out))
    ap.add_argument("--json", type=Path, default=Path(json_out))
    ap.add_argument("--quick", action="store_true", help=quick_help)
    ap.add_argument("--model", type=Path, default=None)
    return ap


def report(results: dict, args) -> None:
    """Writes the raw numbers as JSON beside the markdown and prints the markdown."""
    import json
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2))
    print(args.out.read_text())


def main(argv: list[str] | None = None) -> None:
    ap = arg_parser(__doc__, "BENCHMARKS.md", "out/bench.json", "fewer sizes, steps and repeats (a smoke run)")
    ap.add_argument("--sections", default="", help="comma-separated result keys to run (default: all but targets), "
                    "e.g. cold_start,fewstep,dit; targets: section (k), issue 35's goals (opt-in, minutes)")
    from cinegen.eval import targets
    targets.add_size_options(ap, "targets-")
    args = ap.parse_args(argv)
    report(run(args.out, args.quick, args.model, tuple(filter(None, args.sections.split(","))),
               targets.sizes_of(args, args.quick, "targets-")), args)


if __name__ == "__main__":
    main(sys.argv[1:])
