//===- Remat.cpp - recompute cheap activations in the backward --------------===//
//
// A training step's forward values live until the backward op that reads
// them, so at the turn from forward to backward every saved activation is in
// the arena at once. For a cheap op (an activation, a product, a norm) whose
// operands the backward keeps anyway, computing its result a second time
// right before the backward needs it costs a pass over memory and frees the
// forward copy at its last forward use.
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include <functional>

namespace mm {
#define GEN_PASS_DEF_REMAT
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

bool isCheap(Operation *op) {
  return isa<GeluOp, GeluTanhOp, QuickGeluOp, SiluOp, ReluOp, MulOp, LayerNormOp, RMSNormOp>(op);
}

struct RematPass : public mm::impl::RematBase<RematPass> {
  using RematBase::RematBase;

  void runOnOperation() override {
    for (EntryOp entry : getOperation().getBody().getOps<EntryOp>())
      if (entry->hasAttr("mm.stage")) rematerialize(entry);
  }

  void rematerialize(EntryOp entry) {
    Block &block = entry.getBody().front();
    auto ret = cast<ReturnOp>(block.getTerminator());
    Operation *lossOp = ret.getNumOperands() ? ret.getOperand(0).getDefiningOp() : nullptr;
    if (!lossOp) return;
    // Program order; everything after the loss is the backward.
    DenseMap<Operation *, int64_t> index;
    int64_t n = 0;
    for (Operation &op : block) index[&op] = n++;
    const int64_t turn = index[lossOp];
    // A use by a backward op (the step's return is not one: it only hands the loss out).
    auto byBackward = [&](Operation *user) { return user != ret && index.lookup(user) > turn; };

    DenseMap<Value, Operation *> copyOf; // forward value -> its recomputation
    auto available = [&](Value v) {
      if (isa<BlockArgument>(v) || isa<WeightOp>(v.getDefiningOp()) || copyOf.count(v)) return true;
      return llvm::any_of(v.getUsers(), byBackward);
    };
    // Moves COPY (and, first, the copies it reads) before POINT where it is not already.
    std::function<void(Operation *, Operation *)> hoist = [&](Operation *copy, Operation *point) {
      if (copy->isBeforeInBlock(point)) return;
      copy->moveBefore(point);
      for (Value v : copy->getOperands())
        if (Operation *c = copyOf.lookup(v)) hoist(c, copy);
    };

    OpBuilder b(entry.getContext());
    for (Operation &op : llvm::make_early_inc_range(block)) {
      if (index.lookup(&op) >= turn) break;
      if (!isCheap(&op)) continue;
      Value r = op.getResult(0);
      SmallVector<OpOperand *> backwardUses;
      for (OpOperand &use : r.getUses())
        if (byBackward(use.getOwner())) backwardUses.push_back(&use);
      if (backwardUses.empty()) continue;
      if (auto missing = llvm::find_if(op.getOperands(), [&](Value v) { return !available(v); });
          missing != op.getOperands().end()) {
        if (report)
          op.emitRemark("kept for the backward: operand #")
              << (missing - op.getOperands().begin()) << " is not otherwise saved for it";
        continue;
      }
      Operation *first = backwardUses.front()->getOwner();
      for (OpOperand *u : backwardUses)
        if (u->getOwner()->isBeforeInBlock(first)) first = u->getOwner();
      b.setInsertionPoint(first);
      IRMapping map;
      for (Value v : op.getOperands())
        if (Operation *c = copyOf.lookup(v)) map.map(v, c->getResult(0));
      Operation *copy = b.clone(op, map);
      for (Value v : op.getOperands())
        if (Operation *c = copyOf.lookup(v)) hoist(c, copy);
      copyOf[r] = copy;
      index[copy] = index.lookup(first); // in the backward, for later availability checks
      for (OpOperand *u : backwardUses) u->set(copy->getResult(0));
      if (report) op.emitRemark("recomputed in the backward");
    }
  }
};

} // namespace
