"""Provenance: tags on every output, and the invisible watermark surviving an H.264 re-encode."""

import hashlib
import json

import numpy as np
import pytest

from cinegen.io.provenance import detect_watermark, embed_watermark, provenance_tags, read_tags
from cinegen.io.video import read_video, write_mp4


@pytest.fixture(scope="module")
def clip():
    from cinegen.toyworld.world import parse_caption, render_scene
    return render_scene(parse_caption("a large red ball bounces on a sky background"), 256, 256, 5).video


def test_watermark_survives_reencoding_and_is_absent_from_clean_clips(clip, tmp_path):
    write_mp4(embed_watermark(clip), tmp_path / "marked.mp4", 8, crf=23)
    write_mp4(clip, tmp_path / "clean.mp4", 8, crf=23)
    marked = detect_watermark(read_video(tmp_path / "marked.mp4")[0])
    clean = detect_watermark(read_video(tmp_path / "clean.mp4")[0])
    assert marked.detected and marked.bit_accuracy >= 0.9
    assert not clean.detected and clean.bit_accuracy < 0.8


@pytest.fixture(scope="module")
def marked_file(clip, tmp_path_factory):
    path = tmp_path_factory.mktemp("wm") / "marked.mp4"
    write_mp4(embed_watermark(clip[:3]), path, 8, crf=23)
    return read_video(path)[0]


def _resize(video, w, h):
    from PIL import Image
    return np.stack([np.asarray(Image.fromarray(f).resize((w, h), Image.BICUBIC)) for f in video])


ATTACKS = {"shift 5 px": lambda v: np.roll(v, (5, 5), axis=(1, 2)),
           "crop 12.5% + rescale": lambda v: _resize(v[:, 32:-32, 32:-32], 256, 256),
           "upscale to 512": lambda v: _resize(v, 512, 512),
           "horizontal flip": lambda v: v[:, :, ::-1]}


@pytest.mark.parametrize("attack", ATTACKS)
def test_watermark_is_found_again_after_shift_crop_upscale_and_flip(marked_file, clip, attack):
    """The synchronisation search puts an attacked clip back on its block grid; the same attack on an unmarked
    clip finds nothing (64 bits: a chance match over every alignment tried stays far below the threshold)."""
    found = detect_watermark(np.ascontiguousarray(ATTACKS[attack](marked_file)))
    assert found.detected and found.bit_accuracy >= 0.95, found
    assert found.alignment != "as given" or attack == "shift 5 px"
    clean = detect_watermark(np.ascontiguousarray(ATTACKS[attack](clip[:3])))
    assert not clean.detected and clean.bit_accuracy < 0.8, clean


def test_soft_bits_are_the_librarys_own_reading(clip):
    """The vectorised reader agrees block by block with invisible-watermark's dwtDctSvd decoder, and the library
    reads the tiled layout back from a marked frame."""
    import cv2
    import pywt
    from imwatermark import WatermarkDecoder
    from imwatermark.dwtDctSvd import EmbedDwtDctSvd

    from cinegen.io.provenance import BLOCK, STEP, _layout, _ll, _soft_bits
    frame = embed_watermark(clip[:1])[0]
    ours = _soft_bits(_ll(frame))
    ll = pywt.dwt2(cv2.cvtColor(frame[:, :, ::-1], cv2.COLOR_BGR2YUV)[:, :, 1], "haar")[0]
    lib = EmbedDwtDctSvd(block=BLOCK)
    theirs = np.array([[lib.infer_dct_svd(ll[i:i + BLOCK, j:j + BLOCK], STEP) for j in range(0, ll.shape[1], BLOCK)]
                       for i in range(0, ll.shape[0], BLOCK)])
    assert ours.shape == theirs.shape and np.array_equal(ours > 0, theirs == 1)
    layout = _layout(frame.shape[1])
    bits = WatermarkDecoder("bits", len(layout)).decode(np.ascontiguousarray(frame[:, :, ::-1]), "dwtDctSvd", scales=[0, STEP, 0])
    assert np.mean(np.array(bits) == np.array(layout)) > 0.95


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
    assert r.exit_code == 0 and "DETECTED" in r.output and "prompt: ok matches" in r.output, r.output
    r = runner.invoke(app, ["verify", str(out), "--prompt", "a blue box", "--json"])     # scripts read the exit code
    report = json.loads(r.stdout)
    assert r.exit_code == 1 and not report["ok"] and not report["checks"]["prompt"]["ok"]
    assert report["checks"]["watermark"]["ok"] and report["checks"]["watermark"]["bit_accuracy"] >= 0.9
    write_mp4(np.zeros((3, 256, 256, 3), np.uint8), tmp_path / "clean.mp4")
    r = runner.invoke(app, ["verify", str(tmp_path / "clean.mp4"), "--json"])       # no tags, no mark: nothing holds
    assert r.exit_code == 1 and not json.loads(r.stdout)["checks"]["watermark"]["ok"]
    r = runner.invoke(app, ["generate", "a red ball", "--watermark", "--model", str(tiny_model_dir), "-o", str(out)])
    assert r.exit_code == 2 and "256x256" in r.output
    (tmp_path / "x.mp4").write_bytes(b"not a video")
    r = runner.invoke(app, ["verify", str(tmp_path / "x.mp4")])
    assert r.exit_code == 2 and "cannot decode" in r.output


def test_c2pa_manifest_signed_read_back_and_tamper_evident(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cinegen.cli import app
    from cinegen.io.provenance import read_c2pa
    runner = CliRunner()
    r = runner.invoke(app, ["c2pa-credentials", "--out", str(tmp_path / "keys")])
    assert r.exit_code == 0, r.output
    out = tmp_path / "signed.mp4"
    r = runner.invoke(app, ["generate", "a red ball", "--seconds", "1", "--size", "32x32", "--steps", "1", "--seed", "4",
                            "--model", str(tiny_model_dir), "-o", str(out),
                            "--c2pa-cert", str(tmp_path / "keys" / "chain.pem"), "--c2pa-key", str(tmp_path / "keys" / "key.pem")])
    assert r.exit_code == 0, r.output
    m = read_c2pa(out)
    assert m["state"] == "Valid" and m["generator"] == "cinegen"
    assert m["status"] == ["signingCredential.untrusted"]          # a private CA: signed, not publicly trusted
    assert m["generation"]["seed"] == "4" and m["generation"]["prompt_sha256"] == hashlib.sha256(b"a red ball").hexdigest()
    assert "trainedAlgorithmicMedia" in m["actions"]["actions"][0]["digitalSourceType"]
    assert len(read_video(out)[0]) == 9 and read_tags(out)["seed"] == "4"      # still a normal MP4 with its tags
    r = runner.invoke(app, ["verify", str(out), "--c2pa"])
    assert r.exit_code == 0 and "c2pa: ok Valid manifest by cinegen" in r.output, r.output
    data = bytearray(out.read_bytes())
    data[-200] ^= 0xFF                                                   # flip one byte of the video data
    (tmp_path / "tampered.mp4").write_bytes(bytes(data))
    assert read_c2pa(tmp_path / "tampered.mp4")["state"] != "Valid"
    r = runner.invoke(app, ["verify", str(tmp_path / "tampered.mp4"), "--json"])
    assert r.exit_code == 1 and not json.loads(r.stdout)["checks"]["c2pa"]["ok"]        # an invalid manifest fails
    write_mp4(np.zeros((5, 32, 32, 3), np.uint8), tmp_path / "plain.mp4")
    assert read_c2pa(tmp_path / "plain.mp4") is None
