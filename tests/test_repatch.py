"""A trained DiT re-patched to a finer patch (`cinegen train --init ... --set patch=[1,1,1]`), and a high-noise
expert whose patch differs from its low-noise partner's."""

import dataclasses

import numpy as np
import pytest
import torch
from einops import rearrange

from cinegen.models.dit import VideoDiT
from cinegen.models.layers import rope_3d
from cinegen.models.loading import load_checkpoint
from cinegen.training.train_dit import grow_from, repatch_config
from tests.conftest import perturb
from tests.test_train import _cli


def test_a_rope_step_of_a_half_puts_every_other_token_where_the_coarse_grid_had_its_tokens():
    coarse = rope_3d((2, 3, 3), 48, 10000.0)
    fine = rope_3d((2, 6, 6), 48, 10000.0, step=(1.0, 0.5, 0.5))
    for c_tab, f_tab in zip(coarse, fine):
        f_even = rearrange(f_tab, "(t h w) d -> t h w d", t=2, h=6, w=6)[:, ::2, ::2]           # (2, 3, 3, hd/2)
        assert torch.allclose(rearrange(c_tab, "(t h w) d -> t h w d", t=2, h=3, w=3), f_even)
    assert not torch.allclose(fine[0], rope_3d((2, 6, 6), 48, 10000.0)[0])


def test_repatch_embeds_a_constant_block_as_the_old_patch_did_and_outputs_the_old_mean(tiny_dit_cfg):
    torch.manual_seed(0)
    old = perturb(VideoDiT(tiny_dit_cfg)).eval()                                   # patch (1, 2, 2)
    cfg = repatch_config(dataclasses.replace(tiny_dit_cfg, patch=(1, 1, 1)), old.cfg)
    assert cfg.rope_step == (1.0, 0.5, 0.5)
    new = grow_from(VideoDiT(cfg), old).eval()
    cells = torch.randn(3, old.cfg.in_channels)                                    # one cell's input per token
    block = cells[:, None, :].expand(-1, 4, -1).reshape(3, -1)                     # (3, 2*2*Cin), (ph pw c) order
    assert torch.allclose(new.x_embed(cells), old.x_embed(block), atol=1e-5)
    h = torch.randn(5, cfg.width)
    old_out = rearrange(old.final.linear(h), "n (s c) -> n s c", s=4)              # (5, 4 sub-blocks, C)
    assert torch.allclose(new.final.linear(h), old_out.mean(1), atol=1e-5)
    assert torch.equal(new.blocks[1].mlp[0].weight, old.blocks[1].mlp[0].weight)  # the transformer is kept


def test_repatch_refuses_a_patch_that_does_not_divide_the_old_one(tiny_dit_cfg):
    old = VideoDiT(dataclasses.replace(tiny_dit_cfg, patch=(1, 2, 2)))
    with pytest.raises(ValueError, match=r"patch \(1, 3, 3\) does not divide"):
        repatch_config(dataclasses.replace(tiny_dit_cfg, patch=(1, 3, 3)), old.cfg)
    with pytest.raises(ValueError, match="needs rope_step"):                       # a finer patch, positions unscaled
        grow_from(VideoDiT(dataclasses.replace(tiny_dit_cfg, patch=(1, 1, 1))), old)


def test_an_expert_with_another_patch_takes_its_steps_and_a_foreign_one_is_refused(tiny_pipe, tiny_dit_cfg):
    from cinegen.config import SampleConfig
    from cinegen.pipeline import TextToVideo
    p = tiny_pipe
    cfg = SampleConfig(seconds=0.5, width=32, height=32, steps=4, seed=3)
    fine = grow_from(VideoDiT(repatch_config(dataclasses.replace(p.dit.cfg, patch=(1, 1, 1)), p.dit.cfg)), p.dit)
    paired = TextToVideo(fine, p.vae, p.text_encoder, p.flow, high_noise=(p.dit, 0.5)).generate("a red ball", cfg)
    alone = TextToVideo(fine, p.vae, p.text_encoder, p.flow).generate("a red ball", cfg)
    assert paired.shape == alone.shape and not np.array_equal(paired, alone)
    with pytest.raises(ValueError, match="same latents, conditioning and prompt tokens"):
        TextToVideo(p.dit, p.vae, p.text_encoder, p.flow,
                    high_noise=(VideoDiT(dataclasses.replace(tiny_dit_cfg, latent_channels=8)), 0.9))


def test_train_cli_repatches_an_init_model_and_exports_it_beside_a_coarse_expert(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    r = _cli("train", "--vae", str(tiny_model_dir / "vae.safetensors"), "--out", str(out), "--preset", "tiny",
             "--batch-size", "2", "--num-clips", "2", "--steps", "1", "--bucket", "5x32x32",
             "--init", str(tiny_model_dir / "dit.safetensors"), "--set", "patch=[1,1,1]", "--flow", "t_max=0.8")
    assert r.returncode == 0, r.stderr
    assert "RoPE step (1.0, 0.5, 0.5)" in " ".join((r.stdout + r.stderr).split())     # rich wraps lines
    config = load_checkpoint(out / "dit.safetensors")["config"]
    assert config["patch"] == [1, 1, 1] and config["rope_step"] == [1.0, 0.5, 0.5]
    expert = tmp_path / "expert"                          # the init DiT, re-labelled as a t >= 0.8 expert
    r = _cli("train", "--vae", str(tiny_model_dir / "vae.safetensors"), "--out", str(expert), "--preset", "tiny",
             "--batch-size", "2", "--num-clips", "2", "--steps", "1", "--bucket", "5x32x32",
             "--init", str(tiny_model_dir / "dit.safetensors"), "--flow", "t_min=0.8")
    assert r.returncode == 0, r.stderr
    r = _cli("export", "--vae", str(tiny_model_dir / "vae.safetensors"), "--dit", str(out / "dit.safetensors"),
             "--dit-high", str(expert / "dit.safetensors"), "--out", str(tmp_path / "model"))
    assert r.returncode == 0, r.stderr
    r = _cli("generate", "a red ball", "--model", str(tmp_path / "model"), "--seconds", "0.5", "--size", "32x32",
             "--steps", "3", "-o", str(tmp_path / "v.mp4"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "v.mp4").stat().st_size > 0
