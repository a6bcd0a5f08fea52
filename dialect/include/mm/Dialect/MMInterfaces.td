//===- MMInterfaces.td - mm op interfaces -------------------*- tablegen -*-===//
#ifndef MM_INTERFACES_TD
#define MM_INTERFACES_TD

include "mlir/IR/OpBase.td"

def MM_VJPOpInterface : OpInterface<"VJPOpInterface"> {
  let description = [{
    The reverse-mode rule of a differentiable op: given the gradient of the
    loss with respect to the op's (single) result, build the gradients with
    respect to the operands that `needed` marks, using only ops of the mm
    dialect. `mm-autodiff` calls it on each op of an entry in reverse order.
    Operands not needed get a null gradient and cost nothing, which is how
    frozen weights get no weight-gradient matmul.
  }];
  let cppNamespace = "::mm";
  let methods = [
    InterfaceMethod<[{
        Appends one gradient per operand to `operandGrads` (null where
        `needed` is false). Fails, with a diagnostic, if a needed operand
        has no gradient (integer ids, pixels of a patch embedding).
      }],
      "::llvm::LogicalResult", "buildVJP",
      (ins "::mlir::OpBuilder &":$builder, "::mlir::Value":$resultGrad,
           "::llvm::ArrayRef<bool>":$needed,
           "::llvm::SmallVectorImpl<::mlir::Value> &":$operandGrads)>
  ];
}

#endif // MM_INTERFACES_TD
