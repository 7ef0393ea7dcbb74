"""tools/device_train.py runs only on a lent GPU, where a misspelt key costs device time: every command it plans
must parse as the cinegen command it calls (a recipe's keys, checked against the configs; the options it names)."""

import argparse
from pathlib import Path

import pytest
import typer

from cinegen.cli import app
from cinegen.training.recipe import load_data, load_recipe

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("device_train")


def lease_args(**kw) -> argparse.Namespace:
    base = dict(clips=4000, vae_clips=1500, vae_seed=0, vae_batch=16, decoder_blocks=0, object_weight=3.0,
                decoder_seconds=300.0, pair_clips=1000, batch=128, lr=3e-4, seed=3, vae_rate=0.05, dit_rate=0.3)
    return argparse.Namespace(**{**base, **kw})


def check_command(cmd: list[str]):
    """cmd = [python, -m, cinegen.cli, COMMAND, ...]: its options exist and its KEY=VALUE arguments parse."""
    command = typer.main.get_command(app).commands[cmd[3]]
    known = {opt for p in command.params if p.param_type_name == "option" for opt in p.opts}
    args, keys, skip = cmd[4:], [], False
    for a in args:
        if skip:
            skip = False
        elif a.startswith("--"):
            assert a in known, f"{cmd[3]}: unknown {a}"
            skip = not any(p.is_flag for p in command.params if a in getattr(p, "opts", ()))
        else:
            keys.append(a)
    if cmd[3] == "dit-latents":
        return load_data(keys)
    config = ROOT / args[args.index("--config") + 1] if "--config" in args else None   # the tool runs from the root
    return load_recipe(config, keys)


def test_every_lease_command_parses_and_keeps_the_recipe(script):
    args = lease_args()
    vae = Path("/tmp/vae/vae.safetensors")
    low = check_command(script.dit_cmd(lease_args(object_weight=1.5), "low", vae, 100, 60))
    assert low.terms.object_weight == 1.5 and low.flow.t_max == 0.8 and low.train.max_minutes == 1.0
    assert check_command(script.dit_cmd(lease_args(object_weight=None), "low", vae, 100)).terms.object_weight == 3.0
    assert low.stage.init.endswith("dit.safetensors") and low.text.name == "/tmp/minilm_toy" and low.train.steps == 100
    expert = check_command(script.dit_cmd(args, "expert", vae, 0))
    assert expert.terms.object_weight == 0.0 and expert.flow.t_min == 0.8 and expert.train.steps == 0
    assert low.source.cfg.holdout == script.DEFAULT_HOLDOUT and low.source.cfg.buckets[-1] == (17, 64, 96)
    whole = check_command(script.vae_cmd(lease_args(vae_batch=4, vae_seed=9), 200))
    assert whole.train.batch_size == 4 and whole.train.steps == 4000 and whole.source.cfg.seed == 9
    assert not whole.stage.decoder_only and whole.source.cfg.holdout == ()    # a pixel codec sees every combination
    grown = check_command(script.vae_cmd(lease_args(decoder_blocks=3), 200))
    assert grown.stage.decoder_only and grown.model.decoder_res_blocks == 3 and grown.train.batch_size == 16
    pairs = check_command(script.pairs_cmd(args, Path("/tmp/m")))
    decoder = check_command(script.decoder_cmd(args, vae, 300))
    assert pairs.cfg.holdout == decoder.source.cfg.holdout == script.DEFAULT_HOLDOUT
    assert decoder.stage.dit_latents == script.PAIRS and decoder.terms.shape_weight == 0.1
    assert decoder.train.steps == 6000                                    # 300 s at 50 ms per step
    with pytest.raises(ValueError, match="train.stepz"):
        check_command(script.train("01-vae.toml", "train.stepz=2"))


def test_budget_scales_the_dit_stages_to_fit_the_lease(script):
    targets = [("low", 150.0), ("expert", 90.0)]
    assert script.fit_budget(targets, None) == targets                      # no budget: as asked
    assert script.fit_budget(targets, 10_000.0) == targets                  # room to spare: never stretched
    room = 200.0 - script.EXPORT_RESERVE - 2 * script.STAGE_OVERHEAD        # 120 s for 240 s asked: half each
    fitted = script.fit_budget(targets, 200.0)
    assert [t for t, _ in fitted] == ["low", "expert"]
    assert [s for _, s in fitted] == pytest.approx([150.0 * room / 240, 90.0 * room / 240])
    assert all(s == 5.0 for _, s in script.fit_budget(targets, 0.0))        # overrun: a token stage, still exported
