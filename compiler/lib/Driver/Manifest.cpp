//===- Manifest.cpp - the JSON manifest of a model --------------------------===//
#include "mm/Compiler/Driver.h"
#include "mm/Compiler/Passes.h"
#include "mm/Dialect/ModelQueries.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
namespace json = llvm::json;

namespace mm {
namespace {

json::Value attrToJson(Attribute attr) {
  if (auto s = dyn_cast<StringAttr>(attr)) return s.getValue().str();
  if (auto b = dyn_cast<BoolAttr>(attr)) return b.getValue();
  if (auto i = dyn_cast<IntegerAttr>(attr)) return i.getValue().getSExtValue();
  if (auto f = dyn_cast<FloatAttr>(attr)) return f.getValueAsDouble();
  if (isa<UnitAttr>(attr)) return true;
  if (auto a = dyn_cast<ArrayAttr>(attr)) {
    json::Array out;
    for (Attribute e : a) out.push_back(attrToJson(e));
    return out;
  }
  if (auto d = dyn_cast<DictionaryAttr>(attr)) {
    json::Object out;
    // The key as an owned string: a json::ObjectKey built from a StringRef only
    // points at it, and the attribute's name dies with the MLIRContext, which
    // `mmc inspect MODEL.mlir` destroys before it prints the manifest.
    for (NamedAttribute na : d) out[na.getName().getValue().str()] = attrToJson(na.getValue());
    return out;
  }
  std::string s;
  llvm::raw_string_ostream os(s);
  attr.print(os);
  return os.str();
}

json::Array shapeOf(RankedTensorType t) {
  json::Array a;
  for (int64_t d : t.getShape()) a.push_back(d);
  return a;
}

const char *dtypeOf(Type t) {
  Type e = cast<RankedTensorType>(t).getElementType();
  return e.isInteger(32) ? "I32" : e.isF64() ? "F64" : "F32";
}

json::Array tensorList(ArrayRef<Type> types, ArrayAttr attrs, StringRef prefix) {
  json::Array out;
  for (auto [i, t] : llvm::enumerate(types)) {
    std::string name = (prefix + Twine(i)).str();
    if (attrs && i < attrs.size())
      if (auto d = dyn_cast<DictionaryAttr>(attrs[i]))
        if (auto n = d.getAs<StringAttr>("mm.name")) name = n.getValue().str();
    out.push_back(json::Object{{"name", name}, {"shape", shapeOf(cast<RankedTensorType>(t))},
                               {"dtype", dtypeOf(t)}});
  }
  return out;
}

int64_t numel(Value v) { return cast<RankedTensorType>(v.getType()).getNumElements(); }

/// Floating-point operations of one op: matmul-like work exactly (2 per
/// multiply-add), elementwise and normalisation work at a few per element.
template <typename AttnOp>
int64_t attentionFlops(AttnOp op, int64_t perPair) {
  auto q = cast<RankedTensorType>(op.getQuery().getType());
  int64_t skv = cast<RankedTensorType>(op.getKey().getType()).getDimSize(1);
  int64_t dh = q.getDimSize(2) / op.getNumHeads();
  return perPair * q.getDimSize(0) * (int64_t)op.getNumHeads() * q.getDimSize(1) * skv * dh;
}

int64_t opFlops(Operation *op) {
  return llvm::TypeSwitch<Operation *, int64_t>(op)
      .Case<LinearOp, FusedLinearOp>([](Operation *o) {
        return 2 * numel(o->getResult(0)) * cast<RankedTensorType>(o->getOperand(1).getType()).getDimSize(1);
      })
      .Case([](Conv2dOp o) { return 2 * numel(o.getResult()) * numel(o.getWeight()) / cast<RankedTensorType>(o.getWeight().getType()).getDimSize(0); })
      .Case([](Conv2dGradInputOp o) { return 2 * numel(o.getGrad()) * numel(o.getWeight()) / cast<RankedTensorType>(o.getWeight().getType()).getDimSize(0); })
      .Case([](Conv2dGradWeightOp o) { return 2 * numel(o.getGrad()) * numel(o.getResult()) / cast<RankedTensorType>(o.getResult().getType()).getDimSize(0); })
      .Case([](PatchEmbedGradInputOp o) { return 2 * numel(o.getResult()) * cast<RankedTensorType>(o.getWeight().getType()).getDimSize(0); })
      .Case([](LinearGradInputOp o) { return 2 * numel(o.getResult()) * cast<RankedTensorType>(o.getWeight().getType()).getDimSize(0); })
      .Case([](LinearGradWeightOp o) {
        auto w = cast<RankedTensorType>(o.getResult().getType());
        return 2 * numel(o.getInput()) / w.getDimSize(1) * w.getNumElements();
      })
      .Case([](PatchEmbedOp o) { return 2 * numel(o.getResult()) * numel(o.getWeight()) / cast<RankedTensorType>(o.getWeight().getType()).getDimSize(0); })
      .Case([](PatchEmbedGradWeightOp o) { return 2 * numel(o.getPixels()) * cast<RankedTensorType>(o.getResult().getType()).getDimSize(0); })
      .Case([](AttentionOp o) { return attentionFlops(o, 4); })
      .Case([](AttentionStatsOp o) { return attentionFlops(o, 2); })
      .Case([](FusedAttentionOp o) { return attentionFlops(o, 4); })
      .Case([](AttentionGradQueryOp o) { return attentionFlops(o, 6); })
      .Case([](AttentionGradKeyOp o) { return attentionFlops(o, 6); })
      .Case([](AttentionGradValueOp o) { return attentionFlops(o, 4); })
      // scores, dY V^T, dQ, dK and dV: each score computed once for the three
      .Case([](FusedAttentionGradOp o) { return attentionFlops(o, 10); })
      .Case([](AttentionGradPositionBiasOp o) { return attentionFlops(o, 4); })
      .Case<LayerNormOp, RMSNormOp, LayerNormGradInputOp, RMSNormGradInputOp>(
          [](Operation *o) { return 5 * numel(o->getResult(0)); })
      .Case<CrossEntropyOp, CrossEntropyGradOp>([](Operation *o) { return 3 * numel(o->getOperand(0)); })
      // A fused elementwise op's body ops are counted one by one (the walk visits them).
      .Case<WeightOp, ReturnOp, YieldOp, FusedElementwiseOp, EmbeddingOp, ConstantOp, SliceOp, ConcatOp, BroadcastOp,
            PadOp>(
          [](Operation *) { return int64_t(0); })
      .Default([](Operation *o) {
        int64_t n = 0;
        for (Value v : o->getOperands()) n = std::max(n, numel(v));
        return n;
      });
}

int64_t entryFlops(EntryOp e) {
  int64_t total = 0;
  e.walk([&](Operation *op) {
    if (op != e.getOperation()) total += opFlops(op);
  });
  return total;
}

/// The names of the parameters an entry reads.
llvm::StringSet<> parametersRead(EntryOp e) {
  llvm::StringSet<> read;
  e.walk([&](WeightOp w) { read.insert(w.getParam()); });
  return read;
}

} // namespace

json::Object buildManifest(ModelOp model, StringRef target, bool fuse, bool remat) {
  json::Object m;
  m["abi_version"] = 1;
  m["name"] = model.getSymName().str();
  m["target"] = target.str();
  m["compile_options"] = json::Object{{"fuse", fuse}, {"remat", remat}};
  m["config"] = model.getConfig() ? attrToJson(model.getConfigAttr()) : json::Object{};

  std::vector<ParameterInfo> params = collectParameters(model);
  json::Array groups;
  int64_t total = 0;
  for (GroupOp g : model.getBody().getOps<GroupOp>()) {
    int64_t count = 0, tensors = 0;
    for (const ParameterInfo &p : params)
      if (p.group == g.getSymName()) {
        count += p.type.getNumElements();
        ++tensors;
      }
    groups.push_back(json::Object{{"name", g.getSymName().str()}, {"parameters", count},
                                  {"tensors", tensors}});
  }
  m["groups"] = std::move(groups);

  json::Array plist;
  for (const ParameterInfo &p : params) {
    total += p.type.getNumElements();
    json::Object init{{"kind", stringifyInitKind(p.init.getKind()).str()}};
    if (p.init.getKind() == InitKind::Normal) init["std"] = p.init.getScale().convertToDouble();
    if (p.init.getKind() == InitKind::Constant) init["value"] = p.init.getScale().convertToDouble();
    plist.push_back(json::Object{{"name", p.name}, {"shape", shapeOf(p.type)}, {"dtype", dtypeOf(p.type)},
                                 {"group", p.group}, {"init", std::move(init)}});
  }
  m["parameters"] = std::move(plist);
  m["total_parameters"] = total;
  // What inference needs: the parameters the `forward` entry reads (BLIP-2's
  // stage-1-only text side and the tiny models' pre-training heads are not).
  for (EntryOp e : model.getBody().getOps<EntryOp>()) {
    if (e.getSymName() != "forward") continue;
    const llvm::StringSet<> read = parametersRead(e);
    int64_t count = 0;
    for (const ParameterInfo &p : params)
      if (read.contains(p.name)) count += p.type.getNumElements();
    m["forward_parameters"] = count;
  }

  json::Array stages;
  for (StageOp s : model.getBody().getOps<StageOp>()) {
    json::Array trainable, trainableParams;
    llvm::StringSet<> groups;
    for (Attribute a : s.getTrainable()) {
      trainable.push_back(cast<FlatSymbolRefAttr>(a).getValue().str());
      groups.insert(cast<FlatSymbolRefAttr>(a).getValue());
    }
    // The order of the training step's gradient results.
    for (const ParameterInfo &p : params)
      if (groups.contains(p.group)) trainableParams.push_back(p.name);
    stages.push_back(json::Object{
        {"name", s.getSymName().str()}, {"trainable", std::move(trainable)},
        {"loss", s.getLoss().str()}, {"data", s.getData().str()}, {"lr", s.getLr().convertToDouble()},
        {"schedule", s.getSchedule().str()}, {"warmup_ratio", s.getWarmupRatio().convertToDouble()},
        {"weight_decay", s.getWeightDecay().convertToDouble()}, {"batch", s.getBatch()},
        {"epochs", s.getEpochs()}, {"loss_entry", s.getLoss().str()},
        {"trainable_parameters", std::move(trainableParams)}});
    std::string train = ("train_" + s.getSymName()).str();
    if (auto step = dyn_cast_or_null<EntryOp>(SymbolTable::lookupSymbolIn(model, train))) {
      json::Object &so = *stages.back().getAsObject();
      so["train_entry"] = train;
      // What one training step costs (one sample of the compiled shape).
      int64_t paramBytes = 0, trainBytes = 0;
      for (const ParameterInfo &p : params) {
        int64_t bytes = p.type.getNumElements() * (p.type.getElementType().isF64() ? 8 : 4);
        paramBytes += bytes;
        if (groups.contains(p.group)) trainBytes += bytes;
      }
      so["flops_per_sample"] = entryFlops(step);
      json::Object bytes{{"parameters", paramBytes}, {"gradients", trainBytes},
                         {"optimizer_state", 2 * trainBytes}};
      if (auto act = step->getAttrOfType<IntegerAttr>(kActivationAttr))
        bytes["activations"] = act.getInt();
      if (auto ws = step->getAttrOfType<IntegerAttr>(kWorkspaceAttr))
        bytes["workspace"] = ws.getInt();
      so["bytes"] = std::move(bytes);
    }
  }
  m["stages"] = std::move(stages);

  json::Array entries;
  for (EntryOp e : model.getBody().getOps<EntryOp>()) {
    json::Array args = tensorList(e.getArgumentTypes(), e.getArgAttrsAttr(), "arg");
    // Arguments a KV-cache update writes are updated in place (inout).
    e.walk([&](CacheUpdateOp u) {
      Value v = u.getCache();
      while (auto prev = v.getDefiningOp<CacheUpdateOp>()) v = prev.getCache();
      if (auto arg = dyn_cast<BlockArgument>(v))
        if (arg.getOwner()->getParentOp() == e.getOperation())
          (*args[arg.getArgNumber()].getAsObject())["inout"] = true;
    });
    json::Object eo{{"name", e.getSymName().str()},
                    {"args", std::move(args)},
                    {"results", tensorList(e.getResultTypes(), e.getResAttrsAttr(), "result")}};
    if (auto ws = e->getAttrOfType<IntegerAttr>(kWorkspaceAttr))
      eo["workspace_bytes"] = ws.getInt();
    eo["flops"] = entryFlops(e);
    // The parameters the entry reads (indices into "parameters"): mmrun caches
    // an entry's output across training steps only if the stage trains none.
    const llvm::StringSet<> read = parametersRead(e);
    json::Array reads;
    for (size_t i = 0; i < params.size(); ++i)
      if (read.contains(params[i].name)) reads.push_back((int64_t)i);
    eo["reads"] = std::move(reads);
    entries.push_back(std::move(eo));
  }
  m["entries"] = std::move(entries);
  return m;
}

} // namespace mm
