"""The one geometry object: frames <-> latent frames <-> seconds, size multiples and token grids, derived from the
model's VAE and patch (no literal strides)."""

import pytest

from cinegen.config import DIT_PRESETS, VAE_PRESETS, DiTConfig, VAEConfig
from cinegen.geometry import Geometry, read_geometry


@pytest.fixture
def shipped():
    return Geometry.of(VAEConfig(), DIT_PRESETS["shipped"])


def test_the_shipped_models_rules(shipped):
    assert (shipped.frame_stride, shipped.cell, shipped.patch) == (4, 8, (1, 2, 2))
    assert shipped.frames(2.0, 8.0) == 17 and shipped.frames(0.0, 8.0) == 1
    assert shipped.latent_frames(17) == 5 and shipped.frames_of(5) == 17
    assert shipped.latent_index(0) == 0 and shipped.latent_index(1) == 1 and shipped.latent_index(4) == 1
    assert shipped.latent_index(5) == 2
    assert shipped.on_grid(20) == 17 and shipped.on_grid(17) == 17
    assert shipped.seconds_of(5, 8.0) == 2.0 and shipped.frames(shipped.seconds_of(7, 8.0), 8.0) == shipped.frames_of(7)
    assert shipped.latent_grid(17, 64, 96) == (5, 8, 12)
    assert shipped.token_grid(17, 64, 96) == (5, 4, 6) and shipped.tokens(17, 64, 96) == 120


def test_every_rule_follows_the_vae_and_the_patch():
    """A VAE with 2x time and 16x space, a (2, 1, 1) patch: nothing may still assume 4, 8 or 16."""
    vae = VAEConfig(patch=4, spatial_down=2, temporal_down=1, channels=(8, 8, 8))
    geo = Geometry.of(vae, DiTConfig(patch=(2, 1, 1)))
    assert (geo.frame_stride, geo.cell) == (2, 16)
    assert geo.frames(2.0, 8.0) == 17 and geo.latent_frames(17) == 9 and geo.frames_of(9) == 17
    assert geo.width_multiple == geo.height_multiple == 16
    geo.check_size(48, 16)
    assert geo.token_grid(17, 32, 48) == (4, 2, 3)


@pytest.mark.parametrize("width, height, bad", [(30, 32, "width"), (32, 0, "height"), (32.0, 32, "width"),
                                                (True, 32, "width")])
def test_bad_sizes_name_the_side_and_the_multiple(shipped, width, height, bad):
    with pytest.raises(ValueError, match=f"{bad} must be a positive multiple of 16"):
        shipped.check_size(width, height)


def test_frames_round_to_the_nearest_grid_point(shipped):
    assert [shipped.frames(s, 8.0) for s in (0.2, 0.3, 1.0, 1.24, 1.26)] == [1, 5, 9, 9, 13]
    assert shipped.new_latents(0.0, 8.0) == 1 and shipped.new_latents(2.0, 8.0) == 4


def test_read_geometry_from_file_metadata_alone(tiny_model_dir):
    geo = read_geometry(tiny_model_dir)
    assert geo == Geometry.of(VAE_PRESETS["tiny"], DIT_PRESETS["tiny"])
