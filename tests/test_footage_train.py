"""Training on one's own footage (train --data DIR|CACHE, train-vae --data) and LoRA adapters for the native DiT
(train --lora-rank, generate --lora), on the tiny model and tiny folders of real files."""

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

from cinegen.cli import app
from cinegen.config import VAE_PRESETS, LoraSpec
from cinegen.models.loading import load_checkpoint, load_dit
from cinegen.models.lora import merge_adapters, read_adapter, weights_hash
from tests.conftest import perturb

pytest.importorskip("peft")
FAST = ("train.batch_size=2", "train.warmup=1", "train.log_every=1", "train.ema_decay=0")


def cli(*args):
    return CliRunner().invoke(app, list(map(str, args)), env={"COLUMNS": "300"})


@pytest.fixture(scope="module")
def cache(footage, tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "cache"
    r = cli("dataset", "prepare", footage, "--out", out, "--model", tiny_model_dir)
    assert r.exit_code == 0, r.output
    return out


@pytest.fixture(scope="module")
def adapter(cache, tiny_model_dir, tmp_path_factory):
    """A rank-4 adapter trained on the prepared cache: 40 steps at a high rate (the tiny DiT learns fast)."""
    out = tmp_path_factory.mktemp("lora")
    r = cli("train", "--data", cache, "--model", tiny_model_dir, "--lora-rank", "4", f"out={out}", *FAST,
            "train.steps=40", "train.lr=1e-2", "train.ckpt_every=20", "train.text_dropout=0", "train.cond_prob=0")
    assert r.exit_code == 0, r.output
    return out


def test_full_fine_tuning_from_a_footage_folder(footage, tiny_model_dir, tmp_path):
    out = tmp_path / "ft"
    r = cli("train", "--data", footage, "--model", tiny_model_dir, f"out={out}", *FAST, "train.steps=2")
    assert r.exit_code == 0, r.output
    ck = load_checkpoint(out / "dit.safetensors")
    assert ck["step"] == 2 and ck["extra"]["recipe"]["data"]["source"] == "folder"
    assert ck["extra"]["footage"] == str(footage) and ck["extra"]["recipe"]["init"] == str(tiny_model_dir / "dit.safetensors")
    assert (out / "latents.safetensors").is_file()           # the folder was encoded by the run itself
    base, _ = load_dit(tiny_model_dir / "dit.safetensors")
    tuned = ck["ema"] or ck["model"]
    assert any(not torch.equal(tuned[k], v) for k, v in base.state_dict().items())


def test_train_vae_on_footage_with_stills(footage, tiny_model_dir, tmp_path):
    out = tmp_path / "vae"
    r = cli("train-vae", "--data", footage, "--model", tiny_model_dir, f"out={out}", "train.steps=2",
            "train.batch_size=2", "eval_clips=1")
    assert r.exit_code == 0, r.output
    assert load_checkpoint(out / "vae.safetensors")["kind"] == "vae"
    r = cli("train-vae", "--data", tmp_path / "missing", f"out={out}")
    assert r.exit_code == 2 and "--data folder not found" in r.output


def test_lora_adapter_file_has_diffusers_names_and_records_its_base(adapter, tiny_model_dir):
    path = adapter / "lora.safetensors"
    assert not (adapter / "dit.safetensors").exists()
    assert path.stat().st_size < 200_000                     # adapters only, not the DiT
    with safe_open(str(path), framework="pt") as f:
        keys, meta = set(f.keys()), f.metadata()
    assert "transformer.blocks.0.attn.qkv.lora_A.weight" in keys and "transformer.blocks.1.mlp.2.lora_B.weight" in keys
    assert all(k.startswith("transformer.") and (".lora_A.weight" in k or ".lora_B.weight" in k) for k in keys)
    peft_meta = json.loads(meta["lora_adapter_metadata"])
    assert peft_meta["transformer.r"] == 4 and peft_meta["transformer.lora_alpha"] == 4
    base, _ = load_dit(tiny_model_dir / "dit.safetensors")
    assert read_adapter(path).base == weights_hash(base)
    assert load_checkpoint(adapter / "last.safetensors")["step"] == 40


def _loss(model, cache_dir, seeds=range(8)):
    """The flow-matching loss on the prepared clips, with the same batches and noise for every model."""
    from cinegen.config import FlowConfig, TrainConfig
    from cinegen.data.shards import load_prepared
    from cinegen.training.train_dit import sample_batch, training_loss
    cache = load_prepared(cache_dir)
    train = TrainConfig(batch_size=4, text_dropout=0.0, cond_prob=0.0)
    total = 0.0
    with torch.no_grad():
        for s in seeds:
            batch = sample_batch(cache, np.random.default_rng(s), train, False)
            total += float(training_loss(model, batch, FlowConfig(), gen=torch.Generator().manual_seed(s))[0])
    return total / len(seeds)


def test_lora_lowers_the_loss_on_the_footage(adapter, cache, tiny_model_dir):
    base, _ = load_dit(tiny_model_dir / "dit.safetensors")
    tuned, _ = load_dit(tiny_model_dir / "dit.safetensors")
    merge_adapters([tuned], [LoraSpec(str(adapter / "lora.safetensors"))])
    before, after = _loss(base, cache), _loss(tuned, cache)
    assert after < 0.95 * before, (before, after)          # measured: 1.098 -> 0.994


def test_adapters_combine_at_their_scales(adapter, tiny_model_dir, tmp_path):
    path = adapter / "lora.safetensors"
    base, _ = load_dit(tiny_model_dir / "dit.safetensors")
    merged, _ = load_dit(tiny_model_dir / "dit.safetensors")
    assert merge_adapters([merged], [LoraSpec(str(path), 0.5), LoraSpec(str(path), 0.25)]) == [0, 0]
    delta = read_adapter(path).delta("blocks.0.attn.qkv")
    expected = base.blocks[0].attn.qkv.weight + 0.75 * delta
    assert delta.abs().max() > 1e-4 and torch.allclose(merged.blocks[0].attn.qkv.weight, expected, atol=1e-6)
    assert torch.equal(merged.blocks[0].norm_cross.weight, base.blocks[0].norm_cross.weight)   # not a target


def test_generate_with_lora_changes_the_video_and_refuses_another_base(adapter, tiny_model_dir, tmp_path):
    from cinegen.io.video import read_video
    args = ("generate", "a red square", "--model", tiny_model_dir, "--seconds", "0.5", "--steps", "2", "--size", "64x64")
    assert cli(*args, "-o", tmp_path / "plain.mp4").exit_code == 0
    r = cli(*args, "-o", tmp_path / "lora.mp4", "--lora", f"{adapter / 'lora.safetensors'}:1.5")
    assert r.exit_code == 0, r.output
    plain, tuned = read_video(tmp_path / "plain.mp4")[0], read_video(tmp_path / "lora.mp4")[0]
    assert np.abs(plain.astype(int) - tuned.astype(int)).mean() > 0.5
    # another base model: the same architecture, other weights
    from cinegen.training.checkpoint import save_checkpoint
    other = tmp_path / "other"
    other.mkdir()
    dit, _ = load_dit(tiny_model_dir / "dit.safetensors")
    save_checkpoint(other / "dit.safetensors", "dit", dit.cfg, perturb(dit, seed=5), extra=dit.extra)
    (other / "vae.safetensors").write_bytes((tiny_model_dir / "vae.safetensors").read_bytes())
    r = cli("generate", "a red square", "--model", other, "--lora", adapter / "lora.safetensors", "-o", tmp_path / "x.mp4")
    assert r.exit_code == 2 and "was trained on another base model" in r.output and "Traceback" not in r.output
    r = cli(*args, "--lora", tmp_path / "none.safetensors", "-o", tmp_path / "y.mp4")
    assert r.exit_code == 2 and "--lora file not found" in r.output


def test_lora_run_resumes_and_checks_its_settings(cache, tiny_model_dir, tmp_path, caplog):
    out = tmp_path / "resume"
    base = ("train", "--data", cache, "--model", tiny_model_dir, "--lora-rank", "2", f"out={out}", *FAST)
    assert cli(*base, "train.steps=2", "train.ckpt_every=1").exit_code == 0
    caplog.clear()
    caplog.set_level("INFO")
    r = cli(*base, "train.steps=4")
    assert r.exit_code == 0 and f"resumed from {out / 'last.safetensors'} at step 2" in caplog.text, caplog.text
    assert json.loads(safe_open(str(out / "lora.safetensors"), "pt").metadata()["cinegen_lora"])["step"] == 4
    r = cli("train", "--data", cache, "--model", tiny_model_dir, "--lora-rank", "2", "--lora-targets", "nothing",
            f"out={tmp_path / 'bad'}", *FAST, "train.steps=1")
    assert r.exit_code == 2 and "name no linear layer" in r.output, r.output
    r = cli("train", "--data", cache, "--model", tiny_model_dir, "--lora-rank", "2", f"out={tmp_path / 'bad2'}",
            "model.depth=3")
    assert r.exit_code == 2 and "trains adapters on a trained DiT as it is" in r.output, r.output


def test_a_prepared_cache_from_another_vae_is_refused(cache, tiny_model_dir, tmp_path):
    from cinegen.models.vae import VideoVAE
    from cinegen.training.checkpoint import save_checkpoint
    other = tmp_path / "other"
    other.mkdir()
    torch.manual_seed(3)
    vae = VideoVAE(VAE_PRESETS["tiny"])
    save_checkpoint(other / "vae.safetensors", "vae", vae.cfg, vae)
    (other / "dit.safetensors").write_bytes((tiny_model_dir / "dit.safetensors").read_bytes())
    r = cli("train", "--data", cache, "--model", other, f"out={tmp_path / 'o'}", *FAST, "train.steps=1")
    assert r.exit_code == 2 and "holds latents of the VAE" in r.output, r.output


def _lora_ddp_worker(rank, world, init_file, args, result):
    """One rank of `cinegen train --lora-rank` under DDP, run in-process: it records the adapter weights it held
    at the end and how often it wrote the adapter file."""
    import os

    from safetensors.torch import save_file

    from cinegen.training import lora, train_dit
    from cinegen.training.lora import adapter_state
    from tests import gloo
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))   # what torchrun sets
    gloo.join(rank, world, init_file)          # train_dit's setup_distributed keeps this group
    held, writes, save, update = {}, [], lora.save_adapter, train_dit.update_ema

    def ema_step(ema, model, decay):
        update(ema, model, decay)
        held["ema"] = ema

    def counted_save(*a, **k):
        writes.append(rank)
        return save(*a, **k)

    train_dit.update_ema, lora.save_adapter = ema_step, counted_save
    r = cli(*args)
    if r.exit_code != 0:
        print(r.output)
        os._exit(1)
    save_file(adapter_state(held["ema"]), f"{result}.{rank}", metadata={"writes": str(len(writes))})
    os._exit(0)                                # train_dit tore the group down; skip the interpreter's teardown


