import numpy as np

from cinegen.data.world import ObjectSpec, SceneSpec, parse_caption, render_scene
from cinegen.eval.analyzer import analyze, classify_shape
from cinegen.eval.run import heldout_scenes, seen_scenes


def test_real_toy_world_clips_score_near_100_percent():
    scenes = seen_scenes(40, ("purple triangle",), seed=3) + heldout_scenes(10, ("purple triangle",), seed=3)
    scores = [analyze(render_scene(s, 64, 64, 17, seed=i).video, s).score for i, s in enumerate(scenes)]
    assert np.mean(scores) >= 0.95


def test_pure_noise_scores_near_zero():
    rng = np.random.default_rng(0)
    scores = [analyze(rng.integers(0, 256, (17, 64, 64, 3), dtype=np.uint8), s).score for s in seen_scenes(10, ())]
    assert np.mean(scores) <= 0.05


def test_wrong_prompt_scores_low():
    """The same clip judged against a different colour, shape and motion fails those checks."""
    clip = render_scene(parse_caption("a large red ball moves left on a black background"), 64, 64, 17)
    right = analyze(clip.video, parse_caption("a large red ball moves left on a black background"))
    wrong = analyze(clip.video, parse_caption("a large blue box moves right on a gray background"))
    assert right.score == 1.0 and wrong.score == 0.0


def test_shapes_are_told_apart():
    for shape in ("ball", "box", "triangle", "ring"):
        scene = SceneSpec((ObjectSpec("red", shape, "large", "stays still"),), "black")
        video = render_scene(scene, 64, 64, 1).video
        assert classify_shape((video[0] == (220, 40, 40)).all(-1)) == shape


def test_bounce_versus_fall():
    bounce = parse_caption("a large green ball bounces on a black background")
    fall = parse_caption("a large green ball falls on a black background")
    clip = render_scene(bounce, 64, 64, 17, seed=1).video
    assert analyze(clip, bounce).checks["obj0.motion"] and not analyze(clip, fall).checks["obj0.motion"]
