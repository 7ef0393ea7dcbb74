"""The folder dataset (data/folder.py) on real MP4s and PNGs: captions of every convention, buckets, windows,
resampling, and every problem named by file."""

import numpy as np
import pytest

from cinegen.data.folder import FolderConfig, FolderSource, fit, survey, window_starts
from cinegen.data.sources import source_class
from tests.footage import make_footage


def test_survey_reads_every_caption_convention_and_probes_files(footage):
    s = survey(FolderConfig(root=str(footage)))
    assert not s.problems, s.problems
    by = {m.rel: m for m in s.media}
    assert sorted(by) == ["a.mp4", "still.png", "sub/long.mp4", "wide.mp4"]
    assert s.captions == {"a.mp4": "a red square moves right", "wide.mp4": "a green square, wide",
                          "still.png": "a blue square", "sub/long.mp4": "a yellow square, long"}
    assert (by["a.mp4"].frames, by["a.mp4"].fps, by["a.mp4"].width, by["a.mp4"].height) == (17, 8.0, 64, 64)
    assert by["sub/long.mp4"].frames == 96 and by["sub/long.mp4"].fps == 24.0
    assert by["still.png"].kind == "image" and by["still.png"].frames == 1
    # nearest aspect ratio; the image takes its bucket's size as one frame
    assert s.buckets == {"a.mp4": (17, 64, 64), "wide.mp4": (17, 64, 96), "still.png": (1, 64, 64),
                         "sub/long.mp4": (17, 64, 64)}


def test_sidecar_caption_wins_over_metadata(tmp_path):
    root = make_footage(tmp_path / "f")
    (root / "wide.txt").write_text("from the sidecar")
    assert survey(FolderConfig(root=str(root))).captions["wide.mp4"] == "from the sidecar"


def test_every_problem_is_named_by_file(bad_footage):
    root, expected = bad_footage
    s = survey(FolderConfig(root=str(root)))
    messages = {}
    for p in s.problems:
        messages.setdefault(p.rel, []).append((p.message, p.fatal))
    for rel, words in expected.items():
        assert any(words in m for m, _ in messages.get(rel, [])), (rel, messages.get(rel))
    assert s.bad == {"broken.mp4", "nocap.mp4", "empty.mp4", "short.mp4"}        # odd size and .doc only warn
    assert "odd.png" in {m.rel for m in s.usable}


def test_source_refuses_bad_files_unless_skip_bad(bad_footage):
    root, _ = bad_footage
    with pytest.raises(ValueError, match="broken.mp4: unreadable or corrupt"):
        FolderSource(FolderConfig(root=str(root))).clips(quiet=True)
    samples = FolderSource(FolderConfig(root=str(root), skip_bad=True)).clips(quiet=True)
    assert {s.extras["file"] for s in samples} == {"a.mp4", "wide.mp4", "still.png", "sub/long.mp4", "odd.png"}


def test_windows_resample_and_crop(footage):
    source = source_class("folder")(FolderConfig(root=str(footage)))
    samples = source.clips("train", quiet=True)
    by_file = {}
    for s in samples:
        by_file.setdefault(s.extras["file"], []).append(s)
    # 96 frames at 24 fps = 4 s = 32 frames at 8 fps: one 17-frame window (back to back)
    assert len(by_file["sub/long.mp4"]) == 1 and by_file["sub/long.mp4"][0].video.shape == (17, 64, 64, 3)
    assert by_file["wide.mp4"][0].video.shape == (17, 64, 96, 3)
    assert by_file["still.png"][0].video.shape == (1, 64, 64, 3)
    assert all(s.fps == 8.0 and s.video.dtype == np.uint8 for s in samples)
    # resampled from 24 to 8 fps: the square moves 3 source frames' worth between kept frames
    long = by_file["sub/long.mp4"][0].video
    assert not np.array_equal(long[0], long[1])
    more = source_class("folder")(FolderConfig(root=str(footage), stride=4)).clips(quiet=True)
    assert sum(s.extras["file"] == "sub/long.mp4" for s in more) == 4               # starts 0, 4, 8, 12


def test_window_starts_respect_scenes_and_limits():
    assert window_starts(40, 17, 0, 0) == [0, 17]
    assert window_starts(40, 17, 5, 0) == [0, 5, 10, 15, 20]
    assert window_starts(40, 17, 5, 2) == [0, 20]
    assert window_starts(60, 17, 0, 0, [(0, 20), (20, 60)]) == [0, 20, 37]          # none crosses the cut at 20


def test_fit_centre_crops():
    video = np.zeros((1, 40, 80, 3), np.uint8)
    video[:, :, 20:60] = 255                                  # the middle half is white
    out = fit(video, 32, 32)                                  # scaled to 32x64, the middle 32 columns kept
    assert out.shape == (1, 32, 32, 3) and out.min() > 200


def test_scene_cuts_split_windows(tmp_path):
    pytest.importorskip("scenedetect")
    from cinegen.data.folder import probe, scene_segments
    from cinegen.io.video import write_mp4
    from tests.footage import moving_square
    video = np.concatenate([moving_square(24, 64, 64, (220, 40, 40)), 255 - moving_square(24, 64, 64, (20, 20, 200))])
    write_mp4(video, tmp_path / "cut.mp4", fps=8)
    segments = scene_segments(probe(tmp_path / "cut.mp4", tmp_path), 8.0)
    assert len(segments) == 2 and abs(segments[0][1] - 24) <= 1, segments


def test_missing_root_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        survey(FolderConfig(root=str(tmp_path / "nowhere")))
    with pytest.raises(ValueError, match="data.root is not set"):
        survey(FolderConfig())


def test_scene_cuts_without_scenedetect_name_the_footage_extra(footage, monkeypatch):
    import sys

    from cinegen.data.folder import probe
    from cinegen.extras import MissingExtra
    monkeypatch.setitem(sys.modules, "scenedetect", None)
    with pytest.raises(MissingExtra, match=r"data.scene_cuts needs the footage extra: pip install 'cinegen\[footage\]'"):
        FolderSource(FolderConfig(root=str(footage), scene_cuts=True)).clips(quiet=True)
    assert probe(footage / "a.mp4", footage).frames == 17        # probing needs no extra
