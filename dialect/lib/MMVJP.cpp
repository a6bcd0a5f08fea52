//===- MMVJP.cpp - reverse-mode rules (VJPOpInterface) of the mm ops --------===//
//
// One rule per differentiable op. Each builds, from dy (the gradient of the
// loss with respect to the op's result), the gradients of the operands that
// `needed` marks, and leaves the others null. The backward ops are defined in
// MMOps.td; their kernels sit beside the forward ones in KernelBuilder.cpp.
// Every rule is checked against finite differences in
// tests/unit/compiler/GradientsTest.cpp.
//
//===----------------------------------------------------------------------===//
#include "mm/Dialect/MMDialect.h"

#include "mlir/IR/Builders.h"

using namespace mlir;
using namespace mm;

namespace {

/// Fails with a diagnostic when a gradient is asked of an operand that has none.
LogicalResult noGradient(Operation *op, ArrayRef<bool> needed, unsigned index, StringRef what) {
  if (index < needed.size() && needed[index])
    return op->emitOpError("cannot differentiate with respect to its ") << what;
  return success();
}

/// Appends `value` if operand `index` is needed, else null.
void put(SmallVectorImpl<Value> &grads, ArrayRef<bool> needed, unsigned index,
         llvm::function_ref<Value()> build) {
  grads.push_back(index < needed.size() && needed[index] ? build() : Value());
}

} // namespace

LogicalResult EmbeddingOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  if (failed(noGradient(*this, needed, 0, "token ids")))
    return failure();
  grads.push_back(Value());
  put(grads, needed, 1, [&] {
    return b.create<EmbeddingGradOp>(getLoc(), getTable().getType(), getIds(), dy).getResult();
  });
  return success();
}

LogicalResult LinearOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                 SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<LinearGradInputOp>(getLoc(), getInput().getType(), dy, getWeight(), /*addend=*/Value()).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<LinearGradWeightOp>(getLoc(), getWeight().getType(), dy, getInput()).getResult();
  });
  if (getBias())
    put(grads, needed, 2, [&] {
      return b.create<ReduceToOp>(getLoc(), getBias().getType(), dy).getResult();
    });
  return success();
}

LogicalResult PatchEmbedOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                     SmallVectorImpl<Value> &grads) {
  // The pixels need a gradient only behind a convolutional stem.
  put(grads, needed, 0, [&] {
    return b.create<PatchEmbedGradInputOp>(getLoc(), getPixels().getType(), dy, getWeight()).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<PatchEmbedGradWeightOp>(getLoc(), getWeight().getType(), getPixels(), dy).getResult();
  });
  return success();
}

LogicalResult Conv2dOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                 SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<Conv2dGradInputOp>(getLoc(), getInput().getType(), dy, getWeight(), getStrideAttr(),
                                       getPaddingAttr()).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<Conv2dGradWeightOp>(getLoc(), getWeight().getType(), dy, getInput(), getStrideAttr(),
                                        getPaddingAttr()).getResult();
  });
  if (getBias())
    put(grads, needed, 2, [&] { return b.create<Conv2dGradBiasOp>(getLoc(), getBias().getType(), dy).getResult(); });
  return success();
}

LogicalResult LayerNormOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<LayerNormGradInputOp>(getLoc(), getInput().getType(), dy, getInput(), getWeight(),
                                          /*addend=*/Value(), getEpsAttr()).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<LayerNormGradWeightOp>(getLoc(), getWeight().getType(), dy, getInput(), getEpsAttr())
        .getResult();
  });
  put(grads, needed, 2, [&] {
    return b.create<ReduceToOp>(getLoc(), getBias().getType(), dy).getResult();
  });
  return success();
}

LogicalResult RMSNormOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                  SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<RMSNormGradInputOp>(getLoc(), getInput().getType(), dy, getInput(), getWeight(),
                                        /*addend=*/Value(), getEpsAttr()).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<RMSNormGradWeightOp>(getLoc(), getWeight().getType(), dy, getInput(), getEpsAttr())
        .getResult();
  });
  return success();
}

