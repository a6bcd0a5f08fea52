//===- MMOps.td - mm operations -----------------------------*- tablegen -*-===//
#ifndef MM_OPS_TD
#define MM_OPS_TD

include "mm/Dialect/MMDialect.td"
include "mm/Dialect/MMAttrs.td"
include "mm/Dialect/MMInterfaces.td"
include "mlir/IR/SymbolInterfaces.td"
include "mlir/IR/RegionKindInterface.td"
include "mlir/Interfaces/FunctionInterfaces.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/Interfaces/InferTypeOpInterface.td"
include "mlir/IR/OpBase.td"
include "mlir/Interfaces/ControlFlowInterfaces.td"

// Real tensors are f32; f64 serves the finite-difference checks of VJP rules.
def MM_F32Tensor : StaticShapeTensorOf<[F32, F64]>;
def MM_I32Tensor : StaticShapeTensorOf<[I32]>;
def MM_AnyTensor : StaticShapeTensorOf<[F32, F64, I32]>;
def MM_Scalar : 0DTensorOf<[F32, F64]>;

//===----------------------------------------------------------------------===//
// Model structure
//===----------------------------------------------------------------------===//

def MM_ModelOp : MM_Op<"model", [SymbolTable, Symbol, IsolatedFromAbove,
    NoTerminator, SingleBlock, NoRegionArguments]> {
  let summary = "a whole multimodal model: groups, parameters, layers, stages, entries";
  let description = [{
    The top-level container of one model. Its body declares parameter groups
    (`mm.group`), parameters (`mm.param`), repeated layers (`mm.layer`),
    training stages (`mm.stage`) and entry points (`mm.entry`).

    `config` is the model's configuration in the shape of Hugging Face's
    `config.json` (reported by `mmc inspect`); `tokenizer` names a
    `tokenizer.json` relative to the model file, which `mmc compile` embeds
    in the shared library.

    Example:
    ```mlir
    mm.model @tiny attributes {config = {model_type = "llava"}} {
      mm.group @language_model
      mm.param @"language_model.lm_head.weight" : tensor<512x256xf32>
          group @language_model init #mm.init<normal, 0.02>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       OptionalAttr<DictionaryAttr>:$config,
                       OptionalAttr<StrAttr>:$tokenizer);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "$sym_name attr-dict-with-keyword $body";
  let hasVerifier = 1;
}

def MM_GroupOp : MM_Op<"group", [Symbol, HasParent<"ModelOp">]> {
  let summary = "a parameter group";
  let description = [{
    Declares a group of parameters that stages train or freeze together.
    Every parameter belongs to exactly one group.

    Example: `mm.group @vision_tower`
  }];
  let arguments = (ins SymbolNameAttr:$sym_name);
  let assemblyFormat = "$sym_name attr-dict";
}

def MM_ParamOp : MM_Op<"param", [Symbol, ParentOneOf<["ModelOp", "LayerOp"]>]> {
  let summary = "a named model parameter";
  let description = [{
    Declares a parameter with its Hugging Face checkpoint name, static shape,
    element type, group and initialiser. Inside an `mm.layer` the name is
    relative: instance `i` of the layer owns `<prefix>.<i>.<name>`.

    Example:
    ```mlir
    mm.param @"multi_modal_projector.linear_1.bias" : tensor<256xf32>
        group @multi_modal_projector init #mm.init<zeros>
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<MM_F32Tensor>:$type,
                       OptionalAttr<FlatSymbolRefAttr>:$group,
                       MM_InitAttr:$init);
  let assemblyFormat = "$sym_name `:` $type (`group` $group^)? `init` qualified($init) attr-dict";
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::mlir::RankedTensorType getTensorType() {
      return ::llvm::cast<::mlir::RankedTensorType>(getType());
    }
  }];
}

def MM_LayerOp : MM_Op<"layer", [SymbolTable, IsolatedFromAbove,
    HasParent<"ModelOp">, FunctionOpInterface]> {
  let summary = "a layer declared once and instantiated `count` times";
  let description = [{
    A repeated block (a transformer layer). Its body declares the layer's
    own parameters with names relative to `prefix` and computes its results
    from its arguments; `mm.apply_layer` runs a range of its instances in
    sequence. Instance `i` owns parameters `<prefix>.<i>.<name>`, so HF's
    `...encoder.layers.3.mlp.fc1.weight` is `mlp.fc1.weight` of instance 3.
    A layer with `parameters_from = @other` declares no parameters of its
    own: it computes with `@other`'s (the same count and prefix), as a
    decoding variant of a decoder layer does.
    `index_start` and `index_step` (default 0 and 1) map instance `i` to the
    checkpoint index `index_start + i * index_step`, for stacks whose layers
    alternate between two kinds: BLIP-2's Q-Former cross-attends in its even
    layers only, so those are one `mm.layer` with `index_step = 2` and the
    odd ones another with `index_start = 1, index_step = 2`.

    Example:
    ```mlir
    mm.layer @block(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
        attributes {count = 2 : i64, prefix = "layers"} {
      mm.param @"ln.weight" : tensor<8xf32> group @g init #mm.init<ones>
      %w = mm.weight @"ln.weight" : tensor<8xf32>
      %y = mm.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
      mm.yield %y : tensor<1x4x8xf32>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<FunctionType>:$function_type,
                       OptionalAttr<DictArrayAttr>:$arg_attrs,
                       OptionalAttr<DictArrayAttr>:$res_attrs,
                       I64Attr:$count, StrAttr:$prefix,
                       OptionalAttr<FlatSymbolRefAttr>:$parameters_from,
                       DefaultValuedAttr<I64Attr, "0">:$index_start,
                       DefaultValuedAttr<I64Attr, "1">:$index_step);
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::llvm::ArrayRef<::mlir::Type> getArgumentTypes() { return getFunctionType().getInputs(); }
    ::llvm::ArrayRef<::mlir::Type> getResultTypes() { return getFunctionType().getResults(); }
    ::mlir::Region *getCallableRegion() { return &getBody(); }
    /// The full checkpoint name of parameter `name` in instance `index`.
    std::string instanceParamName(int64_t index, ::llvm::StringRef name);
    /// The layer whose parameters this one reads: itself, or the one named
    /// by `parameters_from`.
    LayerOp getParameterOwner();
  }];
}

def MM_StageOp : MM_Op<"stage", [Symbol, HasParent<"ModelOp">,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "a training stage: which groups train, on what, with what defaults";
  let description = [{
    Declares a training stage: the groups it trains (every other group is
    frozen), the entry that computes its loss (one scalar: the sum of the
    per-token losses of one sample), the kind of data it reads, and its
    default hyper-parameters, which `mmrun --train` may override.
    `mm-autodiff` adds the stage's training step, `@train_<stage>`.

    Example:
    ```mlir
    mm.stage @stage1 trainable [@multi_modal_projector] loss @lm_loss data "caption"
        {lr = 1.0e-3 : f64, batch = 8 : i64, epochs = 1 : i64}
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       FlatSymbolRefArrayAttr:$trainable,
                       FlatSymbolRefAttr:$loss, StrAttr:$data,
                       DefaultValuedAttr<F64Attr, "1.0e-3">:$lr,
                       DefaultValuedAttr<StrAttr, "\"cosine\"">:$schedule,
                       DefaultValuedAttr<F64Attr, "0.03">:$warmup_ratio,
                       DefaultValuedAttr<F64Attr, "0.0">:$weight_decay,
                       DefaultValuedAttr<I64Attr, "8">:$batch,
                       DefaultValuedAttr<I64Attr, "1">:$epochs);
  let assemblyFormat = "$sym_name `trainable` $trainable `loss` $loss `data` $data attr-dict";
  let hasVerifier = 1;
}

def MM_EntryOp : MM_Op<"entry", [IsolatedFromAbove, HasParent<"ModelOp">,
    FunctionOpInterface]> {
  let summary = "an entry point of the compiled library";
  let description = [{
    A function the compiled `.so` exports: its arguments are run-time inputs
    (pixels, token ids, the real sequence length), its results the outputs.
    Shapes are static: the compiled maximum; real lengths arrive at run time.

    Example:
    ```mlir
    mm.entry @forward(%ids: tensor<1x8xi32>, %len: tensor<i32>) -> tensor<1x8x16xf32> {
      %t = mm.weight @"embed.weight" : tensor<32x16xf32>
      %e = mm.embedding %ids, %t : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
      mm.return %e : tensor<1x8x16xf32>
    }
    ```
  }];
  let arguments = (ins SymbolNameAttr:$sym_name,
                       TypeAttrOf<FunctionType>:$function_type,
                       OptionalAttr<DictArrayAttr>:$arg_attrs,
                       OptionalAttr<DictArrayAttr>:$res_attrs);
  let regions = (region SizedRegion<1>:$body);
  let hasCustomAssemblyFormat = 1;
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    ::llvm::ArrayRef<::mlir::Type> getArgumentTypes() { return getFunctionType().getInputs(); }
    ::llvm::ArrayRef<::mlir::Type> getResultTypes() { return getFunctionType().getResults(); }
    ::mlir::Region *getCallableRegion() { return &getBody(); }
  }];
}

