#!/usr/bin/env bash
# The CUDA path end to end, for whoever has a GPU (about 2-3 minutes on one recent GPU):
#   cost with CUDA-synchronised timing in fp16 / bf16 / channels-last, a short AMP training run, and the GPU tests.
# Usage: scripts/gpu_smoke.sh [RESULTS_DIR]   (default: results/runs/gpu-smoke; rows appended, never overwritten)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-results/runs/gpu-smoke}
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this script needs a GPU')"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

echo "== cost: the paper's head on the paper's backbone, fp16, batch 1 and 64 (CUDA-synchronised timing)"
bench run --heads gap,mldecoder,txdec --backbone tresnet_m --img-size 448 --batch-sizes 1,64 \
  --device cuda --dtype fp16 --cost-only --min-time 0.5 --results-dir "$OUT" --no-plot
echo "== cost: bf16, channels-last, ViT tokens"
bench run --heads "gap,mldecoder,mldecoder(groups=20)" --backbone resnet50,vit_small_patch16_224 --img-size 224 \
  --batch-sizes 1,128 --device cuda --dtype bf16 --channels-last --cost-only --min-time 0.5 \
  --results-dir "$OUT" --no-plot
echo "== training: AMP (bf16) fine-tuning steps and evaluation on the embedded data"
bench run --heads "gap,mldecoder(embed=256, ffn=1024)" --backbone resnet18 \
  --dataset "scenes(train_size=1024, val_size=256)" --img-size 128 --epochs 2 --seeds 0 \
  --device cuda --batch-sizes 32 --min-time 0.5 --results-dir "$OUT" --no-plot
echo "== tests marked gpu"
python -m pytest -q -m gpu
echo "== rows written to $OUT"
bench results "$OUT" --columns backbone,head,batch_size,dtype,latency_ms_p50,throughput_img_s,map,status
