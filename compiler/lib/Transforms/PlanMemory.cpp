//===- PlanMemory.cpp - liveness-based arena planning -----------------------===//
#include "mm/Compiler/Passes.h"

#include "mlir/IR/Builders.h"
#include <map>

namespace mm {
#define GEN_PASS_DEF_PLANMEMORY
#include "mm/Compiler/Passes.h.inc"
} // namespace mm

using namespace mlir;
using namespace mm;

namespace {

/// First-fit allocator over [0, inf) with coalescing of freed ranges.
class Arena {
public:
  int64_t allocate(int64_t bytes) {
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < bytes)
        continue;
      int64_t offset = it->first, size = it->second;
      free_.erase(it);
      if (size > bytes)
        free_[offset + bytes] = size - bytes;
      return offset;
    }
    // Grow: reuse a free range that touches the end, else append.
    int64_t offset = top_;
    if (!free_.empty()) {
      auto last = std::prev(free_.end());
      if (last->first + last->second == top_) {
        offset = last->first;
        free_.erase(last);
      }
    }
    top_ = offset + bytes;
    return offset;
  }
  void release(int64_t offset, int64_t bytes) {
    auto it = free_.emplace(offset, bytes).first;
    auto next = std::next(it);
    if (next != free_.end() && it->first + it->second == next->first) {
      it->second += next->second;
      free_.erase(next);
    }
    if (it != free_.begin()) {
      auto prev = std::prev(it);
      if (prev->first + prev->second == it->first) {
        prev->second += it->second;
        free_.erase(it);
      }
    }
  }
  int64_t size() const { return top_; }

private:
  std::map<int64_t, int64_t> free_; // offset -> size
  int64_t top_ = 0;
};

/// The cache argument (or first value) a chain of cache updates starts from.
Value cacheRoot(Value cache) {
  while (auto update = cache.getDefiningOp<CacheUpdateOp>())
    cache = update.getCache();
  return cache;
}

/// Whether READ's result can be its cache's own storage: the entry does not
/// return it, and no update of the same layer of the same cache runs between
/// the read and its last use (which would change what it reads).
bool readsInPlace(CacheReadOp read, const DenseMap<Operation *, int64_t> &index,
                  const DenseMap<Value, int64_t> &lastUse, const DenseMap<Value, int64_t> &returned) {
  if (returned.count(read.getResult()))
    return false;
  const int64_t to = lastUse.lookup(read.getResult());
  Value root = cacheRoot(read.getCache());
  for (Operation *op = read->getNextNode(); op && index.lookup(op) <= to; op = op->getNextNode())
    if (auto update = dyn_cast<CacheUpdateOp>(op))
      if (update.getLayer() == read.getLayer() && cacheRoot(update.getCache()) == root)
        return false;
  return true;
}

int64_t bytesOf(Value v) {
  auto t = cast<RankedTensorType>(v.getType());
  return t.getNumElements() * (t.getElementType().getIntOrFloatBitWidth() / 8);
}

struct PlanMemoryPass : public mm::impl::PlanMemoryBase<PlanMemoryPass> {
  using PlanMemoryBase::PlanMemoryBase;

  void runOnOperation() override {
    for (EntryOp entry : getOperation().getBody().getOps<EntryOp>()) {
      if (failed(planEntry(entry)))
        return signalPassFailure();
    }
  }

  LogicalResult planEntry(EntryOp entry) {
    Block &block = entry.getBody().front();
    // Program order index of each op, and each value's last user.
    DenseMap<Operation *, int64_t> index;
    int64_t n = 0;
    for (Operation &op : block) {
      // A fused elementwise op's body is per-element code, not tensors to place.
      if (op.getNumRegions() && !isa<FusedElementwiseOp>(&op))
        return op.emitOpError("mm-plan-memory expects flat entry bodies; run mm-expand-layers first");
      index[&op] = n++;
    }
    DenseMap<Value, int64_t> lastUse;
    for (Operation &op : block)
      for (Value v : op.getOperands())
        lastUse[v] = std::max(lastUse.lookup(v), index[&op]);

    Arena arena;
    std::multimap<int64_t, std::pair<int64_t, int64_t>> dying; // last use -> (offset, bytes)
    // An op whose result the entry returns writes it straight into the
    // caller's result buffer (the first, if it is returned more than once):
    // no arena space, no copy at the end. What is live at once in the arena
    // is then the activation memory.
    DenseMap<Value, int64_t> returned;
    for (auto [i, v] : llvm::enumerate(block.getTerminator()->getOperands()))
      returned.try_emplace(v, i);
    int64_t live = 0, peak = 0; // bytes placed in the arena and not yet freed
    Builder b(entry.getContext());
    for (Operation &op : block) {
      int64_t at = index[&op];
      // A cache update writes into its cache operand's storage; a cache read
      // is a view of it where nothing overwrites that layer meanwhile.
      bool view = false;
      if (auto read = dyn_cast<CacheReadOp>(&op); read && readsInPlace(read, index, lastUse, returned)) {
        op.setAttr(kViewAttr, b.getUnitAttr());
        view = true;
      }
      if (!view && !isa<WeightOp, ReturnOp, CacheUpdateOp>(&op)) {
        if (op.getNumResults() == 0)
          return op.emitOpError("mm-plan-memory expects every op to have a result");
        SmallVector<int64_t> offsets, slots;
        for (Value result : op.getResults()) {
          if (auto it = returned.find(result); it != returned.end()) {
            offsets.push_back(-1);
            slots.push_back(it->second);
            continue;
          }
          int64_t bytes = (bytesOf(result) + alignment - 1) / alignment * alignment;
          int64_t offset = arena.allocate(bytes);
          offsets.push_back(offset);
          slots.push_back(-1);
          // A result nobody reads dies at once; otherwise at its last use.
          int64_t dies = lastUse.count(result) ? lastUse[result] : at;
          dying.insert({dies, {offset, bytes}});
          peak = std::max(peak, live += bytes);
        }
        if (op.getNumResults() > 1) {
          op.setAttr(kOffsetsAttr, b.getDenseI64ArrayAttr(offsets));
          op.setAttr(kResultsAttr, b.getDenseI64ArrayAttr(slots));
        } else if (slots[0] >= 0) {
          op.setAttr(kResultAttr, b.getI64IntegerAttr(slots[0]));
        } else {
          op.setAttr(kOffsetAttr, b.getI64IntegerAttr(offsets[0]));
        }
      }
      // Free what dies here, after this op's result has been placed: an
      // op never writes over its own inputs.
      auto range = dying.equal_range(at);
      for (auto it = range.first; it != range.second; ++it) {
        arena.release(it->second.first, it->second.second);
        live -= it->second.second;
      }
      dying.erase(range.first, range.second);
    }
    entry->setAttr(kWorkspaceAttr, b.getI64IntegerAttr(arena.size()));
    entry->setAttr(kActivationAttr, b.getI64IntegerAttr(peak));
    return success();
  }
};

} // namespace
