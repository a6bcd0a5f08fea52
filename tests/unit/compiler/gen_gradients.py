#!/usr/bin/env python3
"""Writes gradients.mlir: one float64 stage per VJP rule for GradientsTest.cpp.

Each case `<name>` has its own group `@<name>` holding the op's differentiable
inputs as parameters, a loss entry `@<name>_loss` computing
sum(op(inputs) * r) (r: a random entry argument, so every output element
matters differently), or the op's own scalar for losses, and a stage
`@<name>` training that group. mm-autodiff builds `@train_<name>`; the test
compares its gradients with central finite differences of `@<name>_loss`.
Run `python3 tests/unit/compiler/gen_gradients.py` after editing.
"""
import os

F = "f64"


def t(*shape, dtype=F):
    return "tensor<" + "".join(f"{d}x" for d in shape) + dtype + ">"


cases = []


def case(name, params, extra_args, body, out_shape, scalar=False):
    """params: [(pname, shape)], extra_args: [(arg, type)], body: lines using %pname and
    %arg, last value %y of out_shape (or a scalar %l if scalar)."""
    L = [f"  mm.group @g_{name}"]
    for p, shape in params:
        L.append(f'  mm.param @"{name}.{p}" : {t(*shape)} group @g_{name} init #mm.init<normal, 0.7>')
    L.append(f'  mm.stage @{name} trainable [@g_{name}] loss @{name}_loss data "none"')
    args = list(extra_args)
    if not scalar:
        args.append(("r", t(*out_shape)))
    sig = ", ".join(f'%{a}: {ty} {{mm.name = "{a}"}}' for a, ty in args)
    L.append(f"  mm.entry @{name}_loss({sig}) -> {t()} {{")
    for p, shape in params:
        L.append(f'    %{p} = mm.weight @"{name}.{p}" : {t(*shape)}')
    L += ["    " + line for line in body]
    if not scalar:
        L.append(f"    %m = mm.mul %y, %r : {t(*out_shape)}")
        L.append(f"    %l = mm.reduce_sum %m : ({t(*out_shape)}) -> {t()}")
    L.append(f"    mm.return %l : {t()}")
    L.append("  }")
    cases.append("\n".join(L))


case("linear", [("x", [2, 3, 5]), ("w", [4, 5]), ("b", [4])], [],
     [f"%y = mm.linear %x, %w, %b : ({t(2,3,5)}, {t(4,5)}, {t(4)}) -> {t(2,3,4)}"], [2, 3, 4])
case("embedding", [("table", [6, 4])], [("ids", t(2, 5, dtype="i32"))],
     [f"%y = mm.embedding %ids, %table : ({t(2,5,dtype='i32')}, {t(6,4)}) -> {t(2,5,4)}"], [2, 5, 4])
case("patch_embed", [("w", [3, 2, 2, 2])], [("pix", t(2, 2, 4, 6))],
     [f"%y = mm.patch_embed %pix, %w : ({t(2,2,4,6)}, {t(3,2,2,2)}) -> {t(2,6,3)}"], [2, 6, 3])
# A patch embedding behind a convolutional stem: the pixels get a gradient too.
case("patch_embed_input", [("pix", [2, 2, 4, 6]), ("w", [3, 2, 2, 2])], [],
     [f"%y = mm.patch_embed %pix, %w : ({t(2,2,4,6)}, {t(3,2,2,2)}) -> {t(2,6,3)}"], [2, 6, 3])
# Convolutions: input, weight and bias; strided with padding (the output
# grid does not cover the last input row), and unpadded with a 2x2 kernel.
case("conv2d", [("x", [2, 3, 7, 6]), ("w", [4, 3, 3, 3]), ("b", [4])], [],
     [f"%y = mm.conv2d %x, %w, %b {{stride = 2 : i64, padding = 1 : i64}} : ({t(2,3,7,6)}, {t(4,3,3,3)}, {t(4)}) -> {t(2,4,4,3)}"],
     [2, 4, 4, 3])
case("conv2d_unpadded", [("x", [1, 2, 5, 5]), ("w", [3, 2, 2, 2])], [],
     [f"%y = mm.conv2d %x, %w {{stride = 1 : i64, padding = 0 : i64}} : ({t(1,2,5,5)}, {t(3,2,2,2)}) -> {t(1,3,4,4)}"],
     [1, 3, 4, 4])
case("layer_norm", [("x", [3, 6]), ("g", [6]), ("b", [6])], [],
     [f"%y = mm.layer_norm %x, %g, %b {{eps = 1.0e-5 : f64}} : ({t(3,6)}, {t(6)}, {t(6)}) -> {t(3,6)}"], [3, 6])
case("rms_norm", [("x", [3, 6]), ("g", [6])], [],
     [f"%y = mm.rms_norm %x, %g {{eps = 1.0e-6 : f64}} : ({t(3,6)}, {t(6)}) -> {t(3,6)}"], [3, 6])
for act in ["gelu", "gelu_tanh", "quick_gelu", "silu", "relu"]:
    case(act, [("x", [11])], [], [f"%y = mm.{act} %x : {t(11)}"], [11])
