"""The benchmark harness on tiny configs: the peer models are built to our sizes and the report is written."""

import pytest

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
    dit = bench.dit_vs_wan(DIT_PRESETS["tiny"], VAE_PRESETS["tiny"], SampleConfig(width=32, height=32, seconds=1), repeats=1)
    t, h, w = latent_grid(VAE_PRESETS["tiny"], SampleConfig(width=32, height=32, seconds=1))
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
