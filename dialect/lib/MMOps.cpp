//===- MMOps.cpp - mm operations: verifiers and custom assembly -------------===//
#include "mm/Dialect/MMDialect.h"

#include "mlir/IR/Builders.h"
#include <cmath>
#include "mlir/IR/OpImplementation.h"
#include "mlir/Interfaces/FunctionImplementation.h"

using namespace mlir;
using namespace mm;

#define GET_OP_CLASSES
#include "mm/Dialect/MMOps.cpp.inc"

namespace {
/// Prints a shape as 1x2x3 for diagnostics.
std::string shapeStr(ArrayRef<int64_t> shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "x" : "") + std::to_string(shape[i]);
  return shape.empty() ? "scalar" : s;
}
RankedTensorType tensorOf(Value v) { return cast<RankedTensorType>(v.getType()); }
} // namespace

//===----------------------------------------------------------------------===//
// Model structure
//===----------------------------------------------------------------------===//

LogicalResult ModelOp::verify() {
  // Parameter names must be unique after layer instantiation, or a
  // checkpoint could not name them apart.
  llvm::StringMap<Operation *> seen;
  for (Operation &op : getBody().front()) {
    if (auto p = dyn_cast<ParamOp>(op))
      seen[p.getSymName()] = p;
  }
  for (auto layer : getBody().getOps<LayerOp>()) {
    // The model verifies before its layers: leave bad indices to LayerOp::verify,
    // whose message says what is wrong (index_step = 0 would name one parameter twice).
    if (layer.getIndexStart() < 0 || layer.getIndexStep() < 1)
      continue;
    for (auto p : layer.getBody().getOps<ParamOp>()) {
      for (int64_t i = 0, e = static_cast<int64_t>(layer.getCount()); i < e; ++i) {
        std::string full = layer.instanceParamName(i, p.getSymName());
        if (seen.count(full))
          return p.emitOpError("instance ") << i << " of layer @" << layer.getSymName()
                 << " names parameter '" << full << "', which is already declared";
        seen[full] = p;
      }
    }
  }
  return success();
}

LogicalResult ParamOp::verify() {
  if (!getGroup())
    return emitOpError("parameter '") << getSymName()
           << "' is in no group; every parameter must belong to exactly one mm.group";
  auto model = (*this)->getParentOfType<ModelOp>();
  Operation *group = model ? SymbolTable::lookupSymbolIn(model, *getGroup()) : nullptr;
  if (!group || !isa<GroupOp>(group))
    return emitOpError("parameter '") << getSymName() << "' names group @"
           << *getGroup() << ", which is not an mm.group of this model";
  return success();
}

std::string LayerOp::instanceParamName(int64_t index, StringRef name) {
  return (getPrefix() + "." + Twine(getIndexStart() + index * getIndexStep()) + "." + name).str();
}

LayerOp LayerOp::getParameterOwner() {
  if (!getParametersFrom())
    return *this;
  auto model = (*this)->getParentOfType<ModelOp>();
  return dyn_cast_or_null<LayerOp>(mlir::SymbolTable::lookupSymbolIn(model, getParametersFromAttr()));
}

/// Layers and entries print like func.func: `@name(%arg: type) -> type attributes {...} {...}`.
template <typename OpT>
static ParseResult parseFunctionLike(OpAsmParser &parser, OperationState &result) {
  auto buildFuncType = [](Builder &builder, ArrayRef<Type> argTypes, ArrayRef<Type> results,
                          function_interface_impl::VariadicFlag, std::string &) {
    return builder.getFunctionType(argTypes, results);
  };
  return function_interface_impl::parseFunctionOp(
      parser, result, /*allowVariadic=*/false, OpT::getFunctionTypeAttrName(result.name), buildFuncType,
      OpT::getArgAttrsAttrName(result.name), OpT::getResAttrsAttrName(result.name));
}

/// function_interface_impl::printFunctionOp, leaving out ELIDED too (attributes
/// at their default values).
template <typename OpT>
static void printFunctionLike(OpAsmPrinter &p, OpT op, ArrayRef<StringRef> elided = {}) {
  p << ' ';
  StringRef visibility = SymbolTable::getVisibilityAttrName();
  if (auto v = op->template getAttrOfType<StringAttr>(visibility))
    p << v.getValue() << ' ';
  p.printSymbolName(op.getSymName());
  function_interface_impl::printFunctionSignature(p, op, op.getArgumentTypes(), /*isVariadic=*/false,
                                                  op.getResultTypes());
  SmallVector<StringRef> ignored{visibility, op.getFunctionTypeAttrName(), op.getArgAttrsAttrName(),
                                 op.getResAttrsAttrName()};
  ignored.append(elided.begin(), elided.end());
  function_interface_impl::printFunctionAttributes(p, op, ignored);
  if (!op.getBody().empty()) {
    p << ' ';
    p.printRegion(op.getBody(), /*printEntryBlockArgs=*/false, /*printBlockTerminators=*/true);
  }
}