static LogicalResult activationVJP(Operation *op, ActivationKind kind, OpBuilder &b, Value dy,
                                   ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<ActivationGradOp>(op->getLoc(), op->getOperand(0).getType(), dy, op->getOperand(0),
                                      ActivationKindAttr::get(b.getContext(), kind)).getResult();
  });
  return success();
}

LogicalResult GeluOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> n, SmallVectorImpl<Value> &g) {
  return activationVJP(*this, ActivationKind::Gelu, b, dy, n, g);
}
LogicalResult GeluTanhOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> n, SmallVectorImpl<Value> &g) {
  return activationVJP(*this, ActivationKind::GeluTanh, b, dy, n, g);
}
LogicalResult QuickGeluOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> n, SmallVectorImpl<Value> &g) {
  return activationVJP(*this, ActivationKind::QuickGelu, b, dy, n, g);
}
LogicalResult SiluOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> n, SmallVectorImpl<Value> &g) {
  return activationVJP(*this, ActivationKind::Silu, b, dy, n, g);
}
LogicalResult ReluOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> n, SmallVectorImpl<Value> &g) {
  return activationVJP(*this, ActivationKind::Relu, b, dy, n, g);
}

LogicalResult AddOp::buildVJP(OpBuilder &, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return dy; });
  put(grads, needed, 1, [&] { return dy; });
  return success();
}

LogicalResult MulOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return b.create<MulOp>(getLoc(), dy, getRhs()).getResult(); });
  put(grads, needed, 1, [&] { return b.create<MulOp>(getLoc(), dy, getLhs()).getResult(); });
  return success();
}

LogicalResult DivOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  // d(a/b)/da = 1/b; d(a/b)/db = -(a/b)/b.
  put(grads, needed, 0, [&] { return b.create<DivOp>(getLoc(), dy, getRhs()).getResult(); });
  put(grads, needed, 1, [&] {
    Value minusOne = b.create<ConstantOp>(getLoc(), getType(), b.getF64FloatAttr(-1.0));
    Value t = b.create<DivOp>(getLoc(), b.create<MulOp>(getLoc(), dy, getResult()), getRhs());
    return b.create<MulOp>(getLoc(), t, minusOne).getResult();
  });
  return success();
}

LogicalResult ReshapeOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                  SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return b.create<ReshapeOp>(getLoc(), getInput().getType(), dy).getResult(); });
  return success();
}

LogicalResult TransposeOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return b.create<TransposeOp>(getLoc(), getInput().getType(), dy).getResult(); });
  return success();
}

LogicalResult ReduceMaxOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<ReduceMaxGradOp>(getLoc(), getInput().getType(), getInput(), dy, getAxisAttr()).getResult();
  });
  return success();
}

LogicalResult L2NormalizeOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                      SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] {
    return b.create<L2NormalizeGradOp>(getLoc(), getInput().getType(), getInput(), dy, getEpsAttr()).getResult();
  });
  return success();
}

LogicalResult RoPEOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  // A rotation's transpose is the rotation by the opposite angle.
  put(grads, needed, 0, [&] {
    return b.create<RoPEOp>(getLoc(), dy.getType(), dy, getOffset(), getNumHeadsAttr(), getThetaAttr(),
                            b.getBoolAttr(!getInverse()))
        .getResult();
  });
  return success();
}

