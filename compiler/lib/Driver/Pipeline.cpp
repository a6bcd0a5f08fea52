//===- Pipeline.cpp - parsing and the compile pipeline ----------------------===//
#include "mm/Compiler/Driver.h"
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Diagnostics.h"
#include "mlir/IR/DialectRegistry.h"
#include "mlir/Parser/Parser.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/SourceMgr.h"

using namespace mlir;

namespace mm {

void registerMMDialects(DialectRegistry &registry) { registry.insert<MMDialect>(); }

OwningOpRef<ModuleOp> parseModelFile(const std::string &path, MLIRContext &ctx, ModelOp &model) {
  model = nullptr;
  if (auto buf = llvm::MemoryBuffer::getFile(path); !buf) {
    llvm::errs() << "mmc: error: cannot read model file '" << path << "': " << buf.getError().message()
                 << "\n";
    return nullptr;
  }
  // Parsing verifies; the handler in the caller's context prints
  // diagnostics with file:line:col.
  OwningOpRef<ModuleOp> module = parseSourceFile<ModuleOp>(path, &ctx);
  if (!module)
    return nullptr;
  auto models = llvm::to_vector(module->getOps<ModelOp>());
  if (models.size() != 1) {
    emitError(module->getLoc()) << "expected exactly one mm.model in " << path << ", found "
                                << models.size();
    return nullptr;
  }
  model = models.front();
  return module;
}

void buildCompilePipeline(OpPassManager &pm, bool fuse, bool remat) {
  OpPassManager &modelPm = pm.nest<ModelOp>();
  // Layers first: memory planning and code generation expect flat entry
  // bodies with every parameter at the top level.
  modelPm.addPass(createExpandLayers());
  // Autodiff on flat entries, so each stage's step sees every op of its loss.
  modelPm.addPass(createAutodiff());
  // Recomputation on the finished training steps, before fusion: a forward
  // activation the backward no longer reads has one use left, which fusion
  // can then fold into its producer.
  if (remat)
    modelPm.addPass(createRemat());
  // Fusion after autodiff (fused ops have no VJP rule), on the training
  // steps as on the forward entries; before planning, which places the
  // fused ops' results.
  if (fuse)
    modelPm.addPass(createFuse());
  // Products and losses of training steps stop at the sequence's length;
  // it reads the final ops (fused or not). Part of the optimised path:
  // --no-fuse computes every row.
  if (fuse)
    modelPm.addPass(createBoundRows());
  // Planning last: it reads the final op order of each entry.
  modelPm.addPass(createPlanMemory());
}

} // namespace mm