def MM_ReturnOp : MM_Op<"return", [Pure, HasParent<"EntryOp">, ReturnLike, Terminator]> {
  let summary = "returns an entry point's results";
  let description = [{
    Terminates an `mm.entry`; the operand types must be its result types.

    Example: `mm.return %logits : tensor<1x8x16xf32>`
  }];
  let arguments = (ins Variadic<MM_AnyTensor>:$operands);
  let assemblyFormat = "($operands^ `:` type($operands))? attr-dict";
}

def MM_YieldOp : MM_Op<"yield", [Pure, ParentOneOf<["LayerOp", "FusedElementwiseOp"]>, ReturnLike, Terminator]> {
  let summary = "yields a layer's or a fused region's results";
  let description = [{
    Terminates an `mm.layer` or an `mm.fused_elementwise` body; the operand
    types must be its result types.

    Example: `mm.yield %y : tensor<1x4x8xf32>`
  }];
  let arguments = (ins Variadic<MM_AnyTensor>:$operands);
  let assemblyFormat = "($operands^ `:` type($operands))? attr-dict";
}

def MM_WeightOp : MM_Op<"weight", [Pure,
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "the value of a parameter";
  let description = [{
    Reads a parameter declared by `mm.param` in the enclosing layer (by its
    relative name) or model. The result type must be the parameter's type.

    Example: `%w = mm.weight @"multi_modal_projector.linear_1.weight" : tensor<256x128xf32>`
  }];
  let arguments = (ins FlatSymbolRefAttr:$param);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$param attr-dict `:` type($result)";
}

def MM_ApplyLayerOp : MM_Op<"apply_layer", [
    DeclareOpInterfaceMethods<SymbolUserOpInterface>]> {
  let summary = "runs instances [begin, end) of a layer in sequence";
  let description = [{
    Applies instances `begin`, `begin+1`, ..., `end-1` of an `mm.layer`.
    With R results, the layer's first R arguments are chained (each
    instance's results feed the next one's first R arguments); the remaining
    arguments are context that every instance receives unchanged (a
    sequence length, or the image features a cross-attention layer reads).
    LLaVA's use of the vision tower's penultimate layer is `from 0 to count-1`.

    Example:
    ```mlir
    %h = mm.apply_layer @clip_layer from 0 to 3 (%x) : (tensor<1x65x128xf32>) -> tensor<1x65x128xf32>
    ```
  }];
  let arguments = (ins FlatSymbolRefAttr:$layer, I64Attr:$begin, I64Attr:$end,
                       Variadic<MM_AnyTensor>:$inputs);
  let results = (outs Variadic<MM_AnyTensor>:$results);
  let assemblyFormat = [{
    $layer `from` $begin `to` $end `(` $inputs `)` attr-dict `:` functional-type($inputs, $results)
  }];
}

//===----------------------------------------------------------------------===//
// Tensor ops
//===----------------------------------------------------------------------===//