ParseResult LayerOp::parse(OpAsmParser &parser, OperationState &result) {
  return parseFunctionLike<LayerOp>(parser, result);
}

void LayerOp::print(OpAsmPrinter &p) {
  // index_start and index_step only where they differ from 0 and 1.
  SmallVector<StringRef> defaults;
  if (getIndexStart() == 0) defaults.push_back(getIndexStartAttrName());
  if (getIndexStep() == 1) defaults.push_back(getIndexStepAttrName());
  printFunctionLike(p, *this, defaults);
}

/// Shared by layers and entries: the terminator returns the declared types.
static LogicalResult verifyTerminatorTypes(Operation *op, Region &body, ArrayRef<Type> results,
                                           StringRef what) {
  if (body.empty())
    return op->emitOpError("needs a body");
  Operation *term = body.front().getTerminator();
  if (term->getOperandTypes() != TypeRange(results))
    return term->emitOpError("returns ") << term->getOperandTypes() << " but the " << what
           << " declares results " << TypeRange(results);
  return success();
}

LogicalResult LayerOp::verify() {
  if (getCountAttr().getInt() <= 0)
    return emitOpError("count must be positive, got ") << getCountAttr().getInt();
  if (getPrefix().empty())
    return emitOpError("needs a non-empty parameter name prefix");
  if (getIndexStart() < 0 || getIndexStep() < 1)
    return emitOpError("index_start must be non-negative and index_step positive, got ")
           << getIndexStart() << " and " << getIndexStep();
  if (getParametersFrom()) {
    LayerOp owner = getParameterOwner();
    if (!owner || owner == *this || owner.getParametersFrom())
      return emitOpError("parameters_from must name another mm.layer that declares its own parameters");
    if (owner.getCountAttr().getInt() != getCountAttr().getInt() || owner.getPrefix() != getPrefix() ||
        owner.getIndexStart() != getIndexStart() || owner.getIndexStep() != getIndexStep())
      return emitOpError("shares the parameters of @") << owner.getSymName()
             << " and so needs its count, prefix, index_start and index_step";
    if (!getBody().getOps<ParamOp>().empty())
      return emitOpError("takes its parameters from @") << owner.getSymName() << " and declares none itself";
  }
  return verifyTerminatorTypes(*this, getBody(), getResultTypes(), "layer");
}

LogicalResult StageOp::verify() {
  if (getTrainable().empty())
    return emitOpError("stage @") << getSymName() << " trains no group";
  if (!(getLr().convertToDouble() > 0.0))
    return emitOpError("learning rate must be positive");
  if (getBatch() <= 0 || getEpochs() <= 0)
    return emitOpError("batch and epochs must be positive");
  if (getSchedule() != "cosine" && getSchedule() != "constant" && getSchedule() != "linear")
    return emitOpError("unknown schedule '") << getSchedule()
           << "'; expected cosine, linear or constant";
  return success();
}

LogicalResult StageOp::verifySymbolUses(SymbolTableCollection &tables) {
  auto model = (*this)->getParentOfType<ModelOp>();
  for (Attribute a : getTrainable()) {
    auto ref = cast<FlatSymbolRefAttr>(a);
    Operation *group = tables.lookupSymbolIn(model, ref);
    if (!group || !isa<GroupOp>(group))
      return emitOpError("stage @") << getSymName() << " trains group " << ref
             << ", which is not an mm.group of this model";
  }
  auto loss = dyn_cast_or_null<EntryOp>(tables.lookupSymbolIn(model, getLossAttr()));
  if (!loss)
    return emitOpError("stage @") << getSymName() << " names loss " << getLossAttr()
           << ", which is not an mm.entry of this model";
  auto result = loss.getNumResults() == 1 ? dyn_cast<RankedTensorType>(loss.getResultTypes()[0]) : nullptr;
  if (!result || result.getRank() != 0 || !isa<FloatType>(result.getElementType()))
    return emitOpError("loss entry @") << loss.getSymName() << " must return one floating-point scalar";
  return success();
}

ParseResult EntryOp::parse(OpAsmParser &parser, OperationState &result) {
  return parseFunctionLike<EntryOp>(parser, result);
}

void EntryOp::print(OpAsmPrinter &p) { printFunctionLike(p, *this); }

LogicalResult EntryOp::verify() {
  for (Type t : getArgumentTypes()) {
    auto rt = dyn_cast<RankedTensorType>(t);
    if (!rt || !rt.hasStaticShape())
      return emitOpError("arguments must be statically shaped tensors, got ") << t;
  }
  return verifyTerminatorTypes(*this, getBody(), getResultTypes(), "entry");
}

