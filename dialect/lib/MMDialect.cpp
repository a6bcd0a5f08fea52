//===- MMDialect.cpp - the mm dialect ---------------------------------------===//
#include "mm/Dialect/MMDialect.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/DialectImplementation.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mm;

#include "mm/Dialect/MMDialect.cpp.inc"
#include "mm/Dialect/MMInterfaces.cpp.inc"

void MMDialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "mm/Dialect/MMOps.cpp.inc"
      >();
  registerAttributes();
}
