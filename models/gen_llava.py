#!/usr/bin/env python3
"""Writes the LLaVA-1.5 model files (models/llava-*.mlir) from one template.

The files are the source of truth the compiler reads and are committed; this
script only keeps the sizes of the tiny and the real configuration in one
place. Run it after changing the template: `python3 models/gen_llava.py`.
The architecture is Hugging Face's LlavaForConditionalGeneration (CLIP
vision tower, 2-layer GELU projector, LLaMA decoder); parameter names are its
checkpoint keys.
"""
import math
import os

# Per-patch classes of the vision tower's pre-training objective: mmdata's
# patches.json labels (background + 8 colours x 5 shapes x 2 sizes = 81),
# padded to a multiple of 16 rows; the extra rows are never a target.
PATCH_CLASSES = 96
CELL_CLASSES = 16  # background and mmdata's 3 x 3 grid cells (patch_cells), padded

CONFIGS = {
    "llava-tiny": dict(
        name="llava_tiny", image=64, patch=8, vd=128, vlayers=4, vheads=4, vinter=512,
        td=256, tlayers=4, theads=4, tkv=4, tinter=688, vocab=800, image_token=4,
        seq=176, max_pos=512, rms_eps=1e-6, tokenizer="tokenizers/llava-tiny.tokenizer.json",
        # stage 2 at 5e-4: with 6,400 samples it reached what 2e-4 reached with twice as many
        # (docs/BENCHMARKS.md); LLaVA's 2e-5 is for a pretrained 7B LLM.
        pad_token=3, stage_lr1=1e-3, stage_lr2=5e-4, batch1=8, batch2=8, pretrain=True,
        # A convolutional stem in front of the patch embedding (channels, stride of
        # each 3x3 conv + GELU; the patch embedding is then a 1x1 projection of
        # the stride-8 map): a from-scratch ViT on 8-px patches learns the shapes
        # of mmdata's objects far too slowly (docs/BENCHMARKS.md, "Where it stops").
        stem=[(32, 1), (64, 2), (64, 1), (128, 2), (128, 1), (128, 2)],
        # The tower also learns each patch's object's 3 x 3 grid cell (data "patch_cells"):
        # where an object stands, which the position questions ask (docs/BENCHMARKS.md).
        patch_cells=True),
    # The benchmark configuration where the matmuls dominate (docs/BENCHMARKS.md):
    # the tiny model's vision tower, tokenizer and data, a 768-wide 8-layer LLM.
    "llava-small": dict(
        name="llava_small", image=64, patch=8, vd=256, vlayers=4, vheads=4, vinter=1024,
        td=768, tlayers=8, theads=12, tkv=12, tinter=2048, vocab=800, image_token=4,
        seq=176, max_pos=512, rms_eps=1e-6, tokenizer="tokenizers/llava-tiny.tokenizer.json",
        pad_token=3, stage_lr1=1e-3, stage_lr2=2e-4, batch1=8, batch2=8, pretrain=True),
    "llava-1.5-7b": dict(
        name="llava_1_5_7b", image=336, patch=14, vd=1024, vlayers=24, vheads=16, vinter=4096,
        td=4096, tlayers=32, theads=32, tkv=32, tinter=11008, vocab=32064, image_token=32000,
        seq=1024, max_pos=4096, rms_eps=1e-5, tokenizer=None, pad_token=32001,
        stage_lr1=1e-3, stage_lr2=2e-5, batch1=256, batch2=128),
}


def t(*shape, dtype="f32"):
    return "tensor<" + "x".join(str(s) for s in shape) + ("x" if shape else "") + dtype + ">"


def fl(x):
    return f"{x:.6e} : f64"


def stem_params(param, prefix, stem, group):
    """Declares the convolutional stem's parameters (PREFIX.stem.<i>.weight/bias); returns its output channels."""
    cin = 3
    for i, (ch, _) in enumerate(stem):
        # 1/sqrt(fan-in): the signal neither dies nor explodes through the stem.
        param(f"{prefix}.stem.{i}.weight", [ch, cin, 3, 3], group, f"#mm.init<normal, {math.sqrt(1.0 / (cin * 9)):.6f}>")
        param(f"{prefix}.stem.{i}.bias", [ch], group, "#mm.init<zeros>")
        cin = ch
    return cin


