"""Storyboards end to end on the tiny model: validation with lines, the film read back by PyAV, subtitles by
pysubs2/webvtt, the timeline by OTIO, voice-over by espeak-ng, and the content-hashed shot cache."""

import json
import shutil

import numpy as np
import pytest

from cinegen.studio.board import BoardError, load_board

needs_espeak = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt)")

BOARD = """\
title: Ball story
size: 32x32
fps: 24
steps: 2
shots:
  - prompt: a large red ball bounces on a black background
    seconds: 1
    narration: Here comes the ball.
  - prompt: a large blue box moves right on a gray background
    seconds: 1
    transition: connect
    transition_seconds: 0.7
  - prompt: a small green ball falls on a sky background
    seconds: 1.3
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


RATE = 24
# the board's running seconds 1, 1.7, 2.7, 4.0 at 24 fps: every output must cut exactly here
EXPECTED_CUTS = [0, 24, 41, 65, 96]


def _timecode_frames(tc: str, rate: float = RATE) -> int:
    import opentimelineio as otio
    return otio.opentime.from_timecode(tc, rate).to_frames()


def _vtt_seconds(stamp: str) -> float:
    h, m, s = stamp.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def _track_cuts(track, rate=RATE) -> list[int]:
    """The film's segment boundaries read from a V1 track: each clip's start (a transition's neighbours overlap it,
    so there the boundaries are the transition's own: cut - in_offset and cut + out_offset), and the track's end."""
    import opentimelineio as otio
    items, cuts = list(track), []
    for i, item in enumerate(items):
        if isinstance(item, otio.schema.Transition):
            cut = track.range_of_child(items[i + 1]).start_time
            cuts += [cut - item.in_offset, cut + item.out_offset]
        elif not (i and isinstance(items[i - 1], otio.schema.Transition)):
            cuts.append(track.range_of_child(item).start_time)
    return [t.rescaled_to(rate).to_frames() for t in cuts] + [track.duration().rescaled_to(rate).to_frames()]


def _transitions(track) -> list[tuple[int, int]]:
    import opentimelineio as otio
    return [(t.in_offset.rescaled_to(RATE).to_frames(), t.out_offset.rescaled_to(RATE).to_frames())
            for t in track if isinstance(t, otio.schema.Transition)]


def _played(track, folder) -> np.ndarray:
    """The frames an NLE plays from a V1 track of film.otio: each clip's source range from its media, and over a
    transition a dissolve of the two clips' overlapping frames (outgoing tail, incoming head)."""
    import opentimelineio as otio

    from cinegen.io.video import read_video
    items, out = list(track), []

    def frames(clip, extra_before=0, extra_after=0):
        video = read_video(folder / clip.media_reference.target_url)[0].astype(float)
        a = clip.source_range.start_time.to_frames()
        return video[a - extra_before: a + clip.source_range.duration.to_frames() + extra_after]
    for i, item in enumerate(items):
        if isinstance(item, otio.schema.Transition):
            continue
        lead = items[i - 1] if i and isinstance(items[i - 1], otio.schema.Transition) else None
        tail = items[i + 1] if i + 1 < len(items) and isinstance(items[i + 1], otio.schema.Transition) else None
        own = frames(item)
        if lead is not None:                 # the transition already showed this clip's first out_offset frames
            own = own[lead.out_offset.to_frames():]
        if tail is not None:                 # blend its last in_offset frames (+ out_offset handles) with the next head
            n_in, n_out = tail.in_offset.to_frames(), tail.out_offset.to_frames()
            a_side = frames(item, extra_after=n_out)[-(n_in + n_out):]
            b_side = frames(items[i + 2], extra_before=n_in)[:n_in + n_out]
            mix = np.linspace(0, 1, n_in + n_out)[:, None, None, None]
            own = np.concatenate([own[:len(own) - n_in], a_side * (1 - mix) + b_side * mix])
        out.append(own)
    return np.concatenate(out)


@needs_espeak
def test_storyboard_outputs_agree_to_the_frame(native, tiny_model_dir, board_dir):
    """Every cut point computed from film.mp4, film.otio, film.edl, the FCP exports, SRT/VTT and render.json."""
    import av
    import opentimelineio as otio
    import pysubs2
    import webvtt

    from cinegen.studio.render import model_digest, render_storyboard
    from cinegen.studio.voice import SAMPLE_RATE
    board = load_board(board_dir / "board.yaml")
    out = board_dir / "film"
    result = render_storyboard(native, board, out, model_digest(tiny_model_dir))
    names = [s.name for s in result.segments]
    assert names == ["shot 0", "transition 1", "shot 1", "shot 2"] and result.rendered == names
    manifest = json.loads((out / "render.json").read_text())
    assert [s["start_frame"] for s in manifest["segments"]] + [manifest["frames"]] == EXPECTED_CUTS
    assert manifest["fps"] == "24" and manifest["native_fps"] == 8
    # shot 2 (1.3 s) rendered 13 native frames = 39 at 24 fps: 31 in the film, 8 as handles
    assert manifest["segments"][3]["available_frames"] == 39 and manifest["segments"][3]["frames"] == 31

    with av.open(str(result.film)) as c:
        v, a, s = c.streams.video[0], c.streams.audio[0], c.streams.subtitles[0]
        assert v.average_rate == RATE and v.frames == EXPECTED_CUTS[-1]
        assert float(v.duration * v.time_base) == pytest.approx(EXPECTED_CUTS[-1] / RATE)
        assert a.sample_rate == 48000 and a.codec_context.name == "aac"
        mp4_cues = [(round(p.pts * p.time_base * RATE), round((p.pts + p.duration) * p.time_base * RATE))
                    for p in c.demux(s) if p.size > 2]          # the muxer fills gaps with empty samples
        assert c.metadata["generator"].startswith("cinegen") and c.metadata["title"] == "Ball story"
    with av.open(str(result.film)) as c:
        pcm = np.concatenate([f.to_ndarray().ravel() for f in c.decode(audio=0)])
    assert [a for a, _ in mp4_cues] == [EXPECTED_CUTS[0], EXPECTED_CUTS[3]]          # the lines of shots 0 and 2
    for mp4 in [result.film, *(out / "shots").glob("*.mp4")]:              # faststart: moov first, in every MP4
        head = mp4.read_bytes()[:4096]
        assert 0 <= head.find(b"moov") < head.find(b"mdat") or head.find(b"mdat") == -1, mp4.name

    srt = pysubs2.load(str(out / "film.srt"))
    assert [e.plaintext for e in srt] == ["Here comes the ball.", "BOX: Look out below."]
    assert [round(e.start * RATE / 1000) for e in srt] == [EXPECTED_CUTS[0], EXPECTED_CUTS[3]]
    assert round(srt[1].end * RATE / 1000) == EXPECTED_CUTS[4] and round(srt[0].end * RATE / 1000) <= EXPECTED_CUTS[1]
    vtt = webvtt.read(str(out / "film.vtt"))
    assert [round(_vtt_seconds(c.start) * RATE) for c in vtt] == [EXPECTED_CUTS[0], EXPECTED_CUTS[3]]

    tl = otio.adapters.read_from_file(str(out / "film.otio"))
    assert _track_cuts(tl.tracks[0]) == EXPECTED_CUTS
    # the connect bridge is a Transition over its 17 frames, cut in its middle, and the timeline plays film.mp4
    assert _transitions(tl.tracks[0]) == [(8, 9)] and tl.tracks[0][1].transition_type == "SMPTE_Dissolve"
    from cinegen.io.video import read_video
    film = read_video(result.film)[0].astype(float)
    played = _played(tl.tracks[0], out)
    assert played.shape == film.shape
    per_frame = np.abs(played - film).mean(axis=(1, 2, 3))
    off_by_one = np.abs(played[1:] - film[:-1]).mean(axis=(1, 2, 3))
    # each MP4 is its own lossy encode of noise-like tiny-model frames (a few levels apart); a frame off is ~10x that
    assert per_frame.max() < 10 and per_frame.mean() < off_by_one.mean() / 3, (per_frame, off_by_one.mean())
    assert otio.opentime.to_timecode(tl.global_start_time, RATE) == "01:00:00:00"
    clips = list(tl.tracks[0].find_clips())
    assert clips[0].name.startswith("shot 0: a large red ball") and clips[0].metadata["cinegen"]["seed"] == board.seed
    assert len(clips) == 3 and {"prompt", "seed", "model", "shot_id"} <= set(clips[2].metadata["cinegen"])
    assert clips[2].media_reference.available_range.duration.to_frames() == 39          # handles
    # shot 0's media is its 24 frames + the bridge's 17, shot 1's the bridge + its 27: the transition's handles
    assert [c.media_reference.available_range.duration.to_frames() for c in clips[:2]] == [41, 44]
    assert [c.source_range.start_time.to_frames() for c in clips[:2]] == [0, 17 - 9]
    bridge_media = tl.tracks[0][1].metadata["cinegen"]["media"]
    assert all(not c.media_reference.target_url.startswith(("/", "file:")) for c in clips)   # relative
    from cinegen.io.files import current_umask
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) > 10 and {p.stat().st_mode & 0o777 for p in written} == {0o666 & ~current_umask()}
    moved = board_dir / "moved"
    shutil.copytree(out, moved)
    shutil.rmtree(out)                                                  # the folder moves: its timeline still resolves
    assert all((moved / c.media_reference.target_url).is_file() for c in clips) and (moved / bridge_media).is_file()

    # voice: each WAV sits at the same sample in film.mp4 as in film.otio, and its clip is as long as the WAV
    import wave
    voice_clips = list(tl.tracks[1].find_clips())
    assert len(voice_clips) == 2
    for clip, seg in zip(voice_clips, [manifest["segments"][0], manifest["segments"][3]]):
        at = tl.tracks[1].range_of_child(clip).start_time.rescaled_to(SAMPLE_RATE).to_frames()
        with wave.open(str(moved / clip.media_reference.target_url)) as w:
            assert w.getframerate() == SAMPLE_RATE and clip.source_range.duration.to_frames() == w.getnframes()
            wav = np.frombuffer(w.readframes(w.getnframes()), "<i2") / 32768
        assert at == seg["voice"]["start_sample"]
        onset = at + int(np.argmax(np.abs(wav) > 0.05))
        assert abs(int(np.argmax(np.abs(pcm[at - 2400:]) > 0.05)) + at - 2400 - onset) < 48        # within 1 ms

    edl = (moved / "film.edl").read_text()
    assert "FCM: NON-DROP FRAME" in edl and "SHOT000" in edl and "SHOT001" in edl
    events = [line.split() for line in edl.splitlines() if line[:3].isdigit()]
    # the bridge is a dissolve: a zero-length cut on shot 0's reel, then "D 017" to shot 1 from its start
    assert [e[3] for e in events] == ["C", "C", "D", "C"] and events[2][4] == "017" and events[2][1] == "SHOT001"
    records = [_timecode_frames(e[-2]) - _timecode_frames("01:00:00:00") for e in events]
    assert records == [0, 24, 24, 65] and records[2] + int(events[2][4]) == EXPECTED_CUTS[2]
    back = otio.adapters.read_from_file(str(moved / "film.edl"), rate=RATE)           # OTIO reads the dissolve back
    assert _track_cuts(back.tracks[0]) == EXPECTED_CUTS and sum(map(sum, _transitions(back.tracks[0]))) == 17

    for name, adapter in (("film.fcpxml", "fcpx_xml"), ("film.xml", "fcp_xml"), ("film.aaf", "AAF")):
        if adapter not in otio.adapters.available_adapter_names():
            pytest.skip(f"OTIO adapter {adapter} not installed (pip install cinegen[studio])")
        assert (moved / name).is_file(), manifest["warnings"]
        back = otio.adapters.read_from_file(str(moved / name), adapter_name=adapter)
        video = next(t for t in back.tracks if t.kind == otio.schema.TrackKind.Video)
        assert _track_cuts(video) == EXPECTED_CUTS, name
        # FCPXML's adapter writes no transitions: there (only) the bridge is a clip, and the render says so
        assert sum(map(sum, _transitions(video))) == (0 if adapter == "fcpx_xml" else 17), name
    assert any("film.fcpxml: connect bridges are clips" in w for w in manifest["warnings"])


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
    # the cut ends in a fade, not a click: the last FADE seconds ramp down to silence
    tail = np.abs(speech[-int(voice.FADE * voice.SAMPLE_RATE):])
    assert tail[-1] < 1e-3 and tail[-20:].max() < 0.1 * max(np.abs(speech).max(), 1e-6)
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


