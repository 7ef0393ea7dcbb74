#!/usr/bin/env bash
# Device check: train-vae with the shape loss on a GPU (the shape reader used to stay on the CPU, so this failed
# with a device mismatch). Passed on an NVIDIA H200 on 2026-11-27 (40 steps, exit 0). The pairs file needs the
# text encoder, which does not travel, so make it here first and carry it (device tool, carry: runs/gpu_smoke):
#   cinegen dit-latents --out runs/gpu_smoke/pairs.safetensors data.num_clips=8 data.seed=7 'data.holdout=["purple triangle"]'
# There: bash tools/device_shape_check.sh [STEPS]
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
STEPS=${1:-40}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
python3 -m cinegen.cli train-vae out=/tmp/dec_gpu init=src/cinegen/weights/vae.safetensors decoder_only=true \
    dit_latents=${PAIRS:-runs/gpu_smoke/pairs.safetensors} dit_share=0.5 terms.shape_weight=0.1 terms.shape_reader_steps=300 \
    train.steps=$STEPS train.batch_size=4 data.num_clips=32 data.seed=8 train.log_every=10 train.ckpt_every=20 \
    'data.holdout=["purple triangle","orange ring bounces","cyan box moves left","yellow ball falls"]' 2>&1 | grep -v "━" | tail -25
echo "exit ${PIPESTATUS[0]}"
ls -la /tmp/dec_gpu
python3 - <<'PY'
from cinegen.training.checkpoint import load_checkpoint
ck = load_checkpoint("/tmp/dec_gpu/last.safetensors")
print("checkpoint step", ck.get("step"))
PY
