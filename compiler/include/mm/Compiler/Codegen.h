//===- Codegen.h - target code generation for a planned model ---*- C++ -*-===//
//
// `buildProgram` turns a model whose layers are expanded and whose memory is
// planned into kernels plus, per entry, the sequence of kernel calls with
// their buffers. `emitCpp` and `emitCuda` print that program as one source
// file for the host compiler or for nvcc, exporting the C ABI of
// runtime/include/mm/abi.h.
//
//===----------------------------------------------------------------------===//
#ifndef MM_COMPILER_CODEGEN_H
#define MM_COMPILER_CODEGEN_H

#include "mm/Compiler/Kernels.h"
#include "mm/Dialect/MMDialect.h"

namespace mm {

/// Where a tensor lives while an entry runs.
struct Buffer {
  enum Kind { Param, Arg, Arena, Result } kind;
  int64_t index; // parameter index, argument index, arena byte offset, or result index
  std::string ctype; // element type in C: float, double, int32_t
  int64_t byteOffset = 0; // a view into a parameter, argument or result buffer
};

struct KernelCall {
  size_t kernel; // index into Program::kernels
  std::vector<Buffer> operands;
  Buffer result;
  std::vector<Buffer> moreResults; // results 1.. of an op with several
};

struct ResultCopy {
  int64_t result;
  Buffer source;
  int64_t bytes;
};

struct EntryProgram {
  std::string name;
  std::vector<KernelCall> calls;
  std::vector<ResultCopy> copies;
  int64_t workspaceBytes = 0;
  int64_t numArgs = 0, numResults = 0;
};

struct Program {
  std::vector<Kernel> kernels; // deduplicated
  std::vector<EntryProgram> entries;
  int64_t numParams = 0;
};

/// The C type of a tensor type's elements.
std::string elementCType(mlir::Type tensorType);

/// Expects `mm-expand-layers` and `mm-plan-memory` to have run.
mlir::FailureOr<Program> buildProgram(ModelOp model);

/// The strings a compiled library carries besides code.
struct EmbeddedData {
  std::string manifestJson;
  std::string tokenizerJson;
};

std::string emitCpp(const Program &program, const EmbeddedData &data);
std::string emitCuda(const Program &program, const EmbeddedData &data);

/// A C string literal for `text`, split over lines.
std::string cStringLiteral(llvm::StringRef text);

} // namespace mm

#endif // MM_COMPILER_CODEGEN_H