for bop in ["add", "mul"]:
    case(bop, [("a", [2, 5]), ("c", [2, 5])], [], [f"%y = mm.{bop} %a, %c : {t(2,5)}"], [2, 5])
# The same operand used twice: gradients accumulate.
case("reuse", [("a", [7])], [], [f"%s = mm.mul %a, %a : {t(7)}", f"%y = mm.add %s, %a : {t(7)}"], [7])
case("rope", [("x", [2, 5, 12])], [],
     [f"%y = mm.rope %x {{num_heads = 3 : i64, theta = 10000.0 : f64}} : {t(2,5,12)}"], [2, 5, 12])
masks = [("bidirectional", ""), ("causal", ""), ("padding", ""),
         ("image_prefix_causal", "image = 2, text = 3"), ("itm_bidirectional", "query = 2, text = 3"),
         ("itg_multimodal_causal", "query = 2, text = 3"), ("itc_unimodal", "query = 2, text = 3")]
for mask, layout in masks:
    lay = f", layout = #mm.seq_layout<{layout}>" if layout else ""
    case(f"attention_{mask}", [("q", [2, 5, 8]), ("k", [2, 5, 4]), ("v", [2, 5, 4])], [("len", t(dtype="i32"))],
         [f"%y = mm.attention %q, %k, %v, %len {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
          f"mask = #mm.mask<{mask}>{lay}, scale = 0.5 : f64}} : ({t(2,5,8)}, {t(2,5,4)}, {t(2,5,4)}, "
          f"{t(dtype='i32')}) -> {t(2,5,8)}"], [2, 5, 8])
# Longer than the CPU's 64-row attention blocks (two full, one partial): the
# strips' block boundaries, the causal key ranges and the run-time length.
for mask, layout in [("causal", ""), ("itg_multimodal_causal", "query = 40, text = 90")]:
    lay = f", layout = #mm.seq_layout<{layout}>" if layout else ""
    case(f"attention_long_{mask}", [("q", [1, 130, 8]), ("k", [1, 130, 4]), ("v", [1, 130, 4])],
         [("len", t(dtype="i32"))],
         [f"%y = mm.attention %q, %k, %v, %len {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
          f"mask = #mm.mask<{mask}>{lay}, scale = 0.5 : f64}} : ({t(1,130,8)}, {t(1,130,4)}, {t(1,130,4)}, "
          f"{t(dtype='i32')}) -> {t(1,130,8)}"], [1, 130, 8])
# T5's relative position bias (a trainable [buckets, heads] table): exact
# and logarithmic buckets both ways under a bidirectional mask, one way under
# a causal one; 130 positions for the CPU's strips and the open last bucket.
for mask, nb, maxd in [("bidirectional", 8, 4), ("causal", 4, 3)]:
    case(f"attention_bias_{mask}", [("q", [2, 5, 8]), ("k", [2, 5, 4]), ("v", [2, 5, 4]), ("pb", [nb, 2])],
         [("len", t(dtype="i32"))],
         [f"%y = mm.attention %q, %k, %v, %len bias %pb {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
          f"mask = #mm.mask<{mask}>, scale = 0.5 : f64, bias_max_distance = {maxd} : i64}} : "
          f"({t(2,5,8)}, {t(2,5,4)}, {t(2,5,4)}, {t(dtype='i32')}, {t(nb,2)}) -> {t(2,5,8)}"], [2, 5, 8])
# No run-time length: the table is the fourth operand, not the fifth.
case("attention_bias_no_length", [("q", [1, 5, 8]), ("k", [1, 5, 8]), ("v", [1, 5, 8]), ("pb", [6, 2])], [],
     [f"%y = mm.attention %q, %k, %v bias %pb {{num_heads = 2 : i64, num_kv_heads = 2 : i64, "
      f"mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 5 : i64}} : "
      f"({t(1,5,8)}, {t(1,5,8)}, {t(1,5,8)}, {t(6,2)}) -> {t(1,5,8)}"], [1, 5, 8])
for mask in ["padding", "causal"]:
    case(f"attention_long_bias_{mask}", [("q", [1, 130, 8]), ("k", [1, 130, 4]), ("v", [1, 130, 4]), ("pb", [16, 2])],
         [("len", t(dtype="i32"))],
         [f"%y = mm.attention %q, %k, %v, %len bias %pb {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
          f"mask = #mm.mask<{mask}>, scale = 1.0 : f64, bias_max_distance = 40 : i64}} : "
          f"({t(1,130,8)}, {t(1,130,4)}, {t(1,130,4)}, {t(dtype='i32')}, {t(16,2)}) -> {t(1,130,8)}"], [1, 130, 8])
case("cross_attention", [("q", [1, 3, 8]), ("k", [1, 4, 8]), ("v", [1, 4, 8])], [],
     [f"%y = mm.attention %q, %k, %v {{num_heads = 2 : i64, num_kv_heads = 2 : i64, "
      f"mask = #mm.mask<bidirectional>, scale = 0.5 : f64}} : ({t(1,3,8)}, {t(1,4,8)}, {t(1,4,8)}) -> {t(1,3,8)}"],
     [1, 3, 8])
