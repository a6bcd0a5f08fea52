#!/usr/bin/env python3
"""Where blip2-tiny's queries look, and whether its ViT says where a patch is.

blip2-tiny's OPT is pre-trained to read query k as the object in cell k of the
scene's 3 x 3 grid (docs/BENCHMARKS.md), so each query has to attend to its own
cell. Two measurements on a trained checkpoint (float64 forward pass of
tests/reference/blip2_ref.py):

  1. For every query k whose cell holds an object, the share of its
     cross-attention (mean over heads) that lands on patches of its own cell,
     of the other occupied cells, and of the empty cells, by the number of
     objects in the scene. Attention by place puts most of it on its own cell;
     attention by content spreads it over all objects alike (own / (own +
     other) near 1 / objects).
  2. A linear probe (ridge regression to one-hot targets, 3/4 of the images
     to fit, 1/4 to score) of each patch's index (64 classes) and grid cell
     (9) from the ViT's output, the features the cross-attention's keys read.

  mmc inspect --json models/blip2-tiny.mlir > manifest.json
  /usr/bin/python3 scripts/blip2_query_attention.py manifest.json WEIGHTS \\
      DATA/eval_captions.json [--probe DATA/image_captions.json] [--images N]

A patch belongs to the cell that holds its centre (a 64-px image, 8-px patches,
21.3-px cells).
"""
import argparse
import collections
import json
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import blip2_ref as B2  # noqa: E402
import llava_ref as R  # noqa: E402


def cell_of_patches(image, patch):
    side, cell = image // patch, image / 3
    return [min(2, int(((p // side) + 0.5) * patch / cell)) * 3 + min(2, int(((p % side) + 0.5) * patch / cell))
            for p in range(side * side)]


def load(manifest, weights):
    cfg = B2.normalize_config(json.load(open(manifest))["config"])
    tensors = {k: torch.from_numpy(v.copy()).double() for k, v in R.read_safetensors(weights).items()}

    class Weights:
        def get(self, name, shape=None):
            return tensors[name]
    return cfg, Weights()


def pixels(cfg, path):
    return torch.from_numpy(R.preprocess_image(path, cfg["vision"]["image_size"])).double()[None]


def cross_attention_maps(cfg, W, img):
    """The Q-Former's queries over img [1, N+1, D]: {layer: [Q, N+1] attention, mean over heads}."""
    q = cfg["qformer"]
    H, eps, act = q["num_attention_heads"], q["layer_norm_eps"], R.act_fn(q["hidden_act"])
    x = R.layer_norm(W.get("query_tokens"), W.get("qformer.layernorm.weight"), W.get("qformer.layernorm.bias"), eps)
    maps = {}
    for i in range(q["num_hidden_layers"]):
        lp = f"qformer.encoder.layer.{i}."

        def proj(name, inp):
            return R.linear(inp, W.get(lp + name + ".weight"), W.get(lp + name + ".bias"))
        a = B2._attend(proj("attention.attention.query", x), proj("attention.attention.key", x),
                       proj("attention.attention.value", x), H)
        x = B2._post_ln_block(W, lp + "attention.output", x, a, eps)
        if i % q["cross_attention_frequency"] == 0:
            # blip2_ref's _attend, with the probabilities kept: [1, H, Q, N+1].
            qh = B2._heads(proj("crossattention.attention.query", x), H)
            kh = B2._heads(proj("crossattention.attention.key", img), H)
            vh = B2._heads(proj("crossattention.attention.value", img), H)
            p = torch.softmax(qh @ kh.transpose(-1, -2) / qh.shape[-1] ** 0.5, -1)
            maps[i] = p[0].mean(0)
            c = (p @ vh).transpose(1, 2).reshape(x.shape)
            x = B2._post_ln_block(W, lp + "crossattention.output", x, c, eps)
        x = B2._post_ln_block(W, lp + "output_query", x, act(proj("intermediate_query.dense", x)), eps)
    return maps


def attention_shares(cfg, W, records, base, cells):
    shares = collections.defaultdict(lambda: collections.defaultdict(list))  # layer -> objects -> rows
    for r in records:
        with torch.no_grad():
            maps = cross_attention_maps(cfg, W, B2.image_embeds(cfg, W, pixels(cfg, os.path.join(base, r["image"]))))
        occupied = [c for c, obj in enumerate(r["grid"]) if obj]
        for layer, p in maps.items():
            by_cell = torch.zeros(p.shape[0], 9, dtype=p.dtype)
            for patch, c in enumerate(cells):
                by_cell[:, c] += p[:, 1 + patch]
            for k in occupied:
                if k >= p.shape[0]:
                    continue
                own = by_cell[k, k].item()
                other = sum(by_cell[k, c].item() for c in occupied if c != k)
                shares[layer][len(occupied)].append((own, other, by_cell[k].sum().item() - own - other))
    for layer in sorted(shares):
        for n in sorted(shares[layer]):
            rows = shares[layer][n]
            own, other, empty = (sum(x[j] for x in rows) / len(rows) for j in range(3))
            print(f"layer {layer}, {n} object(s): query k's attention on its own cell {own:.2f}, other occupied "
                  f"cells {other:.2f}, empty cells {empty:.2f}; own / (own + other) {own / (own + other):.2f} "
                  f"(by content alone about {1 / n:.2f})")


def probe(cfg, W, records, base, cells):
    with torch.no_grad():
        X = torch.stack([B2.image_embeds(cfg, W, pixels(cfg, os.path.join(base, r["image"])))[0, 1:]
                         for r in records])  # [images, patches, D]
    fit_n = len(records) * 3 // 4

    def design(x):
        flat = x.reshape(-1, x.shape[-1])
        return torch.cat([flat, torch.ones(flat.shape[0], 1, dtype=flat.dtype)], 1)
    for name, labels in (("patch index", list(range(len(cells)))), ("grid cell", cells)):
        y = torch.tensor(labels).repeat(len(records), 1)
        classes = max(labels) + 1
        A, Y = design(X[:fit_n]), torch.nn.functional.one_hot(y[:fit_n].reshape(-1), classes).double()
        coef = torch.linalg.solve(A.T @ A + 1e-2 * torch.eye(A.shape[1], dtype=A.dtype), A.T @ Y)
        acc = ((design(X[fit_n:]) @ coef).argmax(1) == y[fit_n:].reshape(-1)).double().mean().item()
        print(f"linear probe of the ViT output, {name} ({classes} classes): {acc:.3f} on held-out images")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest")
    ap.add_argument("weights")
    ap.add_argument("data", help="image-caption records with a grid (mmdata's eval_captions.json)")
    ap.add_argument("--images", type=int, default=60, help="records to score (default 60)")
    ap.add_argument("--probe", metavar="DATA", help="also fit the position probe on DATA's images")
    a = ap.parse_args()
    cfg, W = load(a.manifest, a.weights)
    cells = cell_of_patches(cfg["vision"]["image_size"], cfg["vision"]["patch_size"])
    attention_shares(cfg, W, json.load(open(a.data))[:a.images], os.path.dirname(a.data), cells)
    if a.probe:
        probe(cfg, W, json.load(open(a.probe))[:400], os.path.dirname(a.probe), cells)


if __name__ == "__main__":
    main()
