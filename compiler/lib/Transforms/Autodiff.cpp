//===- Autodiff.cpp - reverse-mode training steps for each stage ------------===//
#include "mm/Compiler/Passes.h"
#include "mm/Dialect/ModelQueries.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/StringSet.h"

namespace mm {
#define GEN_PASS_DEF_AUTODIFF
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

bool isFloat(Value v) { return isa<FloatType>(cast<RankedTensorType>(v.getType()).getElementType()); }

struct AutodiffPass : public mm::impl::AutodiffBase<AutodiffPass> {
  using AutodiffBase::AutodiffBase;

  void runOnOperation() override {
    ModelOp model = getOperation();
    if (!model.getBody().getOps<LayerOp>().empty()) {
      model.emitOpError("mm-autodiff needs expanded layers; run mm-expand-layers first");
      return signalPassFailure();
    }
    llvm::StringSet<> only;
    SmallVector<StringRef> names;
    StringRef(stages).split(names, ',', -1, /*KeepEmpty=*/false);
    for (StringRef s : names)
      only.insert(s.trim());
    for (StageOp stage : llvm::to_vector(model.getBody().getOps<StageOp>())) {
      if (!only.empty() && !only.contains(stage.getSymName()))
        continue;
      if (failed(buildTrainingStep(model, stage)))
        return signalPassFailure();
    }
  }

  LogicalResult buildTrainingStep(ModelOp model, StageOp stage) {
    auto lossEntry = cast<EntryOp>(SymbolTable::lookupSymbolIn(model, stage.getLossAttr()));
    llvm::StringSet<> trainableGroups;
    for (Attribute a : stage.getTrainable())
      trainableGroups.insert(cast<FlatSymbolRefAttr>(a).getValue());
    // Trainable parameters in declaration order: the order of the gradients.
    SmallVector<ParamOp> trainable;
    for (ParamOp p : model.getBody().getOps<ParamOp>())
      if (p.getGroup() && trainableGroups.contains(*p.getGroup()))
        trainable.push_back(p);

    // The training step starts as a copy of the loss entry.
    OpBuilder builder(model.getContext());
    builder.setInsertionPointAfter(lossEntry);
    std::string name = ("train_" + stage.getSymName()).str();
    if (SymbolTable::lookupSymbolIn(model, name))
      return stage.emitOpError("cannot build @") << name << ": the model already has that symbol";
    auto step = cast<EntryOp>(builder.clone(*lossEntry));
    step.setSymName(name);
    step->setAttr("mm.stage", builder.getStringAttr(stage.getSymName()));
    Block &body = step.getBody().front();
    auto ret = cast<ReturnOp>(body.getTerminator());
    Value loss = ret.getOperand(0);

    // Active values: those a trainable parameter reaches.
    llvm::StringSet<> trainableNames;
    for (ParamOp p : trainable) trainableNames.insert(p.getSymName());
    DenseSet<Value> active;
    for (Operation &op : body) {
      bool isActive = false;
      if (auto w = dyn_cast<WeightOp>(op))
        isActive = trainableNames.contains(w.getParam());
      else
        isActive = llvm::any_of(op.getOperands(), [&](Value v) { return active.contains(v); });
      if (isActive)
        for (Value r : op.getResults())
          if (isFloat(r)) active.insert(r);
    }
    if (!active.contains(loss))
      return stage.emitOpError("no trainable parameter of stage @") << stage.getSymName()
             << " reaches its loss";

    // Walk backwards, accumulating gradients.
    builder.setInsertionPoint(ret);
    DenseMap<Value, Value> grads;
    auto accumulate = [&](Value v, Value g) {
      auto [it, inserted] = grads.try_emplace(v, g);
      if (!inserted)
        it->second = builder.create<AddOp>(g.getLoc(), it->second, g);
    };
    accumulate(loss, builder.create<ConstantOp>(ret.getLoc(), loss.getType(), builder.getF64FloatAttr(1.0)));
    SmallVector<Operation *> forward;
    for (Operation &op : body)
      if (&op != ret.getOperation()) forward.push_back(&op);
    for (Operation *op : llvm::reverse(forward)) {
      if (op->getNumResults() != 1 || !grads.count(op->getResult(0)))
        continue;
      if (isa<WeightOp>(op))
        continue;
      auto vjp = dyn_cast<VJPOpInterface>(op);
      if (!vjp)
        return op->emitOpError("has no VJP rule; mm-autodiff cannot differentiate through it");
      SmallVector<bool> needed;
      for (Value v : op->getOperands()) needed.push_back(active.contains(v));
      SmallVector<Value> operandGrads;
      if (failed(vjp.buildVJP(builder, grads.lookup(op->getResult(0)), needed, operandGrads)))
        return failure();
      for (auto [v, g] : llvm::zip(op->getOperands(), operandGrads))
        if (g) accumulate(v, g);
    }

    // Results: the loss, then each trainable parameter's gradient (summed
    // over every read of it; zeros if the loss does not reach it).
    llvm::StringMap<Value> paramGrad;
    for (Operation *op : forward)
      if (auto w = dyn_cast<WeightOp>(op))
        if (Value g = grads.lookup(w.getResult())) {
          Value &slot = paramGrad[w.getParam()];
          slot = slot ? builder.create<AddOp>(w.getLoc(), slot, g).getResult() : g;
        }
    // A trainable group the loss does not reach at all gets zero gradients:
    // almost always a stage that names the wrong loss, or a loss that reads a
    // frozen part's cached output (mmrun refuses to train what it caches).
    // Parts of a group may go unread by design (LLaVA reads the tower's
    // penultimate layer, so its last layer is never reached).
    llvm::StringMap<bool> groupReached;
    for (ParamOp p : trainable)
      groupReached[*p.getGroup()] |= paramGrad.count(p.getSymName()) > 0;
    for (Attribute a : stage.getTrainable()) {
      StringRef group = cast<FlatSymbolRefAttr>(a).getValue();
      if (auto it = groupReached.find(group); it != groupReached.end() && !it->second)
        stage.emitWarning("trains group @") << group << ", but its loss @" << stage.getLoss()
                                             << " reaches none of its parameters: their gradients are zero";
    }
    SmallVector<Value> results{loss};
    SmallVector<Type> resultTypes{loss.getType()};
    SmallVector<Attribute> resultAttrs{builder.getDictionaryAttr(
        builder.getNamedAttr("mm.name", builder.getStringAttr("loss")))};
    for (ParamOp p : trainable) {
      Value g = paramGrad.lookup(p.getSymName());
      if (!g)
        g = builder.create<ConstantOp>(p.getLoc(), p.getType(), builder.getF64FloatAttr(0.0));
      results.push_back(g);
      resultTypes.push_back(p.getType());
      resultAttrs.push_back(builder.getDictionaryAttr(
          builder.getNamedAttr("mm.name", builder.getStringAttr("grad:" + p.getSymName()))));
    }
    builder.create<ReturnOp>(ret.getLoc(), results);
    ret.erase();
    step.setFunctionType(builder.getFunctionType(step.getArgumentTypes(), resultTypes));
    step.setResAttrsAttr(builder.getArrayAttr(resultAttrs));

    // Drop what nothing reads (forward values only the discarded results used).
    for (Operation &op : llvm::make_early_inc_range(llvm::reverse(body)))
      if (!isa<ReturnOp>(op) && op.use_empty() && isPure(&op))
        op.erase();
    return success();
  }
};

} // namespace
