//===- BoundRows.cpp - products over a sample's real rows only ---------------===//
//
// A training sample is padded to the compiled sequence length S and carries
// its real length as the entry argument that bounds its attention's keys.
// In a causal LM loss nothing at or past that length reaches the loss: each
// op of the sequence works row by row, attention never reads a key past the
// length, and the loss ignores those positions. So their forward rows are
// never needed, and their gradient rows are exactly zero. This pass lets the
// products (and the loss) stop at the length:
//
//   - `mm.linear` / `mm.fused_linear` compute rows [0, length) of y and write
//     zeros after them (finite values that reach nothing);
//   - `mm.linear_grad_input` likewise (the rows it skips are zero anyway);
//   - `mm.linear_grad_weight` sums over the first `length` rows only (the
//     others add dy = 0 times a finite x);
//   - `mm.cross_entropy` and its gradient count rows past the length as
//     ignored (mmrun's targets there are ignored already).
//
// A forward entry (logits, a prefill's KV cache) qualifies too: what it
// returns or caches for rows past the length is zeros, which no caller reads
// (mmrun reads the logits of real positions; decode overwrites a cache row
// before attention reads it).
//
// Code generation reads `mm.rows` (the index of the entry argument holding
// the length) on those ops. The pass is conservative: an entry qualifies
// only when every op that reads the sequence (the [1, S, X] values joined to
// the bounded attention through ops that keep rows apart) is one that keeps
// rows apart, attention included only when masked by that one length over S
// queries and S keys, and the entry returns no sequence tensor.
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

namespace mm {
#define GEN_PASS_DEF_BOUNDROWS
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

/// The attention-family ops: query, key, the optional length and position bias.
struct AttentionView {
  Value query, key, length, positionBias;
};
std::optional<AttentionView> attentionView(Operation *op) {
  std::optional<AttentionView> v;
  llvm::TypeSwitch<Operation *>(op)
      .Case<AttentionOp, AttentionStatsOp, AttentionGradQueryOp, AttentionGradKeyOp, AttentionGradValueOp,
            FusedAttentionOp, FusedAttentionGradOp>([&](auto a) {
        v = AttentionView{a.getQuery(), a.getKey(), a.getLength(), a.getPositionBias()};
      });
  return v;
}

/// Ops whose row r of every sequence result depends only on row r of their
/// sequence operands (or, for the reductions, that sum rows of a gradient;
/// a cache update writes row r at position r).
bool keepsRowsApart(Operation *op) {
  return isa<EmbeddingOp, LinearOp, FusedLinearOp, LayerNormOp, RMSNormOp, GeluOp, QuickGeluOp, GeluTanhOp,
             SiluOp, ReluOp, AddOp, MulOp, RoPEOp, MergeImageFeaturesOp, CrossEntropyOp, CrossEntropyGradOp,
             LinearGradInputOp, LinearGradWeightOp, EmbeddingGradOp, LayerNormGradInputOp, LayerNormGradWeightOp,
             RMSNormGradInputOp, RMSNormGradWeightOp, ActivationGradOp, GatherImageFeaturesOp,
             FusedElementwiseOp, ReduceToOp, CacheUpdateOp>(op);
}

/// The operands and results of a row-wise op whose rows are the same
/// positions: all of them, except the image features LLaVA's merge places at
/// the image tokens (their rows are image patches, not positions), and what
/// the gather of those positions' gradients returns.
SmallVector<Value> rowAligned(Operation *op) {
  if (auto merge = dyn_cast<MergeImageFeaturesOp>(op)) return {merge.getEmbeds(), merge.getResult()};
  if (auto gather = dyn_cast<GatherImageFeaturesOp>(op)) return {gather.getInput()};
  SmallVector<Value> values(op->getOperands());
  llvm::append_range(values, op->getResults());
  return values;
}

struct BoundRowsPass : public mm::impl::BoundRowsBase<BoundRowsPass> {
  using BoundRowsBase::BoundRowsBase;

  void runOnOperation() override {
    for (EntryOp entry : getOperation().getBody().getOps<EntryOp>())
      boundEntry(entry);
  }

