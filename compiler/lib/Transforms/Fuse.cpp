//===- Fuse.cpp - matmul epilogues, gradient accumulation, elementwise chains -===//
//
// Four rewrites on each flat entry body, in this order:
//
//   1. epilogues: linear -> activation -> add(residual) becomes one
//      mm.fused_linear (as much of the chain as has single uses);
//   2. accumulation: linear_grad_input / layer_norm_grad_input /
//      rms_norm_grad_input -> add becomes the gradient op with an `addend`;
//   3. attention backward: attention_grad_query, _key and _value over the
//      same operands become one mm.fused_attention_grad;
//   4. elementwise trees: what is left of single-use chains of elementwise
//      ops becomes one mm.fused_elementwise per tree.
//
// Only a value with exactly one use is folded into its consumer; anything
// else (the pre-activations a training step's backward reads) is left alone
// and, with `report`, said so in a remark.
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"
#include "llvm/ADT/SetVector.h"

namespace mm {
#define GEN_PASS_DEF_FUSE
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

/// The single user of V in V's block, or null.
Operation *soleUser(Value v) {
  if (!v.hasOneUse()) return nullptr;
  Operation *user = *v.getUsers().begin();
  return user->getBlock() == v.getParentBlock() ? user : nullptr;
}

/// For an mm.add using V: its other operand.
Value otherAddend(AddOp add, Value v) { return add.getLhs() == v ? add.getRhs() : add.getLhs(); }

struct FusePass : public mm::impl::FuseBase<FusePass> {
  using FuseBase::FuseBase;

  void runOnOperation() override {
    for (EntryOp entry : getOperation().getBody().getOps<EntryOp>()) {
      Block &block = entry.getBody().front();
      fuseEpilogues(block);
      fuseAccumulations(block);
      fuseAttentionGrads(block);
      fuseAttentionStats(block);
      fuseElementwise(block);
    }
  }

  void remark(Operation *op, const Twine &text) {
    if (report) op->emitRemark(text);
  }
  /// Why V (one of OP's results, with a fusible consumer) stays unfused.
  void refuse(Operation *op, Value v, StringRef consumer) {
    if (report && !v.hasOneUse())
      op->emitRemark("not fused into its ") << consumer << ": the result has "
                                             << std::distance(v.use_begin(), v.use_end())
                                             << " uses (a backward op or another consumer reads it)";
  }

  // 1. linear -> [activation] -> [add].
  void fuseEpilogues(Block &block) {
    for (LinearOp linear : llvm::make_early_inc_range(block.getOps<LinearOp>())) {
      Value y = linear.getResult();
      Operation *user = soleUser(y);
      std::optional<ActivationKind> act = user ? activationKindOf(user) : std::nullopt;
      bool toAdd = user && isa<AddOp>(user);
      if (!act && !toAdd) {
        for (Operation *u : y.getUsers())
          if (activationKindOf(u) || isa<AddOp>(u)) {
            refuse(linear, y, u->getName().getStringRef());
            break;
          }
        continue;
      }
      // The fused op replaces the last op of the chain it absorbs.
      Operation *last = user;
      Value residual;
      if (act) {
        Value a = user->getResult(0);
        if (Operation *next = soleUser(a); next && isa<AddOp>(next)) {
          residual = otherAddend(cast<AddOp>(next), a);
          last = next;
        } else {
          for (Operation *u : a.getUsers())
            if (isa<AddOp>(u)) {
              refuse(user, a, "add");
              break;
            }
        }
      } else {
        residual = otherAddend(cast<AddOp>(user), y);
      }
      OpBuilder b(last);
      auto fused = b.create<FusedLinearOp>(
          last->getLoc(), last->getResult(0).getType(), linear.getInput(), linear.getWeight(),
          linear.getBias(), residual,
          act ? ActivationKindAttr::get(&getContext(), *act) : ActivationKindAttr());
      remark(fused, Twine("fused linear") + (act ? " + " + stringifyActivationKind(*act) : "") +
                        (residual ? " + residual add" : ""));
      last->getResult(0).replaceAllUsesWith(fused.getResult());
      last->erase();
      if (last != user) user->erase();
      linear.erase();
    }
  }

