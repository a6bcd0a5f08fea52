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
  * stage 1 (stage1_loss): the Q-Former over [queries; text] with BERT's
    text embeddings, one pass per loss under its mask (itc_unimodal,
    itm_bidirectional, itg_multimodal_causal; keys at or past the row's length
    masked); the query positions cross-attend and take the query feed-forward,
    the text positions the text feed-forward; ITC over the best query's
    similarity / temp, ITM on the mean query output over [positives, hard-
    negative images, hard-negative texts] (sample_negatives: mm.sample_negatives'
    inverse transform), ITG with [DEC] first and BERT's LM head (tied decoder).
"""
import math

import numpy as np
import torch

import llava_ref as R


def normalize_config(cfg):
    v, q, t = dict(cfg["vision_config"]), dict(cfg["qformer_config"]), dict(cfg["text_config"])
    v.setdefault("layer_norm_eps", 1e-6)
    v.setdefault("hidden_act", "gelu")
    q.setdefault("layer_norm_eps", 1e-12)
    q.setdefault("hidden_act", "gelu")
    q.setdefault("cross_attention_frequency", 2)
    if t.get("model_type") != "t5":
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


def patch_and_cell_logits(cfg, W, pixels):
    """The ViT pre-training's two heads (blip2-tiny): patch classes and the grid cell of each
    patch's object, over the patch tokens."""
    return R.patch_and_cell_heads(W, image_embeds(cfg, W, pixels)[:, 1:])


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


def query_embeds(cfg, W, pixels, embeds=None):
    """pixels [B,3,H,W] -> the projected queries [B, Q, D_llm]; with EMBEDS (image_embeds'
    output: what the vision_embeds entry returns) the ViT is not run."""
    x = qformer(cfg, W, image_embeds(cfg, W, pixels) if embeds is None else embeds)
    return R.linear(x, W.get("language_projection.weight"), W.get("language_projection.bias"))


# The smallest |x| / rms(x) over the OPT's ReLU inputs since the last reset.
# An input within float32 rounding of zero (about 1e-6 of the rms) can fall
# on the other side of the kink in mmc's float32 run, and then that unit's
# whole gradient flows (or does not) where float64's does not (or does):
# the trainer reports it with each step so that such a failure names its
# cause instead of looking like a wrong kernel.
RELU_KINK = [math.inf]


def _relu(x):
    with torch.no_grad():
        rms = x.pow(2).mean().sqrt()
        if rms > 0:
            RELU_KINK[0] = min(RELU_KINK[0], float(x.abs().min() / rms))
    return torch.relu(x)


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
        x = x + proj("fc2", _relu(proj("fc1", h)))
    x = R.layer_norm(x, W.get(pre + "final_layer_norm.weight"), W.get(pre + "final_layer_norm.bias"), eps)
    return R.linear(x[0], W.get(pre + "embed_tokens.weight"))


def sample_logits(cfg, W, ids, pixels=None, vit=None):
    """ids [S] (long; the <image> tokens stand for the queries), pixels [1,3,H,W] or None (or
    VIT, the ViT's output [1, Nv, Dv], in their place) -> logits [S, V]."""
    embeds = W.get("language_model.model.decoder.embed_tokens.weight")[ids]
    # A text-context sample (blip2_prefix) has no <image> token: nothing to merge.
    if (pixels is not None or vit is not None) and bool((ids == cfg["image_token_index"]).any()):
        feats = query_embeds(cfg, W, pixels, vit)[0]
        embeds = R.merge_image_features(embeds, ids, feats, cfg["image_token_index"])
    return opt(cfg, W, embeds)


def layout_logits(cfg, W, ids, colours, shapes):
    """The OPT's layout pre-training (layout_lm_loss): ids [S] (long) with an <image> token per
    query, colours / shapes [Q] (long): query k's embedding is E[colours[k]] + E[shapes[k]]."""
    table = W.get("language_model.model.decoder.embed_tokens.weight")
    embeds = R.merge_image_features(table[ids], ids, table[colours] + table[shapes], cfg["image_token_index"])
    return opt(cfg, W, embeds)



