//===- MMDialect.h - the mm dialect -----------------------------*- C++ -*-===//
#ifndef MM_DIALECT_MMDIALECT_H
#define MM_DIALECT_MMDIALECT_H

#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/IR/RegionKindInterface.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/ControlFlowInterfaces.h"
#include "mlir/Interfaces/FunctionInterfaces.h"
#include "mlir/Interfaces/InferTypeOpInterface.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "mm/Dialect/MMDialect.h.inc"
#include "mm/Dialect/MMInterfaces.h.inc"
#include "mm/Dialect/MMEnums.h.inc"
#define GET_ATTRDEF_CLASSES
#include "mm/Dialect/MMAttrs.h.inc"
#define GET_OP_CLASSES
#include "mm/Dialect/MMOps.h.inc"

namespace mm {
/// Whether OP computes each output element from the same element of its
/// operands alone, so that `mm.fused_elementwise` may hold it.
bool isFusibleElementwise(mlir::Operation *op);
/// The activation OP computes (mm.gelu, mm.gelu_tanh, mm.quick_gelu, mm.silu, mm.relu),
/// or none for any other op.
std::optional<ActivationKind> activationKindOf(mlir::Operation *op);
/// Whether mm.attention's position_bias buckets key offsets both ways under
/// MASK (bidirectional and padding masks) or only keys before the query (causal).
bool positionBiasIsBidirectional(MaskKind mask);
} // namespace mm

#endif // MM_DIALECT_MMDIALECT_H