  // 2. gradient op -> add: the add's other operand becomes the addend; the
  // gradient op moves to the add's place (where the addend is defined) and
  // takes over its location and uses.
  template <typename GradOp> void fuseAccumulation(Block &block) {
    for (GradOp grad : llvm::make_early_inc_range(block.getOps<GradOp>())) {
      if (grad.getAddend()) continue;
      Value dx = grad.getResult();
      Operation *user = soleUser(dx);
      if (!user || !isa<AddOp>(user)) {
        for (Operation *u : dx.getUsers())
          if (isa<AddOp>(u)) {
            refuse(grad, dx, "add");
            break;
          }
        continue;
      }
      grad.getAddendMutable().assign(otherAddend(cast<AddOp>(user), dx));
      grad->moveBefore(user);
      grad->setLoc(user->getLoc());
      remark(grad, "fused gradient accumulation: the add's other operand is the addend");
      user->getResult(0).replaceAllUsesWith(dx);
      user->erase();
    }
  }
  void fuseAccumulations(Block &block) {
    fuseAccumulation<LinearGradInputOp>(block);
    fuseAccumulation<LayerNormGradInputOp>(block);
    fuseAccumulation<RMSNormGradInputOp>(block);
  }

  // 3. the three attention gradients of one attention, computed in one pass.
  /// The attributes every attention op shares: heads, mask, scale, layout, bias.
  template <typename A, typename B> static bool sameAttributes(A a, B b) {
    return a.getNumHeads() == b.getNumHeads() && a.getNumKvHeads() == b.getNumKvHeads() &&
           a.getMask() == b.getMask() && a.getScale() == b.getScale() && a.getLayoutAttr() == b.getLayoutAttr() &&
           a.getBiasMaxDistance() == b.getBiasMaxDistance();
  }
  template <typename A, typename B> static bool sameAttention(A a, B b) {
    return llvm::equal(a->getOperands(), b->getOperands()) && sameAttributes(a, b);
  }
  void fuseAttentionGrads(Block &block) {
    for (AttentionGradQueryOp dq : llvm::make_early_inc_range(block.getOps<AttentionGradQueryOp>())) {
      AttentionGradKeyOp dk;
      AttentionGradValueOp dv;
      for (Operation *user : dq.getQuery().getUsers()) {
        if (auto k = dyn_cast<AttentionGradKeyOp>(user); k && !dk && sameAttention(dq, k)) dk = k;
        if (auto v = dyn_cast<AttentionGradValueOp>(user); v && !dv && sameAttention(dq, v)) dv = v;
      }
      if (!dk || !dv) {
        remark(dq, Twine("not fused with the key and value gradients: no attention_grad_") +
                       (dk ? "value" : "key") + " over the same operands and attributes");
        continue;
      }
      // At the first of the three: every operand is defined before each of
      // them, and every use of their results comes after it.
      Operation *first = dq;
      for (Operation *op : {dk.getOperation(), dv.getOperation()})
        if (op->isBeforeInBlock(first)) first = op;
      OpBuilder b(first);
      auto fused = b.create<FusedAttentionGradOp>(
          dq.getLoc(), TypeRange{dq.getType(), dk.getType(), dv.getType()}, dq.getQuery(), dq.getKey(),
          dq.getValue(), dq.getGrad(), dq.getOut(), dq.getLse(), dq.getLength(), dq.getPositionBias(),
          dq.getNumHeadsAttr(), dq.getNumKvHeadsAttr(), dq.getMaskAttr(), dq.getScaleAttr(), dq.getLayoutAttr(),
          dq.getBiasMaxDistanceAttr());
      remark(fused, "fused attention backward: the query, key and value gradients in one pass");
      dq.getResult().replaceAllUsesWith(fused.getGradQuery());
      dk.getResult().replaceAllUsesWith(fused.getGradKey());
      dv.getResult().replaceAllUsesWith(fused.getGradValue());
      dq.erase();
      dk.erase();
      dv.erase();
    }
  }

