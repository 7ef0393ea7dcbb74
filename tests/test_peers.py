"""Open weights through diffusers: tiny randomly initialised pipelines of every family (tests/peers_tiny.py), built
once per session, saved with save_pretrained and loaded back through cinegen: every (family x mode) cell through
the CLI, the refusals, the honest geometry, the family defaults, the load options, the registry and the server.

All of it runs on a CPU. GPU-only options (--offload, flash/sage attention) are checked here for their refusal
on a CPU only; tools/ or a GPU lease must run them for real.
"""

import json

import numpy as np
import pytest

from cinegen.requests import NATIVE_MODES

pytest.importorskip("diffusers")
pytest.importorskip("ftfy")          # WanVACEPipeline cleans prompts with it


@pytest.fixture(scope="session")
def loaded(peers):
    """name -> that tiny folder's backend, loaded once per session (with no load options), for the tests that call
    the backend directly; the CLI tests load their folder themselves, as a user's command does."""
    from cinegen.backends import load_backend
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = load_backend(peers[name], device="cpu")
        return cache[name]
    return get


@pytest.fixture(scope="session")
def wan_plain(loaded):
    """The tiny Wan folder's render of WAN_REQUEST with no load options: what the options' tests compare to."""
    return loaded("wan").generate(wan_request())


def wan_request():
    from cinegen import requests as R
    from cinegen.config import SampleConfig
    return R.Text(prompt="a red ball", sample=SampleConfig(seconds=0.5, fps=8, width=32, height=32, steps=2))


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    """A still and two clips (9 frames, 32x32) on disk, as a user would pass them, and inpainting masks: a white
    square (mask.png), an all-black one, one of another aspect and a 5-frame mask video (the clips have 9)."""
    from PIL import Image

    from cinegen.io.video import write_mp4
    folder = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    clip = (rng.random((9, 32, 32, 3)) * 255).astype(np.uint8)
    Image.fromarray(clip[0]).save(folder / "still.png")
    write_mp4(clip, folder / "a.mp4", 8)
    write_mp4(clip[::-1].copy(), folder / "b.mp4", 8)
    mask = np.zeros((32, 32, 3), np.uint8)
    mask[8:24, 8:24] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(mask * 0).save(folder / "black.png")
    Image.fromarray(np.zeros((32, 64, 3), np.uint8) + 255).save(folder / "wide.png")
    write_mp4(np.stack([mask] * 5), folder / "mask5.mp4", 8)
    return folder


def cli(*args):
    from typer.testing import CliRunner

    from cinegen.cli import app
    return CliRunner().invoke(app, [str(a) for a in args])


def probe(path):
    import av
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(v))
        return frames, (v.width, v.height), float(v.average_rate), dict(c.metadata)


TINY = ["--steps", "2", "--fps", "8"]


def slow(cell):
    """A cell another family member or mode variant already covers in the fast run."""
    return pytest.param(*cell, marks=pytest.mark.slow)


def _cell_id(cell):
    folder, args, _ = cell.values if hasattr(cell, "values") else cell
    return f"{folder}-{' '.join(args[:1] + args[-2:])}"

