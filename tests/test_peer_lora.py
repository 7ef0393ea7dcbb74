"""LoRA fine-tuning of open weights (training/peer_lora.py) on tiny randomly initialised Wan2.1 and LTX-Video
pipelines built offline: the loss on the footage goes down, the adapter loads through diffusers'
load_lora_weights and changes what the pipeline renders, and a run resumes."""

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from cinegen.cli import app

pytest.importorskip("diffusers")
pytest.importorskip("peft")
SMALL = ("train.batch_size=2", "train.warmup=1", "train.log_every=5", "train.text_dropout=0", "data.buckets=[[9,32,32]]")


def cli(*args):
    return CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "300"})


@pytest.fixture(scope="module", params=["wan", pytest.param("ltx", marks=pytest.mark.slow)])   # ltx: ~2 min
def trained(request, footage, tmp_path_factory):
    """(pipeline folder, run folder) after 30 steps of a rank-4 adapter."""
    folder = request.getfixturevalue(f"tiny_{request.param}_dir")
    out = tmp_path_factory.mktemp(f"{request.param}_lora")
    r = cli("train", "--data", footage, "--model", folder, "--lora-rank", "4", f"out={out}", *SMALL,
            "train.steps=30", "train.lr=1e-2", "train.ckpt_every=15")
    assert r.exit_code == 0, r.output
    return folder, out


def _loss(pipe, family, encoded, seeds=range(6)):
    from cinegen.training.peer_lora import peer_batch, peer_loss
    empty = family.embed(pipe, [""])
    with torch.no_grad():
        return np.mean([float(peer_loss(pipe, family, *peer_batch(encoded, np.random.default_rng(s), 2, 0.0, empty),
                                        8.0, torch.Generator().manual_seed(s))) for s in seeds])


def test_the_adapter_lowers_the_loss_and_changes_the_output(trained, footage):
    from cinegen.data.folder import FolderConfig, FolderSource
    from cinegen.training.peer_lora import ADAPTER_FILE, encode_clips, load_pipeline
    folder, out = trained
    assert (out / ADAPTER_FILE).is_file() and not list(out.glob(".*.tmp"))
    pipe, family = load_pipeline(folder, "cpu")
    encoded = encode_clips(pipe, family, FolderSource(FolderConfig(root=str(footage), buckets=((9, 32, 32),))).clips(quiet=True))
    kwargs = dict(prompt="a red square moves right", height=32, width=32, num_frames=9, num_inference_steps=2,
                  output_type="np")
    plain = pipe(generator=torch.Generator().manual_seed(0), **kwargs).frames[0]
    before = _loss(pipe, family, encoded)
    pipe.load_lora_weights(out)                                 # diffusers' own loader, the default file name
    after = _loss(pipe, family, encoded)
    tuned = pipe(generator=torch.Generator().manual_seed(0), **kwargs).frames[0]
    assert after < 0.95 * before, (before, after)
    assert np.abs(np.asarray(plain) - np.asarray(tuned)).mean() > 1e-3


def test_a_peer_run_resumes(trained, footage, caplog):
    folder, out = trained
    caplog.set_level("INFO")
    r = cli("train", "--data", footage, "--model", folder, "--lora-rank", "4", f"out={out}", *SMALL, "train.steps=32")
    assert r.exit_code == 0 and "resumed at step 30" in caplog.text, r.output + caplog.text


def test_peer_runs_name_bad_settings(tiny_wan_dir, footage, tmp_path):
    r = cli("train", "--data", footage, "--model", tiny_wan_dir, f"out={tmp_path / 'a'}", "train.steps=1")
    assert r.exit_code == 2 and "LoRA adapters only: set --lora-rank" in r.output, r.output
    r = cli("train", "--data", footage, "--model", tiny_wan_dir, "--lora-rank", "2", f"out={tmp_path / 'b'}",
            "train.steps=1", "data.buckets=[[10,32,32]]")
    assert r.exit_code == 2 and "bucket 10x32x32 does not fit" in r.output, r.output
    r = cli("train-vae", "--data", footage, "--model", tiny_wan_dir, f"out={tmp_path / 'c'}")
    assert r.exit_code == 2 and "is a Diffusers pipeline" in r.output, r.output
