import numpy as np
from scipy import ndimage

from cinegen.data.world import ObjectSpec, SceneSpec, parse_caption, render_scene
from cinegen.eval.analyzer import ANALYZER_VERSION, Track, analyze, classify_background, classify_shape, colour_labels, motion_ok
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


def _soft_edged(video: np.ndarray, sigma: float) -> np.ndarray:
    """A rendered clip with its edges blurred over a few pixels, as the decoder draws them."""
    return np.clip(ndimage.gaussian_filter(video.astype(np.float32), (0, sigma, sigma, 0)), 0, 255).astype(np.uint8)


def test_a_soft_edged_object_does_not_change_the_background():
    """A large object's blurred edge is no vocabulary colour; counted as background it made black read as
    'unknown' (its spread above 20). The margin around vocabulary colours keeps it out; the plain non-vocabulary
    pixels here do spread over 20, so without the margin this clip would fail."""
    clips = {background: _soft_edged(render_scene(parse_caption(caption), 64, 64, 17).video, sigma=2.5)
             for caption, background in (("a large cyan box moves left on a black background", "black"),
                                         ("a large yellow ball falls on a gray background", "gray"),
                                         ("a large orange ring bounces on a sky background", "sky"))}
    for background, video in clips.items():
        assert classify_background(video, colour_labels(video)) == background
    box = clips["black"]
    assert box[colour_labels(box) < 0].astype(np.float32).std(0).mean() > 20
    assert classify_background(box, colour_labels(box)) != "gray"


def test_shapes_are_told_apart():
    for shape in ("ball", "box", "triangle", "ring"):
        scene = SceneSpec((ObjectSpec("red", shape, "large", "stays still"),), "black")
        video = render_scene(scene, 64, 64, 1).video
        assert classify_shape((video[0] == (220, 40, 40)).all(-1)) == shape


def _blurred_shapes_read_right(sigma: float, classify) -> float:
    """Share of objects whose shape is read right in Gaussian-blurred real renders (frame 8 of each clip)."""
    from cinegen.eval.analyzer import COLOUR_NAMES, track_colour
    right = []
    for i, scene in enumerate(seen_scenes(40, (), seed=5)):
        video = render_scene(scene, 64, 64, 17, 8.0, seed=i).video[8:9]
        blurred = np.clip(ndimage.gaussian_filter(video.astype(np.float32), (0, sigma, sigma, 0)), 0, 255).astype(np.uint8)
        obj = scene.objects[0]
        mask = track_colour(colour_labels(blurred), COLOUR_NAMES.index(obj.colour)).masks[0]
        right.append(mask is not None and classify(mask) == obj.shape)
    return float(np.mean(right))


def test_shapes_survive_a_blur_that_a_viewer_reads_through():
    """Decoded video is soft: at sigma 1.2 a real triangle is still plainly a triangle. The old check (area over the
    disc through the farthest pixel) read 0.81 of the evaluation's blurred renders right; templates read 0.96."""
    def ratio_rule(mask):                          # the check before analyzer 2026-11-27.2, as the baseline
        filled = ndimage.binary_fill_holes(mask)
        if filled.sum() > 1.15 * mask.sum():
            return "ring"
        ys, xs = np.nonzero(filled)
        ratio = filled.sum() / (np.pi * (np.sqrt((xs - xs.mean()) ** 2 + (ys - ys.mean()) ** 2).max() + 0.5) ** 2)
        return "ball" if ratio > 0.8 else "box" if ratio > 0.52 else "triangle"
    assert _blurred_shapes_read_right(1.2, classify_shape) >= 0.9
    assert _blurred_shapes_read_right(1.2, ratio_rule) < 0.9


def test_bounce_versus_fall():
    bounce = parse_caption("a large green ball bounces on a black background")
    fall = parse_caption("a large green ball falls on a black background")
    clip = render_scene(bounce, 64, 64, 17, seed=1).video
    assert analyze(clip, bounce).checks["obj0.motion"] and not analyze(clip, fall).checks["obj0.motion"]


def test_a_bounce_whose_second_landing_is_lowest_is_a_bounce():
    # generated by the shipped model for "a large blue box bounces" (2026-11-26): down, rebound, down again to a
    # floor 0.02 lower than the first landing; the check once looked for a rebound only after the lowest point
    y = [0.24, 0.26, 0.31, 0.39, 0.46, 0.52, 0.67, 0.72, 0.74, 0.73, 0.55, 0.5, 0.49, 0.5, 0.61, 0.72, 0.76]
    assert motion_ok(_track(y), "bounces", "box") and not motion_ok(_track(y), "falls", "box")
    # no rebound of 4% anywhere: not a bounce (a fall with decoder jitter, a steady descent, a rise)
    for y in ([0.2, 0.3, 0.5, 0.8, 0.82, 0.8, 0.81, 0.83], list(np.linspace(0.2, 0.8, 17)), list(np.linspace(0.8, 0.2, 17))):
        assert not motion_ok(_track(y), "bounces", "box")


