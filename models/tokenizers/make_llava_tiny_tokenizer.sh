#!/usr/bin/env bash
# Rebuilds models/tokenizers/llava-tiny.tokenizer.json: a 1024-token byte-level
# BPE trained by `mmdata tokenizer` on the generated scenes' text (seed 1) and
# on the vicuna_v1 template's fixed text (llava-tiny-extra.txt), so prompts
# and answers fit llava-tiny's 256 positions.
set -euo pipefail
cd "$(dirname "$0")/../.."
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
./build/bin/mmdata scenes --out "$T" --count 2000 --eval-count 1 --seed 1 --quiet
./build/bin/mmdata tokenizer --data "$T/captions.json" --data "$T/instruct.json" \
  --data models/tokenizers/llava-tiny-extra.txt --vocab-size 1024 --out models/tokenizers/llava-tiny.tokenizer.json
