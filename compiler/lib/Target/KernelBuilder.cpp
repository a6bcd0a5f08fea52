//===- KernelBuilder.cpp - one target-neutral kernel per mm tensor op -------===//
//
// Each builder below writes the body of one work item `i` for one op, shapes
// baked in. Bodies use only the C++ subset that CUDA device code accepts.
// Forward kernels only; the plain references they are tested against live in
// tests/reference/RefOps.cpp.
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Kernels.h"
#include "mm/Dialect/MMDialect.h"

#include "llvm/ADT/StringExtras.h"
#include "llvm/ADT/TypeSwitch.h"
#include <map>
#include <sstream>

using namespace mlir;

namespace mm {
namespace {

/// Replaces each `$NAME` in `text` by its value; longest names first so
/// `$DH` is not read as `$D` followed by `H`.
std::string subst(std::string text, std::map<std::string, std::string> vars) {
  std::vector<std::pair<std::string, std::string>> ordered(vars.begin(), vars.end());
  std::sort(ordered.begin(), ordered.end(), [](auto &a, auto &b) {
    return a.first.size() > b.first.size();
  });
  for (auto &[name, value] : ordered) {
    std::string pattern = "$" + name;
    for (size_t pos = text.find(pattern); pos != std::string::npos;
         pos = text.find(pattern, pos + value.size()))
      text.replace(pos, pattern.size(), value);
  }
  return text;
}

std::string num(int64_t v) { return std::to_string(v); }

/// A float literal that round-trips (e.g. `1.702f`, `1e-05f`).
std::string flt(double v) {
  std::ostringstream os;
  os.precision(9);
  os << v;
  std::string s = os.str();
  if (s.find_first_of(".eE") == std::string::npos && s.find("inf") == std::string::npos)
    s += ".0";
  return s + "f";
}

RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }
std::string argType(Value v, bool output) {
  bool isInt = typeOf(v).getElementType().isInteger(32);
  return std::string(output ? "" : "const ") + (isInt ? "int32_t *" : "float *");
}
std::string shapeLegend(Value v) {
  std::string s = "[";
  auto shape = typeOf(v).getShape();
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

Kernel makeKernel(Operation *op, ArrayRef<std::string> names, int64_t domain, std::string body) {
  Kernel k;
  std::string legend = op->getName().getStringRef().str() + ":";
  for (auto [v, name] : llvm::zip(op->getOperands(), names)) {
    k.args.push_back({argType(v, false), name});
    legend += " " + name + shapeLegend(v);
  }
  k.args.push_back({argType(op->getResult(0), true), "y"});
  legend += " -> y" + shapeLegend(op->getResult(0));
  k.comment = legend;
  k.domain = domain;
  k.body = std::move(body);
  k.name = llvm::join(llvm::split(op->getName().getStringRef().drop_front(3), '.'), "_");
  k.key = k.comment + "\n" + k.body;
  return k;
}

Kernel linear(LinearOp op) {
  auto x = typeOf(op.getInput()), w = typeOf(op.getWeight());
  int64_t k = x.getShape().back(), n = w.getDimSize(0), m = x.getNumElements() / k;
  std::string body = subst(R"(const int64_t m = i / $N, n = i % $N;
const float *xr = x + m * $K, *wr = w + n * $K;
float acc = 0.0f;
MM_SIMD_SUM
for (int64_t k = 0; k < $K; ++k) acc += xr[k] * wr[k];
y[i] = acc$BIAS;
)", {{"N", num(n)}, {"K", num(k)}, {"BIAS", op.getBias() ? " + b[n]" : ""}});
  SmallVector<std::string> names{"x", "w"};
  if (op.getBias()) names.push_back("b");
  return makeKernel(op, names, m * n, body);
}

Kernel embedding(EmbeddingOp op) {
  auto table = typeOf(op.getTable());
  int64_t v = table.getDimSize(0), d = table.getDimSize(1);
  std::string body = subst(R"(const int64_t t = i / $D, d = i % $D;
const int32_t id = ids[t];
y[i] = (id >= 0 && id < $V) ? table[(int64_t)id * $D + d] : 0.0f;
)", {{"D", num(d)}, {"V", num(v)}});
  return makeKernel(op, {"ids", "table"}, typeOf(op.getResult()).getNumElements(), body);
}

Kernel patchEmbed(PatchEmbedOp op) {
  auto x = typeOf(op.getPixels()), w = typeOf(op.getWeight());
  int64_t c = x.getDimSize(1), h = x.getDimSize(2), wd = x.getDimSize(3);
  int64_t d = w.getDimSize(0), p = w.getDimSize(2);
  int64_t gw = wd / p, np = (h / p) * gw;
  std::string body = subst(R"(const int64_t d = i % $D, p = (i / $D) % $NP, b = i / ($D * $NP);
const int64_t py = p / $GW, px = p % $GW;
float acc = 0.0f;
for (int64_t c = 0; c < $C; ++c)
  for (int64_t u = 0; u < $P; ++u) {
    const float *row = pix + ((b * $C + c) * $H + py * $P + u) * $W + px * $P;
    const float *wr = w + ((d * $C + c) * $P + u) * $P;
    for (int64_t v = 0; v < $P; ++v) acc += row[v] * wr[v];
  }
y[i] = acc;
)", {{"D", num(d)}, {"NP", num(np)}, {"GW", num(gw)}, {"C", num(c)}, {"P", num(p)},
     {"H", num(h)}, {"W", num(wd)}});
  return makeKernel(op, {"pix", "w"}, typeOf(op.getResult()).getNumElements(), body);
}

