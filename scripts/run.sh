#!/usr/bin/env bash
# The main job on built-in defaults, at a small size: set up and build; generate
# synthetic scenes and LLaVA data; compile the tiny LLaVA; run its declared
# stages (pretrain the LLM and the vision tower, then LLaVA's stage 1 and
# stage 2) with mmrun --train; evaluate on held-out scenes; and end with a chat
# turn about a held-out image. Everything lands in out/.
#   MM_SCENES=N MM_STEPS=K MM_BATCH=B MM_OUT=DIR bash scripts/run.sh    a larger run (docs/BENCHMARKS.md)
#   MM_STEPS_<STAGE>=K (for example MM_STEPS_PRETRAIN_VISION=500) sets one stage's steps.
#   MM_CONVERSATIONS=C conversation records per scene in the stage-2 data (mmdata --conversations).
set -euo pipefail
cd "$(dirname "$0")/.."
# MM_NO_SETUP=1: use the tools already built in build/ (the smoke test does).
if [ -z "${MM_NO_SETUP:-}" ]; then
  bash scripts/setup.sh
  bash scripts/build.sh >/dev/null
fi
SCENES=${MM_SCENES:-2000}
BATCH=${MM_BATCH:-8}
# Steps per stage (MM_STEPS sets all of them, MM_STEPS_<STAGE> one): about
# four minutes on 2 cores, most of it in the vision tower's pre-training
# (shapes take about 1,000 steps) and in stage 2, where the model learns to
# answer.
declare -A DEFAULT_STEPS=([pretrain_llm]=60 [pretrain_vision]=1000 [stage1]=30 [stage2]=500)
OUT=${MM_OUT:-out}
mkdir -p "$OUT"
B=${MM_BIN:-./build/bin}

echo "== data: $SCENES synthetic scenes"
$B/mmdata scenes --out "$OUT/data" --count "$SCENES" --eval-count "${MM_EVAL_SCENES:-40}" --seed 1 \
  --conversations "${MM_CONVERSATIONS:-2}" --quiet

echo "== compile"
$B/mmc compile models/llava-tiny.mlir -o "$OUT/llava-tiny.so"

train() { # stage data init save
  local var="MM_STEPS_${1^^}"
  local steps=${!var:-${MM_STEPS:-${DEFAULT_STEPS[$1]}}}
  echo "== train $1 ($steps steps of $BATCH samples)"
  $B/mmrun "$OUT/llava-tiny.so" --train "$1" --data "$2" --image-dir "$OUT/data" --steps "$steps" \
    --batch "$BATCH" --seed 1 ${3:+--init "$3"} --save "$4" --log "$4.jsonl"
}
train pretrain_llm "$OUT/data/instruct.json" "" "$OUT/pretrain_llm.safetensors"
train pretrain_vision "$OUT/data/patches.json" "$OUT/pretrain_llm.safetensors" "$OUT/pretrain_vision.safetensors"
train stage1 "$OUT/data/captions.json" "$OUT/pretrain_vision.safetensors" "$OUT/stage1.safetensors"
train stage2 "$OUT/data/instruct.json" "$OUT/stage1.safetensors" "$OUT/stage2.safetensors"

echo "== evaluate on held-out scenes"
$B/mmrun "$OUT/llava-tiny.so" --eval --weights "$OUT/stage2.safetensors" --data "$OUT/data/eval.json" \
  --image-dir "$OUT/data" --dump-answers "$OUT/eval-answers.jsonl"

# (a glob, not `ls | head`: under pipefail, ls killed by SIGPIPE once head has
# its line would end the script)
EVAL_IMAGES=("$OUT"/data/images/eval_*.png)
IMAGE=${EVAL_IMAGES[0]}
echo "== chat about the held-out image $IMAGE"
chat() { # question
  echo "USER: $1"
  printf 'ASSISTANT: '
  $B/mmrun "$OUT/llava-tiny.so" --chat --weights "$OUT/stage2.safetensors" --image "$IMAGE" \
    --prompt "$1" --max-new-tokens 60
}
chat "Describe the image in detail."
# The image's first held-out question, with the answer the scene gives.
QA=$(python3 - "$OUT/data/eval.json" "$(basename "$IMAGE")" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1])):
    if r["image"].endswith(sys.argv[2]):
        q, a = r["conversations"][0]["value"], r["conversations"][1]["value"]
        print(q.replace("<image>", "").strip() + "\t" + a)
        break
PY
)
if [ -n "$QA" ]; then
  chat "${QA%%$'\t'*}"
  echo "(the scene's answer: ${QA#*$'\t'})"
fi
