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

def PlanMemory : Pass<"mm-plan-memory", "::mm::ModelOp"> {
  let summary = "Assign every intermediate tensor an offset in one arena per entry";
  let description = [{
    Walks each `mm.entry` in program order, computes each value's last use,
    and places every op result that needs storage (everything but
    `mm.weight`) in a per-entry arena with first-fit reuse of freed ranges.
    Writes `mm.offset` (bytes) on each such op and `mm.workspace_bytes` on
    the entry. Must run after `mm-expand-layers` (it expects flat bodies).
  }];
  let options = [
    Option<"alignment", "alignment", "int64_t", "64", "Byte alignment of each buffer">
  ];
}

#endif // MM_COMPILER_PASSES_TD