Kernel layerNorm(LayerNormOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const float *xr = x + i * $D;
float *yr = y + i * $D;
float mean = 0.0f, var = 0.0f;
for (int64_t d = 0; d < $D; ++d) mean += xr[d];
mean /= $D;
for (int64_t d = 0; d < $D; ++d) { const float t = xr[d] - mean; var += t * t; }
var /= $D;
const float inv = 1.0f / sqrtf(var + $EPS);
for (int64_t d = 0; d < $D; ++d) yr[d] = (xr[d] - mean) * inv * g[d] + b[d];
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x", "g", "b"}, x.getNumElements() / d, body);
}

Kernel rmsNorm(RMSNormOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const float *xr = x + i * $D;
float *yr = y + i * $D;
float ss = 0.0f;
for (int64_t d = 0; d < $D; ++d) ss += xr[d] * xr[d];
const float inv = 1.0f / sqrtf(ss / $D + $EPS);
for (int64_t d = 0; d < $D; ++d) yr[d] = g[d] * (xr[d] * inv);
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x", "g"}, x.getNumElements() / d, body);
}

Kernel unary(Operation *op, StringRef expr) {
  std::string body = "const float v = x[i];\ny[i] = " + expr.str() + ";\n";
  return makeKernel(op, {"x"}, typeOf(op->getResult(0)).getNumElements(), body);
}

Kernel binary(Operation *op, StringRef sign) {
  std::string body = "y[i] = a[i] " + sign.str() + " b[i];\n";
  return makeKernel(op, {"a", "b"}, typeOf(op->getResult(0)).getNumElements(), body);
}

Kernel rope(RoPEOp op) {
  auto x = typeOf(op.getInput());
  int64_t s = x.getDimSize(1), h = op.getNumHeads(), dh = x.getDimSize(2) / h;
  std::string body = subst(R"(const int64_t j = i % $HALF, h = (i / $HALF) % $H;
const int64_t s = (i / ($HALF * $H)) % $S, b = i / ($HALF * $H * $S);
const int64_t base = ((b * $S + s) * $H + h) * $DH;
const float inv_freq = 1.0f / powf($THETA, (float)(2 * j) / (float)$DH);
const float angle = (float)s * inv_freq;
const float c = cosf(angle), sn = sinf(angle);
const float x1 = x[base + j], x2 = x[base + j + $HALF];
y[base + j] = x1 * c - x2 * sn;
y[base + j + $HALF] = x2 * c + x1 * sn;
)", {{"HALF", num(dh / 2)}, {"H", num(h)}, {"S", num(s)}, {"DH", num(dh)},
     {"THETA", flt(op.getTheta().convertToDouble())}});
  return makeKernel(op, {"x"}, x.getNumElements() / 2, body);
}