  /// Emits the refusal (with `report`) and returns false.
  bool refuse(Operation *at, const Twine &why) {
    if (report) at->emitRemark("rows not bounded: ") << why;
    return false;
  }

  bool boundEntry(EntryOp entry) {
    Block &block = entry.getBody().front();
    // The length: the one 0-d i32 argument that bounds attention keys.
    Value length;
    int64_t seq = 0;
    for (Operation &op : block) {
      std::optional<AttentionView> a = attentionView(&op);
      if (!a || !a->length) continue;
      auto arg = dyn_cast<BlockArgument>(a->length);
      auto lt = cast<RankedTensorType>(a->length.getType());
      if (!arg || lt.getRank() != 0)
        return refuse(&op, "the attention's length is not a scalar argument of the entry");
      if (length && length != a->length) return refuse(&op, "attention is bounded by two different lengths");
      length = a->length;
      auto q = cast<RankedTensorType>(a->query.getType());
      if (q.getRank() != 3 || q.getDimSize(0) != 1) return refuse(&op, "the attention's batch is not 1");
      seq = q.getDimSize(1);
    }
    if (!length || seq <= 1) return false;
    auto isSeq = [&](Value v) {
      auto r = dyn_cast<RankedTensorType>(v.getType());
      return r && r.getRank() == 3 && r.getDimSize(0) == 1 && r.getDimSize(1) == seq &&
             isa<FloatType>(r.getElementType());
    };
    // The sequence: the [1, S, X] values of the bounded attention, and every
    // [1, S, X] value joined to them through ops that keep rows apart (so a
    // tower whose tokens happen to number S too stays out).
    DenseSet<Value> sequence;
    auto joins = [&](Operation *op) {
      std::optional<AttentionView> a = attentionView(op);
      return a ? a->length == length : keepsRowsApart(op);
    };
    for (bool grew = true; grew;) {
      grew = false;
      for (Operation &op : block) {
        if (!joins(&op)) continue;
        SmallVector<Value> values = rowAligned(&op);
        std::optional<AttentionView> a = attentionView(&op);
        if (!a && llvm::none_of(values, [&](Value v) { return sequence.contains(v); })) continue;
        for (Value v : values)
          if (isSeq(v)) grew |= sequence.insert(v).second;
      }
    }
    // Gradients: values computed from the loss's gradient (what reduce_to may sum).
    DenseSet<Value> gradient;
    for (Operation &op : block) {
      bool fromGrad = isa<CrossEntropyGradOp>(op) ||
                      llvm::any_of(op.getOperands(), [&](Value v) { return gradient.contains(v); });
      if (fromGrad)
        for (Value r : op.getResults()) gradient.insert(r);
    }
    SmallVector<Operation *> bounded;
    for (Operation &op : block) {
      if (llvm::none_of(op.getOperands(), [&](Value v) { return sequence.contains(v); })) continue;
      // A returned sequence (logits; a gradient) holds zeros past the length.
      if (isa<ReturnOp>(op)) continue;
      if (std::optional<AttentionView> a = attentionView(&op)) {
        if (a->length != length) return refuse(&op, "attention over the sequence is not bounded by its length");
        if (a->positionBias) return refuse(&op, "attention with a position bias");
        if (!isSeq(a->query) || !isSeq(a->key))
          return refuse(&op, "attention between sequences of different lengths");
        continue;
      }
      if (!keepsRowsApart(&op))
        return refuse(&op, "'" + op.getName().getStringRef() + "' may mix the sequence's rows");
      if (isa<ReduceToOp>(op) && !gradient.contains(op.getOperand(0)))
        return refuse(&op, "a sum over the rows of a forward value");
      if (isa<LinearOp, FusedLinearOp, LinearGradInputOp, LinearGradWeightOp, CrossEntropyOp, CrossEntropyGradOp>(
              op))
        bounded.push_back(&op);
    }
    Builder b(entry.getContext());
    const int64_t argIndex = cast<BlockArgument>(length).getArgNumber();
    for (Operation *op : bounded) {
      op->setAttr(kRowsAttr, b.getI64IntegerAttr(argIndex));
      if (report) op->emitRemark("rows bounded by argument #") << argIndex;
    }
    return true;
  }
};

} // namespace
