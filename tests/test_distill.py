"""Few-step distillation (issue 34) on the tiny model: the project's own `cinegen train` runs the smoke recipe, the
reflow loss falls, the adapter lands in a model folder that renders with it at its step counts (and only there),
an adapter of other weights is refused, and the adherence evaluation runs on it."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from cinegen.config import SampleConfig
from cinegen.models.fewstep import FILE, read_info
from tests.test_train import _cli

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PROMPT = "a large red ball bounces on a black background"


@pytest.fixture(scope="module")
def distilled(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("distill")
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "distill.toml"), f"model={tiny_model_dir}", f"out={out}")
    assert r.returncode == 0, r.stderr
    return out


def test_the_reflow_loss_falls_and_the_adapter_is_small(distilled, tiny_model_dir):
    losses = json.loads((distilled / "losses.json").read_text())
    assert len(losses) == 6 and losses[-1] < 0.8 * losses[0], losses
    info = read_info(distilled / FILE)
    assert info.steps == (4, 2, 1) and info.guidance == 4.0 and info.teacher == {"steps": 4, "solver": "euler"}
    assert (distilled / FILE).stat().st_size < 0.5 * (tiny_model_dir / "dit.safetensors").stat().st_size


def test_the_model_folder_renders_with_the_adapter_at_its_step_counts_only(distilled):
    from cinegen.pipeline import TextToVideo
    pipe = TextToVideo.from_pretrained(distilled / "model")
    assert pipe.fewstep is not None
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=4, seed=1)
    calls = []
    pipe.dit.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    plain = pipe.generate(PROMPT, replace(cfg, distilled=False))
    assert calls == [2] * 4                                  # the teacher: guided, two halves per pass
    fast = pipe.generate(PROMPT, cfg)
    assert calls == [2] * 4 + [1] * 4                        # the adapted copy (hooks and all): one unguided pass
    assert pipe.fewstep.students(pipe.dit, None)[0] is not pipe.dit
    assert fast.shape == plain.shape and not np.array_equal(fast, plain)
    for other in (replace(cfg, steps=3), replace(cfg, guidance=2.0), replace(cfg, solver="heun"),
                  replace(cfg, negative_prompt="blurry")):   # not what it was distilled for: the plain sampler
        assert np.array_equal(pipe.generate(PROMPT, other), pipe.generate(PROMPT, replace(other, distilled=False)))
    assert np.array_equal(fast, TextToVideo.from_pretrained(distilled / "model").generate(PROMPT, cfg))


def test_an_adapter_of_other_weights_is_refused(distilled, tiny_model_dir, tmp_path):
    from cinegen.pipeline import TextToVideo
    folder = tmp_path / "retrained"
    shutil.copytree(tiny_model_dir, folder)
    shutil.copy(distilled / FILE, folder / FILE)
    with open(folder / "dit.safetensors", "r+b") as f:       # other weights: one byte of the file changed
        f.seek(-1, 2)
        last = f.read(1)
        f.seek(-1, 2)
        f.write(bytes([last[0] ^ 1]))
    pipe = TextToVideo.from_pretrained(folder)
    with pytest.raises(ValueError, match="distilled from other dit weights"):
        pipe.generate(PROMPT, SampleConfig(seconds=0.5, width=32, height=32, steps=4))


def test_the_adherence_evaluation_runs_on_the_adapter(distilled):
    from cinegen.eval.run import evaluate
    from cinegen.pipeline import TextToVideo
    pipe = TextToVideo.from_pretrained(distilled / "model")
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=2, seed=3)
    result = evaluate(pipe.generate, ("purple triangle",), cfg, 2, 1, 3)
    assert result["splits"]["seen"]["generated"]["clips"] == 2


def test_the_bench_section_compares_the_adapter_with_the_teacher_and_plain_euler(distilled, tmp_path):
    from cinegen.eval import bench, bench_speed
    from cinegen.pipeline import TextToVideo
    pipe = TextToVideo.from_pretrained(distilled / "model")
    f = bench_speed.fewstep_grid(pipe, ("purple triangle",), 1, teacher_steps=4, steps=(2, 3), default_steps=5)
    assert [(r["sampler"], r["steps"]) for r in f["rows"]] == [("teacher", 4), ("plain Euler", 5), ("plain Euler", 2),
                                                              ("plain Euler", 3), ("distilled", 2)]  # 3: not distilled for
    assert f["rows"][0]["adherence_vs_teacher"] == 0 and f["rows"][0]["speedup"] == 1
    bench.write_markdown({"machine": "m", "command": "c", "fewstep": f}, tmp_path / "B.md")
    text = (tmp_path / "B.md").read_text()
    assert "(i) Few-step sampling" in text and "| distilled | 2 |" in text and "(a) DiT" not in text


def test_a_merged_copy_shares_what_the_adapter_leaves_and_never_changes_the_original():
    import torch
    from torch import nn

    from cinegen.models.lowrank import merged
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    before = [p.detach().clone() for p in model.parameters()]
    a, b = torch.randn(2, 4), torch.randn(3, 2)
    out = merged(model, {"0.lora_a": a, "0.lora_b": b}, scale=0.5)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), before))          # the original as it was
    assert torch.allclose(out[0].weight, before[0] + 0.5 * b @ a)
    assert out[1].weight is model[1].weight and out[0].bias is model[0].bias           # shared, not copied
    assert out[0].weight.data_ptr() != model[0].weight.data_ptr()
