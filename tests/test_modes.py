"""Image/video prompting modes on the tiny random model: shapes, exact preservation, errors."""

import numpy as np
import pytest
import torch

from cinegen import modes
from cinegen.config import SampleConfig

CFG = SampleConfig(seconds=1.0, fps=8, width=32, height=32, steps=2, guidance=2.0, seed=1)
PROMPT = "a large red ball moves right on a black background"


@pytest.fixture(scope="module")
def clip():
    from cinegen.toyworld.world import parse_caption, render_scene
    return render_scene(parse_caption(PROMPT), 32, 32, 9).video


def test_image_mode(tiny_pipe):
    img = modes.image(tiny_pipe, PROMPT, CFG)
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8


@pytest.mark.parametrize("at", ["start", "end"])
def test_animate_keeps_the_still(tiny_pipe, clip, at):
    video = modes.animate(tiny_pipe, clip[0], PROMPT, CFG, at=at)
    assert video.shape == (tiny_pipe.num_frames(CFG), 32, 32, 3)
    assert np.array_equal(video[0 if at == "start" else -1], clip[0])


def test_animate_at_end_generates_into_the_held_still(tiny_pipe, clip, monkeypatch):
    """The still, held for one latent group, closes the window (a "tail" condition) and the prompt is used as
    written; generating from the still and reversing played the prompt's motion backwards."""
    seen, real = {}, tiny_pipe.generate
    monkeypatch.setattr(tiny_pipe, "generate", lambda prompt, cfg, **kw: seen.update(kw, prompt=prompt) or real(prompt, cfg, **kw))
    video = modes.animate(tiny_pipe, clip[-1], PROMPT, CFG, at="end")
    cond = seen["conditions"]
    given = cond.mask[0, 0, :, 0, 0].bool()
    held = np.repeat(clip[-1:], 5, axis=0)                                     # the still over 1 + stride frames
    assert seen["prompt"] == PROMPT and given.tolist() == [False] * (len(given) - 1) + [True]
    assert torch.equal(cond.latents[:, :, given], tiny_pipe.encode_video(held)[:, :, 1:])
    assert video.shape == (tiny_pipe.num_frames(CFG), 32, 32, 3) and np.array_equal(video[-1], clip[-1])


def test_animate_resizes_any_image(tiny_pipe):
    still = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    assert modes.animate(tiny_pipe, still, PROMPT, CFG).shape == (tiny_pipe.num_frames(CFG), 32, 32, 3)


@pytest.mark.parametrize("backward", [False, True])
def test_extend_preserves_the_original_frames(tiny_pipe, clip, backward):
    video = modes.extend(tiny_pipe, clip, PROMPT, CFG, backward=backward)
    assert len(video) == len(clip) + 8
    kept = video[8:] if backward else video[:len(clip)]
    assert np.array_equal(kept, clip)


def test_backward_extension_generates_into_the_clip_in_playing_order(tiny_pipe, clip, monkeypatch):
    """The clip's first frames close the window as in-context latents (its lone first-frame latent dropped) and
    the prompt is used as written; the old way (forward extension of the reversed clip) played its motion
    backwards."""
    seen, real = {}, tiny_pipe.generate
    monkeypatch.setattr(tiny_pipe, "generate", lambda prompt, cfg, **kw: seen.update(kw, prompt=prompt) or real(prompt, cfg, **kw))
    video = modes.extend(tiny_pipe, clip, PROMPT, CFG, backward=True)
    cond = seen["conditions"]
    given = cond.mask[0, 0, :, 0, 0].bool()                                    # (t,) latent frames given
    assert seen["prompt"] == PROMPT and given.tolist() == [False] * (len(given) - 2) + [True, True]
    assert torch.equal(cond.latents[:, :, given], tiny_pipe.encode_video(clip)[:, :, 1:])
    assert np.array_equal(video[len(video) - len(clip):], clip)


def test_backward_extension_of_a_single_frame_still_keeps_it(tiny_pipe, clip):
    video = modes.extend(tiny_pipe, clip[:1], PROMPT, CFG, backward=True)
    assert len(video) == 1 + 8 and np.array_equal(video[-1], clip[0])


def test_connect_and_loop(tiny_pipe, clip):
    bridge = modes.connect(tiny_pipe, clip, clip[::-1].copy(), PROMPT, CFG)
    assert bridge.shape[1:] == (32, 32, 3) and (len(bridge) - 1) % 4 == 0
    looped = modes.loop(tiny_pipe, clip, PROMPT, CFG)
    assert np.array_equal(looped[:len(clip)], clip) and len(looped) > len(clip)


def test_edit_strength_bounds(tiny_pipe, clip):
    assert modes.edit(tiny_pipe, clip, PROMPT, CFG, strength=0.5).shape == clip.shape
    with pytest.raises(ValueError, match="strength"):
        modes.edit(tiny_pipe, clip, PROMPT, CFG, strength=1.5)


def test_keyframes(tiny_pipe, clip):
    video = modes.keyframes(tiny_pipe, PROMPT, CFG, [(0, clip[0]), (8, clip[8])])
    assert video.shape == (tiny_pipe.num_frames(CFG), 32, 32, 3)
    with pytest.raises(ValueError, match="keyframe index"):
        modes.keyframes(tiny_pipe, PROMPT, CFG, [(99, clip[0])])


def test_long_video_by_windows(tiny_pipe):
    cfg = SampleConfig(**{**CFG.__dict__, "seconds": 4.0})
    video = modes.long_video(tiny_pipe, PROMPT, cfg, window_seconds=1.0, context_latents=1)
    assert video.shape == (tiny_pipe.num_frames(cfg), 32, 32, 3)


def test_bad_images_and_videos(tiny_pipe):
    with pytest.raises(ValueError, match="image must be"):
        modes.animate(tiny_pipe, np.zeros((0, 4, 3), np.uint8), PROMPT, CFG)
    with pytest.raises(ValueError, match="video must be"):
        modes.extend(tiny_pipe, np.zeros((0, 32, 32, 3), np.uint8), PROMPT, CFG)


def _report_peak(queue) -> None:
    from cinegen.eval.modes_eval import peak_rss_mb
    queue.put(peak_rss_mb())


def test_fresh_process_memory_probe_ignores_a_big_parent():
    """ru_maxrss in a spawned child inherits the parent's high-water mark; the probe must not (it read 1 GB)."""
    import torch

    from cinegen.eval.modes_eval import in_fresh_process, peak_rss_mb
    ballast = torch.ones(600 * 2 ** 20 // 4)                      # 600 MB, touched, held during the probe
    assert peak_rss_mb() > 600
    child = in_fresh_process(_report_peak)
    assert 0 < child < 400, f"child peak {child:.0f} MB"
    del ballast
