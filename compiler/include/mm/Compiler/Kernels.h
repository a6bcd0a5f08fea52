//===- Kernels.h - target-neutral kernels built from mm ops -----*- C++ -*-===//
//
// Target code generation works in two steps. First, each tensor op of a flat
// entry body becomes a `Kernel`: a parallel loop over `domain` independent
// work items whose body is written once, in the C++ subset that both host
// C++ and CUDA device code accept, with every shape baked in as a constant.
// Second, a backend (EmitCpp.cpp, EmitCuda.cpp) wraps the kernels: a plain
// loop on the CPU, a grid-stride `__global__` function on CUDA.
//
//===----------------------------------------------------------------------===//
#ifndef MM_COMPILER_KERNELS_H
#define MM_COMPILER_KERNELS_H

#include "mlir/IR/Operation.h"
#include "mlir/Support/LogicalResult.h"
#include <string>
#include <vector>

namespace mm {

struct KernelArg {
  std::string type; // "const float *", "float *", "const int32_t *"
  std::string name;
};

struct Kernel {
  std::string name;              // unique per distinct `key`
  std::string key;               // op, shapes and attributes: equal keys share code
  std::vector<KernelArg> args;   // operands in order, then the result `y`
  int64_t domain = 0;            // number of work items; the body sees `i`
  int64_t elements = 0;          // elements the items read and write in all: the
                                 // CPU splits the loop over its cores only when
                                 // that outweighs starting the threads
  std::string body;              // statements for work item `i` (int64_t), over `T`
  std::string hostBody;          // CPU only, if set: the whole function body instead
                                 // of the loop over `body` (GEMM calls, reductions)
  std::string elementType;       // what `T` is: float or double
  std::string comment;           // shape legend, printed above the kernel
};

/// Builds the kernel that computes `op` (an mm tensor op with static
/// shapes). Emits a diagnostic and fails for ops with no kernel.
mlir::FailureOr<Kernel> buildKernel(mlir::Operation *op);

/// Helpers every kernel body may call; `MM_FN` is the backend's function
/// qualifier and `MM_SIMD_SUM(acc)` its reduction-loop hint.
const char *kernelPrelude();

} // namespace mm

#endif // MM_COMPILER_KERNELS_H