LogicalResult WeightOp::verifySymbolUses(SymbolTableCollection &tables) {
  // Inside a layer the name is relative to the layer (or the layer it takes
  // its parameters from); elsewhere the model's.
  Operation *scope = nullptr;
  if (auto layer = (*this)->getParentOfType<LayerOp>())
    scope = layer.getParameterOwner();
  if (!scope)
    scope = (*this)->getParentOfType<ModelOp>();
  if (!scope)
    return emitOpError("must be inside an mm.model");
  auto param = dyn_cast_or_null<ParamOp>(tables.lookupSymbolIn(scope, getParamAttr()));
  if (!param)
    return emitOpError("refers to ") << getParamAttr() << ", which is not a parameter declared in the enclosing "
           << (isa<LayerOp>(scope) ? "layer" : "model");
  if (param.getType() != getType())
    return emitOpError("type ") << getType() << " does not match parameter " << getParamAttr()
           << " of type " << param.getType();
  return success();
}

LogicalResult ApplyLayerOp::verifySymbolUses(SymbolTableCollection &tables) {
  auto model = (*this)->getParentOfType<ModelOp>();
  auto layer = dyn_cast_or_null<LayerOp>(tables.lookupSymbolIn(model, getLayerAttr()));
  if (!layer)
    return emitOpError("refers to ") << getLayerAttr() << ", which is not an mm.layer";
  int64_t begin = getBeginAttr().getInt(), end = getEndAttr().getInt();
  if (begin < 0 || end > layer.getCountAttr().getInt() || begin >= end)
    return emitOpError("instance range [") << begin << ", " << end
           << ") is empty or outside layer @" << layer.getSymName() << "'s " << layer.getCount()
           << " instances";
  if (TypeRange(getInputs()) != TypeRange(layer.getArgumentTypes()))
    return emitOpError("inputs ") << TypeRange(getInputs()) << " do not match layer @"
           << layer.getSymName() << "'s arguments " << TypeRange(layer.getArgumentTypes());
  if (getResultTypes() != TypeRange(layer.getResultTypes()))
    return emitOpError("results do not match layer @") << layer.getSymName() << "'s results";
  ArrayRef<Type> args = layer.getArgumentTypes(), results = layer.getResultTypes();
  if (end - begin > 1 &&
      (args.size() < results.size() || args.take_front(results.size()) != results))
    return emitOpError("chaining several instances needs a layer whose first ")
           << results.size() << " arguments have its result types";
  return success();
}

//===----------------------------------------------------------------------===//
// Tensor ops
//===----------------------------------------------------------------------===//

LogicalResult EmbeddingOp::verify() {
  auto ids = tensorOf(getIds()), table = tensorOf(getTable()), out = tensorOf(getResult());
  if (table.getRank() != 2)
    return emitOpError("table must be [V, D], got ") << shapeStr(table.getShape());
  SmallVector<int64_t> expect(ids.getShape());
  expect.push_back(table.getDimSize(1));
  if (out.getShape() != ArrayRef<int64_t>(expect))
    return emitOpError("result shape ") << shapeStr(out.getShape()) << " should be "
           << shapeStr(expect);
  return success();
}