def _segments(tmp_path, rate, seconds, lines):
    """Synthetic segments on the cut points of `seconds` at `rate`, each with a 1-frame media file."""
    from cinegen.io.video import write_mp4
    from cinegen.studio.conform import cut_points
    from cinegen.studio.editorial import Segment
    bounds = cut_points(seconds, rate)
    media = write_mp4(np.zeros((1, 16, 16, 3), np.uint8), tmp_path / "shots" / "m.mp4", rate)
    return [Segment(f"shot {i}", media, a, b - a, rate, available=b - a, line=line, metadata={"index": i})
            for i, (a, b, line) in enumerate(zip(bounds, bounds[1:], lines))], bounds


@pytest.mark.parametrize("fps,start", [("23.976", "01:00:00:00"), ("29.97", "01:00:00;00"), ("25", "01:00:00:00")])
def test_ntsc_rates_keep_cut_points_and_timecode(tmp_path, fps, start):
    import opentimelineio as otio

    from cinegen.studio.conform import delivery_rate
    from cinegen.studio.editorial import write_timeline
    rate = delivery_rate(fps)
    segs, bounds = _segments(tmp_path, rate, [2.0, 1.5, 3.3, 0.7, 2.5] * 2, [None] * 10)
    # the running total is rounded, not each shot: 10 shots never drift more than half a frame from the board
    running = np.cumsum([0] + [2.0, 1.5, 3.3, 0.7, 2.5] * 2)
    assert bounds[-1] == round(20 * rate) and all(abs(b / rate - t) <= 0.5 / rate + 1e-9 for b, t in zip(bounds, running))
    write_timeline("t", segs, rate, tmp_path, 48000)
    tl = otio.adapters.read_from_file(str(tmp_path / "film.otio"))
    assert otio.opentime.to_timecode(tl.global_start_time, float(rate)) == start
    track = tl.tracks[0]
    assert [track.range_of_child(c).start_time.to_frames() for c in track] == bounds[:-1]
    edl = (tmp_path / "film.edl").read_text()
    assert ("FCM: DROP FRAME" if fps == "29.97" else "FCM: NON-DROP FRAME") in edl
    records = [line.split()[-2] for line in edl.splitlines() if line[:3].isdigit()]
    assert [_timecode_frames(r, float(rate)) - tl.global_start_time.to_frames() for r in records] == bounds[:-1]
    back = otio.adapters.read_from_file(str(tmp_path / "film.edl"), rate=float(rate))      # OTIO reads it back
    assert [back.tracks[0].range_of_child(c).start_time.to_frames() for c in back.tracks[0].find_clips()] == bounds[:-1]
    if "fcp_xml" in otio.adapters.available_adapter_names():
        fcp = otio.adapters.read_from_file(str(tmp_path / "film.xml"), adapter_name="fcp_xml")
        v = fcp.video_tracks()[0]
        assert [v.range_of_child(c).start_time.rescaled_to(float(rate)).to_frames() for c in v.find_clips()] == bounds[:-1]


