from dataclasses import replace

import numpy as np
import pytest

from cinegen.toyworld.world import (
    COLOURS,
    DEFAULT_HOLDOUT,
    GRAVITY,
    RESTITUTION,
    ObjectSpec,
    SceneSpec,
    _gravity_path,
    canonical_caption,
    matches_holdout,
    paraphrase_caption,
    parse_caption,
    random_clip,
    random_scene,
    render_scene,
    validate_holdout,
)


def test_render_any_size_and_length():
    scene = parse_caption("a large red ball stays still on a black background")
    clip = render_scene(scene, width=96, height=48, num_frames=9, fps=12)
    assert clip.video.shape == (9, 48, 96, 3) and clip.video.dtype == np.uint8


def test_object_colour_is_exact():
    scene = parse_caption("a large purple box stays still on a black background")
    clip = render_scene(scene, 64, 64, 1)
    x, y, _ = clip.tracks[0][0]
    assert tuple(clip.video[0, int(y), int(x)]) == COLOURS["purple"]


def test_triangle_is_a_triangle():
    # an equilateral triangle of circumradius r has area 3*sqrt(3)/4 r^2 and its apex r above the centre; the
    # world once cut the top half of the apex off (a trapezoid of 0.89 the area, flat r/2 above the centre)
    scene = parse_caption("a large red triangle stays still on a black background")
    clip = render_scene(scene, 256, 256, 1)
    x, y, r = clip.tracks[0][0]
    cover = clip.video[0, ..., 0] / COLOURS["red"][0]                    # anti-aliased coverage on black
    assert cover.sum() == pytest.approx(3 * np.sqrt(3) / 4 * r ** 2, rel=0.02)
    mask = cover > 0.5
    rows = np.flatnonzero(mask.any(1))
    assert rows.min() == pytest.approx(y - r, abs=1.5) and rows.max() == pytest.approx(y + r / 2, abs=1.5)
    assert mask[int(y - 0.8 * r)].sum() <= 0.25 * r                        # narrow near the apex


@pytest.mark.parametrize("bad", [0, 15, 100, -16])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError, match="multiple of 16"):
        render_scene(parse_caption("a small red ball falls on a gray background"), width=bad)


def test_canonical_and_paraphrased_captions_parse_back():
    rng = np.random.default_rng(0)
    for _ in range(200):
        scene = random_scene(rng)
        for text in (canonical_caption(scene), paraphrase_caption(scene, rng)):
            parsed = parse_caption(text)
            assert parsed.objects == scene.objects and parsed.background == scene.background
            assert parsed.camera == scene.camera and parsed.collide == scene.collide


def test_parse_error_names_the_bad_part():
    with pytest.raises(ValueError, match="magenta"):
        parse_caption("a large magenta ball bounces on a black background")


def test_holdout_excludes_combinations():
    rng = np.random.default_rng(1)
    holdout = ("purple triangle", "orange ring bounces")
    for _ in range(300):
        for obj in random_scene(rng, holdout).objects:
            assert not matches_holdout(obj, holdout)
    assert matches_holdout(ObjectSpec("orange", "ring", "small", "bounces"), holdout)
    assert not matches_holdout(ObjectSpec("orange", "ring", "small", "falls"), holdout)
    validate_holdout(DEFAULT_HOLDOUT)
    with pytest.raises(ValueError, match="vocabulary"):
        validate_holdout(("magenta blob",))


def test_bounce_is_parabolic_with_restitution():
    times = np.linspace(0, 3, 3001)
    y = _gravity_path(times, 0.2, 0.9, bounce=True)
    first_hit = int(np.argmax(y[:1000]))                                     # floor contact within the first second
    assert times[first_hit] == pytest.approx(np.sqrt(2 * 0.7 / GRAVITY), abs=2e-3)
    assert y[first_hit] == pytest.approx(0.9, abs=2e-3)
    # free fall is a parabola: y - y0 = g t^2 / 2
    assert y[300] - 0.2 == pytest.approx(0.5 * GRAVITY * times[300] ** 2, rel=1e-6)
    # after the first contact the ball rises to (RESTITUTION^2) of the drop height
    apex = y[first_hit:first_hit + 1500].min()
    assert 0.9 - apex == pytest.approx(0.7 * RESTITUTION ** 2, rel=0.02)


def test_two_object_collision_and_occluder_render():
    rng = np.random.default_rng(3)
    scene = random_scene(rng, p_collide=1.0)
    assert scene.collide and len(scene.objects) == 2
    clip = render_scene(scene, 64, 64, 17)
    xa = clip.tracks[0][:, 0]
    assert (np.diff(xa)[:3] > 0).all() and (np.diff(xa)[-3:] < 0).all()      # bounced back
    occl = SceneSpec((ObjectSpec("red", "ball", "small", "moves right"),), "black", occluder=True)
    assert "behind a wall" in canonical_caption(occl)
    render_scene(occl, 64, 64, 17)


def test_photo_background_with_camera_motion():
    scene = SceneSpec((ObjectSpec("red", "ball", "large", "stays still"),), "photo", "pans left", "coffee")
    video = render_scene(scene, 64, 64, 9).video
    assert np.abs(video[0].astype(int) - video[-1].astype(int)).mean() > 5     # the background moved


def test_random_clip_is_deterministic():
    a = random_clip(np.random.default_rng(7))
    b = random_clip(np.random.default_rng(7))
    assert a.caption == b.caption and (a.video == b.video).all()


