"""The toy world's extra vocabulary (world.EXTRA_COLOURS): drawn and read only where a scene names it, never by
default training, so the shipped model has never seen it (the footage demo teaches it)."""

import numpy as np

from cinegen.eval.analyzer import analyze
from cinegen.toyworld.world import ALL_COLOURS, EXTRA_COLOURS, parse_caption, random_clip, render_scene


def test_extra_colour_renders_and_is_read_where_named():
    scene = parse_caption("a large pink box moves right on a black background")
    video = render_scene(scene, 64, 64, 17, 8.0, seed=0).video
    assert (np.abs(video.astype(int) - ALL_COLOURS["pink"]).sum(-1) < 10).any()
    assert all(analyze(video, scene).checks.values())
    red = parse_caption("a large red box moves right on a black background")
    assert not analyze(video, red).checks["obj0.colour"]


def test_default_training_never_draws_an_extra_colour():
    rng = np.random.default_rng(0)
    words = " ".join(random_clip(rng, 64, 64, 1, 8.0, (), 3).caption for _ in range(300))
    assert not set(EXTRA_COLOURS) & set(words.split())
