"""Typed requests validated once, and the backend layer every entry point renders through."""

import json

import numpy as np
import pytest

from cinegen import requests as R
from cinegen.config import SampleConfig

CFG = SampleConfig(seconds=1.0, width=32, height=32, steps=2, guidance=2.0, seed=1)
PROMPT = "a large red ball moves right on a black background"
CLIP = np.zeros((9, 32, 32, 3), np.uint8)
STILL = np.zeros((32, 32, 3), np.uint8)


@pytest.mark.parametrize("make, match", [
    (lambda: R.Text(prompt="  "), "prompt"),
    (lambda: R.Text(prompt="x" * 32001), "prompt is 32001 characters"),
    (lambda: R.Animate(prompt=PROMPT, image=np.zeros((4, 4)), sample=CFG), "image must be"),
    (lambda: R.Animate(prompt=PROMPT, image=STILL, at="middle"), "at must be"),
    (lambda: R.Extend(prompt=PROMPT, video=np.zeros((0, 8, 8, 3), np.uint8)), "video must be"),
    (lambda: R.Connect(video=CLIP, video_b=STILL), "video_b must be"),
    (lambda: R.Edit(prompt=PROMPT, video=CLIP, strength=1.5), r"strength must be in \[0, 1\]"),
    (lambda: R.Keyframes(prompt=PROMPT, keyframes=()), "at least one"),
    (lambda: R.Keyframes(prompt=PROMPT, keyframes=((-1, STILL),)), "keyframe 0"),
    (lambda: R.Text(prompt=PROMPT, sample=SampleConfig(steps=0)), "steps"),
    (lambda: R.Text(prompt=PROMPT, sample=SampleConfig(seconds=-1)), "seconds"),
    (lambda: R.Text(prompt=PROMPT, sample=SampleConfig(fps=0)), "fps"),
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=np.zeros((32, 32), np.uint8)), r"mask must be an \(H, W, 3\)"),
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=STILL), "mask is all black"),
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=STILL + 127), "mask is all black"),     # below the threshold
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=np.full((32, 32, 3), (255, 0, 0), np.uint8)),
     "coloured pixels"),
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=np.full((16, 32, 3), 255, np.uint8)), "mask is 32x16"),
    (lambda: R.Inpaint(prompt=PROMPT, video=CLIP, mask=np.full((4, 32, 32, 3), 255, np.uint8)),
     "mask video has 4 frames, the video 9"),
])
def test_a_bad_request_names_the_bad_value_before_any_work(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_every_mode_has_one_request_type():
    assert set(R.MODES) == {"text", "image", "animate", "extend", "connect", "loop", "keyframes", "edit",
                            "inpaint"}


def test_an_inpaint_mask_is_one_frame_per_video_frame():
    """One image serves every frame; a mask video gives each frame its own; the size may differ at one aspect;
    a pixel regenerates at MASK_THRESHOLD and above (a video's tinted grey still counts as grey)."""
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[:32] = (R.MASK_THRESHOLD, R.MASK_THRESHOLD + 20, R.MASK_THRESHOLD)
    m = R.Inpaint(prompt=PROMPT, video=CLIP, mask=mask).mask_video()
    assert m.shape == (9, 64, 64) and m[:, :32].all() and not m[:, 32:].any()
    video = np.zeros((9, 64, 64, 3), np.uint8)
    video[4, 0, 0] = 255
    m = R.Inpaint(prompt=PROMPT, video=CLIP, mask=video).mask_video()
    assert m.sum() == 1 and m[4, 0, 0]


@pytest.fixture(scope="module")
def native(tiny_pipe):
    from cinegen.backends.native import NativeBackend
    return NativeBackend(tiny_pipe, "tiny")


def _requests():
    return [R.Text(prompt=PROMPT, sample=CFG), R.Image(prompt=PROMPT, sample=CFG),
            R.Animate(prompt=PROMPT, image=STILL, sample=CFG), R.Extend(prompt=PROMPT, video=CLIP, sample=CFG),
            R.Connect(prompt=PROMPT, video=CLIP, video_b=CLIP, sample=CFG), R.Loop(video=CLIP, sample=CFG),
            R.Keyframes(prompt=PROMPT, keyframes=((0, STILL), (8, STILL)), sample=CFG),
            R.Edit(prompt=PROMPT, video=CLIP, sample=CFG)]


@pytest.mark.parametrize("index", range(8))
def test_every_mode_reports_progress_through_the_one_callback(native, index):
    """Every mode, the multi-pass ones too, reports {"phase", "step", "steps"} and ends at step == steps; raising
    from it stops the render (how the server cancels a deleted job of any kind)."""
    request = _requests()[index]
    seen = []
    out = native.generate(request, progress=seen.append)
    assert out.dtype == np.uint8 and out.shape[-3:] == (32, 32, 3)
    assert seen and all(set(d) >= {"phase", "step", "steps"} for d in seen)
    assert seen[-1]["step"] == seen[-1]["steps"] and all(0 < d["step"] <= d["steps"] for d in seen)

    def cancel(d):
        raise InterruptedError(d["phase"])
    with pytest.raises(InterruptedError):
        native.generate(request, progress=cancel)


def test_long_video_progress_runs_once_from_zero_to_all(native):
    seen = []
    video = native.generate(R.Text(prompt=PROMPT, sample=SampleConfig(**{**CFG.__dict__, "seconds": 4.0})),
                            progress=seen.append)
    assert len(video) == native.pipe.num_frames(SampleConfig(seconds=4.0))
    fractions = [d["step"] / d["steps"] for d in seen]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any(d["phase"].startswith("window 2/") for d in seen)


def test_the_backend_refuses_what_the_model_cannot_render(native):
    m = native.capabilities.geometry.width_multiple                    # 8 for the tiny model (its VAE is 4x)
    with pytest.raises(ValueError, match=f"width must be a positive multiple of {m}"):
        native.generate(R.Text(prompt=PROMPT, sample=SampleConfig(width=4 * m + m // 2, height=32)))
    with pytest.raises(ValueError, match="unknown solver 'magic'"):
        native.check(R.Text(prompt=PROMPT, sample=SampleConfig(solver="magic")))


def test_load_backend_picks_by_folder(tiny_model_dir, tmp_path):
    from cinegen.backends import load_backend
    assert load_backend(tiny_model_dir).capabilities.modes == R.NATIVE_MODES
    with pytest.raises(FileNotFoundError, match="is neither a registered name .* nor a folder"):
        load_backend(tmp_path / "nope")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "WanPipeline"}))
    with pytest.raises(ValueError, match="--text-encoder applies to cinegen models only"):
        load_backend(tmp_path, text_encoder="minilm")
