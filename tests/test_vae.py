import pytest
import torch

from cinegen.models.vae import VideoVAE


@pytest.fixture
def vae(tiny_vae_cfg):
    torch.manual_seed(0)
    return VideoVAE(tiny_vae_cfg).eval()


def test_shapes_video_and_image(vae):
    s, f, c = vae.cfg.spatial_factor, vae.cfg.temporal_factor, vae.cfg.latent_channels
    for t in (1, 1 + f, 1 + 4 * f):
        x = torch.rand(2, 3, t, 32, 48) * 2 - 1
        z = vae.encode(x)
        assert z.shape == (2, c, 1 + (t - 1) // f, 32 // s, 48 // s)
        assert vae.decode(z).shape == x.shape


def test_default_compression_is_4x_time_8x_space():
    from cinegen.config import VAE_PRESETS
    cfg = VAE_PRESETS["default"]
    assert (cfg.temporal_factor, cfg.spatial_factor) == (4, 8)


def test_causal_future_frames_do_not_change_past_latents(vae):
    x = torch.randn(1, 3, 17, 32, 32)
    x2 = x.clone()
    x2[:, :, 9:] = torch.randn_like(x2[:, :, 9:])        # frames 9.. belong to latent frames 3, 4
    z, z2 = vae.encode(x), vae.encode(x2)
    assert torch.equal(z[:, :, :3], z2[:, :, :3])
    assert not torch.allclose(z[:, :, 3:], z2[:, :, 3:])
    d, d2 = vae.decode(z), vae.decode(z2)
    assert torch.equal(d[:, :, :9], d2[:, :, :9])


@pytest.mark.parametrize("chunk", [4, 8])
def test_chunked_encode_equals_whole(vae, chunk):
    x = torch.randn(1, 3, 21, 32, 32)
    torch.testing.assert_close(vae.encode(x, chunk_frames=chunk), vae.encode(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("chunk", [1, 2])
def test_chunked_decode_equals_whole(vae, chunk):
    z = torch.randn(1, vae.cfg.latent_channels, 6, 8, 8)
    whole = vae.decode(z)
    torch.testing.assert_close(vae.decode(z, chunk_frames=chunk), whole, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(list(vae.decode_chunks(z, chunk)), dim=2), whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape, match", [((1, 3, 4, 32, 32), "1 \\+ 4k"), ((1, 3, 5, 30, 32), "multiples"),
                                          ((1, 1, 5, 32, 32), "video must be")])
def test_bad_inputs_raise_clear_errors(vae, shape, match):
    with pytest.raises(ValueError, match=match):
        vae.encode(torch.zeros(shape))


def test_latent_normalisation_round_trips(tiny_vae_cfg):
    import dataclasses
    c = tiny_vae_cfg.latent_channels
    cfg = dataclasses.replace(tiny_vae_cfg, latent_mean=tuple([0.5] * c), latent_std=tuple([2.0] * c))
    torch.manual_seed(0)
    a, b = VideoVAE(tiny_vae_cfg).eval(), VideoVAE(cfg).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 3, 5, 16, 16)
    torch.testing.assert_close(b.encode(x), (a.encode(x) - 0.5) / 2.0)
    torch.testing.assert_close(b.decode(b.encode(x)), a.decode(a.encode(x)), rtol=1e-4, atol=1e-5)


def test_edge_weights_single_out_edges_in_space_and_time():
    from cinegen.training.train_vae import edge_weights
    flat = torch.zeros(1, 3, 5, 16, 16)
    assert torch.equal(edge_weights(flat, 2.0), torch.ones(1, 1, 5, 16, 16))     # no edges: plain loss
    video = flat.clone()
    video[:, :, 2:, 4:8, 4:8] = 1.0                                              # a square appears at frame 2
    w = edge_weights(video, 2.0)
    assert w.shape == (1, 1, 5, 16, 16)
    assert w.mean().item() == pytest.approx(3.0)                                 # normalised: mean 1 + strength
    assert w[0, 0, 3, 3, 5] > 1 and w[0, 0, 3, 12, 12] == 1                      # square's border vs far background
    assert w[0, 0, 1, 5, 5] > 1                                                  # the frame before it appears (time edge)


def test_edge_weighted_loss_puts_more_weight_on_object_errors(tiny_vae_cfg):
    from cinegen.training.train_vae import vae_loss
    torch.manual_seed(0)
    vae = VideoVAE(tiny_vae_cfg)
    video = torch.zeros(2, 3, 5, 16, 16)
    video[:, 0, :, 4:8, 4:8] = 1.0
    torch.manual_seed(1)                                                         # same posterior sample twice
    plain, parts = vae_loss(vae, video, 0.0, 0.0)
    torch.manual_seed(1)
    weighted, parts_w = vae_loss(vae, video, 0.0, 4.0)
    assert parts["mse"] == pytest.approx(parts_w["mse"])                        # same reconstruction, same MSE
    assert weighted.item() != pytest.approx(plain.item())


def test_files_of_removed_experiments_load_when_the_experiment_was_off_and_are_named_when_on():
    """The shipped files' configs still carry fields of removed experiments (refine_channels, adv_weight,
    rope_step): loading drops them at their "off" value and refuses a file that had one switched on."""
    from cinegen.config import DiTConfig, VAEConfig, from_dict, to_dict
    old = {**to_dict(VAEConfig()), "refine_channels": 0, "adv_weight": 0.0}
    assert from_dict(VAEConfig, old) == VAEConfig()
    with pytest.raises(ValueError, match="refine_channels=32: a refinement stage .* b580f1d"):
        from_dict(VAEConfig, {**old, "refine_channels": 32})
    assert from_dict(DiTConfig, {**to_dict(DiTConfig()), "rope_step": [1.0, 1.0, 1.0]}) == DiTConfig()
    with pytest.raises(ValueError, match="re-patched"):
        from_dict(DiTConfig, {**to_dict(DiTConfig()), "rope_step": [1.0, 0.5, 0.5]})


def test_grown_decoder_starts_as_the_trained_one_and_keeps_the_encoder(tiny_vae_cfg):
    from cinegen.training.train_vae import with_decoder_blocks
    torch.manual_seed(0)
    vae = VideoVAE(tiny_vae_cfg).eval()
    for p in vae.decoder.parameters():                                           # as if trained: no zero weights
        torch.nn.init.normal_(p, std=0.05)
    grown = with_decoder_blocks(vae, 2).eval()
    assert len(grown.decoder.blocks) > len(vae.decoder.blocks) and len(grown.encoder.blocks) == len(vae.encoder.blocks)
    x = torch.rand(1, 3, 9, 16, 16) * 2 - 1
    assert torch.equal(grown.encode(x), vae.encode(x))
    torch.testing.assert_close(grown.decode(grown.encode(x)), vae.decode(vae.encode(x)), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="beyond 2"):
        with_decoder_blocks(grown, 2)