def test_subtitles_wrap_cap_reading_rate_and_keep_a_gap(tmp_path):
    from fractions import Fraction

    from cinegen.studio.editorial import GAP_FRAMES, subtitle_cues
    long = ("The ball rolls down the long hill past the old mill and into the river, where the current takes it "
            "far away.")
    segs, bounds = _segments(tmp_path, Fraction(24), [2.0, 6.0, 2.0], [long[:94], long, "Hello there."])
    cues, warnings = subtitle_cues(segs, Fraction(24))
    for start, end, text in cues:
        lines = text.split("\n")
        assert len(lines) <= 2 and all(len(line) <= 42 for line in lines) and end > start
    for (_, end, _), (start, _, _) in zip(cues, cues[1:]):
        assert start - end >= GAP_FRAMES
    # 94 characters in 2 s is 47 characters/s: warned; the same line over 6 s reads at 18/s: not
    assert len(warnings) == 1 and "shot 0" in warnings[0] and "94 characters" in warnings[0]
    assert " ".join(t.replace("\n", " ") for a, _, t in cues if a < bounds[1]) == long[:94].strip()
    assert cues[0][0] == 0 and cues[-1][1] == bounds[-1]


@needs_espeak
def test_board_check_reports_duplicates_voices_images_and_connect_with_their_lines(tmp_path):
    (tmp_path / "fake.png").write_text("not an image")
    (tmp_path / "bad.yaml").write_text(
        "voice: zz-nonesuch\n"                                # 1
        "shots:\n"                                            # 2
        "  - prompt: a red ball\n"                            # 3
        "    seconds: 1\n"                                    # 4
        "    transition: connect\n"                           # 5
        "  - prompt: a blue box\n"                            # 6
        "    seconds: 1\n"                                    # 7
        "    seconds: 2\n"                                    # 8
        "    image: fake.png\n")                              # 9
    with pytest.raises(BoardError) as e:
        load_board(tmp_path / "bad.yaml")
    problems = e.value.problems
    assert [p.split(":")[0] for p in problems] == ["line 1", "line 5", "line 8", "line 9"], problems
    assert "unknown voice 'zz-nonesuch'" in problems[0] and "nothing to connect" in problems[1]
    assert "duplicate key 'seconds' (first given at line 7)" in problems[2] and "not an image" in problems[3]


