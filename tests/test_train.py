"""Training loops on tiny configs: the loss goes down, checkpoints resume, torchrun/DDP works on CPU (gloo)."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from cinegen.config import FlowConfig, TrainConfig
from cinegen.data.latent_cache import LatentBucket, LatentCache, load_latent_cache
from cinegen.models.dit import VideoDiT
from cinegen.models.loading import load_checkpoint
from cinegen.training import common
from cinegen.training.train_dit import Batch, sample_batch, training_loss

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "COLUMNS": "250"}   # rich: one error, one line


def _toy_cache(n=4, c=4):
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(n, c, 3, 4, 4, generator=g)
    return LatentCache({(9, 16, 16): LatentBucket(latents, torch.arange(1, n + 1).view(n, 1).repeat(1, 2))},
                       torch.randn(n + 1, 6, 384, generator=g), torch.tensor([2] + [6] * n),
                       [""] + [f"caption {i}" for i in range(n)])


def _batch(cache: LatentCache, rows=slice(None)) -> Batch:
    """The toy cache's clips `rows` with their own captions and no conditioning frames."""
    x0 = cache.buckets[(9, 16, 16)].latents[rows]
    text, mask = cache.text(torch.arange(1, 5)[rows])
    return Batch(x0, text, mask, torch.zeros(x0.shape[0], 1, *x0.shape[2:]))


def test_dit_overfits_one_batch(tiny_dit_cfg):
    torch.manual_seed(0)
    model = VideoDiT(tiny_dit_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = _batch(_toy_cache())
    losses = []
    for step in range(150):
        gen = torch.Generator().manual_seed(step % 4)       # four fixed (t, noise) draws: a memorisable batch
        loss, _, _ = training_loss(model, batch, FlowConfig(), gen=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])


def test_batches_come_from_one_bucket_with_text_dropout_and_conditioning():
    cache = _toy_cache()
    rng = np.random.default_rng(0)
    batch = sample_batch(cache, rng, TrainConfig(batch_size=64, text_dropout=0.5, cond_prob=0.5))
    assert batch.x0.shape[0] == 64 and batch.x0.shape[2] in (1, 3)
    dropped = int((batch.text_mask.sum(1) == cache.text_len[0]).sum())     # the empty prompt's length
    assert 10 < dropped < 54                                                # about half the prompts dropped for CFG
    assert batch.given.shape == (64, 1, *batch.x0.shape[2:]) and torch.equal(batch.loss_mask, 1 - batch.given)
    plain = sample_batch(cache, np.random.default_rng(0), TrainConfig(batch_size=8, cond_prob=1.0), conditioning=False)
    assert not plain.given.any()                           # a DiT without conditioning input is never given frames


def _cli(*args, torchrun=False):
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "cinegen.cli"] if torchrun
           else [sys.executable, "-m", "cinegen.cli"])
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=ENV, timeout=600)


TINY_VAE = ("model.preset=tiny", "train.batch_size=4", "train.ema_decay=0.995", "loss.kl_weight=1e-6")


