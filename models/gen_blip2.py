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
from gen_llava import PATCH_CLASSES, fl, stem_graph, stem_params, t  # noqa: E402

CONFIGS = {
    "blip2-tiny": dict(
        name="blip2_tiny", image=64, patch=8, vd=128, vlayers=4, vheads=4, vinter=512,
        queries=16, qd=128, qlayers=4, qheads=4, qinter=512, cross_freq=2,
        td=256, tlayers=4, theads=4, tinter=1024, vocab=800, seq=64, max_pos=64,
        image_token=4, pad_token=3, bos_token=1, tokenizer="tokenizers/llava-tiny.tokenizer.json",
        stage_lr2=1e-3, batch2=8, pretrain=True,
        # The same convolutional stem as llava-tiny (docs/BENCHMARKS.md): a from-scratch
        # ViT on 8-px patches does not learn the shapes of mmdata's objects in time.
        stem=[(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 2)]),
    "blip2-opt-2.7b": dict(
        name="blip2_opt_2_7b", image=224, patch=14, vd=1408, vlayers=39, vheads=16, vinter=6144,
        queries=32, qd=768, qlayers=12, qheads=12, qinter=3072, cross_freq=2,
        td=2560, tlayers=32, theads=32, tinter=10240, vocab=50272, seq=128, max_pos=2048,
        image_token=50265, pad_token=1, bos_token=2, tokenizer=None,
        stage_lr2=1e-4, batch2=128),
}

