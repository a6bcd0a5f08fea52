#!/usr/bin/env bash
# Builds what the GPU check needs into out/gpu/ on a machine with the
# toolchain (MLIR for mmc, nvcc for the CUDA libraries). The GPU machine has no
# MLIR, so the check runs on these artifacts: carry out/gpu to it and run
# tests/gpu/check_cuda.sh out/gpu there.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/build.sh >/dev/null
D=out/gpu
rm -rf "$D" && mkdir -p "$D"
ARCH=${CUDA_ARCH:-sm_90}
./build/bin/mmc compile models/llava-tiny.mlir -o "$D/llava-tiny-cpu.so"
./build/bin/mmc compile models/llava-tiny.mlir --target cuda --cuda-arch "$ARCH" -o "$D/llava-tiny-cuda.so"
./build/bin/mmc compile tests/unit/compiler/kernels.mlir --target cuda --cuda-arch "$ARCH" -o "$D/kernels-cuda.so"
./build/bin/mmc compile tests/unit/compiler/gradients.mlir --target cuda --cuda-arch "$ARCH" -o "$D/gradients-cuda.so"
./build/bin/mmrun "$D/llava-tiny-cpu.so" --save-init "$D/weights.safetensors" --seed 5
cp models/samples/red-circle-blue-square.png "$D/image.png"
cp build/bin/mmrun build/bin/mm-unittests "$D/"
du -sh "$D"