SIZE = {"wan22-ti2v": 32, "ltx": 32, "cogvideox-i2v": 32}     # multiples of 32 / one trained size; others 16x16
# (folder, command and its arguments, frames written): every (family x mode) cell diffusers can do, through the
# CLI; the variants behind `slow` run the same mode on another folder of the family
# at 8 fps: 0.5 s = 4 new frames (the 1 + 4k grid); LTX's grid is 1 + 8k, so it gets 1 s = 8 new frames
CELLS = [
    ("wan", ["generate", "a red ball", "--seconds", "0.5"], 5),
    ("wan", ["image", "a red ball"], 1),
    ("wan", ["edit", "{a}", "a blue ball", "--strength", "0.6"], 9),
    slow(("wan22-a14b", ["generate", "a red ball", "--seconds", "0.5", "--guidance-high", "3"], 5)),
    slow(("wan22-ti2v", ["generate", "a red ball", "--seconds", "0.5"], 5)),
    ("wan22-ti2v", ["animate", "{still}", "a red ball", "--seconds", "0.5"], 5),
    ("wan-i2v", ["animate", "{still}", "a red ball", "--seconds", "0.5"], 5),
    slow(("wan22-i2v", ["animate", "{still}", "a red ball", "--seconds", "0.5", "--guidance-high", "3"], 5)),
    ("wan-flf2v", ["connect", "{a}", "{b}", "a smooth transition", "--seconds", "0.5"], 5),
    ("wan-flf2v", ["loop", "{a}", "--seconds", "0.5"], 9 + 3),
    slow(("wan-vace", ["generate", "a red ball", "--seconds", "0.5"], 5)),
    ("wan-vace", ["animate", "{still}", "a red ball", "--seconds", "0.5", "--at", "end"], 5),
    ("wan-vace", ["extend", "{a}", "a red ball", "--seconds", "0.5"], 9 + 4),
    slow(("wan-vace", ["extend", "{a}", "a red ball", "--seconds", "0.5", "--backward"], 9 + 4)),
    slow(("wan-vace", ["connect", "{a}", "{b}", "a smooth transition", "--seconds", "0.5"], 5 + 4 + 4)),
    slow(("wan-vace", ["loop", "{a}", "--seconds", "0.5"], 9 + 4)),
    ("wan-vace", ["inpaint", "a red ball", "--video", "{a}", "--mask", "{mask}"], 9),
    ("ltx", ["generate", "a red ball", "--seconds", "1"], 9),
    slow(("ltx", ["image", "a red ball"], 1)),
    slow(("ltx", ["animate", "{still}", "a red ball", "--seconds", "1"], 9)),
    ("ltx", ["animate", "{still}", "a red ball", "--seconds", "1", "--at", "end"], 9),
    ("ltx", ["extend", "{a}", "a red ball", "--seconds", "1", "--backward"], 9 + 8),
    ("ltx", ["connect", "{a}", "{b}", "a smooth transition", "--seconds", "1"], 9 + 7 + 1),
    ("ltx", ["loop", "{a}", "--seconds", "1"], 9 + 7),
    ("ltx", ["edit", "{a}", "a blue ball", "--strength", "0.5"], 9),
    ("cogvideox", ["generate", "a red ball", "--seconds", "1"], 9),           # CogVideoX 1.0: 1 + 8k frames
    ("cogvideox", ["edit", "{a}", "a blue ball"], 9),
    ("cogvideox-i2v", ["animate", "{still}", "a red ball", "--seconds", "1"], 9),
    ("hunyuan", ["generate", "a red ball", "--seconds", "0.5"], 5),
    slow(("hunyuan", ["image", "a red ball"], 1)),
    ("hunyuan-i2v", ["animate", "{still}", "a red ball", "--seconds", "0.5", "--negative", "blurry"], 5),
    ("hunyuan-i2v-replace", ["animate", "{still}", "a red ball", "--seconds", "0.5"], 5),
    # FramePack renders sections of 9 latent frames: 1 + 36k frames (4.5 s at 8 fps = 36 new frames)
    ("framepack", ["animate", "{still}", "a red ball", "--seconds", "4.5"], 37),
    ("framepack", ["connect", "{a}", "{b}", "a smooth transition", "--seconds", "4.5"], 37),
]


@pytest.mark.parametrize("folder,args,frames", CELLS, ids=[_cell_id(c) for c in CELLS])
def test_every_cell_through_the_cli(peers, media, tmp_path, folder, args, frames):
    still = args[0] == "image"
    out = tmp_path / ("out.png" if still else "out.mp4")
    args = [a.format(a=media / "a.mp4", b=media / "b.mp4", still=media / "still.png", mask=media / "mask.png")
            for a in args]
    side = SIZE.get(folder, 16)
    r = cli(*args, "--model", peers[folder], "-o", out, *TINY, "--size", f"{side}x{side}")
    assert r.exit_code == 0, r.output
    assert "warning" not in r.output                  # every duration here is on the family's grid
    if still:
        from PIL import Image
        assert Image.open(out).size == (side, side)
        return
    n, size, fps, meta = probe(out)
    assert (n, size, fps) == (frames, (side, side), 8.0)
    assert meta["model"] == str(peers[folder])


def test_keyframes_and_connect_windows_through_the_backend(loaded):
    """Keyframes (no CLI command of their own) and the bridge-only connect, on the two "any frame" classes."""
    from cinegen import requests as R
    from cinegen.config import SampleConfig
    rng = np.random.default_rng(1)
    img = (rng.random((32, 32, 3)) * 255).astype(np.uint8)
    clip = (rng.random((9, 32, 32, 3)) * 255).astype(np.uint8)
    for name, seconds, n, new in (("wan-vace", 1.0, 9, 8), ("ltx", 1.0, 9, 7)):
        b = loaded(name)
        cfg = SampleConfig(seconds=seconds, fps=8, width=32, height=32, steps=2)
        out = b.generate(R.Keyframes(prompt="a red ball", keyframes=((0, img), (n - 1, img)), sample=cfg))
        assert out.shape == (n, 32, 32, 3)
        bridge = b.generate(R.Connect(video=clip, video_b=clip, bridge_only=True, sample=cfg))
        assert bridge.shape == (new, 32, 32, 3)
        with pytest.raises(ValueError, match="past the clip's last frame"):
            b.generate(R.Keyframes(prompt="a red ball", keyframes=((n, img),), sample=cfg))
    # extension keeps the clip's own frames as they were, forwards and backwards
    ahead = b.generate(R.Extend(prompt="a red ball", video=clip, sample=cfg))
    behind = b.generate(R.Extend(prompt="a red ball", video=clip, backward=True, sample=cfg))
    assert np.array_equal(ahead[:9], clip) and np.array_equal(behind[-9:], clip) and len(ahead) == len(behind) == 17


