"""`make bench-gpu`: the benchmarks of `make bench` that change on a GPU, written to docs/BENCHMARKS_GPU.md.

Run it where a CUDA GPU is present (on this project's lent machines: tools/device_check.sh). Sections, each a
side-by-side run in one process on the same inputs (interleaved repeats, median, synchronised clocks):

  (a) DiT denoising pass vs diffusers' WanTransformer3DModel with bf16 weights, at our default DiT's sizes and at
      Wan2.1-T2V-1.3B's sizes (width 1536, depth 30, 12 heads, MLP 8960, text width 4096) up to Wan's own
      480x832 5 s token grid (32760 tokens);
  (b) MFU against this GPU's measured bf16 matmul rate (8192^3);
  (c) VAE encode/decode throughput vs AutoencoderKLWan, bf16;
  (f) GPU peak memory of chunked vs whole-clip VAE decode with the shipped VAE;
  plus: bf16-vs-fp32 error of our DiT's output, and end-to-end `generate_batch` timings of the shipped model on
  the GPU (eager and torch.compile; batch 1 and 4); (j) batched serving: jobs/hour of the server's worker with 8
  queued jobs, the default batch vs one at a time (eval/bench_batch.py, as in `make bench`). Adherence (d, e) is
  the same maths on any device: it is measured by `make bench` on the CPU.

    python -m cinegen.eval.bench_gpu [--out docs/BENCHMARKS_GPU.md] [--quick] [--text-encoder PATH]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from cinegen.config import DIT_PRESETS, VAE_PRESETS, DiTConfig, SampleConfig
from cinegen.estimate import latent_grid
from cinegen.eval import bench, bench_batch

UNMEASURED_BATCHING = ("## (j) Batched serving on a GPU: unmeasured. No GPU was lent when it was built (issue 34, item 3; "
                       "goal at least 3x jobs/hour with 8 queued jobs, the default --batch 4 vs one at a time); `python -m "
                       "cinegen.eval.bench_gpu --only batched_serving --previous out/bench_gpu.json` measures it. The "
                       "CPU number is section (j) of BENCHMARKS.md.")

# Wan2.1-T2V-1.3B's transformer (its config.json): our DiT at the same sizes is the like-for-like comparison
WAN_1_3B = DiTConfig(width=1536, depth=30, heads=12, mlp_ratio=8960 / 1536, text_dim=4096)


def dit_rows(device: str, quick: bool) -> list[dict]:
    vae = VAE_PRESETS["default"]
    ours = DIT_PRESETS["shipped"]
    small = [SampleConfig(width=64, height=64), SampleConfig(width=256, height=256)]
    if not quick:
        small.append(SampleConfig(width=512, height=512, seconds=4))
    rows = [{**bench.dit_vs_wan(ours, latent_grid(vae, s), bench.sample_label(s), 3 if quick else 10, device,
                                torch.bfloat16), "model": "cinegen shipped (D 256, depth 12)"} for s in small]
    # Wan's own grids: 480x832 at 16 fps, 17 frames and 81 frames (5 s) -> latent (t, 60, 104)
    wan_grids = [((5, 60, 104), "480x832 17 frames")] + ([] if quick else [((21, 60, 104), "480x832 81 frames (5 s)")])
    cfg = WAN_1_3B if not quick else DiTConfig(width=384, depth=2, heads=6, mlp_ratio=8960 / 1536, text_dim=4096)
    rows += [{**bench.dit_vs_wan(cfg, grid, label, 3 if quick else 5, device, torch.bfloat16),
              "model": "Wan2.1-1.3B sizes (D 1536, depth 30)" if not quick else "quick stand-in"}
             for grid, label in wan_grids]
    return rows


@torch.no_grad()
def bf16_error(device: str) -> float:
    """||DiT_bf16(x) - DiT_fp32(x)|| / ||DiT_fp32(x)|| on random inputs: bf16 should land between 1e-3 and 1e-2."""
    from cinegen.models.dit import VideoDiT
    cfg = DIT_PRESETS["shipped"]
    torch.manual_seed(1)
    model = VideoDiT(cfg).to(device).eval()
    for p in model.parameters():            # adaLN-Zero starts at zero: give every layer a say
        p.normal_(0, 0.02)
    x = torch.randn(2, cfg.latent_channels, 5, 16, 16, device=device)
    cond = torch.randn(2, cfg.in_channels - cfg.latent_channels, 5, 16, 16, device=device)
    t, text = torch.rand(2, device=device), torch.randn(2, 32, cfg.text_dim, device=device)
    mask = torch.ones(2, 32, dtype=torch.bool, device=device)
    ref = model(x, t, text, mask, cond)
    with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
        out = model(x, t, text, mask, cond).float()
    return float((out - ref).norm() / ref.norm())


def gpu_decode_memory(model_dir: Path, device: str, multiples=(1, 2, 4, 8), size: int = 256) -> list[dict]:
    """Peak GPU memory (MB, above the loaded VAE) to decode 2 s x multiple at size x size, chunked vs whole."""
    from cinegen.models.loading import load_vae
    vae = load_vae(model_dir / "vae.safetensors", device)
    rows = []
    for m in multiples:
        latent_frames = 1 + 4 * m
        z = torch.randn(1, vae.cfg.latent_channels, latent_frames, size // 8, size // 8, device=device)
        row = {"multiple": m, "frames": 1 + 4 * (latent_frames - 1), "size": f"{size}x{size}"}
        for name, chunk in (("chunked", 4), ("whole", None)):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            with torch.no_grad():
                vae.decode(z, chunk_frames=chunk)
            torch.cuda.synchronize()
            row[f"{name}_mb"] = round((torch.cuda.max_memory_allocated() - base) / 2 ** 20, 1)
        rows.append(row)
    return rows


def generate_timings(model_dir: Path, device: str, text_encoder: str | None, quick: bool) -> list[dict]:
    """Wall seconds of the one generate path on the GPU (the model as `cinegen generate` loads it: the DiT, its
    high-noise expert if the folder has one, the VAE; bf16 autocast), after a warm-up."""
    from cinegen.pipeline import TextToVideo
    prompt = "a large red ball bounces on a black background"
    cases = [(SampleConfig(), 1), (SampleConfig(), 4), (SampleConfig(width=256, height=256, seconds=4), 1)]
    rows = []
    for compile_ in ((False,) if quick else (False, True)):
        pipe = TextToVideo.from_pretrained(model_dir, device, compile=compile_, text_encoder=text_encoder)
        # compiled: one grid only (every new grid or batch costs another compilation)
        for cfg, n in cases[:1] if compile_ else cases[:2] if quick else cases:
            try:
                rows.append(_time_generate(pipe, prompt, cfg, n))
            except Exception as e:              # a compiler missing on the machine must not lose the eager rows
                rows.append({"compile": compile_, "batch": n, "clip": bench.sample_label(cfg),
                             "error": f"{type(e).__name__}: {str(e)[:200]}"})
    return rows


def _time_generate(pipe, prompt: str, cfg: SampleConfig, n: int) -> dict:
    pipe.generate_batch([prompt] * n, cfg)                              # warm-up (and compilation)
    torch.cuda.synchronize()
    start = time.perf_counter()
    videos = pipe.generate_batch([prompt] * n, cfg)                     # (N, T, H, W, 3)
    torch.cuda.synchronize()
    return {"compile": pipe.dit_fn is not pipe.dit, "batch": n, "clip": bench.sample_label(cfg),
            "steps": cfg.steps, "seconds": time.perf_counter() - start, "frames": int(videos.shape[0] * videos.shape[1])}


def run(out: Path, quick: bool = False, model_dir: Path | None = None, text_encoder: str | None = None,
        only: set[str] | None = None, previous: dict | None = None) -> dict:
    """only: the result keys to measure (default all); previous: an earlier run's JSON whose other sections are
    carried over, each still dated by the run that measured it (a 15-minute lease re-measures what changed)."""
    from cinegen.defaults import WEIGHTS_DIR
    from cinegen.runtime import progress_bar
    if not torch.cuda.is_available():
        raise SystemExit("bench_gpu needs a CUDA GPU; on the CPU run `make bench`")
    device, model_dir = "cuda", Path(model_dir or WEIGHTS_DIR)
    results = {"machine": bench.machine(), "command": "python -m cinegen.eval.bench_gpu" + (" --quick" if quick else ""),
               "date": time.strftime("%Y-%m-%d")}
    sections = [("bf16 matmul peak", "bf16_peak_gflops",
                 lambda: bench.matmul_peak(8192, 10, device, torch.bfloat16) / 1e9),
                ("fp32 matmul peak", "fp32_peak_gflops", lambda: bench.matmul_peak(8192, 5, device) / 1e9),
                ("(a) DiT vs Wan", "dit", lambda: dit_rows(device, quick)),
                ("(c) VAE vs Wan", "vae", lambda: bench.vae_vs_wan(VAE_PRESETS["default"], 17, 64 if quick else 256,
                                                                   3 if quick else 10, device, torch.bfloat16)),
                ("bf16 error", "bf16_rel_error", lambda: bf16_error(device)),
                ("(f) decode memory", "decode_memory", lambda: gpu_decode_memory(model_dir, device,
                                                                                  (1, 2) if quick else (1, 2, 4, 8))),
                ("generate", "generate", lambda: generate_timings(model_dir, device, text_encoder, quick)),
                ("(j) batched serving", "batched_serving",
                 lambda: {**bench_batch.batched_serving(model_dir, rounds=1 if quick else 3), "machine": bench.machine()})]
    keys = [key for _, key, _ in sections]
    only = set(keys) if only is None else only
    if only - set(keys):
        raise SystemExit(f"unknown section(s) {sorted(only - set(keys))}; choose from {keys}")
    results["dates"] = {}
    for key in keys:
        if key not in only and previous and previous.get(key) is not None:
            results[key] = previous[key]
            results["dates"][key] = previous.get("dates", {}).get(key, previous["date"])
    sections = [s for s in sections if s[1] in only]
    with progress_bar() as bar:
        task = bar.add_task("bench-gpu", total=len(sections), status="")
        for label, key, fn in sections:
            bar.update(task, status=label)
            try:
                results[key] = fn()
            except Exception as e:            # one broken section must not lose the others' numbers
                results[key] = None
                results.setdefault("errors", {})[key] = f"{type(e).__name__}: {e}"
            write_markdown(results, out)      # after every section: a run cut off by its lease keeps what it measured
            bar.advance(task)
    return results


def write_markdown(r: dict, out: Path) -> None:
    from cinegen.io.files import atomic_write
    peak = r.get("bf16_peak_gflops") or float("nan")
    lines = ["# Benchmarks on a GPU", "", f"Machine: {r['machine']}", "", f"Measured {r['date']} with `{r['command']}`. "
             "Ratios of runs interleaved in one process on the same inputs (median of repeats, clocks read after "
             "torch.cuda.synchronize). Weights and activations in bf16 for both sides. "
             "What the numbers taught us, lease by lease: [GPU_NOTES.md](GPU_NOTES.md).", ""]
    lines += ["Few-step sampling and cold start (issue 34, `make bench` (h) and (i)) are measured on the CPU only: "
              "no GPU was lent to the task that built them (2026-12-07), so their GPU numbers are unmeasured.", ""]
    if r.get("dit"):
        lines += ["## (a) DiT denoising pass vs diffusers WanTransformer3DModel (same sizes; CFG batch of 2, bf16)", "",
                  "| model sizes | clip | tokens | cinegen ms | Wan ms | speed-up (Wan / cinegen) | params cinegen / Wan | (b) MFU |",
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {d['model']} | {d['size']} | {d['tokens']} | {d['cinegen_ms']:.2f} | {d['wan_ms']:.2f} | "
                  f"{d['speedup']:.2f}x | {d['cinegen_params'] / 1e6:.1f}M / {d['wan_params'] / 1e6:.1f}M | "
                  f"{d['achieved_gflops'] / peak:.1%} |" for d in r["dit"]]
        lines += ["", f"(b) MFU = achieved FLOP/s (FLOPs counted by torch's FlopCounterMode) over this GPU's measured bf16 "
                  f"matmul rate of {peak / 1e3:.0f} TFLOP/s (8192^3, random data); fp32 measured "
                  f"{(r.get('fp32_peak_gflops') or float('nan')) / 1e3:.0f} TFLOP/s.", ""]
    if r.get("vae"):
        lines += bench.vae_table(r["vae"], "; bf16", digits=0)
    if r.get("bf16_rel_error") is not None:
        lines += [f"bf16 autocast vs fp32, our DiT (shipped sizes, random weights and inputs): relative error "
                  f"{r['bf16_rel_error']:.2e} (bf16 operands are expected between 1e-3 and 1e-2).", ""]
    if r.get("decode_memory"):
        lines += ["## (f) Peak GPU memory of VAE decode vs length (MB above the loaded VAE, shipped VAE)", "",
                  "| length | frames | size | chunked decode | whole-clip decode |", "|---|---|---|---|---|"]
        lines += [f"| {m['multiple']}x 2 s | {m['frames']} | {m['size']} | {m['chunked_mb']} | {m['whole_mb']} |"
                  for m in r["decode_memory"]]
        lines.append("")
    if r.get("generate"):
        lines += ["## End to end: `generate_batch` with the shipped DiT and VAE on the GPU (Euler, 20 steps, CFG 4)", "",
                  "| torch.compile | batch | clip | seconds | frames/s |", "|---|---|---|---|---|"]
        lines += [f"| {g['compile']} | {g['batch']} | {g['clip']} | {g['seconds']:.2f} | {g['frames'] / g['seconds']:.0f} |"
                  if "error" not in g else f"| {g['compile']} | {g['batch']} | {g['clip']} | failed: {g['error']} | |"
                  for g in r["generate"]]
        lines.append("")
    if r.get("batched_serving"):
        lines += bench_batch.batched_serving_table(r["batched_serving"], "at least 3x on a GPU")
    else:
        lines += [UNMEASURED_BATCHING, ""]
    carried = r.get("dates", {})
    if carried:
        lines += ["Carried over from earlier runs on the same kind of machine (not re-measured on " + r["date"] + "): "
                  + "; ".join(f"`{k}` measured {d}" for k, d in sorted(carried.items())) + ".", ""]
    for key, err in r.get("errors", {}).items():
        lines.append(f"- section `{key}` failed: {err}")
    atomic_write(out, lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))


def main(argv: list[str] | None = None) -> None:
    ap = bench.arg_parser(__doc__, "docs/BENCHMARKS_GPU.md", "out/bench_gpu.json",
                          "fewer sizes and repeats, a small stand-in for Wan-1.3B")
    ap.add_argument("--text-encoder", default=None, help="local Hugging Face encoder folder (default: MiniLM)")
    ap.add_argument("--only", default=None, help="comma-separated result keys to measure, e.g. dit,generate")
    ap.add_argument("--previous", type=Path, default=None, help="an earlier run's JSON: sections not measured now "
                                                                 "are carried from it, with their own date")
    args = ap.parse_args(argv)
    import json
    previous = json.loads(args.previous.read_text()) if args.previous else None
    only = set(args.only.split(",")) if args.only else None
    bench.report(run(args.out, args.quick, args.model, args.text_encoder, only, previous), args)


if __name__ == "__main__":
    main(sys.argv[1:])
