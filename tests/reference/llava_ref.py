#!/usr/bin/python3
"""Independent fp32 PyTorch reference of a LLaVA-1.5 forward pass.

This re-implements, from the published math, what Hugging Face's
`LlavaForConditionalGeneration` computes for one prompt (batch 1, no KV cache):

  CLIP vision tower  ->  hidden_states[vision_feature_layer] (CLS dropped)
  -> multi-modal projector (linear_1, act, linear_2)
  -> the projected rows replace, in order, the image-token embeddings
  -> LLaMA decoder (RMSNorm, RoPE rotate_half, GQA, causal) -> norm -> lm_head

It imports neither `transformers` nor `safetensors`; the checkpoint is read
with the small numpy safetensors reader below.  It is the ground truth that
mmc's compiled LLaVA pipeline is compared against.

Usage:
  llava_ref.py --config CONFIG.json --weights W.safetensors
               (--image IMG.png | --pixels PIX.f32) --tokens 1,4,5,6
               --dump-logits OUT.f32 [--compare OTHER.f32 --rtol 1e-4]
               [--dump-intermediates DIR]

  CONFIG.json   an object whose key "config" holds an HF LLaVA config.json
                (or the HF config itself at top level).
  --image       any PIL-readable image; CLIPImageProcessor preprocessing.
  --pixels      raw little-endian f32 [3, image_size, image_size] (already
                normalised).  --image / --pixels may each be repeated for
                several images; their features fill the image tokens in order.
                With neither, the run is text-only (no image tokens allowed).
  --tokens      comma-separated token ids (batch 1).
  --dump-logits raw little-endian f32, row-major [S, vocab].
  --compare     another such file; prints the differences and exits 1 when
                the max relative difference exceeds --rtol, on NaN/Inf, or on
                a size mismatch.

Threads: torch.set_num_threads($MMC_REF_THREADS) when that is set, else the
torch default.  Everything runs in torch.float32 with deterministic algorithms.
"""

import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

# --------------------------------------------------------------------------
# safetensors reader (numpy only)
# --------------------------------------------------------------------------

_ST_DTYPES = {
    "F64": (np.dtype("<f8"), 8),
    "F32": (np.dtype("<f4"), 4),
    "F16": (np.dtype("<f2"), 2),
    "BF16": (np.dtype("<u2"), 2),  # decoded below
    "I64": (np.dtype("<i8"), 8),
    "I32": (np.dtype("<i4"), 4),
    "I16": (np.dtype("<i2"), 2),
    "I8": (np.dtype("i1"), 1),
    "U8": (np.dtype("u1"), 1),
    "BOOL": (np.dtype("u1"), 1),
}


class SafetensorsError(ValueError):
    pass


