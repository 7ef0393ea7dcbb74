"""The toy world's object maps in the latent cache and its object-weight loss term (`terms.object_weight`), and
latent caches of the format before sources (they still load)."""

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from cinegen.config import VAEConfig
from cinegen.data.latent_cache import build_latent_cache, load_latent_cache
from cinegen.diffusion.flow import flow_loss, masked_mse
from cinegen.models.loading import load_vae
from cinegen.toyworld.losses import ObjectWeight, object_map
from cinegen.toyworld.source import ToyWorld, ToyWorldConfig
from cinegen.toyworld.world import WORLD_VERSION, ObjectSpec, SceneSpec, render_scene
from cinegen.training.train_dit import Batch
from tests.test_train import _cli, _tiny_dit

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
    world = ToyWorld(ToyWorldConfig(num_clips=4, buckets=((5, 32, 32), (5, 32, 48)), seed=1))
    vae = load_vae(tiny_model_dir / "vae.safetensors")
    return path, build_latent_cache(vae, text_encoder, world, path), world


def test_cache_keeps_the_sources_extras_captions_and_version(tiny_cache, caplog):
    path, cache, world = tiny_cache
    loaded = load_latent_cache(path, source=world)
    assert loaded.source == json.loads(json.dumps(world.table())) and loaded.source_version == WORLD_VERSION
    for key, b in loaded.buckets.items():
        assert b.extras["objects"].shape == (len(b.latents), 1, *b.latents.shape[2:])
        assert torch.equal(b.extras["objects"], cache.buckets[key].extras["objects"]) and b.extras["objects"].sum() > 0
        assert b.captions.shape == (len(b.latents), 3)                 # own caption, canonical, a paraphrase
    assert not loaded.missing(["objects"]) and loaded.missing(["tracks"]) == ["tracks"]
    assert "version" not in caplog.text


def _as_format_1(path, out, world_version=None, objects=True):
    """The same cache as caches were written before data sources: toy-world keys at the top, no `format`."""
    with safe_open(str(path), framework="pt") as f:
        meta, keys = dict(f.metadata()), list(f.keys())
        tensors = {k.replace("extras.", "") if objects else k: f.get_tensor(k) for k in keys
                   if objects or not k.startswith("extras.")}
    source = json.loads(meta.pop("source"))
    source.pop("source")
    meta.pop("format"), meta.pop("source_version")
    meta["data_config"] = json.dumps({**source, "bucket_weights": [1.0, 1.0]})
    if world_version:
        meta["world_version"] = world_version
    for grid in {k.split(".")[-1] for k in tensors if k.startswith("latents.")}:      # the DiT shape loss's keys
        n = tensors[f"latents.{grid}"].shape[0]
        tensors[f"tracks.{grid}"], tensors[f"shapes.{grid}"] = torch.zeros(n, 3, 5, 3), torch.zeros(n, 3).long()
    save_file(tensors, str(out), meta)


def test_a_cache_of_the_format_before_sources_loads_and_an_older_world_is_named(tiny_cache, tmp_path, caplog):
    path, cache, world = tiny_cache
    old = tmp_path / "old.safetensors"
    _as_format_1(path, old, WORLD_VERSION)
    loaded = load_latent_cache(old, source=world)
    assert loaded.source["source"] == "toyworld" and loaded.source["seed"] == 1
    for key, b in loaded.buckets.items():
        assert set(b.extras) == {"objects"} and torch.equal(b.extras["objects"], cache.buckets[key].extras["objects"])
        assert torch.equal(b.latents, cache.buckets[key].latents)
    assert "version" not in caplog.text
    older = tmp_path / "older.safetensors"               # before caches recorded their world (and the triangle fix)
    _as_format_1(path, older, objects=False)
    with caplog.at_level("WARNING"):
        loaded = load_latent_cache(older, source=world)
    assert "toyworld version before 2026-11-27" in caplog.text and str(older) in caplog.text
    assert loaded.missing(["objects"]) == ["objects"]
    (tmp_path / "junk.safetensors").write_bytes(b"")
    save_file({"x": torch.zeros(1)}, str(tmp_path / "other.safetensors"), {"kind": "vae"})
    with pytest.raises(ValueError, match="not a cinegen latent cache"):
        load_latent_cache(tmp_path / "other.safetensors")


def test_object_weight_term_makes_the_plain_loss_the_weighted_one():
    """The trainer's plain masked mean plus the term is exactly the object-weighted mean steps 9 to 12 trained
    with: each cell's error counts (1 + w * object) times, over the sample's total weight."""
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(2, 3, 2, 4, 4, generator=g), torch.randn(2, 3, 2, 4, 4, generator=g)
    pred = torch.randn(2, 3, 2, 4, 4, generator=g, requires_grad=True)
    target = noise - x0
    given = torch.zeros(2, 1, 2, 4, 4)
    given[0, :, 0] = 1                                                             # a conditioning frame
    objects = torch.zeros(2, 1, 2, 4, 4, dtype=torch.uint8)
    objects[:, :, :, 1:3, 1:3] = 1
    batch = Batch(x0, torch.zeros(2, 1, 8), torch.ones(2, 1, dtype=torch.bool), given, {"objects": objects})
    w = (1 - given) * (1 + 3.0 * objects.float())
    err = (pred - target) ** 2
    want = ((err * w).flatten(1).sum(1) / w.expand_as(err).flatten(1).sum(1)).mean()
    plain = masked_mse(pred, target, batch.loss_mask).mean()
    got = plain + ObjectWeight(3.0)(batch, pred, target, torch.tensor([0.3, 0.7]))
    assert torch.allclose(got, want) and not torch.allclose(plain, want)
    assert torch.allclose(flow_loss(lambda xt, tt: pred, x0, torch.rand(2), noise, given * 0 + 1),
                          masked_mse(pred, target))                                 # weight 1 everywhere: plain MSE


def test_train_cli_object_weight_is_checked_and_needs_the_maps(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    common = _tiny_dit(tiny_model_dir, out, "data.num_clips=4", "data.buckets=[[5,32,32]]")
    r = _cli(*common, "train.steps=1", "terms.object_weight=3", "train.log_every=1")
    assert r.returncode == 0, r.stderr
    assert "object_weight" in r.stderr
    from cinegen.models.loading import load_checkpoint
    assert load_checkpoint(out / "dit.safetensors")["extra"]["recipe"]["terms"]["object_weight"] == 3.0
    cache = out / "latents.safetensors"
    with safe_open(str(cache), framework="pt") as f:                 # strip the maps: a cache from before them
        tensors, meta = {k: f.get_tensor(k) for k in f.keys() if not k.startswith("extras.")}, f.metadata()
    save_file(tensors, str(cache), meta)
    r = _cli(*common, "train.steps=2", "terms.object_weight=3")
    assert r.returncode == 2 and "needs the latent cache extras ['objects']" in " ".join(r.stderr.split())
    r = _cli(*common, "train.steps=3", "terms.object_weight=-1")
    assert r.returncode == 2 and "terms.object_weight must be in [0, 100], got -1" in r.stderr
    r = _cli(*common, "train.steps=3", "terms.shape_weight=0.1")
    assert r.returncode == 2 and "belongs to a vae stage" in " ".join(r.stderr.split()) and "Traceback" not in r.stderr