def _track(y: list[float], missing: tuple[int, ...] = ()) -> Track:
    """A centred object moving vertically along y (normalised), absent in `missing` frames."""
    present = np.array([i not in missing for i in range(len(y))])
    xy = np.stack([np.full(len(y), 0.5), np.array(y)], 1)
    xy[~present] = np.nan
    return Track(present, xy, np.full(len(y), 100.0), [None] * len(y), present.astype(int))


def test_fall_that_settles_like_decoded_video_is_a_fall():
    # a VAE round trip of a real fall: the landing is smeared over frames 6-9, then it rests with 0.01 jitter
    settling = [0.27, 0.29, 0.34, 0.40, 0.49, 0.70, 0.81, 0.81, 0.83, 0.83, 0.83, 0.83, 0.83, 0.83, 0.83, 0.83, 0.84]
    assert motion_ok(_track(settling), "falls", "box")
    # the object lost in frames 3-6 (blur): time is taken from the frame numbers, not the order of detections
    assert motion_ok(_track([0.19, 0.2, 0.22, 0.5, 0.6, 0.7, 0.8] + [0.85, 0.86, 0.89, 0.91] + [0.92] * 6,
                            missing=(3, 4, 5, 6)), "falls", "box")


def test_constant_speed_descent_and_rebounds_are_not_falls():
    steady = list(np.linspace(0.2, 0.8, 17))
    assert motion_ok(_track(steady), "moves down", "box") and not motion_ok(_track(steady), "falls", "box")
    lands_and_rebounds = [0.2, 0.22, 0.28, 0.38, 0.52, 0.7, 0.9, 0.82, 0.78, 0.8, 0.86, 0.9] + [0.9] * 5
    assert not motion_ok(_track(lands_and_rebounds), "falls", "ball")


def test_motion_by_kind_reports_which_motions_fail():
    from cinegen.eval.run import motion_by_kind
    fall = parse_caption("a large red ball falls on a black background")
    left = parse_caption("a small blue box moves left on a gray background")
    right = parse_caption("a small blue box moves right on a gray background")
    clips = [render_scene(s, 64, 64, 17, seed=i).video for i, s in enumerate((fall, left, right))]
    reports = [analyze(clips[0], fall), analyze(clips[1], left), analyze(clips[2], left)]   # a right-mover, asked left
    assert motion_by_kind([fall, left, left], reports) == {"falls": {"n": 1, "passed": 1.0},
                                                           "moves left": {"n": 2, "passed": 0.5}}


def test_evaluate_scores_autoencoder_round_trips_as_the_models_ceiling(tiny_pipe):
    """The report carries real clips through the model's autoencoder, scored like generated ones."""
    from cinegen.config import SampleConfig
    from cinegen.eval.run import evaluate
    cfg = SampleConfig(steps=1, guidance=1.0)
    holdout = ("purple triangle",)
    lossless = evaluate(tiny_pipe.generate, holdout, cfg, n_seen=2, n_heldout=1, roundtrip_fn=lambda v: v)
    for split in lossless["splits"].values():
        assert split["autoencoder"] == split["real"] and split["real"]["adherence"] > 0.9
    blank = evaluate(tiny_pipe.generate, holdout, cfg, n_seen=2, n_heldout=1, roundtrip_fn=np.zeros_like)
    assert blank["splits"]["seen"]["autoencoder"]["by_attribute"]["colour"] == 0.0
    real = evaluate(tiny_pipe.generate, holdout, cfg, n_seen=2, n_heldout=1, roundtrip_fn=tiny_pipe.roundtrip)
    assert real["splits"]["heldout"]["autoencoder"]["clips"] == 1
    assert real["analyzer"] == ANALYZER_VERSION        # compare refuses to pair reports of other versions
    assert "autoencoder" not in evaluate(tiny_pipe.generate, holdout, cfg, n_seen=1, n_heldout=0)["splits"]["seen"]


def test_direction_pairs_tell_a_model_that_reads_the_word_from_one_that_does_not():
    from cinegen.config import SampleConfig
    from cinegen.eval.run import direction_pairs
    cfg = SampleConfig()

    def obedient(prompt, c):                # the real toy world: the word decides
        return render_scene(parse_caption(prompt), 64, 64, 17, seed=c.seed).video

    def deaf(prompt, c):                    # ignores the direction word: always the same motion for a seed
        return obedient(prompt.replace("moves right", "moves left"), c)
    good = direction_pairs(obedient, ("cyan box moves left",), cfg, n=4)
    bad = direction_pairs(deaf, ("cyan box moves left",), cfg, n=4)
    assert good["follow_words"] == 1.0 and good["same_direction"] == 0.0
    assert bad["follow_words"] == 0.0 and bad["same_direction"] == 1.0
    assert not any(r["object"].endswith("cyan box") for r in good["rows"])      # held-out pairs are skipped