def read_safetensors_header(path):
    """Returns (header dict without __metadata__, metadata, data_start, file_size)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) != 8:
            raise SafetensorsError(f"{path}: too short for a safetensors header")
        (hlen,) = struct.unpack("<Q", raw)
        if hlen > size - 8:
            raise SafetensorsError(f"{path}: header length {hlen} exceeds file size {size}")
        header = json.loads(f.read(hlen).decode("utf-8"))
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None)
    return header, meta, 8 + hlen, size


def bf16_to_f32(u16):
    """bfloat16 bits (uint16 array) -> float32 (exact: bf16 is the top half)."""
    u32 = np.ascontiguousarray(u16, dtype=np.uint32).reshape(-1) << 16
    return u32.view(np.float32).reshape(np.shape(u16))


def read_safetensors(path):
    """Reads every tensor of a safetensors file.

    Returns {name: np.ndarray}.  F16 and BF16 tensors are widened to float32
    (exactly); other dtypes keep their numpy dtype.
    """
    header, _, data_start, size = read_safetensors_header(path)
    data_len = size - data_start
    buf = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start, shape=(data_len,)) \
        if data_len > 0 else np.zeros((0,), np.uint8)
    out = {}
    for name, info in header.items():
        dtype = info.get("dtype")
        shape = info.get("shape")
        offs = info.get("data_offsets")
        if dtype not in _ST_DTYPES:
            raise SafetensorsError(f"{path}: tensor {name}: unsupported dtype {dtype}")
        if not isinstance(shape, list) or not isinstance(offs, list) or len(offs) != 2:
            raise SafetensorsError(f"{path}: tensor {name}: malformed entry {info}")
        npdt, itemsize = _ST_DTYPES[dtype]
        begin, end = int(offs[0]), int(offs[1])
        count = int(np.prod(shape)) if shape else 1
        if not (0 <= begin <= end <= data_len):
            raise SafetensorsError(f"{path}: tensor {name}: offsets {offs} outside data ({data_len} bytes)")
        if end - begin != count * itemsize:
            raise SafetensorsError(
                f"{path}: tensor {name}: {end - begin} bytes for shape {shape} of {dtype}")
        arr = np.frombuffer(bytearray(buf[begin:end]), dtype=npdt, count=count).reshape(shape)
        if dtype == "BF16":
            arr = bf16_to_f32(arr).reshape(shape)
        elif dtype == "F16":
            arr = arr.astype(np.float32)
        elif dtype == "BOOL":
            arr = arr.astype(np.bool_)
        out[name] = arr
    return out


# --------------------------------------------------------------------------
# config
# --------------------------------------------------------------------------

_VISION_DEFAULTS = dict(  # CLIPVisionConfig defaults
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
    num_channels=3, image_size=224, patch_size=32, hidden_act="quick_gelu", layer_norm_eps=1e-5)

_TEXT_DEFAULTS = dict(  # LlamaConfig defaults
    vocab_size=32000, hidden_size=4096, intermediate_size=11008, num_hidden_layers=32,
    num_attention_heads=32, num_key_value_heads=None, hidden_act="silu", rms_norm_eps=1e-6,
    rope_theta=10000.0, rope_scaling=None, tie_word_embeddings=False, head_dim=None)


def load_config(path):
    with open(path) as f:
        obj = json.load(f)
    cfg = obj["config"] if isinstance(obj, dict) and isinstance(obj.get("config"), dict) else obj
    if not isinstance(cfg, dict) or "vision_config" not in cfg or "text_config" not in cfg:
        raise ValueError(f"{path}: expected an HF LLaVA config with vision_config and text_config")
    return normalize_config(cfg)


def normalize_config(cfg):
    v = dict(_VISION_DEFAULTS)
    v.update(cfg.get("vision_config") or {})
    t = dict(_TEXT_DEFAULTS)
    t.update(cfg.get("text_config") or {})
    if t.get("num_key_value_heads") is None:
        t["num_key_value_heads"] = t["num_attention_heads"]
    if t.get("head_dim") is None:
        t["head_dim"] = t["hidden_size"] // t["num_attention_heads"]
    if t.get("rope_scaling") not in (None, {}):
        rs = t["rope_scaling"]
        kind = rs.get("rope_type", rs.get("type"))
        if kind not in ("default", None):
            raise NotImplementedError(f"rope_scaling {rs} is not supported by the reference")
    if "tie_word_embeddings" not in (cfg.get("text_config") or {}) and "tie_word_embeddings" in cfg:
        t["tie_word_embeddings"] = cfg["tie_word_embeddings"]
    image_token = cfg.get("image_token_index", cfg.get("image_token_id", 32000))
    return dict(
        vision=v, text=t,
        image_token_index=int(image_token),
        projector_hidden_act=cfg.get("projector_hidden_act", "gelu"),
        vision_feature_layer=cfg.get("vision_feature_layer", -2),
        vision_feature_select_strategy=cfg.get("vision_feature_select_strategy", "default"),
    )


def num_image_tokens(cfg):
    """Rows that one image contributes (patch count, +1 with strategy 'full')."""
    v = cfg["vision"]
    n = (v["image_size"] // v["patch_size"]) ** 2
    return n + (1 if cfg["vision_feature_select_strategy"] == "full" else 0)


# --------------------------------------------------------------------------
# activations (HF ACT2FN names)
# --------------------------------------------------------------------------

def act_fn(name):
    if name == "gelu":  # exact erf GELU
        return lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))
    if name in ("gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        return lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))
    if name == "quick_gelu":
        return lambda x: x * torch.sigmoid(1.702 * x)
    if name in ("silu", "swish"):
        return lambda x: x * torch.sigmoid(x)
    if name == "relu":
        return torch.relu
    raise NotImplementedError(f"activation {name!r}")


# --------------------------------------------------------------------------
# image preprocessing (CLIPImageProcessor defaults)
# --------------------------------------------------------------------------

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def resize_shortest_edge_size(w, h, shortest):
    """(new_w, new_h): shortest edge -> `shortest`, long edge int(shortest*long/short)."""
    if w <= h:
        return shortest, int(shortest * h / w)
    return int(shortest * w / h), shortest


def preprocess_image(path, image_size, crop_size=None):
    """PIL image -> float32 [3, crop, crop] exactly as CLIPImageProcessor does:
    RGB, resize shortest edge (BICUBIC on uint8), centre crop, *1/255, (x-mean)/std."""
    from PIL import Image
    crop_size = crop_size or image_size
    img = Image.open(path).convert("RGB")
    new_w, new_h = resize_shortest_edge_size(img.width, img.height, image_size)
    img = img.resize((new_w, new_h), resample=Image.BICUBIC)
    arr = np.asarray(img, dtype=np.uint8)  # [H, W, 3]
    h, w = arr.shape[:2]
    top = (h - crop_size) // 2
    left = (w - crop_size) // 2
    if top < 0 or left < 0:
        # Image smaller than the crop: zero-pad centred (ceil on the leading side).
        nh, nw = max(h, crop_size), max(w, crop_size)
        pad = np.zeros((nh, nw, 3), np.uint8)
        tp, lp = math.ceil((nh - h) / 2), math.ceil((nw - w) / 2)
        pad[tp:tp + h, lp:lp + w] = arr
        arr, top, left = pad, top + tp, left + lp
    arr = arr[top:top + crop_size, left:left + crop_size]
    x = (arr.astype(np.float64) * (1.0 / 255.0)).astype(np.float32)
    mean = np.array(CLIP_MEAN, dtype=np.float32)
    std = np.array(CLIP_STD, dtype=np.float32)
    x = (x - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1).astype(np.float32))


def read_pixels(path, image_size, channels=3):
    data = np.fromfile(path, dtype="<f4")
    want = channels * image_size * image_size
    if data.size != want:
        raise ValueError(f"{path}: {data.size} floats, expected {channels}x{image_size}x{image_size}={want}")
    return data.reshape(channels, image_size, image_size).astype(np.float32)


# --------------------------------------------------------------------------
# model
# --------------------------------------------------------------------------

class Weights:
    def __init__(self, arrays):
        self.arrays = arrays

    def has(self, name):
        return name in self.arrays

    def get(self, name, shape=None):
        if name not in self.arrays:
            raise KeyError(f"missing weight {name}")
        t = torch.from_numpy(np.ascontiguousarray(self.arrays[name], dtype=np.float32))
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(f"weight {name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
        return t

    def opt(self, name, shape=None):
        return self.get(name, shape) if name in self.arrays else None


def linear(x, w, b=None):
    y = torch.matmul(x, w.t())
    return y + b if b is not None else y


def layer_norm(x, g, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) * torch.rsqrt(var + eps) * g + b


def rms_norm(x, g, eps):
    var = (x * x).mean(-1, keepdim=True)
    return x * torch.rsqrt(var + eps) * g


def softmax_attention(q, k, v, scale, causal):
    """q [H,S,Dh], k/v [H,T,Dh] (already GQA-expanded) -> [H,S,Dh]."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * scale
    if causal:
        S, T = scores.shape[-2], scores.shape[-1]
        mask = torch.ones(S, T, dtype=torch.bool).triu(1 + (T - S))
        scores = scores.masked_fill(mask, float("-inf"))
    p = torch.softmax(scores, dim=-1)
    return torch.matmul(p, v)