LogicalResult AttentionOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  // Operands: q, k, v, then the optional length and position_bias table.
  const unsigned biasIndex = getLength() ? 4 : 3;
  if (getLength() && failed(noGradient(*this, needed, 3, "run-time length")))
    return failure();
  const bool needBias = getPositionBias() && biasIndex < needed.size() && needed[biasIndex];
  auto q = cast<RankedTensorType>(getQuery().getType());
  Type lseType = RankedTensorType::get({q.getDimSize(0), (int64_t)getNumHeads(), q.getDimSize(1)},
                                       q.getElementType());
  Value lse;
  if (needBias || llvm::any_of(needed.take_front(3), [](bool n) { return n; }))
    lse = b.create<AttentionStatsOp>(getLoc(), lseType, getQuery(), getKey(), getLength(), getPositionBias(),
                                     getNumHeadsAttr(), getNumKvHeadsAttr(), getMaskAttr(), getScaleAttr(),
                                     getLayoutAttr(), getBiasMaxDistanceAttr());
  auto grad = [&](auto tag, Type type) {
    using GradOp = decltype(tag);
    return b.create<GradOp>(getLoc(), type, getQuery(), getKey(), getValue(), dy, getResult(), lse, getLength(),
                            getPositionBias(), getNumHeadsAttr(), getNumKvHeadsAttr(), getMaskAttr(),
                            getScaleAttr(), getLayoutAttr(), getBiasMaxDistanceAttr())
        .getResult();
  };
  put(grads, needed, 0, [&] { return grad(AttentionGradQueryOp(), getQuery().getType()); });
  put(grads, needed, 1, [&] { return grad(AttentionGradKeyOp(), getKey().getType()); });
  put(grads, needed, 2, [&] { return grad(AttentionGradValueOp(), getValue().getType()); });
  if (getLength())
    grads.push_back(Value());
  if (getPositionBias())
    put(grads, needed, biasIndex,
        [&] { return grad(AttentionGradPositionBiasOp(), getPositionBias().getType()); });
  return success();
}

LogicalResult ConcatOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  int64_t na = cast<RankedTensorType>(getLhs().getType()).getDimSize(getAxis());
  put(grads, needed, 0, [&] {
    return b.create<SliceOp>(getLoc(), getLhs().getType(), dy, /*offset=*/Value(), getAxisAttr(), b.getI64IntegerAttr(0)).getResult();
  });
  put(grads, needed, 1, [&] {
    return b.create<SliceOp>(getLoc(), getRhs().getType(), dy, /*offset=*/Value(), getAxisAttr(), b.getI64IntegerAttr(na)).getResult();
  });
  return success();
}

LogicalResult SliceOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed, SmallVectorImpl<Value> &grads) {
  if (getOffset() && !needed.empty() && needed[0])
    return emitOpError("has a run-time offset and so no gradient");
  put(grads, needed, 0, [&] {
    return b.create<PadOp>(getLoc(), getInput().getType(), dy, getAxisAttr(), getStartAttr()).getResult();
  });
  return success();
}

LogicalResult BroadcastOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return b.create<ReduceToOp>(getLoc(), getInput().getType(), dy).getResult(); });
  return success();
}

LogicalResult MergeImageFeaturesOp::buildVJP(OpBuilder &b, Value dy, ArrayRef<bool> needed,
                                             SmallVectorImpl<Value> &grads) {
  if (failed(noGradient(*this, needed, 1, "token ids")))
    return failure();
  // Text positions pass dy through; image positions route it to the features.
  put(grads, needed, 0, [&] {
    Value zeros = b.create<ConstantOp>(getLoc(), getFeatures().getType(), b.getF64FloatAttr(0.0));
    return b.create<MergeImageFeaturesOp>(getLoc(), getEmbeds().getType(), dy, getIds(), zeros,
                                          getImageTokenIndexAttr()).getResult();
  });
  grads.push_back(Value());
  put(grads, needed, 2, [&] {
    return b.create<GatherImageFeaturesOp>(getLoc(), getFeatures().getType(), dy, getIds(),
                                           getImageTokenIndexAttr()).getResult();
  });
  return success();
}

LogicalResult CrossEntropyOp::buildVJP(OpBuilder &b, Value dloss, ArrayRef<bool> needed,
                                       SmallVectorImpl<Value> &grads) {
  if (failed(noGradient(*this, needed, 1, "targets")))
    return failure();
  put(grads, needed, 0, [&] {
    return b.create<CrossEntropyGradOp>(getLoc(), getLogits().getType(), getLogits(), getTargets(), dloss,
                                        getIgnoreIndexAttr(), getMeanAttr()).getResult();
  });
  grads.push_back(Value());
  return success();
}

LogicalResult ReduceSumOp::buildVJP(OpBuilder &b, Value dloss, ArrayRef<bool> needed,
                                    SmallVectorImpl<Value> &grads) {
  put(grads, needed, 0, [&] { return b.create<FillOp>(getLoc(), getInput().getType(), dloss).getResult(); });
  return success();
}
