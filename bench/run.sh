#!/usr/bin/env bash
# Every figure of docs/BENCHMARKS.md's performance section, in one run on this
# machine: the FMA peak, the GEMM against OpenBLAS, one training step per
# stage of llava-tiny, llava-small and blip2-tiny against PyTorch (OpenBLAS,
# same thread count; blip2-tiny's stage 1 is one call over its batch of 16
# image-text pairs, reported per call and per pair) in both of PyTorch's
# configurations, mmc's step as mmrun --train runs it (eight samples sharing
# their packed weights, several at a time where mmrun does that), a step's
# peak memory, and chat
# against a PyTorch generate loop. Each ratio is measured within
# one process, both sides alternating, so machine noise hits both.
#   bash bench/run.sh [THREADS]        (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
bash scripts/setup.sh >/dev/null
bash scripts/build.sh >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; $(date -u +%F)"
echo "== FMA peak"
OMP_NUM_THREADS=$THREADS ./build/bin/mm-bench-fma-peak
echo "== GEMM (1 thread, then $THREADS)"
./build/bin/mm-bench-gemm 1
./build/bin/mm-bench-gemm "$THREADS"
for model in llava-tiny llava-small blip2-tiny; do
  ./build/bin/mmc compile "models/$model.mlir" -o "$OUT/$model.so"
  reps=5
  [ "$model" = llava-small ] && reps=3
  echo "== training step, $model, PyTorch with OMP_WAIT_POLICY=passive (its best configuration here)"
  OMP_WAIT_POLICY=passive /usr/bin/python3 bench/train_step.py "$OUT/$model.so" --reps $reps --threads "$THREADS"
  echo "== training step, $model, PyTorch as it runs by default"
  /usr/bin/python3 bench/train_step.py "$OUT/$model.so" --reps $reps --threads "$THREADS"
  # A step as mmrun --train runs it: eight samples sharing their packed weights (abi.h,
  # mm_weight_cache_v1), several at a time on one thread each where the stage's gradients are
  # small (--sample-threads), else one at a time over all cores; per sample.
  echo "== training step, $model, mmc alone: the 8 samples of one mmrun step (weights packed once a step)"
  stages="pretrain_llm pretrain_vision stage1 stage2"
  [ "$model" = blip2-tiny ] && stages="pretrain_llm pretrain_vision stage2" # its stage 1 is one call per batch
  for stage in $stages; do
    echo "$stage: $(/usr/bin/python3 bench/train_step.py "$OUT/$model.so" --reps 3 --threads "$THREADS" \
      --mmc-only "$stage" --step-samples 8 --sample-threads 0)"
  done
  if [ "$model" = llava-tiny ]; then
    echo "== peak memory of a training step, $model"
    /usr/bin/python3 bench/step_memory.py "$OUT/$model.so"
    echo "== chat, $model, PyTorch as it runs by default, then with OMP_WAIT_POLICY=passive"
    /usr/bin/python3 bench/chat.py "$OUT/$model.so" --reps 5 --threads "$THREADS"
    OMP_WAIT_POLICY=passive /usr/bin/python3 bench/chat.py "$OUT/$model.so" --reps 5 --threads "$THREADS"
  fi
done
