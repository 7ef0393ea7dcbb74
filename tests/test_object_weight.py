"""Object maps in the latent cache and the object-weighted flow-matching loss (`cinegen train --object-weight`)."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import DataConfig, VAEConfig
from cinegen.data.latent_cache import (
    add_object_maps,
    build_latent_cache,
    cache_has_object_maps,
    load_latent_cache,
    object_map,
)
from cinegen.data.world import ObjectSpec, SceneSpec, render_scene
from cinegen.diffusion.flow import flow_loss
from cinegen.models.loading import load_vae
from tests.test_train import _cli

VAE8 = VAEConfig()          # 8x in space, 4x in time: the shipped latent grid


def _clip(motion="stays still", frames=17):
    scene = SceneSpec((ObjectSpec("red", "ball", "small", motion),), "black")
    return render_scene(scene, 64, 64, frames, seed=3)


def test_object_map_marks_the_cells_around_the_object_and_nothing_else():
    clip = _clip()
    m = object_map(clip, VAE8)
    assert m.shape == (1, 5, 8, 8) and set(m.unique().tolist()) <= {0.0, 1.0}
    cx, cy, r = clip.tracks[0][0]
    assert m[0, 0, int(cy // 8), int(cx // 8)] == 1                      # the cell holding the centre
    assert 1 <= m[0, 0].sum() <= 9                                         # a small object: at most 3x3 cells
    far = [(i, j) for i in range(8) for j in range(8) if min(abs(i * 8 + 4 - cy), abs(j * 8 + 4 - cx)) > 3 * r]
    assert far and all(m[0, 0, i, j] == 0 for i, j in far)
    assert torch.equal(m[:, 1:], m[:, :1].expand(-1, 4, -1, -1))         # a still object: the same cells every frame


def test_object_map_groups_frames_as_the_causal_vae_does():
    clip = _clip("moves right")
    m = object_map(clip, VAE8)
    assert m.shape == (1, 5, 8, 8)
    for k in range(1, 5):                              # latent frame k covers frames 4k-3 .. 4k: all their cells
        for f in range(4 * k - 3, 4 * k + 1):
            cx, cy, _ = clip.tracks[0][f]
            assert m[0, k, int(cy // 8), int(cx // 8)] == 1
    cols = torch.arange(8.0)
    assert (m[0, 4].sum(0) * cols).sum() / m[0, 4].sum() > (m[0, 0].sum(0) * cols).sum() / m[0, 0].sum() + 1
    assert object_map(_clip(frames=1), VAE8).shape == (1, 1, 8, 8)


@pytest.fixture(scope="module")
def tiny_cache(tmp_path_factory, tiny_model_dir, text_encoder):
    path = tmp_path_factory.mktemp("cache") / "latents.safetensors"
    data = DataConfig(num_clips=4, buckets=((5, 32, 32), (5, 32, 48)), bucket_weights=(1.0, 1.0), seed=1)
    vae = load_vae(tiny_model_dir / "vae.safetensors")
    return path, build_latent_cache(vae, text_encoder, data, path), vae.cfg


def test_cache_stores_object_maps_and_adds_them_to_an_old_cache(tiny_cache, tmp_path):
    path, cache, vae_cfg = tiny_cache
    assert cache_has_object_maps(path)
    loaded = load_latent_cache(path)
    for key, b in loaded.buckets.items():
        assert b.objects.shape == (len(b.latents), 1, *b.latents.shape[2:])
        assert torch.equal(b.objects, cache.buckets[key].objects) and b.objects.sum() > 0
        n, k = b.shapes.shape
        assert b.tracks.shape == (n, k, 5, 3) and torch.equal(b.tracks, cache.buckets[key].tracks)
        assert torch.equal(b.shapes, cache.buckets[key].shapes) and (b.shapes[:, 0] >= 0).all()
    # the same file without its maps and tracks, as caches were before them: add_object_maps renders them back
    old = tmp_path / "old.safetensors"
    with safe_open(str(path), framework="pt") as f:
        save_file({k: f.get_tensor(k) for k in f.keys() if not k.startswith(("objects.", "tracks.", "shapes."))},
                  str(old), f.metadata())
    assert not cache_has_object_maps(old) and load_latent_cache(old).buckets[(5, 32, 32)].objects is None
    add_object_maps(old)
    assert cache_has_object_maps(old)
    for key, b in load_latent_cache(old).buckets.items():
        assert torch.equal(b.objects, loaded.buckets[key].objects)
        assert torch.equal(b.tracks, loaded.buckets[key].tracks) and torch.equal(b.shapes, loaded.buckets[key].shapes)


def test_cache_records_its_world_and_an_older_one_is_named_on_load(tiny_cache, tmp_path, caplog):
    from cinegen.data.world import WORLD_VERSION
    path, _, _ = tiny_cache
    with safe_open(str(path), framework="pt") as f:
        assert f.metadata()["world_version"] == WORLD_VERSION
        tensors, meta = {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata())
    with caplog.at_level("WARNING"):
        load_latent_cache(path)
    assert "toy world" not in caplog.text
    old = tmp_path / "old_world.safetensors"             # as caches were before the field (and the triangle fix)
    del meta["world_version"]
    save_file({k: v for k, v in tensors.items() if not k.startswith(("objects.", "tracks.", "shapes."))}, str(old), meta)
    with caplog.at_level("WARNING"):
        load_latent_cache(old)
    assert "toy world of before 2026-11-27" in caplog.text and str(old) in caplog.text
    add_object_maps(old)                                  # new maps, old latents: the file keeps its old world
    with safe_open(str(old), framework="pt") as f:
        assert f.metadata()["world_version"] == "before 2026-11-27"


def test_object_tracks_are_the_renderers_tracks_and_shapes():
    from cinegen.data.latent_cache import object_tracks
    from cinegen.data.world import SHAPES
    scene = SceneSpec((ObjectSpec("red", "ring", "large", "moves left"), ObjectSpec("blue", "triangle", "small",
                                                                                    "stays still")), "gray")
    clip = render_scene(scene, 64, 64, 9, seed=2)
    tracks, shapes = object_tracks(clip)
    assert tracks.shape == (3, 9, 3) and shapes.tolist() == [SHAPES.index("ring"), SHAPES.index("triangle"), -1]
    assert torch.allclose(tracks[1], torch.from_numpy(clip.tracks[1]).float()) and (tracks[2] == 0).all()


def test_add_object_maps_refuses_a_cache_its_data_config_does_not_reproduce(tiny_cache, tmp_path):
    path, _, _ = tiny_cache
    bad = tmp_path / "bad.safetensors"
    with safe_open(str(path), framework="pt") as f:
        meta = dict(f.metadata())
        data = json.loads(meta["data_config"])
        meta["data_config"] = json.dumps({**data, "seed": data["seed"] + 1})      # other clips than were encoded
        save_file({k: f.get_tensor(k) for k in f.keys() if not k.startswith("objects.")}, str(bad), meta)
    with pytest.raises(ValueError, match="does not give its clips back"):
        add_object_maps(bad)
    assert not cache_has_object_maps(bad)                                          # the file is left as it was


def test_weighted_flow_loss_is_the_weighted_mean_of_the_squared_error():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    pred = torch.randn(2, 3, 2, 4, 4, generator=g)
    t = torch.tensor([0.3, 0.7])
    err = (pred - (noise - x0)) ** 2
    ones = torch.ones(2, 1, 2, 4, 4)
    plain = flow_loss(lambda xt, tt: pred, x0, t, noise)
    assert torch.allclose(flow_loss(lambda xt, tt: pred, x0, t, noise, loss_mask=ones), plain)
    w = ones.clone()
    w[:, :, :, 1:3, 1:3] = 4.0                                                     # "object" cells count 4x
    want = (err * w).flatten(1).sum(1) / w.expand_as(err).flatten(1).sum(1)
    got = flow_loss(lambda xt, tt: pred, x0, t, noise, loss_mask=w)
    assert torch.allclose(got, want) and not torch.allclose(got, plain)


def test_train_cli_object_weight_adds_maps_to_an_old_cache_and_checks_its_value(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    common = ["train", "--vae", str(tiny_model_dir / "vae.safetensors"), "--out", str(out), "--preset", "tiny",
              "--batch-size", "2", "--num-clips", "4", "--bucket", "5x32x32"]
    r = _cli(*common, "--steps", "1")
    assert r.returncode == 0, r.stderr
    cache = out / "latents.safetensors"
    with safe_open(str(cache), framework="pt") as f:                 # strip the maps: a cache from before them
        tensors, meta = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("objects.")}, f.metadata()
    save_file(tensors, str(cache), meta)
    r = _cli(*common, "--steps", "2", "--object-weight", "3")
    assert r.returncode == 0, r.stderr
    assert "no object maps" in r.stdout + r.stderr and cache_has_object_maps(cache)
    from cinegen.models.loading import load_checkpoint
    assert load_checkpoint(out / "dit.safetensors")["extra"]["train"]["object_weight"] == 3.0
    r = _cli(*common, "--steps", "3", "--object-weight", "-1")
    assert r.returncode == 2 and "--object-weight must be in [0, 100], got -1" in r.stderr
    assert "Traceback" not in r.stderr
