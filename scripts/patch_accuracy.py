#!/usr/bin/env python3
"""How well the tiny vision tower sees: per-patch accuracy of its pre-training head.

    /usr/bin/python3 scripts/patch_accuracy.py WEIGHTS.safetensors DATA_DIR [--heads 4] [--limit N]
        [--stem-strides 1,2,1,2,1,2]

WEIGHTS holds the vision tower and `vision_pretrain_head` (the output of
`mmrun --train pretrain_vision` or any later stage); DATA_DIR is an `mmdata
scenes` output (its patches.json and images; use scenes the tower never
trained on, e.g. `mmdata scenes --seed 7`). The tower's sizes are read from
the weights; the forward pass is the PyTorch reference's
(tests/reference/llava_ref.py), features from the second-to-last layer as the
model file's `patch_loss` takes them. Prints the accuracy over all patches,
background patches and object patches, and for object patches the share whose
predicted class has the right colour, shape and size (the label is
1 + (colour x shapes + shape) x 2 + large, as mmdata writes it).
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llava_ref as ref  # noqa: E402

SHAPES = 5  # mmdata's shapes: circle, square, triangle, diamond, cross


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("data_dir")
    ap.add_argument("--heads", type=int, default=4, help="the tower's attention heads (default 4, llava-tiny's)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N images")
    ap.add_argument("--stem-strides", default="1,2,1,2,1,2",
                    help="strides of the convolutional stem's layers, if the weights have one (llava-tiny's)")
    a = ap.parse_args()

    try:
        arrays = ref.read_safetensors(a.weights)
    except (OSError, ValueError) as e:
        sys.exit(f"{a.weights}: {e}")
    if "vision_pretrain_head.weight" not in arrays:
        sys.exit(f"{a.weights}: no vision_pretrain_head.weight (not a llava-tiny checkpoint after pretrain_vision?)")
    pre = "vision_tower.vision_model."
    D, _, P, _ = arrays[pre + "embeddings.patch_embedding.weight"].shape
    grid = int(round((arrays[pre + "embeddings.position_embedding.weight"].shape[0] - 1) ** 0.5))
    # A convolutional stem (llava-tiny's): its channels from the weights, its strides from --stem-strides.
    stem = [arrays[pre + f"embeddings.stem.{i}.weight"].shape[0]
            for i in range(64) if pre + f"embeddings.stem.{i}.weight" in arrays]
    strides = [int(x) for x in a.stem_strides.split(",")][:len(stem)] if stem else []
    if len(strides) != len(stem):
        sys.exit(f"{a.weights}: a stem of {len(stem)} convolutions, but --stem-strides gives {len(strides)}")
    for st in strides:
        P *= st
    layers = 1 + max(int(k[len(pre + "encoder.layers."):].split(".")[0]) for k in arrays
                     if k.startswith(pre + "encoder.layers."))
    inter = arrays[pre + "encoder.layers.0.mlp.fc1.weight"].shape[0]
    cfg = ref.normalize_config({
        "vision_config": dict(hidden_size=D, intermediate_size=inter, num_hidden_layers=layers,
                              num_attention_heads=a.heads, image_size=P * grid, patch_size=P, num_channels=3,
                              stem_channels=stem, stem_strides=strides),
        "text_config": {}, "vision_feature_layer": -2, "vision_feature_select_strategy": "default"})
    W = ref.Weights(arrays)

    path = os.path.join(a.data_dir, "patches.json")
    try:
        with open(path) as f:
            records = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: {e}")
    if a.limit:
        records = records[:a.limit]
    pixels = torch.stack([torch.from_numpy(ref.preprocess_image(os.path.join(a.data_dir, r["image"]), P * grid))
                          for r in records])
    labels = torch.tensor([r["patch_labels"] for r in records])
    if labels.shape[1] != grid * grid:
        sys.exit(f"{path}: {labels.shape[1]} labels per image, but the tower has {grid} x {grid} patches")
    with torch.no_grad():
        logits = ref.patch_logits(cfg, W, pixels)
    pred = logits.argmax(-1)
    obj = labels > 0
    truth, guess = labels[obj] - 1, pred[obj] - 1
    seen = guess >= 0  # an object patch predicted as background counts as wrong for every attribute

    def share(x):
        return f"{100.0 * float(x.float().mean()):.1f}%"

    print(f"{len(records)} images, {labels.numel()} patches, {int(obj.sum())} showing an object")
    print(f"all patches         {share(pred == labels)}")
    print(f"background patches  {share(pred[~obj] == 0)}")
    print(f"object patches      {share(guess == truth)} (as background: {share(~seen)})")
    for name, part in (("colour", lambda c: c // 2 // SHAPES), ("shape", lambda c: c // 2 % SHAPES),
                       ("size", lambda c: c % 2)):
        print(f"  right {name:<7}     {share(seen & (part(guess) == part(truth)))}")


if __name__ == "__main__":
    main()
