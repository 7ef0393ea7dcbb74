"""The benchmark harness on tiny configs: the peer models are built to our sizes and the report is written."""

import pytest
import torch

pytest.importorskip("diffusers")

from cinegen.config import DIT_PRESETS, VAE_PRESETS, SampleConfig  # noqa: E402
from cinegen.estimate import latent_grid  # noqa: E402
from cinegen.eval import bench  # noqa: E402


def test_wan_transformer_is_built_to_our_sizes():
    cfg = DIT_PRESETS["tiny"]
    wan = bench.wan_transformer_like(cfg)
    assert wan.config.num_layers == cfg.depth and wan.config.num_attention_heads == cfg.heads
    assert wan.config.num_attention_heads * wan.config.attention_head_dim == cfg.width
    assert tuple(wan.config.patch_size) == cfg.patch and wan.config.ffn_dim == int(cfg.width * cfg.mlp_ratio)


def test_side_by_side_runs_and_report(tmp_path):
    t, h, w = latent_grid(VAE_PRESETS["tiny"], SampleConfig(width=32, height=32, seconds=1))
    dit = bench.dit_vs_wan(DIT_PRESETS["tiny"], (t, h, w), "32x32 1 s", repeats=1)
    assert dit["tokens"] == t * (h // 2) * (w // 2) and dit["cinegen_ms"] > 0 and dit["wan_ms"] > 0
    assert dit["speedup"] == pytest.approx(dit["wan_ms"] / dit["cinegen_ms"])
    vae = bench.vae_vs_wan(VAE_PRESETS["tiny"], frames=5, size=32, repeats=1)
    assert vae["encode_fps"]["cinegen"] > 0 and vae["decode_fps"]["wan"] > 0
    times = bench.interleaved({"a": lambda: None, "b": lambda: sum(range(1000))}, repeats=3, warmup=0)
    assert set(times) == {"a", "b"} and all(t >= 0 for t in times.values())
    out = tmp_path / "B.md"
    bench.write_markdown({"machine": bench.machine(), "command": "test", "dit": [dit], "matmul_peak_gflops": 10.0,
                          "vae": vae}, out)
    text = out.read_text()
    assert "WanTransformer3DModel" in text and "AutoencoderKLWan" in text and f"{dit['speedup']:.2f}x" in text
    assert "Parity check" in text


def test_the_parity_check_allows_3_percent():
    from cinegen.eval.bench_speed import parity
    assert parity([{"speedup": 1.1}, {"speedup": 0.975}]) == {"ok": True, "worst": 0.975, "tolerance": 0.03}
    assert not parity([{"speedup": 1.1}, {"speedup": 0.96}])["ok"]


def test_a_run_of_section_a_alone_writes_its_rows_and_the_parity_verdict(tmp_path):
    row = {"size": "64x64 2 s", "tokens": 80, "cinegen_ms": 26.0, "wan_ms": 25.0, "speedup": 25 / 26,
           "cinegen_params": 9e6, "wan_params": 7e6, "achieved_gflops": 10.0}
    bench.write_markdown({"machine": "m", "command": "c", "dit": [row]}, tmp_path / "B.md")
    text = (tmp_path / "B.md").read_text()
    assert "| 64x64 2 s | 80 | 26.0 | 25.0 | 0.96x | 9.00M / 7.00M | - |" in text and "BROKEN" in text
    assert "(c) VAE" not in text and "(h) Cold start" not in text


def test_a_run_of_some_sections_keeps_the_others_and_says_which(tmp_path):
    """`--sections cold_start` rewrites (h) and keeps (a) and a marked section as they were, naming (a) as carried."""
    from cinegen.eval import bench
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n\nMachine: old\n\n## (a) DiT pass\n\n| old a |\n\n## (h) Cold start\n\n| old h |\n\n"
                   "<!-- bench_server:start -->\n## (s) The service\n\n| s |\n<!-- bench_server:end -->\n")
    before = out.read_text()
    c = {"seconds": {"import torch": 1.0, "generate 4 steps": 1.5}, "ratio": {"import torch": 1.0, "generate 4 steps": 1.5},
         "repeats": 5, "clip": "64x64 2 s", "model": "shipped", "default_steps": 4}
    bench.write_markdown({"machine": "new", "command": "c", "cold_start": c}, out)
    bench.carry_unmeasured(out, before, ("cold_start",))
    text = out.read_text()
    assert "| old a |" in text and "| old h |" not in text and "| generate 4 steps | 1.50 | 1.50x |" in text
    assert text.index("## (a)") < text.index("## (h)") < text.index("## (s)") and text.count("## (s)") == 1
    assert "carried from the run before: (a) (this run: `--sections cold_start`)" in text and "Machine: new" in text
    bench.carry_unmeasured(out, out.read_text(), ("cold_start",))          # again: one note, not two
    assert out.read_text().count("carried from the run before") == 1 and "\n\n\n" not in out.read_text()


@pytest.mark.slow
def test_cold_start_times_fresh_processes_against_import_torch(tiny_model_dir, tmp_path):
    from cinegen.eval import bench, bench_speed
    c = bench_speed.cold_start(tiny_model_dir, repeats=1, steps=(2,))
    assert set(c["seconds"]) == {"import torch", "generate 2 steps", "generate 2 steps, new prompt",
                                 "serve until it answers"}
    assert c["ratio"]["import torch"] == 1 and all(v > 0 for v in c["seconds"].values())
    bench.write_markdown({"machine": "m", "command": "c", "cold_start": c}, tmp_path / "B.md")
    assert "| generate 2 steps |" in (tmp_path / "B.md").read_text()


