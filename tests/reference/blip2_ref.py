#!/usr/bin/python3
"""PyTorch reference of mmc's BLIP-2 (Hugging Face Blip2ForConditionalGeneration
with an OPT decoder), written from the architecture's description: the EVA-style
ViT, the Q-Former over learnable queries, the language projection and OPT.

llava_train_ref.py replays mmrun's training steps with this module's forward
math when the manifest's model_type is "blip-2"; the shared helpers (linear,
layer_norm, attention, activations, image preprocessing) come from llava_ref.py.

Conventions checked here against models/gen_blip2.py's IR:
  * vision: optional convolutional stem (mmc's tiny models), patch conv with
    bias, [CLS] first, position embedding [1, N+1, D], pre-LN layers whose
    fused qkv bias is [q_bias, 0, v_bias], exact GELU, post_layernorm applied
    to every token; eps 1e-6.
  * Q-Former: qformer.layernorm on the query tokens, post-LN BERT layers
    (self-attention; cross-attention to the image in layers i % f == 0; the
    query feed-forward), exact GELU, eps 1e-12.
  * OPT: the projected queries replace the <image> tokens' embeddings; learned
    positions embed_positions[2 + t]; pre-LN layers (ReLU), final LN, logits
    from the tied token embedding; eps 1e-5; causal attention.
"""
import torch

import llava_ref as R


def normalize_config(cfg):
    v, q, t = dict(cfg["vision_config"]), dict(cfg["qformer_config"]), dict(cfg["text_config"])
    v.setdefault("layer_norm_eps", 1e-6)
    v.setdefault("hidden_act", "gelu")
    q.setdefault("layer_norm_eps", 1e-12)
    q.setdefault("hidden_act", "gelu")
    q.setdefault("cross_attention_frequency", 2)
    t.setdefault("activation_function", "relu")
    return dict(model_type="blip-2", vision=v, qformer=q, text=t,
                num_query_tokens=int(cfg["num_query_tokens"]),
                image_token_index=int(cfg["image_token_index"]))


def num_image_tokens(cfg):
    return cfg["num_query_tokens"]


