//===- ExpandLayers.cpp - instantiate repeated layers -----------------------===//
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace mm {
#define GEN_PASS_DEF_EXPANDLAYERS
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

struct ExpandLayersPass : public mm::impl::ExpandLayersBase<ExpandLayersPass> {
  void runOnOperation() override {
    ModelOp model = getOperation();
    MLIRContext *ctx = &getContext();

    // 1. Inline every application, instance by instance.
    SmallVector<ApplyLayerOp> applications;
    model.walk([&](ApplyLayerOp op) { applications.push_back(op); });
    for (ApplyLayerOp apply : applications) {
      auto layer = dyn_cast_or_null<LayerOp>(SymbolTable::lookupSymbolIn(model, apply.getLayerAttr()));
      if (!layer) {
        apply.emitOpError("names no layer");
        return signalPassFailure();
      }
      OpBuilder builder(apply);
      SmallVector<Value> current(apply.getInputs());
      for (int64_t i = apply.getBeginAttr().getInt(), e = apply.getEndAttr().getInt(); i < e; ++i) {
        Block &body = layer.getBody().front();
        IRMapping map;
        for (auto [arg, value] : llvm::zip(body.getArguments(), current))
          map.map(arg, value);
        for (Operation &op : body) {
          if (isa<ParamOp>(op))
            continue;
          if (auto yield = dyn_cast<YieldOp>(op)) {
            // Results replace the chained arguments; context stays. A layer
            // may yield more values than it takes (one instance only: the
            // verifier refuses to chain it).
            if (current.size() < yield.getNumOperands())
              current.resize(yield.getNumOperands());
            for (auto [j, v] : llvm::enumerate(yield.getOperands()))
              current[j] = map.lookup(v);
            continue;
          }
          Operation *clone = builder.clone(op, map);
          if (auto weight = dyn_cast<WeightOp>(clone))
            weight.setParamAttr(FlatSymbolRefAttr::get(
                ctx, layer.instanceParamName(i, weight.getParam())));
          // KV-cache ops inside a layer count layers from the instance.
          if (isa<CacheUpdateOp, CacheReadOp>(clone)) {
            auto attr = clone->getAttrOfType<IntegerAttr>("layer");
            clone->setAttr("layer", builder.getI64IntegerAttr(attr.getInt() + i));
          }
        }
      }
      apply.replaceAllUsesWith(ValueRange(current).take_front(apply.getNumResults()));
      apply.erase();
    }

    // 2. Every instance's parameters become top-level parameters, at the
    // layer's place so declaration order (and checkpoint order) is kept.
    for (LayerOp layer : llvm::make_early_inc_range(model.getBody().getOps<LayerOp>())) {
      OpBuilder builder(layer);
      for (int64_t i = 0, e = static_cast<int64_t>(layer.getCount()); i < e; ++i)
        for (ParamOp param : layer.getBody().getOps<ParamOp>()) {
          auto copy = cast<ParamOp>(builder.clone(*param));
          copy.setSymName(layer.instanceParamName(i, param.getSymName()));
        }
      layer.erase();
    }
  }
};

} // namespace