  // 3b. attention + the statistics its backward reads.
  static bool sameScores(AttentionOp a, AttentionStatsOp s) {
    return a.getQuery() == s.getQuery() && a.getKey() == s.getKey() && a.getLength() == s.getLength() &&
           a.getPositionBias() == s.getPositionBias() && sameAttributes(a, s);
  }
  void fuseAttentionStats(Block &block) {
    for (AttentionStatsOp stats : llvm::make_early_inc_range(block.getOps<AttentionStatsOp>())) {
      AttentionOp attention;
      for (Operation *user : stats.getQuery().getUsers())
        if (auto a = dyn_cast<AttentionOp>(user); a && sameScores(a, stats) && a->isBeforeInBlock(stats)) {
          attention = a;
          break;
        }
      if (!attention) {
        remark(stats, "not fused with its attention: no earlier mm.attention over the same query, key and "
                      "attributes");
        continue;
      }
      // At the attention: its operands are defined there, and the statistics'
      // users come after the statistics, so after it too.
      OpBuilder b(attention);
      auto fused = b.create<FusedAttentionOp>(
          attention.getLoc(), TypeRange{attention.getType(), stats.getType()}, attention.getQuery(),
          attention.getKey(), attention.getValue(), attention.getLength(), attention.getPositionBias(),
          attention.getNumHeadsAttr(), attention.getNumKvHeadsAttr(), attention.getMaskAttr(),
          attention.getScaleAttr(), attention.getLayoutAttr(), attention.getBiasMaxDistanceAttr());
      remark(fused, "fused attention forward: its statistics from the same softmax");
      attention.getResult().replaceAllUsesWith(fused.getResult());
      stats.getResult().replaceAllUsesWith(fused.getLse());
      stats.erase();
      attention.erase();
    }
  }

  // 4. trees of elementwise ops with single-use inner values.
  void fuseElementwise(Block &block) {
    // Roots last to first, so a producer joins the tree of its (later) consumer.
    SmallVector<Operation *> ops;
    for (Operation &op : block)
      if (isFusibleElementwise(&op)) ops.push_back(&op);
    DenseSet<Operation *> taken;
    for (Operation *root : llvm::reverse(ops)) {
      if (taken.count(root)) continue;
      Type type = root->getResult(0).getType();
      // Grow the tree from the root through single-use operands.
      SmallVector<Operation *> tree{root}, work{root};
      while (!work.empty()) {
        Operation *op = work.pop_back_val();
        for (Value v : op->getOperands()) {
          Operation *producer = v.getDefiningOp();
          if (!producer || !isFusibleElementwise(producer) || taken.count(producer) ||
              llvm::is_contained(tree, producer) || v.getType() != type)
            continue;
          if (soleUser(v) != op) {
            refuse(producer, v, op->getName().getStringRef());
            continue;
          }
          tree.push_back(producer);
          work.push_back(producer);
        }
      }
      taken.insert(tree.begin(), tree.end());
      if (tree.size() < 2) continue;
      buildFused(root, tree);
    }
  }

  /// Moves TREE (ROOT and the ops that feed only it) into one
  /// mm.fused_elementwise at ROOT's place.
  void buildFused(Operation *root, ArrayRef<Operation *> tree) {
    DenseSet<Operation *> members(tree.begin(), tree.end());
    // Members in program order; inputs in order of first use.
    SmallVector<Operation *> ordered;
    for (Operation &op : *root->getBlock())
      if (members.count(&op)) ordered.push_back(&op);
    llvm::SetVector<Value> inputs;
    for (Operation *op : ordered)
      for (Value v : op->getOperands())
        if (!members.count(v.getDefiningOp())) inputs.insert(v);

    OpBuilder b(root);
    Type type = root->getResult(0).getType();
    auto fused = b.create<FusedElementwiseOp>(root->getLoc(), type, inputs.getArrayRef());
    Block *body = b.createBlock(&fused.getBody());
    IRMapping map;
    for (Value v : inputs) map.map(v, body->addArgument(v.getType(), v.getLoc()));
    for (Operation *op : ordered) b.clone(*op, map);
    b.create<YieldOp>(root->getLoc(), ValueRange{map.lookup(root->getResult(0))});

    if (report) {
      std::string names;
      for (Operation *op : ordered) names += (names.empty() ? "" : ", ") + op->getName().getStringRef().str();
      fused->emitRemark("fused ") << ordered.size() << " elementwise ops: " << names;
    }
    root->getResult(0).replaceAllUsesWith(fused.getResult());
    for (Operation *op : llvm::reverse(ordered)) op->erase();
  }
};

} // namespace
