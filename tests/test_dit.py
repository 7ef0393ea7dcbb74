import pytest
import torch
from einops import rearrange

from cinegen.models.dit import VideoDiT
from cinegen.models.layers import apply_rope, rope_3d
from tests.conftest import perturb


@pytest.fixture
def dit(tiny_dit_cfg):
    torch.manual_seed(0)
    return perturb(VideoDiT(tiny_dit_cfg)).eval()


def _text(b, s=5, d=384):
    mask = torch.ones(b, s, dtype=torch.bool)
    mask[0, 3:] = False
    return torch.randn(b, s, d), mask


@pytest.mark.parametrize("grid", [(1, 4, 4), (3, 4, 6), (5, 8, 8), (2, 6, 2)])
def test_any_token_grid(dit, grid):
    x = torch.randn(2, dit.cfg.latent_channels, *grid)
    text, mask = _text(2)
    v = dit(x, torch.rand(2), text, mask)
    assert v.shape == x.shape and torch.isfinite(v).all()


def test_zero_init_outputs_zero_velocity(tiny_dit_cfg):
    dit = VideoDiT(tiny_dit_cfg)
    x = torch.randn(1, tiny_dit_cfg.latent_channels, 3, 4, 4)
    text, mask = _text(1)
    assert torch.count_nonzero(dit(x, torch.rand(1), text, mask)) == 0


def test_patchify_round_trip():
    x = torch.randn(2, 4, 6, 8, 10)
    tokens = rearrange(x, "b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)", pt=2, ph=2, pw=2)
    back = rearrange(tokens, "b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)", t=3, h=4, w=5, pt=2, ph=2, pw=2)
    assert torch.equal(back, x)


def test_text_and_time_change_the_output(dit):
    x = torch.randn(1, dit.cfg.latent_channels, 3, 4, 4)
    text, mask = _text(1)
    base = dit(x, torch.tensor([0.5]), text, mask)
    assert not torch.allclose(base, dit(x, torch.tensor([0.9]), text, mask))
    assert not torch.allclose(base, dit(x, torch.tensor([0.5]), torch.randn_like(text), mask))


def test_masked_text_tokens_are_ignored(dit):
    x = torch.randn(1, dit.cfg.latent_channels, 1, 4, 4)
    text, mask = _text(1)
    text2 = text.clone()
    text2[0, 3:] = 100.0                                   # padding tokens: must not matter
    torch.testing.assert_close(dit(x, torch.tensor([0.3]), text, mask), dit(x, torch.tensor([0.3]), text2, mask))


def test_conditioning_channels_change_the_output(dit):
    c = dit.cfg.latent_channels
    x = torch.randn(1, c, 3, 4, 4)
    text, mask = _text(1)
    cond = torch.zeros(1, c + 1, 3, 4, 4)
    cond[:, 0, 0] = 1.0
    cond[:, 1:, 0] = torch.randn(c, 4, 4)
    assert not torch.allclose(dit(x, torch.tensor([0.5]), text, mask), dit(x, torch.tensor([0.5]), text, mask, cond))


def test_bad_latents_raise(dit):
    text, mask = _text(1)
    with pytest.raises(ValueError, match="not divisible"):
        dit(torch.randn(1, dit.cfg.latent_channels, 3, 5, 4), torch.rand(1), text, mask)
    with pytest.raises(ValueError, match="latents must be"):
        dit(torch.randn(1, 3, 3, 4, 4), torch.rand(1), text, mask)


def test_rope_is_relative():
    """RoPE dot products depend only on position differences: shifting the whole grid changes nothing."""
    q, k = torch.randn(1, 1, 24, 12), torch.randn(1, 1, 24, 12)
    cos, sin = rope_3d((2, 3, 4), 12, 10000.0)
    cos2, sin2 = rope_3d((2, 3, 4), 12, 10000.0, offset=(5, 7, 3))
    a = apply_rope(q, cos, sin) @ apply_rope(k, cos, sin).transpose(-1, -2)
    b = apply_rope(q, cos2, sin2) @ apply_rope(k, cos2, sin2).transpose(-1, -2)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)