def vision_tower(cfg, W, pixels, dump=None):
    """pixels [B,3,H,W] -> list of hidden states (len = layers + 1), each [B,N+1,D]."""
    v = cfg["vision"]
    D, P, L = v["hidden_size"], v["patch_size"], v["num_hidden_layers"]
    H = v["num_attention_heads"]
    Dh = D // H
    C = v["num_channels"]
    eps = v["layer_norm_eps"]
    act = act_fn(v["hidden_act"])
    pre = "vision_tower.vision_model."
    B, _, Himg, Wimg = pixels.shape
    if Himg != v["image_size"] or Wimg != v["image_size"]:
        raise ValueError(f"pixels are {Himg}x{Wimg}, config image_size is {v['image_size']}")
    gh, gw = Himg // P, Wimg // P
    N = gh * gw

    # Optional convolutional stem (mmc's llava-tiny; not in HF CLIP): 3x3 convs
    # with padding 1, each followed by exact GELU; the patch embedding then
    # cuts the stem's feature map into P / (product of strides) sized patches.
    stem_channels = v.get("stem_channels") or []
    stem_strides = v.get("stem_strides") or [1] * len(stem_channels)
    if len(stem_strides) != len(stem_channels):
        raise ValueError("vision_config: stem_channels and stem_strides differ in length")
    feats = pixels
    for i, (ch, st) in enumerate(zip(stem_channels, stem_strides)):
        cin = feats.shape[1]
        feats = torch.nn.functional.conv2d(feats, W.get(pre + f"embeddings.stem.{i}.weight", (ch, cin, 3, 3)),
                                           W.get(pre + f"embeddings.stem.{i}.bias", (ch,)), stride=st, padding=1)
        feats = act_fn("gelu")(feats)
    if stem_channels:
        P //= math.prod(stem_strides)
        C = stem_channels[-1]
    conv_w = W.get(pre + "embeddings.patch_embedding.weight", (D, C, P, P))
    # Patch embedding as an explicit unfold + matmul (== conv2d with stride P, no bias).
    patches = feats[:, :, :gh * P, :gw * P].reshape(B, C, gh, P, gw, P)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(B, N, C * P * P)
    x = torch.matmul(patches, conv_w.reshape(D, C * P * P).t())  # [B,N,D], row-major patches
    cls = W.get(pre + "embeddings.class_embedding", (D,))
    x = torch.cat([cls.reshape(1, 1, D).expand(B, 1, D), x], dim=1)
    x = x + W.get(pre + "embeddings.position_embedding.weight", (N + 1, D)).unsqueeze(0)
    if dump is not None:
        dump("vision_embeddings", x)
    x = layer_norm(x, W.get(pre + "pre_layrnorm.weight", (D,)), W.get(pre + "pre_layrnorm.bias", (D,)), eps)
    hidden = [x]
    scale = Dh ** -0.5
    for i in range(L):
        lp = pre + f"encoder.layers.{i}."
        h = layer_norm(x, W.get(lp + "layer_norm1.weight", (D,)), W.get(lp + "layer_norm1.bias", (D,)), eps)
        q = linear(h, W.get(lp + "self_attn.q_proj.weight", (D, D)), W.get(lp + "self_attn.q_proj.bias", (D,)))
        k = linear(h, W.get(lp + "self_attn.k_proj.weight", (D, D)), W.get(lp + "self_attn.k_proj.bias", (D,)))
        vv = linear(h, W.get(lp + "self_attn.v_proj.weight", (D, D)), W.get(lp + "self_attn.v_proj.bias", (D,)))
        T = x.shape[1]
        q = q.reshape(B, T, H, Dh).transpose(1, 2)
        k = k.reshape(B, T, H, Dh).transpose(1, 2)
        vv = vv.reshape(B, T, H, Dh).transpose(1, 2)
        a = torch.stack([softmax_attention(q[b], k[b], vv[b], scale, causal=False) for b in range(B)])
        a = a.transpose(1, 2).reshape(B, T, D)
        x = x + linear(a, W.get(lp + "self_attn.out_proj.weight", (D, D)), W.get(lp + "self_attn.out_proj.bias", (D,)))
        h = layer_norm(x, W.get(lp + "layer_norm2.weight", (D,)), W.get(lp + "layer_norm2.bias", (D,)), eps)
        I = v["intermediate_size"]
        h = act(linear(h, W.get(lp + "mlp.fc1.weight", (I, D)), W.get(lp + "mlp.fc1.bias", (I,))))
        x = x + linear(h, W.get(lp + "mlp.fc2.weight", (D, I)), W.get(lp + "mlp.fc2.bias", (D,)))
        hidden.append(x)
    return hidden


