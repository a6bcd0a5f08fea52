//===- Passes.h - mm compiler passes ----------------------------*- C++ -*-===//
#ifndef MM_COMPILER_PASSES_H
#define MM_COMPILER_PASSES_H

#include "mm/Dialect/MMDialect.h"
#include "mlir/Pass/Pass.h"

namespace mm {

#define GEN_PASS_DECL
#include "mm/Compiler/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "mm/Compiler/Passes.h.inc"

/// Attribute names the passes leave for target code generation.
inline constexpr const char *kOffsetAttr = "mm.offset";
inline constexpr const char *kWorkspaceAttr = "mm.workspace_bytes";
/// On an op whose result the entry returns: which result buffer it writes.
inline constexpr const char *kResultAttr = "mm.result";
/// On an op with several results, per result: its arena offset (-1 where the
/// entry returns it) and which result buffer it writes (-1 where it does not).
inline constexpr const char *kOffsetsAttr = "mm.offsets";
inline constexpr const char *kResultsAttr = "mm.results";
/// On a cache read whose result is its cache's own storage (no copy, no
/// arena space): nothing writes that layer of the cache while it is read.
inline constexpr const char *kViewAttr = "mm.view";
/// On a product or loss over a padded sequence (mm-bound-rows): the index of the
/// entry argument holding the sequence's real length; rows at and past it are
/// padding the kernel skips.
inline constexpr const char *kRowsAttr = "mm.rows";
/// The most bytes of intermediate values (the entry's results excluded) live at once.
inline constexpr const char *kActivationAttr = "mm.activation_bytes";

} // namespace mm

#endif // MM_COMPILER_PASSES_H