def test_board_size_is_limited_with_a_clear_message(tmp_path):
    import time

    from cinegen.studio.board import MAX_SHOTS
    shots = "".join("  - prompt: a red ball\n    seconds: 1\n" for _ in range(MAX_SHOTS + 1))
    (tmp_path / "big.yaml").write_text("shots:\n" + shots)
    t = time.perf_counter()
    with pytest.raises(BoardError, match=f"at most {MAX_SHOTS} shots; this one has {MAX_SHOTS + 1}"):
        load_board(tmp_path / "big.yaml")
    (tmp_path / "ok.yaml").write_text("shots:\n" + "  - prompt: a red ball\n    seconds: 1\n" * MAX_SHOTS)
    assert len(load_board(tmp_path / "ok.yaml").shots) == MAX_SHOTS
    assert time.perf_counter() - t < 30


@needs_espeak
def test_cpu_board_estimate_is_within_30_percent_of_a_measured_render(native, tiny_model_dir, board_dir):
    import time

    from cinegen.studio.render import board_estimate, model_digest, render_storyboard
    board = load_board(board_dir / "board.yaml")
    est = board_estimate(native, board, "cpu")
    assert est.gpu == "CPU" and est.timed and len(est.rows) == 4

    spent = []

    class Timed:                             # the backend, with the time of each generate call recorded
        def __getattr__(self, name):
            return getattr(native, name)

        def generate(self, request, progress=None):
            t = time.perf_counter()
            out = native.generate(request, progress)
            spent.append(time.perf_counter() - t)
            return out
    t = time.perf_counter()
    render_storyboard(Timed(), board, board_dir / "film", model_digest(tiny_model_dir))
    total = time.perf_counter() - t
    print(f"estimate {est.wall_seconds:.2f} s, measured sampling {sum(spent):.2f} s, whole render {total:.2f} s")
    assert len(spent) == 4 and 0.7 < est.wall_seconds / sum(spent) < 1.3
    assert "Sora" in est.notes()[0] and est.notes()[1].startswith("not modelled")