def test_train_vae_then_resume(tmp_path):
    out = tmp_path / "vae"
    r = _cli("train-vae", f"out={out}", *TINY_VAE, "train.steps=4", "data.num_clips=4", "train.ckpt_every=2")
    assert r.returncode == 0, r.stderr
    assert load_checkpoint(out / "last.safetensors")["step"] == 4
    final = load_checkpoint(out / "vae.safetensors")
    assert len(final["config"]["latent_std"]) == 4 and final["extra"]["psnr_heldout"] > 0
    assert final["extra"]["loss"] == {"kl_weight": 1e-6, "edge_weight": 1.0}     # the run's loss, beside the model
    r = _cli("train-vae", f"out={out}", *TINY_VAE, "train.steps=6", "data.num_clips=4")
    assert r.returncode == 0 and "resumed" in r.stderr
    assert load_checkpoint(out / "last.safetensors")["step"] == 6
    # decoder-only fine-tuning keeps the encoder (the latent space a DiT was trained on) bit for bit
    # (another seed renders other clips: re-measured latent statistics would differ; the loss weight is this run's)
    r = _cli("train", "kind=vae", f"out={tmp_path / 'dec'}", f"init={out / 'vae.safetensors'}", "decoder_only=true",
             "train.steps=3", "train.batch_size=4", "data.num_clips=4", "train.lr=1e-2", "data.seed=5",
             "loss.edge_weight=3")
    assert r.returncode == 0, r.stderr
    before, after = load_checkpoint(out / "vae.safetensors")["model"], load_checkpoint(tmp_path / "dec" / "vae.safetensors")["model"]
    enc = [k for k in before if k.startswith("encoder.")]
    dec = [k for k in before if k.startswith("decoder.")]
    assert enc and all(torch.equal(before[k], after[k]) for k in enc)
    assert any(not torch.equal(before[k], after[k]) for k in dec)
    assert load_checkpoint(tmp_path / "dec" / "vae.safetensors")["config"]["latent_mean"] == \
        load_checkpoint(out / "vae.safetensors")["config"]["latent_mean"]
    # the periodic checkpoint records the init file's architecture, not the preset's
    assert load_checkpoint(tmp_path / "dec" / "last.safetensors")["config"] == load_checkpoint(out / "vae.safetensors")["config"]
    assert load_checkpoint(tmp_path / "dec" / "vae.safetensors")["extra"]["loss"]["edge_weight"] == 3
    r = _cli("train-vae", f"out={tmp_path / 'x'}", "decoder_only=true", "train.steps=1")
    assert r.returncode == 2 and "decoder_only needs init" in r.stderr and "Traceback" not in r.stderr


def test_resuming_another_architecture_is_a_clear_error_and_keeps_the_checkpoint(tmp_path):
    out = tmp_path / "vae"
    small = (*TINY_VAE, "train.steps=1", "data.num_clips=2", "eval_clips=1")
    assert _cli("train-vae", f"out={out}", *small).returncode == 0
    before = (out / "last.safetensors").read_bytes()
    r = _cli("train-vae", f"out={out}", *small, "train.steps=2", "model.res_blocks=2")
    assert r.returncode == 2 and "checkpoint of another architecture" in r.stderr and "Traceback" not in r.stderr
    assert (out / "last.safetensors").read_bytes() == before


def test_train_vae_time_limit_stops_early_and_still_finalises(tmp_path):
    """train.max_minutes: a lease-bound run ends before its step count and still writes a usable model file."""
    out = tmp_path / "vae"
    r = _cli("train-vae", f"out={out}", *TINY_VAE, "train.steps=1000", "data.num_clips=4", "eval_clips=2",
             "train.max_minutes=0.00001")
    assert r.returncode == 0, r.stderr
    assert "time limit" in r.stderr
    stopped = load_checkpoint(out / "last.safetensors")["step"]
    assert stopped < 1000
    final = load_checkpoint(out / "vae.safetensors")
    assert final["step"] == stopped and final["extra"]["psnr_heldout"] > 0
    r = _cli("train-vae", f"out={tmp_path / 'bad'}", "train.max_minutes=-1")
    assert r.returncode == 2 and "max_minutes >= 0" in r.stderr and "-1" in r.stderr


def test_a_time_limited_run_decays_its_rate_by_whichever_of_steps_or_time_is_further_along():
    """A lease plans its step count from a guessed rate; when the guess is too fast, the time limit stops the run
    long before its last step, and the rate must have decayed by then, not stayed at its peak."""
    assert common.time_used(0.0, None, "cpu") == 0.0                        # no limit: the step alone counts
    started = time.monotonic() - 30.0
    assert 0.5 < common.time_used(started, 60.0, "cpu") < 0.6
    assert common.schedule_step(100, 0, 1000, 0.0) == 100
    assert common.schedule_step(100, 0, 1000, 0.5) == 500                   # time ahead of steps: time wins
    assert common.schedule_step(900, 0, 1000, 0.5) == 900                   # steps ahead of time: steps win
    assert common.schedule_step(600, 500, 1500, 0.5) == 1000                # a resumed run: from its first step
    end = common.lr_at(common.schedule_step(40, 0, 1000, 1.0), 1e-3, 10, 1000)
    assert end == pytest.approx(1e-4)                                        # the floor: 10% of the base rate
    assert not common.out_of_time(0.99, 60.0, 40, 1000) and common.out_of_time(1.0, 60.0, 40, 1000)


