"""Storyboards end to end on the tiny model: validation with lines, the film read back by PyAV, subtitles by
pysubs2/webvtt, the timeline by OTIO, voice-over by espeak-ng, and the content-hashed shot cache."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cinegen.studio.board import BoardError, load_board

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt)")

BOARD = """\
title: Ball story
size: 32x32
fps: 8
steps: 2
shots:
  - prompt: a large red ball bounces on a black background
    seconds: 1
    narration: Here comes the ball.
  - prompt: a large blue box moves right on a gray background
    seconds: 1
    transition: connect
  - prompt: a small green ball falls on a sky background
    seconds: 1
    image: still.png
    dialogue: Look out below.
    speaker: BOX
"""


@pytest.fixture
def board_dir(tmp_path):
    from PIL import Image
    Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(tmp_path / "still.png")
    (tmp_path / "board.yaml").write_text(BOARD)
    return tmp_path


def test_board_reports_every_problem_with_its_line(tmp_path):
    (tmp_path / "bad.yaml").write_text(
        "size: 60x64\nshots:\n  - prompt: a red ball\n    seconds: -1\n    colour: red\n"
        "  - prompt: ok\n    seconds: 1\n    image: missing.png\n    transition: dissolve\n")
    from cinegen.config import DIT_PRESETS, VAEConfig
    from cinegen.geometry import Geometry
    with pytest.raises(BoardError) as e:           # sizes are checked against the model that will render them
        load_board(tmp_path / "bad.yaml", Geometry.of(VAEConfig(), DIT_PRESETS["shipped"]))
    problems = e.value.problems
    assert len(problems) == 5, problems
    expected = [("line 1", "size", "multiple of 16"), ("line 4", "shots[0].seconds", "greater than 0"),
                ("line 5", "shots[0].colour", "Extra inputs"), ("line 8", "shots[1].image", "file not found"),
                ("line 9", "shots[1].transition", "'cut' or 'connect'")]
    for problem, (line, field, msg) in zip(problems, expected):
        assert problem.startswith(f"{line}: {field}: ") and msg in problem, problem


def test_board_syntax_error_names_the_line(tmp_path):
    (tmp_path / "b.yaml").write_text("shots:\n  - prompt: [unclosed\n")
    with pytest.raises(BoardError, match="line 3"):
        load_board(tmp_path / "b.yaml")


def test_json_board_and_first_shot_cannot_connect(tmp_path):
    (tmp_path / "b.json").write_text(json.dumps({"shots": [{"prompt": "a red ball", "seconds": 1, "transition": "connect"}]}))
    with pytest.raises(BoardError, match="nothing to connect"):
        load_board(tmp_path / "b.json")


@pytest.fixture
def native(tiny_pipe):
    from cinegen.backends.native import NativeBackend
    return NativeBackend(tiny_pipe, "tiny")


@needs_espeak
def test_storyboard_renders_film_subtitles_voice_and_timeline(native, tiny_model_dir, board_dir):
    import av
    import opentimelineio as otio
    import pysubs2
    import webvtt

    from cinegen.studio.render import model_digest, render_storyboard
    board = load_board(board_dir / "board.yaml")
    out = board_dir / "film"
    result = render_storyboard(native, board, out, model_digest(tiny_model_dir))
    # 3 shots of 9 frames and one transition of 8 new frames (1 s at 8 fps)
    names = [s.name for s in result.segments]
    assert names == ["shot 0", "transition 1", "shot 1", "shot 2"] and result.rendered == names
    frames = [s.frames for s in result.segments]
    assert frames == [9, 8, 9, 9]
    seconds = sum(frames) / 8

    with av.open(str(result.film)) as c:
        kinds = sorted(s.type for s in c.streams)
        assert kinds == ["audio", "subtitle", "video"]
        v, a, s = c.streams.video[0], c.streams.audio[0], c.streams.subtitles[0]
        assert v.frames == sum(frames) and abs(float(v.duration * v.time_base) - seconds) < 0.01
        assert a.codec_context.name == "aac" and abs(float(a.duration * a.time_base) - seconds) < 0.1
        texts = [bytes(sub.dialogue if hasattr(sub, "dialogue") else sub.text) for p in c.demux(s) for sub in p.decode()]
        assert c.metadata["generator"].startswith("cinegen") and c.metadata["title"] == "Ball story"
    assert len(texts) == 2 and b"Here comes the ball." in texts[0] and b"BOX: Look out below." in texts[1]
    with av.open(str(result.film)) as c:      # the voice is really there: loud where a line is, silent where none is
        pcm = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
        rate = c.streams.audio[0].sample_rate
    assert np.abs(pcm[int(0.2 * rate):int(1.0 * rate)]).max() > 0.05              # narration in shot 0
    assert np.abs(pcm[int(1.3 * rate):int(2.1 * rate)]).max() < 0.01              # transition + shot 1 are silent

    srt = pysubs2.load(str(out / "film.srt"))
    assert [e.plaintext for e in srt] == ["Here comes the ball.", "BOX: Look out below."]
    assert srt[1].start == round(26 / 8 * 1000) and srt[1].end == round(35 / 8 * 1000)   # shot 2 spans frames 26..35
    assert [c.text for c in webvtt.read(str(out / "film.vtt"))] == ["Here comes the ball.", "BOX: Look out below."]

    tl = otio.adapters.read_from_file(str(out / "film.otio"))
    clips = list(tl.tracks[0].find_clips())
    assert [c.name for c in clips] == names
    assert all(Path(c.media_reference.target_url.removeprefix("file://")).is_file() for c in clips)
    assert tl.duration().to_seconds() == pytest.approx(seconds)
    edl = otio.adapters.read_from_file(str(out / "film.edl"), rate=24)     # 8 fps on a 24 fps SMPTE timebase
    assert len(list(edl.find_clips())) == 4 and edl.duration().to_seconds() == pytest.approx(seconds)
    voice_clips = list(tl.tracks[1].find_clips())
    assert len(voice_clips) == 2 and all(Path(c.media_reference.target_url.removeprefix("file://")).is_file()
                                         for c in voice_clips)
    manifest = json.loads((out / "render.json").read_text())
    assert manifest["frames"] == sum(frames)


@needs_espeak
def test_storyboard_cache_rerenders_only_what_changed(native, tiny_model_dir, board_dir):
    from cinegen.studio.render import model_digest, render_storyboard
    digest = model_digest(tiny_model_dir)
    out = board_dir / "film"
    render_storyboard(native, load_board(board_dir / "board.yaml"), out, digest)
    again = render_storyboard(native, load_board(board_dir / "board.yaml"), out, digest)
    assert again.rendered == [] and len(again.cached) == 4
    (board_dir / "board.yaml").write_text(BOARD.replace("a large blue box", "a large white box"))
    changed = render_storyboard(native, load_board(board_dir / "board.yaml"), out, digest)
    # shot 1 changed, so did the transition into it; shots 0 and 2 come from the cache
    assert changed.rendered == ["transition 1", "shot 1"] and changed.cached == ["shot 0", "shot 2"]


@needs_espeak
def test_long_line_is_sped_up_to_fit_its_shot():
    from cinegen.studio import voice
    text = "This is a rather long narration line that would never fit into a one second shot at normal speed."
    line = voice.VoiceLine(0.0, 2.0, text)
    speech, warnings = voice.fit_line(line, "en")
    assert len(speech) / voice.SAMPLE_RATE <= 2.0 - voice.LEAD_IN + 1e-6
    assert warnings and "cut short" in warnings[0]
    short, none = voice.fit_line(voice.VoiceLine(0.0, 3.0, "Hi."), "en")
    assert not none and 0.1 < len(short) / voice.SAMPLE_RATE < 2.9


def test_cli_storyboard_check_and_errors(tiny_model_dir, board_dir, tmp_path):
    from typer.testing import CliRunner

    from cinegen.cli import app
    runner = CliRunner()
    r = runner.invoke(app, ["storyboard", str(board_dir / "board.yaml"), "--check", "--model", str(tiny_model_dir)])
    assert r.exit_code == 0, r.output
    assert "estimate" in r.output and "total" in r.output and "board is valid" in r.output
    (tmp_path / "bad.yaml").write_text("shots:\n  - prompt: x\n    seconds: 0\n")
    r = runner.invoke(app, ["storyboard", str(tmp_path / "bad.yaml"), "--model", str(tiny_model_dir)])
    assert r.exit_code == 2 and "line 3: shots[0].seconds" in r.output and "Traceback" not in r.output
