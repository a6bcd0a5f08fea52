#!/usr/bin/python3
"""Writes a random-weight LLaVA-1.5 checkpoint (HF tensor names) and a test image.

Usage:
  make_random_llava.py --config CONFIG.json --weights OUT.safetensors
                       [--image OUT.png] [--image-size WxH] [--seed 0]
                       [--dtype F32|F16|BF16] [--emit-config]
                       [--print-tokens N_TEXT]

  --config        CONFIG.json as for llava_ref.py ({"config": {...}} or the HF
                  config at top level).  With --emit-config the file is
                  (over)written with the small default config below first.
  --weights       output safetensors file with every tensor llava_ref.py reads
                  (plus vision post_layernorm, which LLaVA does not use, and any
                  other parameter an mmc manifest given as CONFIG lists).
  --image         output PNG: a deterministic, non-square RGB pattern so that
                  the shortest-edge resize and centre crop are exercised.
  --print-tokens  prints a comma-separated prompt of N_TEXT text tokens around
                  exactly one image's worth of image tokens.

Initialisation: matrices/embeddings ~ N(0, 0.02); norm/LN weights 1 + N(0, 0.5)
(so scales are exercised); biases N(0, 0.02) (non-zero so biases are
exercised).  numpy's default_rng(seed) makes the result reproducible.
"""

import argparse
import json
import os
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llava_ref  # noqa: E402  (config normalisation only)

DEFAULT_CONFIG = {
    "model_type": "llava",
    "image_token_index": 4,
    "projector_hidden_act": "gelu",
    "vision_feature_layer": -2,
    "vision_feature_select_strategy": "default",
    "vision_config": {
        "model_type": "clip_vision_model", "hidden_size": 128, "intermediate_size": 512,
        "num_hidden_layers": 4, "num_attention_heads": 4, "image_size": 64, "patch_size": 8,
        "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu", "projection_dim": 128,
    },
    "text_config": {
        "model_type": "llama", "hidden_size": 256, "intermediate_size": 688, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 512, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 2048, "hidden_act": "silu",
        "tie_word_embeddings": False,
    },
}