def selected_features(cfg, W, pixels, dump=None):
    """pixels [B,3,H,W] -> the vision tower's features the projector reads
    (vision_feature_layer, vision_feature_select_strategy) [B, Nimg, Dv]."""
    hidden = vision_tower(cfg, W, pixels, dump)
    layer = cfg["vision_feature_layer"]
    strategy = cfg["vision_feature_select_strategy"]
    if strategy not in ("default", "full"):
        raise ValueError(f"unknown vision_feature_select_strategy {strategy!r}")
    layers = layer if isinstance(layer, list) else [layer]
    pool = []
    for li in layers:
        hs = hidden[li]  # python indexing: -2 -> output of the second-to-last layer
        pool.append(hs[:, 1:] if strategy == "default" else hs)
    feats = torch.cat(pool, dim=-1)
    if dump is not None:
        dump("vision_selected", feats)
    return feats


def patch_logits(cfg, W, pixels):
    """pixels [B,3,H,W] -> [B, patches, classes]: llava-tiny's `patch_loss`
    entry, the selected features through `vision_pretrain_head`."""
    return linear(selected_features(cfg, W, pixels), W.get("vision_pretrain_head.weight"),
                  W.get("vision_pretrain_head.bias"))


def patch_and_cell_heads(W, x):
    """Patch features X through both pre-training heads of a tower that also learns
    each patch's object's grid cell: (class logits, cell logits)."""
    return (linear(x, W.get("vision_pretrain_head.weight"), W.get("vision_pretrain_head.bias")),
            linear(x, W.get("vision_pretrain_cell_head.weight"), W.get("vision_pretrain_cell_head.bias")))