def test_a_cold_process_times_renders_without_its_one_off_costs():
    """The first render in a process loads the text encoder (seconds); the CPU-timed estimate used to put that in
    the fixed cost of every shot. A fake backend: 0.5 s once, then 0.05 s fixed and 0.05 s per step."""
    import time

    from cinegen.studio.render import _timed

    class Cold:
        warm = False

        def generate(self, steps):
            time.sleep(0.05 + 0.05 * steps + (0 if self.warm else 0.5))
            self.warm = True
    per_step, fixed = _timed(Cold(), lambda steps: steps)
    assert 0.03 < per_step < 0.1 and fixed < 0.2, (per_step, fixed)


def test_estimates_read_like_a_producer_would():
    from cinegen.estimate import human_time
    assert [human_time(s) for s in (0.004, 4.25, 42, 245, 26971.62, 300000)] == \
        ["0.00 s", "4.2 s", "42 s", "4 min 05 s", "7 h 29 min", "3 d 11 h"]


MARKED_BOARD = """\
title: Marked
size: 256x256
fps: 24
steps: 1
shots:
  - prompt: a large red ball bounces on a black background
    seconds: 0.125
  - prompt: a large blue box moves right on a gray background
    seconds: 0.125
    transition: connect
    transition_seconds: 0.125
"""


