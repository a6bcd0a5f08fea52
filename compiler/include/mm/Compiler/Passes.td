//===- Passes.td - mm compiler passes -----------------------*- tablegen -*-===//
#ifndef MM_COMPILER_PASSES_TD
#define MM_COMPILER_PASSES_TD

include "mlir/Pass/PassBase.td"

def ExpandLayers : Pass<"mm-expand-layers", "::mm::ModelOp"> {
  let summary = "Instantiate repeated layers: inline each mm.apply_layer instance";
  let description = [{
    Every `mm.apply_layer @L from a to b` is replaced by the bodies of
    instances a..b-1 of layer `@L`, chained, with each `mm.weight @"name"`
    renamed to the instance's `<prefix>.<i>.<name>`. Every instance's
    parameters become top-level `mm.param`s (also those of instances no
    entry applies, such as the last CLIP layer LLaVA skips: they are still
    part of the checkpoint), and the `mm.layer` ops are erased. Afterwards
    entry bodies are flat graphs that target code generation walks.
  }];
}

def Autodiff : Pass<"mm-autodiff", "::mm::ModelOp"> {
  let summary = "Build each stage's training step by reverse-mode differentiation";
  let description = [{
    For every `mm.stage`, clones its loss entry into `@train_<stage>`, which
    returns the loss and then the gradient of the loss with respect to each
    of the stage's trainable parameters, in model declaration order.
    Gradients come from each op's `VJPOpInterface` rule, walking the entry
    backwards. Only *active* values (those a trainable parameter reaches)
    receive gradients: nothing flows back through a subgraph no trainable
    parameter feeds (LLaVA's vision tower), and through frozen layers with a
    trainable adapter below them (the LLM in LLaVA's stage 1) only
    activation gradients are built, never weight gradients. Forward values
    the backward ops read are the saved activations. Runs after
    `mm-expand-layers` (it needs flat entries) and before `mm-plan-memory`.
  }];
  let options = [
    Option<"stages", "stages", "std::string", "\"\"",
           "Comma-separated stages to build (default: all)">
  ];
}

def Fuse : Pass<"mm-fuse", "::mm::ModelOp"> {
  let summary = "Fuse matmul epilogues, gradient accumulations, attention gradients and elementwise chains";
  let description = [{
    Rewrites each flat `mm.entry` so that fewer kernels pass over memory:

    - an `mm.linear` whose only use is an activation becomes an
      `mm.fused_linear` with that `activation`; one whose only use (then) is
      an `mm.add` takes the add's other operand as its `residual`;
    - an `mm.linear_grad_input`, `mm.layer_norm_grad_input` or
      `mm.rms_norm_grad_input` whose only use is an `mm.add` (the backward's
      gradient accumulation on the residual stream) takes the add's other
      operand as its `addend`;
    - an `mm.attention_grad_query`, `mm.attention_grad_key` and
      `mm.attention_grad_value` over the same operands and attributes become
      one `mm.fused_attention_grad` (each probability computed once for the
      three gradients);
    - an `mm.attention` and the `mm.attention_stats` a training step's
      backward reads for it (the same query, key, length and attributes)
      become one `mm.fused_attention` with two results (the per-row
      log-sum-exp from the forward's own softmax);
    - every remaining tree of elementwise ops (`mm.gelu`, `mm.quick_gelu`,
      `mm.silu`, `mm.relu`, `mm.add`, `mm.mul`, `mm.activation_grad`) whose
      inner values have exactly one use becomes one `mm.fused_elementwise`.

    A value with more than one use is never folded away: in a training step
    the backward reads the forward's pre-activations, so there the producer
    stays as it is. With `report`, every decision and every refusal is a
    remark on the op (what lit tests check). Runs after `mm-autodiff` (the
    fused ops have no VJP) and before `mm-plan-memory`.
  }];
  let options = [
    Option<"report", "report", "bool", "false", "Emit a remark for each fusion and each refusal">
  ];
}

def Remat : Pass<"mm-remat", "::mm::ModelOp"> {
  let summary = "Recompute cheap activations in the backward instead of saving them";
  let description = [{
    In each training step (an `mm.entry` with `mm.stage`, built by
    `mm-autodiff`), the forward results of cheap ops that the backward reads
    (activations: `mm.gelu`, `mm.quick_gelu`, `mm.silu`, `mm.relu`; `mm.mul`;
    the norms `mm.layer_norm` and `mm.rms_norm`) are computed a second time
    just before their first backward use, and the backward reads that copy.
    The forward value then dies at its last forward use instead of living
    through the whole backward, and the arena `mm-plan-memory` lays out
    shrinks. An op is recomputed only when every operand is available to
    the backward anyway (a parameter, an entry argument, a value a backward
    op reads, or one recomputed itself): recomputing never lengthens another
    value's life. The forward ends at the op that computes the loss (the
    step's first result). `mmc compile --remat` runs it after `mm-autodiff`
    and before `mm-fuse`; with `report`, each decision is a remark.
  }];
  let options = [
    Option<"report", "report", "bool", "false", "Emit a remark for each recomputed op and each refusal">
  ];
}

def BoundRows : Pass<"mm-bound-rows", "::mm::ModelOp"> {
  let summary = "Stop the products over a padded sequence at its real length";
  let description = [{
    In an `mm.entry` whose attention over the sequence (`[1, S, X]` tensors)
    is bounded by one scalar `length` argument, the rows at and past that
    length are padding: no op of the sequence mixes rows and attention reads
    no key past the length, so those rows never reach a real row or the
    loss, and their gradients are zero. The pass marks `mm.linear`,
    `mm.fused_linear`, `mm.linear_grad_input`, `mm.linear_grad_weight`,
    `mm.cross_entropy` and `mm.cross_entropy_grad` over the sequence with
    `mm.rows` (the length argument's index): their kernels compute the first
    `length` rows (products write zeros after them), sum the weight gradient
    over those rows only, and count rows past the length as ignored by the
    loss. A returned sequence (logits) or a prefill's cache rows then hold
    zeros past the length. An entry qualifies only when every op that reads
    the sequence (the `[1, S, X]` values joined to that attention through
    row-wise ops) keeps rows apart: row-wise ops, cache updates, attention
    bounded by that length over S queries and keys without a position bias,
    sums over the rows of gradients; otherwise it is left as it is. With
    `report`, each marked op and each refusal is a remark. Runs after
    `mm-fuse`, before `mm-plan-memory`; `mmc compile --no-fuse` leaves it out.
  }];
  let options = [
    Option<"report", "report", "bool", "false", "Emit a remark for each bounded op and each refusal">
  ];
}

def PlanMemory : Pass<"mm-plan-memory", "::mm::ModelOp"> {
  let summary = "Assign every intermediate tensor an offset in one arena per entry";
  let description = [{
    Walks each `mm.entry` in program order, computes each value's last use,
    and places every op result that needs storage (everything but
    `mm.weight`) in a per-entry arena with first-fit reuse of freed ranges,
    except what the entry returns: an op whose result is returned writes it
    straight into the caller's result buffer (`mm.result = i`; a training
    step's gradients never occupy the arena nor get copied out of it).
    Writes `mm.offset` (bytes) on each placed op, and `mm.workspace_bytes`
    and `mm.activation_bytes` (the most bytes live at once: what `mmc
    inspect` reports as a stage's activations) on the entry. Must run after
    `mm-expand-layers` (it expects flat bodies).
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", "64", "Byte alignment of each buffer">
  ];
}

#endif // MM_COMPILER_PASSES_TD