def test_vace_inpaints_the_masked_region_and_keeps_the_rest(loaded, monkeypatch):
    """The request reaches WanVACEPipeline as video + mask: the mask's white pixels (resized to the render size,
    one mask frame per video frame) are white in `mask` and grey in `video`, the others the clip's own. VACE
    redraws every pixel, so the backend pastes the kept ones back: outside the mask the result is the clip exactly,
    inside it is the pipeline's. (What a trained VACE draws there cannot be checked on random weights.)"""
    import functools

    from diffusers import WanVACEPipeline

    from cinegen import requests as R
    from cinegen.config import SampleConfig
    calls, call = [], WanVACEPipeline.__call__

    @functools.wraps(call)
    def spy(self, *args, **kwargs):
        out = call(self, *args, **kwargs)
        calls.append((kwargs, np.asarray(out.frames[0])))
        return out
    monkeypatch.setattr(WanVACEPipeline, "__call__", spy)
    rng = np.random.default_rng(2)
    clip = (rng.random((10, 32, 32, 3)) * 255).astype(np.uint8)          # 10 frames: 9 on Wan's 1 + 4k grid
    mask = np.zeros((10, 64, 64, 3), np.uint8)                            # twice the clip's size: resized
    for i in range(10):
        mask[i, 4 * i:4 * i + 16, 8:40] = 255                             # a region that moves down
    cfg = SampleConfig(fps=8, width=32, height=32, steps=2)
    out = loaded("wan-vace").generate(R.Inpaint(prompt="a red ball", video=clip, mask=mask, sample=cfg))
    assert out.shape == (9, 32, 32, 3) and len(calls) == 1
    kwargs, raw = calls[0]
    sent_mask = np.stack([np.asarray(m) for m in kwargs["mask"]])
    sent_video = np.stack([np.asarray(v) for v in kwargs["video"]])
    want = np.zeros((9, 32, 32), bool)
    for i in range(9):
        want[i, 2 * i:2 * i + 8, 4:20] = True
    assert kwargs["num_frames"] == 9 and np.array_equal(sent_mask[..., 0] == 255, want)
    assert set(np.unique(sent_mask)) == {0, 255}
    assert (sent_video[want] == 127).all() and np.array_equal(sent_video[~want], clip[:9][~want])
    assert np.array_equal(out[~want], clip[:9][~want])
    raw = (raw.clip(0, 1) * 255).round().astype(np.uint8)
    assert np.array_equal(out[want], raw[want]) and not np.array_equal(out[want], clip[:9][want])
    with pytest.raises(ValueError, match="cannot do 'inpaint'; it can do: text, image, animate, extend"):
        loaded("ltx").generate(R.Inpaint(prompt="a red ball", video=clip, mask=mask[0], sample=cfg))


REFUSALS = [
    ("wan", ["animate", "{still}", "a ball"], "cannot do 'animate'; it can do: text, image, edit"),
    ("wan-i2v", ["generate", "a ball"], "cannot do 'text'; it can do: animate"),
    ("wan-i2v", ["animate", "{still}", "a ball", "--at", "end"], "cannot do animate at the end; it can do: animate"),
    ("wan-flf2v", ["extend", "{a}", "a ball"], "cannot do 'extend'; it can do: connect, loop"),
    ("wan-vace", ["edit", "{a}", "a ball"], "cannot do 'edit'; it can do: text, image, animate, extend, connect, "
                                            "loop, keyframes, inpaint"),
    ("wan", ["inpaint", "a ball", "--video", "{a}", "--mask", "{mask}"], "cannot do 'inpaint'; it can do: text, "
                                                                         "image, edit"),
    ("ltx", ["inpaint", "a ball", "--video", "{a}", "--mask", "{mask}"], "cannot do 'inpaint'; it can do: text, "
                                                                         "image, animate, extend, connect, loop, "
                                                                         "keyframes, edit"),
    (None, ["inpaint", "a ball", "--video", "{a}", "--mask", "{mask}"], "cannot do 'inpaint'; it can do: text, "
                                                                        "image, animate, extend, connect, loop, "
                                                                        "keyframes, edit"),
    ("wan-vace", ["inpaint", "a ball", "--video", "{a}", "--mask", "{black}"], "mask is all black"),
    ("wan-vace", ["inpaint", "a ball", "--video", "{a}", "--mask", "{still}"], "mask must be black and white"),
    ("wan-vace", ["inpaint", "a ball", "--video", "{a}", "--mask", "{wide}"], "mask is 64x32, the video 32x32: the "
                                                                              "mask must have the video's aspect"),
    ("wan-vace", ["inpaint", "a ball", "--video", "{a}", "--mask", "{mask5}"], "mask video has 5 frames, the video 9"),
    ("wan-vace", ["inpaint", "a ball", "--video", "{a}", "--mask", "nothing.png"], "image file not found: nothing.png"),
    ("wan22-a14b", ["edit", "{a}", "a ball"], "cannot do 'edit'; it can do: text, image"),
    ("cogvideox", ["loop", "{a}"], "cannot do 'loop'; it can do: text, image, edit"),
    ("hunyuan", ["extend", "{a}", "a ball"], "cannot do 'extend'; it can do: text, image"),
    ("framepack", ["generate", "a ball"], "cannot do 'text'; it can do: animate, connect, loop"),
    ("framepack", ["animate", "{still}", "a ball", "--at", "end"], "cannot do animate at the end; it can do: "
                                                                   "animate, connect, loop"),
    ("hunyuan-i2v", ["generate", "a ball"], "cannot do 'text'; it can do: animate"),
    ("hunyuan-i2v-replace", ["animate", "{still}", "a ball", "--negative", "blurry"], "takes no negative prompt"),
    ("hunyuan-i2v", ["edit", "{a}", "a ball"], "cannot do 'edit'; it can do: animate"),
    ("wan", ["generate", "a ball", "--size", "40x32"], "width 40 is not a multiple of 16, which wan needs; use 32 or 48"),
    ("wan22-ti2v", ["generate", "a ball", "--size", "48x48"], "width 48 is not a multiple of 32, which wan22-ti2v "
                                                              "needs; use 32 or 64"),
    ("cogvideox-i2v", ["animate", "{still}", "a ball", "--size", "64x32"], "renders 32x32 only"),
    ("wan", ["generate", "a ball", "--solver", "heun"], "--solver heun applies to cinegen models"),
    ("wan", ["generate", "a ball", "--cache", "0.1"], "--cache 0.1 applies to cinegen models"),
    ("wan", ["generate", "a ball", "--guidance-high", "3"], "needs a model with a high-noise expert"),
    ("hunyuan", ["generate", "a ball", "--negative", "blurry"], "takes no negative prompt"),
    ("wan", ["generate", "a ball", "--offload", "model"], "--offload model moves weights between a CUDA GPU"),
    ("wan", ["generate", "a ball", "--offload", "disk"], "bad --offload 'disk'; choose one of model, sequential, group"),
    ("wan", ["generate", "a ball", "--dtype", "int4"], "bad --dtype 'int4'; choose one of bf16, fp16, fp32"),
    ("wan", ["generate", "a ball", "--attention", "magic"], "bad --attention 'magic'; choose one of flash"),
    ("wan", ["generate", "a ball", "--attention", "sage"], "--attention sage runs on a GPU; this run is on cpu: use "
                                                           "one of native, _native_math, _native_flash, flex"),
    ("wan", ["generate", "a ball", "--attention", "_native_cudnn"], "--attention _native_cudnn runs on a GPU"),
    ("wan", ["generate", "a ball", "--lora", "missing.safetensors:0.5"], "--lora file not found: missing.safetensors"),
    (None, ["generate", "a ball", "--vae-tiling"], "--vae-tiling applies to Diffusers pipelines only"),
]