def test_storyboard_watermarks_and_signs_the_film_and_every_shot(tiny_model_dir, tmp_path):
    """`storyboard --watermark --c2pa-cert --c2pa-key`: film.mp4 and every MP4 in shots/ carry the watermark and a
    valid C2PA manifest (`verify` exits 0, also as --json); a wrong prompt or a changed byte exits 1."""
    from typer.testing import CliRunner

    from cinegen.cli import app
    runner = CliRunner()
    assert runner.invoke(app, ["c2pa-credentials", "--out", str(tmp_path / "keys")]).exit_code == 0
    (tmp_path / "board.yaml").write_text(MARKED_BOARD)
    out = tmp_path / "film"
    r = runner.invoke(app, ["storyboard", str(tmp_path / "board.yaml"), "-o", str(out), "--model", str(tiny_model_dir),
                            "--watermark", "--c2pa-cert", str(tmp_path / "keys" / "chain.pem"),
                            "--c2pa-key", str(tmp_path / "keys" / "key.pem")])
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "render.json").read_text())
    prompts = {out / s["media"]: s["prompt"] for s in manifest["segments"]}
    shots = sorted((out / "shots").glob("*.mp4"))
    # shot 0, the bridge, shot 1, and the two shots' media holding the bridge as handles
    assert len(shots) == 5 and set(prompts) < set(shots)
    board_prompts = " | ".join(p for p in dict.fromkeys(s["prompt"] for s in manifest["segments"]))
    for clip in [out / "film.mp4", *shots]:
        r = runner.invoke(app, ["verify", str(clip), "--watermark", "--c2pa", "--json"])
        report = json.loads(r.stdout)
        assert r.exit_code == 0 and report["ok"], (clip.name, report["checks"])
        assert report["checks"]["watermark"]["ok"] and report["checks"]["watermark"]["bit_accuracy"] >= 0.9
        assert report["checks"]["c2pa"]["state"] == "Valid" and report["tags"]["watermark"] != "none"
    for clip, prompt in [(out / "film.mp4", board_prompts), *list(prompts.items())[1:2]]:      # the film, the bridge
        r = runner.invoke(app, ["verify", str(clip), "--prompt", prompt])
        assert r.exit_code == 0 and "prompt: ok matches" in r.output, (clip.name, r.output)
        r = runner.invoke(app, ["verify", str(clip), "--prompt", prompt + " in the rain", "--json"])
        assert r.exit_code == 1 and not json.loads(r.stdout)["checks"]["prompt"]["ok"], clip.name
    data = bytearray((out / "film.mp4").read_bytes())
    data[-200] ^= 0xFF                                                   # one byte of the film changed
    (tmp_path / "tampered.mp4").write_bytes(bytes(data))
    r = runner.invoke(app, ["verify", str(tmp_path / "tampered.mp4"), "--json"])
    assert r.exit_code == 1 and not json.loads(r.stdout)["checks"]["c2pa"]["ok"]
    r = runner.invoke(app, ["storyboard", str(tmp_path / "board.yaml"), "--model", str(tiny_model_dir), "--check",
                            "--c2pa-cert", str(tmp_path / "keys" / "chain.pem")])
    assert r.exit_code == 2 and "go together" in r.output


def test_conform_cadences_and_retime():
    """Sample-and-hold: 8 -> 24 shows each native frame 3 times, 8 -> 25 on a 4,3,3,3,3,3,3,3 cadence; the NTSC
    rates hold frames by the exact 1001 ratio; a bridge is spread over exactly its frames and ends on its last."""
    from cinegen.studio.conform import conform, conformed_length, delivery_rate, hold_indices, native_latents, retime
    assert np.bincount(hold_indices(24, 8, delivery_rate("24"))).tolist() == [3] * 8
    assert np.bincount(hold_indices(25, 8, delivery_rate("25"))).tolist() == [4] + [3] * 7
    ntsc = np.bincount(hold_indices(240, 8, delivery_rate("23.976")))
    assert set(ntsc.tolist()) <= {2, 3, 4} and abs(ntsc[:-1].mean() - 24000 / 1001 / 8) < 0.02
    frames = np.arange(9)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)          # (9, 2, 2, 3), frame k = k
    assert len(conform(frames, 8, delivery_rate("30"))) == conformed_length(9, 8, delivery_rate("30")) == 33
    assert conform(frames, 8, delivery_rate("24"), 5)[:, 0, 0, 0].tolist() == [0, 0, 0, 1, 1]
    assert retime(frames, 17)[:, 0, 0, 0].tolist()[-1] == 8 and len(retime(frames, 4)) == 4
    assert native_latents(1.3, 8, 4) == 4                          # 11 frames needed -> 1 + 4*3 = 13 on the grid
    with pytest.raises(ValueError, match="'26'"):
        delivery_rate("26")


