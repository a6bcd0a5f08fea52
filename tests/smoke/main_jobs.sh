#!/usr/bin/env bash
# Smoke test of the README's main jobs: scripts/run.sh (LLaVA) and
# scripts/run_blip2.sh (BLIP-2) run end to end at a tiny size with the tools
# of BUILD_DIR (no setup, no build), and each reaches its last step: the chat
# turn about a held-out image, the ranked captions. What the models learn at
# this size is not checked (docs/BENCHMARKS.md has the real runs).
#   tests/smoke/main_jobs.sh BUILD_DIR [llava|blip2|blip2-t5]
set -euo pipefail
BUILD=$(cd "$1" && pwd)
WHICH=${2:-all}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"
export MM_NO_SETUP=1 MM_BIN="$BUILD/bin" MM_SCENES=16 MM_EVAL_SCENES=4 MM_STEPS=2 MM_BATCH=2

expect() { # log pattern what
  if ! grep -q -- "$2" "$1"; then
    echo "FAIL: $3 (no '$2' in $1):"; tail -n 30 "$1"; exit 1
  fi
}

if [ "$WHICH" = all ] || [ "$WHICH" = llava ]; then
  MM_OUT="$WORK/llava" bash scripts/run.sh > "$WORK/llava.log" 2>&1 || { tail -n 30 "$WORK/llava.log"; exit 1; }
  expect "$WORK/llava.log" "== evaluate on held-out scenes" "run.sh evaluates"
  expect "$WORK/llava.log" "^all " "run.sh prints the accuracy table"
  expect "$WORK/llava.log" "^ASSISTANT: " "run.sh ends with a chat turn"
  for stage in pretrain_llm pretrain_vision stage1 stage2; do
    [ -s "$WORK/llava/$stage.safetensors" ] || { echo "FAIL: run.sh wrote no $stage checkpoint"; exit 1; }
  done
  echo "run.sh: ok"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = blip2 ]; then
  # Stage 1's entry takes the batch it was compiled for (16): MM_BATCH leaves it.
  MM_OUT="$WORK/blip2" bash scripts/run_blip2.sh > "$WORK/blip2.log" 2>&1 || { tail -n 30 "$WORK/blip2.log"; exit 1; }
  expect "$WORK/blip2.log" "image->text ITC" "run_blip2.sh measures retrieval"
  expect "$WORK/blip2.log" "== caption of the held-out image" "run_blip2.sh captions a held-out image"
  expect "$WORK/blip2.log" "^1 .*[A-Za-z]" "run_blip2.sh ranks captions"
  echo "run_blip2.sh: ok"
fi
if [ "$WHICH" = all ] || [ "$WHICH" = blip2-t5 ]; then
  # The encoder-decoder variant: the same script with MM_MODEL.
  MM_MODEL=blip2-t5-tiny MM_OUT="$WORK/blip2-t5" bash scripts/run_blip2.sh > "$WORK/blip2-t5.log" 2>&1 ||
    { tail -n 30 "$WORK/blip2-t5.log"; exit 1; }
  expect "$WORK/blip2-t5.log" "== train pretrain_llm" "run_blip2.sh pre-trains the T5"
  expect "$WORK/blip2-t5.log" "^caption " "run_blip2.sh scores the T5 variant's captions"
  expect "$WORK/blip2-t5.log" "== caption of the held-out image" "run_blip2.sh captions a held-out image with the T5"
  [ -s "$WORK/blip2-t5/stage2.safetensors" ] || { echo "FAIL: no stage-2 checkpoint of blip2-t5-tiny"; exit 1; }
  echo "run_blip2.sh (blip2-t5-tiny): ok"
fi
