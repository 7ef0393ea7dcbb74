"""tools/device_train.py runs only on a lent GPU, where a misspelt option costs device time: every command it
builds must name options the cinegen commands have and config fields that exist."""

import argparse
from pathlib import Path

import pytest
import typer

from cinegen import config as C
from cinegen.cli import app


@pytest.fixture(scope="module")
def script(load_script):
    return load_script("device_train")


def lease_args(**kw) -> argparse.Namespace:
    base = dict(clips=4000, vae_clips=1500, vae_seed=0, vae_batch=16, decoder_blocks=0, object_weight=3.0, 
                decoder_seconds=300.0, pair_clips=1000, batch=128, lr=3e-4, seed=3, vae_rate=0.05, dit_rate=0.3)
    return argparse.Namespace(**{**base, **kw})


def check_command(cmd: list[str]) -> None:
    """cmd = [python, -m, cinegen.cli, COMMAND, ...]: each --option exists on COMMAND, each --set key on its config."""
    group = typer.main.get_command(app)
    command = group.commands[cmd[3]]
    known = {opt for p in command.params if p.param_type_name == "option" for opt in p.opts}
    options = [a for a in cmd[4:] if a.startswith("--")]
    assert set(options) <= known, f"{cmd[3]}: unknown {sorted(set(options) - known)}"
    sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
    cfg = C.VAEConfig() if cmd[3] == "train-vae" else C.DiTConfig()
    C.override(cfg, sets)                                    # raises on a key the config lacks


def test_every_lease_command_names_real_options(script):
    args = lease_args()
    vae = Path("/tmp/vae/vae.safetensors")
    commands = [script.vae_cmd(lease_args(decoder_blocks=2), 200), script.vae_cmd(args, 200),
                script.dit_cmd(args, "low", vae, 100, 60), script.dit_cmd(args, "expert", vae, 0),
                script.pairs_cmd(args, Path("/tmp/m")), script.decoder_cmd(args, vae, 300)]
    for cmd in commands:
        check_command(cmd)


def test_decoder_stage_keeps_the_holdout_and_grows_the_decoder(script):
    cmd = script.decoder_cmd(lease_args(), Path("/tmp/vae.safetensors"), 300)
    pairs = script.pairs_cmd(lease_args(), Path("/tmp/m"))
    for c in (cmd, pairs):
        held = [c[i + 1] for i, a in enumerate(c) if a == "--holdout"]
        assert held == list(script.DEFAULT_HOLDOUT)
    assert "decoder_res_blocks=2" in cmd and cmd[cmd.index("--dit-latents") + 1] == pairs[pairs.index("--out") + 1]
    assert cmd[cmd.index("--steps") + 1] == "6000"           # 300 s at 50 ms per step
    vae = script.vae_cmd(lease_args(vae_batch=4, vae_seed=9), 200)
    assert vae[vae.index("--batch-size") + 1] == "4" and vae[vae.index("--steps") + 1] == "4000"
    assert vae[vae.index("--seed") + 1] == "9"
    assert "decoder_res_blocks=3" in script.decoder_cmd(lease_args(decoder_blocks=3), Path("/tmp/v"), 300)


def test_check_command_catches_a_misspelt_option():
    with pytest.raises(AssertionError, match="--dit-share-x"):
        check_command(["python", "-m", "cinegen.cli", "train-vae", "--dit-share-x", "0.5"])
    with pytest.raises(ValueError, match="decoder_blocks"):
        check_command(["python", "-m", "cinegen.cli", "train-vae", "--set", "decoder_blocks=2"])


def test_budget_scales_the_dit_stages_to_fit_the_lease(script):
    targets = [("low", 150.0), ("expert", 90.0)]
    assert script.fit_budget(targets, None) == targets                      # no budget: as asked
    assert script.fit_budget(targets, 10_000.0) == targets                  # room to spare: never stretched
    room = 200.0 - script.EXPORT_RESERVE - 2 * script.STAGE_OVERHEAD        # 120 s for 240 s asked: half each
    fitted = script.fit_budget(targets, 200.0)
    assert [t for t, _ in fitted] == ["low", "expert"]
    assert [s for _, s in fitted] == pytest.approx([150.0 * room / 240, 90.0 * room / 240])
    assert all(s == 5.0 for _, s in script.fit_budget(targets, 0.0))        # overrun: a token stage, still exported