@pytest.mark.parametrize("folder,args,message", REFUSALS, ids=[f"{r[0]}-{r[2][:30]}" for r in REFUSALS])
def test_what_a_model_cannot_do_is_a_clear_error(peers, media, tmp_path, folder, args, message):
    masks = {k: media / f"{k}.{'mp4' if k == 'mask5' else 'png'}" for k in ("mask", "black", "wide", "mask5")}
    args = [a.format(a=media / "a.mp4", still=media / "still.png", **masks) for a in args]
    model = ["--model", peers[folder]] if folder else []
    r = cli(*args, *model, "--steps", "1", "-o", tmp_path / "x.mp4")
    assert r.exit_code == 2, r.output
    assert message in " ".join(r.output.split()), r.output
    assert not (tmp_path / "x.mp4").exists()


def test_durations_round_to_the_grid_with_a_warning_and_defaults_come_from_the_family(peers, tmp_path):
    out = tmp_path / "ltx.mp4"
    # 13 frames asked of LTX (1.5 s at 8 fps = 12 new frames): its grid is 1 + 8k, so 16 new frames, said aloud
    r = cli("generate", "a red ball", "--model", peers["ltx"], "--seconds", "1.5", "--fps", "8", "--steps", "2",
            "--size", "32x32", "-o", out)
    assert r.exit_code == 0, r.output
    said = " ".join(r.output.split())
    assert "warning: ltx renders 1 + 8k frames: 1.5 s at 8 fps (12 new frames) rounded to 2 s (16 new frames)" in said
    assert probe(out)[0] == 17 and "wrote" in said and "17 frames" in said
    # fps left alone: Wan's own 16 (Wan2.2-TI2V-5B: 24), with 0.25 s = 4 new frames
    for name, fps in (("wan", 16.0), ("wan22-ti2v", 24.0)):
        r = cli("generate", "a red ball", "--model", peers[name], "--seconds", str(4 / fps), "--steps", "2",
                "--size", "32x32", "-o", tmp_path / f"{name}.mp4")
        assert r.exit_code == 0, r.output
        assert probe(tmp_path / f"{name}.mp4")[:3] == (5, (32, 32), fps)


def test_prepare_fills_only_what_the_user_left_alone(loaded):
    from cinegen import requests as R
    from cinegen.backends.families import WAN_NEGATIVE
    from cinegen.config import SampleConfig
    b = loaded("wan")
    req = R.Text(prompt="a ball", sample=SampleConfig(steps=3, guidance=2.0, fps=8))
    got, notes = b.prepare(req, frozenset({"fps", "negative_prompt"}))
    assert (got.sample.fps, got.sample.negative_prompt, got.sample.steps, got.sample.guidance) == (16.0, WAN_NEGATIVE, 3, 2.0)
    assert notes == []                     # 2 s at 16 fps = 32 new frames, on the grid
    got, _ = b.prepare(req, frozenset({"steps", "guidance"}))
    assert (got.sample.steps, got.sample.guidance, got.sample.fps) == (50, 5.0, 8)


