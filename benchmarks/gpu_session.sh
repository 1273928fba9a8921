#!/usr/bin/env bash
# Issue 18 part 4, step 2 of 2: on the lent GPU machine, in one call (prepared here by benchmarks/gpu_prepare.sh):
#     run(command="bash benchmarks/gpu_session.sh", carry=[".carry"], timeout_s=540)
# 1. benchmarks/bench_gpu.py: nlptransfer's loop against transformers.Trainer, BERT-base size, bf16, seq 128
#    (samples/s, MFU against the measured bf16 matmul, peak GPU memory) -> $OUT/RESULTS_GPU.md;
# 2. recipe=sentiment on the packaged MiniLM and tweets, one GPU, train.mixed_precision=auto -> $OUT/sentiment_*.
# Everything it prints is in $OUT/*.log too. `TINY=1 bash benchmarks/gpu_session.sh` is the CPU rehearsal (a 2-layer
# model, 2 steps, no bf16): run it here before spending device time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 NLPTRANSFER_CACHE=/tmp/nt-cache
OUT=${OUT:-/tmp/gpu-session-out}
mkdir -p "$OUT"
SITE=/tmp/nt-site
if ! python3 -c "import datasets, evaluate, omegaconf, seqeval" 2>/dev/null; then  # the device image lacks them
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
        .carry/whl/*.whl || exit 1
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target "$SITE" .carry/sdist/*.tar.gz \
        || echo "seqeval not installed: NER metrics would fail (not used here)"
fi
export PYTHONPATH="$SITE:$PWD"
python3 - <<'PY'  # MiniLM back in float32: the run keeps fp32 master weights under bf16 autocast
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

source, target = Path(".carry/minilm-bf16"), Path("/tmp/minilm")
shutil.copytree(source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.bf16"))
weights = load_file(source / "model.safetensors.bf16")
save_file({name: t.float() for name, t in weights.items()}, target / "model.safetensors")
PY
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || echo "no nvidia-smi";
  python3 -c "import torch, transformers, accelerate, peft, datasets; print('torch', torch.__version__,
'cuda', torch.cuda.is_available(), 'transformers', transformers.__version__, 'accelerate', accelerate.__version__,
'peft', peft.__version__, 'datasets', datasets.__version__)"; } 2>&1 | tee "$OUT/versions.txt"
if [ -n "${TINY:-}" ]; then
    bench=(--tiny --steps 4 --warmup 2 --repeats 1) recipe=(train.max_steps=2 data.max_train_samples=64
        data.max_validation_samples=32 data.max_test_samples=32)
else
    bench=() recipe=(train.mixed_precision=auto)  # the default: bf16 on a GPU that has it (logged, in metrics.json)
fi
timeout 330 python3 benchmarks/bench_gpu.py "${bench[@]}" --results "$OUT/RESULTS_GPU.md" 2>&1 | tee "$OUT/bench_gpu.log"
echo "bench_gpu exit: ${PIPESTATUS[0]}"
timeout 150 python3 -m nlptransfer.run recipe=sentiment model=/tmp/minilm data.name=null \
    data.train_file=.carry/tweets.csv "${recipe[@]}" output_dir=/tmp/sentiment-gpu overwrite=true 2>&1 \
    | tee "$OUT/sentiment.log"
echo "sentiment exit: ${PIPESTATUS[0]}"
cp /tmp/sentiment-gpu/metrics.json "$OUT/sentiment_metrics.json" 2>/dev/null || echo "no sentiment metrics.json"