# --------------------------------------------------------------------------
# The encoder-decoder variant (models/blip2-t5-tiny.mlir): a FlanT5-style
# T5ForConditionalGeneration. The projected queries replace the <image>
# tokens' embeddings in the encoder's input; the sequences here are the real
# positions only (mmc pads them and masks the padding).
# --------------------------------------------------------------------------

def t5_relative_bucket(rel, bidirectional, num_buckets, max_distance):
    """T5's bucket of each key-minus-query offset REL (long tensor): exact
    buckets for small offsets, logarithmic ones up to MAX_DISTANCE (the
    logarithm in float32, as T5 computes it); bidirectional: half the buckets
    for keys after the query."""
    out = torch.zeros_like(rel)
    if bidirectional:
        num_buckets //= 2
        out = out + (rel > 0).long() * num_buckets
        n = rel.abs()
    else:
        n = (-rel).clamp(min=0)
    max_exact = num_buckets // 2
    large = max_exact + (torch.log(n.float() / max_exact) / math.log(max_distance / max_exact)
                         * (num_buckets - max_exact)).long()
    large = large.clamp(max=num_buckets - 1)
    return out + torch.where(n < max_exact, n, large)


def _t5_attention(W, prefix, x, kv, H, bias=None, causal=False):
    """T5 attention without scaling: x [S, D] queries, kv [T, D] keys/values;
    BIAS [H, S, T] added to the scores."""
    q = R.linear(x, W.get(prefix + "q.weight"))
    k = R.linear(kv, W.get(prefix + "k.weight"))
    v = R.linear(kv, W.get(prefix + "v.weight"))
    S, T, inner = q.shape[0], k.shape[0], q.shape[1]
    qh = q.reshape(S, H, inner // H).transpose(0, 1)
    kh = k.reshape(T, H, inner // H).transpose(0, 1)
    vh = v.reshape(T, H, inner // H).transpose(0, 1)
    scores = torch.matmul(qh, kh.transpose(-1, -2))
    if bias is not None:
        scores = scores + bias
    if causal:
        scores = scores.masked_fill(torch.ones(S, T, dtype=torch.bool).triu(1), float("-inf"))
    o = torch.matmul(torch.softmax(scores, dim=-1), vh).transpose(0, 1).reshape(S, inner)
    return R.linear(o, W.get(prefix + "o.weight"))


def _t5_position_bias(W, stack, t, S, bidirectional):
    """[H, S, S]: the stack's layer-0 table at each (query, key) offset's bucket."""
    pos = torch.arange(S)
    buckets = t5_relative_bucket(pos[None, :] - pos[:, None], bidirectional,
                                 t["relative_attention_num_buckets"], t["relative_attention_max_distance"])
    table = W.get(f"language_model.{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight")
    return table[buckets].permute(2, 0, 1)


def _t5_feed_forward(W, prefix, x, eps):
    h = R.rms_norm(x, W.get(prefix + "layer_norm.weight"), eps)
    gate = R.act_fn("gelu_new")(R.linear(h, W.get(prefix + "DenseReluDense.wi_0.weight")))
    up = R.linear(h, W.get(prefix + "DenseReluDense.wi_1.weight"))
    return x + R.linear(gate * up, W.get(prefix + "DenseReluDense.wo.weight"))


def t5(cfg, W, enc_embeds, dec_ids):
    """enc_embeds [Se, D], dec_ids [Sd] (long, the start token first) -> logits [Sd, V]."""
    t = cfg["text"]
    H, eps = t["num_heads"], t.get("layer_norm_epsilon", 1e-6)
    x = enc_embeds
    bias = _t5_position_bias(W, "encoder", t, x.shape[0], bidirectional=True)
    for i in range(t["num_layers"]):
        p = f"language_model.encoder.block.{i}.layer."
        h = R.rms_norm(x, W.get(p + "0.layer_norm.weight"), eps)
        x = x + _t5_attention(W, p + "0.SelfAttention.", h, h, H, bias=bias)
        x = _t5_feed_forward(W, p + "1.", x, eps)
    enc = R.rms_norm(x, W.get("language_model.encoder.final_layer_norm.weight"), eps)
    y = W.get("language_model.shared.weight")[dec_ids]
    bias = _t5_position_bias(W, "decoder", t, y.shape[0], bidirectional=False)
    for i in range(t.get("num_decoder_layers", t["num_layers"])):
        p = f"language_model.decoder.block.{i}.layer."
        h = R.rms_norm(y, W.get(p + "0.layer_norm.weight"), eps)
        y = y + _t5_attention(W, p + "0.SelfAttention.", h, h, H, bias=bias, causal=True)
        h = R.rms_norm(y, W.get(p + "1.layer_norm.weight"), eps)
        y = y + _t5_attention(W, p + "1.EncDecAttention.", h, enc, H)
        y = _t5_feed_forward(W, p + "2.", y, eps)
    y = R.rms_norm(y, W.get("language_model.decoder.final_layer_norm.weight"), eps)
    return R.linear(y, W.get("language_model.lm_head.weight"))


def seq2seq_logits(cfg, W, ids, dec_ids, pixels=None, vit=None):
    """The encoder-decoder's logits [Sd, V]: ids [Se] (the <image> tokens stand
    for the queries; none in the T5's text pre-training), dec_ids [Sd]; VIT: the
    ViT's output in place of pixels."""
    embeds = W.get("language_model.shared.weight")[ids]
    if (pixels is not None or vit is not None) and bool((ids == cfg["image_token_index"]).any()):
        feats = query_embeds(cfg, W, pixels, vit)[0]
        embeds = R.merge_image_features(embeds, ids, feats, cfg["image_token_index"])
    return t5(cfg, W, embeds, dec_ids)


# --------------------------------------------------------------------------
# Stage 1 (ITC + ITM + ITG over the Q-Former with its text side), as
# models/gen_blip2.py's @stage1_loss computes it for a batch of B image-text
# pairs: texts of TT positions ([CLS] caption "\n", padded), length[b] = Q +
# the text's real positions (keys at or past it are masked in the
# self-attention), the ITM hard negatives drawn from the ITC similarities by
# inverse transform of caller-supplied uniform numbers.
# --------------------------------------------------------------------------

STAGE1_MASKS = ("itc_unimodal", "itm_bidirectional", "itg_multimodal_causal")


def stage1_allowed(mask, Q, L, length):
    """The keys each query may see: bool [N, L, L] for per-row LENGTH [N] (long).
    Positions < Q are the learnable queries, the rest the text.
      itc_unimodal:          queries see queries, text sees text;
      itm_bidirectional:     everything;
      itg_multimodal_causal: queries see queries, text position i sees every
                             query and the text positions j <= i;
    always AND key < length[row]."""
    qi = torch.arange(L)[:, None]
    kj = torch.arange(L)[None, :]
    if mask == "itc_unimodal":
        shape = (qi < Q) == (kj < Q)
    elif mask == "itm_bidirectional":
        shape = torch.ones(L, L, dtype=torch.bool)
    elif mask == "itg_multimodal_causal":
        shape = torch.where(qi < Q, kj < Q, (kj < Q) | (kj <= qi))
    else:
        raise ValueError(f"mask {mask!r}")
    return shape[None] & (kj[None] < length[:, None, None])


def _attend_allowed(q, k, v, H, allowed):
    """q/k/v [N,L,D] -> [N,L,D] under ALLOWED [N,L,L]; a row without any key gives 0."""
    N, S, D = q.shape
    scale = (D // H) ** -0.5
    qh, kh, vh = _heads(q, H), _heads(k, H), _heads(v, H)
    scores = torch.matmul(qh, kh.transpose(-1, -2)) * scale  # [N,H,S,T]
    any_key = allowed.any(-1, keepdim=True)  # [N,S,1]
    # Rows without keys: softmax over unmasked zeros (finite), then multiplied by 0.
    keep = (allowed | ~any_key)[:, None]
    p = torch.softmax(scores.masked_fill(~keep, float("-inf")), dim=-1) * any_key[:, None].to(scores.dtype)
    return torch.matmul(p, vh).transpose(1, 2).reshape(N, S, D)


def l2_normalize(x, eps=1e-12):
    """x / max(||x||, eps) over the last axis (mm.l2_normalize)."""
    return x / torch.clamp(torch.linalg.vector_norm(x, dim=-1, keepdim=True), min=eps)


def qformer_joint(cfg, W, img, ids, length, mask, itg=False):
    """The Q-Former over [queries; text]: img [N, Nv, Dv] (the image tokens the
    queries cross-attend to), ids [N, TT] (long), length [N] (long: queries +
    real text positions) -> [N, Q + TT, Dq].  Text embedding = word + position
    embeddings (ITG: the first position's word is [DEC], the qformer_config's
    bos_token_id, in place of [CLS]); qformer.layernorm over the whole sequence;
    per layer: self-attention under MASK (and key < length), output dense +
    residual + LayerNorm; the query positions then cross-attend to the image
    in the even layers and take the query feed-forward, the text positions the
    text feed-forward (intermediate / output)."""
    q = cfg["qformer"]
    H, Lq, f, eps = q["num_attention_heads"], q["num_hidden_layers"], q["cross_attention_frequency"], q["layer_norm_eps"]
    act = R.act_fn(q["hidden_act"])
    N, TT = ids.shape
    Q = cfg["num_query_tokens"]
    word = W.get("embeddings.word_embeddings.weight")
    tok = word[ids]
    if itg:
        dec = word[int(q["bos_token_id"])]
        tok = torch.cat([dec.expand(N, 1, -1), tok[:, 1:]], dim=1)
    text = tok + W.get("embeddings.position_embeddings.weight")[:TT]
    queries = W.get("query_tokens").expand(N, -1, -1)
    x = torch.cat([queries, text], dim=1)
    x = R.layer_norm(x, W.get("qformer.layernorm.weight"), W.get("qformer.layernorm.bias"), eps)
    allowed = stage1_allowed(mask, Q, Q + TT, length)
    for i in range(Lq):
        lp = f"qformer.encoder.layer.{i}."

        def proj(name, inp):
            return R.linear(inp, W.get(lp + name + ".weight"), W.get(lp + name + ".bias"))
        a = _attend_allowed(proj("attention.attention.query", x), proj("attention.attention.key", x),
                            proj("attention.attention.value", x), H, allowed)
        x = _post_ln_block(W, lp + "attention.output", x, a, eps)
        xq, xt = x[:, :Q], x[:, Q:]
        if i % f == 0:
            c = _attend(proj("crossattention.attention.query", xq), proj("crossattention.attention.key", img),
                        proj("crossattention.attention.value", img), H)
            xq = _post_ln_block(W, lp + "crossattention.output", xq, c, eps)
        xq = _post_ln_block(W, lp + "output_query", xq, act(proj("intermediate_query.dense", xq)), eps)
        xt = _post_ln_block(W, lp + "output", xt, act(proj("intermediate.dense", xt)), eps)
        x = torch.cat([xq, xt], dim=1)
    return x


def sample_negatives(sim, uniform):
    """mm.sample_negatives: for each row r of SIM [B, B] (numpy), the column j != r
    drawn with probability softmax(sim[r])_j renormalised over j != r, by inverse
    transform of UNIFORM[r]: walking j = 0..B-1 (skipping r) and accumulating
    w_j = exp(sim[r, j] - max_{j != r} sim[r, j]), the first j whose running sum
    exceeds uniform[r] * total (else the last j != r).
    Returns (indices [B] int64, margin): MARGIN is the smallest distance, relative
    to the row's total, between the target uniform[r] * total and any partial sum
    of its row: a different rounding of SIM (the compiled float32 run) can only
    draw another index when it moves a partial sum across the target by more
    than that."""
    sim = np.asarray(sim, dtype=np.float64)
    B = sim.shape[0]
    out = np.zeros(B, dtype=np.int64)
    margin = math.inf
    for r in range(B):
        others = [j for j in range(B) if j != r]
        m = max(sim[r, j] for j in others)
        w = [math.exp(sim[r, j] - m) for j in others]
        total = sum(w)
        target = float(uniform[r]) * total
        acc, pick = 0.0, others[-1]
        picked = False
        for j, wj in zip(others, w):
            acc += wj
            margin = min(margin, abs(acc - target) / total)
            if not picked and acc > target:
                pick, picked = j, True
        out[r] = pick
    return out, margin


def stage1_loss(cfg, W, image_embeds_b, ids, targets, length, u_text, u_image):
    """BLIP-2 stage 1 on one micro-batch: image_embeds_b [B, Nv, Dv] (the frozen
    ViT's output), ids / targets [B, TT] (long; targets -100 = ignored), length
    [B] (long), u_text / u_image [B] (the entry's uniform numbers) ->
    (loss = ITC + ITM + ITG as a 0-d tensor, info dict with the three parts, the
    drawn hard negatives and the sampler's margin)."""
    F_ = torch.nn.functional
    B = ids.shape[0]
    Q = cfg["num_query_tokens"]
    ar = torch.arange(B)
    # ITC: queries and text in one pass under the unimodal mask.
    out = qformer_joint(cfg, W, image_embeds_b, ids, length, "itc_unimodal")
    image_feat = l2_normalize(R.linear(out[:, :Q], W.get("vision_projection.weight"), W.get("vision_projection.bias")))
    text_feat = l2_normalize(R.linear(out[:, Q], W.get("text_projection.weight"), W.get("text_projection.bias")))
    sim_qt = torch.matmul(image_feat, text_feat.t())  # [B(image), Q, B(text)]
    sim_i2t = sim_qt.max(dim=1).values / W.get("temp")
    sim_t2i = sim_i2t.t()
    loss_itc = 0.5 * (F_.cross_entropy(sim_i2t, ar) + F_.cross_entropy(sim_t2i, ar))
    # ITM: hard negatives (no gradient through the draw).
    neg_text, m1 = sample_negatives(sim_i2t.detach().cpu().numpy(), u_text)
    neg_image, m2 = sample_negatives(sim_t2i.detach().cpu().numpy(), u_image)
    nt, ni = torch.from_numpy(neg_text), torch.from_numpy(neg_image)
    itm_img = torch.cat([image_embeds_b, image_embeds_b[ni], image_embeds_b], dim=0)
    itm_ids = torch.cat([ids, ids, ids[nt]], dim=0)
    itm_len = torch.cat([length, length, length[nt]], dim=0)
    out = qformer_joint(cfg, W, itm_img, itm_ids, itm_len, "itm_bidirectional")
    logits = R.linear(out[:, :Q].mean(dim=1), W.get("itm_head.weight"), W.get("itm_head.bias"))
    itm_targets = torch.cat([torch.ones(B, dtype=torch.long), torch.zeros(2 * B, dtype=torch.long)])
    loss_itm = F_.cross_entropy(logits, itm_targets)
    # ITG: the caption from [DEC] under the multimodal-causal mask; BERT's LM head, tied decoder.
    out = qformer_joint(cfg, W, image_embeds_b, ids, length, "itg_multimodal_causal", itg=True)
    qc = cfg["qformer"]
    h = R.linear(out[:, Q:], W.get("cls.predictions.transform.dense.weight"),
                 W.get("cls.predictions.transform.dense.bias"))
    h = R.layer_norm(R.act_fn(qc["hidden_act"])(h), W.get("cls.predictions.transform.LayerNorm.weight"),
                     W.get("cls.predictions.transform.LayerNorm.bias"), qc["layer_norm_eps"])
    lm = R.linear(h, W.get("embeddings.word_embeddings.weight"), W.get("cls.predictions.bias"))
    loss_itg = F_.cross_entropy(lm.reshape(-1, lm.shape[-1]), targets.reshape(-1), ignore_index=-100)
    loss = loss_itc + loss_itm + loss_itg
    # How close the max over queries came to a tie: the smallest gap between a pair's best and
    # second-best query similarity. Below float32's resolution a compiled run may take the
    # other query's path, and every query-side gradient after that step differs.
    top2 = sim_qt.detach().topk(2, dim=1).values
    query_gap = float((top2[:, 0] - top2[:, 1]).min())
    info = dict(loss_itc=float(loss_itc), loss_itm=float(loss_itm), loss_itg=float(loss_itg),
                neg_text=neg_text.tolist(), neg_image=neg_image.tolist(), margin=min(m1, m2), query_gap=query_gap)
    return loss, info