def test_cli_storyboard_fps_conforms_the_film(tiny_model_dir, tmp_path):
    """`--fps 25` on the command line: the film, render.json and the EDL run at 25 with the board's cut points;
    an fps NLEs do not take is a clear error (exit 2) before anything renders."""
    import av
    from typer.testing import CliRunner

    from cinegen.cli import app
    (tmp_path / "b.yaml").write_text("size: 32x32\nsteps: 1\nshots:\n  - prompt: a red ball\n    seconds: 0.5\n"
                                     "  - prompt: a blue box\n    seconds: 0.7\n")
    runner = CliRunner()
    r = runner.invoke(app, ["storyboard", str(tmp_path / "b.yaml"), "--fps", "25", "-o", str(tmp_path / "film"),
                            "--model", str(tiny_model_dir)])
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "film" / "render.json").read_text())
    assert manifest["fps"] == "25" and [s["start_frame"] for s in manifest["segments"]] + [manifest["frames"]] == [0, 12, 30]
    with av.open(str(tmp_path / "film" / "film.mp4")) as c:
        assert c.streams.video[0].average_rate == 25 and c.streams.video[0].frames == 30
    records = [line.split()[-2] for line in (tmp_path / "film" / "film.edl").read_text().splitlines() if line[:3].isdigit()]
    assert [_timecode_frames(t, 25) for t in records] == [_timecode_frames("01:00:00:00", 25) + f for f in (0, 12)]
    r = runner.invoke(app, ["storyboard", str(tmp_path / "b.yaml"), "--fps", "26", "--model", str(tiny_model_dir)])
    assert r.exit_code == 2 and "'26'" in r.output and "Traceback" not in r.output


def test_outputs_keep_a_non_default_umask(tmp_path):
    """Every studio write goes through atomic_write, whose temp file would be 0600: the result must follow the
    umask, here 027 (group may read, others not)."""
    import os
    from fractions import Fraction

    from cinegen.studio.editorial import subtitle_cues, write_subtitles, write_timeline
    old = os.umask(0o027)
    try:
        segs, _ = _segments(tmp_path, Fraction(24), [1.0, 1.0], ["Hello there.", None])
        write_timeline("t", segs, Fraction(24), tmp_path, 48000)
        write_subtitles(subtitle_cues(segs, Fraction(24))[0], Fraction(24), tmp_path / "film.srt", tmp_path / "film.vtt")
    finally:
        os.umask(old)
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) >= 7 and {p.stat().st_mode & 0o777 for p in written} == {0o640}, \
        {p.name: oct(p.stat().st_mode & 0o777) for p in written}


# 3 steps: the shipped model's few-step adapter (1, 2, 4 steps) is merged on first use, which costs more than
# the sampling of these tiny shots
MIXED = """\
title: Two families
size: 16x16
fps: 24
steps: 3
shots:
  - prompt: a large red ball bounces on a black background
    seconds: 0.5
  - prompt: a blue box moves left
    seconds: 0.5
    model: wan
  - prompt: a red ball moves right
    seconds: 0.5
    image: still.png
    model: tiny-ti2v
  - prompt: a large red ball bounces on a black background
    seconds: 0.5
    transition: connect
    transition_seconds: 0.5
    model: cinegen-default
"""


