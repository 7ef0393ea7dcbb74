"""The DiT's shape loss (`cinegen train --shape-weight`): the decoder draws the first frame of the model's clean
estimate and a frozen reader names each object's shape there."""


import pytest
import torch

from cinegen.config import VAE_PRESETS, FlowConfig
from cinegen.data.latent_cache import object_tracks
from cinegen.data.world import ObjectSpec, SceneSpec, render_scene
from cinegen.diffusion.flow import interpolate
from cinegen.models.loading import load_checkpoint
from cinegen.models.shape_reader import ShapeReader
from cinegen.models.vae import VideoVAE
from cinegen.training.shape_loss import DiTShapeTerm, shape_loss
from tests.test_train import _cli


@pytest.fixture(scope="module")
def parts():
    """A tiny VAE and reader (random, frozen) and a batch of 3 latents of real clips with their tracks."""
    torch.manual_seed(0)
    vae = VideoVAE(VAE_PRESETS["tiny"]).eval().requires_grad_(False)
    reader = ShapeReader().eval().requires_grad_(False)
    scenes = [SceneSpec((ObjectSpec(c, s, "large", "stays still"),), "black")
              for c, s in (("red", "ball"), ("blue", "triangle"), ("green", "ring"))]
    clips = [render_scene(sc, 32, 32, 5, seed=i) for i, sc in enumerate(scenes)]
    from cinegen.io.video import video_to_tensor
    with torch.no_grad():
        x0 = vae.encode(torch.stack([video_to_tensor(c.video) for c in clips]))            # (3, C, 2, h, w)
    tracks, shapes = (torch.stack(x) for x in zip(*[object_tracks(c) for c in clips]))     # (3, K, 5, 3), (3, K)
    return vae, reader, x0, tracks, shapes


def test_the_term_reads_the_first_frame_of_the_clean_estimate(parts):
    """With the true velocity, x_t - t v is x0: the term is the reader's loss on x0's decoded first frame."""
    vae, reader, x0, tracks, shapes = parts
    noise, t = torch.randn_like(x0), torch.tensor([0.2, 0.4, 0.3])
    term = DiTShapeTerm(vae, reader, weight=0.5, t_max=0.5)
    got = term(interpolate(x0, noise, t), noise - x0, t, torch.zeros(3, dtype=torch.bool), tracks, shapes)
    want = shape_loss(reader, vae.decode(x0[:, :, :1]).clamp(-1, 1), tracks[:, :, :1], shapes)
    assert torch.allclose(got, 0.5 * want, atol=1e-5) and float(want) > 0


def test_the_term_leaves_out_noisy_and_conditioned_samples(parts):
    vae, reader, x0, tracks, shapes = parts
    noise = torch.randn_like(x0)
    term = DiTShapeTerm(vae, reader, weight=1.0, t_max=0.5)
    t = torch.tensor([0.2, 0.9, 0.3])                   # the second is above t_max
    given = torch.tensor([False, False, True])          # the third's first frame is given
    v = (noise - x0).requires_grad_(True)
    got = term(interpolate(x0, noise, t), v, t, given, tracks, shapes)
    want = shape_loss(reader, vae.decode(x0[:1, :, :1]).clamp(-1, 1), tracks[:1, :, :1], shapes[:1])
    assert torch.allclose(got, want, atol=1e-5)
    got.backward()
    assert v.grad[0, :, 0].abs().sum() > 0                                  # the first frame of the one sample used
    assert v.grad[1:].abs().sum() == 0 and v.grad[0, :, 1:].abs().sum() == 0
    none = term(interpolate(x0, noise, torch.full((3,), 0.9)), noise - x0, torch.full((3,), 0.9), given, tracks, shapes)
    assert float(none) == 0.0


def test_training_loss_adds_the_term_and_its_gradient_reaches_the_dit(parts, tiny_dit_cfg):
    from cinegen.data.latent_cache import LatentBucket, LatentCache
    from cinegen.models.dit import VideoDiT
    from cinegen.training.train_dit import training_loss
    vae, reader, x0, tracks, shapes = parts
    cfg = tiny_dit_cfg
    cache = LatentCache({(5, 32, 32): LatentBucket(x0, torch.ones(3, 1, dtype=torch.long))},
                        torch.randn(2, 4, cfg.text_dim), torch.tensor([1, 4]), ["", "caption"])
    torch.manual_seed(1)
    model = VideoDiT(cfg)
    for p in model.parameters():               # adaLN-Zero starts with a zero output: give the term a path to the input
        p.data += 0.02 * torch.randn_like(p)
    caps = torch.ones(3, dtype=torch.long)
    flow = FlowConfig(t_max=0.5)               # every sample within the term's range

    def grads(term):
        model.zero_grad()
        loss, _, _ = training_loss(model, cache, x0, caps, flow, 0.0, torch.Generator().manual_seed(0), None, term,
                                   tracks, shapes)
        loss.backward()
        return loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    plain_loss, plain = grads(None)
    zero_loss, zero = grads(DiTShapeTerm(vae, reader, weight=0.0, t_max=1.0))
    loss, with_term = grads(DiTShapeTerm(vae, reader, weight=1.0, t_max=1.0))
    assert torch.allclose(zero_loss, plain_loss) and torch.allclose(zero, plain)
    assert float(loss) > float(plain_loss) + 0.1 and not torch.allclose(with_term, plain)


def test_train_cli_shape_weight_trains_a_reader_once_and_checks_its_values(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    common = ["train", "--vae", str(tiny_model_dir / "vae.safetensors"), "--out", str(out), "--preset", "tiny",
              "--batch-size", "2", "--num-clips", "4", "--bucket", "5x32x32", "--shape-reader-steps", "3"]
    r = _cli(*common, "--steps", "2", "--shape-weight", "0.5", "--shape-t-max", "1.0", "--log-every", "1")
    assert r.returncode == 0, r.stderr
    assert "shape cross-entropy" in r.stdout + r.stderr
    reader = out / "shape_reader.safetensors"
    assert load_checkpoint(reader)["kind"] == "shape_reader"
    assert load_checkpoint(out / "dit.safetensors")["extra"]["train"]["shape_weight"] == 0.5
    before = reader.stat().st_mtime_ns
    r = _cli(*common, "--steps", "3", "--shape-weight", "0.5", "--shape-t-max", "1.0")     # resumes: same reader
    assert r.returncode == 0, r.stderr
    assert reader.stat().st_mtime_ns == before and load_checkpoint(out / "dit.safetensors")["step"] == 3
    for flag, value, message in (("--shape-weight", "-1", "--shape-weight must be in [0, 100], got -1.0"),
                                 ("--shape-t-max", "0", "--shape-t-max must be in (0, 1], got 0.0"),
                                 ("--shape-reader-steps", "0", "--shape-reader-steps must be >= 1, got 0")):
        r = _cli(*common, "--steps", "4", flag, value)
        assert r.returncode == 2 and message in r.stderr, r.stderr
