import pytest

from cinegen.config import DiTConfig, SampleConfig, VAEConfig
from cinegen.estimate import dit_pass_flops, estimate, peer_config


def _analytic(cfg: DiTConfig, tokens: int, text: int) -> float:
    """Matmul FLOPs of our block by hand: qkv + out, cross q/out + kv, MLP, and the two attention products."""
    d, r = cfg.width, cfg.mlp_ratio
    per_block = (2 * tokens * d * 3 * d + 2 * tokens * d * d + 2 * tokens * d * d * 2 + 2 * text * d * 2 * d
                 + 2 * 2 * tokens * d * r * d + 4 * tokens * tokens * d + 4 * tokens * text * d)
    return cfg.depth * per_block


def test_counted_flops_match_the_hand_formula():
    cfg = DiTConfig(width=128, depth=3, heads=4)
    counted = dit_pass_flops(cfg, (5, 16, 16), 20)
    assert counted == pytest.approx(_analytic(cfg, 5 * 8 * 8, 20), rel=0.05)


def test_attention_makes_cost_grow_faster_than_tokens():
    cfg = DiTConfig(width=64, depth=2, heads=2)
    small, big = dit_pass_flops(cfg, (5, 32, 32), 8), dit_pass_flops(cfg, (5, 64, 64), 8)
    assert big / small > 4.5                   # 4x the tokens, more than 4x the FLOPs


def test_guidance_heun_and_gpus():
    dit, vae = DiTConfig(width=64, depth=2, heads=2), VAEConfig()
    base = estimate(dit, vae, SampleConfig(steps=10, guidance=1.0))
    guided = estimate(dit, vae, SampleConfig(steps=10, guidance=4.0))
    heun = estimate(dit, vae, SampleConfig(steps=10, guidance=4.0, solver="heun"))
    # Heun calls the model twice a step, except on its last step to t = 0 (plain Euler)
    assert guided.passes == 2 * base.passes and heun.passes == 2 * (2 * 10 - 1)
    eight = estimate(dit, vae, SampleConfig(steps=10), gpus=8)
    assert eight.wall_seconds == pytest.approx(guided.wall_seconds / 8) and eight.dollars == pytest.approx(guided.dollars)


def test_wan_14b_matches_a_published_timing():
    """Wan2.1-14B, 480P (832x480), 81 frames, 40 steps with CFG on one H200: 366 s published (LightX2V's
    benchmark of the official code). At the default 40% utilisation the estimate must land within 25%."""
    dit, vae, text = peer_config("wan2.1-14b")
    est = estimate(dit, vae, SampleConfig(seconds=5, fps=16, width=832, height=480, steps=40, guidance=5.0),
                   gpu="H200", text_tokens=text)
    assert est.tokens == 21 * 30 * 52
    assert 366 * 0.75 < est.wall_seconds < 366 * 1.25


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown gpu"):
        estimate(DiTConfig(width=64, depth=1, heads=2), VAEConfig(), SampleConfig(), gpu="TPU9")
    with pytest.raises(ValueError, match="unknown model"):
        peer_config("sora-3")


def test_cli_estimate_on_this_cpu():
    from typer.testing import CliRunner

    from cinegen.cli import app
    r = CliRunner().invoke(app, ["estimate", "--seconds", "2", "--size", "64x64", "--fps", "8", "--steps", "20",
                                 "--gpu", "cpu"])
    assert r.exit_code == 0, r.output
    assert "CPU" in r.output and "wall time" in r.output and "$0.00" in r.output


@pytest.mark.parametrize("solver", ["euler", "heun", "dpmpp_2m"])
def test_each_solver_says_how_many_model_calls_it_makes(solver):
    """The estimate reads a solver's cost from the solver, so it must match what the solver really does."""
    import torch

    from cinegen.diffusion.samplers import get_solver
    from cinegen.diffusion.schedules import shifted_ts
    calls = []
    get_solver(solver).sample(lambda x, t: calls.append(1) or -x, torch.randn(1, 4), shifted_ts(7, 3.0))
    assert len(calls) == get_solver(solver).model_calls(7)
