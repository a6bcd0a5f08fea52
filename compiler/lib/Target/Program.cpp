//===- Program.cpp - kernels and calls of a planned model -------------------===//
#include "mm/Compiler/Codegen.h"
#include "mm/Compiler/Passes.h"

#include <map>

using namespace mlir;

namespace mm {

std::string elementCType(Type tensorType) {
  Type e = cast<RankedTensorType>(tensorType).getElementType();
  return e.isInteger(32) ? "int32_t" : e.isF64() ? "double" : "float";
}

FailureOr<Program> buildProgram(ModelOp model) {
  Program program;
  llvm::StringMap<int64_t> paramIndex;
  for (ParamOp p : model.getBody().getOps<ParamOp>())
    paramIndex[p.getSymName()] = program.numParams++;
  if (!model.getBody().getOps<LayerOp>().empty())
    return model.emitOpError("code generation needs expanded layers; run mm-expand-layers first"),
           failure();

  std::map<std::string, size_t> kernelByKey;
  for (EntryOp entry : model.getBody().getOps<EntryOp>()) {
    EntryProgram ep;
    ep.name = entry.getSymName().str();
    ep.numArgs = entry.getNumArguments();
    ep.numResults = entry.getNumResults();
    auto workspace = entry->getAttrOfType<IntegerAttr>(kWorkspaceAttr);
    if (!workspace)
      return entry.emitOpError("has no memory plan; run mm-plan-memory first"), failure();
    ep.workspaceBytes = workspace.getInt();

    DenseMap<Value, Buffer> where;
    for (BlockArgument arg : entry.getArguments())
      where[arg] = {Buffer::Arg, arg.getArgNumber(), elementCType(arg.getType())};
    for (Operation &op : entry.getBody().front()) {
      if (auto w = dyn_cast<WeightOp>(op)) {
        auto it = paramIndex.find(w.getParam());
        if (it == paramIndex.end())
          return w.emitOpError("names no top-level parameter"), failure();
        where[w.getResult()] = {Buffer::Param, it->second, elementCType(w.getType())};
        continue;
      }
      if (auto ret = dyn_cast<ReturnOp>(op)) {
        for (auto [i, v] : llvm::enumerate(ret.getOperands())) {
          Buffer source = where.lookup(v);
          if (source.kind == Buffer::Result && source.index == (int64_t)i)
            continue; // written in place
          auto t = cast<RankedTensorType>(v.getType());
          ep.copies.push_back({(int64_t)i, source,
                               t.getNumElements() * t.getElementTypeBitWidth() / 8});
        }
        continue;
      }
      if (auto read = dyn_cast<CacheReadOp>(op); read && op.hasAttr(kViewAttr)) {
        // A view of the layer's slice of the cache's storage: no kernel.
        Buffer slice = where.lookup(read.getCache());
        auto t = cast<RankedTensorType>(read.getType());
        slice.byteOffset += read.getLayer() * t.getNumElements() * t.getElementTypeBitWidth() / 8;
        where[read.getResult()] = slice;
        continue;
      }
      FailureOr<Kernel> kernel = buildKernel(&op);
      if (failed(kernel))
        return failure();
      auto [it, inserted] = kernelByKey.try_emplace(kernel->key, program.kernels.size());
      if (inserted) {
        kernel->name = "k" + std::to_string(program.kernels.size()) + "_" + kernel->name;
        program.kernels.push_back(std::move(*kernel));
      }
      KernelCall call{it->second, {}, {}, {}};
      if (auto update = dyn_cast<CacheUpdateOp>(op)) {
        call.result = where.lookup(update.getCache()); // in place
      } else if (op.getNumResults() > 1) {
        auto offsets = op.getAttrOfType<DenseI64ArrayAttr>(kOffsetsAttr);
        auto slots = op.getAttrOfType<DenseI64ArrayAttr>(kResultsAttr);
        if (!offsets || !slots || offsets.size() != (int64_t)op.getNumResults() || slots.size() != offsets.size())
          return op.emitOpError("has no arena offsets; run mm-plan-memory first"), failure();
        for (auto [i, result] : llvm::enumerate(op.getResults())) {
          Buffer buffer = slots[i] >= 0 ? Buffer{Buffer::Result, slots[i], elementCType(result.getType())}
                                        : Buffer{Buffer::Arena, offsets[i], elementCType(result.getType())};
          if (i == 0)
            call.result = buffer;
          else
            call.moreResults.push_back(buffer);
          where[result] = buffer;
        }
      } else if (auto result = op.getAttrOfType<IntegerAttr>(kResultAttr)) {
        call.result = {Buffer::Result, result.getInt(), elementCType(op.getResult(0).getType())};
      } else {
        auto offset = op.getAttrOfType<IntegerAttr>(kOffsetAttr);
        if (!offset)
          return op.emitOpError("has no arena offset; run mm-plan-memory first"), failure();
        call.result = {Buffer::Arena, offset.getInt(), elementCType(op.getResult(0).getType())};
      }
      for (Value v : op.getOperands())
        call.operands.push_back(where.lookup(v));
      // mm-bound-rows: the entry argument that holds the sequence's length.
      if (auto rows = op.getAttrOfType<IntegerAttr>(kRowsAttr))
        call.operands.push_back({Buffer::Arg, rows.getInt(), "int32_t"});
      if (op.getNumResults() == 1)
        where[op.getResult(0)] = call.result;
      ep.calls.push_back(std::move(call));
    }
    program.entries.push_back(std::move(ep));
  }
  return program;
}

std::string cStringLiteral(llvm::StringRef text) {
  std::string out = "\"";
  size_t lineLen = 0;
  for (unsigned char c : text) {
    if (lineLen > 100) {
      out += "\"\n    \"";
      lineLen = 0;
    }
    switch (c) {
    case '"': out += "\\\""; break;
    case '\\': out += "\\\\"; break;
    case '\n': out += "\\n"; break;
    case '\t': out += "\\t"; break;
    case '\r': out += "\\r"; break;
    case '?': out += "\\?"; break; // no trigraphs
    default:
      if (c < 0x20 || c >= 0x7f) {
        char buf[8];
        snprintf(buf, sizeof buf, "\\%03o", c);
        out += buf;
      } else {
        out += static_cast<char>(c);
      }
    }
    ++lineLen;
  }
  return out + "\"";
}

} // namespace mm
