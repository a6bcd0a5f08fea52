#!/usr/bin/env bash
# The CUDA backend against the float64 PyTorch reference, on the batches of the
# CPU parity tests (tests/reference/{llava,blip2}_train_parity.sh): LLaVA stage 2
# (10 steps of 2 conversations) and BLIP-2 stage 1 (6 steps of 16 pairs).
# The GPU machine has no MLIR and its PyTorch is not the reference's, so:
#   1. here:    tests/gpu/reference_parity.sh prepare   (-> out/gpu-parity, ~53 MB)
#   2. GPU:     tests/gpu/reference_parity.sh device OUTDIR
#               (carry out/gpu-parity; writes OUTDIR/parity.tar.a? of <= 15 MB each)
#   3. here:    tests/gpu/reference_parity.sh compare DIR_WITH_PARITY_TAR
# Step 3 prints the reference's comparison: step-0 gradients of every trainable
# tensor at 1e-4 (BLIP-2's ITC projections 2e-2, temp 2e-3, as in the CPU
# test) and every step's loss at 1e-4.
set -euo pipefail
SRC=$(cd "$(dirname "$0")/../.." && pwd)
P="$SRC/out/gpu-parity"
PY=/usr/bin/python3
case "${1:-}" in
prepare)
  cd "$SRC"
  ninja -C build >/dev/null
  rm -rf "$P" && mkdir -p "$P"
  bash tests/reference/llava_train_parity.sh build --keep "$P/lp.keep" >/dev/null
  bash tests/reference/blip2_train_parity.sh build --keep "$P/b2p.keep" >/dev/null
  mkdir -p "$P/lp" "$P/b2p"
  cp -r "$P/lp.keep/data" "$P/lp.keep/init.safetensors" "$P/lp.keep/long.json" "$P/lp/"
  cp -r "$P/b2p.keep/scenes40" "$P/b2p.keep/init.safetensors" "$P/b2p.keep/blip2.json" "$P/b2p/"
  ./build/bin/mmc compile "$P"/lp.keep/long/llava-tiny-seq*.mlir --target cuda --cuda-arch "${CUDA_ARCH:-sm_90}" \
    -o "$P/llava-long-cuda.so"
  ./build/bin/mmc compile models/blip2-tiny.mlir --target cuda --cuda-arch "${CUDA_ARCH:-sm_90}" \
    -o "$P/blip2-tiny-cuda.so"
  rm -rf "$P/lp.keep" "$P/b2p.keep"
  cp build/bin/mmrun "$P/"
  for lib in $(ldd build/bin/mmrun | awk '/libomp/ {print $3}'); do cp -L "$lib" "$P/"; done
  du -sh "$P"
  ;;
device)
  OUT=$(cd "$2" && pwd)
  cd "$P"; export LD_LIBRARY_PATH=$P
  rm -rf r && mkdir r
  ./mmrun blip2-tiny-cuda.so --train stage1 --data "$P/b2p/scenes40/image_captions.json" \
    --image-dir "$P/b2p/scenes40" --steps 6 --batch 16 --seed 1 --init b2p/init.safetensors \
    --log r/b2p-log.jsonl --dump-batches r/b2p-batches.jsonl --dump-grads r/b2p-grads.safetensors
  ./mmrun llava-long-cuda.so --train stage2 --data "$P/lp/data/conversations.json" \
    --image-dir "$P/lp/data/images" --steps 10 --batch 2 --seed 1 --init lp/init.safetensors \
    --log r/lp-log.jsonl --dump-batches r/lp-batches.jsonl --dump-grads r/lp-grads.safetensors
  tar cf - r | split -b 15M - "$OUT/parity.tar."
  ;;
compare)
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
  cat "$2"/parity.tar.* | tar xf - -C "$T"
  # The dumped image paths are the GPU machine's; the repository sits at the same path there.
  REF="$SRC/tests/reference/llava_train_ref.py"
  rc=0
  echo "== LLaVA stage 2 on CUDA vs the float64 reference"
  "$PY" "$REF" --config "$P/lp/long.json" --weights "$P/lp/init.safetensors" --batches "$T/r/lp-batches.jsonl" \
    --stage stage2 --steps 10 --total-steps 10 --dtype float64 \
    --compare-grads "$T/r/lp-grads.safetensors" --grads-rtol 1e-4 \
    --compare-losses "$T/r/lp-log.jsonl" --losses-rtol 1e-4 | grep -v '^step\|micro-batch' || rc=1
  echo "== BLIP-2 stage 1 on CUDA vs the float64 reference"
  "$PY" "$REF" --config "$P/b2p/blip2.json" --weights "$P/b2p/init.safetensors" --batches "$T/r/b2p-batches.jsonl" \
    --stage stage1 --steps 6 --total-steps 6 --dtype float64 \
    --compare-grads "$T/r/b2p-grads.safetensors" --grads-rtol 1e-4 \
    --grads-rtol-for '^(vision_projection|text_projection)\.=2e-2' --grads-rtol-for '^temp$=2e-3' \
    --compare-losses "$T/r/b2p-log.jsonl" --losses-rtol 1e-4 | grep -v '^step\|micro-batch' || rc=1
  exit $rc
  ;;
*) echo "usage: reference_parity.sh prepare | device OUTDIR | compare DIR" >&2; exit 2 ;;
esac
