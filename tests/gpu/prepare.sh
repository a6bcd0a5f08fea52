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
for m in llava-tiny blip2-tiny; do
  ./build/bin/mmc compile "models/$m.mlir" -o "$D/$m-cpu.so"
  ./build/bin/mmc compile "models/$m.mlir" --target cuda --cuda-arch "$ARCH" -o "$D/$m-cuda.so"
done
./build/bin/mmc compile tests/unit/compiler/kernels.mlir --target cuda --cuda-arch "$ARCH" -o "$D/kernels-cuda.so"
./build/bin/mmc compile tests/unit/compiler/gradients.mlir --target cuda --cuda-arch "$ARCH" -o "$D/gradients-cuda.so"
# 32 training scenes: LLaVA stage-2 conversations and BLIP-2 image-caption pairs.
./build/bin/mmdata scenes --out "$D/data" --count 32 --eval-count 4 --seed 7 --quiet
cp models/samples/red-circle-blue-square.png "$D/image.png"
cp build/bin/mmrun build/bin/mm-unittests "$D/"
# The binaries need the OpenMP runtime they were linked with; the GPU machine's
# image has another distribution's libraries.
for lib in $(ldd build/bin/mmrun | awk '/libomp/ {print $3}'); do cp -L "$lib" "$D/"; done
du -sh "$D"
