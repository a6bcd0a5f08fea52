//===- MMDialect.td - the mm dialect ------------------------*- tablegen -*-===//
#ifndef MM_DIALECT_TD
#define MM_DIALECT_TD

include "mlir/IR/OpBase.td"

def MM_Dialect : Dialect {
  let name = "mm";
  let summary = "Multimodal model graphs: parameters, groups, stages and tensor ops";
  let description = [{
    The `mm` dialect declares a multimodal LLM (LLaVA, BLIP-2) as a compiler
    input. An `mm.model` holds the model's parameter groups, its parameters
    (named as in Hugging Face checkpoints), repeated layers declared once and
    instantiated N times, the training stages with the groups each one
    trains, and entry points whose bodies are graphs of tensor ops on
    statically shaped ranked tensors.
  }];
  let cppNamespace = "::mm";
  let useDefaultAttributePrinterParser = 1;
  let extraClassDeclaration = [{
    void registerAttributes();
  }];
}

class MM_Op<string mnemonic, list<Trait> traits = []> :
    Op<MM_Dialect, mnemonic, traits>;

#endif // MM_DIALECT_TD
