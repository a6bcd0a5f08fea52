#!/usr/bin/env bash
# Sets up, builds, and runs every test: lit (dialect, passes, code generation,
# tools), GoogleTest (runtime, reference kernels, every generated kernel
# against its reference), and the PyTorch parity of the compiled tiny LLaVA.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd build
ctest --output-on-failure "$@"