V_EPS, Q_EPS, T_EPS = 1e-6, 1e-12, 1e-5
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

    def attention(out, q, k, v, heads, sq, skv, d, scale, mask, length=None):
        ln_ = f", %{length}" if length else ""
        lt = f", {t(dtype='i32')}" if length else ""
        w(f"{ind}%{out} = mm.attention %{q}, %{k}, %{v}{ln_} {{num_heads = {heads} : i64, num_kv_heads = {heads} : i64, "
          f"mask = #mm.mask<{mask}>, scale = {fl(scale)}}} : ({t(1, sq, d)}, {t(1, skv, d)}, {t(1, skv, d)}{lt}) -> {t(1, sq, d)}")

    config = (
        f'{{model_type = "blip-2", architectures = ["Blip2ForConditionalGeneration"], '
        f'num_query_tokens = {Q} : i64, image_token_index = {c["image_token"]} : i64, '
        f'image_seq_length = {Q} : i64, pad_token_id = {c["pad_token"]} : i64, '
        f'max_sequence_length = {S} : i64, use_decoder_only_language_model = true,\n'
        f'      vision_config = {{model_type = "blip_2_vision_model", hidden_size = {VD} : i64, '
        f'intermediate_size = {c["vinter"]} : i64, num_hidden_layers = {c["vlayers"]} : i64, '
        f'num_attention_heads = {c["vheads"]} : i64, image_size = {c["image"]} : i64, '
        f'patch_size = {c["patch"]} : i64, layer_norm_eps = {fl(V_EPS)}, hidden_act = "gelu", qkv_bias = true'
        + (f', stem_channels = [{", ".join(f"{ch} : i64" for ch, _ in stem)}], '
           f'stem_strides = [{", ".join(f"{st} : i64" for _, st in stem)}]' if stem else "") + "},\n"
        f'      qformer_config = {{model_type = "blip_2_qformer", hidden_size = {QD} : i64, '
        f'intermediate_size = {c["qinter"]} : i64, num_hidden_layers = {c["qlayers"]} : i64, '
        f'num_attention_heads = {c["qheads"]} : i64, cross_attention_frequency = {c["cross_freq"]} : i64, '
        f'encoder_hidden_size = {VD} : i64, layer_norm_eps = {fl(Q_EPS)}, hidden_act = "gelu"}},\n'
        f'      text_config = {{model_type = "opt", hidden_size = {TD} : i64, ffn_dim = {c["tinter"]} : i64, '
        f'num_hidden_layers = {c["tlayers"]} : i64, num_attention_heads = {c["theads"]} : i64, '
        f'vocab_size = {c["vocab"]} : i64, max_position_embeddings = {c["max_pos"]} : i64, '
        f'word_embed_proj_dim = {TD} : i64, do_layer_norm_before = true, activation_function = "relu", '
        f'bos_token_id = {c["bos_token"]} : i64, pad_token_id = {c["pad_token"]} : i64, tie_word_embeddings = true}}}}')
    tok = f', tokenizer = "{c["tokenizer"]}"' if c["tokenizer"] else ""
    w("// Generated by models/gen_blip2.py: Hugging Face Blip2ForConditionalGeneration (OPT decoder).")
    w(f"// Vision: ViT {c['image']}px/{c['patch']}, {VD} x {c['vlayers']} layers; Q-Former: {Q} queries, "
      f"{QD} x {c['qlayers']} layers; LLM: OPT {TD} x {c['tlayers']} layers, vocabulary {c['vocab']}.")
    w(f"mm.model @{c['name']} attributes {{config = {config}{tok}}} {{")
    for g in ["vision_model", "qformer", "language_projection", "language_model"]:
        w(f"  mm.group @{g}")
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
    w(f"  mm.layer @vision_encoder_layer(%x: {xv}) -> {xv}")
    w(f'      attributes {{count = {c["vlayers"]} : i64, prefix = "{vm}.encoder.layers"}} {{')
    param("self_attn.qkv.weight", [3 * VD, VD], "vision_model", pre=ind)
    # EVA keeps q and v biases apart; k has none (HF adds a zero third).
    param("self_attn.q_bias", [VD], "vision_model", ZEROS, pre=ind)
    param("self_attn.v_bias", [VD], "vision_model", ZEROS, pre=ind)
    param("self_attn.projection.weight", [VD, VD], "vision_model", pre=ind)
    param("self_attn.projection.bias", [VD], "vision_model", ZEROS, pre=ind)
    for n in ["layer_norm1", "layer_norm2"]:
        param(f"{n}.weight", [VD], "vision_model", ONES, pre=ind)
        param(f"{n}.bias", [VD], "vision_model", ZEROS, pre=ind)
    param("mlp.fc1.weight", [c["vinter"], VD], "vision_model", pre=ind)
    param("mlp.fc1.bias", [c["vinter"]], "vision_model", ZEROS, pre=ind)
    param("mlp.fc2.weight", [VD, c["vinter"]], "vision_model", pre=ind)
    param("mlp.fc2.bias", [VD], "vision_model", ZEROS, pre=ind)
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
    for j, n in enumerate("qkv"):
        w(f"{ind}%{n} = mm.slice %qkv {{axis = 2 : i64, start = {j * VD} : i64}} : ({t(1, V, 3 * VD)}) -> {xv}")
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
    param(f"{vm}.post_layernorm.weight", [VD], "vision_model", ONES)
    param(f"{vm}.post_layernorm.bias", [VD], "vision_model", ZEROS)
    if c.get("pretrain"):
        # 81 classes (background, colour x shape x size of mmdata's scenes), padded to 96 rows.
        param("vision_pretrain_head.weight", [PATCH_CLASSES, VD], "vision_pretrain_head")
        param("vision_pretrain_head.bias", [PATCH_CLASSES], "vision_pretrain_head", ZEROS)
    w("")

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
                param(f"{blk}.attention.{n}.weight", [QD, k_in], "qformer", pre=ind)
                param(f"{blk}.attention.{n}.bias", [QD], "qformer", ZEROS, pre=ind)
            param(f"{blk}.output.dense.weight", [QD, QD], "qformer", pre=ind)
            param(f"{blk}.output.dense.bias", [QD], "qformer", ZEROS, pre=ind)
            param(f"{blk}.output.LayerNorm.weight", [QD], "qformer", ONES, pre=ind)
            param(f"{blk}.output.LayerNorm.bias", [QD], "qformer", ZEROS, pre=ind)
        param("intermediate_query.dense.weight", [c["qinter"], QD], "qformer", pre=ind)
        param("intermediate_query.dense.bias", [c["qinter"]], "qformer", ZEROS, pre=ind)
        param("output_query.dense.weight", [QD, c["qinter"]], "qformer", pre=ind)
        param("output_query.dense.bias", [QD], "qformer", ZEROS, pre=ind)
        param("output_query.LayerNorm.weight", [QD], "qformer", ONES, pre=ind)
        param("output_query.LayerNorm.bias", [QD], "qformer", ZEROS, pre=ind)
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
    w("")
    w("  // Queries -> the LLM's input width.")
    param("language_projection.weight", [TD, QD], "language_projection")
    param("language_projection.bias", [TD], "language_projection", ZEROS)
    w("")

    # ---- OPT decoder -------------------------------------------------------
    lm = "language_model.model.decoder"
    w("  // OPT decoder; the LM head is the token embedding (tied).")
    param(f"{lm}.embed_tokens.weight", [c["vocab"], TD], "language_model")
    param(f"{lm}.embed_positions.weight", [c["max_pos"] + 2, TD], "language_model")
    x_len = t(dtype="i32")
    cache = t(c["tlayers"], 1, S, TD)

    def decoder_layer(name, T, mode):
        xT = t(1, T, TD)
        if mode == "train":
            w(f"  mm.layer @{name}(%x: {xT}, %len: {x_len}) -> {xT}")
            w(f'      attributes {{count = {c["tlayers"]} : i64, prefix = "{lm}.layers"}} {{')
            for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
                param(f"self_attn.{n}.weight", [TD, TD], "language_model", pre=ind)
                param(f"self_attn.{n}.bias", [TD], "language_model", ZEROS, pre=ind)
            for n in ["self_attn_layer_norm", "final_layer_norm"]:
                param(f"{n}.weight", [TD], "language_model", ONES, pre=ind)
                param(f"{n}.bias", [TD], "language_model", ZEROS, pre=ind)
            param("fc1.weight", [c["tinter"], TD], "language_model", pre=ind)
            param("fc1.bias", [c["tinter"]], "language_model", ZEROS, pre=ind)
            param("fc2.weight", [TD, c["tinter"]], "language_model", pre=ind)
            param("fc2.bias", [TD], "language_model", ZEROS, pre=ind)
        else:
            pos = f"%pos: {x_len}, " if mode == "decode" else ""
            w(f"  mm.layer @{name}(%x: {xT}, %kc: {cache}, %vc: {cache}, {pos}%len: {x_len}) -> ({xT}, {cache}, {cache})")
            w(f'      attributes {{count = {c["tlayers"]} : i64, prefix = "{lm}.layers", '
              f'parameters_from = @opt_decoder_layer}} {{')
        xs = [1, T]
        ln("n1", "x", "self_attn_layer_norm", TD, xs, T_EPS)
        lin("q", "n1", xs, "self_attn.q_proj", TD, TD)
        lin("k", "n1", xs, "self_attn.k_proj", TD, TD)
        lin("v", "n1", xs, "self_attn.v_proj", TD, TD)
        scale = 1 / math.sqrt(tdh)
        if mode in ("prefill", "decode"):
            p = ", %pos" if mode == "decode" else ""
            pt = f", {x_len}" if mode == "decode" else ""
            w(f"{ind}%kc2 = mm.cache_update %kc, %k{p} {{layer = 0 : i64}} : ({cache}, {xT}{pt}) -> {cache}")
            w(f"{ind}%vc2 = mm.cache_update %vc, %v{p} {{layer = 0 : i64}} : ({cache}, {xT}{pt}) -> {cache}")
        if mode == "decode":
            kvS = t(1, S, TD)
            w(f"{ind}%kl = mm.cache_read %kc2 {{layer = 0 : i64}} : ({cache}) -> {kvS}")
            w(f"{ind}%vl = mm.cache_read %vc2 {{layer = 0 : i64}} : ({cache}) -> {kvS}")
            w("    // One new query against every cached position written so far (len = pos + 1).")
            attention("attn", "q", "kl", "vl", c["theads"], 1, S, TD, scale, "bidirectional", "len")
        else:
            attention("attn", "q", "k", "v", c["theads"], T, T, TD, scale, "causal", "len")
        lin("o", "attn", xs, "self_attn.out_proj", TD, TD)
        w(f"{ind}%h = mm.add %x, %o : {xT}")
        ln("n2", "h", "final_layer_norm", TD, xs, T_EPS)
        lin("fc1", "n2", xs, "fc1", c["tinter"], TD)
        w(f"{ind}%act = mm.relu %fc1 : {t(1, T, c['tinter'])}")
        lin("fc2", "act", xs, "fc2", TD, c["tinter"])
        w(f"{ind}%y = mm.add %h, %fc2 : {xT}")
        if mode == "train":
            w(f"{ind}mm.yield %y : {xT}")
        else:
            w(f"{ind}mm.yield %y, %kc2, %vc2 : {xT}, {cache}, {cache}")
        w("  }")

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
        w("  // The LLM learns the captions' language (the queries are still noise) ...")
        stage("pretrain_llm", ["language_model"], "lm_loss", "image_caption", 1e-3, 8)
        w("  // ... and the ViT learns which object (colour, shape, size) shows in each patch.")
        stage("pretrain_vision", ["vision_model", "vision_pretrain_head"], "patch_loss", "patch_labels", 1e-3, 8)
    w("  // Stage 2: vision-to-language generation. The Q-Former and the projection learn; the")
    w("  // frozen OPT passes the loss's gradient back to them as activation gradients only.")
    stage("stage2", ["qformer", "language_projection"], "lm_loss", "image_caption", c["stage_lr2"], c["batch2"])
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

    def qformer_graph():
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

    def model_graph(prefill=False):
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

    args = (f'%pixel_values: {pix} {{mm.name = "pixel_values"}}, %input_ids: {ids} {{mm.name = "input_ids"}}')
    w(f'  mm.entry @forward({args}, %length: {x_len} {{mm.name = "length"}})')
    w(f'      -> ({t(1, S, c["vocab"])} {{mm.name = "logits"}}) {{')
    model_graph()
    w(f"{ind}mm.return %logits : {t(1, S, c['vocab'])}")
    w("  }")
    w("")
    w("  // The language-modelling loss: cross-entropy summed over the positions whose target is")
    w("  // not -100 (the caption's tokens; never the queries or the prompt).")
    w(f'  mm.entry @lm_loss({args}, %targets: {ids} {{mm.name = "targets"}}, %length: {x_len} {{mm.name = "length"}})')
    w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
    model_graph()
    w(f"{ind}%loss = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} : ({t(1, S, c['vocab'])}, {ids}) -> {t()}")
    w(f"{ind}mm.return %loss : {t()}")
    w("  }")
    w("")
    if c.get("pretrain"):
        w("  // The ViT's pre-training: a linear classifier per patch token ([CLS] dropped).")
        w(f'  mm.entry @patch_loss(%pixel_values: {pix} {{mm.name = "pixel_values"}}, '
          f'%patch_labels: {t(1, P, dtype="i32")} {{mm.name = "patch_labels"}})')
        w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
        vision_graph()
        w(f"{ind}%features = mm.slice %image_embeds {{axis = 1 : i64, start = 1 : i64}} : ({xv}) -> {t(1, P, VD)}")
        lin("patch_logits", "features", [1, P], "vision_pretrain_head", PATCH_CLASSES, VD)
        w(f"{ind}%loss = mm.cross_entropy %patch_logits, %patch_labels {{ignore_index = -100 : i64}} : "
          f"({t(1, P, PATCH_CLASSES)}, {t(1, P, dtype='i32')}) -> {t()}")
        w(f"{ind}mm.return %loss : {t()}")
        w("  }")
        w("")
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
