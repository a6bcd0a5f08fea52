#!/usr/bin/env bash
# Training parity of the encoder-decoder BLIP-2 (models/blip2-t5-tiny.mlir)
# against PyTorch, step by step, as blip2_train_parity.sh checks blip2-tiny:
# mmrun trains 6 steps of batch 2 from the same initial weights and dumps its
# batches (encoder ids, decoder ids, targets); tests/reference/llava_train_ref.py
# replays them with blip2_ref.py's T5 math (float64) and compares
#   * step 0's gradients of every trainable parameter (before clipping): 1e-4,
#     or as far as 4 x PyTorch's own float32 error (below)
#   * the losses (and lr / grad_norm):                                    1e-4
#   * the weights after the steps (frozen ones must be bit-identical):    5e-3
# Gradients are not all within a flat 1e-4: PyTorch's own float32 run of
# these steps is up to 1.9e-4 off the float64 one (stage 2: Q-Former
# output_query.dense, 1.87e-4; pretrain_llm: decoder block 0's self-attention
# k, 1.77e-4), mmc 1.8e-4 and 1.9e-4: T5 scores are unscaled dot products of
# unit-RMS states, so float32 rounding grows through the attention more than
# in OPT or LLaMA, and how much depends on the batch. llava_train_ref.py
# --grads-float32-factor computes the float32 gradients of the first batch
# beside the float64 ones; a gradient over 1e-4 passes when its largest
# absolute error is at most 4 x PyTorch float32's, its max rel at most 1e-3
# and its norm-wise error within 1e-4 (a flat 2.5e-4 before; with the data's
# new caption splits four Q-Former tensors came to 2.1-2.6e-4 max rel, at
# 1.2-1.4 x PyTorch's absolute error and 2e-6 norm-wise; the largest ratio
# measured is 1.8 x). The
# Q-Former's attention key biases are left out of the weights comparison as
# in blip2_train_parity.sh (their gradient is identically zero).
# for
#   * stage2:       prefix language modelling: queries + caption prefix into
#                   the encoder, the suffix from the decoder; Q-Former +
#                   language projection trained through the frozen T5
#                   (activation gradients only);
#   * pretrain_llm: the whole T5 on text (the caption's tokens where the
#                   queries will stand): both relative position bias tables,
#                   gated-GELU feed-forwards, RMS norms, the untied head.
# The ViT, Q-Former and stage-1 paths are blip2-tiny's, checked there.
# Then chat: greedy decoding and beam search through encode + decoder_logits
# against the same over the reference (tests/reference/t5_generate_check.py).
# Norm and bias tensors are perturbed away from their initialisers.
#
#   usage: blip2_t5_train_parity.sh BUILD_DIR [--keep DIR]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [--keep DIR]" >&2; exit 2; }
BUILD=$(cd "$1" && pwd)
shift
KEEP=
if [ "${1:-}" = "--keep" ]; then KEEP=$2; fi
SRC=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
REF="$SRC/tests/reference/llava_train_ref.py"
DATA="$SRC/tests/reference/make_llava_train_data.py"
STEPS=6 BATCH=2 SEED=1 INIT_SEED=3
GRADS_RTOL=1e-4 GRADS_F32_FACTOR=4 LOSSES_RTOL=1e-4 WEIGHTS_RTOL=5e-3
ZERO_GRAD='attention\.key\.bias$'
if [ -n "$KEEP" ]; then
  mkdir -p "$KEEP"; T=$(cd "$KEEP" && pwd)
else
  T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
fi

echo "== compile models/blip2-t5-tiny.mlir"
"$BUILD/bin/mmc" compile "$SRC/models/blip2-t5-tiny.mlir" -o "$T/t5.so"
"$BUILD/bin/mmc" inspect "$T/t5.so" --json > "$T/t5.json"
echo "== data: generated scenes and their captions"
"$BUILD/bin/mmdata" scenes --out "$T/scenes" --count 12 --eval-count 0 --seed 2 --quiet
echo "== initial weights (seed $INIT_SEED), norms perturbed"
"$BUILD/bin/mmrun" "$T/t5.so" --save-init "$T/init0.safetensors" --seed "$INIT_SEED"
"$PY" "$DATA" perturb --manifest "$T/t5.json" --in "$T/init0.safetensors" --out "$T/init.safetensors" --seed 5

