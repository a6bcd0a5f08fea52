#!/usr/bin/env bash
# The main job on built-in defaults: set up, build, compile the tiny LLaVA to
# a shared library and run its forward pass on a sample image and prompt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
mkdir -p out
./build/bin/mmc compile models/llava-tiny.mlir -o out/llava-tiny.so
./build/bin/mmc inspect out/llava-tiny.so | tail -n 4
./build/bin/mmrun out/llava-tiny.so --forward --seed 0 \
  --image models/samples/red-circle-blue-square.png \
  --prompt $'USER: <image>\nWhat is in the picture? ASSISTANT:' \
  --dump-logits out/logits.f32