def test_precision_auto_follows_the_chip_and_sampling_stays_fp32_on_cpu(monkeypatch):
    import contextlib

    from cinegen import runtime
    cpu = torch.device("cpu")
    assert runtime.use_bf16(cpu, "bf16") and not runtime.use_bf16(cpu, "fp32")
    for amx in (True, False):
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda amx=amx: amx)
        assert runtime.use_bf16(cpu, "auto") is amx
        assert isinstance(runtime.autocast(cpu), contextlib.nullcontext)   # sampling: the same video on every CPU
        assert runtime.precision_label(cpu, "auto").startswith("bf16 autocast" if amx else "fp32")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")                  # a private torch function: if it goes,
    assert not runtime.use_bf16(cpu, "auto")                                      # CPUs train in fp32, no error
    with runtime.autocast(cpu, "bf16"):
        assert torch.nn.Linear(4, 4)(torch.randn(2, 4)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="'fp16'"):
        runtime.use_bf16(cpu, "fp16")


def test_train_vae_in_bf16_and_a_bad_precision_is_named(tmp_path):
    r = _cli("train-vae", f"out={tmp_path / 'v'}", *TINY_VAE, "train.steps=2", "data.num_clips=2", "eval_clips=1",
             "train.precision=bf16", "train.log_every=1")
    assert r.returncode == 0, r.stderr
    assert "bf16 autocast (--precision bf16)" in " ".join(r.stderr.split())       # rich wraps log lines
    assert np.isfinite(load_checkpoint(tmp_path / "v" / "vae.safetensors")["extra"]["psnr_heldout"])
    for kind in ("vae", "dit"):
        r = _cli("train", f"kind={kind}", *(["vae=x.safetensors"] if kind == "dit" else []), f"out={tmp_path / 'bad'}",
                 "train.precision=fp16")
        assert r.returncode == 2 and "'fp16'" in r.stderr and "train.precision must be one of" in " ".join(r.stderr.split())
        assert "Traceback" not in r.stderr


def _tiny_dit(tiny_model_dir, out, *more) -> list[str]:
    return ["train", "kind=dit", f"vae={tiny_model_dir / 'vae.safetensors'}", f"out={out}", "model.preset=tiny",
            "train.batch_size=2", *more]


