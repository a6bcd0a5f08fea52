//===- Driver.h - what the mmc tool does ------------------------*- C++ -*-===//
#ifndef MM_COMPILER_DRIVER_H
#define MM_COMPILER_DRIVER_H

#include "mm/Dialect/MMDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/raw_ostream.h"
#include <string>

namespace mlir {
class OpPassManager;
} // namespace mlir

namespace mm {

/// Registers the dialects `mmc` and `mmc-opt` read.
void registerMMDialects(mlir::DialectRegistry &registry);

/// Parses and verifies a model file; diagnostics carry file:line:col.
/// Returns the one mm.model inside, or null after reporting why.
mlir::OwningOpRef<mlir::ModuleOp> parseModelFile(const std::string &path, mlir::MLIRContext &ctx,
                                                  ModelOp &model);

/// The compilation pipeline: every ordering constraint is commented where
/// the passes are added. FUSE = false leaves out mm-fuse (`mmc compile
/// --no-fuse`): every op keeps its own kernel. REMAT adds mm-remat (`mmc
/// compile --remat`): training steps recompute cheap activations in the
/// backward instead of keeping them.
void buildCompilePipeline(mlir::OpPassManager &pm, bool fuse = true, bool remat = false);

/// The manifest a compiled library carries (and `mmc inspect` prints).
/// `model` may be before or after the pipeline; workspace sizes appear once
/// memory is planned. FUSE and REMAT record the pipeline's options.
llvm::json::Object buildManifest(ModelOp model, llvm::StringRef target, bool fuse = true, bool remat = false);

struct CompileOptions {
  std::string target = "cpu"; // cpu | cuda
  std::string output;         // MODEL.so
  std::string emit;           // "" (library) | mlir | cpp | cuda
  std::string cudaArch = "sm_90";
  bool keepSource = false;
  bool verbose = false;
  bool fuse = true; // --no-fuse: the unfused path, one kernel per op
  bool remat = false; // --remat: recompute cheap activations in the backward
};

/// Runs the pipeline, generates code and builds the library. Returns 0 or
/// an exit code after reporting the error.
int compileModel(const std::string &modelPath, const CompileOptions &options);

/// `mmc inspect FILE [--json] [--remat]` for a .mlir or a compiled .so
/// (REMAT: plan a .mlir's memory as `mmc compile --remat` would).
int inspectModel(const std::string &path, bool json, llvm::raw_ostream &os, bool remat = false);

} // namespace mm

#endif // MM_COMPILER_DRIVER_H
