#!/usr/bin/env bash
# Every figure of docs/BENCHMARKS.md's performance section, in one run on this
# machine: the FMA peak, the GEMM against OpenBLAS, one training step per
# stage of llava-tiny, llava-small and blip2-tiny against PyTorch (OpenBLAS,
# same thread count; blip2-tiny's stage 1 is one call over its batch of 16
# image-text pairs, reported per call and per pair) in both of PyTorch's
# configurations, a step's peak memory, and chat
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
  if [ "$model" = llava-small ]; then
    # mmrun trains llava-small one sample at a time over both cores, eight to a step, each
    # weight packed once per step (abi.h, mm_weight_cache_v1): that step, per sample.
    echo "== training step, $model, mmc alone: the 8 samples of one mmrun step sharing their packed weights"
    for stage in pretrain_llm stage1 stage2; do
      echo "$stage: $(/usr/bin/python3 bench/train_step.py "$OUT/$model.so" --reps 3 --threads "$THREADS" \
        --mmc-only "$stage" --step-samples 8)"
    done
  fi
  if [ "$model" = llava-tiny ]; then
    echo "== peak memory of a training step, $model"
    /usr/bin/python3 bench/step_memory.py "$OUT/$model.so"
    echo "== chat, $model, PyTorch as it runs by default, then with OMP_WAIT_POLICY=passive"
    /usr/bin/python3 bench/chat.py "$OUT/$model.so" --reps 5 --threads "$THREADS"
    OMP_WAIT_POLICY=passive /usr/bin/python3 bench/chat.py "$OUT/$model.so" --reps 5 --threads "$THREADS"
  fi
done