def test_generate_is_deterministic_and_reports_progress(loaded):
    from cinegen import requests as R
    from cinegen.config import SampleConfig
    backend = loaded("wan")
    cfg = SampleConfig(seconds=0.5, fps=8, width=32, height=32, steps=2, seed=3)
    seen = []
    a = backend.generate(R.Text(prompt="a blue box", sample=cfg), progress=seen.append)
    b = backend.generate(R.Text(prompt="a blue box", sample=cfg))
    c = backend.generate(R.Text(prompt="a blue box", sample=SampleConfig(**{**cfg.__dict__, "seed": 4})))
    assert a.shape == (5, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b) and not np.array_equal(a, c)
    assert [(d["phase"], d["step"], d["steps"]) for d in seen] == [("sampling", 1, 2), ("sampling", 2, 2)]


def test_guidance_high_drives_wan22s_high_noise_expert(loaded):
    from cinegen import requests as R
    from cinegen.config import SampleConfig
    b = loaded("wan22-a14b")
    cfg = dict(seconds=0.5, fps=8, width=32, height=32, steps=2)
    same = b.generate(R.Text(prompt="a ball", sample=SampleConfig(**cfg, guidance=4.0)))
    also = b.generate(R.Text(prompt="a ball", sample=SampleConfig(**cfg, guidance=4.0, guidance_high=4.0)))
    other = b.generate(R.Text(prompt="a ball", sample=SampleConfig(**cfg, guidance=4.0, guidance_high=1.0)))
    assert np.array_equal(same, also) and not np.array_equal(same, other)


def test_hunyuan_i2v_guides_the_classic_way(loaded):
    """HunyuanVideo-I2V has no guidance embedding: --guidance is true classifier-free guidance against the
    negative prompt (diffusers' true_cfg_scale), so both change the frames (the text-to-video HunyuanVideo's
    distilled guidance takes no negative prompt: see REFUSALS)."""
    from cinegen import requests as R
    from cinegen.config import SampleConfig
    b = loaded("hunyuan-i2v")
    img = (np.random.default_rng(2).random((16, 16, 3)) * 255).astype(np.uint8)

    def render(**kw):
        cfg = SampleConfig(seconds=0.5, fps=8, width=16, height=16, steps=2, **kw)
        return b.generate(R.Animate(prompt="a red ball", image=img, sample=cfg))
    plain, guided, negative = render(guidance=1.0), render(guidance=6.0), render(guidance=6.0, negative_prompt="blue")
    assert plain.shape == (5, 16, 16, 3)
    assert not np.array_equal(plain, guided) and not np.array_equal(guided, negative)


def test_load_options_that_run_on_a_cpu(peers, wan_plain, tmp_path):
    """--vae-tiling, --attention native, --dtype fp32 and --lora FILE:SCALE change what they should."""
    import torch
    from diffusers import WanPipeline
    from peft import LoraConfig, get_peft_model_state_dict

    from cinegen.backends import load_backend
    from cinegen.config import parse_lora
    req, plain = wan_request(), wan_plain
    opts = load_backend(peers["wan"], device="cpu", vae_tiling=True, attention="native", dtype="fp32")
    assert opts.pipe.vae.use_tiling
    np.testing.assert_array_equal(opts.generate(req), plain)        # tiles larger than 32x32: the same frames
    # a LoRA on the tiny transformer's attention, saved the way diffusers saves one
    pipe = WanPipeline.from_pretrained(peers["wan"])
    pipe.transformer.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v"],
                                            init_lora_weights=False))
    with torch.no_grad():
        for n, p in pipe.transformer.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 2.0)
    WanPipeline.save_lora_weights(tmp_path, transformer_lora_layers=get_peft_model_state_dict(pipe.transformer),
                                  weight_name="style.safetensors")
    lora = str(tmp_path / "style.safetensors")
    on = load_backend(peers["wan"], device="cpu", loras=(parse_lora(lora + ":1.0"),)).generate(req)
    off = load_backend(peers["wan"], device="cpu", loras=(parse_lora(lora + ":0"),)).generate(req)
    assert not np.array_equal(on, plain)
    np.testing.assert_allclose(off.astype(int), plain.astype(int), atol=1)     # scale 0: the base model
    r = cli("generate", "a red ball", "--model", peers["wan"], "--lora", lora + ":0.5", "--vae-tiling",
            "--attention", "native", *TINY, "--seconds", "0.5", "-o", tmp_path / "l.mp4")
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize("attention", ["_native_math", "_native_flash", "flex"])      # native: the test above
def test_the_attention_backends_a_cpu_runs_give_the_same_frames(peers, wan_plain, attention):
    from cinegen.backends import load_backend
    from cinegen.backends.diffusers import CPU_ATTENTION
    assert attention in CPU_ATTENTION
    b = load_backend(peers["wan"], device="cpu", attention=attention)
    np.testing.assert_allclose(b.generate(wan_request()).astype(int), wan_plain.astype(int), atol=2)


