#!/usr/bin/env bash
# fuse-agreement.test's helper: MMRUN DIR STAGE DATA trains STAGE for three steps
# with the fused, the unfused and the --remat library from the same weights and
# data, and checks that every step's loss and gradient norm agree to 1e-4.
set -euo pipefail
mmrun=$1 dir=$2 stage=$3 data=$4
for lib in fused plain remat; do
  "$mmrun" "$dir/$lib.so" --train "$stage" --data "$data" --image-dir "$(dirname "$data")" --steps 3 --batch 2 \
    --seed 4 --sample-threads 1 --init "$dir/w.safetensors" --log "$dir/$stage-$lib.jsonl" >"$dir/$stage-$lib.out" 2>&1 || { cat "$dir/$stage-$lib.out"; exit 1; }
done
python3 - "$dir/$stage-fused.jsonl" "$dir/$stage-plain.jsonl" "$dir/$stage-remat.jsonl" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
for other in sys.argv[2:]:
    b = [json.loads(l) for l in open(other)]
    if len(a) != 3 or len(b) != 3:
        sys.exit(f"{len(a)} and {len(b)} logged steps")
    for x, y in zip(a, b):
        for k in ("loss", "grad_norm"):
            if not abs(x[k] - y[k]) <= 1e-4 * abs(y[k]):
                sys.exit(f"step {x.get('step')}: {k} {x[k]} fused, {y[k]} in {other}")
    print(sys.argv[1], "agrees with", other)
PY
