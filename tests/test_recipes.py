"""Recipes as files (configs/): every shipped stage parses and validates, the smoke recipe trains end to end, an
override changes a value, and a bad key or value stops the run with exit 2, naming it."""

from pathlib import Path

import pytest

from cinegen.models.loading import load_checkpoint
from cinegen.toyworld.world import DEFAULT_HOLDOUT
from cinegen.training.recipe import load_recipe
from tests.test_train import _cli

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SHIPPED = sorted((CONFIGS / "cinegen-default").glob("*.toml"))


def test_every_shipped_stage_parses_and_validates():
    assert [p.name for p in SHIPPED] == ["01-vae.toml", "02-dit-low.toml", "03-dit-expert.toml", "04-decoder.toml",
                                         "05-decoder-cpu.toml", "06-distill.toml", "07-decoder-hard.toml",
                                         "08-distill-rank32.toml"]
    vae, low, expert, decoder, cpu, distill, hard, rank32 = (load_recipe(p) for p in SHIPPED)
    assert [r.kind for r in (vae, low, expert, decoder, cpu, distill)] == ["vae", "dit", "dit", "vae", "vae", "distill"]
    assert distill.stage.steps == (4, 2, 1) and distill.model is None and distill.source.cfg.holdout == DEFAULT_HOLDOUT
    assert vae.source.cfg.holdout == () and vae.source.cfg.seed == 9 and vae.train.batch_size == 4
    for dit in (low, expert):           # both DiTs: step 12's data, the shipped model's size and noise schedule
        assert dit.source.cfg.holdout == DEFAULT_HOLDOUT and dit.source.cfg.twins and dit.source.cfg.seed == 4
        assert dit.model.depth == 12 and (dit.flow.base_shift, dit.flow.base_tokens) == (3.0, 80)
        assert dit.stage.vae == str(Path(vae.stage.out) / "vae.safetensors") and dit.train.batch_size == 128
    assert low.flow.t_max == 0.8 == expert.flow.t_min and low.terms.object_weight == 3.0
    assert expert.terms.object_weight == 0.0
    assert decoder.stage.decoder_only and decoder.model.decoder_res_blocks == 2
    assert decoder.stage.init == str(Path(vae.stage.out) / "vae.safetensors")
    assert cpu.stage.init == str(Path(decoder.stage.out) / "vae.safetensors") and cpu.train.lr == 1e-4
    # the hard-set decoder: the shipped file's decoder alone, on clips like the hard set's, in non-square windows
    assert hard.stage.decoder_only and hard.stage.init == "src/cinegen/weights/vae.safetensors"
    assert hard.stage.crop_sizes == ((64, 64), (96, 64), (64, 96)) and (128, 128) in [b[1:] for b in hard.source.cfg.buckets]
    assert hard.source.cfg.odds.objects == (0.4, 0.35, 0.25) and len(hard.source.cfg.odds.shapes) == 4
    # the larger adapter: the same stage at 8x the pairs and rank 32, on the same captions' source
    assert (rank32.kind, rank32.stage.rank, rank32.stage.pairs) == ("distill", 32, 384)
    assert rank32.source.cfg.num_clips >= rank32.stage.pairs and rank32.source.cfg.holdout == DEFAULT_HOLDOUT


def test_crops_draw_non_square_windows_and_one_too_large_is_named(tmp_path):
    """A vae stage's crops: (height, width) windows, one size per batch, each from the clips large enough to hold
    it; a crop no clip holds stops the run (exit 2) before any step."""
    import numpy as np

    from cinegen.toyworld.source import ToyWorldConfig, render_pool
    from cinegen.training.train_vae import sample_windows
    pool = render_pool(ToyWorldConfig(num_clips=4, buckets=((5, 32, 32), (5, 48, 32))), 4, quiet=True, workers=1)
    batch = sample_windows(pool, np.random.default_rng(0), 3, 5, (48, 16))
    assert batch.shape == (3, 3, 5, 48, 16)                     # only the 48-high clips hold a 48-high window
    assert sample_windows(pool, np.random.default_rng(0), 2, 5, 32).shape == (2, 3, 5, 32, 32)
    with pytest.raises(ValueError, match=r"crops must be \[height, width\] pairs of at least 8 pixels, got \[4, 32\]"):
        load_recipe(CONFIGS / "smoke" / "vae.toml", ["crops=[[4,32]]"])
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "vae.toml"), f"out={tmp_path / 'v'}",
             "crops=[[32,32],[16,32]]")
    assert r.returncode == 0, r.stderr
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "vae.toml"), f"out={tmp_path / 'x'}", "crops=[[64,32]]")
    assert r.returncode == 2 and "crop 64x32 (height x width) is larger than every training clip" in r.stderr
    assert "Traceback" not in r.stderr


def test_overrides_are_typed_and_bad_ones_are_named(tmp_path):
    smoke = CONFIGS / "smoke" / "vae.toml"
    r = load_recipe(smoke, ["train.steps=7", "data.buckets=[[9,32,32]]", "out=2026", "model.latent_channels=8"])
    assert r.train.steps == 7 and r.source.cfg.buckets == ((9, 32, 32),) and r.stage.out == "2026"
    assert r.model.latent_channels == 8 and r.model.channels == (8, 16, 16)        # the tiny preset, then the key
    for bad, message in (("train.stepz=2", "unknown key train.stepz"), ("train.steps=two", "train.steps"),
                         ("flow.t_min=0.5", r"unknown section \[flow\]"), ("model.preset=huge", "huge"),
                         ("data.source=folderz", "folderz"), ("steps=2", "unknown key steps")):
        with pytest.raises(ValueError, match=message):
            load_recipe(smoke, [bad])
    with pytest.raises(ValueError, match="is a dit stage"):
        load_recipe(SHIPPED[1], [], kind="vae")
    with pytest.raises(ValueError, match="name the stage's kind"):
        load_recipe(None, ["train.steps=2"])
    with pytest.raises(FileNotFoundError, match="recipe not found"):
        load_recipe(tmp_path / "missing.toml")
    (tmp_path / "broken.toml").write_text("kind = vae\n")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_recipe(tmp_path / "broken.toml")


def test_the_smoke_recipe_trains_end_to_end_and_a_bad_key_is_exit_2(tmp_path):
    vae, dit = tmp_path / "vae", tmp_path / "dit"
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "vae.toml"), f"out={vae}")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(vae / "vae.safetensors")["step"] == 2
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "dit.toml"), f"out={dit}", f"vae={vae / 'vae.safetensors'}",
             "train.steps=3")
    assert r.returncode == 0, r.stderr
    ck = load_checkpoint(dit / "dit.safetensors")
    assert ck["step"] == 3 and ck["extra"]["recipe"]["terms"]["object_weight"] == 3.0
    assert ck["extra"]["holdout"] == ["purple triangle"] and ck["extra"]["flow"]["base_shift"] == 3.0
    r = _cli("train", "--config", str(CONFIGS / "smoke" / "dit.toml"), f"out={tmp_path / 'x'}", "train.stepz=2")
    assert r.returncode == 2 and "train.stepz" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()                                  # refused before any work