def test_a_board_names_a_model_per_shot(peers, tmp_path, monkeypatch):
    """The shipped model, a Wan2.1 folder (a path relative to the board) and a Wan2.2-TI2V folder (a models.toml
    name) in one board: each loaded once, each shot rendered and priced on its own model at its own rate and
    size, conformed into one 16x16, 24 fps film, with the model of every shot in its tags and in render.json."""
    import av
    from PIL import Image
    from typer.testing import CliRunner

    import cinegen.studio.shot_models as shot_models
    from cinegen.cli import app
    from cinegen.estimate import estimate
    from cinegen.studio.render import board_estimate, shot_config
    shutil.copytree(peers["wan"], tmp_path / "wan")
    Image.fromarray(np.full((48, 48, 3), 128, np.uint8)).save(tmp_path / "still.png")
    (tmp_path / "models.toml").write_text(f'[models.tiny-ti2v]\npath = "{peers["wan22-ti2v"]}"\n')
    monkeypatch.setenv("CINEGEN_MODELS", str(tmp_path / "models.toml"))
    (tmp_path / "board.yaml").write_text(MIXED)
    loads, made = [], {}
    real = shot_models.load_shot_model

    def counted(name, **options):
        loads.append(name)
        made[name] = real(name, **options)
        return made[name]
    monkeypatch.setattr(shot_models, "load_shot_model", counted)
    runner = CliRunner()

    def cli(*args):
        return runner.invoke(app, ["storyboard", str(tmp_path / "board.yaml"), *args])
    r = cli("--check")
    said = " ".join(r.output.split())
    assert r.exit_code == 0 and "board is valid" in said, r.output
    assert "shot 2: wan22-ti2v cannot render 16x16; it renders the nearest size it can, 32x32, resized to the " \
           "film's 16x16" in said
    assert "render at 8 fps (cinegen-default), 16 fps (wan), 24 fps (wan22-ti2v)" in said
    # the shipped model (the board's), then each other model once; `cinegen-default` is the board's own again
    assert loads == [None, str(tmp_path / "wan"), "tiny-ti2v"]
    r = cli("-o", tmp_path / "film")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "film" / "render.json").read_text())
    segs = manifest["segments"]
    labels = [s["model"].split("@")[0] for s in segs]
    # the bridge (transition 3) is rendered by the model of the shot it leads into
    assert labels == ["cinegen-default", "wan", "wan22-ti2v", "cinegen-default", "cinegen-default"]
    assert [s["native_fps"] for s in segs] == [8, 16, 24, 8, 8]
    assert [s["native_size"] for s in segs] == ["16x16", "16x16", "32x32", "16x16", "16x16"]
    assert len(manifest["models"]) == 3 and manifest["model"] == " + ".join(manifest["models"])
    assert any("32x32, resized to the film's 16x16" in w for w in manifest["warnings"])
    assert manifest["frames"] == round(2.5 * 24)                   # 4 shots and a bridge of 0.5 s
    with av.open(str(tmp_path / "film" / "film.mp4")) as c:
        v = c.streams.video[0]
        assert (v.width, v.height, float(v.average_rate)) == (16, 16, 24.0)
        assert sum(1 for _ in c.decode(v)) == manifest["frames"]
    for seg in segs:                                        # each shot's own MP4 names its own model
        with av.open(str(tmp_path / "film" / seg["media"])) as c:
            assert c.metadata["model"] == seg["model"] and c.streams.video[0].width == 16
    # the estimate prices each shot on its own model (its configs, geometry and text tokens)
    from cinegen.studio.board import load_board
    models = shot_models.BoardModels(made[None], base=tmp_path, load=made.__getitem__)     # those the CLI loaded
    board = load_board(tmp_path / "board.yaml", models.default.backend.capabilities.geometry, models)
    rows = dict(board_estimate(models, board).rows)
    for i, shot in enumerate(board.shots):
        backend = models.of(shot).backend
        dit, vae, text = backend.estimate_configs()
        own = estimate(dit, vae, shot_config(board, shot, i, backend), text_tokens=text)
        assert rows[f"shot {i}"].total_flops == own.total_flops
    assert rows["shot 1"].total_flops != rows["shot 0"].total_flops
    # what the board leaves alone is each model's own default: guidance (the board sets only steps), and Wan's
    # recommended negative prompt
    from cinegen import defaults
    from cinegen.backends.families import WAN_NEGATIVE
    native, wan = (shot_config(board, board.shots[i], i, models.of(board.shots[i]).backend) for i in (0, 1))
    assert (native.steps, native.guidance, native.negative_prompt) == (3, defaults.GUIDANCE, "")
    assert (wan.steps, wan.guidance, wan.negative_prompt) == (3, 5.0, WAN_NEGATIVE)


def test_a_shots_model_is_checked_with_the_shots_line(peers, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from cinegen.cli import app
    monkeypatch.setenv("CINEGEN_MODELS", str(tmp_path / "none.toml"))
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / "still.png")
    (tmp_path / "bad.yaml").write_text(
        "size: 32x32\nshots:\n  - prompt: a red ball\n    seconds: 1\n    model: no-such-model\n"
        f"  - prompt: a red ball\n    seconds: 1\n    image: still.png\n    model: {peers['wan']}\n"
        f"  - prompt: a red ball\n    seconds: 1\n    size: 48x48\n    model: {peers['wan22-ti2v']}\n"
        f"  - prompt: a red ball\n    seconds: 1\n    transition: connect\n    model: {peers['wan']}\n")
    r = CliRunner().invoke(app, ["storyboard", str(tmp_path / "bad.yaml"), "--check"])
    said = " ".join(r.output.split())
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "4 problem(s)" in said
    assert "line 5: shots[0].model: model 'no-such-model' is neither a registered name (cinegen-default) nor a " \
           "folder" in said
    assert "line 6: shots[1]: model wan cannot do 'animate' (the shot's image); it can do: text, image, edit" in said
    assert "line 10: shots[2]: width 48 is not a multiple of 32, which wan22-ti2v needs; use 32 or 64" in said
    assert "line 14: shots[3]: model wan cannot do 'connect' (transition: connect); it can do: text, image, " \
           "edit" in said
