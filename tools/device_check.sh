#!/usr/bin/env bash
# The prepared run for a lent GPU machine (device tool; see BENCHMARKS.md "On a GPU"):
#   1. environment: GPU, torch, the diffusers wheel carried in .whl;
#   2. python -m cinegen.eval.bench_gpu (bf16 DiT/VAE vs Wan, MFU, GPU memory, end-to-end generate), capped;
#   3. the CUDA training path (torchrun, NCCL, FSDP2, bf16 autocast) after it: 20 DiT steps on 32 clips.
# (Its third part used to train VAE candidates, scripts/device_vae.py: removed with the bigger-autoencoder
# experiment, docs/history.md "Experiments of 2026-11-26, later".)
# Usage there: bash tools/device_check.sh TOTAL_SECONDS   (writes everything under $OUT)
set -u
total=${1:-570}
start=$(date +%s)
out=${OUT:-out/device}
mkdir -p "$out"
export PYTHONPATH="$PWD/src" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec > >(tee "$out/log.txt") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
python3 -c "import torch, diffusers; print('torch', torch.__version__, torch.cuda.get_device_name(0), 'diffusers', diffusers.__version__)"
# MiniLM's weights (88 MB) do not travel: the timing runs use its architecture and tokenizer with random weights
python3 - <<'PY'
import shutil, transformers
src, dst = ".devcarry/minilm_arch", "/tmp/minilm_random"
shutil.copytree(src, dst, dirs_exist_ok=True)
transformers.BertModel(transformers.BertConfig.from_pretrained(src)).save_pretrained(dst)
PY
timeout $(( total - 180 )) python3 -m cinegen.eval.bench_gpu --out "$out/BENCHMARKS_GPU.md" --json "$out/bench_gpu.json" \
  --text-encoder /tmp/minilm_random || echo "bench_gpu stopped: exit $?"
# the CUDA training path (torchrun, NCCL, FSDP2, bf16 autocast): 20 DiT steps on 32 clips, in what is left
( timeout 150 python3 -m torch.distributed.run --nproc_per_node 1 -m cinegen.cli train kind=dit \
    vae=src/cinegen/weights/vae.safetensors out=/tmp/dit_fsdp model.preset=default train.steps=20 train.batch_size=8 \
    data.num_clips=32 train.log_every=5 train.ckpt_every=10 train.parallel=fsdp text.name=/tmp/minilm_random \
    > /tmp/dit_fsdp.log 2>&1; echo "torchrun fsdp exit $?" >> /tmp/dit_fsdp.log ) &
wait
echo "--- DiT training smoke on the GPU (torchrun, FSDP2) ---"; tail -n 25 /tmp/dit_fsdp.log
echo "done in $(( $(date +%s) - start )) s"
