#!/usr/bin/env python3
"""Writes the BLIP-2 model files (models/blip2-*.mlir) from one template.

The architecture is Hugging Face's Blip2ForConditionalGeneration with an OPT
decoder: an EVA-style ViT (fused qkv with separate q/v biases, pre-LN, exact
GELU, post-LN output with [CLS] kept), a BERT-style Q-Former (learnable query
tokens, post-LN layers, cross-attention to the image in every second layer,
the query feed-forward `intermediate_query`/`output_query`), the
`language_projection`, and OPT (learned positions offset by 2, pre-LN, ReLU,
the LM head tied to the token embeddings). Parameter names are its
checkpoint keys. Run `python3 models/gen_blip2.py` after changing it.

The projected queries enter the LLM where the sequence holds `<image>`
tokens (HF's `image_token_index` path: the processor puts the query tokens
before the BOS), so the sequence is [queries][</s>][text].
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gen_llava import (CELL_CLASSES, PATCH_CLASSES, decoder_layer_end, decoder_layer_header, fl, kv_cache_ops,  # noqa: E402
                       patch_loss_entry, stem_graph, stem_params, t)

CONFIGS = {
    "blip2-tiny": dict(
        name="blip2_tiny", image=64, patch=8, vd=128, vlayers=4, vheads=4, vinter=512,
        # 9 queries: one per cell of mmdata's 3 x 3 scene grid, the layout the OPT's
        # pre-training context gives them to stand for (data "caption_layout", Data.cpp).
        queries=9, qd=128, qlayers=4, qheads=4, qinter=512, cross_freq=2,
        td=256, tlayers=4, theads=4, tinter=1024, vocab=800, seq=64, max_pos=64,
        image_token=4, pad_token=3, bos_token=1, tokenizer="tokenizers/llava-tiny.tokenizer.json",
        # The OPT's layout reading learnt best at 5e-4 (docs/BENCHMARKS.md, the layout oracle).
        stage_lr2=1e-3, batch2=8, pretrain=True, pretrain_lr=5e-4,
        # patch_cells=True would have the ViT also learn each patch's object's grid cell (data
        # "patch_cells"); one run with it captioned worse (35 against 45 of 100, docs/BENCHMARKS.md).
        # Stage 1 (ITC + ITM + ITG over the Q-Former with its text side): a batch of 16 image-text
        # pairs per step (in-batch negatives), texts of 20 tokens: [CLS] caption "\n", where <s>
        # plays BERT's [CLS] and </s> the decoder start token [DEC]. mmdata's longest captions
        # are 16 tokens; every text position costs Q-Former work in all three passes. lr 5e-4:
        # at 1e-3 stage 1 fell into a solution without alignment (R@1 14%) or not depending on
        # rounding-level differences in the ViT it reads (docs/BENCHMARKS.md).
        stage1=dict(batch=16, text=20, positions=32, vocab=800, embed=128, cls=1, dec=2, lr=5e-4),
        # The same convolutional stem as llava-tiny (docs/BENCHMARKS.md): a from-scratch
        # ViT on 8-px patches does not learn the shapes of mmdata's objects in time.
        stem=[(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 2)]),
    # The encoder-decoder variant (HF's Blip2ForConditionalGeneration with a FlanT5-style
    # T5ForConditionalGeneration): the same ViT and Q-Former; the queries and a text prefix
    # enter the T5 encoder (seq positions), the decoder writes the suffix (dec_seq positions).
    "blip2-t5-tiny": dict(
        name="blip2_t5_tiny", llm="t5", image=64, patch=8, vd=128, vlayers=4, vheads=4, vinter=512,
        queries=16, qd=128, qlayers=4, qheads=4, qinter=512, cross_freq=2,
        td=256, tlayers=3, tdlayers=3, theads=4, tdkv=64, tinter=512, buckets=32, max_distance=128,
        vocab=800, seq=40, dec_seq=24,
        image_token=4, pad_token=3, bos_token=1, eos_token=2, tokenizer="tokenizers/llava-tiny.tokenizer.json",
        stage_lr2=1e-3, batch2=8, pretrain=True,
        stage1=dict(batch=16, text=20, positions=32, vocab=800, embed=128, cls=1, dec=2, lr=1e-3),
        stem=[(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 2)]),
    "blip2-opt-2.7b": dict(
        name="blip2_opt_2_7b", image=224, patch=14, vd=1408, vlayers=39, vheads=16, vinter=6144,
        queries=32, qd=768, qlayers=12, qheads=12, qinter=3072, cross_freq=2,
        td=2560, tlayers=32, theads=32, tinter=10240, vocab=50272, seq=128, max_pos=2048,
        image_token=50265, pad_token=1, bos_token=2, tokenizer=None,
        stage_lr2=1e-4, batch2=128,
        # Stage 1 as LAVIS runs it (max_txt_len 32, BERT's vocabulary with [DEC] added, 512
        # positions, 256-wide ITC features); a batch of 32 pairs per entry call.
        stage1=dict(batch=32, text=32, positions=512, vocab=30523, embed=256, cls=101, dec=30522, pad=0, lr=1e-4)),
}

V_EPS, Q_EPS, T_EPS, T5_EPS = 1e-6, 1e-12, 1e-5, 1e-6
NORMAL = "#mm.init<normal, 0.02>"
ZEROS, ONES = "#mm.init<zeros>", "#mm.init<ones>"


def generate(c):
    P = (c["image"] // c["patch"]) ** 2
    V, VD, QD, TD, Q, S = P + 1, c["vd"], c["qd"], c["td"], c["queries"], c["seq"]
    vdh, qdh, tdh = VD // c["vheads"], QD // c["qheads"], TD // c["theads"]
    stem = c.get("stem") or []
    stem_stride = math.prod(st for _, st in stem)
    pe = c["patch"] // stem_stride
    L = []
    w = L.append
    ind = "    "

    def param(name, shape, group, init=NORMAL, pre="  "):
        w(f'{pre}mm.param @"{name}" : {t(*shape)} group @{group} init {init}')

    def linear_params(name, n, k, group):
        """A layer's linear NAME: weight [N, K] (normal) and bias [N] (zeros)."""
        param(f"{name}.weight", [n, k], group, pre=ind)
        param(f"{name}.bias", [n], group, ZEROS, pre=ind)

    def norm_params(name, d, group):
        """A layer's LayerNorm NAME over D features: weight (ones) and bias (zeros)."""
        param(f"{name}.weight", [d], group, ONES, pre=ind)
        param(f"{name}.bias", [d], group, ZEROS, pre=ind)

    def weight(var, name, shape):
        w(f'{ind}%{var} = mm.weight @"{name}" : {t(*shape)}')

    def lin(out, x, xs, wname, n, k, bias=True):
        weight(out + "_w", wname + ".weight", [n, k])
        if bias:
            weight(out + "_b", wname + ".bias", [n])
            w(f"{ind}%{out} = mm.linear %{x}, %{out}_w, %{out}_b : ({t(*xs, k)}, {t(n, k)}, {t(n)}) -> {t(*xs, n)}")
        else:
            w(f"{ind}%{out} = mm.linear %{x}, %{out}_w : ({t(*xs, k)}, {t(n, k)}) -> {t(*xs, n)}")

    def ln(out, x, name, d, xs, eps):
        weight(out + "_g", name + ".weight", [d])
        weight(out + "_b", name + ".bias", [d])
        w(f"{ind}%{out} = mm.layer_norm %{x}, %{out}_g, %{out}_b {{eps = {fl(eps)}}} : "
          f"({t(*xs, d)}, {t(d)}, {t(d)}) -> {t(*xs, d)}")

    def attention(out, q, k, v, heads, sq, skv, d, scale, mask, length=None, n=1, per_row=False, layout=None):
        ln_ = f", %{length}" if length else ""
        lt = (f", {t(n, dtype='i32')}" if per_row else f", {t(dtype='i32')}") if length else ""
        lay = f", layout = #mm.seq_layout<query = {layout[0]}, text = {layout[1]}>" if layout else ""
        w(f"{ind}%{out} = mm.attention %{q}, %{k}, %{v}{ln_} {{num_heads = {heads} : i64, num_kv_heads = {heads} : i64, "
          f"mask = #mm.mask<{mask}>{lay}, scale = {fl(scale)}}} : ({t(n, sq, d)}, {t(n, skv, d)}, {t(n, skv, d)}{lt}) -> {t(n, sq, d)}")

    t5 = c.get("llm") == "t5"
    if t5:
        text_config = (
            f'      text_config = {{model_type = "t5", d_model = {TD} : i64, d_kv = {c["tdkv"]} : i64, '
            f'd_ff = {c["tinter"]} : i64, num_layers = {c["tlayers"]} : i64, num_decoder_layers = {c["tdlayers"]} : i64, '
            f'num_heads = {c["theads"]} : i64, relative_attention_num_buckets = {c["buckets"]} : i64, '
            f'relative_attention_max_distance = {c["max_distance"]} : i64, layer_norm_epsilon = {fl(T5_EPS)}, '
            f'feed_forward_proj = "gated-gelu", dense_act_fn = "gelu_new", is_gated_act = true, '
            f'vocab_size = {c["vocab"]} : i64, tie_word_embeddings = false, pad_token_id = {c["pad_token"]} : i64, '
            f'eos_token_id = {c["eos_token"]} : i64, decoder_start_token_id = {c["pad_token"]} : i64}}')
    else:
        text_config = (
            f'      text_config = {{model_type = "opt", hidden_size = {TD} : i64, ffn_dim = {c["tinter"]} : i64, '
            f'num_hidden_layers = {c["tlayers"]} : i64, num_attention_heads = {c["theads"]} : i64, '
            f'vocab_size = {c["vocab"]} : i64, max_position_embeddings = {c["max_pos"]} : i64, '
            f'word_embed_proj_dim = {TD} : i64, do_layer_norm_before = true, activation_function = "relu", '
            f'bos_token_id = {c["bos_token"]} : i64, pad_token_id = {c["pad_token"]} : i64, tie_word_embeddings = true}}')
    config = (
        f'{{model_type = "blip-2", architectures = ["Blip2ForConditionalGeneration"], '
        f'num_query_tokens = {Q} : i64, image_token_index = {c["image_token"]} : i64, '
        f'image_seq_length = {Q} : i64, pad_token_id = {c["pad_token"]} : i64, '
        f'max_sequence_length = {S} : i64, use_decoder_only_language_model = {"false" if t5 else "true"}'
        + (f', max_decoder_length = {c["dec_seq"]} : i64' if t5 else '') + ',\n'
        f'      vision_config = {{model_type = "blip_2_vision_model", hidden_size = {VD} : i64, '
        f'intermediate_size = {c["vinter"]} : i64, num_hidden_layers = {c["vlayers"]} : i64, '
        f'num_attention_heads = {c["vheads"]} : i64, image_size = {c["image"]} : i64, '
        f'patch_size = {c["patch"]} : i64, layer_norm_eps = {fl(V_EPS)}, hidden_act = "gelu", qkv_bias = true'
        + (f', stem_channels = [{", ".join(f"{ch} : i64" for ch, _ in stem)}], '
           f'stem_strides = [{", ".join(f"{st} : i64" for _, st in stem)}]' if stem else "") + "},\n"
        f'      qformer_config = {{model_type = "blip_2_qformer", hidden_size = {QD} : i64, '
        f'intermediate_size = {c["qinter"]} : i64, num_hidden_layers = {c["qlayers"]} : i64, '
        f'num_attention_heads = {c["qheads"]} : i64, cross_attention_frequency = {c["cross_freq"]} : i64, '
        f'encoder_hidden_size = {VD} : i64, layer_norm_eps = {fl(Q_EPS)}, hidden_act = "gelu"'
        + (f', vocab_size = {c["stage1"]["vocab"]} : i64, max_position_embeddings = {c["stage1"]["positions"]} : i64, '
           f'max_txt_len = {c["stage1"]["text"]} : i64, '
           f'cls_token_id = {c["stage1"]["cls"]} : i64, bos_token_id = {c["stage1"]["dec"]} : i64, '
           f'pad_token_id = {c["stage1"].get("pad", c["pad_token"])} : i64' if c.get("stage1") else "") + '},\n'
        + (f'      image_text_hidden_size = {c["stage1"]["embed"]} : i64,\n' if c.get("stage1") else "")
        + text_config + '}')
    tok = f', tokenizer = "{c["tokenizer"]}"' if c["tokenizer"] else ""
    llm = (f"T5 {TD} x {c['tlayers']} encoder + {c['tdlayers']} decoder layers" if t5 else
           f"OPT {TD} x {c['tlayers']} layers")
    w(f"// Generated by models/gen_blip2.py: Hugging Face Blip2ForConditionalGeneration ({'T5 encoder-decoder' if t5 else 'OPT decoder'}).")
    w(f"// Vision: ViT {c['image']}px/{c['patch']}, {VD} x {c['vlayers']} layers; Q-Former: {Q} queries, "
      f"{QD} x {c['qlayers']} layers; LLM: {llm}, vocabulary {c['vocab']}.")
    w(f"mm.model @{c['name']} attributes {{config = {config}{tok}}} {{")
    s1 = c.get("stage1")
    for g in ["vision_model", "qformer", "language_projection", "language_model"]:
        w(f"  mm.group @{g}")
    if s1:
        w("  // What only stage 1 reads: the Q-Former's text side (embeddings, the text feed-forward), the ITC")
        w("  // projections and temperature, the ITM head and the ITG (language-modelling) head.")
        w("  mm.group @qformer_stage1")
    if c.get("pretrain"):
        w("  // Only the vision tower's pre-training reads it: a per-patch classifier (not part of BLIP-2).")
        w("  mm.group @vision_pretrain_head")
    w("")

    # ---- Vision model ------------------------------------------------------
    vm = "vision_model"
    w("  // EVA-style ViT (frozen in both BLIP-2 stages).")
    param(f"{vm}.embeddings.class_embedding", [1, 1, VD], "vision_model")
    cin = stem_params(param, f"{vm}.embeddings", stem, "vision_model")
    param(f"{vm}.embeddings.patch_embedding.weight", [VD, cin, pe, pe], "vision_model")
    param(f"{vm}.embeddings.patch_embedding.bias", [VD], "vision_model", ZEROS)
    param(f"{vm}.embeddings.position_embedding", [1, V, VD], "vision_model")
    w("")
    xv = t(1, V, VD)

    def vision_layer(name):
        w(f"  mm.layer @{name}(%x: {xv}) -> {xv}")
        w(f'      attributes {{count = {c["vlayers"]} : i64, prefix = "{vm}.encoder.layers"}} {{')
        param("self_attn.qkv.weight", [3 * VD, VD], "vision_model", pre=ind)
        # EVA keeps q and v biases apart; k has none (HF adds a zero third).
        param("self_attn.q_bias", [VD], "vision_model", ZEROS, pre=ind)
        param("self_attn.v_bias", [VD], "vision_model", ZEROS, pre=ind)
        linear_params("self_attn.projection", VD, VD, "vision_model")
        for nm in ["layer_norm1", "layer_norm2"]:
            norm_params(nm, VD, "vision_model")
        linear_params("mlp.fc1", c["vinter"], VD, "vision_model")
        linear_params("mlp.fc2", VD, c["vinter"], "vision_model")
        xs = [1, V]
        ln("ln1", "x", "layer_norm1", VD, xs, V_EPS)
        w("    // qkv bias = [q_bias, 0, v_bias]")
        weight("qb", "self_attn.q_bias", [VD])
        weight("vb", "self_attn.v_bias", [VD])
        w(f"{ind}%kb = mm.constant {{value = 0.0 : f64}} : {t(VD)}")
        w(f"{ind}%qkb = mm.concat %qb, %kb {{axis = 0 : i64}} : ({t(VD)}, {t(VD)}) -> {t(2 * VD)}")
        w(f"{ind}%qkv_b = mm.concat %qkb, %vb {{axis = 0 : i64}} : ({t(2 * VD)}, {t(VD)}) -> {t(3 * VD)}")
        weight("qkv_w", "self_attn.qkv.weight", [3 * VD, VD])
        w(f"{ind}%qkv = mm.linear %ln1, %qkv_w, %qkv_b : ({xv}, {t(3 * VD, VD)}, {t(3 * VD)}) -> {t(1, V, 3 * VD)}")
        for j, nm in enumerate("qkv"):
            w(f"{ind}%{nm} = mm.slice %qkv {{axis = 2 : i64, start = {j * VD} : i64}} : ({t(1, V, 3 * VD)}) -> {xv}")
        attention("attn", "q", "k", "v", c["vheads"], V, V, VD, 1 / math.sqrt(vdh), "bidirectional")
        lin("o", "attn", xs, "self_attn.projection", VD, VD)
        w(f"{ind}%h = mm.add %x, %o : {xv}")
        ln("ln2", "h", "layer_norm2", VD, xs, V_EPS)
        lin("fc1", "ln2", xs, "mlp.fc1", c["vinter"], VD)
        w(f"{ind}%act = mm.gelu %fc1 : {t(1, V, c['vinter'])}")
        lin("fc2", "act", xs, "mlp.fc2", VD, c["vinter"])
        w(f"{ind}%y = mm.add %h, %fc2 : {xv}")
        w(f"{ind}mm.yield %y : {xv}")
        w("  }")

    vision_layer("vision_encoder_layer")
    param(f"{vm}.post_layernorm.weight", [VD], "vision_model", ONES)
    param(f"{vm}.post_layernorm.bias", [VD], "vision_model", ZEROS)
    if c.get("pretrain"):
        # 81 classes (background, colour x shape x size of mmdata's scenes), padded to 96 rows.
        param("vision_pretrain_head.weight", [PATCH_CLASSES, VD], "vision_pretrain_head")
        param("vision_pretrain_head.bias", [PATCH_CLASSES], "vision_pretrain_head", ZEROS)
        if c.get("patch_cells"):
            # 10 classes (background, the 3 x 3 cell of the patch's object), padded to 16 rows.
            param("vision_pretrain_cell_head.weight", [CELL_CLASSES, VD], "vision_pretrain_head")
            param("vision_pretrain_cell_head.bias", [CELL_CLASSES], "vision_pretrain_head", ZEROS)
    w("")

    # ---- Q-Former over queries and text (stage 1, retrieval) ---------------
    n_cross = (c["qlayers"] + c["cross_freq"] - 1) // c["cross_freq"]

    def layer_instance(i):
        """(layer kind suffix, instance) of Q-Former layer i: even layers cross-attend."""
        if i % c["cross_freq"] == 0:
            return "cross_layer", i // c["cross_freq"]
        return "layer", i - (i // c["cross_freq"] + 1)

    def qformer_joint_layer(name, cross, n, mask, with_queries=True):
        """A Q-Former layer over [queries; text] (or text alone): self-attention under MASK with
        per-row lengths, cross-attention for the query positions only (even layers), then the
        query and the text feed-forward, each on its own positions (HF's query_length split)."""
        TT = s1["text"]
        Lq = Q if with_queries else 0
        L = Lq + TT
        owner = "qformer_cross_layer" if cross else "qformer_layer"
        count = n_cross if cross else c["qlayers"] - n_cross
        if count == 0:  # a one-layer Q-Former has no layer without cross-attention
            return
        xj, xin, ln_t = t(n, L, QD), t(n, V, VD), t(n, dtype="i32")
        img_arg = f"%image: {xin}, " if with_queries else ""
        w(f"  mm.layer @{name}(%x: {xj}, {img_arg}%len: {ln_t}) -> {xj}")
        w(f'      attributes {{count = {count} : i64, prefix = "qformer.encoder.layer", index_start = {0 if cross else 1} : i64, '
          f'index_step = {c["cross_freq"]} : i64, parameters_from = @{owner}}} {{')
        js = [n, L]
        lin("sq", "x", js, "attention.attention.query", QD, QD)
        lin("sk", "x", js, "attention.attention.key", QD, QD)
        lin("sv", "x", js, "attention.attention.value", QD, QD)
        layout = (Q, TT) if with_queries else None
        attention("sa", "sq", "sk", "sv", c["qheads"], L, L, QD, 1 / math.sqrt(qdh), mask, "len", n=n,
                  per_row=True, layout=layout)
        lin("so", "sa", js, "attention.output.dense", QD, QD)
        w(f"{ind}%sr = mm.add %so, %x : {xj}")
        ln("h1", "sr", "attention.output.LayerNorm", QD, js, Q_EPS)
        text_in = "h1"
        if with_queries:
            w(f"{ind}%hq = mm.slice %h1 {{axis = 1 : i64, start = 0 : i64}} : ({xj}) -> {t(n, Q, QD)}")
            w(f"{ind}%ht = mm.slice %h1 {{axis = 1 : i64, start = {Q} : i64}} : ({xj}) -> {t(n, TT, QD)}")
            text_in = "ht"
            qs, xqn = [n, Q], t(n, Q, QD)
            hq = "hq"
            if cross:
                w("    // Cross-attention to the image: query positions only.")
                lin("cq", "hq", qs, "crossattention.attention.query", QD, QD)
                lin("ck", "image", [n, V], "crossattention.attention.key", QD, VD)
                lin("cv", "image", [n, V], "crossattention.attention.value", QD, VD)
                attention("ca", "cq", "ck", "cv", c["qheads"], Q, V, QD, 1 / math.sqrt(qdh), "bidirectional", n=n)
                lin("co", "ca", qs, "crossattention.output.dense", QD, QD)
                w(f"{ind}%cr = mm.add %co, %hq : {xqn}")
                ln("h2", "cr", "crossattention.output.LayerNorm", QD, qs, Q_EPS)
                hq = "h2"
            lin("f1", hq, qs, "intermediate_query.dense", c["qinter"], QD)
            w(f"{ind}%fa = mm.gelu %f1 : {t(n, Q, c['qinter'])}")
            lin("f2", "fa", qs, "output_query.dense", QD, c["qinter"])
            w(f"{ind}%fr = mm.add %f2, %{hq} : {xqn}")
            ln("yq", "fr", "output_query.LayerNorm", QD, qs, Q_EPS)
        w("    // The text positions' feed-forward.")
        ts, xtn = [n, TT], t(n, TT, QD)
        lin("g1", text_in, ts, "intermediate.dense", c["qinter"], QD)
        w(f"{ind}%ga = mm.gelu %g1 : {t(n, TT, c['qinter'])}")
        lin("g2", "ga", ts, "output.dense", QD, c["qinter"])
        w(f"{ind}%gr = mm.add %g2, %{text_in} : {xtn}")
        ln("yt", "gr", "output.LayerNorm", QD, ts, Q_EPS)
        if with_queries:
            w(f"{ind}%y = mm.concat %yq, %yt {{axis = 1 : i64}} : ({t(n, Q, QD)}, {xtn}) -> {xj}")
            w(f"{ind}mm.yield %y : {xj}")
        else:
            w(f"{ind}mm.yield %yt : {xj}")
        w("  }")

    def stage1_layers_and_params():
        B, TT = s1["batch"], s1["text"]
        w("")
        w("  // The same Q-Former layers over [queries; text] for stage 1, one kind per loss and mask:")
        w("  // ITC: queries see queries, text sees text (#mm.mask<itc_unimodal>: the two unimodal passes")
        w("  // of the reference implementation, as one); ITM: everything sees everything (3 x the batch:")
        w("  // positives, hard-negative images, hard-negative texts); ITG: queries see queries, text sees")
        w("  // the queries and earlier text. Cross-attention and the query feed-forward act on the query")
        w("  // positions only, the text feed-forward on the text positions.")
        for mode, n, mask in (("itc", B, "itc_unimodal"), ("itm", 3 * B, "itm_bidirectional"),
                              ("itg", B, "itg_multimodal_causal"), ("itm_one", 1, "itm_bidirectional")):
            for cross in (True, False):
                kind = "cross_layer" if cross else "layer"
                qformer_joint_layer(f"qformer_{kind}_{mode}", cross, n, mask)
        w("  // Text alone (retrieval's text features: the ITC text pass).")
        for cross in (True, False):
            kind = "cross_layer" if cross else "layer"
            qformer_joint_layer(f"qformer_{kind}_text", cross, 1, "padding", with_queries=False)
        w("  // Stage 1's heads, as in Blip2ForImageTextRetrieval (text embeddings, projections, ITM head)")
        w("  // and BERT's LM head for ITG (its decoder is the word embedding, tied).")
        qv, E = s1["vocab"], s1["embed"]
        param("embeddings.word_embeddings.weight", [qv, QD], "qformer_stage1")
        param("embeddings.position_embeddings.weight", [s1["positions"], QD], "qformer_stage1")
        param("vision_projection.weight", [E, QD], "qformer_stage1")
        param("vision_projection.bias", [E], "qformer_stage1", ZEROS)
        param("text_projection.weight", [E, QD], "qformer_stage1")
        param("text_projection.bias", [E], "qformer_stage1", ZEROS)
        param("itm_head.weight", [2, QD], "qformer_stage1")
        param("itm_head.bias", [2], "qformer_stage1", ZEROS)
        param("temp", [], "qformer_stage1", "#mm.init<constant, 0.07>")
        param("cls.predictions.transform.dense.weight", [QD, QD], "qformer_stage1")
        param("cls.predictions.transform.dense.bias", [QD], "qformer_stage1", ZEROS)
        param("cls.predictions.transform.LayerNorm.weight", [QD], "qformer_stage1", ONES)
        param("cls.predictions.transform.LayerNorm.bias", [QD], "qformer_stage1", ZEROS)
        param("cls.predictions.bias", [qv], "qformer_stage1", ZEROS)

    # ---- Q-Former (queries only: the stage-2 and chat path) ---------------
    w("  // Q-Former: learnable queries, post-LN BERT layers; the even layers cross-attend to the image.")
    param("query_tokens", [1, Q, QD], "qformer")
    param("qformer.layernorm.weight", [QD], "qformer", ONES)
    param("qformer.layernorm.bias", [QD], "qformer", ZEROS)
    xq, xi = t(1, Q, QD), t(1, V, VD)
    # Two layer kinds interleaved: index_start/index_step name the checkpoint's layers.
    assert c["cross_freq"] == 2, "the layer index mapping covers a cross-attention frequency of 2"
    n_cross = (c["qlayers"] + c["cross_freq"] - 1) // c["cross_freq"]
    for cross in (True, False):
        name = "qformer_cross_layer" if cross else "qformer_layer"
        count = n_cross if cross else c["qlayers"] - n_cross
        if count == 0:
            continue
        start = 0 if cross else 1
        w(f"  mm.layer @{name}(%x: {xq}, %image: {xi}) -> {xq}")
        w(f'      attributes {{count = {count} : i64, prefix = "qformer.encoder.layer", '
          f'index_start = {start} : i64, index_step = {c["cross_freq"]} : i64}} {{')
        blocks = ["attention"] + (["crossattention"] if cross else [])
        for blk in blocks:
            for n in ["query", "key", "value"]:
                k_in = VD if blk == "crossattention" and n != "query" else QD
                linear_params(f"{blk}.attention.{n}", QD, k_in, "qformer")
            linear_params(f"{blk}.output.dense", QD, QD, "qformer")
            norm_params(f"{blk}.output.LayerNorm", QD, "qformer")
        linear_params("intermediate_query.dense", c["qinter"], QD, "qformer")
        linear_params("output_query.dense", QD, c["qinter"], "qformer")
        norm_params("output_query.LayerNorm", QD, "qformer")
        if s1:
            w("    // The text positions' feed-forward (stage 1 only; this query path does not read it).")
            linear_params("intermediate.dense", c["qinter"], QD, "qformer_stage1")
            linear_params("output.dense", QD, c["qinter"], "qformer_stage1")
            norm_params("output.LayerNorm", QD, "qformer_stage1")
        qs = [1, Q]
        w("    // Self-attention over the queries (bidirectional), then residual + LayerNorm.")
        lin("sq", "x", qs, "attention.attention.query", QD, QD)
        lin("sk", "x", qs, "attention.attention.key", QD, QD)
        lin("sv", "x", qs, "attention.attention.value", QD, QD)
        attention("sa", "sq", "sk", "sv", c["qheads"], Q, Q, QD, 1 / math.sqrt(qdh), "bidirectional")
        lin("so", "sa", qs, "attention.output.dense", QD, QD)
        w(f"{ind}%sr = mm.add %so, %x : {xq}")
        ln("h1", "sr", "attention.output.LayerNorm", QD, qs, Q_EPS)
        h = "h1"
        if cross:
            w("    // Cross-attention: queries read the image features (every token, [CLS] included).")
            lin("cq", "h1", qs, "crossattention.attention.query", QD, QD)
            lin("ck", "image", [1, V], "crossattention.attention.key", QD, VD)
            lin("cv", "image", [1, V], "crossattention.attention.value", QD, VD)
            attention("ca", "cq", "ck", "cv", c["qheads"], Q, V, QD, 1 / math.sqrt(qdh), "bidirectional")
            lin("co", "ca", qs, "crossattention.output.dense", QD, QD)
            w(f"{ind}%cr = mm.add %co, %h1 : {xq}")
            ln("h2", "cr", "crossattention.output.LayerNorm", QD, qs, Q_EPS)
            h = "h2"
        w("    // The queries' feed-forward.")
        lin("f1", h, qs, "intermediate_query.dense", c["qinter"], QD)
        w(f"{ind}%fa = mm.gelu %f1 : {t(1, Q, c['qinter'])}")
        lin("f2", "fa", qs, "output_query.dense", QD, c["qinter"])
        w(f"{ind}%fr = mm.add %f2, %{h} : {xq}")
        ln("y", "fr", "output_query.LayerNorm", QD, qs, Q_EPS)
        w(f"{ind}mm.yield %y : {xq}")
        w("  }")
    if s1:
        stage1_layers_and_params()
    w("")
    w("  // Queries -> the LLM's input width.")
    param("language_projection.weight", [TD, QD], "language_projection")
    param("language_projection.bias", [TD], "language_projection", ZEROS)
    w("")

    # ---- T5 encoder-decoder (the FlanT5-style variant) ---------------------
    def t5_language_model():
        """T5ForConditionalGeneration's parameters and layers: pre-RMS-norm blocks without biases,
        attention without scaling, the relative position bias of each stack's first layer shared
        by all its layers (an extra layer argument), the gated-GELU feed-forward, an untied head."""
        H, dkv, FF, NB = c["theads"], c["tdkv"], c["tinter"], c["buckets"]
        inner, SD = H * dkv, c["dec_seq"]
        # T5's initialisation (its _init_weights, factor 1): without score scaling the query
        # projection starts small. The head starts at d_model^-0.5 (T5 draws an untied head
        # at 1.0, which puts this tiny model's first logits at a standard deviation of 16).
        nq = f"#mm.init<normal, {(TD * dkv) ** -0.5:.6f}>"
        nk = f"#mm.init<normal, {TD ** -0.5:.6f}>"
        no = f"#mm.init<normal, {inner ** -0.5:.6f}>"
        nwo = f"#mm.init<normal, {FF ** -0.5:.6f}>"
        lm = "language_model"
        w("  // T5 (FlanT5-style): shared token embeddings, an encoder and a decoder of pre-RMS-norm")
        w("  // blocks without biases, attention without scaling, the relative position bias of each")
        w("  // stack's first layer shared by all its layers, gated-GELU feed-forward, an untied LM head.")
        param(f"{lm}.shared.weight", [c["vocab"], TD], "language_model", "#mm.init<normal, 1.0>")
        for stack in ("encoder", "decoder"):
            param(f"{lm}.{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [NB, H],
                  "language_model", nk)
        x_len, table = t(dtype="i32"), t(NB, H)

        def rms(out, x, name, xs):
            weight(out + "_g", name + ".weight", [TD])
            w(f"{ind}%{out} = mm.rms_norm %{x}, %{out}_g {{eps = {fl(T5_EPS)}}} : ({t(*xs, TD)}, {t(TD)}) -> {t(*xs, TD)}")

        def attn_params(block):
            for n, init in (("q", nq), ("k", nk), ("v", nk)):
                param(f"{block}.{n}.weight", [inner, TD], "language_model", init, pre=ind)
            param(f"{block}.o.weight", [TD, inner], "language_model", no, pre=ind)

        def ff_params(sub):
            param(f"layer.{sub}.DenseReluDense.wi_0.weight", [FF, TD], "language_model", nk, pre=ind)
            param(f"layer.{sub}.DenseReluDense.wi_1.weight", [FF, TD], "language_model", nk, pre=ind)
            param(f"layer.{sub}.DenseReluDense.wo.weight", [TD, FF], "language_model", nwo, pre=ind)

        def self_attention(sub, T, mask, length):
            xs, xT = [1, T], t(1, T, TD)
            w(f"    // layer.{sub}: x + SelfAttention(RMSNorm(x)), the shared relative position bias.")
            rms("n0", "x", f"layer.{sub}.layer_norm", xs)
            for n in "qkv":
                lin(f"s{n}", "n0", xs, f"layer.{sub}.SelfAttention.{n}", inner, TD, bias=False)
            w(f"{ind}%sa = mm.attention %sq, %sk, %sv, %{length} bias %table {{num_heads = {H} : i64, "
              f"num_kv_heads = {H} : i64, mask = #mm.mask<{mask}>, scale = {fl(1.0)}, "
              f"bias_max_distance = {c['max_distance']} : i64}} : "
              f"({t(1, T, inner)}, {t(1, T, inner)}, {t(1, T, inner)}, {x_len}, {table}) -> {t(1, T, inner)}")
            lin("so", "sa", xs, f"layer.{sub}.SelfAttention.o", TD, inner, bias=False)
            w(f"{ind}%h0 = mm.add %x, %so : {xT}")

        def feed_forward(sub, x, T, out):
            xs, xT = [1, T], t(1, T, TD)
            w(f"    // layer.{sub}: x + wo(gelu_new(wi_0(n)) * wi_1(n)), n = RMSNorm(x).")
            rms("nf", x, f"layer.{sub}.layer_norm", xs)
            lin("wi0", "nf", xs, f"layer.{sub}.DenseReluDense.wi_0", FF, TD, bias=False)
            lin("wi1", "nf", xs, f"layer.{sub}.DenseReluDense.wi_1", FF, TD, bias=False)
            w(f"{ind}%gate = mm.gelu_tanh %wi0 : {t(1, T, FF)}")
            w(f"{ind}%gated = mm.mul %gate, %wi1 : {t(1, T, FF)}")
            lin("wo", "gated", xs, f"layer.{sub}.DenseReluDense.wo", TD, FF, bias=False)
            w(f"{ind}%{out} = mm.add %{x}, %wo : {xT}")

        xe, xd = t(1, S, TD), t(1, SD, TD)
        w(f"  mm.layer @t5_encoder_layer(%x: {xe}, %table: {table}, %len: {x_len}) -> {xe}")
        w(f'      attributes {{count = {c["tlayers"]} : i64, prefix = "{lm}.encoder.block"}} {{')
        param("layer.0.layer_norm.weight", [TD], "language_model", ONES, pre=ind)
        attn_params("layer.0.SelfAttention")
        param("layer.1.layer_norm.weight", [TD], "language_model", ONES, pre=ind)
        ff_params(1)
        w("    // The encoder sees every real position (queries, prefix, </s>) both ways.")
        self_attention(0, S, "padding", "len")
        feed_forward(1, "h0", S, "y")
        w(f"{ind}mm.yield %y : {xe}")
        w("  }")
        w(f"  mm.layer @t5_decoder_layer(%x: {xd}, %enc: {xe}, %table: {table}, %len: {x_len}, %enc_len: {x_len}) -> {xd}")
        w(f'      attributes {{count = {c["tdlayers"]} : i64, prefix = "{lm}.decoder.block"}} {{')
        param("layer.0.layer_norm.weight", [TD], "language_model", ONES, pre=ind)
        attn_params("layer.0.SelfAttention")
        param("layer.1.layer_norm.weight", [TD], "language_model", ONES, pre=ind)
        attn_params("layer.1.EncDecAttention")
        param("layer.2.layer_norm.weight", [TD], "language_model", ONES, pre=ind)
        ff_params(2)
        self_attention(0, SD, "causal", "len")
        xs = [1, SD]
        w("    // layer.1: h + EncDecAttention(RMSNorm(h), encoder output): no position bias, the")
        w("    // encoder's padding masked.")
        rms("n1", "h0", "layer.1.layer_norm", xs)
        lin("cq", "n1", xs, "layer.1.EncDecAttention.q", inner, TD, bias=False)
        lin("ck", "enc", [1, S], "layer.1.EncDecAttention.k", inner, TD, bias=False)
        lin("cv", "enc", [1, S], "layer.1.EncDecAttention.v", inner, TD, bias=False)
        w(f"{ind}%ca = mm.attention %cq, %ck, %cv, %enc_len {{num_heads = {H} : i64, num_kv_heads = {H} : i64, "
          f"mask = #mm.mask<bidirectional>, scale = {fl(1.0)}}} : "
          f"({t(1, SD, inner)}, {t(1, S, inner)}, {t(1, S, inner)}, {x_len}) -> {t(1, SD, inner)}")
        lin("co", "ca", xs, "layer.1.EncDecAttention.o", TD, inner, bias=False)
        w(f"{ind}%h1 = mm.add %h0, %co : {xd}")
        feed_forward(2, "h1", SD, "y")
        w(f"{ind}mm.yield %y : {xd}")
        w("  }")
        param(f"{lm}.encoder.final_layer_norm.weight", [TD], "language_model", ONES)
        param(f"{lm}.decoder.final_layer_norm.weight", [TD], "language_model", ONES)
        param(f"{lm}.lm_head.weight", [c["vocab"], TD], "language_model", nk)
        w("")

    def t5_encoder(inputs):
        """The encoder over INPUTS [1, S, TD] with %length real positions -> %enc_out."""
        lm, NB, H = "language_model", c["buckets"], c["theads"]
        xe = t(1, S, TD)
        weight("enc_table", f"{lm}.encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [NB, H])
        w(f"{ind}%encoded = mm.apply_layer @t5_encoder_layer from 0 to {c['tlayers']} (%{inputs}, %enc_table, %length) : "
          f"({xe}, {t(NB, H)}, {t(dtype='i32')}) -> {xe}")
        weight("enc_final_g", f"{lm}.encoder.final_layer_norm.weight", [TD])
        w(f"{ind}%enc_out = mm.rms_norm %encoded, %enc_final_g {{eps = {fl(T5_EPS)}}} : ({xe}, {t(TD)}) -> {xe}")

    def t5_decoder_logits(enc):
        """The decoder over %decoder_input_ids (%decoder_length real) reading ENC -> %logits."""
        lm, NB, H, SD, V_ = "language_model", c["buckets"], c["theads"], c["dec_seq"], c["vocab"]
        xe, xd, il = t(1, S, TD), t(1, SD, TD), t(dtype="i32")
        weight("dec_embed_w", f"{lm}.shared.weight", [V_, TD])
        w(f"{ind}%dec_in = mm.embedding %decoder_input_ids, %dec_embed_w : ({t(1, SD, dtype='i32')}, {t(V_, TD)}) -> {xd}")
        weight("dec_table", f"{lm}.decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", [NB, H])
        w(f"{ind}%decoded = mm.apply_layer @t5_decoder_layer from 0 to {c['tdlayers']} "
          f"(%dec_in, %{enc}, %dec_table, %decoder_length, %length) : ({xd}, {xe}, {t(NB, H)}, {il}, {il}) -> {xd}")
        weight("dec_final_g", f"{lm}.decoder.final_layer_norm.weight", [TD])
        w(f"{ind}%dec_out = mm.rms_norm %decoded, %dec_final_g {{eps = {fl(T5_EPS)}}} : ({xd}, {t(TD)}) -> {xd}")
        weight("head_w", f"{lm}.lm_head.weight", [V_, TD])
        w(f"{ind}%logits = mm.linear %dec_out, %head_w : ({xd}, {t(V_, TD)}) -> {t(1, SD, V_)}")

    def t5_entries():
        lm, SD, V_ = "language_model", c["dec_seq"], c["vocab"]
        pix, ids, il = t(1, 3, c["image"], c["image"]), t(1, S, dtype="i32"), t(dtype="i32")
        dids = t(1, SD, dtype="i32")
        img_arg = f'%pixel_values: {pix} {{mm.name = "pixel_values"}}, '
        enc_args = f'%input_ids: {ids} {{mm.name = "input_ids"}}, %length: {il} {{mm.name = "length"}}'
        dec_args = (f'%decoder_input_ids: {dids} {{mm.name = "decoder_input_ids"}}, %targets: {dids} {{mm.name = "targets"}}, '
                    f'%decoder_length: {il} {{mm.name = "decoder_length"}}')

        def embed_encoder_input(with_image):
            weight("embed_w", f"{lm}.shared.weight", [V_, TD])
            w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({ids}, {t(V_, TD)}) -> {t(1, S, TD)}")
            if not with_image:
                return "text"
            w(f"{ind}%merged = mm.merge_image_features %text, %input_ids, %query_embeds {{image_token_index = {c['image_token']} : i64}} "
              f": ({t(1, S, TD)}, {ids}, {t(1, Q, TD)}) -> {t(1, S, TD)}")
            return "merged"

        def loss():
            w(f"{ind}%loss = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} : ({t(1, SD, V_)}, {dids}) -> {t()}")
            w(f"{ind}mm.return %loss : {t()}")
            w("  }")

        vision_embeds_entry()
        w("  // Stage 2's loss (prefix language modelling) from the ViT's output (vision_embeds): the")
        w("  // projected queries stand at the <image> positions of the encoder's input,")
        w("  // [queries][prefix]</s> (length real positions); the decoder reads [start][suffix] and")
        w("  // predicts [suffix]</s>: cross-entropy summed over the targets that are not -100.")
        w(f'  mm.entry @lm_loss(%image_embeds: {t(1, V, VD)} {{mm.name = "image_embeds"}}, {enc_args}, {dec_args})')
        w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
        qformer_graph()
        t5_encoder(embed_encoder_input(True))
        t5_decoder_logits("enc_out")
        loss()
        w("")
        w("  // The T5's pre-training: the same loss over text alone (the caption's words where the")
        w("  // queries will stand, then the prefix; the decoder writes the suffix).")
        w(f"  mm.entry @text_loss({enc_args}, {dec_args})")
        w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
        t5_encoder(embed_encoder_input(False))
        t5_decoder_logits("enc_out")
        loss()
        w("")
        return img_arg, enc_args, ids, dids, il, pix

    def t5_chat_entries(img_arg, enc_args, ids, dids, il):
        SD, V_, xe = c["dec_seq"], c["vocab"], t(1, S, TD)
        w("  // Generation: encode runs the image and the prompt through the encoder once; decoder_logits")
        w("  // runs the decoder over the tokens generated so far (decoder_length of them, the start")
        w("  // token first) against that output. There is no KV cache for this model yet: each new")
        w("  // token reruns the decoder over the whole prefix.")
        w(f"  mm.entry @encode({img_arg}{enc_args}) -> ({xe} {{mm.name = \"encoder_hidden_states\"}}) {{")
        vision_graph()
        qformer_graph()
        weight("embed_w", f"language_model.shared.weight", [V_, TD])
        w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({ids}, {t(V_, TD)}) -> {xe}")
        w(f"{ind}%merged = mm.merge_image_features %text, %input_ids, %query_embeds {{image_token_index = {c['image_token']} : i64}} "
          f": ({xe}, {ids}, {t(1, Q, TD)}) -> {xe}")
        t5_encoder("merged")
        w(f"{ind}mm.return %enc_out : {xe}")
        w("  }")
        w(f'  mm.entry @decoder_logits(%encoder_hidden_states: {xe} {{mm.name = "encoder_hidden_states"}}, '
          f'%length: {il} {{mm.name = "length"}}, %decoder_input_ids: {dids} {{mm.name = "decoder_input_ids"}}, '
          f'%decoder_length: {il} {{mm.name = "decoder_length"}})')
        w(f'      -> ({t(1, SD, V_)} {{mm.name = "logits"}}) {{')
        t5_decoder_logits("encoder_hidden_states")
        w(f"{ind}mm.return %logits : {t(1, SD, V_)}")
        w("  }")

    if t5:
        t5_language_model()
    else:
        # ---- OPT decoder -------------------------------------------------------
        lm = "language_model.model.decoder"
        w("  // OPT decoder; the LM head is the token embedding (tied).")
        param(f"{lm}.embed_tokens.weight", [c["vocab"], TD], "language_model")
        param(f"{lm}.embed_positions.weight", [c["max_pos"] + 2, TD], "language_model")
        x_len = t(dtype="i32")
        cache = t(c["tlayers"], 1, S, TD)

        def decoder_layer(name, T, mode):
            xT = t(1, T, TD)
            decoder_layer_header(w, name, mode, xT, cache, x_len, c["tlayers"], f"{lm}.layers", "opt_decoder_layer")
            if mode == "train":
                for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
                    linear_params(f"self_attn.{n}", TD, TD, "language_model")
                for n in ["self_attn_layer_norm", "final_layer_norm"]:
                    norm_params(n, TD, "language_model")
                linear_params("fc1", c["tinter"], TD, "language_model")
                linear_params("fc2", TD, c["tinter"], "language_model")
            xs = [1, T]
            ln("n1", "x", "self_attn_layer_norm", TD, xs, T_EPS)
            lin("q", "n1", xs, "self_attn.q_proj", TD, TD)
            lin("k", "n1", xs, "self_attn.k_proj", TD, TD)
            lin("v", "n1", xs, "self_attn.v_proj", TD, TD)
            scale = 1 / math.sqrt(tdh)
            keys, values = kv_cache_ops(w, ind, mode, "k", "v", xT, cache, x_len, t(1, S, TD))
            if mode == "decode":
                attention("attn", "q", keys, values, c["theads"], 1, S, TD, scale, "bidirectional", "len")
            else:
                attention("attn", "q", keys, values, c["theads"], T, T, TD, scale, "causal", "len")
            lin("o", "attn", xs, "self_attn.out_proj", TD, TD)
            w(f"{ind}%h = mm.add %x, %o : {xT}")
            ln("n2", "h", "final_layer_norm", TD, xs, T_EPS)
            lin("fc1", "n2", xs, "fc1", c["tinter"], TD)
            w(f"{ind}%act = mm.relu %fc1 : {t(1, T, c['tinter'])}")
            lin("fc2", "act", xs, "fc2", TD, c["tinter"])
            w(f"{ind}%y = mm.add %h, %fc2 : {xT}")
            decoder_layer_end(w, ind, mode, "y", xT, cache)

        decoder_layer("opt_decoder_layer", S, "train")
        w("  // The same layers (same parameters) for chat: prefill fills the KV cache, decode extends it.")
        decoder_layer("opt_decoder_layer_prefill", S, "prefill")
        decoder_layer("opt_decoder_layer_decode", 1, "decode")
        param(f"{lm}.final_layer_norm.weight", [TD], "language_model", ONES)
        param(f"{lm}.final_layer_norm.bias", [TD], "language_model", ZEROS)
        w("")

    # ---- Stages ------------------------------------------------------------
    def stage(name, groups, loss, data, lr, batch):
        gl = ", ".join("@" + g for g in groups)
        w(f'  mm.stage @{name} trainable [{gl}] loss @{loss} data "{data}" '
          f'{{lr = {fl(lr)}, schedule = "cosine", warmup_ratio = {fl(0.03)}, weight_decay = {fl(0.05)}, '
          f'batch = {batch} : i64, epochs = 1 : i64}}')
    if c.get("pretrain"):
        w("  // The tiny parts start from random weights: these stages first make them worth freezing.")
        w("  // The LLM learns the captions' language, reading a context where the queries will stand: the")
        if t5:
            w("  // The T5 learns the captions' language as prefix language modelling over text: the caption's")
            w("  // words where the queries will stand, then a prefix of it; the decoder writes the rest")
            w("  // (data \"caption_split\"). It learns to read its encoder, which stage 2 then feeds ...")
            stage("pretrain_llm", ["language_model"], "text_loss", "caption_split", 1e-3, 8)
        else:
            w("  // scene's layout, one position per cell of its 3 x 3 grid: the sum of the cell's colour and")
            w("  // shape embeddings (data \"caption_layout\"), as a pre-trained LLM reads its prompt ...")
            stage("pretrain_llm", ["language_model"], "layout_lm_loss", "caption_layout", c.get("pretrain_lr", 1e-3), 8)
        w("  // ... and the ViT learns which object (colour, shape, size) shows in each patch.")
        stage("pretrain_vision", ["vision_model", "vision_pretrain_head"], "patch_loss", "patch_labels", 1e-3, 8)
    if s1:
        w("  // Stage 1: vision-language representation learning, ViT frozen, no LLM: ITC + ITM + ITG in one")
        w(f"  // step over a batch of {s1['batch']} image-text pairs (each loss a mean; the step's loss is their sum).")
        stage("stage1", ["qformer", "qformer_stage1"], "stage1_loss", "image_text", s1["lr"], s1["batch"])
    w("  // Stage 2: vision-to-language generation. The Q-Former and the projection learn; the")
    w(f"  // frozen {'T5' if t5 else 'OPT'} passes the loss's gradient back to them as activation gradients only.")
    if t5:
        w("  // Prefix language modelling (data \"image_caption_split\"): the queries and a prefix of the")
        w("  // caption into the encoder, the rest of it from the decoder.")
    stage("stage2", ["qformer", "language_projection"], "lm_loss", "image_caption_split" if t5 else "image_caption",
          c["stage_lr2"], c["batch2"])
    w("")

    # ---- Entries -----------------------------------------------------------
    pix = t(1, 3, c["image"], c["image"])
    ids = t(1, S, dtype="i32")
    x_t = t(1, S, TD)

    def vision_graph():
        w(f"    // ViT: {'convolutional stem, ' if stem else ''}patches (+ bias), [CLS], positions, layers, post-LN.")
        x, xt, ch_in = stem_graph(w, weight, ind, f"{vm}.embeddings", stem, c["image"])
        weight("patch_w", f"{vm}.embeddings.patch_embedding.weight", [VD, ch_in, pe, pe])
        weight("patch_b", f"{vm}.embeddings.patch_embedding.bias", [VD])
        w(f"{ind}%patches0 = mm.patch_embed %{x}, %patch_w : ({xt}, {t(VD, ch_in, pe, pe)}) -> {t(1, P, VD)}")
        w(f"{ind}%patch_bias = mm.broadcast %patch_b : ({t(VD)}) -> {t(1, P, VD)}")
        w(f"{ind}%patches = mm.add %patches0, %patch_bias : {t(1, P, VD)}")
        weight("cls", f"{vm}.embeddings.class_embedding", [1, 1, VD])
        w(f"{ind}%tokens = mm.concat %cls, %patches {{axis = 1 : i64}} : ({t(1, 1, VD)}, {t(1, P, VD)}) -> {xv}")
        weight("pos", f"{vm}.embeddings.position_embedding", [1, V, VD])
        w(f"{ind}%embeds = mm.add %tokens, %pos : {xv}")
        w(f"{ind}%hidden = mm.apply_layer @vision_encoder_layer from 0 to {c['vlayers']} (%embeds) : ({xv}) -> {xv}")
        ln("image_embeds", "hidden", f"{vm}.post_layernorm", VD, [1, V], V_EPS)

    def qformer_joint(out, mode, n, image, ids, length, itg=False):
        """Embeds IDS (word + position; [DEC] in place of [CLS] for ITG), puts the queries in
        front (not for the text-only pass), LayerNorms and runs the Q-Former layers of MODE."""
        TT = s1["text"]
        qv = s1["vocab"]
        idt, xt_ = t(n, TT, dtype="i32"), t(n, TT, QD)
        weight(f"{out}_word_w", "embeddings.word_embeddings.weight", [qv, QD])
        w(f"{ind}%{out}_tok = mm.embedding %{ids}, %{out}_word_w : ({idt}, {t(qv, QD)}) -> {xt_}")
        tok = f"{out}_tok"
        if itg:
            w(f"    // ITG starts the text with the decoder start token [DEC] (id {s1['dec']}) instead of [CLS].")
            w(f"{ind}%{out}_dec_ids = mm.constant {{value = {float(s1['dec'])} : f64}} : {t(n, 1, dtype='i32')}")
            w(f"{ind}%{out}_dec = mm.embedding %{out}_dec_ids, %{out}_word_w : ({t(n, 1, dtype='i32')}, {t(qv, QD)}) -> {t(n, 1, QD)}")
            w(f"{ind}%{out}_rest = mm.slice %{tok} {{axis = 1 : i64, start = 1 : i64}} : ({xt_}) -> {t(n, TT - 1, QD)}")
            w(f"{ind}%{out}_tok2 = mm.concat %{out}_dec, %{out}_rest {{axis = 1 : i64}} : ({t(n, 1, QD)}, {t(n, TT - 1, QD)}) -> {xt_}")
            tok = f"{out}_tok2"
        weight(f"{out}_pos_w", "embeddings.position_embeddings.weight", [s1["positions"], QD])
        pos = f"{out}_pos_w"
        if s1["positions"] > TT:
            w(f"{ind}%{out}_pos_t = mm.slice %{pos} {{axis = 0 : i64, start = 0 : i64}} : ({t(s1['positions'], QD)}) -> {t(TT, QD)}")
            pos = f"{out}_pos_t"
        w(f"{ind}%{out}_pos = mm.broadcast %{pos} : ({t(TT, QD)}) -> {xt_}")
        w(f"{ind}%{out}_text = mm.add %{tok}, %{out}_pos : {xt_}")
        x, L = f"{out}_text", TT
        if mode != "text":
            L = Q + TT
            weight(f"{out}_queries", "query_tokens", [1, Q, QD])
            w(f"{ind}%{out}_qb = mm.broadcast %{out}_queries : ({t(1, Q, QD)}) -> {t(n, Q, QD)}")
            w(f"{ind}%{out}_joint = mm.concat %{out}_qb, %{out}_text {{axis = 1 : i64}} : ({t(n, Q, QD)}, {xt_}) -> {t(n, L, QD)}")
            x = f"{out}_joint"
        ln(f"{out}_h0", x, "qformer.layernorm", QD, [n, L], Q_EPS)
        x = f"{out}_h0"
        xj, xin, lt = t(n, L, QD), t(n, V, VD), t(n, dtype="i32")
        img, imgt = (f"%{image}, ", f"{xin}, ") if mode != "text" else ("", "")
        for i in range(c["qlayers"]):
            kind, inst = layer_instance(i)
            w(f"{ind}%{out}_l{i} = mm.apply_layer @qformer_{kind}_{mode} from {inst} to {inst + 1} (%{x}, {img}%{length}) : "
              f"({xj}, {imgt}{lt}) -> {xj}")
            x = f"{out}_l{i}"
        return x

    def itc_features(out, q_out, n):
        """The normalised ITC image features [n, Q, E] of query outputs Q_OUT."""
        E = s1["embed"]
        lin(f"{out}_proj", q_out, [n, Q], "vision_projection", E, QD)
        w(f"{ind}%{out} = mm.l2_normalize %{out}_proj {{eps = 1.000000e-12 : f64}} : {t(n, Q, E)}")

    def text_itc_features(out, cls_out, n):
        """The normalised ITC text features [n, E] of [CLS] outputs CLS_OUT [n, 1, QD]."""
        E = s1["embed"]
        lin(f"{out}_proj", cls_out, [n, 1], "text_projection", E, QD)
        w(f"{ind}%{out}_n = mm.l2_normalize %{out}_proj {{eps = 1.000000e-12 : f64}} : {t(n, 1, E)}")
        w(f"{ind}%{out} = mm.reshape %{out}_n : ({t(n, 1, E)}) -> {t(n, E)}")

    def itm_logits(out, joint_out, n):
        """ITM logits [n, 1, 2]: the head on the query outputs, averaged over the queries
        (the mean first, as the head is linear)."""
        L = Q + s1["text"]
        w(f"{ind}%{out}_q = mm.slice %{joint_out} {{axis = 1 : i64, start = 0 : i64}} : ({t(n, L, QD)}) -> {t(n, Q, QD)}")
        w(f"{ind}%{out}_qt = mm.transpose %{out}_q : ({t(n, Q, QD)}) -> {t(n, QD, Q)}")
        w(f"{ind}%{out}_avg_w = mm.constant {{value = {fl(1.0 / Q)}}} : {t(1, Q)}")
        w(f"{ind}%{out}_avg = mm.linear %{out}_qt, %{out}_avg_w : ({t(n, QD, Q)}, {t(1, Q)}) -> {t(n, QD, 1)}")
        w(f"{ind}%{out}_mean = mm.transpose %{out}_avg : ({t(n, QD, 1)}) -> {t(n, 1, QD)}")
        lin(out, f"{out}_mean", [n, 1], "itm_head", 2, QD)

    qformer_out = f"qf{c['qlayers'] - 1}"

    def qformer_graph(project=True):
        w("    // Q-Former over the learnable queries, cross-attending to the image features.")
        weight("queries", "query_tokens", [1, Q, QD])
        ln("q0", "queries", "qformer.layernorm", QD, [1, Q], Q_EPS)
        x = "q0"
        for i in range(c["qlayers"]):
            cross = i % c["cross_freq"] == 0
            name = "qformer_cross_layer" if cross else "qformer_layer"
            inst = i // c["cross_freq"] if cross else i - (i // c["cross_freq"] + 1)
            w(f"{ind}%qf{i} = mm.apply_layer @{name} from {inst} to {inst + 1} (%{x}, %image_embeds) : "
              f"({xq}, {xi}) -> {xq}")
            x = f"qf{i}"
        if project:
            lin("query_embeds", x, [1, Q], "language_projection", TD, QD)

    def llm_input(pos_offset=None):
        w("    // OPT input: token embeddings, the projected queries at the <image> positions, learned positions (row 2 on).")
        weight("embed_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
        w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({ids}, {t(c['vocab'], TD)}) -> {x_t}")
        w(f"{ind}%merged = mm.merge_image_features %text, %input_ids, %query_embeds {{image_token_index = {c['image_token']} : i64}} "
          f": ({x_t}, {ids}, {t(1, Q, TD)}) -> {x_t}")
        weight("pos_w", f"{lm}.embed_positions.weight", [c["max_pos"] + 2, TD])
        w(f"{ind}%positions = mm.slice %pos_w {{axis = 0 : i64, start = 2 : i64}} : ({t(c['max_pos'] + 2, TD)}) -> {t(S, TD)}")
        w(f"{ind}%pos_b = mm.broadcast %positions : ({t(S, TD)}) -> {x_t}")
        w(f"{ind}%inputs = mm.add %merged, %pos_b : {x_t}")

    def llm_head(decoded, T):
        xT = t(1, T, TD)
        ln("final", decoded, f"{lm}.final_layer_norm", TD, [1, T], T_EPS)
        weight("head_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
        w(f"{ind}%logits = mm.linear %final, %head_w : ({xT}, {t(c['vocab'], TD)}) -> {t(1, T, c['vocab'])}")

    def vision_embeds_entry():
        w("  // The frozen ViT's output for one image (post-LayerNorm, [CLS] first). No stage that")
        w("  // reads it trains the ViT, so mmrun computes it once per image and caches it across")
        w("  // steps and samples.")
        w(f'  mm.entry @vision_embeds(%pixel_values: {pix} {{mm.name = "pixel_values"}}) -> ({t(1, V, VD)} {{mm.name = "image_embeds"}}) {{')
        vision_graph()
        w(f"{ind}mm.return %image_embeds : {t(1, V, VD)}")
        w("  }")
        w("")

    def model_graph(prefill=False, layout=False, cached=False):
        """The OPT's logits over %input_ids with the queries at the <image> positions: the
        Q-Former's over %pixel_values (with CACHED over the ViT's output, %image_embeds), or
        with LAYOUT the sum of the embeddings of %cell_colour_ids and %cell_shape_ids (the
        OPT's layout pre-training)."""
        if layout:
            qi = t(1, Q, dtype="i32")
            weight("cell_embed_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
            w(f"{ind}%cell_colours = mm.embedding %cell_colour_ids, %cell_embed_w : ({qi}, {t(c['vocab'], TD)}) -> {t(1, Q, TD)}")
            w(f"{ind}%cell_shapes = mm.embedding %cell_shape_ids, %cell_embed_w : ({qi}, {t(c['vocab'], TD)}) -> {t(1, Q, TD)}")
            w(f"{ind}%query_embeds = mm.add %cell_colours, %cell_shapes : {t(1, Q, TD)}")
        else:
            if not cached:
                vision_graph()
            qformer_graph()
        llm_input()
        if prefill:
            w(f"{ind}%dec:3 = mm.apply_layer @opt_decoder_layer_prefill from 0 to {c['tlayers']} "
              f"(%inputs, %k_cache, %v_cache, %length) : ({x_t}, {cache}, {cache}, {x_len}) -> ({x_t}, {cache}, {cache})")
            llm_head("dec#0", S)
        else:
            w(f"{ind}%decoded = mm.apply_layer @opt_decoder_layer from 0 to {c['tlayers']} (%inputs, %length) : "
              f"({x_t}, {x_len}) -> {x_t}")
            llm_head("decoded", S)

    def stage1_entries():
        B, TT, E = s1["batch"], s1["text"], s1["embed"]
        L, qv = Q + TT, s1["vocab"]
        idsB, lenB = t(B, TT, dtype="i32"), t(B, dtype="i32")
        w("  // Stage 1's loss over a batch. image_embeds: vision_embeds of each image; input_ids: [CLS]")
        w("  // caption \"\\n\", padded; targets: the next token of each text position (-100 past the text);")
        w("  // length: the real positions of [queries; text] (queries + text length); the uniform")
        w("  // numbers draw the ITM hard negatives.")
        w(f'  mm.entry @stage1_loss(%image_embeds: {t(B, V, VD)} {{mm.name = "image_embeds"}}, %input_ids: {idsB} {{mm.name = "input_ids"}}, '
          f'%targets: {idsB} {{mm.name = "targets"}}, %length: {lenB} {{mm.name = "length"}}, '
          f'%negative_text_uniform: {t(B)} {{mm.name = "negative_text_uniform"}}, '
          f'%negative_image_uniform: {t(B)} {{mm.name = "negative_image_uniform"}})')
        w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
        w("    // ---- ITC: image-text contrastive, in-batch negatives both ways.")
        itc = qformer_joint("itc", "itc", B, "image_embeds", "input_ids", "length")
        w(f"{ind}%itc_q = mm.slice %{itc} {{axis = 1 : i64, start = 0 : i64}} : ({t(B, L, QD)}) -> {t(B, Q, QD)}")
        w(f"{ind}%itc_cls = mm.slice %{itc} {{axis = 1 : i64, start = {Q} : i64}} : ({t(B, L, QD)}) -> {t(B, 1, QD)}")
        itc_features("image_feat", "itc_q", B)
        text_itc_features("text_feat", "itc_cls", B)
        w("    // Image-text similarity: the best match over the queries; over the learnable temperature.")
        w(f"{ind}%sim_qt = mm.linear %image_feat, %text_feat : ({t(B, Q, E)}, {t(B, E)}) -> {t(B, Q, B)}")
        w(f"{ind}%sim_max = mm.reduce_max %sim_qt {{axis = 1 : i64}} : ({t(B, Q, B)}) -> {t(B, B)}")
        weight("temp", "temp", [])
        w(f"{ind}%temp_b = mm.broadcast %temp : ({t()}) -> {t(B, B)}")
        w(f"{ind}%sim_i2t = mm.div %sim_max, %temp_b : {t(B, B)}")
        w(f"{ind}%sim_t2i = mm.transpose %sim_i2t : ({t(B, B)}) -> {t(B, B)}")
        w(f"{ind}%itc_targets = mm.iota : {t(B, dtype='i32')}")
        w(f"{ind}%ce_i2t = mm.cross_entropy %sim_i2t, %itc_targets {{ignore_index = -100 : i64, mean}} : ({t(B, B)}, {t(B, dtype='i32')}) -> {t()}")
        w(f"{ind}%ce_t2i = mm.cross_entropy %sim_t2i, %itc_targets {{ignore_index = -100 : i64, mean}} : ({t(B, B)}, {t(B, dtype='i32')}) -> {t()}")
        w(f"{ind}%ce_itc = mm.add %ce_i2t, %ce_t2i : {t()}")
        w(f"{ind}%half = mm.constant {{value = 5.000000e-01 : f64}} : {t()}")
        w(f"{ind}%loss_itc = mm.mul %ce_itc, %half : {t()}")
        w("    // ---- ITM: a hard-negative text per image and a hard-negative image per text, drawn from the")
        w("    // ITC similarities (never the positive); the batch becomes [positives, negative images, negative texts].")
        w(f"{ind}%neg_text = mm.sample_negatives %sim_i2t, %negative_text_uniform : ({t(B, B)}, {t(B)}) -> {t(B, dtype='i32')}")
        w(f"{ind}%neg_image = mm.sample_negatives %sim_t2i, %negative_image_uniform : ({t(B, B)}, {t(B)}) -> {t(B, dtype='i32')}")
        xi_b, xi_2b, xi_3b = t(B, V, VD), t(2 * B, V, VD), t(3 * B, V, VD)
        w(f"{ind}%image_neg = mm.gather %image_embeds, %neg_image : ({xi_b}, {t(B, dtype='i32')}) -> {xi_b}")
        w(f"{ind}%ids_neg = mm.gather %input_ids, %neg_text : ({idsB}, {t(B, dtype='i32')}) -> {idsB}")
        w(f"{ind}%length_neg = mm.gather %length, %neg_text : ({lenB}, {t(B, dtype='i32')}) -> {lenB}")
        w(f"{ind}%itm_image_a = mm.concat %image_embeds, %image_neg {{axis = 0 : i64}} : ({xi_b}, {xi_b}) -> {xi_2b}")
        w(f"{ind}%itm_image = mm.concat %itm_image_a, %image_embeds {{axis = 0 : i64}} : ({xi_2b}, {xi_b}) -> {xi_3b}")
        ids2, ids3 = t(2 * B, TT, dtype="i32"), t(3 * B, TT, dtype="i32")
        w(f"{ind}%itm_ids_a = mm.concat %input_ids, %input_ids {{axis = 0 : i64}} : ({idsB}, {idsB}) -> {ids2}")
        w(f"{ind}%itm_ids = mm.concat %itm_ids_a, %ids_neg {{axis = 0 : i64}} : ({ids2}, {idsB}) -> {ids3}")
        l2, l3 = t(2 * B, dtype="i32"), t(3 * B, dtype="i32")
        w(f"{ind}%itm_length_a = mm.concat %length, %length {{axis = 0 : i64}} : ({lenB}, {lenB}) -> {l2}")
        w(f"{ind}%itm_length = mm.concat %itm_length_a, %length_neg {{axis = 0 : i64}} : ({l2}, {lenB}) -> {l3}")
        itm = qformer_joint("itm", "itm", 3 * B, "itm_image", "itm_ids", "itm_length")
        itm_logits("itm_logits", itm, 3 * B)
        w(f"{ind}%itm_positive = mm.constant {{value = 1.0 : f64}} : {t(B, 1, dtype='i32')}")
        w(f"{ind}%itm_negative = mm.constant {{value = 0.0 : f64}} : {t(2 * B, 1, dtype='i32')}")
        w(f"{ind}%itm_targets = mm.concat %itm_positive, %itm_negative {{axis = 0 : i64}} : ({t(B, 1, dtype='i32')}, {t(2 * B, 1, dtype='i32')}) -> {t(3 * B, 1, dtype='i32')}")
        w(f"{ind}%loss_itm = mm.cross_entropy %itm_logits, %itm_targets {{ignore_index = -100 : i64, mean}} : "
          f"({t(3 * B, 1, 2)}, {t(3 * B, 1, dtype='i32')}) -> {t()}")
        w("    // ---- ITG: the caption generated from the queries under the multimodal-causal mask.")
        itg = qformer_joint("itg", "itg", B, "image_embeds", "input_ids", "length", itg=True)
        w(f"{ind}%itg_out = mm.slice %{itg} {{axis = 1 : i64, start = {Q} : i64}} : ({t(B, L, QD)}) -> {t(B, TT, QD)}")
        lin("itg_dense", "itg_out", [B, TT], "cls.predictions.transform.dense", QD, QD)
        w(f"{ind}%itg_act = mm.gelu %itg_dense : {t(B, TT, QD)}")
        ln("itg_norm", "itg_act", "cls.predictions.transform.LayerNorm", QD, [B, TT], Q_EPS)
        weight("itg_decoder_w", "embeddings.word_embeddings.weight", [qv, QD])
        weight("itg_decoder_b", "cls.predictions.bias", [qv])
        w(f"{ind}%itg_logits = mm.linear %itg_norm, %itg_decoder_w, %itg_decoder_b : ({t(B, TT, QD)}, {t(qv, QD)}, {t(qv)}) -> {t(B, TT, qv)}")
        w(f"{ind}%loss_itg = mm.cross_entropy %itg_logits, %targets {{ignore_index = -100 : i64, mean}} : ({t(B, TT, qv)}, {idsB}) -> {t()}")
        w(f"{ind}%loss_a = mm.add %loss_itc, %loss_itm : {t()}")
        w(f"{ind}%loss = mm.add %loss_a, %loss_itg : {t()}")
        w(f"{ind}mm.return %loss : {t()}")
        w("  }")
        w("")
        w("  // Retrieval (over vision_embeds' output, computed once per image): an image's normalised")
        w("  // ITC features (one per query) ...")
        w(f'  mm.entry @image_features(%image_embeds: {t(1, V, VD)} {{mm.name = "image_embeds"}}) -> ({t(1, Q, E)} {{mm.name = "image_features"}}) {{')
        qformer_graph(project=False)
        itc_features("image_feat", qformer_out, 1)
        w(f"{ind}mm.return %image_feat : {t(1, Q, E)}")
        w("  }")
        w("  // ... a text's (the [CLS] output of the text-only pass; length = the text's tokens) ...")
        w(f'  mm.entry @text_features(%input_ids: {t(1, TT, dtype="i32")} {{mm.name = "input_ids"}}, '
          f'%length: {t(1, dtype="i32")} {{mm.name = "length"}}) -> ({t(1, E)} {{mm.name = "text_features"}}) {{')
        txt = qformer_joint("txt", "text", 1, None, "input_ids", "length")
        w(f"{ind}%txt_cls = mm.slice %{txt} {{axis = 1 : i64, start = 0 : i64}} : ({t(1, TT, QD)}) -> {t(1, 1, QD)}")
        text_itc_features("text_feat", "txt_cls", 1)
        w(f"{ind}mm.return %text_feat : {t(1, E)}")
        w("  }")
        w("  // ... and the ITM logits (no match, match) of an image and a text (length = queries + text).")
        w(f'  mm.entry @itm_scores(%image_embeds: {t(1, V, VD)} {{mm.name = "image_embeds"}}, %input_ids: {t(1, TT, dtype="i32")} {{mm.name = "input_ids"}}, '
          f'%length: {t(1, dtype="i32")} {{mm.name = "length"}}) -> ({t(1, 1, 2)} {{mm.name = "itm_logits"}}) {{')
        one = qformer_joint("one", "itm_one", 1, "image_embeds", "input_ids", "length")
        itm_logits("itm_logits", one, 1)
        w(f"{ind}mm.return %itm_logits : {t(1, 1, 2)}")
        w("  }")
        w("")

    if t5:
        t5_args = t5_entries()
    else:
        args = (f'%pixel_values: {pix} {{mm.name = "pixel_values"}}, %input_ids: {ids} {{mm.name = "input_ids"}}')
        w(f'  mm.entry @forward({args}, %length: {x_len} {{mm.name = "length"}})')
        w(f'      -> ({t(1, S, c["vocab"])} {{mm.name = "logits"}}) {{')
        model_graph()
        w(f"{ind}mm.return %logits : {t(1, S, c['vocab'])}")
        w("  }")
        w("")
        vision_embeds_entry()
        w("  // The language-modelling loss from the ViT's output (vision_embeds): cross-entropy summed")
        w("  // over the positions whose target is not -100 (the caption's tokens; never the queries or")
        w("  // the prompt).")
        w(f'  mm.entry @lm_loss(%image_embeds: {t(1, V, VD)} {{mm.name = "image_embeds"}}, %input_ids: {ids} {{mm.name = "input_ids"}}, '
          f'%targets: {ids} {{mm.name = "targets"}}, %length: {x_len} {{mm.name = "length"}})')
        w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
        model_graph(cached=True)
        w(f"{ind}%loss = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} : ({t(1, S, c['vocab'])}, {ids}) -> {t()}")
        w(f"{ind}mm.return %loss : {t()}")
        w("  }")
        w("")
        if c.get("pretrain"):
            qi = t(1, Q, dtype="i32")
            w("  // The OPT's pre-training loss (data \"caption_layout\"): the same sequence as lm_loss, but")
            w("  // where the queries will stand, the scene's layout instead of an image: query position k")
            w("  // holds the sum of the embeddings of cell k's colour and shape words (the pad id twice for")
            w("  // an empty cell), so that in stage 2 one query must carry one object whole.")
            w(f'  mm.entry @layout_lm_loss(%input_ids: {ids} {{mm.name = "input_ids"}}, '
              f'%cell_colour_ids: {qi} {{mm.name = "cell_colour_ids"}}, %cell_shape_ids: {qi} {{mm.name = "cell_shape_ids"}}, '
              f'%targets: {ids} {{mm.name = "targets"}}, %length: {x_len} {{mm.name = "length"}})')
            w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
            model_graph(layout=True)
            w(f"{ind}%loss = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} : ({t(1, S, c['vocab'])}, {ids}) -> {t()}")
            w(f"{ind}mm.return %loss : {t()}")
            w("  }")
            w("")
    if c.get("pretrain"):
        w("  // The ViT's pre-training: a linear classifier per patch token ([CLS] dropped).")
        patch_loss_entry(w, ind, vision_graph, lin, pix, P, VD, c.get("patch_cells"), features=("image_embeds", xv))
    if s1:
        stage1_entries()
    if t5:
        t5_chat_entries(*t5_args[:5])
    else:
        w("  // Chat: prefill runs the prompt (queries included) and fills the KV caches;")
        w("  // decode runs one new token at `position` against them (length = position + 1).")
        w(f'  mm.entry @prefill({args}, %length: {x_len} {{mm.name = "length"}}, '
          f'%k_cache: {cache} {{mm.name = "k_cache"}}, %v_cache: {cache} {{mm.name = "v_cache"}})')
        w(f'      -> ({t(1, S, c["vocab"])} {{mm.name = "logits"}}) {{')
        model_graph(prefill=True)
        w(f"{ind}mm.return %logits : {t(1, S, c['vocab'])}")
        w("  }")
        w(f'  mm.entry @decode(%input_ids: {t(1, 1, dtype="i32")} {{mm.name = "input_ids"}}, %position: {x_len} {{mm.name = "position"}}, '
          f'%length: {x_len} {{mm.name = "length"}}, %k_cache: {cache} {{mm.name = "k_cache"}}, %v_cache: {cache} {{mm.name = "v_cache"}})')
        w(f'      -> ({t(1, 1, c["vocab"])} {{mm.name = "logits"}}) {{')
        weight("embed_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
        w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({t(1, 1, dtype='i32')}, {t(c['vocab'], TD)}) -> {t(1, 1, TD)}")
        weight("pos_w", f"{lm}.embed_positions.weight", [c["max_pos"] + 2, TD])
        w("    // The learned position of this token: row 2 + position.")
        w(f"{ind}%position_row = mm.slice %pos_w, %position {{axis = 0 : i64, start = 2 : i64}} : "
          f"({t(c['max_pos'] + 2, TD)}, {x_len}) -> {t(1, TD)}")
        w(f"{ind}%pos_b = mm.broadcast %position_row : ({t(1, TD)}) -> {t(1, 1, TD)}")
        w(f"{ind}%inputs = mm.add %text, %pos_b : {t(1, 1, TD)}")
        w(f"{ind}%dec:3 = mm.apply_layer @opt_decoder_layer_decode from 0 to {c['tlayers']} (%inputs, %k_cache, %v_cache, %position, %length) : "
          f"({t(1, 1, TD)}, {cache}, {cache}, {x_len}, {x_len}) -> ({t(1, 1, TD)}, {cache}, {cache})")
        llm_head("dec#0", 1)
        w(f"{ind}mm.return %logits : {t(1, 1, c['vocab'])}")
        w("  }")
    w("}")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for name, c in CONFIGS.items():
        with open(os.path.join(here, name + ".mlir"), "w") as f:
            f.write(generate(c))