def test_train_dit_single_process_and_torchrun_ddp(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    common = _tiny_dit(tiny_model_dir, out, "data.num_clips=6", 'data.holdout=["purple triangle"]', "train.log_every=1")
    r = _cli(*common, "train.steps=2")
    assert r.returncode == 0, r.stderr
    assert "2 steps in" in r.stderr and "ms per step" in r.stderr           # the rate a GPU lease plans with
    cache = load_latent_cache(out / "latents.safetensors")
    assert sum(len(b.latents) for b in cache.buckets.values()) == 6 and cache.captions[0] == ""
    r = _cli(*common, "train.steps=4", "train.precision=bf16", torchrun=True)     # DDP under CPU bf16 autocast too
    assert r.returncode == 0, r.stderr
    assert "bf16 autocast (--precision bf16)" in " ".join(r.stderr.split())       # rich wraps log lines
    ck = load_checkpoint(out / "dit.safetensors")
    assert ck["step"] == 4 and ck["extra"]["holdout"] == ["purple triangle"]
    assert ck["extra"]["recipe"]["data"]["holdout"] == ["purple triangle"] and ck["extra"]["recipe"]["kind"] == "dit"
    assert "loss by t-bin" in r.stderr
    # FSDP2 resumes the DDP run's weights (whole, unsharded checkpoint) and writes whole weights back
    r = _cli(*common, "train.steps=6", "train.parallel=fsdp", torchrun=True)
    assert r.returncode == 0, r.stderr
    assert "resumed" in r.stderr and "optimizer moments restart" in r.stderr
    last = load_checkpoint(out / "last.safetensors")
    assert last["step"] == 6 and last["model"].keys() == ck["model"].keys()
    assert not torch.equal(last["model"]["blocks.0.attn.qkv.weight"], ck["model"]["blocks.0.attn.qkv.weight"])
    # max_minutes: a lease-bound run stops long before its step count and still writes the final DiT file
    r = _cli(*common, "train.steps=1000", "train.max_minutes=0.00001")
    assert r.returncode == 0, r.stderr
    assert "time limit" in r.stderr and load_checkpoint(out / "dit.safetensors")["step"] < 1000


def test_train_flow_overrides_are_saved_and_kept_on_resume(tmp_path, tiny_model_dir):
    """[flow] sets the training noise schedule, the saved model samples with it, and a resume cannot change it."""
    from cinegen.models.loading import load_dit
    common = _tiny_dit(tiny_model_dir, tmp_path / "dit", "data.num_clips=2")
    r = _cli(*common, "train.steps=1", "flow.base_shift=3", "flow.base_tokens=80")
    assert r.returncode == 0, r.stderr
    flow = load_dit(tmp_path / "dit" / "dit.safetensors")[1]
    assert flow.base_shift == 3.0 and flow.base_tokens == 80
    r = _cli(*common, "train.steps=2")                               # resume without the run's [flow]
    assert r.returncode == 2 and "[flow]" in r.stderr and "base_shift=3.0" in r.stderr and "Traceback" not in r.stderr
    r = _cli(*common, "train.steps=2", "flow.base_shift=3", "flow.base_tokens=80")
    assert r.returncode == 0 and "resumed" in r.stderr
    r = _cli(*common, "train.steps=3", "flow.shift=3")
    assert r.returncode == 2 and "flow.shift" in r.stderr and "Traceback" not in r.stderr


def _ddp_worker(rank, world, init_file, cfg, result_file):
    from torch.nn.parallel import DistributedDataParallel as DDP

    from tests import gloo
    gloo.join(rank, world, init_file)
    torch.manual_seed(0)
    model = DDP(VideoDiT(cfg))
    cache = _toy_cache()
    loss, _, _ = training_loss(model, _batch(cache, slice(rank * 2, (rank + 1) * 2)), FlowConfig(),
                               gen=torch.Generator().manual_seed(rank))
    loss.backward()
    if rank == 0:
        torch.save({k: p.grad for k, p in model.module.named_parameters()}, result_file)
    del model                       # DDP's reducer holds the process group: free it before leaving
    gloo.leave()


def test_ddp_gradients_equal_single_process(tmp_path, tiny_dit_cfg):
    """Two gloo ranks on half batches each give the gradient of one process on the whole batch."""
    import torch.multiprocessing as mp
    result = tmp_path / "grads.pt"
    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "init"), tiny_dit_cfg, str(result)), nprocs=2, join=True)
    ddp_grads = torch.load(result)
    torch.manual_seed(0)
    model = VideoDiT(tiny_dit_cfg)
    cache = _toy_cache()
    total = 0
    for rank in range(2):       # same per-rank draws of t and noise, averaged like DDP's all-reduce
        loss, _, _ = training_loss(model, _batch(cache, slice(rank * 2, (rank + 1) * 2)), FlowConfig(),
                                   gen=torch.Generator().manual_seed(rank))
        total = total + loss / 2
    total.backward()
    for name, p in model.named_parameters():
        torch.testing.assert_close(ddp_grads[name], p.grad, rtol=1e-4, atol=1e-6)