def test_word_swapped_twins_show_what_their_captions_say():
    from cinegen.eval.analyzer import analyze
    from cinegen.toyworld.world import mirror_clip, reverse_clip
    right = render_scene(parse_caption("a large red box moves right and a small blue ball moves up on a gray "
                                       "background"), 64, 64, 17, seed=2)
    mirrored, backwards = mirror_clip(right), reverse_clip(right)
    assert mirrored.caption.startswith("a large red box moves left and a small blue ball moves up")
    assert backwards.caption.startswith("a large red box moves left and a small blue ball moves down")
    assert np.array_equal(mirrored.video[:, :, ::-1], right.video) and np.array_equal(backwards.video[::-1], right.video)
    for twin in (right, mirrored, backwards):                  # the analyzer reads each twin as its own caption
        assert analyze(twin.video, twin.scene).score == 1.0
    assert not analyze(mirrored.video, right.scene).checks["obj0.motion"]


def test_twins_respect_the_holdout_and_gravity():
    from cinegen.toyworld.world import mirror_clip, reverse_clip
    clip = render_scene(parse_caption("a large cyan box moves right on a black background"), 64, 64, 9)
    assert mirror_clip(clip, ("cyan box moves left",)) is None and mirror_clip(clip) is not None
    falls = render_scene(parse_caption("a large cyan box falls on a black background"), 64, 64, 9)
    assert reverse_clip(falls) is None                           # nothing falls upwards
    assert mirror_clip(falls).caption == "a large cyan box falls on a black background"


def test_the_source_adds_twins_when_asked_and_keeps_its_splits_apart():
    from cinegen.toyworld.source import ToyWorld, ToyWorldConfig
    cfg = ToyWorldConfig(num_clips=6, buckets=((9, 32, 32),), holdout=("cyan box moves left",))
    plain, twinned = ToyWorld(cfg).clips(quiet=True), ToyWorld(replace(cfg, twins=True)).clips(quiet=True)
    assert len(plain) == 6 and 6 < len(twinned) <= 18
    assert all("cyan box moves left" not in c for s in twinned for c in s.captions)
    assert all(len(s.captions) == 3 and s.captions[1] == canonical_caption(s.extras["clip"].scene) for s in plain)
    heldout, rank1 = ToyWorld(cfg).clips("heldout", quiet=True), ToyWorld(cfg).clips(shard=1, quiet=True)
    assert {s.caption for s in heldout}.isdisjoint(s.caption for s in plain)      # other clips: other seeds
    assert [s.caption for s in rank1] != [s.caption for s in plain]
    with pytest.raises(ValueError, match="multiple of 16"):
        ToyWorldConfig(buckets=((9, 30, 32),))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        ToyWorldConfig(holdout=("mauve triangle",))


def test_render_pool_in_worker_processes_gives_the_same_clips():
    """Big pools render on every core (a lent GPU machine has 16); the clips and their order must not change."""
    from cinegen.toyworld.source import ToyWorldConfig, render_pool
    cfg = ToyWorldConfig(num_clips=12, buckets=((5, 16, 16), (5, 16, 32)), bucket_weights=(1, 1), twins=True)
    serial, parallel = render_pool(cfg, 12, quiet=True, workers=1), render_pool(cfg, 12, quiet=True, workers=2)
    assert [c.captions for c in serial] == [c.captions for c in parallel] and len(serial) > 12
    assert all(np.array_equal(a.video, b.video) for a, b in zip(serial, parallel))


def test_scene_odds_steer_the_draws_and_default_to_the_worlds_own():
    """A hard-set decoder trains on more objects, rings, small objects and photos (configs/cinegen-default/
    07-decoder-hard.toml); without odds, the draws (and so every existing recipe's clips) stay as they were."""
    from cinegen.toyworld.source import ToyWorldConfig, render_pool
    from cinegen.toyworld.world import SceneOdds
    pool = render_pool(ToyWorldConfig(num_clips=2, buckets=((5, 64, 64),), seed=3, twins=True), 2, quiet=True,
                       workers=1)
    assert [p.caption for p in pool[:3]] == ["a small blue ring bounces on the ground against black",
                                             "a small blue ring bounces on a black background",
                                             "a small cyan triangle travels left against a gray backdrop"]
    odds = SceneOdds(objects=(0, 0, 1), backgrounds=(0, 0, 0, 1), shapes=(0, 0, 0, 1), sizes=(1, 0))
    scenes = [random_scene(np.random.default_rng(i), odds=odds) for i in range(40)]
    assert all(s.background == "photo" for s in scenes)
    assert all(o.shape == "ring" and o.size == "small" for s in scenes for o in s.objects)
    plain = [s for s in scenes if not (s.collide or s.occluder)]
    assert plain and all(len(s.objects) == 3 for s in plain)
    cfg = ToyWorldConfig(num_clips=3, buckets=((5, 32, 32),), odds_shapes=(0, 0, 0, 1), odds_objects=(0, 1, 0))
    assert all(o.shape == "ring" for c in render_pool(cfg, 3, quiet=True, workers=1)
               for o in c.extras["clip"].scene.objects)
    for bad, message in (({"odds_shapes": (1, 1)}, "data.odds_shapes needs one weight per"),
                         ({"odds_objects": (1, 1)}, "data.odds_objects needs one weight per count 1..3"),
                         ({"odds_sizes": (-1, 2)}, "data.odds_sizes must be >= 0"),
                         ({"odds_backgrounds": (0, 0, 0, 0)}, "data.odds_backgrounds must be >= 0 with a positive")):
        with pytest.raises(ValueError, match=message):
            ToyWorldConfig(**bad)