def stem_graph(w, weight, ind, prefix, stem, image):
    """Emits the stem (3x3 conv2d + GELU each) over %pixel_values; returns (value, type, channels) of its output."""
    x, xt, cin, size = "pixel_values", t(1, 3, image, image), 3, image
    for i, (ch, st) in enumerate(stem):
        weight(f"stem{i}_w", f"{prefix}.stem.{i}.weight", [ch, cin, 3, 3])
        weight(f"stem{i}_b", f"{prefix}.stem.{i}.bias", [ch])
        size = (size + 2 - 3) // st + 1
        yt = t(1, ch, size, size)
        w(f"{ind}%stem{i} = mm.conv2d %{x}, %stem{i}_w, %stem{i}_b {{stride = {st} : i64, padding = 1 : i64}} : "
          f"({xt}, {t(ch, cin, 3, 3)}, {t(ch)}) -> {yt}")
        w(f"{ind}%stem{i}_act = mm.gelu %stem{i} : {yt}")
        x, xt, cin = f"stem{i}_act", yt, ch
    return x, xt, cin


def decoder_layer_header(w, name, mode, xT, cache, x_len, count, prefix, owner):
    """The `mm.layer` line of a decoder layer: the train variant owns the parameters; prefill
    and decode read OWNER's and thread the KV caches through (decode also takes %pos)."""
    if mode == "train":
        w(f"  mm.layer @{name}(%x: {xT}, %len: {x_len}) -> {xT}")
        w(f'      attributes {{count = {count} : i64, prefix = "{prefix}"}} {{')
    else:
        pos = f"%pos: {x_len}, " if mode == "decode" else ""
        w(f"  mm.layer @{name}(%x: {xT}, %kc: {cache}, %vc: {cache}, {pos}%len: {x_len}) -> ({xT}, {cache}, {cache})")
        w(f'      attributes {{count = {count} : i64, prefix = "{prefix}", parameters_from = @{owner}}} {{')


def kv_cache_ops(w, ind, mode, k, v, kvT, cache, x_len, kvS):
    """Prefill and decode write the step's keys K and values V (of type KVT) into the caches;
    decode then reads every cached position back (KVS). Returns the keys and values the
    attention reads."""
    if mode in ("prefill", "decode"):
        p = ", %pos" if mode == "decode" else ""
        pt = f", {x_len}" if mode == "decode" else ""
        w(f"{ind}%kc2 = mm.cache_update %kc, %{k}{p} {{layer = 0 : i64}} : ({cache}, {kvT}{pt}) -> {cache}")
        w(f"{ind}%vc2 = mm.cache_update %vc, %{v}{p} {{layer = 0 : i64}} : ({cache}, {kvT}{pt}) -> {cache}")
    if mode != "decode":
        return k, v
    w(f"{ind}%kl = mm.cache_read %kc2 {{layer = 0 : i64}} : ({cache}) -> {kvS}")
    w(f"{ind}%vl = mm.cache_read %vc2 {{layer = 0 : i64}} : ({cache}) -> {kvS}")
    w(f"{ind}// One new query against every cached position written so far (len = pos + 1).")
    return "kl", "vl"


def patch_loss_entry(w, ind, vision_graph, lin, pix, P, VD, cells, features=None):
    """The vision tower's pre-training entry @patch_loss: VISION_GRAPH() writes the
    tower up to %features [1, P, VD] (or up to FEATURES, then sliced: the patch
    tokens after [CLS]); a linear classifier per patch against mmdata's labels, and
    with CELLS a second one against each patch's object's grid cell, the two
    cross-entropies summed."""
    pl = t(1, P, dtype="i32")
    if cells:
        w("  // A second classifier names the 3 x 3 cell of the patch's object (its centre's cell;")
        w("  // 0 for background): the features say where each object stands. The loss is the sum.")
    w(f'  mm.entry @patch_loss(%pixel_values: {pix} {{mm.name = "pixel_values"}}, '
      f'%patch_labels: {pl} {{mm.name = "patch_labels"}}'
      + (f', %patch_cells: {pl} {{mm.name = "patch_cells"}}' if cells else "") + ")")
    w(f'      -> ({t()} {{mm.name = "loss"}}) {{')
    vision_graph()
    if features:
        w(f"{ind}%features = mm.slice %{features[0]} {{axis = 1 : i64, start = 1 : i64}} : ({features[1]}) -> {t(1, P, VD)}")
    lin("patch_logits", "features", [1, P], "vision_pretrain_head", PATCH_CLASSES, VD)
    w(f"{ind}%{'class_loss' if cells else 'loss'} = mm.cross_entropy %patch_logits, %patch_labels "
      f"{{ignore_index = -100 : i64}} : ({t(1, P, PATCH_CLASSES)}, {pl}) -> {t()}")
    if cells:
        lin("cell_logits", "features", [1, P], "vision_pretrain_cell_head", CELL_CLASSES, VD)
        w(f"{ind}%cell_loss = mm.cross_entropy %cell_logits, %patch_cells {{ignore_index = -100 : i64}} : "
          f"({t(1, P, CELL_CLASSES)}, {pl}) -> {t()}")
        w(f"{ind}%loss = mm.add %class_loss, %cell_loss : {t()}")
    w(f"{ind}mm.return %loss : {t()}")
    w("  }")
    w("")


