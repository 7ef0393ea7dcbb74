"""A decoder that learns the DiT's latents: the pairs are what SDEdit gives, the decoder trains on them, bad files are
refused with the reason."""

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from cinegen.config import SampleConfig, TrainConfig, VAELossConfig
from cinegen.io.video import video_to_tensor
from cinegen.models.loading import load_checkpoint, load_vae
from cinegen.toyworld.source import ToyWorld, ToyWorldConfig, ToyWorldTerms
from cinegen.training.dit_latents import LatentPairs, load_pairs, make_pairs, sample_pair_batch, save_pairs
from cinegen.training.recipe import VAEStage
from cinegen.training.train_vae import train_vae
from tests.test_train import _cli

DATA = ToyWorldConfig(num_clips=3, buckets=((5, 32, 32),), holdout=("purple triangle",), seed=3)


def render_pool(cfg: ToyWorldConfig, **kw):
    return ToyWorld(cfg).clips("train", **kw)


def test_generate_batch_takes_one_source_per_prompt(tiny_pipe):
    clips = render_pool(DATA, quiet=True)[:2]
    sources = torch.cat([tiny_pipe.encode_video(c.video) for c in clips])              # (2, C, t, h, w)
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=6, seed=4)
    both = tiny_pipe.generate_batch(["a red ball", "a blue box"], cfg, source=sources, strength=0.5, return_latents=True)
    for i, prompt in enumerate(["a red ball", "a blue box"]):
        alone = tiny_pipe.generate(prompt, dataclasses.replace(cfg, seed=4 + i), source=sources[i:i + 1], strength=0.5,
                                   return_latents=True)
        torch.testing.assert_close(both[i:i + 1], alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(both[0], both[1])
    with pytest.raises(ValueError, match="1 or 3 .* got 2"):
        tiny_pipe.generate_batch(["a", "b", "c"], cfg, source=sources, strength=0.5)


def test_make_pairs_keeps_each_clip_beside_its_own_sdedit(tiny_pipe, tmp_path):
    clips = render_pool(DATA, quiet=True)
    world = ToyWorld(DATA)
    pairs = make_pairs(tiny_pipe, clips, strengths=(0.3, 0.7), steps=6, batch=2, seed=10, quiet=True,
                       extras=world.pair_extras(clips))
    assert pairs.strength.tolist() == pytest.approx([0.3, 0.3, 0.7])
    assert torch.equal(pairs.videos[2], torch.from_numpy(clips[2].video))
    source = tiny_pipe.encode_video(clips[2].video)
    alone = tiny_pipe.generate(clips[2].caption, SampleConfig(seconds=0.5, width=32, height=32, steps=6, seed=12),
                               source=source, strength=0.7, return_latents=True)
    torch.testing.assert_close(pairs.latents[2:3], alone, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(pairs.latents[2:3], source)              # the DiT changed the encoder's latent
    assert pairs.meta["latent_mean"] == [0.0] * 4
    save_pairs(pairs, tmp_path / "p.safetensors")
    back = load_pairs(tmp_path / "p.safetensors", latent_channels=4)
    assert torch.equal(back.videos, pairs.videos) and torch.equal(back.latents, pairs.latents)
    assert back.meta == pairs.meta and torch.equal(back.extras["tracks"], pairs.extras["tracks"])
    latents, video, extras = sample_pair_batch(back, np.random.default_rng(0), 5)
    assert latents.shape == (5, *pairs.latents.shape[1:]) and video.shape == (5, 3, 5, 32, 32)
    assert extras["tracks"].shape == (5, 3, 5, 3) and extras["shapes"].shape == (5, 3)
    assert -1.0 <= float(video.min()) and float(video.max()) <= 1.0
    with pytest.raises(ValueError, match="4-channel latents, the decoder takes 16"):
        load_pairs(tmp_path / "p.safetensors", latent_channels=16)
    save_pairs(LatentPairs(pairs.videos[:0], pairs.latents[:0], pairs.strength[:0]), tmp_path / "e.safetensors")
    with pytest.raises(ValueError, match="holds no pairs"):
        load_pairs(tmp_path / "e.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a file of pairs")
    with pytest.raises(ValueError, match="not a DiT-latent pair file"):
        load_pairs(tmp_path / "junk.safetensors")
    with pytest.raises(ValueError, match=r"strengths must be in \(0, 1\)"):
        make_pairs(tiny_pipe, clips, strengths=(1.0,), quiet=True)
    wide = render_pool(dataclasses.replace(DATA, num_clips=1, buckets=((5, 32, 48),)), quiet=True)
    with pytest.raises(ValueError, match="one size"):
        make_pairs(tiny_pipe, clips + wide, strengths=(0.5,), quiet=True)


def test_decoder_learns_the_pairs_and_keeps_the_encoder(tiny_pipe, tiny_model_dir, tmp_path):
    clips = render_pool(dataclasses.replace(DATA, num_clips=4), quiet=True)
    pairs = make_pairs(tiny_pipe, clips, strengths=(0.6,), steps=4, quiet=True)
    save_pairs(pairs, tmp_path / "p.safetensors")
    vae_file = tiny_model_dir / "vae.safetensors"

    def pair_mse(vae):
        latents, video, _ = sample_pair_batch(pairs, np.random.default_rng(0), 4)
        with torch.no_grad():
            assert torch.equal(vae(video, latents)[0], vae.decode(latents))       # the training pass decodes them
            return float((vae.decode(latents) - video).pow(2).mean())

    train = TrainConfig(steps=40, batch_size=4, lr=3e-3, warmup=1, ema_decay=0.0, log_every=100, ckpt_every=100)
    stage = VAEStage(out=str(tmp_path / "dec"), init=str(vae_file), decoder_only=True,
                     dit_latents=str(tmp_path / "p.safetensors"), dit_share=1.0, crop=32, eval_clips=1)
    out = train_vae(stage, load_vae(vae_file).cfg, VAELossConfig(), train, ToyWorld(dataclasses.replace(DATA, num_clips=4)))
    before, after = load_vae(vae_file), load_vae(out)
    assert pair_mse(after) < 0.8 * pair_mse(before)
    b, a = load_checkpoint(vae_file)["model"], load_checkpoint(out)["model"]
    assert all(torch.equal(b[k], a[k]) for k in b if k.startswith("encoder."))


def test_dit_latents_cli_and_refusals(tiny_model_dir, tmp_path):
    pairs = tmp_path / "p.safetensors"
    r = _cli("dit-latents", "--model", str(tiny_model_dir), "--out", str(pairs), "data.num_clips=2",
             "data.buckets=[[5,32,32]]", "--steps", "4", "--strength", "0.5")
    assert r.returncode == 0, r.stderr
    assert len(load_pairs(pairs)) == 2 and load_pairs(pairs).meta["data"]["buckets"] == [[5, 32, 32]]
    assert load_pairs(pairs).extras["tracks"].shape == (2, 3, 5, 3)
    vae = str(tiny_model_dir / "vae.safetensors")
    common = ("train.steps=2", "train.batch_size=4", "data.num_clips=2", "data.buckets=[[5,32,32]]", "crop=32",
              "eval_clips=1")
    r = _cli("train-vae", f"out={tmp_path / 'dec'}", f"init={vae}", "decoder_only=true", f"dit_latents={pairs}", *common)
    assert r.returncode == 0, r.stderr
    r = _cli("train-vae", f"out={tmp_path / 'x'}", "model.preset=tiny", f"dit_latents={pairs}", *common)
    assert r.returncode == 2 and "dit_latents needs decoder_only" in r.stderr and "Traceback" not in r.stderr
    r = _cli("train-vae", f"out={tmp_path / 'x'}", f"init={vae}", "decoder_only=true",
             f"dit_latents={tmp_path / 'missing.safetensors'}", *common)
    assert r.returncode == 2 and "dit_latents file not found" in r.stderr
    # pairs made in another autoencoder's latent space (the trained file measured its own latent statistics)
    other = tmp_path / "other"
    assert _cli("train-vae", f"out={other}", "model.preset=tiny", *common).returncode == 0
    r = _cli("train-vae", f"out={tmp_path / 'y'}", f"init={other / 'vae.safetensors'}", "decoder_only=true",
             f"dit_latents={pairs}", *common)
    assert r.returncode == 2 and "another autoencoder's latent space" in r.stderr and "Traceback" not in r.stderr
    r = _cli("train-vae", f"out={tmp_path / 'x'}", f"init={vae}", "decoder_only=true", f"dit_latents={pairs}",
             "dit_share=0", *common)
    assert r.returncode == 2 and "dit_share must be in (0, 1], got 0.0" in r.stderr
    r = _cli("dit-latents", "--model", str(tiny_model_dir), "--out", str(tmp_path / "z.safetensors"), "data.num_clips=1",
             "data.buckets=[[5,32,32]]", "--strength", "1.5")
    assert r.returncode == 2 and "strengths must be in (0, 1)" in r.stderr
    r = _cli("dit-latents", "--model", str(tiny_model_dir), "--out", str(tmp_path / "z.safetensors"), "num_clips=1")
    assert r.returncode == 2 and "expected data.KEY=VALUE" in r.stderr
    r = _cli("dit-latents", "--model", str(tiny_model_dir), "--out", str(tmp_path / "z.safetensors"), "data.num_clips=1",
             "data.buckets=[[5,32,32]]", "--text-encoder", str(tmp_path / "no_encoder_here"))
    assert r.returncode == 2 and "no_encoder_here" in r.stderr and "Traceback" not in r.stderr


def test_object_crops_centre_on_each_object():
    """A crop is centred on its object: a filled ball's colour fills the crop's middle, whatever its size."""
    from cinegen.toyworld.shapes import CROP, clip_tracks, object_crops
    from cinegen.toyworld.world import COLOURS, ObjectSpec, SceneSpec, render_scene
    scene = SceneSpec(objects=(ObjectSpec("red", "ball", "large", "moves right"),
                               ObjectSpec("blue", "box", "small", "stays still")), background="black")
    clip = render_scene(scene, 64, 64, 5)
    tracks, shapes = clip_tracks([clip])
    assert shapes.tolist() == [[0, 1, -1]] and tracks.shape == (1, 3, 5, 3)
    crops = object_crops(video_to_tensor(clip.video)[None], tracks)                      # (1*5*3, 3, S, S)
    assert crops.shape == (15, 3, CROP, CROP)
    middle = ((crops[:, :, CROP // 2 - 1:CROP // 2 + 1, CROP // 2 - 1:CROP // 2 + 1].mean((2, 3)) + 1) * 127.5)
    for k, colour in ((0, "red"), (1, "blue")):
        assert torch.allclose(middle[k::3], torch.tensor(COLOURS[colour], dtype=torch.float32), atol=3)
    assert float(crops[:, :, 0, 0].abs().max()) <= 1.0            # corners: background (or zero padding)


def test_shape_reader_learns_rendered_shapes_and_the_loss_trains_a_decoder(tiny_pipe, tiny_model_dir, tmp_path):
    from cinegen.toyworld.shapes import train_shape_reader
    world = ToyWorld(ToyWorldConfig(num_clips=120, buckets=((5, 32, 32),), seed=2))
    samples = world.clips(quiet=True, workers=1)
    reader, accuracy = train_shape_reader([s.extras["clip"] for s in samples], steps=300, quiet=True)
    assert accuracy > 0.5                                          # four shapes: chance is about 0.25
    assert not any(p.requires_grad for p in reader.parameters())
    pairs = make_pairs(tiny_pipe, samples[:4], strengths=(0.5,), steps=4, quiet=True,
                       extras=world.pair_extras(samples[:4]))
    save_pairs(pairs, tmp_path / "p.safetensors")
    vae = str(tiny_model_dir / "vae.safetensors")
    args = (f"init={vae}", "decoder_only=true", f"dit_latents={tmp_path / 'p.safetensors'}", "dit_share=1",
            "terms.shape_weight=0.1", "terms.shape_reader_steps=20", "data.num_clips=12", "data.buckets=[[5,32,32]]",
            "crop=32", "eval_clips=1", "train.batch_size=4", "train.log_every=1")
    r = _cli("train-vae", f"out={tmp_path / 'dec'}", "train.steps=2", *args)
    assert r.returncode == 0, r.stderr
    assert "shape reader:" in r.stderr and " shape " in r.stderr and (tmp_path / "dec" / "shape_reader.safetensors").exists()
    r = _cli("train-vae", f"out={tmp_path / 'dec'}", "train.steps=3", *args)     # resumes with the same reader
    assert r.returncode == 0 and "resumed" in r.stderr and "shape reader:" not in r.stderr
    r = _cli("train-vae", f"out={tmp_path / 'x'}", f"init={vae}", "decoder_only=true", "terms.shape_weight=0.1",
             "train.steps=1", "data.num_clips=2", "data.buckets=[[5,32,32]]", "crop=32")
    assert r.returncode == 2 and "shape_weight needs dit_latents" in r.stderr and "Traceback" not in r.stderr


def _reader_worker(rank, world, init_file, out_dir):
    import types

    from safetensors.torch import save_file

    from cinegen.data.sources import TermContext
    from cinegen.toyworld.losses import shape_term
    from cinegen.training.common import DistInfo
    from tests import gloo
    gloo.join(rank, world, init_file)
    torch.manual_seed(rank)                    # each rank starts from other weights, as torchrun ranks would
    pool = ToyWorld(ToyWorldConfig(num_clips=12, buckets=((5, 32, 32),), seed=2)).clips(shard=rank, quiet=True,
                                                                                        workers=1)
    pairs = types.SimpleNamespace(extras={"tracks": torch.zeros(1)}, videos=torch.zeros(1, 5, 32, 32, 3))
    ctx = TermContext(Path(out_dir), torch.device("cpu"), DistInfo(rank, world), pool, pairs)
    term = shape_term(ToyWorldTerms(shape_weight=0.1, shape_reader_steps=5), ctx)
    save_file(term.reader.state_dict(), f"{out_dir}/rank{rank}.safetensors")
    gloo.leave()


def test_torchrun_ranks_share_one_shape_reader(tmp_path):
    """Rank 0 trains the reader and every rank takes its weights, so the shape loss is the same network everywhere
    (before, each rank trained its own on its own clips, and the loss averaged two readers)."""
    import torch.multiprocessing as mp
    from safetensors.torch import load_file
    mp.spawn(_reader_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    saved = load_checkpoint(tmp_path / "shape_reader.safetensors")["model"]
    ranks = [load_file(tmp_path / f"rank{r}.safetensors") for r in range(2)]
    assert saved.keys() == ranks[0].keys() == ranks[1].keys()
    for name, weight in saved.items():
        assert torch.equal(ranks[0][name], weight) and torch.equal(ranks[1][name], weight), name


def test_logged_means_average_each_kind_of_step_apart():
    import warnings

    from cinegen.training.train_vae import LoggedMeans
    means = LoggedMeans()
    means.add("round trips", torch.tensor(1.0), {"mse": 0.1, "kl": 2.0, "recon": torch.zeros(3)})
    with warnings.catch_warnings():      # a part that still holds its graph is read without torch's warning
        warnings.simplefilter("error")
        means.add("DiT latents", torch.tensor(4.0), {"mse": 0.4, "kl": 0.0, "shape": torch.tensor(1.5, requires_grad=True)})
    means.add("round trips", torch.tensor(3.0), {"mse": 0.3, "kl": 4.0, "recon": torch.zeros(3)})
    line = means.report()
    assert line == ("round trips (2 steps): loss 2.0000 mse 0.20000 kl 3.0000 | "
                    "DiT latents (1 steps): loss 4.0000 mse 0.40000 kl 0.0000 shape 1.5000")
    means.add("round trips", torch.tensor(5.0), {"mse": 0.5, "kl": 1.0})
    assert means.report() == "round trips (1 steps): loss 5.0000 mse 0.50000 kl 1.0000"     # reset after each line
