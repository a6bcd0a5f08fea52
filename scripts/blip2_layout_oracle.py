#!/usr/bin/env python3
"""How well blip2-tiny's pre-trained OPT reads a scene's layout: teacher-forced
exact match of the caption given a perfect context (where the queries will
stand, one position per cell of the grid: the sum of its colour's and its shape's
embeddings), by the number of objects in the scene.

The ceiling of BLIP-2's stage 2 here: the Q-Former can at best hand the frozen OPT
the context it was pre-trained on. The samples are mmrun's own (data
"caption_layout"), dumped without training them:

  mmc inspect --json models/blip2-tiny.mlir > manifest.json
  mmrun blip2-tiny.so --train pretrain_llm --data EVAL.json --image-dir DIR --steps 13 \\
      --batch 8 --lr 1e-30 --init WEIGHTS --dump-batches batches.jsonl
  /usr/bin/python3 scripts/blip2_layout_oracle.py manifest.json WEIGHTS batches.jsonl

EVAL.json: image-caption records with a "grid" (mmdata's eval_captions.json without
its "type" fields). A sample is right when the OPT's argmax is the next caption token
at every target position (blip2_ref.py's float64 forward pass).
"""
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import blip2_ref as B2  # noqa: E402
from llava_ref import read_safetensors  # noqa: E402


def main(manifest_path, weights_path, batches_path):
    raw = json.load(open(manifest_path))["config"]
    cfg = B2.normalize_config(raw)
    pad, positions = int(raw["pad_token_id"]), int(raw["num_query_tokens"])
    tensors = {k: torch.from_numpy(v.copy()).double() for k, v in read_safetensors(weights_path).items()}

    class Weights:
        def get(self, name, shape=None):
            return tensors[name]

    seen, by_objects = set(), collections.defaultdict(lambda: [0, 0])
    for line in open(batches_path):
        for s in json.loads(line)["samples"]:
            if s["id"] in seen:
                continue
            seen.add(s["id"])
            ids = torch.tensor(s["input_ids"])
            colours, shapes = torch.tensor(s["cell_colour_ids"]), torch.tensor(s["cell_shape_ids"])
            with torch.no_grad():
                pred = B2.layout_logits(cfg, Weights(), ids, colours, shapes).argmax(-1).tolist()
            right = all(p == t for p, t in zip(pred, s["targets"]) if t != -100)
            objects = sum(1 for x in s["cell_colour_ids"][:positions] if x != pad)
            by_objects[objects][0] += right
            by_objects[objects][1] += 1
    total = sum(r for r, _ in by_objects.values())
    print(f"teacher-forced exact captions: {total} of {len(seen)}")
    for n in sorted(by_objects):
        print(f"  {n} object(s): {by_objects[n][0]} / {by_objects[n][1]}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
