import os

import pytest
import torch

from cinegen.config import DiTConfig, TextConfig, VAEConfig, VAELossConfig, from_dict, override
from cinegen.models.dit import VideoDiT
from cinegen.models.loading import load_checkpoint, read_meta
from cinegen.training.checkpoint import optimizer_state, save_checkpoint
from cinegen.training.common import make_ema
from tests.conftest import perturb


def test_round_trip_gives_identical_outputs(tmp_path, tiny_dit_cfg):
    torch.manual_seed(0)
    model = perturb(VideoDiT(tiny_dit_cfg))
    ema = make_ema(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, text = torch.randn(1, 4, 1, 4, 4), torch.randn(1, 3, 384)
    mask = torch.ones(1, 3, dtype=torch.bool)
    model(x, torch.rand(1), text, mask).pow(2).mean().backward()
    opt.step()
    save_checkpoint(tmp_path / "ck.safetensors", "dit", tiny_dit_cfg, model, ema, opt, step=7, extra={"a": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]          # no temp files left behind
    ck = load_checkpoint(tmp_path / "ck.safetensors")
    assert ck["step"] == 7 and ck["extra"] == {"a": 1} and ck["kind"] == "dit"
    cfg = from_dict(DiTConfig, ck["config"])
    assert cfg == tiny_dit_cfg
    clone = VideoDiT(cfg)
    clone.load_state_dict(ck["model"])
    t = torch.tensor([0.4])
    assert torch.equal(clone(x, t, text, mask), model(x, t, text, mask))
    opt2 = torch.optim.AdamW(clone.parameters(), lr=1e-3)
    opt2.load_state_dict(optimizer_state(ck))
    s1, s2 = opt.state_dict()["state"], opt2.state_dict()["state"]
    assert s1.keys() == s2.keys()
    for k in s1:
        assert torch.equal(s1[k]["exp_avg"], s2[k]["exp_avg"]) and torch.equal(s1[k]["step"], s2[k]["step"])


def test_ddp_and_compile_prefixes_are_stripped(tmp_path, tiny_dit_cfg):
    from safetensors.torch import save_file
    model = VideoDiT(tiny_dit_cfg)
    tensors = {f"model.module._orig_mod.{k}": v.contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, tmp_path / "x.safetensors", metadata={"kind": "dit", "config": "{}", "step": "1"})
    VideoDiT(tiny_dit_cfg).load_state_dict(load_checkpoint(tmp_path / "x.safetensors")["model"])


def test_failed_write_leaves_previous_checkpoint(tmp_path, tiny_dit_cfg, monkeypatch):
    model = VideoDiT(tiny_dit_cfg)
    path = tmp_path / "ck.safetensors"
    save_checkpoint(path, "dit", tiny_dit_cfg, model, step=1)
    import cinegen.training.checkpoint as ck

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(ck, "save_file", boom)
    with pytest.raises(OSError):
        save_checkpoint(path, "dit", tiny_dit_cfg, model, step=2)
    assert load_checkpoint(path)["step"] == 1
    assert os.listdir(tmp_path) == ["ck.safetensors"]


def test_not_a_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.safetensors")


def test_config_overrides_are_typed():
    cfg = override(VAEConfig(), ["latent_channels=8", "channels=[32,64,64]"])
    assert cfg.latent_channels == 8 and cfg.channels == (32, 64, 64)
    assert override(VAELossConfig(), ["kl_weight=1"]).kl_weight == 1.0          # an int where a float goes
    assert override(TextConfig(), ["name=2026"]).name == "2026"                 # a str field keeps the text
    with pytest.raises(ValueError, match="expected int"):
        override(VAEConfig(), ["latent_channels=abc"])
    with pytest.raises(ValueError, match="bad override"):
        override(VAEConfig(), ["nope=1"])


def test_int8_weights_halve_the_file_and_load_back_close(tmp_path):
    from safetensors import safe_open
    cfg = DiTConfig(latent_channels=4, width=64, depth=2, heads=2)
    torch.manual_seed(0)
    model = perturb(VideoDiT(cfg))
    save_checkpoint(tmp_path / "fp16.safetensors", "dit", cfg, model, dtype=torch.float16)
    save_checkpoint(tmp_path / "int8.safetensors", "dit", cfg, model, dtype=torch.float16, int8=True)
    assert os.path.getsize(tmp_path / "int8.safetensors") < 0.65 * os.path.getsize(tmp_path / "fp16.safetensors")
    with safe_open(str(tmp_path / "int8.safetensors"), framework="pt") as f:
        assert f.get_tensor("model.blocks.0.mlp.0.weight").dtype == torch.int8
        assert f.get_tensor("model.blocks.0.mlp.0.bias").dtype == torch.float16      # small tensors stay fp16
    ck = load_checkpoint(tmp_path / "int8.safetensors")
    assert "qscale" not in ck and ck["model"]["blocks.0.mlp.0.weight"].dtype == torch.float32
    w, q = model.blocks[0].mlp[0].weight, ck["model"]["blocks.0.mlp.0.weight"]
    row_step = w.abs().amax(1, keepdim=True) / 127                                   # one int8 step per row
    assert ((w - q).abs() <= 0.51 * row_step + 1e-3 * w.abs()).all() and not torch.equal(w, q)
    clone = VideoDiT(cfg)
    clone.load_state_dict(ck["model"])
    x, t, text, mask = torch.randn(1, 4, 3, 4, 4), torch.tensor([0.5]), torch.randn(1, 3, 384), torch.ones(1, 3, dtype=torch.bool)
    ref, out = model(x, t, text, mask), clone(x, t, text, mask)
    assert (out - ref).norm() < 0.02 * ref.norm()


def test_export_writes_a_loadable_model_folder(tmp_path, tiny_model_dir):
    from cinegen.config import SampleConfig
    from cinegen.pipeline import TextToVideo
    from cinegen.training.export import export_model
    paths = export_model(tiny_model_dir / "vae.safetensors", tiny_model_dir / "dit.safetensors", tmp_path, int8=True)
    assert [p.name for p in paths] == ["vae.safetensors", "dit.safetensors"]
    ck = load_checkpoint(tmp_path / "dit.safetensors")
    assert ck["extra"]["holdout"] == ["purple triangle"]                        # training facts travel along
    src = load_checkpoint(tiny_model_dir / "dit.safetensors")
    assert ck["step"] == src["step"] and ck["extra"] == src["extra"]
    assert read_meta(tiny_model_dir / "dit.safetensors") == (src["step"], src["extra"])   # without the tensors
    cfg = SampleConfig(seconds=0, width=32, height=32, steps=2)
    ref = TextToVideo.from_pretrained(tiny_model_dir).generate("a red ball", cfg).astype(float)
    out = TextToVideo.from_pretrained(tmp_path).generate("a red ball", cfg).astype(float)
    assert out.shape == ref.shape and abs(out - ref).mean() < 2.0                 # fp16 / int8: within ~1 grey level


def test_export_names_the_real_text_encoder_after_a_lease(tmp_path, tiny_model_dir, tiny_dit_cfg):
    """A lent GPU trains with a packed MiniLM at /tmp/minilm_toy; the exported files must name `minilm`, or every
    later load would use that packed copy where it exists (and fail where it does not)."""
    from cinegen.config import FlowConfig
    from cinegen.training.export import export_model
    lease = {"text": {"name": "/tmp/minilm_toy", "max_tokens": 32, "dim": 384, "layers": [-1]}}
    for name, flow in (("low", {"t_max": 0.8}), ("expert", {"t_min": 0.8})):
        save_checkpoint(tmp_path / f"{name}.safetensors", "dit", tiny_dit_cfg, perturb(VideoDiT(tiny_dit_cfg), seed=5),
                        extra={**lease, "flow": {**FlowConfig().__dict__, **flow}})
    pair = dict(dit_high=tmp_path / "expert.safetensors", int8=True)
    export_model(tiny_model_dir / "vae.safetensors", tmp_path / "low.safetensors", tmp_path / "as_is", **pair)
    export_model(tiny_model_dir / "vae.safetensors", tmp_path / "low.safetensors", tmp_path / "m", text_name="minilm",
                 **pair)
    for f in ("dit.safetensors", "dit_high.safetensors"):
        assert load_checkpoint(tmp_path / "as_is" / f)["extra"]["text"]["name"] == "/tmp/minilm_toy"
        renamed = load_checkpoint(tmp_path / "m" / f)
        assert renamed["extra"]["text"] == {**lease["text"], "name": "minilm"}   # only the name changes
        same = load_checkpoint(tmp_path / "as_is" / f)["model"]
        assert all(torch.equal(renamed["model"][k], v) for k, v in same.items())


def test_export_of_unchanged_weights_leaves_the_files_alone(tmp_path, tiny_model_dir):
    from cinegen.training.export import export_model
    export_model(tiny_model_dir / "vae.safetensors", tiny_model_dir / "dit.safetensors", tmp_path, int8=True)
    before = {p.name: (p.stat().st_ino, p.read_bytes()) for p in tmp_path.glob("*.safetensors")}
    export_model(tiny_model_dir / "vae.safetensors", tiny_model_dir / "dit.safetensors", tmp_path, int8=True)
    after = {p.name: (p.stat().st_ino, p.read_bytes()) for p in tmp_path.glob("*.safetensors")}
    assert after == before and not list(tmp_path.glob(".*"))                  # same files, no leftovers
    export_model(tiny_model_dir / "vae.safetensors", tiny_model_dir / "dit.safetensors", tmp_path, int8=False)
    assert (tmp_path / "dit.safetensors").read_bytes() != before["dit.safetensors"][1]   # changed content is written


def test_export_raw_takes_the_last_step_weights_not_the_ema(tmp_path, tiny_model_dir, tiny_dit_cfg):
    from cinegen.training.export import export_model
    model = perturb(VideoDiT(tiny_dit_cfg), seed=1)
    ema = perturb(make_ema(model), seed=2)                     # the EMA lags: other weights than the model's
    save_checkpoint(tmp_path / "last.safetensors", "dit", tiny_dit_cfg, model, ema, step=7)
    for raw, want in ((False, ema), (True, model)):
        out = tmp_path / ("raw" if raw else "ema")
        export_model(tiny_model_dir / "vae.safetensors", tmp_path / "last.safetensors", out, raw=raw)
        got = load_checkpoint(out / "dit.safetensors")["model"]
        assert all(torch.allclose(got[k].float(), v, atol=1e-3) for k, v in want.state_dict().items())


def test_export_with_a_high_noise_expert_and_from_pretrained_uses_it(tmp_path, tiny_model_dir, tiny_dit_cfg):
    from cinegen.config import FlowConfig
    from cinegen.pipeline import TextToVideo
    from cinegen.training.export import export_model
    vae, dit = tiny_model_dir / "vae.safetensors", tiny_model_dir / "dit.safetensors"
    expert = perturb(VideoDiT(tiny_dit_cfg), seed=3)
    save_checkpoint(tmp_path / "expert.safetensors", "dit", tiny_dit_cfg, expert,
                    extra={"flow": {**FlowConfig().__dict__, "t_min": 0.8}})
    out = tmp_path / "model"
    paths = export_model(vae, dit, out, dit_high=tmp_path / "expert.safetensors")
    assert [p.name for p in paths] == ["vae.safetensors", "dit.safetensors", "dit_high.safetensors"]
    pipe = TextToVideo.from_pretrained(out)
    assert pipe.high_noise is not None and pipe.high_noise[1] == pytest.approx(0.8)
    assert TextToVideo.from_pretrained(tiny_model_dir).high_noise is None
    # a re-export without the expert removes it: it was trained beside another DiT
    export_model(vae, dit, out)
    assert not (out / "dit_high.safetensors").exists()
    # a DiT trained on the whole schedule is not an expert
    with pytest.raises(ValueError, match="not a high-noise expert.*t_min=0.0"):
        export_model(vae, dit, out, dit_high=dit)
    # a low-noise DiT (--flow t_max=0.8) ships only with an expert that starts at or below its t_max
    low = tmp_path / "low.safetensors"
    save_checkpoint(low, "dit", tiny_dit_cfg, perturb(VideoDiT(tiny_dit_cfg), seed=4),
                    extra={"flow": {**FlowConfig().__dict__, "t_max": 0.8}})
    with pytest.raises(ValueError, match="t <= 0.8 only, and no --dit-high expert"):
        export_model(vae, low, out)
    late = tmp_path / "late.safetensors"
    save_checkpoint(late, "dit", tiny_dit_cfg, expert, extra={"flow": {**FlowConfig().__dict__, "t_min": 0.9}})
    with pytest.raises(ValueError, match="starts at t = 0.9: no model was trained between"):
        export_model(vae, low, out, dit_high=late)
    assert export_model(vae, low, out, dit_high=tmp_path / "expert.safetensors")[-1].name == "dit_high.safetensors"


def test_export_cli_takes_the_expert_and_names_a_bad_one(tmp_path, tiny_model_dir):
    from typer.testing import CliRunner

    from cinegen.cli import app
    vae, dit = str(tiny_model_dir / "vae.safetensors"), str(tiny_model_dir / "dit.safetensors")
    r = CliRunner().invoke(app, ["export", "--vae", vae, "--dit", dit, "--out", str(tmp_path / "m"), "--dit-high", dit])
    assert r.exit_code == 2 and "is not a high-noise expert" in " ".join(r.output.split())
    assert not (tmp_path / "m" / "dit.safetensors").exists()          # nothing half-written
    r = CliRunner().invoke(app, ["export", "--vae", vae, "--dit", dit, "--out", str(tmp_path / "m")])
    assert r.exit_code == 0 and (tmp_path / "m" / "dit.safetensors").is_file()


def test_export_vae_writes_the_shipped_fp16_format_and_keeps_the_weights(tmp_path, tiny_model_dir):
    """A decoder-only run ships as its VAE alone (configs/cinegen-default/07-decoder-hard.toml): fp16, the same
    config and latent statistics, the weights equal to fp16 precision."""
    import torch

    from cinegen.models.loading import load_vae
    from cinegen.training.export import export_vae
    src = tiny_model_dir / "vae.safetensors"
    path = export_vae(src, tmp_path)
    ck = load_checkpoint(path)
    assert path == tmp_path / "vae.safetensors" and ck["config"] == load_checkpoint(src)["config"]
    assert all(v.dtype == torch.float16 for v in ck["model"].values())
    a, b = load_vae(src).state_dict(), load_vae(path).state_dict()
    assert all(torch.equal(a[k].half().float(), b[k]) for k in a)