def decoder_layer_end(w, ind, mode, y, xT, cache):
    """Yields the layer's output Y (and, in prefill and decode, the updated caches)."""
    if mode == "train":
        w(f"{ind}mm.yield %{y} : {xT}")
    else:
        w(f"{ind}mm.yield %{y}, %kc2, %vc2 : {xT}, {cache}, {cache}")
    w("  }")


def generate(c):
    P = (c["image"] // c["patch"]) ** 2
    V, VD, TD, S = P + 1, c["vd"], c["td"], c["seq"]
    vdh, tdh = VD // c["vheads"], TD // c["theads"]
    kvw = c["tkv"] * tdh
    x_v, x_t = t(1, V, VD), t(1, S, TD)
    L = []
    w = L.append
    stem = c.get("stem") or []
    stem_stride = math.prod(st for _, st in stem)
    pe = c["patch"] // stem_stride  # the patch embedding's patch on the stem's map
    pe_in = stem[-1][0] if stem else 3
    stem_config = (f', stem_channels = [{", ".join(f"{ch} : i64" for ch, _ in stem)}], '
                   f'stem_strides = [{", ".join(f"{st} : i64" for _, st in stem)}]') if stem else ""
    config = (
        f'{{model_type = "llava", architectures = ["LlavaForConditionalGeneration"], '
        f'image_token_index = {c["image_token"]} : i64, pad_token_id = {c["pad_token"]} : i64, '
        f'projector_hidden_act = "gelu", vision_feature_layer = -2 : i64, '
        f'vision_feature_select_strategy = "default", image_seq_length = {P} : i64, '
        f'tie_word_embeddings = false, max_sequence_length = {S} : i64,\n'
        f'      vision_config = {{model_type = "clip_vision_model", hidden_size = {VD} : i64, '
        f'intermediate_size = {c["vinter"]} : i64, num_hidden_layers = {c["vlayers"]} : i64, '
        f'num_attention_heads = {c["vheads"]} : i64, image_size = {c["image"]} : i64, '
        f'patch_size = {c["patch"]} : i64, num_channels = 3 : i64, layer_norm_eps = {fl(1e-5)}, '
        f'hidden_act = "quick_gelu"{stem_config}}},\n'
        f'      text_config = {{model_type = "llama", hidden_size = {TD} : i64, '
        f'intermediate_size = {c["tinter"]} : i64, num_hidden_layers = {c["tlayers"]} : i64, '
        f'num_attention_heads = {c["theads"]} : i64, num_key_value_heads = {c["tkv"]} : i64, '
        f'vocab_size = {c["vocab"]} : i64, rms_norm_eps = {fl(c["rms_eps"])}, '
        f'rope_theta = {fl(10000.0)}, max_position_embeddings = {c["max_pos"]} : i64, '
        f'hidden_act = "silu", tie_word_embeddings = false}}}}')
    tok = f', tokenizer = "{c["tokenizer"]}"' if c["tokenizer"] else ""
    w(f"// Generated by models/gen_llava.py: Hugging Face LlavaForConditionalGeneration (LLaVA-1.5).")
    w(f"// Vision: CLIP {c['image']}px/{c['patch']}, {VD} x {c['vlayers']} layers; "
      f"LLM: LLaMA {TD} x {c['tlayers']} layers, vocabulary {c['vocab']}.")
    w(f"mm.model @{c['name']} attributes {{config = {config}{tok}}} {{")
    w("  mm.group @vision_tower")
    w("  mm.group @multi_modal_projector")
    w("  mm.group @language_model")
    if c.get("pretrain"):
        w("  // Only the vision tower's pre-training reads it: a per-patch classifier (not part of LLaVA).")
        w("  mm.group @vision_pretrain_head")
    w("")
    normal = "#mm.init<normal, 0.02>"
    def param(name, shape, group, init=normal, ind="  "):
        w(f'{ind}mm.param @"{name}" : {t(*shape)} group @{group} init {init}')
    vm = "vision_tower.vision_model"
    w("  // CLIP vision tower (frozen in both LLaVA stages).")
    param(f"{vm}.embeddings.class_embedding", [VD], "vision_tower")
    stem_params(param, f"{vm}.embeddings", stem, "vision_tower")
    param(f"{vm}.embeddings.patch_embedding.weight", [VD, pe_in, pe, pe], "vision_tower")
    param(f"{vm}.embeddings.position_embedding.weight", [V, VD], "vision_tower")
    param(f"{vm}.pre_layrnorm.weight", [VD], "vision_tower", "#mm.init<ones>")
    param(f"{vm}.pre_layrnorm.bias", [VD], "vision_tower", "#mm.init<zeros>")
    w("")
    w(f"  mm.layer @clip_encoder_layer(%x: {x_v}) -> {x_v}")
    w(f'      attributes {{count = {c["vlayers"]} : i64, prefix = "{vm}.encoder.layers"}} {{')
    ind = "    "
    for n in ["q_proj", "k_proj", "v_proj", "out_proj"]:
        param(f"self_attn.{n}.weight", [VD, VD], "vision_tower", ind=ind)
        param(f"self_attn.{n}.bias", [VD], "vision_tower", "#mm.init<zeros>", ind=ind)
    for n in ["layer_norm1", "layer_norm2"]:
        param(f"{n}.weight", [VD], "vision_tower", "#mm.init<ones>", ind=ind)
        param(f"{n}.bias", [VD], "vision_tower", "#mm.init<zeros>", ind=ind)
    param("mlp.fc1.weight", [c["vinter"], VD], "vision_tower", ind=ind)
    param("mlp.fc1.bias", [c["vinter"]], "vision_tower", "#mm.init<zeros>", ind=ind)
    param("mlp.fc2.weight", [VD, c["vinter"]], "vision_tower", ind=ind)
    param("mlp.fc2.bias", [VD], "vision_tower", "#mm.init<zeros>", ind=ind)
    def weight(var, name, shape):
        w(f'{ind}%{var} = mm.weight @"{name}" : {t(*shape)}')
    def lin(out, x, xs, wname, n, k, bias=True):
        weight(out + "_w", wname + ".weight", [n, k])
        if bias:
            weight(out + "_b", wname + ".bias", [n])
            w(f"{ind}%{out} = mm.linear %{x}, %{out}_w, %{out}_b : ({t(*xs, k)}, {t(n, k)}, {t(n)}) -> {t(*xs, n)}")
        else:
            w(f"{ind}%{out} = mm.linear %{x}, %{out}_w : ({t(*xs, k)}, {t(n, k)}) -> {t(*xs, n)}")
    def ln(out, x, name, d, xs):
        weight(out + "_g", name + ".weight", [d])
        weight(out + "_b", name + ".bias", [d])
        w(f"{ind}%{out} = mm.layer_norm %{x}, %{out}_g, %{out}_b {{eps = {fl(1e-5)}}} : ({t(*xs, d)}, {t(d)}, {t(d)}) -> {t(*xs, d)}")
    xs = [1, V]
    ln("ln1", "x", "layer_norm1", VD, xs)
    for n, v in [("q_proj", "q"), ("k_proj", "k"), ("v_proj", "v")]:
        lin(v, "ln1", xs, "self_attn." + n, VD, VD)
    w(f"{ind}%attn = mm.attention %q, %k, %v {{num_heads = {c['vheads']} : i64, num_kv_heads = {c['vheads']} : i64, "
      f"mask = #mm.mask<bidirectional>, scale = {fl(1 / math.sqrt(vdh))}}} : ({x_v}, {x_v}, {x_v}) -> {x_v}")
    lin("o", "attn", xs, "self_attn.out_proj", VD, VD)
    w(f"{ind}%h = mm.add %x, %o : {x_v}")
    ln("ln2", "h", "layer_norm2", VD, xs)
    lin("fc1", "ln2", xs, "mlp.fc1", c["vinter"], VD)
    w(f"{ind}%act = mm.quick_gelu %fc1 : {t(1, V, c['vinter'])}")
    lin("fc2", "act", xs, "mlp.fc2", VD, c["vinter"])
    w(f"{ind}%y = mm.add %h, %fc2 : {x_v}")
    w(f"{ind}mm.yield %y : {x_v}")
    w("  }")
    param(f"{vm}.post_layernorm.weight", [VD], "vision_tower", "#mm.init<ones>")
    param(f"{vm}.post_layernorm.bias", [VD], "vision_tower", "#mm.init<zeros>")
    w("")
    w("  // Projector: 2-layer MLP with GELU (LLaVA-1.5).")
    param("multi_modal_projector.linear_1.weight", [TD, VD], "multi_modal_projector")
    param("multi_modal_projector.linear_1.bias", [TD], "multi_modal_projector", "#mm.init<zeros>")
    param("multi_modal_projector.linear_2.weight", [TD, TD], "multi_modal_projector")
    param("multi_modal_projector.linear_2.bias", [TD], "multi_modal_projector", "#mm.init<zeros>")
    if c.get("pretrain"):
        # 81 classes (background, colour x shape x size of mmdata's scenes), padded to 96 rows.
        param("vision_pretrain_head.weight", [PATCH_CLASSES, VD], "vision_pretrain_head")
        param("vision_pretrain_head.bias", [PATCH_CLASSES], "vision_pretrain_head", "#mm.init<zeros>")
        if c.get("patch_cells"):
            # 10 classes (background, the 3 x 3 cell of the patch's object), padded to 16 rows.
            param("vision_pretrain_cell_head.weight", [CELL_CLASSES, VD], "vision_pretrain_head")
            param("vision_pretrain_cell_head.bias", [CELL_CLASSES], "vision_pretrain_head", "#mm.init<zeros>")
    w("")
    w("  // LLaMA decoder.")
    lm = "language_model.model"
    param(f"{lm}.embed_tokens.weight", [c["vocab"], TD], "language_model")
    x_len = t(dtype="i32")
    cache = t(c["tlayers"], 1, S, kvw)

    def decoder_layer(name, T, mode):
        """LLaMA decoder layer over T positions. mode: train (the parameters'
        owner), prefill (also writes the KV cache), decode (reads it)."""
        xT, kvT = t(1, T, TD), t(1, T, kvw)
        decoder_layer_header(w, name, mode, xT, cache, x_len, c["tlayers"], f"{lm}.layers", "llama_decoder_layer")
        if mode == "train":
            for n, shape in [("q_proj", [TD, TD]), ("k_proj", [kvw, TD]), ("v_proj", [kvw, TD]), ("o_proj", [TD, TD])]:
                param(f"self_attn.{n}.weight", shape, "language_model", ind=ind)
            param("mlp.gate_proj.weight", [c["tinter"], TD], "language_model", ind=ind)
            param("mlp.up_proj.weight", [c["tinter"], TD], "language_model", ind=ind)
            param("mlp.down_proj.weight", [TD, c["tinter"]], "language_model", ind=ind)
            param("input_layernorm.weight", [TD], "language_model", "#mm.init<ones>", ind=ind)
            param("post_attention_layernorm.weight", [TD], "language_model", "#mm.init<ones>", ind=ind)
        xs = [1, T]

        def rms(out, x, name):
            weight(out + "_g", name + ".weight", [TD])
            w(f"{ind}%{out} = mm.rms_norm %{x}, %{out}_g {{eps = {fl(c['rms_eps'])}}} : ({xT}, {t(TD)}) -> {xT}")
        rms("n1", "x", "input_layernorm")
        lin("q", "n1", xs, "self_attn.q_proj", TD, TD, bias=False)
        lin("k", "n1", xs, "self_attn.k_proj", kvw, TD, bias=False)
        lin("v", "n1", xs, "self_attn.v_proj", kvw, TD, bias=False)
        off = f", %pos : {x_len}" if mode == "decode" else ""
        w(f"{ind}%qr = mm.rope %q{off} {{num_heads = {c['theads']} : i64, theta = {fl(10000.0)}}} : {xT}")
        w(f"{ind}%kr = mm.rope %k{off} {{num_heads = {c['tkv']} : i64, theta = {fl(10000.0)}}} : {kvT}")
        scale = fl(1 / math.sqrt(tdh))
        heads = f"num_heads = {c['theads']} : i64, num_kv_heads = {c['tkv']} : i64"
        kvS = t(1, S, kvw)
        keys, values = kv_cache_ops(w, ind, mode, "kr", "v", kvT, cache, x_len, kvS)
        kvt, mask = (kvS, "bidirectional") if mode == "decode" else (kvT, "causal")
        w(f"{ind}%attn = mm.attention %qr, %{keys}, %{values}, %len {{{heads}, mask = #mm.mask<{mask}>, "
          f"scale = {scale}}} : ({xT}, {kvt}, {kvt}, {x_len}) -> {xT}")
        lin("o", "attn", xs, "self_attn.o_proj", TD, TD, bias=False)
        w(f"{ind}%h = mm.add %x, %o : {xT}")
        rms("n2", "h", "post_attention_layernorm")
        lin("gate", "n2", xs, "mlp.gate_proj", c["tinter"], TD, bias=False)
        lin("up", "n2", xs, "mlp.up_proj", c["tinter"], TD, bias=False)
        xi = t(1, T, c["tinter"])
        w(f"{ind}%act = mm.silu %gate : {xi}")
        w(f"{ind}%gated = mm.mul %act, %up : {xi}")
        lin("down", "gated", xs, "mlp.down_proj", TD, c["tinter"], bias=False)
        w(f"{ind}%y = mm.add %h, %down : {xT}")
        decoder_layer_end(w, ind, mode, "y", xT, cache)

    decoder_layer("llama_decoder_layer", S, "train")
    w("  // The same layers (same parameters) for chat: prefill fills the KV cache, decode extends it.")
    decoder_layer("llama_decoder_layer_prefill", S, "prefill")
    decoder_layer("llama_decoder_layer_decode", 1, "decode")
    param(f"{lm}.norm.weight", [TD], "language_model", "#mm.init<ones>")
    param("language_model.lm_head.weight", [c["vocab"], TD], "language_model")
    w("")
    if c.get("pretrain"):
        w("  // The tiny parts start from random weights: these stages first make them worth freezing.")
        w("  // The LLM learns the generated text (conversations without images) ...")
        w(f'  mm.stage @pretrain_llm trainable [@language_model] loss @lm_loss data "conversation" '
          f'{{lr = {fl(1e-3)}, schedule = "cosine", warmup_ratio = {fl(0.03)}, weight_decay = {fl(0.0)}, '
          f'batch = 8 : i64, epochs = 1 : i64}}')
        w("  // ... and the vision tower learns to see the generated images: which object (colour, shape,")
        w("  // size) shows in each patch, from mmdata's patches.json; afterwards it is frozen.")
        w(f'  mm.stage @pretrain_vision trainable [@vision_tower, @vision_pretrain_head] loss @patch_loss data "patch_labels" '
          f'{{lr = {fl(1e-3)}, schedule = "cosine", warmup_ratio = {fl(0.03)}, weight_decay = {fl(0.0)}, '
          f'batch = 8 : i64, epochs = 1 : i64}}')
    w("  // Stage 1: feature alignment (projector only) on captions with LLaVA's plain template.")
    w(f'  mm.stage @stage1 trainable [@multi_modal_projector] loss @lm_loss data "caption" '
      f'{{lr = {fl(c["stage_lr1"])}, schedule = "cosine", warmup_ratio = {fl(0.03)}, weight_decay = {fl(0.0)}, '
      f'batch = {c["batch1"]} : i64, epochs = 1 : i64}}')
    w("  // Stage 2: visual instruction tuning (projector + LLM), loss on assistant turns only.")
    w(f'  mm.stage @stage2 trainable [@multi_modal_projector, @language_model] loss @lm_loss data "conversation" '
      f'{{lr = {fl(c["stage_lr2"])}, schedule = "cosine", warmup_ratio = {fl(0.03)}, weight_decay = {fl(0.0)}, '
      f'batch = {c["batch2"]} : i64, epochs = 1 : i64}}')
    w("")
    pix = t(1, 3, c["image"], c["image"])
    ind = "    "

    def rms(out, x, name):
        weight(out + "_g", name + ".weight", [TD])
        w(f"{ind}%{out} = mm.rms_norm %{x}, %{out}_g {{eps = {fl(c['rms_eps'])}}} : ({x_t}, {t(TD)}) -> {x_t}")

    def vision_graph():
        w(f"    // Vision tower: {'convolutional stem, ' if stem else ''}patches, [CLS], positions, pre-norm, all layers but the last.")
        x, xt, cin = stem_graph(w, weight, ind, f"{vm}.embeddings", stem, c["image"])
        weight("patch_w", f"{vm}.embeddings.patch_embedding.weight", [VD, cin, pe, pe])
        w(f"{ind}%patches = mm.patch_embed %{x}, %patch_w : ({xt}, {t(VD, cin, pe, pe)}) -> {t(1, P, VD)}")
        weight("cls_w", f"{vm}.embeddings.class_embedding", [VD])
        w(f"{ind}%cls = mm.broadcast %cls_w : ({t(VD)}) -> {t(1, 1, VD)}")
        w(f"{ind}%tokens = mm.concat %cls, %patches {{axis = 1 : i64}} : ({t(1, 1, VD)}, {t(1, P, VD)}) -> {x_v}")
        weight("pos_w", f"{vm}.embeddings.position_embedding.weight", [V, VD])
        w(f"{ind}%pos = mm.broadcast %pos_w : ({t(V, VD)}) -> {x_v}")
        w(f"{ind}%embeds = mm.add %tokens, %pos : {x_v}")
        ln("pre", "embeds", f"{vm}.pre_layrnorm", VD, [1, V])
        w(f"{ind}%hidden = mm.apply_layer @clip_encoder_layer from 0 to {c['vlayers'] - 1} (%pre) : ({x_v}) -> {x_v}")
        w(f"    // vision_feature_select_strategy = default: drop [CLS].")
        w(f"{ind}%features = mm.slice %hidden {{axis = 1 : i64, start = 1 : i64}} : ({x_v}) -> {t(1, P, VD)}")

    def model_graph(prefill=False, features=None):
        """The logits over %input_ids; the image from %pixel_values through the tower, or with
        FEATURES from that argument (the tower's output, computed by vision_embeds)."""
        if features is None:
            vision_graph()
            features = "features"
        w(f"    // Projector.")
        lin("proj1", features, [1, P], "multi_modal_projector.linear_1", TD, VD)
        w(f"{ind}%proj_act = mm.gelu %proj1 : {t(1, P, TD)}")
        lin("image_features", "proj_act", [1, P], "multi_modal_projector.linear_2", TD, TD)
        w(f"    // LLM: text embeddings with the image features at the <image> positions.")
        weight("embed_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
        w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({t(1, S, dtype='i32')}, {t(c['vocab'], TD)}) -> {x_t}")
        w(f"{ind}%merged = mm.merge_image_features %text, %input_ids, %image_features {{image_token_index = {c['image_token']} : i64}} "
          f": ({x_t}, {t(1, S, dtype='i32')}, {t(1, P, TD)}) -> {x_t}")
        if prefill:
            w(f"{ind}%dec:3 = mm.apply_layer @llama_decoder_layer_prefill from 0 to {c['tlayers']} "
              f"(%merged, %k_cache, %v_cache, %length) : ({x_t}, {cache}, {cache}, {x_len}) -> ({x_t}, {cache}, {cache})")
            decoded = "dec#0"
        else:
            w(f"{ind}%decoded = mm.apply_layer @llama_decoder_layer from 0 to {c['tlayers']} (%merged, %length) : ({x_t}, {x_len}) -> {x_t}")
            decoded = "decoded"
        rms("final", decoded, f"{lm}.norm")
        lin("logits", "final", [1, S], "language_model.lm_head", c["vocab"], TD, bias=False)

    w(f'  mm.entry @forward(%pixel_values: {pix} {{mm.name = "pixel_values"}}, '
      f'%input_ids: {t(1, S, dtype="i32")} {{mm.name = "input_ids"}}, %length: {x_len} {{mm.name = "length"}})')
    w(f'      -> ({t(1, S, c["vocab"])} {{mm.name = "logits"}}) {{')
    model_graph()
    w(f"{ind}mm.return %logits : {t(1, S, c['vocab'])}")
    w("  }")
    w("")
    w("  // The vision tower's output for one image (the features the projector reads). No")
    w("  // stage that reads it trains the tower, so mmrun computes it once per image and caches it")
    w("  // across steps and samples.")
    w(f'  mm.entry @vision_embeds(%pixel_values: {pix} {{mm.name = "pixel_values"}}) -> ({t(1, P, VD)} {{mm.name = "image_embeds"}}) {{')
    vision_graph()
    w(f"{ind}mm.return %features : {t(1, P, VD)}")
    w("  }")
    w("")
    w("  // The loss of the training stages: the same graph from the tower's output (vision_embeds),")
    w("  // then cross-entropy summed over the positions whose target is not -100 (targets[t] is the")
    w("  // label of position t).")
    w(f'  mm.entry @lm_loss(%image_embeds: {t(1, P, VD)} {{mm.name = "image_embeds"}}, '
      f'%input_ids: {t(1, S, dtype="i32")} {{mm.name = "input_ids"}}, '
      f'%targets: {t(1, S, dtype="i32")} {{mm.name = "targets"}}, %length: {x_len} {{mm.name = "length"}})')
    w(f'      -> ({t(dtype="f32")} {{mm.name = "loss"}}) {{')
    model_graph(features="image_embeds")
    w(f"{ind}%loss = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} "
      f": ({t(1, S, c['vocab'])}, {t(1, S, dtype='i32')}) -> {t(dtype='f32')}")
    w(f"{ind}mm.return %loss : {t(dtype='f32')}")
    w("  }")
    w("")
    if c.get("pretrain"):
        w("  // The vision tower's pre-training: the features LLaVA reads (all layers but the last,")
        w("  // [CLS] dropped), a linear classifier per patch, cross-entropy against mmdata's labels.")
        patch_loss_entry(w, ind, vision_graph, lin, pix, P, VD, c.get("patch_cells"))
    w("  // Chat: prefill runs the prompt (image included) and fills the KV caches;")
    w("  // decode runs one new token at `position` against them (length = position + 1).")
    w(f'  mm.entry @prefill(%pixel_values: {pix} {{mm.name = "pixel_values"}}, '
      f'%input_ids: {t(1, S, dtype="i32")} {{mm.name = "input_ids"}}, %length: {x_len} {{mm.name = "length"}}, '
      f'%k_cache: {cache} {{mm.name = "k_cache"}}, %v_cache: {cache} {{mm.name = "v_cache"}})')
    w(f'      -> ({t(1, S, c["vocab"])} {{mm.name = "logits"}}) {{')
    model_graph(prefill=True)
    w(f"{ind}mm.return %logits : {t(1, S, c['vocab'])}")
    w("  }")
    x1 = t(1, 1, TD)
    w(f'  mm.entry @decode(%input_ids: {t(1, 1, dtype="i32")} {{mm.name = "input_ids"}}, '
      f'%position: {x_len} {{mm.name = "position"}}, %length: {x_len} {{mm.name = "length"}}, '
      f'%k_cache: {cache} {{mm.name = "k_cache"}}, %v_cache: {cache} {{mm.name = "v_cache"}})')
    w(f'      -> ({t(1, 1, c["vocab"])} {{mm.name = "logits"}}) {{')
    weight("embed_w", f"{lm}.embed_tokens.weight", [c["vocab"], TD])
    w(f"{ind}%text = mm.embedding %input_ids, %embed_w : ({t(1, 1, dtype='i32')}, {t(c['vocab'], TD)}) -> {x1}")
    w(f"{ind}%dec:3 = mm.apply_layer @llama_decoder_layer_decode from 0 to {c['tlayers']} "
      f"(%text, %k_cache, %v_cache, %position, %length) : ({x1}, {cache}, {cache}, {x_len}, {x_len}) -> ({x1}, {cache}, {cache})")
    weight("final_g", f"{lm}.norm.weight", [TD])
    w(f"{ind}%final = mm.rms_norm %dec#0, %final_g {{eps = {fl(c['rms_eps'])}}} : ({x1}, {t(TD)}) -> {x1}")
    lin("logits", "final", [1, 1], "language_model.lm_head", c["vocab"], TD, bias=False)
    w(f"{ind}mm.return %logits : {t(1, 1, c['vocab'])}")
    w("  }")
    w("}")
    return "\n".join(L) + "\n"


if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    for fname, c in CONFIGS.items():
        with open(os.path.join(here, fname + ".mlir"), "w") as f:
            f.write(generate(c))
        print("wrote", fname + ".mlir")