FAILED=0
run_stage() { # STAGE DATAFILE [REFERENCE ARGS...]  (images next to DATAFILE)
  local S=$1 D=$2 W="$T/$1" rc=0
  shift 2
  mkdir -p "$W"
  echo "== $S: $STEPS steps of batch $BATCH"
  "$BUILD/bin/mmrun" "$T/t5.so" --train "$S" --data "$D" --image-dir "$(dirname "$D")" --steps $STEPS --batch $BATCH \
    --seed $SEED --init "$T/init.safetensors" --log "$W/log.jsonl" --dump-batches "$W/batches.jsonl" \
    --dump-grads "$W/grads.safetensors" --save "$W/final.safetensors"
  "$PY" "$REF" --config "$T/t5.json" --weights "$T/init.safetensors" --batches "$W/batches.jsonl" --stage "$S" \
    --steps $STEPS --total-steps $STEPS --dtype float64 \
    --compare-grads "$W/grads.safetensors" --grads-rtol $GRADS_RTOL --grads-float32-factor $GRADS_F32_FACTOR \
    --compare-losses "$W/log.jsonl" --losses-rtol $LOSSES_RTOL \
    --compare-weights "$W/final.safetensors" --weights-rtol $WEIGHTS_RTOL --weights-skip "$ZERO_GRAD" "$@" || rc=$?
  if [ $rc != 0 ]; then echo "FAIL: $S training parity" >&2; FAILED=1; fi
}
run_stage stage2 "$T/scenes/image_captions.json"
run_stage pretrain_llm "$T/scenes/image_captions.json"

echo "== text-only records: the T5's pre-training reads no image, stage 2 needs one"
printf '[{"id": "a", "caption": "A red circle."}, {"id": "b", "caption": "Two blue squares on the left."}]' > "$T/text.json"
"$BUILD/bin/mmrun" "$T/t5.so" --train pretrain_llm --data "$T/text.json" --steps 1 --batch 2 \
  || { echo "FAIL: pretrain_llm on records without images" >&2; FAILED=1; }
if MSG=$("$BUILD/bin/mmrun" "$T/t5.so" --train stage2 --data "$T/text.json" --steps 1 --batch 2 2>&1) ||
   ! grep -q "record 0 (id 'a'): caption data needs an 'image'" <<< "$MSG"; then
  echo "FAIL: stage2 on records without images should name the record: $MSG" >&2; FAILED=1
fi

echo "== chat (encode + decoder_logits) against greedy decoding over the reference"
IMG=$(ls "$T"/scenes/images/*.png | head -n 1)
W="$T/init.safetensors"  # random weights: varied tokens
TOK="$SRC/models/tokenizers/llava-tiny.tokenizer.json"
PROMPT_IDS="4,$("$BUILD/bin/mmdata" tokenize --tokenizer "$TOK" --no-special "A red"),2"
GOT=$("$BUILD/bin/mmrun" "$T/t5.so" --chat --weights "$W" --image "$IMG" --prompt "A red" --max-new-tokens 8 2>/dev/null)
"$PY" "$SRC/tests/reference/t5_generate_check.py" "$T/t5.json" "$W" "$IMG" "$TOK" "$PROMPT_IDS" 8 "$GOT" || FAILED=1
echo "== chat --beams 3 against beam search over the reference"
GOT=$("$BUILD/bin/mmrun" "$T/t5.so" --chat --weights "$W" --image "$IMG" --prompt "A red" --max-new-tokens 6 --beams 3 2>/dev/null)
"$PY" "$SRC/tests/reference/t5_generate_check.py" "$T/t5.json" "$W" "$IMG" "$TOK" "$PROMPT_IDS" 6 "$GOT" 3 || FAILED=1

[ $FAILED = 0 ] || { echo "blip2-t5-tiny training parity: FAILED" >&2; exit 1; }
echo "blip2-t5-tiny training parity: gradients within $GRADS_RTOL (or $GRADS_F32_FACTOR x PyTorch float32's absolute error, 1e-3, and $GRADS_RTOL norm-wise), losses within $LOSSES_RTOL, weights within $WEIGHTS_RTOL;" \
  "chat decodes as the reference does"