def test_lora_trains_under_ddp_with_two_ranks(cache, tiny_model_dir, tmp_path):
    """Two gloo ranks train one adapter on the frozen DiT: both hold the same adapter weights after the steps
    (DDP all-reduced the adapters' gradients), and rank 0 alone writes the file, with diffusers' names and the
    base model's hash."""
    import torch.multiprocessing as mp
    out, result = tmp_path / "ddp", tmp_path / "held.safetensors"
    args = ["train", "--data", cache, "--model", tiny_model_dir, "--lora-rank", "2", f"out={out}", *FAST,
            "train.steps=2", "train.lr=1e-2"]
    mp.spawn(_lora_ddp_worker, args=(2, str(tmp_path / "init"), list(map(str, args)), str(result)), nprocs=2,
             join=True)
    ranks = [load_file(f"{result}.{r}") for r in range(2)]
    writes = [safe_open(f"{result}.{r}", "pt").metadata()["writes"] for r in range(2)]
    assert writes == ["1", "0"]
    saved = load_file(out / "lora.safetensors")
    assert saved.keys() == ranks[0].keys() == ranks[1].keys() and "transformer.blocks.0.attn.qkv.lora_B.weight" in saved
    for k, v in saved.items():
        torch.testing.assert_close(ranks[0][k], v, rtol=0, atol=0)
        torch.testing.assert_close(ranks[1][k], v, rtol=0, atol=0)
    assert all(v.abs().max() > 0 for k, v in saved.items() if ".lora_B." in k)   # B left zero: the adapters trained
    base, _ = load_dit(tiny_model_dir / "dit.safetensors")
    assert read_adapter(out / "lora.safetensors").base == weights_hash(base)
    meta = json.loads(safe_open(str(out / "lora.safetensors"), "pt").metadata()["cinegen_lora"])
    assert meta["step"] == 2