/// The mask as a condition on query `qi`, key `kj`, real length `len` and
/// first-segment length `$P`.
std::string maskCondition(MaskKind kind, bool selfAttention) {
  std::string len = selfAttention ? "kj < len" : "true";
  switch (kind) {
  case MaskKind::Bidirectional:
  case MaskKind::Padding:
  case MaskKind::ItmBidirectional:
    return len;
  case MaskKind::Causal:
  case MaskKind::ImagePrefixCausal:
    return len + " && kj <= qi";
  case MaskKind::ItgMultimodalCausal:
    return len + " && (qi < $P ? kj < $P : (kj < $P || kj <= qi))";
  case MaskKind::ItcUnimodal:
    return len + " && ((qi < $P) == (kj < $P))";
  }
  return "false";
}

Kernel attention(AttentionOp op) {
  auto q = typeOf(op.getQuery()), k = typeOf(op.getKey());
  int64_t s = q.getDimSize(1), skv = k.getDimSize(1), h = op.getNumHeads();
  int64_t hkv = op.getNumKvHeads(), dh = q.getDimSize(2) / h;
  std::string body = subst(R"(// One query row of one head; online softmax, scores never stored.
const int64_t qi = i % $S, h = (i / $S) % $H, b = i / ($S * $H);
const int64_t kvh = h / $GROUP;
const int64_t len = $LEN;
const float *qr = q + (b * $S + qi) * $QW + h * $DH;
float m = -INFINITY, l = 0.0f, acc[$DH];
for (int64_t d = 0; d < $DH; ++d) acc[d] = 0.0f;
for (int64_t kj = 0; kj < $SKV; ++kj) {
  if (!($MASK)) continue;
  const float *kr = k + (b * $SKV + kj) * $KW + kvh * $DH;
  const float *vr = v + (b * $SKV + kj) * $KW + kvh * $DH;
  float score = 0.0f;
  for (int64_t d = 0; d < $DH; ++d) score += qr[d] * kr[d];
  score *= $SCALE;
  if (score > m) {
    const float corr = expf(m - score);
    l *= corr;
    for (int64_t d = 0; d < $DH; ++d) acc[d] *= corr;
    m = score;
  }
  const float p = expf(score - m);
  l += p;
  for (int64_t d = 0; d < $DH; ++d) acc[d] += p * vr[d];
}
float *yr = y + (b * $S + qi) * $QW + h * $DH;
const float inv = l > 0.0f ? 1.0f / l : 0.0f;
for (int64_t d = 0; d < $DH; ++d) yr[d] = acc[d] * inv;
)", {{"MASK", maskCondition(op.getMask(), s == skv)}});
  body = subst(body, {{"LEN", op.getLength() ? "(int64_t)length[0]" : num(skv)}, {"S", num(s)}, {"SKV", num(skv)}, {"H", num(h)}, {"GROUP", num(h / hkv)},
                      {"QW", num(h * dh)}, {"KW", num(hkv * dh)}, {"DH", num(dh)},
                      {"P", num(op.getPrefixLength())},
                      {"SCALE", flt(op.getScale().convertToDouble())}});
  SmallVector<std::string> names{"q", "k", "v"};
  if (op.getLength()) names.push_back("length");
  return makeKernel(op, names, q.getDimSize(0) * h * s, body);
}

/// Splits a shape at `axis` into outer * n * inner.
void splitAt(RankedTensorType t, int64_t axis, int64_t &outer, int64_t &inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.getDimSize(i);
  for (int64_t i = axis + 1; i < t.getRank(); ++i) inner *= t.getDimSize(i);
}

Kernel concat(ConcatOp op) {
  auto a = typeOf(op.getLhs()), b = typeOf(op.getRhs());
  int64_t axis = op.getAxis(), outer, inner;
  splitAt(a, axis, outer, inner);
  int64_t na = a.getDimSize(axis), nb = b.getDimSize(axis);
  std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NT, o = i / ($INNER * $NT);
y[i] = j < $NA ? a[(o * $NA + j) * $INNER + in] : b[(o * $NB + (j - $NA)) * $INNER + in];
)", {{"INNER", num(inner)}, {"NT", num(na + nb)}, {"NA", num(na)}, {"NB", num(nb)}});
  return makeKernel(op, {"a", "b"}, typeOf(op.getResult()).getNumElements(), body);
}