def MM_EmbeddingOp : MM_Op<"embedding", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "token embedding lookup";
  let description = [{
    `result[b, s, :] = table[ids[b, s], :]`; ids outside `[0, V)` give zeros.
    Shapes: ids `[B, S]`, table `[V, D]`, result `[B, S, D]`.

    Example:
    ```mlir
    %e = mm.embedding %ids, %t : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_I32Tensor:$ids, MM_F32Tensor:$table);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$ids `,` $table attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_LinearOp : MM_Op<"linear", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "y = x W^T + b over the last dimension";
  let description = [{
    A fully connected layer with the weight in PyTorch's `[out, in]` layout.
    Shapes: x `[..., K]`, weight `[N, K]`, optional bias `[N]`, result `[..., N]`.

    Example:
    ```mlir
    %y = mm.linear %x, %w, %b : (tensor<1x8x16xf32>, tensor<32x16xf32>, tensor<32xf32>) -> tensor<1x8x32xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$weight,
                       Optional<MM_F32Tensor>:$bias);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MM_PatchEmbedOp : MM_Op<"patch_embed", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "non-overlapping convolution that turns an image into patch tokens";
  let description = [{
    A `P x P` convolution with stride `P` and no bias (CLIP's
    `patch_embedding`), patches flattened row-major into a sequence.
    Shapes: pixels `[B, C, H, W]`, weight `[D, C, P, P]`,
    result `[B, (H/P)*(W/P), D]`.

    Example:
    ```mlir
    %p = mm.patch_embed %pix, %w : (tensor<1x3x64x64xf32>, tensor<128x3x8x8xf32>) -> tensor<1x64x128xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$pixels, MM_F32Tensor:$weight);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$pixels `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_Conv2dOp : MM_Op<"conv2d", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "2-D convolution over NCHW feature maps, with an optional bias";
  let description = [{
    `y[b, o, oy, ox] = bias[o] + sum over c, u, v of
    w[o, c, u, v] * x[b, c, oy * stride - padding + u, ox * stride - padding + v]`
    (zero outside the input), as PyTorch's `Conv2d`. A convolutional stem
    in front of a vision tower's patch embedding is built from it.
    Shapes: input `[B, C, H, W]`, weight `[O, C, KH, KW]`, bias `[O]`,
    result `[B, O, (H + 2 padding - KH) / stride + 1, (W + 2 padding - KW) / stride + 1]`.

    Example:
    ```mlir
    %y = mm.conv2d %x, %w, %b {stride = 2 : i64, padding = 1 : i64}
        : (tensor<1x3x64x64xf32>, tensor<32x3x3x3xf32>, tensor<32xf32>) -> tensor<1x32x32x32xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$weight, Optional<MM_F32Tensor>:$bias,
                       I64Attr:$stride, I64Attr:$padding);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $weight (`,` $bias^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_LayerNormOp : MM_Op<"layer_norm", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "layer normalisation over the last dimension";
  let description = [{
    `y = (x - mean) / sqrt(var + eps) * weight + bias`, biased variance.
    Shapes: x `[..., D]`, weight and bias `[D]`, result like x.

    Example:
    ```mlir
    %y = mm.layer_norm %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<1x8x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$weight,
                       MM_F32Tensor:$bias, F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $weight `,` $bias attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_RMSNormOp : MM_Op<"rms_norm", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "RMS normalisation over the last dimension";
  let description = [{
    `y = x / sqrt(mean(x^2) + eps) * weight` (LLaMA).
    Shapes: x `[..., D]`, weight `[D]`, result like x.

    Example:
    ```mlir
    %y = mm.rms_norm %x, %g {eps = 1.0e-6 : f64} : (tensor<1x8x16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$weight, F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $weight attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

class MM_UnaryOp<string mnemonic, string math> : MM_Op<mnemonic,
    [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "elementwise " # mnemonic;
  let description = "Elementwise `" # math # "`; any static f32 shape.\n\n"
      # "Example: `%y = mm." # mnemonic # " %x : tensor<1x8x16xf32>`";
  let arguments = (ins MM_F32Tensor:$input);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";
}

def MM_GeluOp : MM_UnaryOp<"gelu", "y = 0.5 x (1 + erf(x / sqrt(2)))">;
def MM_QuickGeluOp : MM_UnaryOp<"quick_gelu", "y = x sigmoid(1.702 x)">;
def MM_GeluTanhOp : MM_UnaryOp<"gelu_tanh", "y = 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))" # " (Hugging Face's `gelu_new`, T5's gated-GELU)">;
def MM_SiluOp : MM_UnaryOp<"silu", "y = x sigmoid(x)">;
def MM_ReluOp : MM_UnaryOp<"relu", "y = max(x, 0)">;

class MM_BinaryOp<string mnemonic, string math> : MM_Op<mnemonic,
    [Pure, SameOperandsAndResultType, Commutative, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "elementwise " # mnemonic;
  let description = "Elementwise `" # math # "` of two tensors of one static shape "
      # "(broadcast first with `mm.broadcast`).\n\n"
      # "Example: `%y = mm." # mnemonic # " %a, %b : tensor<1x8x16xf32>`";
  let arguments = (ins MM_F32Tensor:$lhs, MM_F32Tensor:$rhs);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def MM_AddOp : MM_BinaryOp<"add", "y = a + b">;
def MM_MulOp : MM_BinaryOp<"mul", "y = a * b">;

def MM_RoPEOp : MM_Op<"rope", [Pure, AllTypesMatch<["input", "result"]>, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "rotary position embedding (LLaMA's rotate-half convention)";
  let description = [{
    Rotates each head's `[Dh]` vector by position: with
    `inv_freq[i] = theta^(-2i/Dh)` and `angle = pos * inv_freq[i mod Dh/2]`,
    `y = x cos(angle) + rotate_half(x) sin(angle)`, `pos = offset + s`
    (`offset`, an optional scalar i32, is the position of the first token:
    decoding with a KV cache). With `inverse` it rotates by `-angle` (the
    transpose, which is its VJP).
    Shapes: x `[B, S, H*Dh]`, result like x; `num_heads` gives `H`.

    Example:
    ```mlir
    %q2 = mm.rope %q {num_heads = 4 : i64, theta = 10000.0 : f64} : tensor<1x8x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, Optional<0DTensorOf<[I32]>>:$offset, I64Attr:$num_heads,
                       F64Attr:$theta, DefaultValuedAttr<BoolAttr, "false">:$inverse);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input (`,` $offset^ `:` type($offset))? attr-dict `:` type($result)";
  let hasVerifier = 1;
}

def MM_AttentionOp : MM_Op<"attention", [Pure, AttrSizedOperandSegments, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "multi-head scaled dot-product attention under a mask";
  let description = [{
    `softmax(q k^T * scale + mask) v` per head, with grouped K/V heads when
    `num_kv_heads < num_heads` (head `h` reads K/V head `h / (H / Hkv)`).
    The optional `length` (a scalar i32, or one per batch row: `[B]` i32) is
    the number of real keys: keys at or past it are masked for every mask
    kind (padding; and, decoding against a KV cache, the positions not yet
    written); without it every key is real. The `padding` kind requires it. `layout` names the sequence's segments
    where the mask kind needs them (see `#mm.mask`). The score matrix is
    never materialised by the generated kernels (online softmax).
    Shapes: q `[B, S, H*Dh]`, k and v `[B, Skv, Hkv*Dh]`, result like q;
    `Skv != S` (cross-attention) only with a bidirectional mask.

    With `position_bias` (T5's relative attention bias, `[num_buckets, H]`,
    after `bias`) the score of query `i` and key `j` in head `h` is
    `q.k * scale + position_bias[bucket(j - i), h]`, the bucket as T5
    computes it with `bias_max_distance`: half the buckets for keys after the
    query under a bidirectional or padding mask, one direction under a causal
    one. Self-attention only (`Skv == S`).

    Example:
    ```mlir
    %o = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    // T5's encoder self-attention: no scaling, a relative position bias.
    %e = mm.attention %q, %k, %v bias %table {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 128 : i64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<32x4xf32>) -> tensor<1x8x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$query, MM_F32Tensor:$key, MM_F32Tensor:$value,
                       Optional<MM_I32Tensor>:$length, Optional<MM_F32Tensor>:$position_bias,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads,
                       MM_MaskAttr:$mask, F64Attr:$scale,
                       OptionalAttr<MM_SeqLayoutAttr>:$layout,
                       OptionalAttr<I64Attr>:$bias_max_distance);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`,` $length^)? (`bias` $position_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Length of the first layout segment (image or query tokens), else 0.
    int64_t getPrefixLength();
  }];
}

def MM_ConcatOp : MM_Op<"concat", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "concatenation of two tensors along one axis";
  let description = [{
    Shapes agree except along `axis`, where the result has the sum; both
    operands have the result's element type (i32 too: BLIP-2's ITM batch
    joins token ids and lengths).

    Example:
    ```mlir
    %y = mm.concat %cls, %patches {axis = 1 : i64} : (tensor<1x1x16xf32>, tensor<1x64x16xf32>) -> tensor<1x65x16xf32>
    ```
  }];
  let arguments = (ins MM_AnyTensor:$lhs, MM_AnyTensor:$rhs, I64Attr:$axis);
  let results = (outs MM_AnyTensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_SliceOp : MM_Op<"slice", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "a contiguous range along one axis";
  let description = [{
    `result = input[..., start : start + size, ...]` along `axis`; the
    result's extent along `axis` is `size`. With the optional `offset` (a
    scalar i32 known at run time) the range starts at `start + offset`, and
    positions it moves past the input's end read zeros: a decode step reads
    the learned position embedding of its own position (OPT). Such a slice
    has no gradient.

    Example:
    ```mlir
    %p = mm.slice %h {axis = 1 : i64, start = 1 : i64} : (tensor<1x65x16xf32>) -> tensor<1x64x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, Optional<0DTensorOf<[I32]>>:$offset, I64Attr:$axis,
                       I64Attr:$start);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input (`,` $offset^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_BroadcastOp : MM_Op<"broadcast", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "numpy-style broadcast to a larger static shape";
  let description = [{
    The input's shape is right-aligned against the result's; each input
    dimension is 1 or equal to the result's.

    Example:
    ```mlir
    %y = mm.broadcast %pos : (tensor<65x16xf32>) -> tensor<1x65x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_MergeImageFeaturesOp : MM_Op<"merge_image_features", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "scatter image features into the image-token positions";
  let description = [{
    LLaVA's merge: the `j`-th position of batch row `b` whose id is
    `image_token_index` takes `features[b, j]`; other positions keep their
    text embedding. Shapes: embeds `[B, S, D]`, ids `[B, S]`,
    features `[B, N, D]`, result like embeds.

    Example:
    ```mlir
    %m = mm.merge_image_features %e, %ids, %f {image_token_index = 4 : i64}
        : (tensor<1x80x16xf32>, tensor<1x80xi32>, tensor<1x64x16xf32>) -> tensor<1x80x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$embeds, MM_I32Tensor:$ids,
                       MM_F32Tensor:$features, I64Attr:$image_token_index);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$embeds `,` $ids `,` $features attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}


//===----------------------------------------------------------------------===//
// Losses
//===----------------------------------------------------------------------===//

def MM_CrossEntropyOp : MM_Op<"cross_entropy", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "summed softmax cross-entropy with an ignore index";
  let description = [{
    `sum over positions t with targets[t] != ignore_index of
    logsumexp(logits[t]) - logits[t, targets[t]]`. The sum (not the mean):
    the runtime divides by the number of counted targets over a whole
    optimizer step. With `mean`, the sum divided by the number of counted
    positions (0 when there are none), for a loss entry that sums losses
    of different kinds (BLIP-2's stage 1). Probabilities are never
    materialised.
    Shapes: logits `[..., V]`, targets `[...]` (i32), result a scalar.

    Example:
    ```mlir
    %l = mm.cross_entropy %logits, %targets {ignore_index = -100 : i64}
        : (tensor<1x8x32xf32>, tensor<1x8xi32>) -> tensor<f32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$logits, MM_I32Tensor:$targets,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index, UnitAttr:$mean);
  let results = (outs MM_Scalar:$result);
  let assemblyFormat = "$logits `,` $targets attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_ReduceSumOp : MM_Op<"reduce_sum", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "the sum of all elements";
  let description = [{
    A scalar loss from any tensor (used by the finite-difference checks).

    Example: `%s = mm.reduce_sum %x : (tensor<4x8xf32>) -> tensor<f32>`
  }];
  let arguments = (ins MM_F32Tensor:$input);
  let results = (outs MM_Scalar:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_DivOp : MM_Op<"div", [Pure, SameOperandsAndResultType, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "elementwise division";
  let description = [{
    Elementwise `y = a / b` of two tensors of one static shape (broadcast
    first with `mm.broadcast`): BLIP-2's ITC similarities over the learnable
    temperature.

    Example: `%y = mm.div %sim, %temp : tensor<8x8xf32>`
  }];
  let arguments = (ins MM_F32Tensor:$lhs, MM_F32Tensor:$rhs);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$lhs `,` $rhs attr-dict `:` type($result)";
}

def MM_ReshapeOp : MM_Op<"reshape", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "the same elements in another static shape";
  let description = [{
    Row-major order is kept; only the shape changes (the element counts
    must agree). BLIP-2's ITC drops the text features' one-long sequence
    axis, `[B, 1, E] -> [B, E]`.

    Example: `%y = mm.reshape %x : (tensor<8x1x64xf32>) -> tensor<8x64xf32>`
  }];
  let arguments = (ins MM_AnyTensor:$input);
  let results = (outs MM_AnyTensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_TransposeOp : MM_Op<"transpose", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "swap the last two axes";
  let description = [{
    `y[..., j, i] = x[..., i, j]`: BLIP-2's text-to-image similarities are
    the transpose of the image-to-text ones.
    Shapes: x `[..., M, N]`, result `[..., N, M]`.

    Example: `%t = mm.transpose %s : (tensor<8x4xf32>) -> tensor<4x8xf32>`
  }];
  let arguments = (ins MM_F32Tensor:$input);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_ReduceMaxOp : MM_Op<"reduce_max", [Pure, DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "the maximum along one axis";
  let description = [{
    `y[o, i] = max over j of x[o, j, i]` along `axis` (which the result
    drops). Its gradient goes to the first position holding the maximum:
    BLIP-2's image-text similarity is the best match over the query tokens.

    Example: `%m = mm.reduce_max %s {axis = 1 : i64} : (tensor<8x32x8xf32>) -> tensor<8x8xf32>`
  }];
  let arguments = (ins MM_F32Tensor:$input, I64Attr:$axis);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_L2NormalizeOp : MM_Op<"l2_normalize", [Pure, AllTypesMatch<["input", "result"]>,
    DeclareOpInterfaceMethods<MM_VJPOpInterface>]> {
  let summary = "scale each row to unit Euclidean length";
  let description = [{
    `y = x / max(||x||, eps)` over the last axis (PyTorch's
    `F.normalize(x, dim=-1)`): BLIP-2's ITC features.

    Example: `%n = mm.l2_normalize %f {eps = 1.0e-12 : f64} : tensor<8x32x64xf32>`
  }];
  let arguments = (ins MM_F32Tensor:$input, DefaultValuedAttr<F64Attr, "1.0e-12">:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` type($result)";  let hasVerifier = 1;
}

def MM_GatherOp : MM_Op<"gather", [Pure]> {
  let summary = "rows of a tensor picked by run-time indices along its first axis";
  let description = [{
    `y[n, ...] = x[indices[n], ...]`; an index outside `[0, B)` reads
    zeros. BLIP-2's ITM batch takes its hard-negative images, texts and
    text lengths this way. No gradient: mm-autodiff refuses a gather whose
    input a trainable parameter reaches (stage 1 gathers frozen image
    features and token ids only).
    Shapes: x `[B, ...]` (f32 or i32), indices `[N]` (i32), result `[N, ...]`.

    Example:
    ```mlir
    %neg = mm.gather %image, %idx : (tensor<8x65x128xf32>, tensor<8xi32>) -> tensor<8x65x128xf32>
    ```
  }];
  let arguments = (ins MM_AnyTensor:$input, MM_I32Tensor:$indices);
  let results = (outs MM_AnyTensor:$result);
  let assemblyFormat = "$input `,` $indices attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_SampleNegativesOp : MM_Op<"sample_negatives", [Pure]> {
  let summary = "one hard negative per row, drawn from the row's similarities";
  let description = [{
    For each row `r` of the similarities `sim[B, B]`, draws a column
    `j != r` with probability `softmax(sim[r, :])_j` renormalised over the
    columns other than `r` (BLIP-2's ITM hard negatives: the positive is
    never drawn), by inverse transform of `uniform[r]` in `[0, 1)`. The
    caller supplies the uniform numbers, so a step is a pure function of
    its inputs. Needs `B >= 2`. Integer result: no gradient.

    Example:
    ```mlir
    %neg = mm.sample_negatives %sim, %u : (tensor<8x8xf32>, tensor<8xf32>) -> tensor<8xi32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$similarity, MM_F32Tensor:$uniform);
  let results = (outs MM_I32Tensor:$result);
  let assemblyFormat = "$similarity `,` $uniform attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_IotaOp : MM_Op<"iota", [Pure]> {
  let summary = "0, 1, ..., N-1";
  let description = [{
    An i32 vector counting from 0: the in-batch targets of BLIP-2's ITC
    (image `i` matches text `i`).

    Example: `%t = mm.iota : tensor<8xi32>`
  }];
  let results = (outs 1DTensorOf<[I32]>:$result);
  let assemblyFormat = "attr-dict `:` type($result)";
}

//===----------------------------------------------------------------------===//
// Backward ops (emitted by mm-autodiff; each one's kernel sits beside its
// forward op's in compiler/lib/Target/KernelBuilder.cpp)
//===----------------------------------------------------------------------===//

def MM_ConstantOp : MM_Op<"constant", [Pure]> {
  let summary = "a tensor with every element equal to one value";
  let description = [{
    Seeds the backward pass (`1` for the loss) and stands for the gradient
    of a parameter the loss does not reach (`0`). An i32 constant must hold
    an integer value (class labels: BLIP-2's ITM targets).

    Example: `%one = mm.constant {value = 1.0 : f64} : tensor<f32>`
  }];
  let arguments = (ins F64Attr:$value);
  let results = (outs MM_AnyTensor:$result);
  let hasVerifier = 1;
  let assemblyFormat = "attr-dict `:` type($result)";
}

def MM_CrossEntropyGradOp : MM_Op<"cross_entropy_grad", [Pure]> {
  let summary = "gradient of mm.cross_entropy with respect to the logits";
  let description = [{
    `dlogits[t] = dloss * (softmax(logits[t]) - onehot(targets[t]))` for
    counted positions, zero for ignored ones; with `mean`, divided by the
    number of counted positions.

    Example:
    ```mlir
    %d = mm.cross_entropy_grad %logits, %targets, %dl {ignore_index = -100 : i64}
        : (tensor<1x8x32xf32>, tensor<1x8xi32>, tensor<f32>) -> tensor<1x8x32xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$logits, MM_I32Tensor:$targets, MM_Scalar:$grad,
                       DefaultValuedAttr<I64Attr, "-100">:$ignore_index, UnitAttr:$mean);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$logits `,` $targets `,` $grad attr-dict `:` functional-type(operands, results)";
}

def MM_FillOp : MM_Op<"fill", [Pure]> {
  let summary = "broadcast a scalar to a shape";
  let description = [{
    VJP of `mm.reduce_sum`. Example:
    `%y = mm.fill %s : (tensor<f32>) -> tensor<4x8xf32>`
  }];
  let arguments = (ins MM_Scalar:$value);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$value attr-dict `:` functional-type(operands, results)";
}

def MM_LinearGradInputOp : MM_Op<"linear_grad_input", [Pure]> {
  let summary = "dx = dy W for y = x W^T";
  let description = [{
    Shapes: dy `[..., N]`, weight `[N, K]`, result `[..., K]`. `mm-fuse`
    folds a following `mm.add` into the optional `addend` (same shape as the
    result): `dx = dy W + addend`, added as the product is stored.

    Example:
    ```mlir
    %dx = mm.linear_grad_input %dy, %w : (tensor<1x8x32xf32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$weight, Optional<MM_F32Tensor>:$addend);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $weight (`addend` $addend^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_LinearGradWeightOp : MM_Op<"linear_grad_weight", [Pure]> {
  let summary = "dW = dy^T x for y = x W^T (the weight-gradient matmul)";
  let description = [{
    Sums over every leading position. Shapes: dy `[..., N]`, x `[..., K]`,
    result `[N, K]`. mm-autodiff emits it only for trainable weights.

    Example:
    ```mlir
    %dw = mm.linear_grad_weight %dy, %x : (tensor<1x8x32xf32>, tensor<1x8x16xf32>) -> tensor<32x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input attr-dict `:` functional-type(operands, results)";
}

def MM_ReduceToOp : MM_Op<"reduce_to", [Pure]> {
  let summary = "sum a tensor down to a shape it was broadcast from";
  let description = [{
    The VJP of `mm.broadcast` and of bias additions: sums over the leading
    dimensions the result lacks and over dimensions of size 1 in the result.

    Example: `%db = mm.reduce_to %dy : (tensor<1x8x32xf32>) -> tensor<32xf32>`
  }];
  let arguments = (ins MM_F32Tensor:$input);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}

def MM_EmbeddingGradOp : MM_Op<"embedding_grad", [Pure]> {
  let summary = "gradient of an embedding table: scatter-add of dy rows";
  let description = [{
    `dtable[v] = sum of dy[t] over positions t with ids[t] == v`.
    Shapes: ids `[B, S]`, dy `[B, S, D]`, result `[V, D]`.

    Example:
    ```mlir
    %dt = mm.embedding_grad %ids, %dy : (tensor<1x8xi32>, tensor<1x8x16xf32>) -> tensor<32x16xf32>
    ```
  }];
  let arguments = (ins MM_I32Tensor:$ids, MM_F32Tensor:$grad);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$ids `,` $grad attr-dict `:` functional-type(operands, results)";
}

def MM_PatchEmbedGradWeightOp : MM_Op<"patch_embed_grad_weight", [Pure]> {
  let summary = "gradient of a patch-embedding weight";
  let description = [{
    Shapes: pixels `[B, C, H, W]`, dy `[B, (H/P)*(W/P), D]`, result `[D, C, P, P]`.

    Example:
    ```mlir
    %dw = mm.patch_embed_grad_weight %pix, %dy : (tensor<1x3x8x8xf32>, tensor<1x4x16xf32>) -> tensor<16x3x4x4xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$pixels, MM_F32Tensor:$grad);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$pixels `,` $grad attr-dict `:` functional-type(operands, results)";
}

def MM_Conv2dGradInputOp : MM_Op<"conv2d_grad_input", [Pure]> {
  let summary = "dx of a 2-D convolution (the transposed convolution of dy)";
  let description = [{
    `dx[b, c, iy, ix] = sum of w[o, c, u, v] * dy[b, o, oy, ox]` over every
    output position (oy, ox) and tap (u, v) that read input (iy, ix).
    Shapes: dy `[B, O, HO, WO]`, weight `[O, C, KH, KW]`, result `[B, C, H, W]`.

    Example:
    ```mlir
    %dx = mm.conv2d_grad_input %dy, %w {stride = 2 : i64, padding = 1 : i64}
        : (tensor<1x32x32x32xf32>, tensor<32x3x3x3xf32>) -> tensor<1x3x64x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$weight, I64Attr:$stride, I64Attr:$padding);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $weight attr-dict `:` functional-type(operands, results)";
}

def MM_Conv2dGradWeightOp : MM_Op<"conv2d_grad_weight", [Pure]> {
  let summary = "dW of a 2-D convolution, summed over the batch and every position";
  let description = [{
    `dw[o, c, u, v] = sum of dy[b, o, oy, ox] * x[b, c, oy * stride - padding + u, ox * stride - padding + v]`.
    Shapes: dy `[B, O, HO, WO]`, input `[B, C, H, W]`, result `[O, C, KH, KW]`.

    Example:
    ```mlir
    %dw = mm.conv2d_grad_weight %dy, %x {stride = 2 : i64, padding = 1 : i64}
        : (tensor<1x32x32x32xf32>, tensor<1x3x64x64xf32>) -> tensor<32x3x3x3xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, I64Attr:$stride, I64Attr:$padding);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input attr-dict `:` functional-type(operands, results)";
}

def MM_Conv2dGradBiasOp : MM_Op<"conv2d_grad_bias", [Pure]> {
  let summary = "d(bias) of a 2-D convolution: dy summed over all but the channel axis";
  let description = [{
    Shapes: dy `[B, O, HO, WO]`, result `[O]`.

    Example:
    ```mlir
    %db = mm.conv2d_grad_bias %dy : (tensor<1x32x32x32xf32>) -> tensor<32xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad attr-dict `:` functional-type(operands, results)";
}

def MM_PatchEmbedGradInputOp : MM_Op<"patch_embed_grad_input", [Pure]> {
  let summary = "d(pixels) of a patch embedding (for a stem in front of it)";
  let description = [{
    `dx[b, c, py * P + u, px * P + v] = sum over d of w[d, c, u, v] * dy[b, py * GW + px, d]`.
    Shapes: dy `[B, N, D]`, weight `[D, C, P, P]`, result `[B, C, H, W]`.

    Example:
    ```mlir
    %dx = mm.patch_embed_grad_input %dy, %w : (tensor<1x64x128xf32>, tensor<128x64x2x2xf32>) -> tensor<1x64x16x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$weight);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $weight attr-dict `:` functional-type(operands, results)";
}

def MM_LayerNormGradInputOp : MM_Op<"layer_norm_grad_input", [Pure]> {
  let summary = "dx of a layer norm";
  let description = [{
    With `xhat = (x - mean) * rstd` and `g = dy * weight`:
    `dx = rstd * (g - mean(g) - xhat * mean(g * xhat))` per row,
    plus the optional `addend` (same shape; `mm-fuse` folds a following
    `mm.add` into it).

    Example:
    ```mlir
    %dx = mm.layer_norm_grad_input %dy, %x, %w {eps = 1.0e-5 : f64}
        : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, MM_F32Tensor:$weight, Optional<MM_F32Tensor>:$addend,
                       F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input `,` $weight (`addend` $addend^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_LayerNormGradWeightOp : MM_Op<"layer_norm_grad_weight", [Pure]> {
  let summary = "d(weight) of a layer norm: sum over rows of dy * xhat";
  let description = [{
    Shapes: dy and x `[..., D]`, result `[D]`. (The bias gradient is
    `mm.reduce_to` of dy.)

    Example:
    ```mlir
    %dw = mm.layer_norm_grad_weight %dy, %x {eps = 1.0e-5 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>) -> tensor<16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input attr-dict `:` functional-type(operands, results)";
}

def MM_RMSNormGradInputOp : MM_Op<"rms_norm_grad_input", [Pure]> {
  let summary = "dx of an RMS norm";
  let description = [{
    With `r = rsqrt(mean(x^2) + eps)` and `g = dy * weight`:
    `dx = r * g - x * r^3 * mean(g * x)` per row,
    plus the optional `addend` (same shape; `mm-fuse` folds a following
    `mm.add` into it).

    Example:
    ```mlir
    %dx = mm.rms_norm_grad_input %dy, %x, %w {eps = 1.0e-6 : f64}
        : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, MM_F32Tensor:$weight, Optional<MM_F32Tensor>:$addend,
                       F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input `,` $weight (`addend` $addend^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_RMSNormGradWeightOp : MM_Op<"rms_norm_grad_weight", [Pure]> {
  let summary = "d(weight) of an RMS norm: sum over rows of dy * x * r";
  let description = [{
    Example:
    ```mlir
    %dw = mm.rms_norm_grad_weight %dy, %x {eps = 1.0e-6 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>) -> tensor<16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input attr-dict `:` functional-type(operands, results)";
}

def MM_ActivationKind : I32EnumAttr<"ActivationKind", "elementwise activation", [
    I32EnumAttrCase<"Gelu", 0, "gelu">,
    I32EnumAttrCase<"QuickGelu", 1, "quick_gelu">,
    I32EnumAttrCase<"Silu", 2, "silu">,
    I32EnumAttrCase<"Relu", 3, "relu">,
    I32EnumAttrCase<"GeluTanh", 4, "gelu_tanh">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mm";
}

def MM_ActivationAttr : EnumAttr<MM_Dialect, MM_ActivationKind, "activation"> {
  let summary = "which activation a gradient op differentiates";
  let description = [{
    Example: `#mm.activation<gelu>`
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MM_ActivationGradOp : MM_Op<"activation_grad", [Pure]> {
  let summary = "dx = dy * f'(x) for an elementwise activation f";
  let description = [{
    Example:
    ```mlir
    %dx = mm.activation_grad %dy, %x {kind = #mm.activation<silu>} : (tensor<8xf32>, tensor<8xf32>) -> tensor<8xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$grad, MM_F32Tensor:$input, MM_ActivationAttr:$kind);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$grad `,` $input attr-dict `:` functional-type(operands, results)";
}

def MM_PadOp : MM_Op<"pad", [Pure]> {
  let summary = "place a tensor at an offset along one axis of a zero tensor";
  let description = [{
    The VJP of `mm.slice`: `result[..., start + i, ...] = input[..., i, ...]`,
    zeros elsewhere.

    Example:
    ```mlir
    %y = mm.pad %x {axis = 1 : i64, start = 1 : i64} : (tensor<1x4x8xf32>) -> tensor<1x5x8xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, I64Attr:$axis, I64Attr:$start);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input attr-dict `:` functional-type(operands, results)";
}

def MM_GatherImageFeaturesOp : MM_Op<"gather_image_features", [Pure]> {
  let summary = "read the image-token positions back out (VJP of the merge)";
  let description = [{
    `result[b, j] = input[b, s]` for the `j`-th position `s` of row `b` whose
    id is `image_token_index`; zero where a row has fewer.

    Example:
    ```mlir
    %f = mm.gather_image_features %dy, %ids {image_token_index = 4 : i64}
        : (tensor<1x80x16xf32>, tensor<1x80xi32>) -> tensor<1x64x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_I32Tensor:$ids, I64Attr:$image_token_index);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $ids attr-dict `:` functional-type(operands, results)";
}

def MM_AttentionStatsOp : MM_Op<"attention_stats", [Pure, AttrSizedOperandSegments]> {
  let summary = "per-row log-sum-exp of the masked, scaled attention scores";
  let description = [{
    What the attention backward recomputes probabilities from, so that no
    score matrix is stored. Attributes as `mm.attention`.
    Shapes: q `[B, S, H*Dh]`, k `[B, Skv, Hkv*Dh]`, result `[B, H, S]`.

    Example:
    ```mlir
    %lse = mm.attention_stats %q, %k, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$query, MM_F32Tensor:$key, Optional<MM_I32Tensor>:$length,
                       Optional<MM_F32Tensor>:$position_bias,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads, MM_MaskAttr:$mask, F64Attr:$scale,
                       OptionalAttr<MM_SeqLayoutAttr>:$layout, OptionalAttr<I64Attr>:$bias_max_distance);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$query `,` $key (`,` $length^)? (`bias` $position_bias^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

class MM_AttentionGradOp<string mnemonic, string what> : MM_Op<mnemonic, [Pure, AttrSizedOperandSegments]> {
  let summary = "gradient of mm.attention with respect to its " # what;
  let description = [{
    Recomputes each probability from q, k and the row log-sum-exp of
    `mm.attention_stats`; `out` is the forward result (for the row terms
    `dy . out`). Attributes as `mm.attention`.

    Example:
    ```mlir
    %d = mm.}] # mnemonic # [{ %q, %k, %v, %dy, %o, %lse, %len {num_heads = 4 : i64,
        num_kv_heads = 4 : i64, mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$query, MM_F32Tensor:$key, MM_F32Tensor:$value,
                       MM_F32Tensor:$grad, MM_F32Tensor:$out, MM_F32Tensor:$lse,
                       Optional<MM_I32Tensor>:$length, Optional<MM_F32Tensor>:$position_bias,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads, MM_MaskAttr:$mask, F64Attr:$scale,
                       OptionalAttr<MM_SeqLayoutAttr>:$layout, OptionalAttr<I64Attr>:$bias_max_distance);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $grad `,` $out `,` $lse (`,` $length^)? (`bias` $position_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MM_AttentionGradQueryOp : MM_AttentionGradOp<"attention_grad_query", "queries">;
def MM_AttentionGradKeyOp : MM_AttentionGradOp<"attention_grad_key", "keys">;
def MM_AttentionGradValueOp : MM_AttentionGradOp<"attention_grad_value", "values">;
def MM_FusedAttentionOp : MM_Op<"fused_attention", [Pure, AttrSizedOperandSegments]> {
  let summary = "mm.attention and its mm.attention_stats in one pass";
  let description = [{
    `mm-fuse` puts it in place of an `mm.attention` and the
    `mm.attention_stats` that a training step's backward reads for it (the
    same query, key, length and attributes): the per-row log-sum-exp comes
    out of the forward's softmax instead of a second pass over the scores.
    Operands and attributes as `mm.attention`; results the attention's
    output (the query's type) and the statistics `[B, H, S]`.

    Example:
    ```mlir
    %y, %lse = mm.fused_attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<i32>)
        -> (tensor<1x8x64xf32>, tensor<1x4x8xf32>)
    ```
  }];
  let arguments = (ins MM_F32Tensor:$query, MM_F32Tensor:$key, MM_F32Tensor:$value,
                       Optional<MM_I32Tensor>:$length, Optional<MM_F32Tensor>:$position_bias,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads, MM_MaskAttr:$mask, F64Attr:$scale,
                       OptionalAttr<MM_SeqLayoutAttr>:$layout, OptionalAttr<I64Attr>:$bias_max_distance);
  let results = (outs MM_F32Tensor:$result, MM_F32Tensor:$lse);
  let assemblyFormat = [{
    $query `,` $key `,` $value (`,` $length^)? (`bias` $position_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MM_FusedAttentionGradOp : MM_Op<"fused_attention_grad", [Pure, AttrSizedOperandSegments]> {
  let summary = "the query, key and value gradients of mm.attention in one pass";
  let description = [{
    `mm-fuse` puts it in place of an `mm.attention_grad_query`,
    `mm.attention_grad_key` and `mm.attention_grad_value` that read the same
    operands under the same attributes: each probability and each `dy . v`
    is computed once for all three gradients instead of once per gradient.
    Operands and attributes as those ops; results `dq` (the query's type),
    `dk` and `dv` (the key's and value's).

    Example:
    ```mlir
    %dq, %dk, %dv = mm.fused_attention_grad %q, %k, %v, %dy, %o, %lse, %len {num_heads = 4 : i64,
        num_kv_heads = 4 : i64, mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<i32>)
        -> (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>)
    ```
  }];
  let arguments = (ins MM_F32Tensor:$query, MM_F32Tensor:$key, MM_F32Tensor:$value,
                       MM_F32Tensor:$grad, MM_F32Tensor:$out, MM_F32Tensor:$lse,
                       Optional<MM_I32Tensor>:$length, Optional<MM_F32Tensor>:$position_bias,
                       I64Attr:$num_heads, I64Attr:$num_kv_heads, MM_MaskAttr:$mask, F64Attr:$scale,
                       OptionalAttr<MM_SeqLayoutAttr>:$layout, OptionalAttr<I64Attr>:$bias_max_distance);
  let results = (outs MM_F32Tensor:$grad_query, MM_F32Tensor:$grad_key, MM_F32Tensor:$grad_value);
  let assemblyFormat = [{
    $query `,` $key `,` $value `,` $grad `,` $out `,` $lse (`,` $length^)? (`bias` $position_bias^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}
def MM_AttentionGradPositionBiasOp : MM_AttentionGradOp<"attention_grad_position_bias", "relative position bias table"> {
  let description = [{
    The gradient of `mm.attention`'s `position_bias` table `[num_buckets, H]`:
    each masked-in score's gradient `p (dy.v - dy.out)`, summed over the
    batch and every (query, key) pair in the table entry's bucket. Operands
    and attributes as the other attention gradients; `position_bias` is
    required.

    Example:
    ```mlir
    %d = mm.attention_grad_position_bias %q, %k, %v, %dy, %o, %lse bias %table {num_heads = 4 : i64,
        num_kv_heads = 4 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 128 : i64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<32x4xf32>) -> tensor<32x4xf32>
    ```
  }];
}


//===----------------------------------------------------------------------===//
// KV cache (chat: prefill and single-token decode)
//===----------------------------------------------------------------------===//

def MM_CacheUpdateOp : MM_Op<"cache_update", [MemoryEffects<[MemWrite]>]> {
  let summary = "write keys or values of new positions into a KV cache, in place";
  let description = [{
    `cache[layer, b, position + t, :] = new[b, t, :]`. The result is the same
    buffer as `cache` (the op updates it in place; code generation gives the
    result the operand's storage), so chaining updates orders them. An entry
    argument a cache update writes is marked `inout` in the manifest. Inside
    an `mm.layer`, `layer` counts from the instance: `mm-expand-layers` adds
    the instance index. Without `position`, writing starts at 0.
    Shapes: cache `[L, B, Smax, W]`, new `[B, T, W]`, position a scalar i32.

    Example:
    ```mlir
    %kc2 = mm.cache_update %kc, %k, %pos {layer = 0 : i64}
        : (tensor<4x1x128x64xf32>, tensor<1x1x64xf32>, tensor<i32>) -> tensor<4x1x128x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$cache, MM_F32Tensor:$update, Optional<0DTensorOf<[I32]>>:$position,
                       I64Attr:$layer);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$cache `,` $update (`,` $position^)? attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_CacheReadOp : MM_Op<"cache_read", [Pure]> {
  let summary = "one layer's keys or values from a KV cache";
  let description = [{
    `result[b, s, :] = cache[layer, b, s, :]`. As for `mm.cache_update`,
    `layer` inside an `mm.layer` counts from the instance.
    Shapes: cache `[L, B, Smax, W]`, result `[B, Smax, W]`.

    Example:
    ```mlir
    %k = mm.cache_read %kc {layer = 0 : i64} : (tensor<4x1x128x64xf32>) -> tensor<1x128x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$cache, I64Attr:$layer);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$cache attr-dict `:` functional-type(operands, results)";
  let hasVerifier = 1;
}

def MM_ReduceMaxGradOp : MM_Op<"reduce_max_grad", [Pure]> {
  let summary = "gradient of mm.reduce_max";
  let description = [{
    `dx[o, j, i] = dy[o, i]` at the first `j` where `x[o, j, i]` is the
    maximum, zero elsewhere. Attributes as `mm.reduce_max`.

    Example:
    ```mlir
    %dx = mm.reduce_max_grad %x, %dy {axis = 1 : i64} : (tensor<8x32x8xf32>, tensor<8x8xf32>) -> tensor<8x32x8xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$grad, I64Attr:$axis);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` functional-type(operands, results)";
}

def MM_L2NormalizeGradOp : MM_Op<"l2_normalize_grad", [Pure]> {
  let summary = "gradient of mm.l2_normalize";
  let description = [{
    With `n = max(||x||, eps)` and `y = x / n` per row:
    `dx = (dy - y (dy . y)) / n` where `||x|| > eps`, else `dy / eps`.

    Example:
    ```mlir
    %dx = mm.l2_normalize_grad %x, %dy {eps = 1.0e-12 : f64} : (tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$grad, F64Attr:$eps);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = "$input `,` $grad attr-dict `:` functional-type(operands, results)";
}

//===----------------------------------------------------------------------===//
// Fused ops: what mm-fuse makes of chains of the ops above
//===----------------------------------------------------------------------===//

def MM_FusedLinearOp : MM_Op<"fused_linear", [Pure, AttrSizedOperandSegments]> {
  let summary = "y = residual + act(x W^T + b): a linear layer with its epilogue";
  let description = [{
    `mm-fuse` folds the single consumer of an `mm.linear` into the product:
    an activation (`activation`, applied to `x W^T + b`) and then a residual
    `mm.add` (`residual`, same shape as the result). The CPU applies the
    epilogue to each block of the GEMM's output as it is finished, while it
    is in cache, instead of a separate pass over memory for each op.
    Shapes as for `mm.linear`. It has no VJP: mm-fuse runs after mm-autodiff.

    Example:
    ```mlir
    %y = mm.fused_linear %x, %w bias %b residual %r {activation = #mm.activation<gelu>}
        : (tensor<1x8x16xf32>, tensor<16x16xf32>, tensor<16xf32>, tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
    ```
  }];
  let arguments = (ins MM_F32Tensor:$input, MM_F32Tensor:$weight, Optional<MM_F32Tensor>:$bias,
                       Optional<MM_F32Tensor>:$residual, OptionalAttr<MM_ActivationAttr>:$activation);
  let results = (outs MM_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`bias` $bias^)? (`residual` $residual^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def MM_FusedElementwiseOp : MM_Op<"fused_elementwise", [Pure, IsolatedFromAbove]> {
  let summary = "a chain of elementwise ops computed in one pass";
  let description = [{
    The body computes one tensor from the inputs (its block arguments) with
    elementwise ops only (`mm.gelu`, `mm.quick_gelu`, `mm.silu`, `mm.relu`,
    `mm.add`, `mm.mul`, `mm.activation_grad`), every value of the result's
    shape, and yields it. Kernels evaluate the body per element, so the
    intermediate tensors are never stored. `mm-fuse` builds it from chains
    whose intermediate values have no other use.

    Example:
    ```mlir
    %y = mm.fused_elementwise (%gate, %up) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%g: tensor<4x8xf32>, %u: tensor<4x8xf32>):
      %s = mm.silu %g : tensor<4x8xf32>
      %p = mm.mul %s, %u : tensor<4x8xf32>
      mm.yield %p : tensor<4x8xf32>
    }
    ```
  }];
  let arguments = (ins Variadic<MM_F32Tensor>:$inputs);
  let results = (outs MM_F32Tensor:$result);
  let regions = (region SizedRegion<1>:$body);
  let assemblyFormat = "`(` $inputs `)` attr-dict `:` functional-type($inputs, $result) $body";
  let hasRegionVerifier = 1;
}

#endif // MM_OPS_TD