def _heads(x, H):
    B, T, D = x.shape
    return x.reshape(B, T, H, D // H).transpose(1, 2)


def _attend(q, k, v, H, causal=False):
    """q [B,S,D], k/v [B,T,D] -> [B,S,D]; softmax(q k^T / sqrt(Dh)) v per head."""
    B, S, D = q.shape
    scale = (D // H) ** -0.5
    qh, kh, vh = _heads(q, H), _heads(k, H), _heads(v, H)
    out = torch.stack([R.softmax_attention(qh[b], kh[b], vh[b], scale, causal=causal) for b in range(B)])
    return out.transpose(1, 2).reshape(B, S, D)


def vision_hidden(cfg, W, pixels):
    """pixels [B,3,H,W] -> the ViT's last hidden state before post_layernorm [B, N+1, D]."""
    v = cfg["vision"]
    D, P, L, H = v["hidden_size"], v["patch_size"], v["num_hidden_layers"], v["num_attention_heads"]
    eps, act = v["layer_norm_eps"], R.act_fn(v["hidden_act"])
    pre = "vision_model."
    B = pixels.shape[0]
    feats = pixels
    for i, (ch, st) in enumerate(zip(v.get("stem_channels") or [], v.get("stem_strides") or [])):
        feats = torch.nn.functional.conv2d(feats, W.get(pre + f"embeddings.stem.{i}.weight"),
                                           W.get(pre + f"embeddings.stem.{i}.bias"), stride=st, padding=1)
        feats = R.act_fn("gelu")(feats)
        P //= st
    x = torch.nn.functional.conv2d(feats, W.get(pre + "embeddings.patch_embedding.weight"),
                                   W.get(pre + "embeddings.patch_embedding.bias"), stride=P)
    x = x.flatten(2).transpose(1, 2)  # [B, N, D], row-major patches
    cls = W.get(pre + "embeddings.class_embedding", (1, 1, D)).expand(B, 1, D)
    x = torch.cat([cls, x], dim=1) + W.get(pre + "embeddings.position_embedding")
    for i in range(L):
        lp = pre + f"encoder.layers.{i}."
        h = R.layer_norm(x, W.get(lp + "layer_norm1.weight"), W.get(lp + "layer_norm1.bias"), eps)
        qb, vb = W.get(lp + "self_attn.q_bias"), W.get(lp + "self_attn.v_bias")
        bias = torch.cat([qb, torch.zeros_like(qb), vb])
        qkv = R.linear(h, W.get(lp + "self_attn.qkv.weight"), bias)
        q, k, vv = qkv.split(D, dim=-1)
        a = _attend(q, k, vv, H)
        x = x + R.linear(a, W.get(lp + "self_attn.projection.weight"), W.get(lp + "self_attn.projection.bias"))
        h = R.layer_norm(x, W.get(lp + "layer_norm2.weight"), W.get(lp + "layer_norm2.bias"), eps)
        h = act(R.linear(h, W.get(lp + "mlp.fc1.weight"), W.get(lp + "mlp.fc1.bias")))
        x = x + R.linear(h, W.get(lp + "mlp.fc2.weight"), W.get(lp + "mlp.fc2.bias"))
    return x


def image_embeds(cfg, W, pixels):
    """The ViT's output the Q-Former reads: post_layernorm over every token, [CLS] included."""
    x = vision_hidden(cfg, W, pixels)
    return R.layer_norm(x, W.get("vision_model.post_layernorm.weight"), W.get("vision_model.post_layernorm.bias"),
                        cfg["vision"]["layer_norm_eps"])


def patch_logits(cfg, W, pixels):
    """The tiny model's ViT pre-training head over the patch tokens ([CLS] dropped)."""
    x = image_embeds(cfg, W, pixels)[:, 1:]
    return R.linear(x, W.get("vision_pretrain_head.weight"), W.get("vision_pretrain_head.bias"))


def _post_ln_block(W, prefix, x, out, eps):
    """BERT's output block: LayerNorm(dense(out) + x)."""
    y = R.linear(out, W.get(prefix + ".dense.weight"), W.get(prefix + ".dense.bias")) + x
    return R.layer_norm(y, W.get(prefix + ".LayerNorm.weight"), W.get(prefix + ".LayerNorm.bias"), eps)


def qformer(cfg, W, img):
    """img [B, N+1, Dv] -> the queries' last hidden state [B, Q, Dq] (no text)."""
    q = cfg["qformer"]
    H, L, f, eps = q["num_attention_heads"], q["num_hidden_layers"], q["cross_attention_frequency"], q["layer_norm_eps"]
    act = R.act_fn(q["hidden_act"])
    B = img.shape[0]
    x = W.get("query_tokens").expand(B, -1, -1)
    x = R.layer_norm(x, W.get("qformer.layernorm.weight"), W.get("qformer.layernorm.bias"), eps)
    for i in range(L):
        lp = f"qformer.encoder.layer.{i}."

        def proj(name, inp):
            return R.linear(inp, W.get(lp + name + ".weight"), W.get(lp + name + ".bias"))
        a = _attend(proj("attention.attention.query", x), proj("attention.attention.key", x),
                    proj("attention.attention.value", x), H)
        x = _post_ln_block(W, lp + "attention.output", x, a, eps)
        if i % f == 0:
            c = _attend(proj("crossattention.attention.query", x), proj("crossattention.attention.key", img),
                        proj("crossattention.attention.value", img), H)
            x = _post_ln_block(W, lp + "crossattention.output", x, c, eps)
        h = act(proj("intermediate_query.dense", x))
        x = _post_ln_block(W, lp + "output_query", x, h, eps)
    return x


def query_embeds(cfg, W, pixels):
    """pixels [B,3,H,W] -> the projected queries [B, Q, D_llm]."""
    x = qformer(cfg, W, image_embeds(cfg, W, pixels))
    return R.linear(x, W.get("language_projection.weight"), W.get("language_projection.bias"))


def opt(cfg, W, embeds):
    """embeds [S, D] (positions 0..S-1) -> logits [S, V]."""
    t = cfg["text"]
    H, L, eps = t["num_attention_heads"], t["num_hidden_layers"], 1e-5
    pre = "language_model.model.decoder."
    S = embeds.shape[0]
    x = (embeds + W.get(pre + "embed_positions.weight")[2:2 + S])[None]
    for i in range(L):
        lp = pre + f"layers.{i}."

        def proj(name, inp):
            return R.linear(inp, W.get(lp + name + ".weight"), W.get(lp + name + ".bias"))
        h = R.layer_norm(x, W.get(lp + "self_attn_layer_norm.weight"), W.get(lp + "self_attn_layer_norm.bias"), eps)
        a = _attend(proj("self_attn.q_proj", h), proj("self_attn.k_proj", h), proj("self_attn.v_proj", h), H,
                    causal=True)
        x = x + proj("self_attn.out_proj", a)
        h = R.layer_norm(x, W.get(lp + "final_layer_norm.weight"), W.get(lp + "final_layer_norm.bias"), eps)
        x = x + proj("fc2", torch.relu(proj("fc1", h)))
    x = R.layer_norm(x, W.get(pre + "final_layer_norm.weight"), W.get(pre + "final_layer_norm.bias"), eps)
    return R.linear(x[0], W.get(pre + "embed_tokens.weight"))


def sample_logits(cfg, W, ids, pixels=None):
    """ids [S] (long; the <image> tokens stand for the queries), pixels [1,3,H,W] or None -> logits [S, V]."""
    embeds = W.get("language_model.model.decoder.embed_tokens.weight")[ids]
    if pixels is not None:
        feats = query_embeds(cfg, W, pixels)[0]
        embeds = R.merge_image_features(embeds, ids, feats, cfg["image_token_index"])
    return opt(cfg, W, embeds)