case("concat", [("a", [2, 1, 3]), ("c", [2, 2, 3])], [],
     [f"%y = mm.concat %a, %c {{axis = 1 : i64}} : ({t(2,1,3)}, {t(2,2,3)}) -> {t(2,3,3)}"], [2, 3, 3])
case("slice", [("x", [2, 5, 3])], [],
     [f"%y = mm.slice %x {{axis = 1 : i64, start = 1 : i64}} : ({t(2,5,3)}) -> {t(2,3,3)}"], [2, 3, 3])
case("broadcast", [("x", [4, 1])], [], [f"%y = mm.broadcast %x : ({t(4,1)}) -> {t(2,4,3)}"], [2, 4, 3])
case("merge_image_features", [("e", [2, 6, 3]), ("f", [2, 2, 3])], [("ids", t(2, 6, dtype="i32"))],
     [f"%y = mm.merge_image_features %e, %ids, %f {{image_token_index = 9 : i64}} : "
      f"({t(2,6,3)}, {t(2,6,dtype='i32')}, {t(2,2,3)}) -> {t(2,6,3)}"], [2, 6, 3])
case("cross_entropy", [("logits", [2, 4, 7])], [("targets", t(2, 4, dtype="i32"))],
     [f"%l = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64}} : "
      f"({t(2,4,7)}, {t(2,4,dtype='i32')}) -> {t()}"], None, scalar=True)

# With `mean`: the sum over the counted targets divided by their number.
case("cross_entropy_mean", [("logits", [2, 4, 7])], [("targets", t(2, 4, dtype="i32"))],
     [f"%l = mm.cross_entropy %logits, %targets {{ignore_index = -100 : i64, mean}} : "
      f"({t(2,4,7)}, {t(2,4,dtype='i32')}) -> {t()}"], None, scalar=True)
# One real-key count per batch row ([2] i32; GradientsTest gives the rows 6
# and 4 of 6 real keys, 120 and 60 of 130 in the long case, whose second row
# ends inside the second of the CPU's 64-key blocks).
for mask in ["itc_unimodal", "itg_multimodal_causal"]:
    case(f"attention_rows_{mask}", [("q", [2, 6, 8]), ("k", [2, 6, 4]), ("v", [2, 6, 4])], [("len", t(2, dtype="i32"))],
         [f"%y = mm.attention %q, %k, %v, %len {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
          f"mask = #mm.mask<{mask}>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.5 : f64}} : "
          f"({t(2,6,8)}, {t(2,6,4)}, {t(2,6,4)}, {t(2, dtype='i32')}) -> {t(2,6,8)}"], [2, 6, 8])
case("attention_long_rows_itg_multimodal_causal", [("q", [2, 130, 8]), ("k", [2, 130, 4]), ("v", [2, 130, 4])],
     [("len", t(2, dtype="i32"))],
     [f"%y = mm.attention %q, %k, %v, %len {{num_heads = 2 : i64, num_kv_heads = 1 : i64, "
      f"mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 40, text = 90>, scale = 0.5 : f64}} : "
      f"({t(2,130,8)}, {t(2,130,4)}, {t(2,130,4)}, {t(2, dtype='i32')}) -> {t(2,130,8)}"], [2, 130, 8])
# Division, both operands: the divisor c*c + 1 stays in [1, ...), away from
# the pole at 0 where finite differences are unstable.
case("div", [("a", [2, 5]), ("c", [2, 5])], [],
     [f"%one = mm.constant {{value = 1.0 : f64}} : {t(2,5)}", f"%c2 = mm.mul %c, %c : {t(2,5)}",
      f"%d = mm.add %c2, %one : {t(2,5)}", f"%y = mm.div %a, %d : {t(2,5)}"], [2, 5])
case("transpose", [("x", [2, 3, 5])], [],
     [f"%y = mm.transpose %x : ({t(2,3,5)}) -> {t(2,5,3)}"], [2, 5, 3])
# The maximum over a middle axis. The argument `spread` (GradientsTest: distinct
# multiples of 10, shuffled) keeps every column's maximum at least ~10 above
# the rest, so the finite difference (h = 1e-5) never crosses a tie.
case("reduce_max", [("x", [2, 4, 3])], [("spread", t(2, 4, 3))],
     [f"%s = mm.add %x, %spread : {t(2,4,3)}",
      f"%y = mm.reduce_max %s {{axis = 1 : i64}} : ({t(2,4,3)}) -> {t(2,3)}"], [2, 3])
case("l2_normalize", [("x", [2, 3, 5])], [],
     [f"%y = mm.l2_normalize %x {{eps = 1.0e-12 : f64}} : {t(2,3,5)}"], [2, 3, 5])

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "gradients.mlir"), "w") as f:
    f.write("// Generated by gen_gradients.py: one float64 stage per VJP rule (GradientsTest.cpp).\n")
    f.write("mm.model @gradients {\n" + "\n\n".join(cases) + "\n}\n")
print("wrote gradients.mlir with", len(cases), "cases")
