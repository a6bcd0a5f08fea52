#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: checks every generated CUDA kernel against
# the plain C++ reference (the same GoogleTest as the CPU backend), every
# backward kernel against finite differences, then the whole tiny LLaVA
# forward pass on CUDA against the CPU library, logit by logit.
#   usage: check_cuda.sh DIR      (DIR made by tests/gpu/prepare.sh)
set -euo pipefail
D=$(cd "${1:-out/gpu}" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader || true

echo "== generated CUDA kernels vs reference kernels"
MM_TEST_TARGET=cuda MM_TEST_PREBUILT_SO="$D/kernels-cuda.so" MM_SOURCE_DIR="$HERE/../.." \
  "$D/mm-unittests" --gtest_filter='Kernels.*'

echo "== CUDA training-step gradients vs finite differences (float64)"
MM_TEST_TARGET=cuda MM_TEST_PREBUILT_GRADIENTS_SO="$D/gradients-cuda.so" \
  "$D/mm-unittests" --gtest_filter='*Gradients*'

echo "== llava-tiny forward: CUDA vs CPU"
TOKENS=1,45,77,109,4,15,200,37,99,2,150
for t in cpu cuda; do
  "$D/mmrun" "$D/llava-tiny-$t.so" --forward --weights "$D/weights.safetensors" --image "$D/image.png" \
    --tokens "$TOKENS" --dump-logits "$D/logits-$t.f32"
done
python3 "$HERE/compare_f32.py" "$D/logits-cuda.f32" "$D/logits-cpu.f32" 1e-4
