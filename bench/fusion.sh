#!/usr/bin/env bash
# mm-fuse's effect, measured: the same model compiled with and without
# fusion (`mmc compile --no-fuse`), each training step timed alone
# (bench/train_step.py --mmc-only: one sample at the compiled length, the
# median of REPS calls), fused and unfused alternating in two rounds, the best
# round kept; then chat's prefill and decode on one prompt. Prints the ratio
# unfused / fused for each (above 1: fusion is faster).
#   bash bench/fusion.sh [THREADS] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
REPS=${2:-5}
bash scripts/build.sh >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMP_NUM_THREADS=$THREADS
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $THREADS threads; $(date -u +%F)"
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
for model in llava-tiny llava-small; do
  ./build/bin/mmc compile "models/$model.mlir" -o "$OUT/fused.so" | sed 's/^/   /'
  ./build/bin/mmc compile "models/$model.mlir" --no-fuse -o "$OUT/plain.so" | sed 's/^/   /'
  stages=$(./build/bin/mmc inspect "$OUT/fused.so" --json | /usr/bin/python3 -c \
    "import json,sys; print(' '.join(s['name'] for s in json.load(sys.stdin)['stages']))")
  printf '%-12s %-16s %10s %10s %8s\n' model stage "fused ms" "unfused ms" ratio
  for stage in $stages; do
    f=() p=()
    for round in 1 2; do
      f+=("$(/usr/bin/python3 bench/train_step.py "$OUT/fused.so" --mmc-only "$stage" --reps "$REPS" --threads "$THREADS")")
      p+=("$(/usr/bin/python3 bench/train_step.py "$OUT/plain.so" --mmc-only "$stage" --reps "$REPS" --threads "$THREADS")")
    done
    bf=$(best "${f[@]}") bp=$(best "${p[@]}")
    /usr/bin/python3 -c "import sys; f, p = float(sys.argv[3]), float(sys.argv[4]); print(f'{sys.argv[1]:12s} {sys.argv[2]:16s} {f:10.1f} {p:10.1f} {p / f:7.2f}x')" \
      "$model" "$stage" "$bf" "$bp"
  done
  if [ "$model" = llava-tiny ]; then
    ./build/bin/mmrun "$OUT/fused.so" --save-init "$OUT/w.safetensors" --seed 1 >/dev/null
    for lib in fused plain fused plain; do
      printf '%-8s ' "$lib"
      ./build/bin/mmrun "$OUT/$lib.so" --chat --weights "$OUT/w.safetensors" --image models/samples/red-circle-blue-square.png \
        --prompt "Describe the image in detail." --max-new-tokens 64 2>&1 >/dev/null | grep prefill
    done
  fi
done