def test_bf16_weights_run_on_both_sides():
    """The GPU bench holds both models in bf16: the pass must run in that dtype (checked here on the CPU)."""
    dit = bench.dit_vs_wan(DIT_PRESETS["tiny"], (2, 4, 4), "tiny", repeats=1, dtype=torch.bfloat16)
    vae = bench.vae_vs_wan(VAE_PRESETS["tiny"], frames=5, size=32, repeats=1, dtype=torch.bfloat16)
    assert dit["cinegen_ms"] > 0 and dit["tokens"] == 2 * 2 * 2 and vae["decode_speedup"] > 0
    assert bench.matmul_peak(64, 2, dtype=torch.bfloat16) > 0


def test_gpu_report_is_written_and_names_failed_sections(tmp_path):
    from cinegen.eval import bench_gpu
    row = {"model": "m", "size": "64x64 2 s", "tokens": 80, "cinegen_ms": 1.0, "wan_ms": 1.5, "speedup": 1.5,
           "cinegen_params": 1e6, "wan_params": 1e6, "achieved_gflops": 1000.0}
    r = {"machine": "GPU X", "command": "c", "date": "2026-11-26", "bf16_peak_gflops": 10000.0, "fp32_peak_gflops": 500.0,
         "dit": [row], "bf16_rel_error": 3e-3, "generate": [{"compile": False, "batch": 1, "clip": "64x64 2 s",
                                                               "steps": 20, "seconds": 0.5, "frames": 17}],
         "errors": {"vae": "RuntimeError: boom"}}
    out = tmp_path / "G.md"
    bench_gpu.write_markdown(r, out)
    text = out.read_text()
    assert "GPU X" in text and "1.50x" in text and "10.0%" in text and "3.00e-03" in text
    assert "section `vae` failed: RuntimeError: boom" in text and "| False | 1 | 64x64 2 s | 0.50 | 34 |" in text


def test_gpu_bench_refuses_without_a_gpu(tmp_path, monkeypatch):
    from cinegen.eval import bench_gpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        bench_gpu.run(tmp_path / "G.md")


def test_gpu_bench_reruns_only_the_asked_sections_and_carries_the_rest_with_their_date(tmp_path, monkeypatch):
    from cinegen.eval import bench_gpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "GPU X")
    row = {"model": "m", "size": "64x64 2 s", "tokens": 80, "cinegen_ms": 1.0, "wan_ms": 1.5, "speedup": 1.5,
           "cinegen_params": 1e6, "wan_params": 1e6, "achieved_gflops": 1000.0}
    previous = {"date": "2026-11-20", "dit": [row], "bf16_peak_gflops": 10000.0, "vae": None}
    # the asked section runs (and fails here, with no GPU: named, not raised); the others come from `previous`
    r = bench_gpu.run(tmp_path / "G.md", only={"bf16_rel_error"}, previous=previous)
    assert r["dit"] == [row] and r["dates"] == {"dit": "2026-11-20", "bf16_peak_gflops": "2026-11-20"}
    assert "bf16_rel_error" in r["errors"] and "vae" not in r
    text = (tmp_path / "G.md").read_text()
    assert "1.50x" in text and "`dit` measured 2026-11-20" in text
    with pytest.raises(SystemExit, match="unknown section"):
        bench_gpu.run(tmp_path / "G.md", only={"nope"})


def test_precision_section_times_both_precisions_and_is_reported(tmp_path):
    p = bench.precision_steps(DIT_PRESETS["tiny"], VAE_PRESETS["tiny"], dit_batch=2, vae_batch=1, sizes=((32, 32),),
                              repeats=1, matmul_n=128)
    assert [r["case"] for r in p["rows"]][1:] == ["VAE training step, batch 1, 17x64x64", "DiT CFG sampling pass (batch 2), 32x32 2 s"]
    assert all(r["fp32_ms"] > 0 and r["bf16_ms"] > 0 and r["speedup"] == pytest.approx(r["fp32_ms"] / r["bf16_ms"])
               for r in p["rows"])
    assert isinstance(p["auto_uses_bf16"], bool) and p["matmul_bf16_gflops"] > 0
    text = "\n".join(bench.precision_table(p))
    assert "(g) bf16 autocast vs fp32" in text and f"{p['rows'][0]['speedup']:.2f}x" in text


def test_batched_serving_section_drains_the_queue_both_ways_and_keeps_the_other_sections(tiny_model_dir, tmp_path):
    from cinegen.eval import bench_batch
    r = bench_batch.batched_serving(tiny_model_dir, jobs=3, batch=2, rounds=1, steps=1, size="32x32", seconds="1")
    assert set(r["jobs_per_hour"]) == {"1", "2"} and all(len(v) == 1 and v[0] > 0 for v in r["jobs_per_hour"].values())
    assert r["speedup"] == pytest.approx(r["median"]["2"] / r["median"]["1"])
    out = tmp_path / "B.md"
    out.write_text("# Benchmarks\n\n## (a) kept\n\n<!-- bench_server:start -->\nserver\n<!-- bench_server:end -->\n")
    lines = bench_batch.batched_serving_table({**r, "machine": "CPU X"}, "at least 1.5x on the CPU")
    for _ in range(2):                                      # written once, then replaced in place
        bench.replace_section(out, bench_batch.SECTION, lines)
    text = out.read_text()
    assert "## (a) kept" in text and "server" in text and text.count("## (j) Batched serving") == 1
    assert f"| `--batch 2` | {r['jobs_per_hour']['2'][0]:.0f} |" in text and "CPU X" in text
    bench.write_markdown({"machine": "CPU X", "command": "c", "batched_serving": {**r, "machine": "CPU X"}}, out)
    text = out.read_text()                                 # a bench run that measured it writes it once, anew
    assert text.count("## (j) Batched serving") == 1 and "server" in text
