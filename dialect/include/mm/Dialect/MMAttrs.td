//===- MMAttrs.td - mm attributes ---------------------------*- tablegen -*-===//
#ifndef MM_ATTRS_TD
#define MM_ATTRS_TD

include "mm/Dialect/MMDialect.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"

class MM_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<MM_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

//===----------------------------------------------------------------------===//
// Attention masks
//===----------------------------------------------------------------------===//

def MM_MaskKind : I32EnumAttr<"MaskKind", "which keys each query may attend to", [
    I32EnumAttrCase<"Bidirectional", 0, "bidirectional">,
    I32EnumAttrCase<"Causal", 1, "causal">,
    I32EnumAttrCase<"Padding", 2, "padding">,
    I32EnumAttrCase<"ImagePrefixCausal", 3, "image_prefix_causal">,
    I32EnumAttrCase<"ItmBidirectional", 4, "itm_bidirectional">,
    I32EnumAttrCase<"ItgMultimodalCausal", 5, "itg_multimodal_causal">,
    I32EnumAttrCase<"ItcUnimodal", 6, "itc_unimodal">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mm";
}

def MM_MaskAttr : EnumAttr<MM_Dialect, MM_MaskKind, "mask"> {
  let summary = "attention mask kind";
  let description = [{
    Which keys a query may attend to. Keys at or past the run-time sequence
    length are masked for every kind (padding).

    - `bidirectional`, `padding`: every real key.
    - `causal`: keys at positions `<=` the query's.
    - `image_prefix_causal` (LLaVA): image tokens then text, causal; needs a
      `#mm.seq_layout<image = N, text = M>`.
    - `itm_bidirectional` (BLIP-2 ITM): queries and text all see each other.
    - `itg_multimodal_causal` (BLIP-2 ITG): queries see queries only; text
      sees all queries and earlier text.
    - `itc_unimodal` (BLIP-2 ITC): queries see queries, text sees text.

    The three BLIP-2 kinds need a `#mm.seq_layout<query = N, text = M>`.

    Example: `#mm.mask<itg_multimodal_causal>`
  }];
  let assemblyFormat = "`<` $value `>`";
}

def MM_SeqLayoutAttr : MM_Attr<"SeqLayout", "seq_layout"> {
  let summary = "named segments of a sequence, in order";
  let description = [{
    The layout of an attention sequence as named segments with static
    lengths, e.g. BLIP-2's 32 learnable queries followed by 32 text tokens.
    The attention verifier checks the mask kind against it and its total
    length against the sequence length.

    Example: `#mm.seq_layout<query = 32, text = 32>`
  }];
  let parameters = (ins ArrayRefParameter<"::mlir::StringAttr">:$names,
                        ArrayRefParameter<"int64_t">:$sizes);
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    int64_t getTotal() const;
    /// Index of the segment called `name`, or -1.
    int64_t indexOf(::llvm::StringRef name) const;
  }];
}

//===----------------------------------------------------------------------===//
// Parameter initialisers
//===----------------------------------------------------------------------===//

def MM_InitKind : I32EnumAttr<"InitKind", "how a parameter is initialised", [
    I32EnumAttrCase<"Zeros", 0, "zeros">,
    I32EnumAttrCase<"Ones", 1, "ones">,
    I32EnumAttrCase<"Normal", 2, "normal">,
    I32EnumAttrCase<"Constant", 3, "constant">]> {
  let genSpecializedAttr = 0;
  let cppNamespace = "::mm";
}

def MM_InitAttr : MM_Attr<"Init", "init"> {
  let summary = "parameter initialiser";
  let description = [{
    How `mmrun` initialises a parameter from a seed when no weights are
    loaded: `zeros`, `ones`, `normal` with the given standard deviation
    (mean 0), or `constant` with the given value (BLIP-2's ITC
    temperature starts at 0.07).

    Examples: `#mm.init<zeros>`, `#mm.init<normal, 0.02>`, `#mm.init<constant, 0.07>`
  }];
  let parameters = (ins "::mm::InitKind":$kind,
                        APFloatParameter<"standard deviation (normal) or value (constant)">:$scale);
  let hasCustomAssemblyFormat = 1;
}

#endif // MM_ATTRS_TD