def test_quantize_int8_weight_only(peers, wan_plain):
    pytest.importorskip("torchao")
    from cinegen.backends import load_backend
    b = load_backend(peers["wan"], device="cpu", quantize="int8wo")
    assert type(b.pipe.transformer.blocks[0].attn1.to_q.weight).__name__ == "Int8Tensor"
    assert type(b.pipe.vae.decoder.conv_out.weight).__name__ == "Parameter"          # the transformer only
    out = b.generate(wan_request())
    assert out.shape == wan_plain.shape == (5, 32, 32, 3)


@pytest.mark.slow
def test_compile_runs_the_compiled_transformer(peers, wan_plain):
    from cinegen.backends import load_backend
    req, plain = wan_request(), wan_plain
    compiled = load_backend(peers["wan"], device="cpu", compile=True)
    assert compiled.pipe.transformer._compiled_call_impl is not None
    np.testing.assert_allclose(compiled.generate(req).astype(int), plain.astype(int), atol=2)


def test_registry_names_folders_and_lists_what_each_can_do(peers, tmp_path, monkeypatch):
    toml = tmp_path / "models.toml"
    toml.write_text(f'[models.tiny-wan]\npath = "{peers["wan"]}"\n\n[models.tiny-ltx]\npath = "{peers["ltx"]}"\n'
                    f'vae_tiling = true\n\n[models.tiny-vace]\npath = "{peers["wan-vace"]}"\n')
    monkeypatch.setenv("CINEGEN_MODELS", str(toml))
    r = cli("models", "--json")
    assert r.exit_code == 0, r.output
    rows = {m["name"]: m for m in json.loads(r.stdout)}
    assert rows["tiny-wan"]["modes"] == ["text", "image", "edit"] and rows["tiny-wan"]["fps"] == 16.0
    assert rows["tiny-ltx"]["modes"] == ["text", "image", "animate", "extend", "connect", "loop", "keyframes", "edit"]
    assert rows["cinegen-default"]["kind"] == "cinegen" and "keyframes" in rows["cinegen-default"]["modes"]
    r = cli("generate", "a red ball", "--model", "tiny-ltx", *TINY, "--seconds", "1", "-o", tmp_path / "n.mp4")
    assert r.exit_code == 0, r.output
    toml.write_text(toml.read_text() + f'\n[models.typo]\npath = "{peers["wan"]}"\nvae_tilling = true\n')
    r = cli("generate", "a red ball", "--model", "typo", "-o", tmp_path / "t.mp4")
    assert r.exit_code == 2 and "model typo: unknown option vae_tilling; options are" in " ".join(r.output.split())
    r = cli("generate", "a red ball", "--model", "no-such-model", "-o", tmp_path / "m.mp4")
    assert r.exit_code == 2 and "neither a registered name (cinegen-default, tiny-wan" in " ".join(r.output.split())


def serve(tmp_path, monkeypatch, registered: dict, *extra: str):
    """A test client of the server offering `registered` {name: (folder, size)} through models.toml (1 s
    videos at that one size) and `extra` as --model NAME=FOLDER does, and a 2-step worker for the registered."""
    from fastapi.testclient import TestClient

    from cinegen.cli import _models_option
    from cinegen.server.app import ServerSettings, create_app
    from cinegen.server.worker import Worker
    toml = tmp_path / "models.toml"
    toml.write_text("".join(f'[models.{name}]\npath = "{folder}"\nsizes = ["{size}"]\nseconds = ["1"]\n\n'
                            for name, (folder, size) in registered.items()))
    monkeypatch.setenv("CINEGEN_MODELS", str(toml))
    client = TestClient(create_app(ServerSettings(data_dir=tmp_path / "data", models=_models_option(list(extra)))))
    return client, Worker(tmp_path / "data", {name: name for name in registered}, steps=2)


def test_server_lists_registry_models_renders_one_and_refuses_what_it_cannot_do(peers, tmp_path, monkeypatch):
    from cinegen.cli import _models_option
    from cinegen.server.app import ServerSettings, create_app
    client, worker = serve(tmp_path, monkeypatch, {"tiny-wan": (peers["wan"], "16x16"),
                                                   "tiny-ltx": (peers["ltx"], "32x32")}, f"tiny-i2v={peers['wan-i2v']}")
    listed = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert listed["tiny-wan"]["modes"] == ["text", "image", "edit"] and listed["tiny-wan"]["sizes"] == ["16x16"]
    assert listed["tiny-i2v"]["modes"] == ["animate"] and listed["cinegen-default"]["modes"] == list(NATIVE_MODES)
    r = client.post("/v1/videos", json={"prompt": "a red ball", "model": "tiny-i2v"})
    assert r.status_code == 400 and r.json()["error"]["message"] == "model tiny-i2v cannot do 'text'; it can do: animate"
    vid = client.post("/v1/videos", json={"prompt": "a red ball", "model": "tiny-wan", "seconds": "1"}).json()["id"]
    assert worker.run_once()
    job = client.get(f"/v1/videos/{vid}").json()
    assert job["status"] == "completed", job
    (tmp_path / "v.mp4").write_bytes(client.get(f"/v1/videos/{vid}/content").content)
    assert probe(tmp_path / "v.mp4")[:3] == (17, (16, 16), 16.0)           # 1 s at Wan's own 16 fps
    r = client.post("/v1/videos/extensions", json={"prompt": "more", "model": "tiny-wan", "seconds": "1", "video": {"id": vid}})
    assert r.status_code == 400 and "cannot do 'extend'; it can do: text, image, edit" in r.json()["error"]["message"]
    bad = _models_option([f"tiny-cog={peers['cogvideox-i2v']}"])      # the default offer, 64x64 first
    with pytest.raises(ValueError, match="model tiny-cog offers size 64x64, which it cannot render: .* 32x32 only"):
        create_app(ServerSettings(data_dir=tmp_path / "bad", models=bad))
    first = client.post("/v1/videos", json={"prompt": "a red ball", "model": "tiny-ltx", "seconds": "1"}).json()["id"]
    assert worker.run_once()
    r = client.post("/v1/videos/extensions", json={"prompt": "more", "model": "tiny-ltx", "seconds": "1",
                                                   "video": {"id": first}})
    assert r.status_code == 200, r.json()
    assert worker.run_once()
    assert client.get(f"/v1/videos/{r.json()['id']}").json()["status"] == "completed"
    (tmp_path / "e.mp4").write_bytes(client.get(f"/v1/videos/{r.json()['id']}/content").content)
    assert probe(tmp_path / "e.mp4")[:3] == (25 + 24, (32, 32), 24.0)       # LTX at 24 fps: 1 + 24, then 24 more


