//===- mmc-opt.cpp - runs mm passes on .mlir files (for lit) ----------------===//
#include "mm/Compiler/Driver.h"
#include "mm/Compiler/Passes.h"

#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mm::registerMMPasses();
  mlir::DialectRegistry registry;
  mm::registerMMDialects(registry);
  return mlir::asMainReturnCode(mlir::MlirOptMain(argc, argv, "mm optimizer driver\n", registry));
}