def weight_shapes(cfg):
    """Ordered list of (name, shape, kind) with kind in {mat, norm, bias}."""
    v, t = cfg["vision"], cfg["text"]
    D, I, P, C = v["hidden_size"], v["intermediate_size"], v["patch_size"], v["num_channels"]
    N = (v["image_size"] // P) ** 2
    out = []
    vp = "vision_tower.vision_model."
    # An optional convolutional stem (llava-tiny): 3x3 convs, then patches of
    # the stem's map.
    stem = list(zip(v.get("stem_channels") or [], v.get("stem_strides") or []))
    for i, (ch, st) in enumerate(stem):
        out += [(vp + f"embeddings.stem.{i}.weight", (ch, C, 3, 3), "conv"),
                (vp + f"embeddings.stem.{i}.bias", (ch,), "bias")]
        C, P = ch, P // st
    out += [(vp + "embeddings.patch_embedding.weight", (D, C, P, P), "mat"),
            (vp + "embeddings.class_embedding", (D,), "mat"),
            (vp + "embeddings.position_embedding.weight", (N + 1, D), "mat"),
            (vp + "pre_layrnorm.weight", (D,), "norm"),
            (vp + "pre_layrnorm.bias", (D,), "bias")]
    for i in range(v["num_hidden_layers"]):
        lp = vp + f"encoder.layers.{i}."
        for p in ("q", "k", "v", "out"):
            out += [(lp + f"self_attn.{p}_proj.weight", (D, D), "mat"),
                    (lp + f"self_attn.{p}_proj.bias", (D,), "bias")]
        out += [(lp + "layer_norm1.weight", (D,), "norm"), (lp + "layer_norm1.bias", (D,), "bias"),
                (lp + "mlp.fc1.weight", (I, D), "mat"), (lp + "mlp.fc1.bias", (I,), "bias"),
                (lp + "mlp.fc2.weight", (D, I), "mat"), (lp + "mlp.fc2.bias", (D,), "bias"),
                (lp + "layer_norm2.weight", (D,), "norm"), (lp + "layer_norm2.bias", (D,), "bias")]
    out += [(vp + "post_layernorm.weight", (D,), "norm"), (vp + "post_layernorm.bias", (D,), "bias")]

    Dt, It, V = t["hidden_size"], t["intermediate_size"], t["vocab_size"]
    H, Hkv, Dh = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    layers = cfg["vision_feature_layer"]
    nsel = len(layers) if isinstance(layers, list) else 1
    out += [("multi_modal_projector.linear_1.weight", (Dt, D * nsel), "mat"),
            ("multi_modal_projector.linear_1.bias", (Dt,), "bias"),
            ("multi_modal_projector.linear_2.weight", (Dt, Dt), "mat"),
            ("multi_modal_projector.linear_2.bias", (Dt,), "bias")]
    tp = "language_model.model."
    out += [(tp + "embed_tokens.weight", (V, Dt), "mat")]
    for i in range(t["num_hidden_layers"]):
        lp = tp + f"layers.{i}."
        out += [(lp + "self_attn.q_proj.weight", (H * Dh, Dt), "mat"),
                (lp + "self_attn.k_proj.weight", (Hkv * Dh, Dt), "mat"),
                (lp + "self_attn.v_proj.weight", (Hkv * Dh, Dt), "mat"),
                (lp + "self_attn.o_proj.weight", (Dt, H * Dh), "mat"),
                (lp + "mlp.gate_proj.weight", (It, Dt), "mat"),
                (lp + "mlp.up_proj.weight", (It, Dt), "mat"),
                (lp + "mlp.down_proj.weight", (Dt, It), "mat"),
                (lp + "input_layernorm.weight", (Dt,), "norm"),
                (lp + "post_attention_layernorm.weight", (Dt,), "norm")]
    out += [(tp + "norm.weight", (Dt,), "norm")]
    if not t.get("tie_word_embeddings"):
        out += [("language_model.lm_head.weight", (V, Dt), "mat")]
    return out


def random_weights(cfg, seed=0, mat_std=0.02, norm_std=0.5, bias_std=0.02):
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape, kind in weight_shapes(cfg):
        if kind == "mat":
            a = rng.normal(0.0, mat_std, size=shape)
        elif kind == "conv":  # 1/sqrt(fan-in), as the model file initialises the stem
            a = rng.normal(0.0, 1.0 / np.sqrt(np.prod(shape[1:])), size=shape)
        elif kind == "norm":
            a = 1.0 + rng.normal(0.0, norm_std, size=shape)
        else:
            a = rng.normal(0.0, bias_std, size=shape)
        out[name] = a.astype(np.float32)
    return out


def f32_to_bf16_bits(a):
    """Round-to-nearest-even float32 -> bfloat16 bit patterns (uint16)."""
    u = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
    return rounded.astype(np.uint16)


def write_safetensors(path, tensors, dtype="F32", metadata=None):
    """tensors: {name: np.ndarray}.  Float arrays are stored as `dtype`
    (F32/F16/BF16); int32/int64 arrays keep I32/I64."""
    header = {}
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        if arr.dtype == np.int32:
            dt, raw = "I32", arr.astype("<i4").tobytes()
        elif arr.dtype == np.int64:
            dt, raw = "I64", arr.astype("<i8").tobytes()
        elif dtype == "F32":
            dt, raw = "F32", arr.astype("<f4").tobytes()
        elif dtype == "F16":
            dt, raw = "F16", arr.astype("<f2").tobytes()
        elif dtype == "BF16":
            dt, raw = "BF16", f32_to_bf16_bits(arr).astype("<u2").tobytes()
        else:
            raise ValueError(f"dtype {dtype}")
        header[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    header["__metadata__"] = metadata or {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((8 - len(hjson) % 8) % 8)  # pad so the data start is 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def write_test_image(path, width, height, seed=0):
    """Smooth gradients plus noise and a few blocks; RGB PNG."""
    from PIL import Image
    rng = np.random.default_rng(seed + 1)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    r = 255.0 * xx / max(width - 1, 1)
    g = 255.0 * yy / max(height - 1, 1)
    b = 127.5 + 127.5 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 20, size=(height, width, 3))
    img[height // 4:height // 2, width // 3:width // 2] = (250, 10, 40)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    Image.fromarray(img, mode="RGB").save(path)


def prompt_tokens(cfg, n_text, seed=0):
    """n_text text tokens (split around the image) plus one image's image tokens."""
    rng = np.random.default_rng(seed + 2)
    V, img = cfg["text"]["vocab_size"], cfg["image_token_index"]
    text = [int(x) for x in rng.integers(0, V, size=n_text)]
    text = [x if x != img else (x + 1) % V for x in text]
    nimg = llava_ref.num_image_tokens(cfg)
    head = max(1, n_text // 3) if n_text else 0
    return text[:head] + [img] * nimg + text[head:]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image")
    ap.add_argument("--image-size", default="80x72", help="WxH of the PNG (default 80x72)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", default="F32", choices=["F32", "F16", "BF16"])
    ap.add_argument("--emit-config", action="store_true")
    ap.add_argument("--print-tokens", type=int, metavar="N_TEXT")
    args = ap.parse_args(argv)

    if args.emit_config:
        with open(args.config, "w") as f:
            json.dump({"config": DEFAULT_CONFIG}, f, indent=2)
    cfg = llava_ref.load_config(args.config)
    weights = random_weights(cfg, args.seed)
    # A model file may declare parameters outside LLaVA's (mmc's manifest lists
    # them: llava-tiny's vision pre-training head); they get N(0, 0.02) too.
    with open(args.config) as f:
        manifest = json.load(f)
    extra_rng = np.random.default_rng(args.seed + 1)
    for p in manifest.get("parameters", []) if isinstance(manifest, dict) else []:
        if p["name"] not in weights:
            weights[p["name"]] = (extra_rng.standard_normal(p["shape"]) * 0.02).astype(np.float32)
    write_safetensors(args.weights, weights, args.dtype)
    if args.image:
        w, h = (int(s) for s in args.image_size.lower().split("x"))
        write_test_image(args.image, w, h, args.seed)
    if args.print_tokens is not None:
        print(",".join(str(x) for x in prompt_tokens(cfg, args.print_tokens, args.seed)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
