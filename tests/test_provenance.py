"""Provenance: tags on every output, and the invisible watermark surviving an H.264 re-encode."""

import hashlib

import numpy as np
import pytest

from cinegen.io.provenance import detect_watermark, embed_watermark, provenance_tags, read_tags
from cinegen.io.video import read_video, write_mp4


@pytest.fixture(scope="module")
def clip():
    from cinegen.data.world import parse_caption, render_scene
    return render_scene(parse_caption("a large red ball bounces on a sky background"), 256, 256, 5).video


def test_watermark_survives_reencoding_and_is_absent_from_clean_clips(clip, tmp_path):
    write_mp4(embed_watermark(clip), tmp_path / "marked.mp4", 8, crf=23)
    write_mp4(clip, tmp_path / "clean.mp4", 8, crf=23)
    marked = detect_watermark(read_video(tmp_path / "marked.mp4")[0])
    clean = detect_watermark(read_video(tmp_path / "clean.mp4")[0])
    assert marked.detected and marked.bit_accuracy >= 0.9
    assert not clean.detected and clean.bit_accuracy < 0.8


def test_watermark_is_invisible(clip):
    marked = embed_watermark(clip)
    mse = np.mean((marked.astype(float) - clip) ** 2)
    assert 10 * np.log10(255 ** 2 / mse) > 35          # PSNR of the marked clip against the original


def test_watermark_refuses_small_frames():
    with pytest.raises(ValueError, match="at least 256x256.*64x64"):
        embed_watermark(np.zeros((3, 64, 64, 3), np.uint8))


def test_tags_are_in_the_file(tmp_path):
    write_mp4(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "a.mp4", metadata=provenance_tags("m", "a red ball", 7))
    tags = read_tags(tmp_path / "a.mp4")
    assert tags["generator"].startswith("cinegen") and tags["model"] == "m" and tags["seed"] == "7"
    assert tags["prompt_sha256"] == hashlib.sha256(b"a red ball").hexdigest()


def test_cli_generate_watermark_and_verify(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cinegen.cli import app
    runner = CliRunner()
    out = tmp_path / "w.mp4"
    r = runner.invoke(app, ["generate", "a red ball", "--size", "256x256", "--seconds", "0", "--steps", "1",
                            "--watermark", "--model", str(tiny_model_dir), "-o", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["verify", str(out), "--prompt", "a red ball"])
    assert r.exit_code == 0 and "DETECTED" in r.output and "prompt matches: True" in r.output, r.output
    r = runner.invoke(app, ["generate", "a red ball", "--watermark", "--model", str(tiny_model_dir), "-o", str(out)])
    assert r.exit_code == 2 and "256x256" in r.output
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    r = runner.invoke(app, ["verify", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "cannot decode" in r.output