Kernel slice(SliceOp op) {
  auto x = typeOf(op.getInput()), y = typeOf(op.getResult());
  int64_t axis = op.getAxis(), outer, inner;
  splitAt(x, axis, outer, inner);
  std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NY, o = i / ($INNER * $NY);
y[i] = x[(o * $NX + $START + j) * $INNER + in];
)", {{"INNER", num(inner)}, {"NY", num(y.getDimSize(axis))}, {"NX", num(x.getDimSize(axis))},
     {"START", num(op.getStart())}});
  return makeKernel(op, {"x"}, y.getNumElements(), body);
}

Kernel broadcast(BroadcastOp op) {
  auto x = typeOf(op.getInput()), y = typeOf(op.getResult());
  int64_t off = y.getRank() - x.getRank();
  std::string body = "int64_t rem = i, src = 0;\n";
  int64_t stride = 1;
  for (int64_t d = y.getRank() - 1; d >= 0; --d) {
    int64_t xd = d - off;
    bool used = xd >= 0 && x.getDimSize(xd) != 1;
    body += "{ const int64_t idx = rem % " + num(y.getDimSize(d)) + "; rem /= " +
            num(y.getDimSize(d)) + ";" + (used ? " src += idx * " + num(stride) + ";" : " (void)idx;") +
            " }\n";
    if (xd >= 0) stride *= x.getDimSize(xd);
  }
  body += "y[i] = x[src];\n";
  return makeKernel(op, {"x"}, y.getNumElements(), body);
}

Kernel mergeImageFeatures(MergeImageFeaturesOp op) {
  auto e = typeOf(op.getEmbeds()), f = typeOf(op.getFeatures());
  std::string body = subst(R"(const int64_t d = i % $D, s = (i / $D) % $S, b = i / ($D * $S);
const int32_t *row = ids + b * $S;
float out = embeds[i];
if (row[s] == $TOKEN) {
  int64_t j = 0;
  for (int64_t t = 0; t < s; ++t) j += (row[t] == $TOKEN);
  if (j < $N) out = feats[(b * $N + j) * $D + d];
}
y[i] = out;
)", {{"D", num(e.getDimSize(2))}, {"S", num(e.getDimSize(1))}, {"N", num(f.getDimSize(1))},
     {"TOKEN", num(op.getImageTokenIndex())}});
  return makeKernel(op, {"embeds", "ids", "feats"}, e.getNumElements(), body);
}

} // namespace

FailureOr<Kernel> buildKernel(Operation *op) {
  std::optional<Kernel> k = llvm::TypeSwitch<Operation *, std::optional<Kernel>>(op)
      .Case([](LinearOp o) { return linear(o); })
      .Case([](EmbeddingOp o) { return embedding(o); })
      .Case([](PatchEmbedOp o) { return patchEmbed(o); })
      .Case([](LayerNormOp o) { return layerNorm(o); })
      .Case([](RMSNormOp o) { return rmsNorm(o); })
      .Case([](GeluOp o) { return unary(o, "0.5f * v * (1.0f + erff(v * 0.70710678118654752f))"); })
      .Case([](QuickGeluOp o) { return unary(o, "v / (1.0f + expf(-1.702f * v))"); })
      .Case([](SiluOp o) { return unary(o, "v / (1.0f + expf(-v))"); })
      .Case([](ReluOp o) { return unary(o, "v > 0.0f ? v : 0.0f"); })
      .Case([](AddOp o) { return binary(o, "+"); })
      .Case([](MulOp o) { return binary(o, "*"); })
      .Case([](RoPEOp o) { return rope(o); })
      .Case([](AttentionOp o) { return attention(o); })
      .Case([](ConcatOp o) { return concat(o); })
      .Case([](SliceOp o) { return slice(o); })
      .Case([](BroadcastOp o) { return broadcast(o); })
      .Case([](MergeImageFeaturesOp o) { return mergeImageFeatures(o); })
      .Default([](Operation *) { return std::nullopt; });
  if (!k) {
    op->emitOpError("has no kernel in target code generation");
    return failure();
  }
  return *k;
}

const char *kernelPrelude() {
  return R"(#include <math.h>
#include <stdint.h>
#include <string.h>
)";
}

} // namespace mm