def patch_and_cell_logits(cfg, W, pixels):
    """llava-tiny's `patch_loss` with patch_cells: the selected features through both heads."""
    return patch_and_cell_heads(W, selected_features(cfg, W, pixels))


def image_features(cfg, W, pixels, dump=None, selected=None):
    """pixels [B,3,H,W] -> projected image features [B, Nimg, text_hidden]; with SELECTED
    (selected_features' output: what the vision_embeds entry returns) the tower is not run."""
    feats = selected_features(cfg, W, pixels, dump) if selected is None else selected
    Dt = cfg["text"]["hidden_size"]
    Dv = feats.shape[-1]
    act = act_fn(cfg["projector_hidden_act"])
    y = linear(feats, W.get("multi_modal_projector.linear_1.weight", (Dt, Dv)),
               W.opt("multi_modal_projector.linear_1.bias", (Dt,)))
    y = act(y)
    y = linear(y, W.get("multi_modal_projector.linear_2.weight", (Dt, Dt)),
               W.opt("multi_modal_projector.linear_2.bias", (Dt,)))
    if dump is not None:
        dump("image_features", y)
    return y


def rope_cos_sin(S, Dh, theta, pos_offset=0):
    """HF LLaMA default rope: float32 inv_freq, emb = cat(freqs, freqs)."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, Dh, 2, dtype=torch.int64).float() / Dh))
    pos = torch.arange(pos_offset, pos_offset + S, dtype=torch.int64).float()
    freqs = pos[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], dim=-1)


def apply_rope(x, cos, sin):
    """x [..., S, Dh]; cos/sin [S, Dh]."""
    return x * cos + rotate_half(x) * sin


def merge_image_features(embeds, ids, feats, image_token):
    """embeds [S,D], ids [S] (long), feats [Nimg,D] -> [S,D]; in-order replacement."""
    pos = (ids == image_token).nonzero(as_tuple=True)[0]
    if pos.numel() != feats.shape[0]:
        raise ValueError(
            f"Image features and image tokens do not match: tokens {pos.numel()}, features {feats.shape[0]}")
    out = embeds.clone()
    out[pos] = feats.to(out.dtype)
    return out


def language_model(cfg, W, embeds, dump=None):
    """embeds [S,D] -> logits [S,V]."""
    t = cfg["text"]
    D, L, V = t["hidden_size"], t["num_hidden_layers"], t["vocab_size"]
    H, Hkv, Dh = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    I = t["intermediate_size"]
    eps = t["rms_norm_eps"]
    act = act_fn(t["hidden_act"])
    if H % Hkv != 0:
        raise ValueError(f"num_attention_heads {H} not a multiple of num_key_value_heads {Hkv}")
    rep = H // Hkv
    S = embeds.shape[0]
    cos, sin = rope_cos_sin(S, Dh, float(t["rope_theta"]))
    x = embeds
    pre = "language_model.model."
    for i in range(L):
        lp = pre + f"layers.{i}."
        h = rms_norm(x, W.get(lp + "input_layernorm.weight", (D,)), eps)
        q = linear(h, W.get(lp + "self_attn.q_proj.weight", (H * Dh, D)), W.opt(lp + "self_attn.q_proj.bias", (H * Dh,)))
        k = linear(h, W.get(lp + "self_attn.k_proj.weight", (Hkv * Dh, D)), W.opt(lp + "self_attn.k_proj.bias", (Hkv * Dh,)))
        v = linear(h, W.get(lp + "self_attn.v_proj.weight", (Hkv * Dh, D)), W.opt(lp + "self_attn.v_proj.bias", (Hkv * Dh,)))
        q = apply_rope(q.reshape(S, H, Dh).transpose(0, 1), cos, sin)
        k = apply_rope(k.reshape(S, Hkv, Dh).transpose(0, 1), cos, sin)
        v = v.reshape(S, Hkv, Dh).transpose(0, 1)
        k = k.repeat_interleave(rep, dim=0)  # head h uses kv head h // rep
        v = v.repeat_interleave(rep, dim=0)
        a = softmax_attention(q, k, v, Dh ** -0.5, causal=True)
        a = a.transpose(0, 1).reshape(S, H * Dh)
        x = x + linear(a, W.get(lp + "self_attn.o_proj.weight", (D, H * Dh)), W.opt(lp + "self_attn.o_proj.bias", (D,)))
        h = rms_norm(x, W.get(lp + "post_attention_layernorm.weight", (D,)), eps)
        g = linear(h, W.get(lp + "mlp.gate_proj.weight", (I, D)), W.opt(lp + "mlp.gate_proj.bias", (I,)))
        u = linear(h, W.get(lp + "mlp.up_proj.weight", (I, D)), W.opt(lp + "mlp.up_proj.bias", (I,)))
        x = x + linear(act(g) * u, W.get(lp + "mlp.down_proj.weight", (D, I)), W.opt(lp + "mlp.down_proj.bias", (D,)))
        if dump is not None:
            dump(f"text_layer{i}", x)
    x = rms_norm(x, W.get(pre + "norm.weight", (D,)), eps)
    if W.has("language_model.lm_head.weight"):
        head = W.get("language_model.lm_head.weight", (V, D))
    elif t.get("tie_word_embeddings"):
        head = W.get(pre + "embed_tokens.weight", (V, D))
    else:
        raise KeyError("missing weight language_model.lm_head.weight")
    return linear(x, head)


def llava_forward(cfg, arrays, pixel_list, tokens, dump=None):
    """cfg: normalize_config() output; arrays: {name: np.ndarray}; pixel_list: list of
    float32 [3,H,W] arrays (may be empty); tokens: list of int.  Returns logits [S,V]."""
    torch.use_deterministic_algorithms(True)
    W = arrays if isinstance(arrays, Weights) else Weights(arrays)
    t = cfg["text"]
    ids = torch.tensor(tokens, dtype=torch.long)
    V, D = t["vocab_size"], t["hidden_size"]
    if ids.numel() == 0:
        raise ValueError("empty token list")
    if int(ids.min()) < 0 or int(ids.max()) >= V:
        raise ValueError(f"token ids must lie in [0, {V})")
    with torch.no_grad():
        table = W.get("language_model.model.embed_tokens.weight", (V, D))
        embeds = table[ids]
        n_img_tok = int((ids == cfg["image_token_index"]).sum())
        if pixel_list:
            pixels = torch.from_numpy(np.stack(pixel_list).astype(np.float32))
            feats = image_features(cfg, W, pixels, dump).reshape(-1, D)
            embeds = merge_image_features(embeds, ids, feats, cfg["image_token_index"])
        elif n_img_tok:
            raise ValueError(f"{n_img_tok} image tokens but no image given")
        if dump is not None:
            dump("inputs_embeds", embeds)
        logits = language_model(cfg, W, embeds, dump)
    return logits


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def compare_logits(a, b, rtol):
    """a: ours, b: the other file.  Returns (ok, message)."""
    if a.size != b.size:
        return False, f"size mismatch: {a.size} vs {b.size} floats"
    if not np.all(np.isfinite(a)) or not np.all(np.isfinite(b)):
        return False, (f"non-finite values: ours {int(np.sum(~np.isfinite(a)))}, "
                       f"other {int(np.sum(~np.isfinite(b)))}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    diff = np.abs(a64 - b64)
    floor = 1e-2 * float(np.max(np.abs(b64))) if b64.size else 0.0
    denom = np.maximum(np.abs(b64), max(floor, 1e-30))
    rel = diff / denom
    max_abs = float(diff.max()) if diff.size else 0.0
    i = int(rel.argmax()) if rel.size else 0
    max_rel = float(rel[i]) if rel.size else 0.0
    msg = (f"max_abs_diff={max_abs:.6e} max_rel_diff={max_rel:.6e} "
           f"(rel = |ref-other| / max(|other|, 1e-2*max|other|), at flat index {i}) rtol={rtol:g}")
    return max_rel <= rtol, msg


def parse_tokens(s):
    try:
        return [int(x) for x in s.replace(" ", "").split(",") if x != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad --tokens {s!r}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--weights", required=True)
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--pixels", action="append", default=[])
    ap.add_argument("--tokens", required=True, type=parse_tokens)
    ap.add_argument("--dump-logits")
    ap.add_argument("--dump-intermediates", metavar="DIR",
                    help="write named intermediate tensors as raw f32 plus DIR/manifest.json")
    ap.add_argument("--compare")
    ap.add_argument("--rtol", type=float, default=1e-4)
    args = ap.parse_args(argv)

    threads = os.environ.get("MMC_REF_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)

    cfg = load_config(args.config)
    arrays = read_safetensors(args.weights)
    size = cfg["vision"]["image_size"]
    pix = [preprocess_image(p, size) for p in args.image]
    pix += [read_pixels(p, size, cfg["vision"]["num_channels"]) for p in args.pixels]

    dump = None
    manifest = {}
    if args.dump_intermediates:
        os.makedirs(args.dump_intermediates, exist_ok=True)

        def dump(name, tensor):
            arr = tensor.detach().to(torch.float32).contiguous().numpy()
            arr.astype("<f4").tofile(os.path.join(args.dump_intermediates, name + ".f32"))
            manifest[name] = list(arr.shape)

    try:
        logits = llava_forward(cfg, arrays, pix, args.tokens, dump)
    except (ValueError, KeyError) as e:
        print(f"llava_ref: error: {e}", file=sys.stderr)
        return 2
    out = logits.contiguous().numpy().astype("<f4")
    S, V = out.shape
    print(f"logits shape [{S}, {V}] argmax_last={int(out[-1].argmax())} "
          f"finite={bool(np.all(np.isfinite(out)))}")
    if dump is not None:
        with open(os.path.join(args.dump_intermediates, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
    if args.dump_logits:
        out.tofile(args.dump_logits)
    if not np.all(np.isfinite(out)):
        print("llava_ref: error: non-finite logits", file=sys.stderr)
        return 1
    if args.compare:
        other = np.fromfile(args.compare, dtype="<f4")
        ok, msg = compare_logits(out.reshape(-1), other, args.rtol)
        print(("PASS " if ok else "FAIL ") + msg)
        return 0 if ok else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
