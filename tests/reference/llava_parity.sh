#!/usr/bin/env bash
# PyTorch parity of the compiled tiny LLaVA: mmc compiles models/llava-tiny.mlir,
# mmrun runs its forward pass, tests/reference/llava_ref.py (HF's math in
# PyTorch, run by Debian's /usr/bin/python3) computes the same logits from the
# same safetensors and image; every logit must agree within 1e-4 relative.
#   usage: llava_parity.sh BUILD_DIR
set -euo pipefail
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
MMC="$BUILD/bin/mmc"
MMRUN="$BUILD/bin/mmrun"
REF="$SRC/tests/reference/llava_ref.py"

"$MMC" compile "$SRC/models/llava-tiny.mlir" -o "$T/llava-tiny.so"
"$MMC" inspect "$T/llava-tiny.so" --json > "$T/manifest.json"

# BOS, text, the image token (expanded to 64 positions by both sides), text.
TOKENS="1,45,77,109,4,15,200,37,99,2,150"
# The reference takes the ids as HF's processor leaves them: <image> already expanded.
EXPANDED="1,45,77,109,$(printf '4,%.0s' $(seq 64))15,200,37,99,2,150"

compare() { # weights image label
  echo "== parity: $3"
  "$MMRUN" "$T/llava-tiny.so" --forward --weights "$1" --image "$2" --tokens "$TOKENS" --dump-logits "$T/mm.f32"
  "$PY" "$REF" --config "$T/manifest.json" --weights "$1" --image "$2" --tokens "$EXPANDED" \
    --dump-logits "$T/ref.f32" --compare "$T/mm.f32" --rtol 1e-4
}

# 1. Random weights with non-trivial norms and biases, an image at the model's size.
"$PY" "$SRC/tests/reference/make_random_llava.py" --config "$T/manifest.json" --weights "$T/random.safetensors" \
  --image "$T/square.png" --image-size 64x64 --seed 7
compare "$T/random.safetensors" "$T/square.png" "random weights, 64x64 image"

# 2. mmrun's own seeded initialisation, saved with --save-init and read by PyTorch.
"$MMRUN" "$T/llava-tiny.so" --save-init "$T/init.safetensors" --seed 3
compare "$T/init.safetensors" "$T/square.png" "seeded init from --save-init"

# 3. A non-square image through CLIP's resize and centre crop on both sides.
"$PY" "$SRC/tests/reference/make_random_llava.py" --config "$T/manifest.json" --weights "$T/unused.safetensors" \
  --image "$T/wide.png" --image-size 96x80 --seed 11
compare "$T/random.safetensors" "$T/wide.png" "random weights, 96x80 image (resize + crop)"
echo "llava-tiny parity: all logits within 1e-4"