def test_train_config_defaults_are_sane():
    cfg = TrainConfig()
    assert cfg.grad_clip > 0 and 0 < cfg.ema_decay < 1 and 0 <= cfg.text_dropout < 1


def test_grow_from_starts_as_the_trained_model_and_trains_the_new_blocks(tiny_dit_cfg):
    import dataclasses

    from cinegen.training.train_dit import grow_from
    from tests.conftest import perturb
    torch.manual_seed(0)
    trained = perturb(VideoDiT(tiny_dit_cfg)).eval()                               # depth 2
    grown = grow_from(VideoDiT(dataclasses.replace(tiny_dit_cfg, depth=5)), trained).eval()
    x, t = torch.randn(2, 4, 3, 4, 4), torch.rand(2)
    text, mask = torch.randn(2, 6, 384), torch.ones(2, 6, dtype=torch.bool)
    assert torch.allclose(grown(x, t, text, mask), trained(x, t, text, mask), atol=1e-6)
    # trained blocks land at 0 and 2; the identity blocks in between still receive gradient
    assert torch.equal(grown.blocks[2].attn.qkv.weight, trained.blocks[1].attn.qkv.weight)
    grown(x, t, text, mask).square().mean().backward()
    assert grown.blocks[1].ada[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="more than depth"):
        grow_from(VideoDiT(dataclasses.replace(tiny_dit_cfg, width=64)), trained)
    with pytest.raises(ValueError, match="deeper"):
        grow_from(VideoDiT(dataclasses.replace(tiny_dit_cfg, depth=1)), trained)


def test_train_cli_grows_an_init_model(tmp_path, tiny_model_dir):
    common = _tiny_dit(tiny_model_dir, tmp_path / "dit", "data.num_clips=2", "train.steps=1", "model.depth=4")
    r = _cli(*common, f"init={tmp_path / 'missing.safetensors'}")
    assert r.returncode == 2 and "init file not found" in r.stderr + r.stdout
    r = _cli(*common, f"init={tiny_model_dir / 'dit.safetensors'}", "model.depth=1")   # the later override wins
    assert r.returncode == 2 and "deeper than the run's 1" in r.stderr + r.stdout
    assert not (tmp_path / "dit" / "latents.safetensors").exists()              # refused before any work
    r = _cli(*common, f"init={tiny_model_dir / 'dit.safetensors'}")
    assert r.returncode == 0, r.stderr
    assert "depth 2 -> 4" in r.stderr
    assert load_checkpoint(tmp_path / "dit" / "dit.safetensors")["config"]["depth"] == 4


def test_train_cli_text_layers_travel_with_the_model(tmp_path, tiny_model_dir):
    import shutil

    from cinegen.pipeline import TextToVideo
    out = tmp_path / "dit"
    common = _tiny_dit(tiny_model_dir, out, "data.num_clips=2", "train.steps=1")
    r = _cli(*common, "text.layers=[-1,0]")
    assert r.returncode == 0, r.stderr
    cache = load_latent_cache(out / "latents.safetensors")
    n_words = len(cache.captions[1].split())
    assert cache.text_len[1] >= 2 * n_words                                   # two layers' tokens per caption
    shutil.copy(tiny_model_dir / "vae.safetensors", out / "vae.safetensors")
    assert TextToVideo.from_pretrained(out).text_encoder.cfg.layers == (-1, 0)   # generation reads what training did
    # a cache encoded with other layers is refused, not silently trained on
    r = _cli(*common, "train.steps=2", "text.layers=[-1]")
    assert r.returncode == 2 and "latent cache" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_train_cli_twins_add_word_swapped_clips(tmp_path, tiny_model_dir):
    out = tmp_path / "dit"
    r = _cli(*_tiny_dit(tiny_model_dir, out, "data.num_clips=4", "train.steps=1", "data.twins=true"))
    assert r.returncode == 0, r.stderr
    cache = load_latent_cache(out / "latents.safetensors")
    assert sum(len(b.latents) for b in cache.buckets.values()) > 4      # mirrored / reversed twins were encoded
