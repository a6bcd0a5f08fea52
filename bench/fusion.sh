#!/usr/bin/env bash
# A compile option's effect, measured: the same model compiled by default and
# with FLAG (--no-fuse, the default: mm-fuse's effect; or --remat), each
# training step timed alone (bench/train_step.py --mmc-only: one sample at the
# compiled length, the median of REPS calls), the two alternating in two
# rounds, the best round kept, beside each step's activation memory (mmc
# inspect); then, for --no-fuse, chat's prefill and decode on one prompt.
# Prints the ratio FLAG / default for each (above 1: the default is faster).
#   bash bench/fusion.sh [THREADS] [REPS] [FLAG]
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-$(nproc)}
REPS=${2:-5}
FLAG=${3:---no-fuse}
bash scripts/build.sh >/dev/null
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMP_NUM_THREADS=$THREADS
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $THREADS threads; $(date -u +%F)"
best() { printf '%s\n' "$@" | sort -g | head -n 1; }
for model in llava-tiny llava-small; do
  ./build/bin/mmc compile "models/$model.mlir" -o "$OUT/fused.so" | sed 's/^/   /'
  ./build/bin/mmc compile "models/$model.mlir" "$FLAG" -o "$OUT/plain.so" | sed 's/^/   /'
  stages=$(./build/bin/mmc inspect "$OUT/fused.so" --json | /usr/bin/python3 -c \
    "import json,sys; print(' '.join(s['name'] for s in json.load(sys.stdin)['stages']))")
  activations() {  # LIB STAGE -> the training step's activation bytes
    ./build/bin/mmc inspect "$1" --json | /usr/bin/python3 -c "import json,sys; print(next(s['bytes']['activations'] \
      for s in json.load(sys.stdin)['stages'] if s['name'] == sys.argv[1]))" "$2"
  }
  printf '%-12s %-16s %10s %10s %8s %12s %12s\n' model stage "default ms" "$FLAG ms" ratio "default act" "$FLAG act"
  for stage in $stages; do
    f=() p=()
    for round in 1 2; do
      f+=("$(/usr/bin/python3 bench/train_step.py "$OUT/fused.so" --mmc-only "$stage" --reps "$REPS" --threads "$THREADS")")
      p+=("$(/usr/bin/python3 bench/train_step.py "$OUT/plain.so" --mmc-only "$stage" --reps "$REPS" --threads "$THREADS")")
    done
    bf=$(best "${f[@]}") bp=$(best "${p[@]}")
    /usr/bin/python3 -c "import sys; f, p = float(sys.argv[3]), float(sys.argv[4]); print(f'{sys.argv[1]:12s} {sys.argv[2]:16s} {f:10.1f} {p:10.1f} {p / f:7.2f}x {int(sys.argv[5]) / 2**20:10.1f}Mi {int(sys.argv[6]) / 2**20:10.1f}Mi')" \
      "$model" "$stage" "$bf" "$bp" "$(activations "$OUT/fused.so" "$stage")" "$(activations "$OUT/plain.so" "$stage")"
  done
  if [ "$model" = llava-tiny ] && [ "$FLAG" = --no-fuse ]; then
    ./build/bin/mmrun "$OUT/fused.so" --save-init "$OUT/w.safetensors" --seed 1 >/dev/null
    for lib in fused plain fused plain; do
      printf '%-8s ' "$lib"
      ./build/bin/mmrun "$OUT/$lib.so" --chat --weights "$OUT/w.safetensors" --image models/samples/red-circle-blue-square.png \
        --prompt "Describe the image in detail." --max-new-tokens 64 2>&1 >/dev/null | grep prefill
    done
  fi
done
