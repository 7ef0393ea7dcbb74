"""The CLI as a user runs it: a subprocess, real files read back with PyAV."""

import os
import subprocess
import sys

import av
import numpy as np
import pytest

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2", "COLUMNS": "120"}


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "cinegen.cli", *args], capture_output=True, text=True, env=ENV,
                          timeout=timeout)


def test_generate_writes_a_browser_playable_mp4(tiny_model_dir, tmp_path):
    out, frames = tmp_path / "clip.mp4", tmp_path / "frames"
    r = run("generate", "a large red ball bounces on a black background", "--model", str(tiny_model_dir),
            "--seconds", "1", "--size", "48x32", "--steps", "2", "--seed", "1", "-o", str(out), "--frames-dir", str(frames))
    assert r.returncode == 0, r.stderr
    with av.open(str(out)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == (48, 32)
        assert sum(1 for _ in c.decode(stream)) == 9
        assert c.metadata.get("seed") == "1" and "prompt_sha256" in c.metadata
    assert len(list(frames.glob("frame_*.png"))) == 9


def test_eval_writes_a_report_with_the_autoencoder_ceiling(tiny_model_dir, tmp_path):
    import json
    out = tmp_path / "eval.json"
    r = run("eval", "--model", str(tiny_model_dir), "--n-seen", "2", "--n-heldout", "1", "--steps", "1",
            "--seconds", "1", "--direction-pairs", "2", "--out", str(out))
    assert r.returncode == 0, r.stderr
    report = json.loads(out.read_text())
    assert report["splits"]["seen"]["autoencoder"]["clips"] == 2 and "autoencoder" in r.stderr and "round trips" in r.stderr
    assert len(report["direction_pairs"]["rows"]) == 2 and "'moves left' vs 'moves right'" in r.stderr
    # the same run again, paired against the first: same prompts and seeds, so no change at all
    r = run("eval", "--model", str(tiny_model_dir), "--n-seen", "2", "--n-heldout", "1", "--steps", "1",
            "--seconds", "1", "--direction-pairs", "0", "--out", str(tmp_path / "again.json"), "--compare", str(out))
    assert r.returncode == 0, r.stderr
    assert "paired against" in r.stderr and "+0.000 ± 0.000" in r.stderr
    (tmp_path / "bad.json").write_text("[1, 2]")
    r = run("eval", "--model", str(tiny_model_dir), "--compare", str(tmp_path / "bad.json"), "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "not a cinegen eval report" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()                                   # refused before the long run
    r = run("eval", "--model", str(tiny_model_dir), "--guidance-high", "6", "--out", str(tmp_path / "x.json"))
    assert r.returncode == 2 and "high-noise expert" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.json").exists()                                   # no expert: refused before the run


def test_paired_difference_pairs_clips_and_refuses_other_prompts():
    from cinegen.eval.run import paired_difference

    def report(scores, prompts="abcd"):
        return {"splits": {"seen": {"clips": [{"prompt": p, "score": s, "checks": {"obj0.shape": s > 0.5}}
                                              for p, s in zip(prompts, scores)]}}}
    d = paired_difference(report([0.2, 0.4, 0.6, 0.8]), report([0.3, 0.5, 0.7, 0.9]))["seen"]
    assert d["change"] == pytest.approx(0.1) and d["stderr"] == pytest.approx(0.0, abs=1e-12)   # every clip +0.1
    assert d["before"] == pytest.approx(0.5) and d["by_attribute"]["shape"] == (0.5, 0.5)
    d = paired_difference(report([0.2, 0.4, 0.6, 0.8]), report([0.3, 0.4, 0.6, 0.8]))["seen"]
    assert d["change"] == pytest.approx(0.025) and d["stderr"] == pytest.approx(0.025)
    with pytest.raises(ValueError, match="different seen prompts"):
        paired_difference(report([0.2] * 4), report([0.2] * 4, prompts="abce"))
    # a report scored by another analyzer version (or one from before versions were written) does not pair
    newer = dict(report([0.2] * 4), analyzer="2099-01-01")
    with pytest.raises(ValueError, match="different analyzer versions"):
        paired_difference(report([0.2] * 4), newer)
    assert paired_difference(newer, dict(newer))["seen"]["change"] == 0


def _report(scores, prompts="abcd"):
    return {"splits": {"seen": {"clips": [{"prompt": p, "score": s, "checks": {"obj0.shape": s > 0.5}}
                                          for p, s in zip(prompts, scores)]}}}


def test_pooled_difference_counts_every_clip_of_every_pair_once():
    from cinegen.eval.run import paired_difference, pooled_difference
    a0, b0 = _report([0.2, 0.4, 0.6, 0.8]), _report([0.3, 0.4, 0.6, 0.9])          # changes +0.1, 0, 0, +0.1
    a1, b1 = _report([0.1, 0.9], prompts="xy"), _report([0.6, 0.9], prompts="xy")   # +0.5, 0
    d = pooled_difference([(a0, b0), (a1, b1)])["seen"]
    changes = np.array([0.1, 0, 0, 0.1, 0.5, 0])
    assert d["clips"] == 6 and d["change"] == pytest.approx(changes.mean())
    assert d["stderr"] == pytest.approx(changes.std(ddof=1) / np.sqrt(6))
    assert d["by_attribute"]["shape"] == (pytest.approx(3 / 6), pytest.approx(4 / 6))     # 0.6, 0.8, 0.9 -> + 0.6
    shape_changes = np.array([0, 0, 0, 0, 1, 0])
    assert d["attribute_change"]["shape"] == (pytest.approx(shape_changes.mean()),
                                              pytest.approx(shape_changes.std(ddof=1) / np.sqrt(6)))
    assert paired_difference(a0, b0)["seen"]["change"] == pytest.approx(0.05)           # one pair alone
    with pytest.raises(ValueError, match="different seen prompts"):
        pooled_difference([(a0, b0), (a1, b0)])


def test_compare_cli_pools_pairs_and_refuses_bad_input(tmp_path):
    import json
    paths = []
    for name, rep in [("a0", _report([0.2, 0.4, 0.6, 0.8])), ("b0", _report([0.3, 0.4, 0.6, 0.9])),
                      ("a1", _report([0.1, 0.9], prompts="xy")), ("b1", _report([0.6, 0.9], prompts="xy"))]:
        paths.append(tmp_path / f"{name}.json")
        paths[-1].write_text(json.dumps(rep))
    r = run("compare", *map(str, paths), "--out", str(tmp_path / "pooled.json"))
    assert r.returncode == 0, r.stderr
    assert "2 pair(s) pooled" in r.stdout + r.stderr and "+0.117" in r.stdout + r.stderr
    assert json.loads((tmp_path / "pooled.json").read_text())["seen"]["clips"] == 6
    r = run("compare", *map(str, paths[:3]))
    assert r.returncode == 2 and "pairs; got 3" in r.stderr and "Traceback" not in r.stderr
    r = run("compare", str(paths[0]), str(paths[2]))
    assert r.returncode == 2 and "different seen prompts" in r.stderr and "Traceback" not in r.stderr
    r = run("compare", str(paths[0]), str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "missing.json" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, needle", [
    (["--size", "50x50"], "multiple of 8"), (["--size", "big"], "bad size"), (["--seconds", "-3"], "seconds"),
    (["--steps", "0"], "steps"), (["--solver", "rk9"], "solver"), (["--guidance-high", "-1"], "guidance_high must be >= 0"),
    (["--guidance-high", "6"], "high-noise expert")])   # the tiny model has one DiT only
def test_bad_input_gives_a_clear_error_not_a_traceback(tiny_model_dir, tmp_path, args, needle):
    r = run("generate", "a red ball", "--model", str(tiny_model_dir), "-o", str(tmp_path / "x.mp4"), *args)
    assert r.returncode == 2
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x.mp4").exists()


def test_missing_model_folder_is_a_clear_error(tmp_path):
    r = run("generate", "a red ball", "--model", str(tmp_path), "-o", str(tmp_path / "x.mp4"))
    assert r.returncode == 2 and "dit.safetensors" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def clip_file(tmp_path_factory):
    from cinegen.io.video import write_mp4
    from cinegen.toyworld.world import parse_caption, render_scene
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    write_mp4(render_scene(parse_caption("a large red ball moves right on a black background"), 32, 32, 9).video, path)
    return path


def test_mode_commands_write_playable_outputs(tiny_model_dir, tmp_path, clip_file):
    from PIL import Image
    common = ["--model", str(tiny_model_dir), "--size", "32x32", "--steps", "2"]
    still = tmp_path / "still.png"
    assert run("image", "a red ball", "-o", str(still), *common).returncode == 0
    assert Image.open(still).size == (32, 32)
    jobs = {
        "animate": ["animate", str(still), "a red ball", "--seconds", "1"],
        "extend": ["extend", str(clip_file), "a red ball", "--seconds", "1"],
        "back": ["extend", str(clip_file), "a red ball", "--seconds", "1", "--backward"],
        "connect": ["connect", str(clip_file), str(clip_file), "a red ball", "--seconds", "1"],
        "loop": ["loop", str(clip_file)],
        "edit": ["edit", str(clip_file), "a blue ball", "--strength", "0.5"],
    }
    frames = {}
    for name, args in jobs.items():
        out = tmp_path / f"{name}.mp4"
        r = run(*args, "-o", str(out), *common)
        assert r.returncode == 0, (name, r.stderr)
        with av.open(str(out)) as c:
            frames[name] = sum(1 for _ in c.decode(video=0))
    assert frames["extend"] == frames["back"] == 17 and frames["edit"] == 9 and frames["animate"] == 9


@pytest.mark.parametrize("args, needle", [
    (["animate", "missing.png", "x"], "not found"), (["extend", "{junk}", "x"], "cannot decode"),
    (["edit", "{clip}", "x", "--strength", "1.5"], "strength"), (["animate", "{junk}", "x"], "cannot read image")])
def test_mode_commands_reject_bad_input_clearly(tiny_model_dir, tmp_path, clip_file, args, needle):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00garbage" * 10)
    args = [a.replace("{junk}", str(junk)).replace("{clip}", str(clip_file)) for a in args]
    r = run(*args, "--model", str(tiny_model_dir), "-o", str(tmp_path / "o.mp4"))
    assert r.returncode == 2 and needle in r.stderr and "Traceback" not in r.stderr


def test_parse_size_is_the_one_size_parser():
    import re

    import pytest

    from cinegen.config import parse_size
    assert parse_size("96x64") == (96, 64) and parse_size("64X48") == (64, 48)
    for bad in ("big", "64", "64x64x3", "ax b"):
        with pytest.raises(ValueError, match=re.escape(repr(bad))):
            parse_size(bad)


def test_the_cli_starts_without_importing_torch():
    """`cinegen --help` and argument errors answer at once: torch loads only when a command needs it."""
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-c", "import sys, cinegen.cli; print('torch' in sys.modules)"],
                       capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "False", r.stderr
