"""`cinegen dataset check` and `prepare` (commands/dataset.py, data/shards.py) on tiny folders of real files."""

import json
import os
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from cinegen.cli import app
from cinegen.data import shards
from cinegen.data.folder import FolderConfig
from cinegen.data.shards import load_prepared, prepare, read_manifest
from cinegen.models.loading import load_vae
from tests.footage import make_footage

ENV = {"COLUMNS": "300"}


def cli(*args):
    return CliRunner().invoke(app, list(map(str, args)), env=ENV)


def snapshot(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns, p.is_file() and p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_check_a_good_folder(footage):
    before = snapshot(footage)
    r = cli("dataset", "check", footage)
    assert r.exit_code == 0, r.output
    out = " ".join(r.output.split())
    assert "4: 3 readable video(s), 1 readable image(s), 0 unreadable" in out
    assert "17x64x64: 2 file(s), 2 window(s)" in out and "17x64x96: 1 file(s)" in out and "1x64x64: 1 file(s)" in out
    assert "24 fps (1)" in out and "4 file(s) ready" in out
    assert snapshot(footage) == before


def test_check_names_every_problem_by_file_and_exits_1(bad_footage):
    root, expected = bad_footage
    before = snapshot(root)
    r = cli("dataset", "check", root)
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    for rel, words in expected.items():
        assert any(rel in line and words in line for line in lines), (rel, words, r.output)
    assert "4 file(s) cannot be used" in r.output
    r = cli("dataset", "check", root, "--skip-bad")
    assert r.exit_code == 0 and "5 file(s) ready; 4 left out" in r.output, r.output
    assert snapshot(root) == before                         # never modifies the folder


def test_check_bad_arguments_are_one_line(tmp_path):
    r = cli("dataset", "check", tmp_path / "nowhere")
    assert r.exit_code == 2 and "footage folder not found" in r.output and "Traceback" not in r.output
    r = cli("dataset", "check", tmp_path, "--bucket", "17x64")
    assert r.exit_code == 2 and "bad bucket '17x64'" in r.output


def _count(manifest):
    return sum(s["clips"] for s in manifest["shards"])


def test_prepare_writes_shards_and_a_manifest(footage, tiny_model_dir, tmp_path):
    out = tmp_path / "cache"
    r = cli("dataset", "prepare", footage, "--out", out, "--model", tiny_model_dir, "--shard-clips", "2")
    assert r.exit_code == 0, r.output
    manifest = read_manifest(out)
    assert manifest["complete"] and set(manifest["files"]) == {"a.mp4", "wide.mp4", "still.png", "sub/long.mp4"}
    assert manifest["files"]["a.mp4"]["sha256"] == shards.file_hash(footage / "a.mp4")
    assert len(manifest["shards"]) == 2 and _count(manifest) == 4
    assert manifest["settings"]["vae"]["sha256"] == shards.file_hash(tiny_model_dir / "vae.safetensors")
    cache = load_prepared(out, vae_path=tiny_model_dir / "vae.safetensors")
    assert cache.captions[0] == "" and set(cache.captions[1:]) == {"a red square moves right", "a green square, wide",
                                                                  "a blue square", "a yellow square, long"}
    assert {g: len(b.latents) for g, b in cache.buckets.items()} == {(17, 64, 64): 2, (17, 64, 96): 1, (1, 64, 64): 1}
    for b in cache.buckets.values():                         # every clip points at a real caption
        assert (b.captions > 0).all() and (b.captions < len(cache.captions)).all()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # the latents are the VAE's of the clips, and each clip's caption row is its own
    vae = load_vae(tiny_model_dir / "vae.safetensors")
    from cinegen.data.folder import FolderSource
    from cinegen.io.video import video_to_tensor
    wide = [s for s in FolderSource(FolderConfig(root=str(footage))).clips(quiet=True) if s.extras["file"] == "wide.mp4"][0]
    with torch.no_grad():
        z = vae.encode(video_to_tensor(wide.video)[None])
    bucket = cache.buckets[(17, 64, 96)]
    assert torch.allclose(bucket.latents[0], z[0], atol=1e-4)
    assert cache.captions[int(bucket.captions[0, 0])] == "a green square, wide"
    r = cli("dataset", "prepare", footage, "--out", out, "--model", tiny_model_dir, "--fps", "12")
    assert r.exit_code == 2 and "other settings (data.fps differ)" in r.output, r.output
    with pytest.raises(ValueError, match="not of"):
        load_prepared(out, vae_path=tiny_model_dir / "dit.safetensors")


def test_a_killed_prepare_resumes_where_it_stopped(footage, tiny_model_dir, tmp_path, monkeypatch):
    from cinegen.models.text_encoder import TextEncoder
    vae_path = tiny_model_dir / "vae.safetensors"
    cfg = FolderConfig(root=str(footage))
    out = tmp_path / "cache"
    vae, text = load_vae(vae_path), TextEncoder()
    real, seen = shards.load_windows, []

    def dies_on_third(m, caption, cfg):
        if len(seen) == 2:
            raise KeyboardInterrupt           # a kill between two files
        seen.append(m.rel)
        return real(m, caption, cfg)
    monkeypatch.setattr(shards, "load_windows", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        prepare(cfg, vae, text, vae_path, out, shard_clips=1, quiet=True)
    partial = read_manifest(out)
    assert not partial["complete"] and set(partial["files"]) == set(seen) and len(partial["shards"]) == 2
    with pytest.raises(ValueError, match="only partly prepared"):
        load_prepared(out)
    (out / ".shard-00002.safetensors.abc.tmp").write_bytes(b"half")    # what a kill inside a write leaves
    again = []
    monkeypatch.setattr(shards, "load_windows", lambda m, c, f: again.append(m.rel) or real(m, c, f))
    manifest = prepare(cfg, vae, text, vae_path, out, shard_clips=1, quiet=True)
    assert sorted(again) == sorted({"a.mp4", "wide.mp4", "still.png", "sub/long.mp4"} - set(seen))
    assert manifest["complete"] and _count(manifest) == 4 and len(manifest["shards"]) == 4
    assert not (out / ".shard-00002.safetensors.abc.tmp").exists()
    assert sum(len(b.latents) for b in load_prepared(out).buckets.values()) == 4
    # a file changed since it was prepared is named
    os.utime(footage / "a.mp4")
    changed = tmp_path / "changed"
    make_footage(changed)
    prepare(FolderConfig(root=str(changed)), vae, text, vae_path, out / ".." / "c2", quiet=True)
    (changed / "a.txt").write_text("new caption")           # a caption is not the file: no change
    (changed / "a.mp4").write_bytes((changed / "wide.mp4").read_bytes())
    with pytest.raises(ValueError, match="a.mp4 changed since it was prepared"):
        prepare(FolderConfig(root=str(changed)), vae, text, vae_path, out / ".." / "c2", quiet=True)


def test_prepare_refuses_bad_files_unless_skip_bad(bad_footage, tiny_model_dir, tmp_path):
    root, _ = bad_footage
    r = cli("dataset", "prepare", root, "--out", tmp_path / "c", "--model", tiny_model_dir)
    assert r.exit_code == 2 and "broken.mp4: unreadable or corrupt" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "c" / "manifest.json").exists()
    r = cli("dataset", "prepare", root, "--out", tmp_path / "c", "--model", tiny_model_dir, "--skip-bad")
    assert r.exit_code == 0, r.output
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert set(manifest["skipped"]) == {"broken.mp4", "nocap.mp4", "empty.mp4", "short.mp4"}
    assert "odd.png" in manifest["files"]
