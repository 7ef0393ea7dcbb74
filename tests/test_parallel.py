"""Multi-process training and inference on CPU (2 gloo ranks): FSDP2 and Ulysses sequence parallelism give the
single-process result."""

import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from cinegen.config import DIT_PRESETS, FlowConfig, override
from cinegen.models.dit import VideoDiT
from cinegen.training.train_dit import training_loss
from tests import gloo
from tests.conftest import perturb
from tests.test_train import _batch, _toy_cache


def _step(model, rank_slice, gen_seed, opt):
    loss, _, _ = training_loss(model, _batch(_toy_cache(), rank_slice), FlowConfig(),
                               gen=torch.Generator().manual_seed(gen_seed))
    return loss


def _fsdp_worker(rank, world, init_file, cfg, result_file):
    from cinegen.parallel.data_parallel import full_state_dict, is_sharded, wrap
    gloo.join(rank, world, init_file)
    torch.manual_seed(0)
    model = VideoDiT(cfg)
    wrapped = wrap(model, "fsdp", world)
    assert is_sharded(model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    _step(wrapped, slice(rank * 2, (rank + 1) * 2), rank, opt).backward()
    opt.step()
    state = full_state_dict(model)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in state.items()}, result_file)
    gloo.leave()


def test_fsdp2_step_equals_single_process(tmp_path):
    """Two FSDP2 ranks on half batches each take the same AdamW step as one process on the whole batch."""
    cfg = DIT_PRESETS["tiny"]
    result = tmp_path / "fsdp.safetensors"
    mp.spawn(_fsdp_worker, args=(2, str(tmp_path / "init"), cfg, str(result)), nprocs=2, join=True)
    torch.manual_seed(0)
    model = VideoDiT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss = sum(_step(model, slice(r * 2, (r + 1) * 2), r, opt) / 2 for r in range(2))
    loss.backward()
    opt.step()
    sharded = load_file(result)
    changed = 0
    for k, v in model.state_dict().items():
        torch.testing.assert_close(sharded[k], v, rtol=1e-4, atol=1e-5)
        changed += not torch.equal(v, before[k])
    assert changed > 10          # the step really moved the weights


def _sp_worker(rank, world, init_file, cfg, inputs_file, result_file):
    from cinegen.parallel.sequence import enable_sequence_parallel
    gloo.join(rank, world, init_file)
    torch.manual_seed(0)
    model = perturb(VideoDiT(cfg))          # off the adaLN-Zero init, so every weight gets a gradient
    enable_sequence_parallel(model)
    x = load_file(inputs_file)
    x["x"].requires_grad_(True)
    out = model(x["x"], x["t"], x["text"], x["mask"].bool())
    out.square().mean().backward()
    grads = {f"grad.{k}": p.grad.contiguous() for k, p in model.named_parameters()}
    save_file({"out": out.detach().contiguous(), "x_grad": x["x"].grad.contiguous(), **grads}, f"{result_file}.{rank}")
    gloo.leave()


def _check_sequence_parallel(tmp_path, cfg):
    torch.manual_seed(1)
    c = cfg.latent_channels
    inputs = {"x": torch.randn(2, c, 3, 4, 8), "t": torch.rand(2), "text": torch.randn(2, 5, cfg.text_dim),
              "mask": torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.uint8)}    # L = 3*2*4 = 24 tokens
    save_file(inputs, tmp_path / "in.safetensors")
    result = tmp_path / "sp.safetensors"
    mp.spawn(_sp_worker, args=(2, str(tmp_path / "init"), cfg, str(tmp_path / "in.safetensors"), str(result)),
             nprocs=2, join=True)
    torch.manual_seed(0)
    model = perturb(VideoDiT(cfg))
    x = inputs["x"].clone().requires_grad_(True)
    out = model(x, inputs["t"], inputs["text"], inputs["mask"].bool())
    out.square().mean().backward()
    ranks = [load_file(f"{result}.{r}") for r in range(2)]
    for sp in ranks:                     # every rank holds the whole output
        torch.testing.assert_close(sp["out"], out.detach(), rtol=1e-4, atol=1e-5)
    # gradients: each rank's cover its own tokens; their mean over the group (what DDP's all-reduce does) is the
    # single-process gradient, for the input and for every weight
    full = {"x_grad": x.grad, **{f"grad.{k}": p.grad for k, p in model.named_parameters()}}
    for k, g in full.items():
        torch.testing.assert_close((ranks[0][k] + ranks[1][k]) / 2, g, rtol=1e-4, atol=1e-7)
    qkv = "grad.blocks.0.attn.qkv.weight"
    assert (ranks[0][qkv] - full[qkv]).abs().max() > 1e-3 * full[qkv].abs().max()   # the ranks really split the work


def test_ulysses_attention_equals_single_process(tmp_path):
    cfg = override(DIT_PRESETS["tiny"], ["heads=2"])          # heads divide the 2 ranks: all-to-all path
    _check_sequence_parallel(tmp_path, cfg)


def test_sequence_parallel_fallback_when_heads_do_not_divide(tmp_path):
    cfg = override(DIT_PRESETS["tiny"], ["heads=3", "width=48"])   # 3 heads over 2 ranks: gathered-KV path
    _check_sequence_parallel(tmp_path, cfg)
