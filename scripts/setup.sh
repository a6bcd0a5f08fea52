#!/usr/bin/env bash
# Installs every Debian package the build and the tests need. Idempotent: packages already
# present are skipped, so a second run costs one dpkg query.
set -euo pipefail

PACKAGES=(
  # build
  cmake ninja-build clang-19 lld-19 libomp-19-dev
  llvm-19-dev llvm-19-tools libmlir-19-dev mlir-19-tools
  libfmt-dev libstb-dev libgtest-dev googletest nlohmann-json3-dev
  # tests: lit runs on python3; the PyTorch reference runs on Debian's torch with OpenBLAS
  python3 python3-torch python3-numpy python3-pil libopenblas0-pthread
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PACKAGES[@]} packages present"
  exit 0
fi

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