def test_server_characters_hold_an_image_to_video_folders_first_frame(peers, loaded, tmp_path, monkeypatch):
    """A character's still is the first frame Wan2.2-TI2V holds (its first latent frame is the image's, whatever
    the seed): two videos of one character share their first frame and differ after it, another character's does
    not, and it is the frame the folder draws from that still itself. A text-only folder refuses characters."""
    import io

    from PIL import Image

    from cinegen import requests as R
    from cinegen.config import SampleConfig
    from cinegen.io.video import read_video, write_mp4
    client, worker = serve(tmp_path, monkeypatch, {"tiny-ti2v": (peers["wan22-ti2v"], "32x32"),
                                                   "tiny-wan": (peers["wan"], "16x16")})
    left = np.zeros((32, 32, 3), np.uint8)
    left[:, :16] = 255                                           # white on the left; its mirror is the other one

    def character(name, still):
        png = io.BytesIO()
        Image.fromarray(still).save(png, format="PNG")
        r = client.post("/v1/videos/characters", data={"name": name}, files={"video": ("s.png", png.getvalue())})
        assert r.status_code == 200, r.json()
        return r.json()["id"]

    def render(cid):
        r = client.post("/v1/videos", json={"prompt": "a figure waves", "model": "tiny-ti2v", "seconds": "1",
                                            "characters": [{"id": cid}]})
        assert r.status_code == 200, r.json()
        assert worker.run_once()
        vid = r.json()["id"]
        assert client.get(f"/v1/videos/{vid}").json()["status"] == "completed"
        (tmp_path / f"{vid}.mp4").write_bytes(client.get(f"/v1/videos/{vid}/content").content)
        return read_video(tmp_path / f"{vid}.mp4")

    lefty, righty = character("Lefty", left), character("Righty", left[:, ::-1].copy())
    (a, fps), (again, _), (other, _) = render(lefty), render(lefty), render(righty)
    assert a.shape == (25, 32, 32, 3) and fps == 24.0                       # 1 s at TI2V's own 24 fps

    def dist(x, y):
        return np.abs(x.astype(float) - y.astype(float)).mean()
    assert dist(a[-1], again[-1]) > 3                   # each job its own seed ...
    assert dist(a[0], again[0]) < 1 < 3 < dist(a[0], other[0])       # ... the character's first frame in both
    direct = loaded("wan22-ti2v").generate(
        R.Animate(prompt="x", image=left, sample=SampleConfig(seconds=1, fps=24, width=32, height=32, steps=2)))
    write_mp4(direct, tmp_path / "direct.mp4", 24)
    assert dist(a[0], read_video(tmp_path / "direct.mp4")[0][0]) < 1      # what the folder animates the still to
    r = client.post("/v1/videos", json={"prompt": "a figure waves", "model": "tiny-wan", "seconds": "1",
                                        "characters": [{"id": lefty}]})
    assert r.status_code == 400 and r.json()["error"]["param"] == "characters"
    assert r.json()["error"]["message"] == "tiny-wan cannot use characters: it has no image conditioning"


def test_storyboard_and_estimate_read_a_diffusers_folder(peers, tmp_path):
    board = tmp_path / "board.yaml"
    board.write_text("title: Tiny\nsize: 32x32\nfps: 24\nsteps: 2\nshots:\n"
                     "  - prompt: a red ball bounces\n    seconds: 0.5\n"
                     "  - prompt: a blue box moves left\n    seconds: 0.5\n    transition: connect\n"
                     "    transition_seconds: 0.5\n")
    r = cli("storyboard", board, "--check", "--model", peers["ltx"])
    assert r.exit_code == 0, r.output
    assert "board is valid" in r.output and "transition 1" in r.output
    r = cli("storyboard", board, "--check", "--model", peers["wan"])      # plain T2V has no connect
    assert r.exit_code == 2 and ("line 8: shots[1]: model wan cannot do 'connect' (transition: connect); it can do: "
                                 "text, image, edit") in " ".join(r.output.split())
    r = cli("storyboard", board, "--model", peers["ltx"], "-o", tmp_path / "film")
    assert r.exit_code == 0, r.output
    frames, size, fps, meta = probe(tmp_path / "film" / "film.mp4")
    assert size == (32, 32) and fps == 24.0 and meta["model"].startswith("ltx@")
    # estimate: the folder's own width, depth and compression (Wan2.1's transformer config read, no weights)
    r = cli("estimate", "--model", peers["wan"], "--size", "32x32", "--seconds", "1", "--steps", "2")
    assert r.exit_code == 0, r.output
    assert "tokens" in r.output
    r = cli("estimate", "--model", tmp_path, "--size", "32x32")
    assert r.exit_code == 2 and "a Diffusers folder or a `cinegen models` name" in " ".join(r.output.split())