/// Shapes of a linear layer: x [..., K], w [N, K], optional bias [N], y [..., N].
static LogicalResult verifyLinear(Operation *op, Value input, Value weight, Value bias, Value result) {
  auto x = tensorOf(input), w = tensorOf(weight), y = tensorOf(result);
  auto emitOpError = [&](const Twine &message) { return op->emitOpError(message); };
  if (x.getRank() < 1 || w.getRank() != 2)
    return emitOpError("needs input [..., K] and weight [N, K]");
  int64_t k = x.getShape().back(), n = w.getDimSize(0);
  if (w.getDimSize(1) != k)
    return emitOpError("weight ") << shapeStr(w.getShape()) << " does not contract with input "
           << shapeStr(x.getShape()) << ": expected [N, " << k << "]";
  if (bias) {
    auto b = tensorOf(bias);
    if (b.getRank() != 1 || b.getDimSize(0) != n)
      return emitOpError("bias ") << shapeStr(b.getShape()) << " should be [" << n << "]";
  }
  SmallVector<int64_t> expect(x.getShape());
  expect.back() = n;
  if (y.getShape() != ArrayRef<int64_t>(expect))
    return emitOpError("result shape ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect);
  return success();
}

LogicalResult LinearOp::verify() {
  return verifyLinear(*this, getInput(), getWeight(), getBias(), getResult());
}

LogicalResult FusedLinearOp::verify() {
  if (failed(verifyLinear(*this, getInput(), getWeight(), getBias(), getResult())))
    return failure();
  if (getResidual() && getResidual().getType() != getResult().getType())
    return emitOpError("residual ") << shapeStr(tensorOf(getResidual()).getShape())
                                    << " should have the result's type " << getResult().getType();
  return success();
}

/// A gradient op's optional addend is added to its result: same type.
static LogicalResult verifyAddend(Operation *op, Value addend) {
  if (addend && addend.getType() != op->getResult(0).getType())
    return op->emitOpError("addend ") << shapeStr(tensorOf(addend).getShape())
                                      << " should have the result's type " << op->getResult(0).getType();
  return success();
}
LogicalResult LinearGradInputOp::verify() { return verifyAddend(*this, getAddend()); }
LogicalResult LayerNormGradInputOp::verify() { return verifyAddend(*this, getAddend()); }
LogicalResult RMSNormGradInputOp::verify() { return verifyAddend(*this, getAddend()); }

LogicalResult FusedElementwiseOp::verifyRegions() {
  Block &body = getBody().front();
  Type type = getResult().getType();
  if (body.getNumArguments() != getInputs().size())
    return emitOpError("body has ") << body.getNumArguments() << " arguments for " << getInputs().size()
                                    << " inputs";
  for (auto [arg, input] : llvm::zip(body.getArguments(), getInputs()))
    if (arg.getType() != input.getType())
      return emitOpError("body argument ") << arg.getArgNumber() << " has type " << arg.getType()
                                           << ", its input " << input.getType();
  for (Operation &op : body.without_terminator()) {
    if (!isFusibleElementwise(&op))
      return op.emitOpError("cannot be fused elementwise: only gelu, gelu_tanh, quick_gelu, silu, relu, add, mul "
                            "and activation_grad can");
    for (Value v : op.getOperands())
      if (v.getType() != type)
        return op.emitOpError("operand type ") << v.getType() << " differs from the fused result's " << type;
  }
  auto yield = dyn_cast<YieldOp>(body.getTerminator());
  if (!yield || yield.getOperands().size() != 1 || yield.getOperands()[0].getType() != type)
    return emitOpError("body must end in mm.yield of one ") << type;
  return success();
}

LogicalResult Conv2dOp::verify() {
  auto x = tensorOf(getInput()), w = tensorOf(getWeight()), y = tensorOf(getResult());
  if (x.getRank() != 4 || w.getRank() != 4)
    return emitOpError("needs input [B, C, H, W] and weight [O, C, KH, KW]");
  int64_t stride = getStride(), pad = getPadding();
  if (stride < 1 || pad < 0)
    return emitOpError("stride ") << stride << " must be >= 1 and padding " << pad << " >= 0";
  if (w.getDimSize(1) != x.getDimSize(1))
    return emitOpError("weight ") << shapeStr(w.getShape()) << " does not take the input's "
                                  << x.getDimSize(1) << " channels";
  if (getBias() && tensorOf(getBias()).getShape() != ArrayRef<int64_t>{w.getDimSize(0)})
    return emitOpError("bias ") << shapeStr(tensorOf(getBias()).getShape()) << " should be ["
                                << w.getDimSize(0) << "]";
  int64_t ho = (x.getDimSize(2) + 2 * pad - w.getDimSize(2)) / stride + 1;
  int64_t wo = (x.getDimSize(3) + 2 * pad - w.getDimSize(3)) / stride + 1;
  if (ho < 1 || wo < 1)
    return emitOpError("kernel ") << w.getDimSize(2) << "x" << w.getDimSize(3) << " does not fit the "
                                  << x.getDimSize(2) << "x" << x.getDimSize(3) << " input with padding " << pad;
  SmallVector<int64_t> expect{x.getDimSize(0), w.getDimSize(0), ho, wo};
  if (y.getShape() != ArrayRef<int64_t>(expect))
    return emitOpError("result shape ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect);
  return success();
}

LogicalResult PatchEmbedOp::verify() {
  auto x = tensorOf(getPixels()), w = tensorOf(getWeight()), y = tensorOf(getResult());
  if (x.getRank() != 4 || w.getRank() != 4)
    return emitOpError("needs pixels [B, C, H, W] and weight [D, C, P, P]");
  int64_t c = x.getDimSize(1), h = x.getDimSize(2), wd = x.getDimSize(3);
  int64_t d = w.getDimSize(0), p = w.getDimSize(2);
  if (w.getDimSize(1) != c || w.getDimSize(3) != p)
    return emitOpError("weight ") << shapeStr(w.getShape()) << " does not fit " << c
           << " channels with square patches";
  if (h % p || wd % p)
    return emitOpError("image ") << h << "x" << wd << " is not a multiple of the patch size " << p;
  SmallVector<int64_t> expect{x.getDimSize(0), (h / p) * (wd / p), d};
  if (y.getShape() != ArrayRef<int64_t>(expect))
    return emitOpError("result shape ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect);
  return success();
}

static LogicalResult verifyNorm(Operation *op, Value input, ArrayRef<Value> vectors, Value result,
                                double eps) {
  auto x = tensorOf(input);
  if (x.getRank() < 1)
    return op->emitOpError("input must have at least one dimension");
  int64_t d = x.getShape().back();
  for (Value v : vectors) {
    auto t = tensorOf(v);
    if (t.getRank() != 1 || t.getDimSize(0) != d)
      return op->emitOpError("scale/shift ") << shapeStr(t.getShape()) << " should be [" << d << "]";
  }
  if (result.getType() != input.getType())
    return op->emitOpError("result type must equal the input type");
  if (!(eps > 0.0))
    return op->emitOpError("eps must be positive");
  return success();
}

LogicalResult LayerNormOp::verify() {
  return verifyNorm(*this, getInput(), {getWeight(), getBias()}, getResult(),
                    getEps().convertToDouble());
}

LogicalResult RMSNormOp::verify() {
  return verifyNorm(*this, getInput(), {getWeight()}, getResult(), getEps().convertToDouble());
}

LogicalResult RoPEOp::verify() {
  auto x = tensorOf(getInput());
  if (getResult().getType() != getInput().getType())
    return emitOpError("result type must equal the input type");
  if (x.getRank() != 3)
    return emitOpError("input must be [B, S, H*Dh]");
  int64_t h = getNumHeads();
  if (h <= 0 || x.getDimSize(2) % h || (x.getDimSize(2) / h) % 2)
    return emitOpError("width ") << x.getDimSize(2) << " does not split into " << h
           << " heads of even size";
  return success();
}

int64_t AttentionOp::getPrefixLength() {
  if (auto layout = getLayoutAttr())
    return layout.getSizes()[0];
  return 0;
}

/// The optional run-time length of mm.attention and its backward ops: a
/// scalar, or one per batch row of the query.
static LogicalResult verifyAttentionLength(Operation *op, Value query, Value length) {
  if (!length)
    return success();
  auto q = tensorOf(query), lt = tensorOf(length);
  int64_t batch = q.getRank() > 0 ? q.getDimSize(0) : 0;
  if (lt.getRank() == 0 || (lt.getRank() == 1 && lt.getDimSize(0) == batch))
    return success();
  return op->emitOpError("length must be a scalar or one per batch row [") << batch << "], got "
         << shapeStr(lt.getShape());
}

/// T5's relative position bias of mm.attention and its backward ops: a table
/// [num_buckets, num_heads] with bias_max_distance, on self-attention under a
/// bidirectional, padding or causal mask; neither without the other.
static LogicalResult verifyPositionBias(Operation *op, Value query, Value key, Value table,
                                        std::optional<uint64_t> maxDistance, MaskKind mask,
                                        int64_t numHeads) {
  if (!table) {
    if (maxDistance)
      return op->emitOpError("bias_max_distance is set but there is no position_bias table");
    return success();
  }
  if (!maxDistance || *maxDistance < 1)
    return op->emitOpError("a position_bias table needs bias_max_distance >= 1");
  auto t = tensorOf(table);
  if (t.getRank() != 2 || t.getDimSize(1) != numHeads)
    return op->emitOpError("position_bias must be [num_buckets, ") << numHeads << "], got "
           << shapeStr(t.getShape());
  const bool bidirectional = positionBiasIsBidirectional(mask);
  if (!bidirectional && mask != MaskKind::Causal)
    return op->emitOpError("a position_bias applies under a bidirectional, padding or causal mask, not ")
           << stringifyMaskKind(mask);
  // Each direction's buckets: half exact offsets, half logarithmic ranges.
  const int64_t perDirection = bidirectional ? t.getDimSize(0) / 2 : t.getDimSize(0);
  if (perDirection < 2 || (bidirectional && t.getDimSize(0) % 2))
    return op->emitOpError("position_bias needs ") << (bidirectional ? "an even number of at least 4" : "at least 2")
           << " buckets under a " << stringifyMaskKind(mask) << " mask, got " << t.getDimSize(0);
  if (tensorOf(key).getDimSize(1) != tensorOf(query).getDimSize(1))
    return op->emitOpError("a position_bias needs self-attention (as many keys as queries)");
  return success();
}

/// The attention backward ops (statistics and gradients): length and bias.
template <typename OpT> static LogicalResult verifyAttentionBackward(OpT op) {
  if (failed(verifyAttentionLength(op, op.getQuery(), op.getLength()))) return failure();
  return verifyPositionBias(op, op.getQuery(), op.getKey(), op.getPositionBias(), op.getBiasMaxDistance(),
                            op.getMask(), op.getNumHeads());
}
LogicalResult AttentionStatsOp::verify() { return verifyAttentionBackward(*this); }
LogicalResult AttentionGradQueryOp::verify() { return verifyAttentionBackward(*this); }
LogicalResult AttentionGradKeyOp::verify() { return verifyAttentionBackward(*this); }
LogicalResult AttentionGradValueOp::verify() { return verifyAttentionBackward(*this); }
LogicalResult FusedAttentionOp::verify() {
  auto q = tensorOf(getQuery());
  if (getResult().getType() != getQuery().getType())
    return emitOpError("result type must equal the query type");
  auto lse = tensorOf(getLse());
  if (q.getRank() != 3 || lse.getRank() != 3 || lse.getDimSize(0) != q.getDimSize(0) ||
      lse.getDimSize(1) != getNumHeads() || lse.getDimSize(2) != q.getDimSize(1))
    return emitOpError("statistics ") << shapeStr(lse.getShape()) << " should be [" << q.getDimSize(0) << ", "
           << getNumHeads() << ", " << q.getDimSize(1) << "]";
  return verifyAttentionBackward(*this);
}
LogicalResult FusedAttentionGradOp::verify() {
  if (getGradQuery().getType() != getQuery().getType() || getGradKey().getType() != getKey().getType() ||
      getGradValue().getType() != getValue().getType())
    return emitOpError("results must have the query's, the key's and the value's types");
  return verifyAttentionBackward(*this);
}
LogicalResult AttentionGradPositionBiasOp::verify() {
  if (!getPositionBias())
    return emitOpError("needs the position_bias table");
  if (getResult().getType() != getPositionBias().getType())
    return emitOpError("result type must equal the position_bias table's type");
  return verifyAttentionBackward(*this);
}

LogicalResult AttentionOp::verify() {
  auto q = tensorOf(getQuery()), k = tensorOf(getKey()), v = tensorOf(getValue());
  if (q.getRank() != 3 || k.getRank() != 3 || v.getRank() != 3)
    return emitOpError("query, key and value must be [B, S, heads*head_dim]");
  int64_t h = getNumHeads(), hkv = getNumKvHeads();
  if (h <= 0 || hkv <= 0 || h % hkv)
    return emitOpError("num_heads ") << h << " must be a positive multiple of num_kv_heads " << hkv;
  if (q.getDimSize(2) % h)
    return emitOpError("query width ") << q.getDimSize(2) << " does not split into " << h << " heads";
  int64_t dh = q.getDimSize(2) / h;
  if (k.getShape() != v.getShape())
    return emitOpError("key ") << shapeStr(k.getShape()) << " and value " << shapeStr(v.getShape())
           << " shapes differ";
  if (k.getDimSize(0) != q.getDimSize(0) || k.getDimSize(2) != hkv * dh)
    return emitOpError("key/value ") << shapeStr(k.getShape()) << " should be [" << q.getDimSize(0)
           << ", Skv, " << hkv * dh << "]";
  if (getResult().getType() != getQuery().getType())
    return emitOpError("result type must equal the query type");
  if (!(getScale().convertToDouble() > 0.0))
    return emitOpError("scale must be positive");

  if (failed(verifyAttentionLength(*this, getQuery(), getLength())))
    return failure();
  MaskKind mask = getMask();
  if (mask == MaskKind::Padding && !getLength())
    return emitOpError("a padding mask needs the run-time length operand");
  int64_t s = q.getDimSize(1);
  if (k.getDimSize(1) != s && mask != MaskKind::Bidirectional)
    return emitOpError("cross-attention (") << s << " queries, " << k.getDimSize(1)
           << " keys) needs a bidirectional mask, got " << stringifyMaskKind(mask);

  SeqLayoutAttr layout = getLayoutAttr();
  auto needLayout = [&](StringRef first, StringRef second) -> LogicalResult {
    if (!layout)
      return emitOpError("mask ") << stringifyMaskKind(mask) << " needs a sequence layout #mm.seq_layout<"
             << first << " = N, " << second << " = M>";
    if (layout.getNames().size() != 2 || layout.getNames()[0].getValue() != first ||
        layout.getNames()[1].getValue() != second)
      return emitOpError("mask ") << stringifyMaskKind(mask) << " needs segments (" << first << ", "
             << second << ") in that order, got " << layout;
    return success();
  };
  switch (mask) {
  case MaskKind::ImagePrefixCausal:
    if (failed(needLayout("image", "text"))) return failure();
    break;
  case MaskKind::ItmBidirectional:
  case MaskKind::ItgMultimodalCausal:
  case MaskKind::ItcUnimodal:
    if (failed(needLayout("query", "text"))) return failure();
    break;
  default:
    break;
  }
  if (layout && layout.getTotal() != s)
    return emitOpError("sequence layout ") << layout << " covers " << layout.getTotal()
           << " positions but the sequence has " << s;
  return verifyPositionBias(*this, getQuery(), getKey(), getPositionBias(), getBiasMaxDistance(), mask, h);
}

LogicalResult ConcatOp::verify() {
  auto a = tensorOf(getLhs()), b = tensorOf(getRhs()), y = tensorOf(getResult());
  int64_t axis = getAxis();
  if (a.getRank() != b.getRank() || axis < 0 || axis >= a.getRank())
    return emitOpError("operands must have one rank and axis must be in range");
  SmallVector<int64_t> expect(a.getShape());
  for (int64_t i = 0; i < a.getRank(); ++i)
    if (i != axis && a.getDimSize(i) != b.getDimSize(i))
      return emitOpError("operand shapes ") << shapeStr(a.getShape()) << " and "
             << shapeStr(b.getShape()) << " differ outside axis " << axis;
  expect[axis] += b.getDimSize(axis);
  if (a.getElementType() != b.getElementType() || y.getElementType() != a.getElementType())
    return emitOpError("operands and result must have one element type");
  if (y.getShape() != ArrayRef<int64_t>(expect))
    return emitOpError("result shape ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect);
  return success();
}

LogicalResult SliceOp::verify() {
  auto x = tensorOf(getInput()), y = tensorOf(getResult());
  int64_t axis = getAxis();
  if (x.getRank() != y.getRank() || axis < 0 || axis >= x.getRank())
    return emitOpError("input and result must have one rank and axis must be in range");
  for (int64_t i = 0; i < x.getRank(); ++i)
    if (i != axis && x.getDimSize(i) != y.getDimSize(i))
      return emitOpError("result shape ") << shapeStr(y.getShape()) << " differs from input "
             << shapeStr(x.getShape()) << " outside axis " << axis;
  int64_t start = getStartAttr().getInt();
  if (start < 0 || start + y.getDimSize(axis) > x.getDimSize(axis))
    return emitOpError("slice [") << start << ", " << start + y.getDimSize(axis)
           << ") runs outside the input's " << x.getDimSize(axis) << " positions";
  return success();
}

LogicalResult BroadcastOp::verify() {
  auto x = tensorOf(getInput()), y = tensorOf(getResult());
  if (x.getRank() > y.getRank())
    return emitOpError("cannot broadcast ") << shapeStr(x.getShape()) << " to a lower rank";
  int64_t off = y.getRank() - x.getRank();
  for (int64_t i = 0; i < x.getRank(); ++i)
    if (x.getDimSize(i) != 1 && x.getDimSize(i) != y.getDimSize(off + i))
      return emitOpError("cannot broadcast ") << shapeStr(x.getShape()) << " to "
             << shapeStr(y.getShape());
  return success();
}

LogicalResult MergeImageFeaturesOp::verify() {
  auto e = tensorOf(getEmbeds()), ids = tensorOf(getIds()), f = tensorOf(getFeatures());
  if (e.getRank() != 3 || ids.getRank() != 2 || f.getRank() != 3)
    return emitOpError("needs embeds [B, S, D], ids [B, S] and features [B, N, D]");
  if (ids.getDimSize(0) != e.getDimSize(0) || ids.getDimSize(1) != e.getDimSize(1))
    return emitOpError("ids ") << shapeStr(ids.getShape()) << " do not match embeds "
           << shapeStr(e.getShape());
  if (f.getDimSize(0) != e.getDimSize(0) || f.getDimSize(2) != e.getDimSize(2))
    return emitOpError("features ") << shapeStr(f.getShape()) << " do not match embeds "
           << shapeStr(e.getShape()) << " in batch and width";
  if (f.getDimSize(1) > e.getDimSize(1))
    return emitOpError("") << f.getDimSize(1) << " image features do not fit a sequence of "
           << e.getDimSize(1);
  if (getResult().getType() != getEmbeds().getType())
    return emitOpError("result type must equal the embeds type");
  return success();
}

LogicalResult CrossEntropyOp::verify() {
  auto logits = tensorOf(getLogits()), targets = tensorOf(getTargets());
  if (logits.getRank() < 1 || logits.getShape().drop_back() != targets.getShape())
    return emitOpError("targets ") << shapeStr(targets.getShape()) << " must have the logits' shape "
           << shapeStr(logits.getShape()) << " without its last (vocabulary) dimension";
  if (tensorOf(getResult()).getElementType() != logits.getElementType())
    return emitOpError("the loss must have the logits' element type");
  return success();
}

LogicalResult ConstantOp::verify() {
  double v = getValue().convertToDouble();
  if (tensorOf(getResult()).getElementType().isInteger(32) &&
      (v != std::floor(v) || std::fabs(v) > 2147483647.0))
    return emitOpError("an i32 constant needs an integer value, got ") << v;
  return success();
}

LogicalResult ReshapeOp::verify() {
  auto x = tensorOf(getInput()), y = tensorOf(getResult());
  if (x.getNumElements() != y.getNumElements() || x.getElementType() != y.getElementType())
    return emitOpError("cannot reshape ") << shapeStr(x.getShape()) << " (" << x.getNumElements()
           << " elements) to " << shapeStr(y.getShape()) << " (" << y.getNumElements()
           << " elements) of the same element type";
  return success();
}

LogicalResult TransposeOp::verify() {
  auto x = tensorOf(getInput()), y = tensorOf(getResult());
  SmallVector<int64_t> expect(x.getShape());
  if (x.getRank() < 2)
    return emitOpError("needs at least two axes, got ") << shapeStr(x.getShape());
  std::swap(expect[x.getRank() - 1], expect[x.getRank() - 2]);
  if (y.getShape() != ArrayRef<int64_t>(expect) || y.getElementType() != x.getElementType())
    return emitOpError("result ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect);
  return success();
}

LogicalResult ReduceMaxOp::verify() {
  auto x = tensorOf(getInput()), y = tensorOf(getResult());
  int64_t axis = getAxis();
  if (axis < 0 || axis >= x.getRank())
    return emitOpError("axis ") << axis << " is outside the input's " << x.getRank() << " axes";
  SmallVector<int64_t> expect(x.getShape());
  expect.erase(expect.begin() + axis);
  if (y.getShape() != ArrayRef<int64_t>(expect) || y.getElementType() != x.getElementType())
    return emitOpError("result ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect)
           << " (the input without axis " << axis << ")";
  return success();
}

LogicalResult L2NormalizeOp::verify() {
  if (!(getEps().convertToDouble() > 0.0))
    return emitOpError("eps must be positive (it bounds the division of an all-zero row), got ")
           << getEps().convertToDouble();
  return success();
}

LogicalResult GatherOp::verify() {
  auto x = tensorOf(getInput()), idx = tensorOf(getIndices()), y = tensorOf(getResult());
  if (x.getRank() < 1 || idx.getRank() != 1)
    return emitOpError("needs an input [B, ...] and indices [N]");
  SmallVector<int64_t> expect(x.getShape());
  expect[0] = idx.getDimSize(0);
  if (y.getShape() != ArrayRef<int64_t>(expect) || y.getElementType() != x.getElementType())
    return emitOpError("result ") << shapeStr(y.getShape()) << " should be " << shapeStr(expect)
           << " of the input's element type";
  return success();
}

LogicalResult SampleNegativesOp::verify() {
  auto sim = tensorOf(getSimilarity()), u = tensorOf(getUniform()), y = tensorOf(getResult());
  if (sim.getRank() != 2 || sim.getDimSize(0) != sim.getDimSize(1) || sim.getDimSize(0) < 2)
    return emitOpError("needs square similarities [B, B] with B >= 2, got ") << shapeStr(sim.getShape());
  int64_t b = sim.getDimSize(0);
  if (u.getRank() != 1 || u.getDimSize(0) != b || y.getRank() != 1 || y.getDimSize(0) != b)
    return emitOpError("needs one uniform number and gives one index per row: [") << b << "]";
  return success();
}

LogicalResult ReduceSumOp::verify() {
  if (tensorOf(getResult()).getElementType() != tensorOf(getInput()).getElementType())
    return emitOpError("the sum must have the input's element type");
  return success();
}

LogicalResult CacheUpdateOp::verify() {
  auto c = tensorOf(getCache()), u = tensorOf(getUpdate());
  if (c.getRank() != 4 || u.getRank() != 3)
    return emitOpError("needs a cache [L, B, Smax, W] and new entries [B, T, W]");
  if (u.getDimSize(0) != c.getDimSize(1) || u.getDimSize(2) != c.getDimSize(3) || u.getDimSize(1) > c.getDimSize(2))
    return emitOpError("new entries ") << shapeStr(u.getShape()) << " do not fit the cache " << shapeStr(c.getShape());
  int64_t layer = getLayerAttr().getInt();
  if (layer < 0 || (!(*this)->getParentOfType<LayerOp>() && layer >= c.getDimSize(0)))
    return emitOpError("layer ") << layer << " is outside the cache's " << c.getDimSize(0) << " layers";
  if (getResult().getType() != getCache().getType())
    return emitOpError("the result is the updated cache and has its type");
  return success();
}

LogicalResult CacheReadOp::verify() {
  auto c = tensorOf(getCache()), r = tensorOf(getResult());
  if (c.getRank() != 4 || r.getShape() != c.getShape().drop_front())
    return emitOpError("reads one layer [B, Smax, W] of a cache [L, B, Smax, W]");
  int64_t layer = getLayerAttr().getInt();
  if (layer < 0 || (!(*this)->getParentOfType<LayerOp>() && layer >= c.getDimSize(0)))
    return emitOpError("layer ") << layer << " is outside the cache's " << c.getDimSize(0) << " layers";
  return success();
}

bool mm::positionBiasIsBidirectional(MaskKind mask) {
  return mask == MaskKind::Bidirectional || mask == MaskKind::Padding;
}

bool mm::isFusibleElementwise(Operation *op) {
  return isa<GeluOp, GeluTanhOp, QuickGeluOp, SiluOp, ReluOp, AddOp, MulOp, ActivationGradOp>(op);
}

std::optional<ActivationKind> mm::activationKindOf(Operation *op) {
  if (isa<GeluOp>(op)) return ActivationKind::Gelu;
  if (isa<GeluTanhOp>(op)) return ActivationKind::GeluTanh;
  if (isa<QuickGeluOp>(op)) return ActivationKind::QuickGelu;
  if (isa<SiluOp>(op)) return ActivationKind::Silu;
  if (isa<ReluOp>(op)) return ActivationKind::Relu;
  return std::nullopt;
}
