//===- ModelQueries.h - facts about a whole mm.model ------------*- C++ -*-===//
//
// Questions the compiler and `mmc inspect` ask of a model: every parameter
// with its full checkpoint name (layer parameters instantiated), and the
// stages' trainable sets.
//
//===----------------------------------------------------------------------===//
#ifndef MM_DIALECT_MODELQUERIES_H
#define MM_DIALECT_MODELQUERIES_H

#include "mm/Dialect/MMDialect.h"
#include <string>
#include <vector>

namespace mm {

struct ParameterInfo {
  std::string name;             // full Hugging Face checkpoint name
  mlir::RankedTensorType type;
  std::string group;
  InitAttr init;
};

/// Every parameter of `model` in declaration order; a layer's parameters are
/// listed for each instance 0..count-1 at the place the layer is declared.
std::vector<ParameterInfo> collectParameters(ModelOp model);

/// Total number of scalar parameters.
int64_t countParameters(ModelOp model);

} // namespace mm

#endif // MM_DIALECT_MODELQUERIES_H