def test_eval_scores_a_diffusers_folder(peers, tmp_path):
    out = tmp_path / "eval.json"
    r = cli("eval", "--model", peers["wan"], "--n-seen", "1", "--n-heldout", "1", "--direction-pairs", "0",
            "--steps", "1", "--size", "16x16", "--seconds", "0.25", "--out", out)
    assert r.exit_code == 0, r.output
    report = json.loads(out.read_text())
    assert report["sample_config"]["fps"] == 16.0 and report["splits"]["seen"]["generated"]["clips"] == 1
    r = cli("eval", "--model", peers["wan"], "--modes", "--steps", "1", "--size", "16x16", "--out", out)
    assert r.exit_code == 2 and "--modes scores cinegen models' own modes" in " ".join(r.output.split())


def readme_commands() -> list[list[str]]:
    """The `cinegen ...` command lines of README's "Command lines for a 24 GB card" block, as argument lists."""
    import shlex
    from pathlib import Path
    text = (Path(__file__).parent.parent / "README.md").read_text()
    block = text.split("Command lines for a 24 GB card", 1)[1].split("```", 2)[1]
    lines = block.replace("\\\n", " ").splitlines()
    return [shlex.split(line)[1:] for line in lines if line.startswith("cinegen ")]


# the folders the README names, and the tiny folder of the same class and frame/size rules standing in for each
README_FOLDERS = {"~/models/Wan2.1-T2V-1.3B-Diffusers": "wan", "~/models/Wan2.2-TI2V-5B-Diffusers": "wan22-ti2v",
                  "~/models/LTX-Video": "ltx"}


def test_the_readme_command_lines_parse_and_validate(peers, media, tmp_path, monkeypatch):
    """Each README command line for a 24 GB card, exactly as written but on a tiny folder of the same family and
    the test's clips, through the CLI: on this CPU, --offload is refused with its one-line reason; without it the
    line is parsed, the request prepared and checked at its full size and duration (no rounding warning: the
    README's durations are on each family's grid) and the folder loaded with the line's options. Sampling at
    480p-720p is too slow for a CPU test, so the backend's generate is replaced by one that records the checked
    request; the real sampling of every mode is test_every_cell_through_the_cli's. Untested: the real weights and
    --offload on a GPU."""
    from cinegen.backends.diffusers import DiffusersBackend
    from cinegen.requests import Image
    seen = []

    def checked(self, request, progress=None):
        self.check(request)
        # the class that runs this mode, built from the folder loaded with the line's options
        seen.append((self.name, request, self._pipe_for(self._kind(request))))
        cfg = request.sample
        n = 1 if isinstance(request, Image) else self.capabilities.geometry.frames(cfg.seconds, cfg.fps)
        return np.zeros((n, cfg.height, cfg.width, 3), np.uint8)
    monkeypatch.setattr(DiffusersBackend, "generate", checked)
    files = {"clip.mp4": media / "a.mp4", "a.mp4": media / "a.mp4", "b.mp4": media / "b.mp4",
             "still.png": media / "still.png"}
    commands = readme_commands()
    assert len(commands) == 6 and {c[0] for c in commands} == {"generate", "edit", "animate", "extend", "connect"}
    for i, line in enumerate(commands):
        args = [str(peers[README_FOLDERS[a]]) if a in README_FOLDERS else str(files.get(a, a)) for a in line]
        out = ["-o", tmp_path / f"{i}.mp4"]
        if "--offload" in args:
            r = cli(*args, *out)
            assert r.exit_code == 2 and "Traceback" not in r.output, r.output
            assert "--offload model moves weights between a CUDA GPU and the CPU; this run is on cpu" in \
                " ".join(r.output.split())
            at = args.index("--offload")
            args = args[:at] + args[at + 2:]
        r = cli(*args, *out)
        assert r.exit_code == 0, (line, r.output)
        assert "warning" not in r.output, (line, r.output)
        name, request, pipe = seen[-1]
        size = line[line.index("--size") + 1]
        assert f"{request.sample.width}x{request.sample.height}" == size
        assert pipe.vae.use_tiling == ("--vae-tiling" in line)
        if "--seconds" in line:
            assert request.sample.seconds == float(line[line.index("--seconds") + 1])
    fps = {name: request.sample.fps for name, request, _ in seen}
    assert fps == {"wan": 16.0, "wan22-ti2v": 24.0, "ltx": 24.0}          # each family's own rate
