//===- KernelBuilder.cpp - one target-neutral kernel per mm tensor op -------===//
//
// Each builder below writes the body of one work item `i` for one op, shapes
// baked in. Bodies use only the C++ subset that CUDA device code accepts.
// Forward kernels only; the plain references they are tested against live in
// tests/reference/RefOps.cpp.
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Kernels.h"
#include "mm/Compiler/Passes.h"
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

/// A literal of the kernel's element type `T`, exact in double.
std::string flt(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  std::string s = os.str();
  if (s.find_first_of(".eE") == std::string::npos && s.find("inf") == std::string::npos)
    s += ".0";
  return "(T)" + s;
}

RankedTensorType typeOf(Value v) { return cast<RankedTensorType>(v.getType()); }

/// The C type of a tensor's elements.
std::string cType(Type element) {
  if (element.isInteger(32)) return "int32_t";
  if (element.isF64()) return "double";
  return "float";
}
std::string argType(Value v, bool output) {
  return std::string(output ? "" : "const ") + cType(typeOf(v).getElementType()) + " *";
}
std::string shapeLegend(Value v) {
  std::string s = "[";
  auto shape = typeOf(v).getShape();
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

/// The kernel of OP: its operands named NAMES, its results RESULTS (one
/// result: `y`), a loop of DOMAIN items over BODY.
Kernel makeKernel(Operation *op, ArrayRef<std::string> names, int64_t domain, std::string body,
                  ArrayRef<std::string> results = {"y"}) {
  Kernel k;
  std::string legend = op->getName().getStringRef().str() + ":";
  for (auto [v, name] : llvm::zip(op->getOperands(), names)) {
    k.args.push_back({argType(v, false), name});
    legend += " " + name + shapeLegend(v);
  }
  legend += " ->";
  for (auto [v, name] : llvm::zip_equal(op->getResults(), results)) {
    k.args.push_back({argType(v, true), name});
    legend += " " + name + shapeLegend(v);
  }
  k.comment = legend;
  k.domain = domain;
  for (Value v : op->getOperands()) k.elements += typeOf(v).getNumElements();
  for (Value v : op->getResults()) k.elements += typeOf(v).getNumElements();
  // Bodies are written over `T`, the op's floating-point element type.
  Type element = typeOf(op->getResult(0)).getElementType();
  for (Value v : op->getOperands())
    if (isa<FloatType>(typeOf(v).getElementType())) element = typeOf(v).getElementType();
  k.elementType = cType(element);
  k.body = std::move(body);
  k.name = llvm::join(llvm::split(op->getName().getStringRef().drop_front(3), '.'), "_");
  k.key = k.comment + "\n" + k.elementType + "\n" + k.body;
  return k;
}

/// Gives `k` a whole-function body for the CPU (CUDA keeps the per-item one).
Kernel withHostBody(Kernel k, std::string hostBody) {
  k.hostBody = std::move(hostBody);
  k.key += "\n" + k.hostBody;
  return k;
}

/// Whether mm-bound-rows stopped OP at the sequence's length: its kernel then
/// takes `rows` (the length, an entry argument) after the operands.
bool rowsBounded(Operation *op) { return op->hasAttr(kRowsAttr); }
Kernel withRowsArg(Kernel k, Operation *op) {
  k.args.insert(k.args.begin() + op->getNumOperands(), {"const int32_t *", "rows"});
  k.key += "\nrows";
  return k;
}
/// The rows a bounded product computes: the length clamped to [0, M], as `mb`.
std::string boundedRows(int64_t m) {
  return "const int64_t mb = rows[0] < 0 ? 0 : (rows[0] > " + std::to_string(m) + " ? " + std::to_string(m) +
         " : (int64_t)rows[0]);\n";
}
/// A bounded product's kernel: HOST computes rows [0, mb) of the M x WIDTH
/// result y; the rows past them are zeros (finite, and read by nothing that
/// counts).
Kernel boundedProduct(Kernel k, Operation *op, const std::string &host, int64_t m, int64_t width) {
  return withHostBody(withRowsArg(std::move(k), op),
                      boundedRows(m) + host + "if (mb < " + std::to_string(m) + ") memset(y + mb * " +
                          std::to_string(width) + ", 0, sizeof(T) * (" + std::to_string(m) + " - mb) * " +
                          std::to_string(width) + ");\n");
}

/// The CPU computes products with the packed GEMM (runtime/include/mm/cpu/Gemm.h):
/// C[M,N] (+)= A(m,k) . B(k,n) with A(m,k) = a[m*rsa + k*csa], B(k,n) = b[k*rsb + n*csb].
/// M and K are expressions (a bounded product's `mb`), or numbers below.
std::string gemmCall(const std::string &m, int64_t n, const std::string &k, StringRef a, int64_t rsa, int64_t csa,
                     StringRef b, int64_t rsb, int64_t csb, bool accumulate) {
  return "mm_cpu::gemm<T>(" + m + ", " + num(n) + ", " + k + ", " + a.str() + ", " + num(rsa) + ", " + num(csa) +
         ", " + b.str() + ", " + num(rsb) + ", " + num(csb) + ", y, " + num(n) + ", " +
         (accumulate ? "true" : "false") + ");\n";
}
std::string gemmCall(int64_t m, int64_t n, int64_t k, StringRef a, int64_t rsa, int64_t csa,
                     StringRef b, int64_t rsb, int64_t csb, bool accumulate) {
  return gemmCall(num(m), n, num(k), a, rsa, csa, b, rsb, csb, accumulate);
}

/// f(v) of an activation, an expression over `v`.
std::string activationExpr(ActivationKind kind) {
  switch (kind) {
  case ActivationKind::Gelu: return "mm_gelu(v)"; // kernelPrelude
  case ActivationKind::GeluTanh:
    return "(T)0.5 * v * (1 + tanh((T)0.79788456080286536 * (v + (T)0.044715 * v * v * v)))";
  case ActivationKind::QuickGelu: return "v / (1 + exp((T)-1.702 * v))";
  case ActivationKind::Silu: return "v / (1 + exp(-v))";
  case ActivationKind::Relu: return "v > 0 ? v : (T)0";
  }
  llvm_unreachable("unknown activation");
}

/// Statements that set OUT to a linear layer's epilogue of `acc` (the dot
/// product of output element (m, n)): + b[n], the activation, + RESIDUAL.
std::string linearEpilogue(bool bias, std::optional<ActivationKind> act, StringRef residual,
                           StringRef out) {
  std::string code = std::string("const T v = acc") + (bias ? " + b[n]" : "") + ";\n";
  code += "const T z = " + (act ? activationExpr(*act) : std::string("v")) + ";\n";
  code += out.str() + " = z" + (residual.empty() ? "" : " + " + residual.str()) + ";\n";
  return code;
}

/// mm.linear and mm.fused_linear: y[M,N] = residual + act(x[M,K] . w[N,K]^T + b).
/// The CPU runs the packed GEMM with the epilogue applied to each finished
/// block (B(k,n) = w[n*K + k]); a plain product has none.
Kernel linearKernel(Operation *op, Value input, Value weight, Value bias, Value residual,
                    std::optional<ActivationKind> act) {
  auto x = typeOf(input), w = typeOf(weight);
  int64_t k = x.getShape().back(), n = w.getDimSize(0), m = x.getNumElements() / k;
  std::string body = subst(R"(const int64_t m = i / $N, n = i % $N;
const T *xr = x + m * $K, *wr = w + n * $K;
T acc = 0;
MM_SIMD_SUM
for (int64_t k = 0; k < $K; ++k) acc += xr[k] * wr[k];
)", {{"N", num(n)}, {"K", num(k)}}) + linearEpilogue((bool)bias, act, residual ? "r[i]" : "", "y[i]");
  SmallVector<std::string> names{"x", "w"};
  if (bias) names.push_back("b");
  if (residual) names.push_back("r");
  const bool bounded = rowsBounded(op);
  const std::string rows = bounded ? "mb" : num(m);
  std::string host;
  if (!bias && !residual && !act) {
    host = gemmCall(rows, n, num(k), "x", k, 1, "w", 1, k, false);
  } else {
    std::string epilogue = linearEpilogue((bool)bias, act, residual ? "rr[n]" : "", "yr[n]");
    std::string indented;
    for (StringRef line : llvm::split(StringRef(epilogue).rtrim('\n'), '\n'))
      indented += "    " + line.str() + "\n";
    host = subst(R"(auto epilogue = [&](int64_t m, int64_t n0, int64_t n1) {
  T *yr = y + m * $N;$RESIDUAL
  for (int64_t n = n0; n < n1; ++n) {
    const T acc = yr[n];
$EPILOGUE  }
};
mm_cpu::gemm<T>($M, $N, $K, x, $K, 1, w, 1, $K, y, $N, false, mm_cpu::epilogueRef(epilogue));
)", {{"M", rows}, {"N", num(n)}, {"K", num(k)}, {"EPILOGUE", indented},
     {"RESIDUAL", residual ? "\n  const T *rr = r + m * " + num(n) + ";" : ""}});
  }
  Kernel kernel = makeKernel(op, names, m * n, body);
  return bounded ? boundedProduct(std::move(kernel), op, host, m, n) : withHostBody(std::move(kernel), host);
}

Kernel linear(LinearOp op) {
  return linearKernel(op, op.getInput(), op.getWeight(), op.getBias(), Value(), std::nullopt);
}

Kernel fusedLinear(FusedLinearOp op) {
  std::optional<ActivationKind> act;
  if (auto a = op.getActivationAttr()) act = a.getValue();
  return linearKernel(op, op.getInput(), op.getWeight(), op.getBias(), op.getResidual(), act);
}

Kernel embedding(EmbeddingOp op) {
  auto table = typeOf(op.getTable());
  int64_t v = table.getDimSize(0), d = table.getDimSize(1);
  std::string body = subst(R"(const int64_t t = i / $D, d = i % $D;
const int32_t id = ids[t];
y[i] = (id >= 0 && id < $V) ? table[(int64_t)id * $D + d] : (T)0;
)", {{"D", num(d)}, {"V", num(v)}});
  return makeKernel(op, {"ids", "table"}, typeOf(op.getResult()).getNumElements(), body);
}

/// The CPU body of a convolution-like kernel (a convolution, a patch
/// embedding, their gradients): a column buffer of COLS elements (what
/// im2col unfolds, or what col2im folds back), then PERIMAGE for each image
/// `b` of the BATCH.
std::string perImageWithColumns(StringRef cols, StringRef batch, StringRef perImage) {
  return ("T *col = (T *)malloc(sizeof(T) * " + cols + ");\nfor (int64_t b = 0; b < " + batch + "; ++b) {\n" +
          perImage + "}\nfree(col);\n").str();
}

Kernel patchEmbed(PatchEmbedOp op) {
  auto x = typeOf(op.getPixels()), w = typeOf(op.getWeight());
  int64_t c = x.getDimSize(1), h = x.getDimSize(2), wd = x.getDimSize(3);
  int64_t d = w.getDimSize(0), p = w.getDimSize(2);
  int64_t gw = wd / p, np = (h / p) * gw;
  std::string body = subst(R"(const int64_t d = i % $D, p = (i / $D) % $NP, b = i / ($D * $NP);
const int64_t py = p / $GW, px = p % $GW;
T acc = 0;
for (int64_t c = 0; c < $C; ++c)
  for (int64_t u = 0; u < $P; ++u) {
    const T *row = pix + ((b * $C + c) * $H + py * $P + u) * $W + px * $P;
    const T *wr = w + ((d * $C + c) * $P + u) * $P;
    for (int64_t v = 0; v < $P; ++v) acc += row[v] * wr[v];
  }
y[i] = acc;
)", {{"D", num(d)}, {"NP", num(np)}, {"GW", num(gw)}, {"C", num(c)}, {"P", num(p)},
     {"H", num(h)}, {"W", num(wd)}});
  // CPU: per image, the patches unfolded (im2col with stride P: col[C*P*P, N])
  // and y[N, D] = col^T . w^T.
  std::string host = subst(perImageWithColumns("$K * $NP", "$B", R"(  mm_cpu::im2col<T>(pix + b * $C * $H * $W, $C, $H, $W, $P, $P, $P, 0, $H / $P, $GW, col);
  mm_cpu::gemm<T>($NP, $D, $K, col, 1, $NP, w, 1, $K, y + b * $NP * $D, $D, false);
)"), {{"K", num(c * p * p)}, {"NP", num(np)}, {"B", num(x.getDimSize(0))}, {"C", num(c)}, {"H", num(h)},
     {"W", num(wd)}, {"P", num(p)}, {"GW", num(gw)}, {"D", num(d)}});
  return withHostBody(makeKernel(op, {"pix", "w"}, typeOf(op.getResult()).getNumElements(), body), host);
}

/// The sizes of a convolution, as the kernels' $-variables.
std::map<std::string, std::string> convVars(RankedTensorType x, RankedTensorType w, RankedTensorType y,
                                            int64_t stride, int64_t padding) {
  int64_t c = x.getDimSize(1), kh = w.getDimSize(2), kw = w.getDimSize(3);
  return {{"B", num(x.getDimSize(0))}, {"C", num(c)}, {"H", num(x.getDimSize(2))}, {"W", num(x.getDimSize(3))},
          {"O", num(w.getDimSize(0))}, {"KH", num(kh)}, {"KW", num(kw)}, {"S", num(stride)},
          {"P", num(padding)}, {"HO", num(y.getDimSize(2))}, {"WO", num(y.getDimSize(3))},
          {"KK", num(c * kh * kw)}, {"NP", num(y.getDimSize(2) * y.getDimSize(3))},
          {"LD", "mm_cpu::colStride<T>(" + num(y.getDimSize(2) * y.getDimSize(3)) + ")"}};
}

/// conv2d: one output element per work item; on the CPU, per image, the
/// input unfolded (im2col) and one GEMM y[O, HO*WO] = w[O, C*KH*KW] . col,
/// the bias added by its epilogue.
Kernel conv2d(Conv2dOp op) {
  auto vars = convVars(typeOf(op.getInput()), typeOf(op.getWeight()), typeOf(op.getResult()), op.getStride(),
                       op.getPadding());
  bool bias = (bool)op.getBias();
  vars["INIT"] = bias ? "bias[o]" : "0";
  std::string body = subst(R"(const int64_t ox = i % $WO, oy = (i / $WO) % $HO, o = (i / $NP) % $O, b = i / ($NP * $O);
T acc = $INIT;
for (int64_t c = 0; c < $C; ++c)
  for (int64_t u = 0; u < $KH; ++u) {
    const int64_t iy = oy * $S - $P + u;
    if (iy < 0 || iy >= $H) continue;
    for (int64_t v = 0; v < $KW; ++v) {
      const int64_t ix = ox * $S - $P + v;
      if (ix >= 0 && ix < $W) acc += w[((o * $C + c) * $KH + u) * $KW + v] * x[((b * $C + c) * $H + iy) * $W + ix];
    }
  }
y[i] = acc;
)", vars);
  vars["EPILOGUE"] = bias ? R"(  auto epilogue = [&](int64_t m, int64_t n0, int64_t n1) {
    for (int64_t n = n0; n < n1; ++n) yb[m * $NP + n] += bias[m];
  };
)" : "";
  vars["EP"] = bias ? ", mm_cpu::epilogueRef(epilogue)" : "";
  std::string host = subst(perImageWithColumns("$KK * $LD", "$B", R"(  mm_cpu::im2col<T>(x + b * $C * $H * $W, $C, $H, $W, $KH, $KW, $S, $P, $HO, $WO, col, $LD);
  T *yb = y + b * $O * $NP;
$EPILOGUE  mm_cpu::gemm<T>($O, $NP, $KK, w, $KK, 1, col, $LD, 1, yb, $NP, false$EP);
)"), vars);
  SmallVector<std::string> names{"x", "w"};
  if (bias) names.push_back("bias");
  return withHostBody(makeKernel(op, names, typeOf(op.getResult()).getNumElements(), body), host);
}

/// conv2d_grad_input: one input element per work item, gathering the taps
/// that read it; on the CPU per image dcol = w^T . dy and col2im.
Kernel conv2dGradInput(Conv2dGradInputOp op) {
  auto vars = convVars(typeOf(op.getResult()), typeOf(op.getWeight()), typeOf(op.getGrad()), op.getStride(),
                       op.getPadding());
  std::string body = subst(R"(const int64_t ix = i % $W, iy = (i / $W) % $H, c = (i / ($W * $H)) % $C, b = i / ($W * $H * $C);
T acc = 0;
for (int64_t u = 0; u < $KH; ++u) {
  const int64_t ty = iy + $P - u;
  if (ty < 0 || ty % $S) continue;
  const int64_t oy = ty / $S;
  if (oy >= $HO) continue;
  for (int64_t v = 0; v < $KW; ++v) {
    const int64_t tx = ix + $P - v;
    if (tx < 0 || tx % $S) continue;
    const int64_t ox = tx / $S;
    if (ox >= $WO) continue;
    for (int64_t o = 0; o < $O; ++o)
      acc += w[((o * $C + c) * $KH + u) * $KW + v] * dy[((b * $O + o) * $HO + oy) * $WO + ox];
  }
}
y[i] = acc;
)", vars);
  std::string host = subst(perImageWithColumns("$KK * $LD", "$B", R"(  mm_cpu::gemm<T>($KK, $NP, $O, w, 1, $KK, dy + b * $O * $NP, $NP, 1, col, $LD, false);
  mm_cpu::col2im<T>(col, $C, $H, $W, $KH, $KW, $S, $P, $HO, $WO, y + b * $C * $H * $W, $LD);
)"), vars);
  return withHostBody(makeKernel(op, {"dy", "w"}, typeOf(op.getResult()).getNumElements(), body), host);
}

/// conv2d_grad_weight: one weight element per work item; on the CPU per
/// image dw (+)= dy[O, HO*WO] . col^T.
Kernel conv2dGradWeight(Conv2dGradWeightOp op) {
  auto vars = convVars(typeOf(op.getInput()), typeOf(op.getResult()), typeOf(op.getGrad()), op.getStride(),
                       op.getPadding());
  std::string body = subst(R"(const int64_t v = i % $KW, u = (i / $KW) % $KH, c = (i / ($KW * $KH)) % $C, o = i / $KK;
T acc = 0;
for (int64_t b = 0; b < $B; ++b)
  for (int64_t oy = 0; oy < $HO; ++oy) {
    const int64_t iy = oy * $S - $P + u;
    if (iy < 0 || iy >= $H) continue;
    for (int64_t ox = 0; ox < $WO; ++ox) {
      const int64_t ix = ox * $S - $P + v;
      if (ix >= 0 && ix < $W) acc += dy[((b * $O + o) * $HO + oy) * $WO + ox] * x[((b * $C + c) * $H + iy) * $W + ix];
    }
  }
y[i] = acc;
)", vars);
  // CPU: dw^T = col . dy^T, transposed at the end, where that reads col in
  // place (Conv.h, gradWeightTransposed: the same sums in the same order).
  std::string host = subst(R"(const bool transposed = mm_cpu::gradWeightTransposed($O, $NP);
T *dwt = transposed ? (T *)malloc(sizeof(T) * $KK * $O) : nullptr;
)" + perImageWithColumns("$KK * $LD", "$B", R"(  mm_cpu::im2col<T>(x + b * $C * $H * $W, $C, $H, $W, $KH, $KW, $S, $P, $HO, $WO, col, $LD);
  if (transposed)
    mm_cpu::gemm<T>($KK, $O, $NP, col, $LD, 1, dy + b * $O * $NP, 1, $NP, dwt, $O, b > 0);
  else
    mm_cpu::gemm<T>($O, $KK, $NP, dy + b * $O * $NP, $NP, 1, col, 1, $LD, y, $KK, b > 0);
)") + R"(if (transposed) mm_cpu::transposeInto(dwt, $KK, $O, y);
free(dwt);
)", vars);
  return withHostBody(makeKernel(op, {"dy", "x"}, typeOf(op.getResult()).getNumElements(), body), host);
}

/// conv2d_grad_bias: one channel per work item.
Kernel conv2dGradBias(Conv2dGradBiasOp op) {
  auto dy = typeOf(op.getGrad());
  int64_t o = dy.getDimSize(1), np = dy.getDimSize(2) * dy.getDimSize(3);
  std::string body = subst(R"(T acc = 0;
for (int64_t b = 0; b < $B; ++b) {
  const T *row = dy + (b * $O + i) * $NP;
  T s;
  MM_ROW_SUM(T, s, $NP, row[d]);
  acc += s;
}
y[i] = acc;
)", {{"B", num(dy.getDimSize(0))}, {"O", num(o)}, {"NP", num(np)}});
  return makeKernel(op, {"dy"}, o, body);
}

/// patch_embed_grad_input: one pixel per work item, a dot product over D.
Kernel patchEmbedGradInput(PatchEmbedGradInputOp op) {
  auto x = typeOf(op.getResult()), w = typeOf(op.getWeight());
  int64_t c = x.getDimSize(1), h = x.getDimSize(2), wd = x.getDimSize(3);
  int64_t d = w.getDimSize(0), p = w.getDimSize(2), gw = wd / p, np = (h / p) * gw;
  std::string body = subst(R"(const int64_t ix = i % $W, iy = (i / $W) % $H, c = (i / ($W * $H)) % $C, b = i / ($W * $H * $C);
const int64_t u = iy % $P, v = ix % $P, n = (iy / $P) * $GW + ix / $P;
const T *dyr = dy + (b * $NP + n) * $D;
T acc = 0;
for (int64_t d = 0; d < $D; ++d) acc += w[((d * $C + c) * $P + u) * $P + v] * dyr[d];
y[i] = acc;
)", {{"W", num(wd)}, {"H", num(h)}, {"C", num(c)}, {"P", num(p)}, {"GW", num(gw)}, {"NP", num(np)}, {"D", num(d)}});
  // CPU: per image dcol[C*P*P, N] = w^T . dy^T, folded back (col2im, stride P).
  std::string host = subst(perImageWithColumns("$K * $NP", "$B", R"(  mm_cpu::gemm<T>($K, $NP, $D, w, 1, $K, dy + b * $NP * $D, 1, $D, col, $NP, false);
  mm_cpu::col2im<T>(col, $C, $H, $W, $P, $P, $P, 0, $H / $P, $GW, y + b * $C * $H * $W);
)"), {{"K", num(c * p * p)}, {"NP", num(np)}, {"B", num(x.getDimSize(0))}, {"C", num(c)}, {"H", num(h)},
     {"W", num(wd)}, {"P", num(p)}, {"GW", num(gw)}, {"D", num(d)}});
  return withHostBody(makeKernel(op, {"dy", "w"}, x.getNumElements(), body), host);
}

Kernel layerNorm(LayerNormOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D;
T *yr = y + i * $D;
T mean, var;
MM_ROW_SUM(T, mean, $D, xr[d]);
mean /= $D;
MM_ROW_SUM(T, var, $D, (xr[d] - mean) * (xr[d] - mean));
var /= $D;
const T inv = 1 / sqrt(var + $EPS);
for (int64_t d = 0; d < $D; ++d) yr[d] = (xr[d] - mean) * inv * g[d] + b[d];
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x", "g", "b"}, x.getNumElements() / d, body);
}

Kernel rmsNorm(RMSNormOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D;
T *yr = y + i * $D;
T ss;
MM_ROW_SUM(T, ss, $D, xr[d] * xr[d]);
const T inv = 1 / sqrt(ss / $D + $EPS);
for (int64_t d = 0; d < $D; ++d) yr[d] = g[d] * (xr[d] * inv);
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x", "g"}, x.getNumElements() / d, body);
}

Kernel rope(RoPEOp op) {
  auto x = typeOf(op.getInput());
  int64_t s = x.getDimSize(1), h = op.getNumHeads(), dh = x.getDimSize(2) / h;
  std::string body = subst(R"(const int64_t j = i % $HALF, h = (i / $HALF) % $H;
const int64_t s = (i / ($HALF * $H)) % $S, b = i / ($HALF * $H * $S);
const int64_t base = ((b * $S + s) * $H + h) * $DH;
const T inv_freq = 1 / pow($THETA, (T)(2 * j) / (T)$DH);
const T angle = $SIGN(T)(s + $OFFSET) * inv_freq;
const T c = cos(angle), sn = sin(angle);
const T x1 = x[base + j], x2 = x[base + j + $HALF];
y[base + j] = x1 * c - x2 * sn;
y[base + j + $HALF] = x2 * c + x1 * sn;
)", {{"HALF", num(dh / 2)}, {"H", num(h)}, {"S", num(s)}, {"DH", num(dh)},
     {"THETA", flt(op.getTheta().convertToDouble())}, {"SIGN", op.getInverse() ? "-" : ""},
     {"OFFSET", op.getOffset() ? "(int64_t)offset[0]" : "0"}});
  SmallVector<std::string> names{"x"};
  if (op.getOffset()) names.push_back("offset");
  // The CPU computes each position's angles once for all batches and heads.
  std::string host = subst(R"(#pragma omp parallel for schedule(static) if ($S * $H * $DH >= 32768)
for (int64_t s = 0; s < $S; ++s) {
  T c[$HALF], sn[$HALF];
  for (int64_t j = 0; j < $HALF; ++j) {
    const T inv_freq = 1 / pow($THETA, (T)(2 * j) / (T)$DH);
    const T angle = $SIGN(T)(s + $OFFSET) * inv_freq;
    c[j] = cos(angle);
    sn[j] = sin(angle);
  }
  for (int64_t b = 0; b < $B; ++b)
    for (int64_t h = 0; h < $H; ++h) {
      const int64_t base = ((b * $S + s) * $H + h) * $DH;
      for (int64_t j = 0; j < $HALF; ++j) {
        const T x1 = x[base + j], x2 = x[base + j + $HALF];
        y[base + j] = x1 * c[j] - x2 * sn[j];
        y[base + j + $HALF] = x2 * c[j] + x1 * sn[j];
      }
    }
}
)", {{"HALF", num(dh / 2)}, {"H", num(h)}, {"S", num(s)}, {"DH", num(dh)}, {"B", num(x.getDimSize(0))},
     {"THETA", flt(op.getTheta().convertToDouble())}, {"SIGN", op.getInverse() ? "-" : ""},
     {"OFFSET", op.getOffset() ? "(int64_t)offset[0]" : "0"}});
  return withHostBody(makeKernel(op, names, x.getNumElements() / 2, body), host);
}

/// The number of real keys of batch row `b`: the scalar `length`, the row's
/// entry of a per-row `length`, or every key.
std::string lengthExpr(Value length, int64_t skv) {
  if (!length) return num(skv);
  return typeOf(length).getRank() == 0 ? "(int64_t)length[0]" : "(int64_t)length[b]";
}

/// The mask as a condition on query `qi`, key `kj`, the number of real keys
/// `len` and the first segment's length `$P`.
std::string maskCondition(MaskKind kind, bool hasLength) {
  std::string shape;
  switch (kind) {
  case MaskKind::Bidirectional:
  case MaskKind::Padding:
  case MaskKind::ItmBidirectional:
    break;
  case MaskKind::Causal:
  case MaskKind::ImagePrefixCausal:
    shape = "kj <= qi";
    break;
  case MaskKind::ItgMultimodalCausal:
    shape = "(qi < $P ? kj < $P : (kj < $P || kj <= qi))";
    break;
  case MaskKind::ItcUnimodal:
    shape = "((qi < $P) == (kj < $P))";
    break;
  }
  std::string len = hasLength ? "kj < len" : "";
  if (len.empty() && shape.empty()) return "true";
  if (len.empty()) return shape;
  if (shape.empty()) return len;
  return len + " && " + shape;
}


/// T5's relative-position bucket of the key offset `rel` = key - query, as
/// Hugging Face's T5Attention computes it (the logarithmic part in float32):
/// per direction, half the buckets hold the exact offsets below it, the rest
/// logarithmically wider ranges up to `maxDistance`, the last one open.
int64_t t5Bucket(int64_t rel, bool bidirectional, int64_t numBuckets, int64_t maxDistance) {
  int64_t bucket = 0, n = numBuckets;
  if (bidirectional) {
    n /= 2;
    if (rel > 0) bucket += n;
    rel = rel < 0 ? -rel : rel;
  } else {
    rel = rel < 0 ? -rel : 0;
  }
  const int64_t maxExact = n / 2;
  if (rel < maxExact) return bucket + rel;
  const float v = std::log((float)rel / (float)maxExact) /
                  (float)std::log((double)maxDistance / (double)maxExact) * (float)(n - maxExact);
  if (!(v < (float)n)) return bucket + n - 1; // (also an infinite or NaN quotient)
  return bucket + std::min<int64_t>(maxExact + (int64_t)v, n - 1);
}

/// The relative position bias of an attention op over S queries and keys:
/// BUCKETS declares each offset's bucket (kj - qi + S - 1 indexes it), BIAS
/// is what a score adds (both empty without a bias table, operand `pb`).
template <typename OpT>
std::map<std::string, std::string> positionBiasVars(OpT op) {
  if (!op.getPositionBias()) return {{"BUCKETS", ""}, {"BIAS", ""}};
  const int64_t s = typeOf(op.getQuery()).getDimSize(1), h = op.getNumHeads();
  const int64_t buckets = typeOf(op.getPositionBias()).getDimSize(0);
  const bool bidirectional = positionBiasIsBidirectional(op.getMask());
  std::string decl = "const int32_t mm_bucket[" + num(2 * s - 1) + "] = {";
  for (int64_t rel = -(s - 1); rel <= s - 1; ++rel)
    decl += (rel > -(s - 1) ? "," : "") + num(t5Bucket(rel, bidirectional, buckets, *op.getBiasMaxDistance()));
  decl += "};\n";
  return {{"BUCKETS", decl}, {"BIAS", " + pb[mm_bucket[kj - qi + " + num(s - 1) + "] * " + num(h) + " + h]"}};
}

/// Shared constants of the attention kernels (forward, statistics, gradients).
template <typename OpT>
std::map<std::string, std::string> attentionVars(OpT op, Value q, Value k) {
  auto qt = typeOf(q), kt = typeOf(k);
  int64_t s = qt.getDimSize(1), skv = kt.getDimSize(1), h = op.getNumHeads();
  int64_t hkv = op.getNumKvHeads(), dh = qt.getDimSize(2) / h;
  int64_t prefix = op.getLayoutAttr() ? op.getLayoutAttr().getSizes()[0] : 0;
  std::map<std::string, std::string> vars{
      {"LEN", lengthExpr(op.getLength(), skv)}, {"S", num(s)}, {"SKV", num(skv)},
      {"H", num(h)}, {"HKV", num(hkv)}, {"GROUP", num(h / hkv)}, {"QW", num(h * dh)},
      {"KW", num(hkv * dh)}, {"DH", num(dh)}, {"P", num(prefix)},
      {"SCALE", flt(op.getScale().convertToDouble())}};
  vars.merge(positionBiasVars(op));
  return vars;
}

//===----------------------------------------------------------------------===//
// Attention on the CPU: row strips instead of rows. For a block of QB query
// rows of one head, the scores against every key the block can see are one
// small GEMM into a QB x Skv strip (the full score matrix never exists), the
// softmax runs over the strip's rows, and the values are one more GEMM. The
// backward kernels do the same per block of queries (dq) or keys (dk, dv,
// whose strips are transposed: keys by queries).
//
// Variables: $B batch, $S queries, $SKV keys, $H heads, $GROUP heads per KV
// head, $QW/$KW row widths, $DH head size, $SCALE, $LEN real keys, $MASK the
// mask on (qi, kj, len), $CAUSAL whether keys past the last query are hidden.
//===----------------------------------------------------------------------===//

/// Keys [0, nk) that query rows [q0, q0 + nq) may see.
const char *kAttnKeyRange =
    "const int64_t nk = $CAUSAL ? (q0 + nq < len ? q0 + nq : len) : len;\n";


/// Query row r of a strip: its index qi, log-sum-exp lrow and Drow = dy . out.
const char *kAttnRowTerms = R"(    const int64_t qi = q0 + r;
    const T *dyr = dy + rowOff + r * $QW, *outr = out + rowOff + r * $QW;
    const T lrow = lse[(b * $H + h) * $S + qi];
    T drow;
    MM_ROW_SUM(T, drow, $DH, dyr[d] * outr[d]);
)";

enum class AttnHost { Forward, ForwardStats, Stats, GradQuery, GradKey, GradValue, Fused };

std::string attentionHostBody(AttnHost which, std::map<std::string, std::string> vars,
                              MaskKind mask, bool hasLength, int64_t batch) {
  vars["MASK"] = maskCondition(mask, hasLength);
  vars["CAUSAL"] = (mask == MaskKind::Causal || mask == MaskKind::ImagePrefixCausal) ? "true" : "false";
  vars["B"] = num(batch);
  std::string s;
  if (which == AttnHost::Fused) {
    // One pass per KV head: for each strip of 64 query rows of each head
    // sharing it, P (from the scores and lse) and dS = P o (dY V^T - Drow)
    // once, then dQ = scale dS K for the strip, dK += scale dS^T Q and
    // dV += P^T dY.
    s = R"($BUCKETSconst int64_t QB = 64, nqb = ($S + QB - 1) / QB;
#pragma omp parallel for schedule(static)
for (int64_t item = 0; item < $B * $HKV; ++item) {
  const int64_t kvh = item % $HKV, b = item / $HKV;
  const int64_t len = $LEN < $SKV ? $LEN : $SKV;
  const int64_t kvOff = b * $SKV * $KW + kvh * $DH;
  const T *kh = k + kvOff, *vh = v + kvOff;
  T *dkh = dk + kvOff, *dvh = dv + kvOff;
  for (int64_t j = 0; j < $SKV; ++j) {
    memset(dkh + j * $KW, 0, $DH * sizeof(T));
    memset(dvh + j * $KW, 0, $DH * sizeof(T));
  }
  T *p = (T *)malloc(sizeof(T) * (QB * $SKV + 1)), *ds = (T *)malloc(sizeof(T) * (QB * $SKV + 1));
  for (int64_t g = 0; g < $GROUP; ++g) {
    const int64_t h = kvh * $GROUP + g;
    for (int64_t qb = 0; qb < nqb; ++qb) {
      const int64_t q0 = qb * QB, nq = $S - q0 < QB ? $S - q0 : QB;
  )" + std::string(kAttnKeyRange) + R"(      const int64_t rowOff = (b * $S + q0) * $QW + h * $DH;
      if (nk <= 0) {
        for (int64_t r = 0; r < nq; ++r) memset(dq + rowOff + r * $QW, 0, $DH * sizeof(T));
        continue;
      }
      // scores (into p) and dP = dY V^T (into ds), then P and dS in place
      mm_cpu::gemm<T>(nq, nk, $DH, q + rowOff, $QW, 1, kh, 1, $KW, p, nk, false);
      mm_cpu::gemm<T>(nq, nk, $DH, dy + rowOff, $QW, 1, vh, 1, $KW, ds, nk, false);
      for (int64_t r = 0; r < nq; ++r) {
)" + std::string(kAttnRowTerms) + R"(        T *pr = p + r * nk, *dsr = ds + r * nk;
        for (int64_t kj = 0; kj < nk; ++kj) {
          const T pv = ($MASK) ? exp(pr[kj] * $SCALE$BIAS - lrow) : (T)0;
          pr[kj] = pv;
          dsr[kj] = pv * (dsr[kj] - drow) * $SCALE;
        }
      }
      mm_cpu::gemm<T>(nq, $DH, nk, ds, nk, 1, kh, $KW, 1, dq + rowOff, $QW, false);
      mm_cpu::gemm<T>(nk, $DH, nq, ds, 1, nk, q + rowOff, $QW, 1, dkh, $KW, true);
      mm_cpu::gemm<T>(nk, $DH, nq, p, 1, nk, dy + rowOff, $QW, 1, dvh, $KW, true);
    }
  }
  free(ds);
  free(p);
}
)";
  } else if (which == AttnHost::Forward || which == AttnHost::ForwardStats || which == AttnHost::Stats ||
             which == AttnHost::GradQuery) {
    s = R"($BUCKETSconst int64_t QB = 64, nqb = ($S + QB - 1) / QB;
#pragma omp parallel for schedule(static)
for (int64_t item = 0; item < $B * $H * nqb; ++item) {
  const int64_t qb = item % nqb, h = (item / nqb) % $H, b = item / (nqb * $H), kvh = h / $GROUP;
  const int64_t len = $LEN < $SKV ? $LEN : $SKV;
  const int64_t q0 = qb * QB, nq = $S - q0 < QB ? $S - q0 : QB;
)" + std::string(kAttnKeyRange) + R"(  const int64_t rowOff = (b * $S + q0) * $QW + h * $DH;
  const T *kh = k + b * $SKV * $KW + kvh * $DH;
  T *strip = (T *)malloc(sizeof(T) * (QB * $SKV + 1));
  if (nk > 0) mm_cpu::gemm<T>(nq, nk, $DH, q + rowOff, $QW, 1, kh, 1, $KW, strip, nk, false);
)";
    if (which != AttnHost::GradQuery) {
      s += R"(  for (int64_t r = 0; r < nq; ++r) {
    const int64_t qi = q0 + r;
    T *row = strip + r * nk, m = -INFINITY, l = 0;
    for (int64_t kj = 0; kj < nk; ++kj)
      row[kj] = ($MASK) ? row[kj] * $SCALE$BIAS : -INFINITY;
    for (int64_t kj = 0; kj < nk; ++kj) m = row[kj] > m ? row[kj] : m;
    // The exponentials first (a loop of vector exp), then their sum.
    if (m == -INFINITY)
      memset(row, 0, nk * sizeof(T));
    else
      for (int64_t kj = 0; kj < nk; ++kj) row[kj] = exp(row[kj] - m);
    MM_ROW_SUM(T, l, nk, row[d]);
)";
      // The statistics: the result of attention_stats, the second of fused_attention.
      if (which == AttnHost::Stats)
        s += "    y[(b * $H + h) * $S + qi] = l > 0 ? m + log(l) : (T)0;\n  }\n";
      else
        s += std::string(which == AttnHost::ForwardStats ? "    lse[(b * $H + h) * $S + qi] = l > 0 ? m + log(l) : (T)0;\n"
                                                         : "") +
             R"(    const T inv = l > 0 ? 1 / l : (T)0;
    for (int64_t kj = 0; kj < nk; ++kj) row[kj] *= inv;
  }
  const T *vh = v + b * $SKV * $KW + kvh * $DH;
  if (nk > 0)
    mm_cpu::gemm<T>(nq, $DH, nk, strip, nk, 1, vh, $KW, 1, y + rowOff, $QW, false);
  else
    for (int64_t r = 0; r < nq; ++r) memset(y + rowOff + r * $QW, 0, $DH * sizeof(T));
)";
    } else {
      // dq = scale * (P o (dY V^T - Drow)) K.
      s += R"(  const T *vh = v + b * $SKV * $KW + kvh * $DH;
  T *dp = (T *)malloc(sizeof(T) * (QB * $SKV + 1));
  if (nk > 0) mm_cpu::gemm<T>(nq, nk, $DH, dy + rowOff, $QW, 1, vh, 1, $KW, dp, nk, false);
  for (int64_t r = 0; r < nq; ++r) {
)" + std::string(kAttnRowTerms) + R"(    T *row = strip + r * nk, *dpr = dp + r * nk;
    for (int64_t kj = 0; kj < nk; ++kj)
      row[kj] = ($MASK) ? exp(row[kj] * $SCALE$BIAS - lrow) * (dpr[kj] - drow) * $SCALE : (T)0;
  }
  if (nk > 0)
    mm_cpu::gemm<T>(nq, $DH, nk, strip, nk, 1, kh, $KW, 1, y + rowOff, $QW, false);
  else
    for (int64_t r = 0; r < nq; ++r) memset(y + rowOff + r * $QW, 0, $DH * sizeof(T));
  free(dp);
)";
    }
    s += "  free(strip);\n}\n";
  } else {
    // Per block of KB keys of one KV head, summed over the heads sharing it:
    // dv = P^T dY, dk = scale * (P o (dY V^T - Drow))^T Q, over the queries
    // that can see the block.
    bool key = which == AttnHost::GradKey;
    s = R"($BUCKETSconst int64_t KB = 64, nkb = ($SKV + KB - 1) / KB;
#pragma omp parallel for schedule(static)
for (int64_t item = 0; item < $B * $HKV * nkb; ++item) {
  const int64_t kb = item % nkb, kvh = (item / nkb) % $HKV, b = item / (nkb * $HKV);
  const int64_t len = $LEN < $SKV ? $LEN : $SKV;
  const int64_t k0 = kb * KB, nkk = $SKV - k0 < KB ? $SKV - k0 : KB;
  const int64_t kvOff = (b * $SKV + k0) * $KW + kvh * $DH;
  const int64_t qs = $CAUSAL ? k0 : 0, nq = $S - qs;
  if (k0 >= len || nq <= 0) {
    for (int64_t c = 0; c < nkk; ++c) memset(y + kvOff + c * $KW, 0, $DH * sizeof(T));
    continue;
  }
  T *strip = (T *)malloc(sizeof(T) * (KB * nq + 1));
$DPALLOC  for (int64_t g = 0; g < $GROUP; ++g) {
    const int64_t h = kvh * $GROUP + g, rowOff = (b * $S + qs) * $QW + h * $DH;
    mm_cpu::gemm<T>(nkk, nq, $DH, k + kvOff, $KW, 1, q + rowOff, 1, $QW, strip, nq, false);
$DPGEMM    for (int64_t c = 0; c < nkk; ++c) {
      const int64_t kj = k0 + c;
      T *col = strip + c * nq;
      for (int64_t j = 0; j < nq; ++j) {
        const int64_t qi = qs + j;
        const T p = ($MASK) ? exp(col[j] * $SCALE$BIAS - lse[(b * $H + h) * $S + qi]) : (T)0;
        col[j] = $DS;
      }
    }
    mm_cpu::gemm<T>(nkk, $DH, nq, strip, nq, 1, $RHS + rowOff, $QW, 1, y + kvOff, $KW, g > 0);
  }
$DPFREE  free(strip);
}
)";
    std::map<std::string, std::string> part;
    if (key) {
      part["DPALLOC"] = "  T *dpt = (T *)malloc(sizeof(T) * (KB * nq + 1)), *drow = (T *)malloc(sizeof(T) * (nq + 1));\n";
      part["DPGEMM"] = R"(    mm_cpu::gemm<T>(nkk, nq, $DH, v + kvOff, $KW, 1, dy + rowOff, 1, $QW, dpt, nq, false);
    for (int64_t j = 0; j < nq; ++j) {
      const T *dyr = dy + rowOff + j * $QW, *outr = out + rowOff + j * $QW;
      T acc;
      MM_ROW_SUM(T, acc, $DH, dyr[d] * outr[d]);
      drow[j] = acc;
    }
)";
      part["DS"] = "p * (dpt[c * nq + j] - drow[j]) * $SCALE";
      part["RHS"] = "q";
      part["DPFREE"] = "  free(dpt);\n  free(drow);\n";
    } else {
      part = {{"DPALLOC", ""}, {"DPGEMM", ""}, {"DS", "p"}, {"RHS", "dy"}, {"DPFREE", ""}};
    }
    s = subst(s, part);
  }
  return subst(s, vars);
}

/// mm.attention, and mm.fused_attention (which also writes the row's
/// log-sum-exp, as mm.attention_stats does, from the same softmax).
template <typename OpT> Kernel attentionForward(OpT op, bool withStats) {
  auto q = typeOf(op.getQuery());
  int64_t s = q.getDimSize(1), h = op.getNumHeads();
  std::string body = subst(R"(// One query row of one head; online softmax, scores never stored.
$BUCKETSconst int64_t qi = i % $S, h = (i / $S) % $H, b = i / ($S * $H);
const int64_t kvh = h / $GROUP;
const int64_t len = $LEN;
const T *qr = q + (b * $S + qi) * $QW + h * $DH;
T m = -INFINITY, l = 0, acc[$DH];
for (int64_t d = 0; d < $DH; ++d) acc[d] = 0;
for (int64_t kj = 0; kj < $SKV; ++kj) {
  if (!($MASK)) continue;
  const T *kr = k + (b * $SKV + kj) * $KW + kvh * $DH;
  const T *vr = v + (b * $SKV + kj) * $KW + kvh * $DH;
  T score = 0;
  for (int64_t d = 0; d < $DH; ++d) score += qr[d] * kr[d];
  score = score * $SCALE$BIAS;
  if (score > m) {
    const T corr = exp(m - score);
    l *= corr;
    for (int64_t d = 0; d < $DH; ++d) acc[d] *= corr;
    m = score;
  }
  const T p = exp(score - m);
  l += p;
  for (int64_t d = 0; d < $DH; ++d) acc[d] += p * vr[d];
}
T *yr = y + (b * $S + qi) * $QW + h * $DH;
const T inv = l > 0 ? 1 / l : 0;
for (int64_t d = 0; d < $DH; ++d) yr[d] = acc[d] * inv;
$STATS)", {{"MASK", maskCondition(op.getMask(), (bool)op.getLength())},
             {"STATS", withStats ? "lse[i] = l > 0 ? m + log(l) : (T)0;\n" : ""}});
  const std::map<std::string, std::string> vars = attentionVars(op, op.getQuery(), op.getKey());
  body = subst(body, vars);
  SmallVector<std::string> names{"q", "k", "v"};
  if (op.getLength()) names.push_back("length");
  if (op.getPositionBias()) names.push_back("pb");
  SmallVector<std::string> results{"y"};
  if (withStats) results.push_back("lse");
  return withHostBody(makeKernel(op, names, q.getDimSize(0) * h * s, body, results),
                      attentionHostBody(withStats ? AttnHost::ForwardStats : AttnHost::Forward, vars, op.getMask(),
                                        (bool)op.getLength(), q.getDimSize(0)));
}
Kernel attention(AttentionOp op) { return attentionForward(op, false); }
Kernel fusedAttention(FusedAttentionOp op) { return attentionForward(op, true); }

/// Splits a shape at `axis` into outer * n * inner.
void splitAt(RankedTensorType t, int64_t axis, int64_t &outer, int64_t &inner) {
  outer = 1;
  inner = 1;
  for (int64_t i = 0; i < axis; ++i) outer *= t.getDimSize(i);
  for (int64_t i = axis + 1; i < t.getRank(); ++i) inner *= t.getDimSize(i);
}

/// The pragma that shares a copy's OUTER blocks among the threads when the
/// copy is large (ELEMENTS: 2^16 or more) and has blocks to share; else none.
std::string copyParallel(int64_t outer, int64_t elements) {
  return outer > 1 && elements >= (1 << 16) ? "#pragma omp parallel for schedule(static)" : "";
}

Kernel concat(ConcatOp op) {
  auto a = typeOf(op.getLhs()), b = typeOf(op.getRhs());
  int64_t axis = op.getAxis(), outer, inner;
  splitAt(a, axis, outer, inner);
  int64_t na = a.getDimSize(axis), nb = b.getDimSize(axis);
  std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NT, o = i / ($INNER * $NT);
y[i] = j < $NA ? a[(o * $NA + j) * $INNER + in] : b[(o * $NB + (j - $NA)) * $INNER + in];
)", {{"INNER", num(inner)}, {"NT", num(na + nb)}, {"NA", num(na)}, {"NB", num(nb)}});
  // CPU: two contiguous runs per outer index (a per-element loop spends its
  // time on the index arithmetic; an op never writes over its inputs).
  std::string host = subst(R"($PARALLEL
for (int64_t o = 0; o < $OUTER; ++o) {
  memcpy(y + o * $NT * $INNER, a + o * $NA * $INNER, sizeof(T) * $NA * $INNER);
  memcpy(y + (o * $NT + $NA) * $INNER, b + o * $NB * $INNER, sizeof(T) * $NB * $INNER);
}
)", {{"OUTER", num(outer)}, {"INNER", num(inner)}, {"NT", num(na + nb)}, {"NA", num(na)}, {"NB", num(nb)},
       {"PARALLEL", copyParallel(outer, outer * (na + nb) * inner)}});
  return withHostBody(makeKernel(op, {"a", "b"}, typeOf(op.getResult()).getNumElements(), body), host);
}

/// The CPU body of a copy along an axis: for each of OUTER blocks, the NY
/// rows (of INNER values) of y, where row j reads row j + SHIFT of x's NX when
/// that lies inside x and is zero otherwise (SHIFT: a C expression).
std::string shiftedRowsHost(int64_t outer, int64_t inner, int64_t ny, int64_t nx, const std::string &shift) {
  return subst(R"(const int64_t shift = $SHIFT;
// Rows [j0, j1) of y read x; the rest are zero.
const int64_t j0 = shift < 0 ? (-shift < $NY ? -shift : $NY) : 0;
int64_t j1 = $NX - shift < $NY ? $NX - shift : $NY;
if (j1 < j0) j1 = j0;
$PARALLEL
for (int64_t o = 0; o < $OUTER; ++o) {
  T *yo = y + o * $NY * $INNER;
  memset(yo, 0, sizeof(T) * j0 * $INNER);
  if (j1 > j0) memcpy(yo + j0 * $INNER, x + (o * $NX + j0 + shift) * $INNER, sizeof(T) * (j1 - j0) * $INNER);
  memset(yo + j1 * $INNER, 0, sizeof(T) * ($NY - j1) * $INNER);
}
)", {{"SHIFT", shift}, {"OUTER", num(outer)}, {"INNER", num(inner)}, {"NY", num(ny)}, {"NX", num(nx)},
       {"PARALLEL", copyParallel(outer, outer * ny * inner)}});
}

Kernel slice(SliceOp op) {
  auto x = typeOf(op.getInput()), y = typeOf(op.getResult());
  int64_t axis = op.getAxis(), outer, inner;
  splitAt(x, axis, outer, inner);
  if (!op.getOffset()) {
    std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NY, o = i / ($INNER * $NY);
y[i] = x[(o * $NX + $START + j) * $INNER + in];
)", {{"INNER", num(inner)}, {"NY", num(y.getDimSize(axis))}, {"NX", num(x.getDimSize(axis))},
         {"START", num(op.getStart())}});
    return withHostBody(makeKernel(op, {"x"}, y.getNumElements(), body),
                        shiftedRowsHost(outer, inner, y.getDimSize(axis), x.getDimSize(axis), num(op.getStart())));
  }
  // A run-time offset: positions past the input's end (or before its start) read zero.
  std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NY, o = i / ($INNER * $NY);
const int64_t src = $START + (int64_t)offset[0] + j;
y[i] = (src >= 0 && src < $NX) ? x[(o * $NX + src) * $INNER + in] : (T)0;
)", {{"INNER", num(inner)}, {"NY", num(y.getDimSize(axis))}, {"NX", num(x.getDimSize(axis))},
       {"START", num(op.getStart())}});
  return withHostBody(makeKernel(op, {"x", "offset"}, y.getNumElements(), body),
                      shiftedRowsHost(outer, inner, y.getDimSize(axis), x.getDimSize(axis),
                                      num(op.getStart()) + " + (int64_t)offset[0]"));
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
  std::map<std::string, std::string> vars{{"B", num(e.getDimSize(0))}, {"D", num(e.getDimSize(2))},
                                          {"S", num(e.getDimSize(1))}, {"N", num(f.getDimSize(1))},
                                          {"TOKEN", num(op.getImageTokenIndex())}};
  std::string body = subst(R"(const int64_t d = i % $D, s = (i / $D) % $S, b = i / ($D * $S);
const int32_t *row = ids + b * $S;
T out = embeds[i];
if (row[s] == $TOKEN) {
  int64_t j = 0;
  for (int64_t t = 0; t < s; ++t) j += (row[t] == $TOKEN);
  if (j < $N) out = feats[(b * $N + j) * $D + d];
}
y[i] = out;
)", vars);
  // The CPU walks each row once, counting image tokens as it goes, and copies
  // whole D-rows (the work item above counts them again for every element).
  std::string host = subst(R"(for (int64_t b = 0; b < $B; ++b) {
  const int32_t *row = ids + b * $S;
  int64_t j = 0;
  for (int64_t s = 0; s < $S; ++s) {
    const T *src = embeds + (b * $S + s) * $D;
    if (row[s] == $TOKEN && j < $N) src = feats + (b * $N + j++) * $D;
    T *dst = y + (b * $S + s) * $D;
    if (dst != src) memcpy(dst, src, $D * sizeof(T));
  }
}
)", vars);
  return withHostBody(makeKernel(op, {"embeds", "ids", "feats"}, e.getNumElements(), body), host);
}


//===----------------------------------------------------------------------===//
// Losses and backward kernels. Legend: dy is the gradient of the loss with
// respect to the forward op's result, rows are all leading positions.
//===----------------------------------------------------------------------===//

/// cross_entropy: logits[R,V], targets[R] -> y[] = sum of counted rows' -log softmax.
/// Whether the loss skips row ROW with target TARGET: an ignored or
/// out-of-range target, or (bounded by mm.rows) a row past the length.
std::string skippedRow(const std::string &row, const std::string &target, bool bounded) {
  return (bounded ? row + " >= rows[0] || " : std::string()) + target + " == $IGNORE || " + target + " < 0 || " +
         target + " >= $V";
}

Kernel crossEntropy(CrossEntropyOp op) {
  auto l = typeOf(op.getLogits());
  int64_t v = l.getShape().back(), r = l.getNumElements() / v;
  // One row's term of the loss (`term`), or `continue` for an uncounted row
  // (an ignored target; with mm.rows, also a row past the length).
  const bool bounded = rowsBounded(op);
  const std::string rowTerm = R"(  const int32_t t = targets[r];
  if ($SKIP) continue;
  const T *row = logits + r * $V;
  T m = row[0];
  for (int64_t j = 1; j < $V; ++j) m = row[j] > m ? row[j] : m;
  T sum;
  MM_ROW_SUM(T, sum, $V, exp(row[d] - m));
  const T term = m + log(sum) - row[t];
)";
  std::map<std::string, std::string> vars{
      {"R", num(r)}, {"V", num(v)}, {"IGNORE", num(op.getIgnoreIndexAttr().getInt())}};
  vars["SKIP"] = subst(skippedRow("r", "t", bounded), vars);
  // With `mean`: divided by the counted rows (0 when none is counted).
  const std::string finish = op.getMean() ? "y[0] = counted > 0 ? total / (T)counted : (T)0;\n" : "y[0] = total;\n";
  std::string body = subst("T total = 0;\nint64_t counted = 0;\nfor (int64_t r = 0; r < $R; ++r) {\n" + rowTerm +
                               "  total += term;\n  ++counted;\n}\n(void)counted;\n" + finish,
                           vars);
  // The CPU computes the rows' terms in parallel, then adds them in row
  // order: the same operations in the same order as the single work item.
  std::string host = subst(R"(T *terms = (T *)malloc(sizeof(T) * $R);
#pragma omp parallel for schedule(static)
for (int64_t r = 0; r < $R; ++r) {
  terms[r] = 0;
)" + rowTerm + R"(  terms[r] = term;
}
T total = 0;
int64_t counted = 0;
for (int64_t r = 0; r < $R; ++r) {
  total += terms[r];
  const int32_t t = targets[r];
  counted += !($SKIP);
}
(void)counted;
)" + finish + "free(terms);\n",
                           vars);
  Kernel k = withHostBody(makeKernel(op, {"logits", "targets"}, 1, body), host);
  return bounded ? withRowsArg(k, op) : k;
}

/// cross_entropy_grad: one row per work item; softmax recomputed, never stored.
Kernel crossEntropyGrad(CrossEntropyGradOp op) {
  auto l = typeOf(op.getLogits());
  int64_t v = l.getShape().back();
  const bool bounded = rowsBounded(op);
  std::string body = subst(R"(const int32_t t = targets[i];
const T *row = logits + i * $V;
T *out = y + i * $V;
if ($SKIP) {
  for (int64_t j = 0; j < $V; ++j) out[j] = 0;
} else {
  T m = row[0];
  for (int64_t j = 1; j < $V; ++j) m = row[j] > m ? row[j] : m;
  T sum;
  MM_ROW_SUM(T, sum, $V, exp(row[d] - m));
  $COUNT
  const T gr = g[0] / $DIVISOR;
  const T scale = gr / sum;
  for (int64_t j = 0; j < $V; ++j) out[j] = exp(row[j] - m) * scale;
  out[t] -= gr;
}
)", {{"V", num(v)}, {"IGNORE", num(op.getIgnoreIndexAttr().getInt())},
     {"SKIP", skippedRow("i", "t", bounded)},
     {"COUNT", op.getMean() ? "int64_t counted = 0;\n  for (int64_t r = 0; r < $R; ++r) counted += !(" +
                                  skippedRow("r", "targets[r]", bounded) + ");"
                            : ""},
     {"DIVISOR", op.getMean() ? "(T)counted" : "(T)1"}});
  body = subst(body, {{"R", num(l.getNumElements() / v)}, {"V", num(v)},
                      {"IGNORE", num(op.getIgnoreIndexAttr().getInt())}});
  Kernel k = makeKernel(op, {"logits", "targets", "g"}, l.getNumElements() / v, body);
  return bounded ? withRowsArg(k, op) : k;
}

Kernel reduceSum(ReduceSumOp op) {
  std::string body = "T total = 0;\nfor (int64_t j = 0; j < " + num(typeOf(op.getInput()).getNumElements()) +
                     "; ++j) total += x[j];\ny[0] = total;\n";
  return makeKernel(op, {"x"}, 1, body);
}

Kernel fill(FillOp op) {
  return makeKernel(op, {"v"}, typeOf(op.getResult()).getNumElements(), "y[i] = v[0];\n");
}

Kernel constant(ConstantOp op) {
  double v = op.getValue().convertToDouble();
  std::string value = typeOf(op.getResult()).getElementType().isInteger(32)
                          ? "(int32_t)" + std::to_string((int64_t)v) : flt(v);
  return makeKernel(op, {}, typeOf(op.getResult()).getNumElements(), "y[i] = " + value + ";\n");
}

Kernel iota(IotaOp op) {
  return makeKernel(op, {}, typeOf(op.getResult()).getNumElements(), "y[i] = (int32_t)i;\n");
}

/// div: y = a / b elementwise.
Kernel div(DivOp op) {
  return makeKernel(op, {"a", "b"}, typeOf(op.getResult()).getNumElements(), "y[i] = a[i] / b[i];\n");
}

/// reshape: a copy in row-major order.
Kernel reshape(ReshapeOp op) {
  return makeKernel(op, {"x"}, typeOf(op.getResult()).getNumElements(), "y[i] = x[i];\n");
}

/// transpose: x[O, M, N] -> y[O, N, M].
Kernel transpose(TransposeOp op) {
  auto x = typeOf(op.getInput());
  int64_t r = x.getRank(), m = x.getDimSize(r - 2), n = x.getDimSize(r - 1);
  std::string body = subst(R"(const int64_t mi = i % $M, ni = (i / $M) % $N, o = i / ($M * $N);
y[i] = x[(o * $M + mi) * $N + ni];
)", {{"M", num(m)}, {"N", num(n)}});
  return makeKernel(op, {"x"}, x.getNumElements(), body);
}

/// reduce_max: x[O, J, I] -> y[O, I], the maximum over j (the first one wins ties).
Kernel reduceMax(ReduceMaxOp op) {
  auto x = typeOf(op.getInput());
  int64_t outer, inner;
  splitAt(x, op.getAxis(), outer, inner);
  std::string body = subst(R"(const int64_t in = i % $INNER, o = i / $INNER;
T m = x[o * $J * $INNER + in];
for (int64_t j = 1; j < $J; ++j) {
  const T v = x[(o * $J + j) * $INNER + in];
  m = v > m ? v : m;
}
y[i] = m;
)", {{"INNER", num(inner)}, {"J", num(x.getDimSize(op.getAxis()))}});
  return makeKernel(op, {"x"}, outer * inner, body);
}

/// reduce_max_grad: x[O, J, I], dy[O, I] -> dx[O, J, I], dy at the first maximum.
Kernel reduceMaxGrad(ReduceMaxGradOp op) {
  auto x = typeOf(op.getInput());
  int64_t outer, inner;
  splitAt(x, op.getAxis(), outer, inner);
  std::string body = subst(R"(const int64_t in = i % $INNER, o = i / $INNER;
int64_t best = 0;
T m = x[o * $J * $INNER + in];
for (int64_t j = 0; j < $J; ++j) {
  const T v = x[(o * $J + j) * $INNER + in];
  if (v > m) { m = v; best = j; }
  y[(o * $J + j) * $INNER + in] = 0;
}
y[(o * $J + best) * $INNER + in] = dy[i];
)", {{"INNER", num(inner)}, {"J", num(x.getDimSize(op.getAxis()))}});
  return makeKernel(op, {"x", "dy"}, outer * inner, body);
}

/// l2_normalize: x[R, D] -> y = x / max(||x||, eps), one row per work item.
Kernel l2Normalize(L2NormalizeOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D;
T ss;
MM_ROW_SUM(T, ss, $D, xr[d] * xr[d]);
const T norm = sqrt(ss), n = norm > $EPS ? norm : $EPS;
for (int64_t d = 0; d < $D; ++d) y[i * $D + d] = xr[d] / n;
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x"}, x.getNumElements() / d, body);
}

/// l2_normalize_grad: x[R, D], dy[R, D] -> dx = (dy - y (dy . y)) / n
/// (dy / eps where the norm is clamped).
Kernel l2NormalizeGrad(L2NormalizeGradOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D, *dyr = dy + i * $D;
T ss;
MM_ROW_SUM(T, ss, $D, xr[d] * xr[d]);
const T norm = sqrt(ss);
if (norm > $EPS) {
  T dot;
  MM_ROW_SUM(T, dot, $D, dyr[d] * xr[d]);
  dot /= norm;
  for (int64_t d = 0; d < $D; ++d) y[i * $D + d] = (dyr[d] - xr[d] / norm * dot) / norm;
} else {
  for (int64_t d = 0; d < $D; ++d) y[i * $D + d] = dyr[d] / $EPS;
}
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())}});
  return makeKernel(op, {"x", "dy"}, x.getNumElements() / d, body);
}

/// gather: x[B, W], indices[N] -> y[N, W]; out-of-range indices read zero.
Kernel gather(GatherOp op) {
  auto x = typeOf(op.getInput());
  int64_t b = x.getDimSize(0), w = x.getNumElements() / b;
  std::string body = subst(R"(const int64_t e = i % $W, n = i / $W;
const int64_t src = (int64_t)indices[n];
y[i] = (src >= 0 && src < $B) ? x[src * $W + e] : 0;
)", {{"W", num(w)}, {"B", num(b)}});
  return makeKernel(op, {"x", "indices"}, typeOf(op.getResult()).getNumElements(), body);
}

/// sample_negatives: sim[B, B], uniform[B] -> y[B]. Row r draws column j != r
/// with probability softmax(sim[r])_j renormalised without r: the inverse
/// transform of uniform[r] over the cumulative weights. The positive r is
/// never drawn.
Kernel sampleNegatives(SampleNegativesOp op) {
  int64_t b = typeOf(op.getSimilarity()).getDimSize(0);
  std::string body = subst(R"(const T *row = sim + i * $B;
T m = -INFINITY;
for (int64_t j = 0; j < $B; ++j) if (j != i && row[j] > m) m = row[j];
T total = 0;
for (int64_t j = 0; j < $B; ++j) if (j != i) total += exp(row[j] - m);
const T target = uniform[i] * total;
T acc = 0;
int64_t pick = i == 0 ? 1 : 0;
for (int64_t j = 0; j < $B; ++j) {
  if (j == i) continue;
  pick = j;
  acc += exp(row[j] - m);
  if (acc > target) break;
}
y[i] = (int32_t)pick;
)", {{"B", num(b)}});
  return makeKernel(op, {"sim", "uniform"}, b, body);
}

/// linear_grad_input: dy[M,N], w[N,K] -> dx[M,K]; one element (m, k) per work
/// item, accumulated over n in order (neighbouring items read neighbouring
/// elements of a row of w).
Kernel linearGradInput(LinearGradInputOp op) {
  auto w = typeOf(op.getWeight());
  int64_t n = w.getDimSize(0), k = w.getDimSize(1);
  bool addend = (bool)op.getAddend();
  std::string body = subst(R"(const int64_t m = i / $K, k = i % $K;
const T *dyr = dy + m * $N;
T acc = $INIT;
for (int64_t n = 0; n < $N; ++n) acc += dyr[n] * w[n * $K + k];
y[i] = acc;
)", {{"N", num(n)}, {"K", num(k)}, {"INIT", addend ? "addend[i]" : "0"}});
  int64_t m = typeOf(op.getResult()).getNumElements() / k;
  SmallVector<std::string> names{"dy", "w"};
  if (addend) names.push_back("addend");
  // dx[M,K] = dy[M,N] . w[N,K] (+ the addend, added to each finished block);
  // bounded, the first `length` rows (the gradient's rows past it are zero).
  const bool bounded = rowsBounded(op);
  const std::string rows = bounded ? "mb" : num(m);
  std::string host = addend ? subst(R"(auto epilogue = [&](int64_t m, int64_t k0, int64_t k1) {
  T *yr = y + m * $K;
  const T *ar = addend + m * $K;
  for (int64_t k = k0; k < k1; ++k) yr[k] += ar[k];
};
mm_cpu::gemm<T>($M, $K, $N, dy, $N, 1, w, $K, 1, y, $K, false, mm_cpu::epilogueRef(epilogue));
)", {{"M", rows}, {"N", num(n)}, {"K", num(k)}})
                            : gemmCall(rows, k, num(n), "dy", n, 1, "w", k, 1, false);
  Kernel kernel = makeKernel(op, names, m * k, body);
  return bounded ? boundedProduct(std::move(kernel), op, host, m, k) : withHostBody(std::move(kernel), host);
}

/// linear_grad_weight: dy[M,N], x[M,K] -> dW[N,K], summed over the M rows in
/// order; one element (n, k) of dW per work item.
Kernel linearGradWeight(LinearGradWeightOp op) {
  auto w = typeOf(op.getResult());
  int64_t n = w.getDimSize(0), k = w.getDimSize(1), m = typeOf(op.getInput()).getNumElements() / k;
  std::string body = subst(R"(const int64_t n = i / $K, k = i % $K;
T acc = 0;
for (int64_t m = 0; m < $M; ++m) acc += dy[m * $N + n] * x[m * $K + k];
y[i] = acc;
)", {{"N", num(n)}, {"K", num(k)}, {"M", num(m)}});
  // dW[N,K] = dy[M,N]^T . x[M,K]: A(n,m) = dy[m*N + n].
  if (!rowsBounded(op))
    return withHostBody(makeKernel(op, {"dy", "x"}, n * k, body), gemmCall(n, k, m, "dy", 1, n, "x", k, 1, false));
  // Summed over the first `length` rows: the others add dy = 0 times x.
  std::string host = boundedRows(m) + gemmCall(num(n), k, "mb", "dy", 1, n, "x", k, 1, false);
  return withHostBody(withRowsArg(makeKernel(op, {"dy", "x"}, n * k, body), op), host);
}

/// reduce_to: x[I...] -> y[O...], summing the broadcast dimensions.
Kernel reduceTo(ReduceToOp op) {
  auto in = typeOf(op.getInput()), out = typeOf(op.getResult());
  int64_t ri = in.getRank(), off = ri - out.getRank();
  SmallVector<int64_t> stride(ri, 1);
  for (int64_t d = ri - 2; d >= 0; --d) stride[d] = stride[d + 1] * in.getDimSize(d + 1);
  SmallVector<bool> reduced(ri);
  int64_t count = 1;
  for (int64_t d = 0; d < ri; ++d) {
    reduced[d] = d < off || (out.getDimSize(d - off) == 1 && in.getDimSize(d) != 1);
    if (reduced[d]) count *= in.getDimSize(d);
  }
  std::string body = "int64_t rem = i, base = 0;\n";
  for (int64_t d = ri - 1; d >= off; --d) {
    int64_t od = out.getDimSize(d - off);
    body += "{ const int64_t c = rem % " + num(od) + "; rem /= " + num(od) + ";" +
            (reduced[d] ? " (void)c;" : " base += c * " + num(stride[d]) + ";") + " }\n";
  }
  // Summed in double, rounded once: a bias gradient sums thousands of rows.
  body += "double acc = 0;\nfor (int64_t r = 0; r < " + num(count) + "; ++r) {\n  int64_t rr = r, at = base;\n";
  for (int64_t d = ri - 1; d >= 0; --d)
    if (reduced[d])
      body += "  at += (rr % " + num(in.getDimSize(d)) + ") * " + num(stride[d]) + "; rr /= " +
              num(in.getDimSize(d)) + ";\n";
  body += "  acc += x[at];\n}\ny[i] = (T)acc;\n";
  Kernel k = makeKernel(op, {"x"}, out.getNumElements(), body);
  // The common case, a bias gradient: the leading dimensions summed away,
  // the trailing ones kept. The CPU then walks the rows in order, each a
  // contiguous run added into a block of double accumulators (the per-item
  // body above divides twice per element to find it: 5% of a blip2-tiny
  // stage-1 step); same order, same double sums, same result.
  int64_t lead = 0;
  while (lead < ri && reduced[lead]) ++lead;
  bool prefix = true;
  for (int64_t d = lead; d < ri; ++d) prefix &= !reduced[d];
  if (!prefix || lead == 0) return k;
  std::string host = subst(R"(#pragma omp parallel for schedule(static) if ($ROWS * $COLS >= 32768)
for (int64_t c0 = 0; c0 < $COLS; c0 += 64) {
  const int64_t cn = $COLS - c0 < 64 ? $COLS - c0 : 64;
  double acc[64];
  for (int64_t c = 0; c < cn; ++c) acc[c] = 0;
  for (int64_t r = 0; r < $ROWS; ++r) {
    const T *xr = x + r * $COLS + c0;
    for (int64_t c = 0; c < cn; ++c) acc[c] += xr[c];
  }
  for (int64_t c = 0; c < cn; ++c) y[c0 + c] = (T)acc[c];
}
)", {{"ROWS", num(count)}, {"COLS", num(out.getNumElements())}});
  return withHostBody(std::move(k), host);
}

/// embedding_grad: ids[T], dy[T,D] -> dtable[V,D] (a scatter-add, as a gather per row).
Kernel embeddingGrad(EmbeddingGradOp op) {
  auto g = typeOf(op.getGrad());
  int64_t d = g.getShape().back(), t = g.getNumElements() / d;
  std::string body = subst(R"(const int64_t v = i / $D, d = i % $D;
T acc = 0;
for (int64_t t = 0; t < $TOK; ++t)
  if (ids[t] == v) acc += dy[t * $D + d];
y[i] = acc;
)", {{"D", num(d)}, {"TOK", num(t)}});
  // The CPU scatters each token's row once (threads split the features;
  // rows are still summed in token order), instead of a search per element.
  int64_t v = typeOf(op.getResult()).getDimSize(0);
  std::string host = subst(R"(memset(y, 0, sizeof(T) * $V * $D);
#pragma omp parallel
{
  int64_t first, last;
  mm_cpu::threadShare($D, first, last);
  for (int64_t t = 0; t < $TOK; ++t) {
    const int32_t id = ids[t];
    if (id < 0 || id >= $V) continue;
    T *row = y + (int64_t)id * $D;
    const T *g = dy + t * $D;
    for (int64_t d = first; d < last; ++d) row[d] += g[d];
  }
}
)", {{"D", num(d)}, {"TOK", num(t)}, {"V", num(v)}});
  return withHostBody(makeKernel(op, {"ids", "dy"}, typeOf(op.getResult()).getNumElements(), body), host);
}

/// patch_embed_grad_weight: pix[B,C,H,W], dy[B,NP,D] -> dW[D,C,P,P].
Kernel patchEmbedGradWeight(PatchEmbedGradWeightOp op) {
  auto x = typeOf(op.getPixels()), w = typeOf(op.getResult());
  int64_t b = x.getDimSize(0), c = x.getDimSize(1), h = x.getDimSize(2), wd = x.getDimSize(3);
  int64_t d = w.getDimSize(0), p = w.getDimSize(2), gw = wd / p, np = (h / p) * gw;
  std::string body = subst(R"(const int64_t v = i % $P, u = (i / $P) % $P, c = (i / ($P * $P)) % $C, d = i / ($P * $P * $C);
T acc = 0;
for (int64_t b = 0; b < $B; ++b)
  for (int64_t p = 0; p < $NP; ++p) {
    const int64_t py = p / $GW, px = p % $GW;
    acc += pix[((b * $C + c) * $H + py * $P + u) * $W + px * $P + v] * dy[(b * $NP + p) * $D + d];
  }
y[i] = acc;
)", {{"P", num(p)}, {"C", num(c)}, {"B", num(b)}, {"NP", num(np)}, {"GW", num(gw)}, {"H", num(h)},
     {"W", num(wd)}, {"D", num(d)}});
  // CPU: per image dW[D, C*P*P] (+)= dy^T . col^T.
  std::string host = subst(perImageWithColumns("$K * $NP", "$B", R"(  mm_cpu::im2col<T>(pix + b * $C * $H * $W, $C, $H, $W, $P, $P, $P, 0, $H / $P, $GW, col);
  mm_cpu::gemm<T>($D, $K, $NP, dy + b * $NP * $D, 1, $D, col, 1, $NP, y, $K, b > 0);
)"), {{"K", num(c * p * p)}, {"NP", num(np)}, {"B", num(b)}, {"C", num(c)}, {"H", num(h)}, {"W", num(wd)},
     {"P", num(p)}, {"GW", num(gw)}, {"D", num(d)}});
  return withHostBody(makeKernel(op, {"pix", "dy"}, w.getNumElements(), body), host);
}

/// layer_norm_grad_input: one row per work item.
Kernel layerNormGradInput(LayerNormGradInputOp op) {
  int64_t d = typeOf(op.getInput()).getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D, *dyr = dy + i * $D;
T *out = y + i * $D;
T mean, var;
MM_ROW_SUM(T, mean, $D, xr[d]);
mean /= $D;
MM_ROW_SUM(T, var, $D, (xr[d] - mean) * (xr[d] - mean));
const T rstd = 1 / sqrt(var / $D + $EPS);
T mg, mgx;
MM_ROW_SUM(T, mg, $D, dyr[d] * w[d]);
MM_ROW_SUM(T, mgx, $D, dyr[d] * w[d] * (xr[d] - mean) * rstd);
mg /= $D;
mgx /= $D;
for (int64_t d = 0; d < $D; ++d) out[d] = rstd * (dyr[d] * w[d] - mg - (xr[d] - mean) * rstd * mgx)$ADDEND;
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())},
                                {"ADDEND", op.getAddend() ? " + addend[i * $D + d]" : ""}});
  SmallVector<std::string> names{"dy", "x", "w"};
  if (op.getAddend()) names.push_back("addend");
  return makeKernel(op, names, typeOf(op.getInput()).getNumElements() / d, body);
}

/// The CPU body of a norm's weight gradient dW[d] = sum over rows of
/// dy[r,d] * TERM: the threads split the features and walk every row once,
/// computing the row's statistics (STATS, over `xr`, defining what TERM
/// reads) once per row instead of once per element. The statistics and the
/// sum over rows are kept in double, rounded once: a sum over thousands of
/// rows in float loses more than the reference's tolerance on the features
/// whose gradient is small.
std::string normGradWeightHost(int64_t d, int64_t rows, double eps, const std::string &stats,
                               const std::string &term) {
  std::string loop = R"(#pragma omp parallel
{
  int64_t first, last;
  mm_cpu::threadShare($D, first, last);
  double *acc = (double *)calloc(last > first ? last - first : 1, sizeof(double));
  for (int64_t r = 0; r < $R; ++r) {
    const T *xr = x + r * $D, *dyr = dy + r * $D;
$STATS    for (int64_t d = first; d < last; ++d) acc[d - first] += (double)dyr[d] * $TERM;
  }
  for (int64_t d = first; d < last; ++d) y[d] = (T)acc[d - first];
  free(acc);
}
)";
  std::string indented;
  for (StringRef line : llvm::split(StringRef(stats).rtrim('\n'), '\n')) indented += "    " + line.str() + "\n";
  return subst(subst(loop, {{"STATS", indented}, {"TERM", term}}),
               {{"D", num(d)}, {"R", num(rows)}, {"EPS", flt(eps)}});
}

/// layer_norm_grad_weight: one feature per work item, rows' statistics recomputed.
Kernel layerNormGradWeight(LayerNormGradWeightOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back(), rows = x.getNumElements() / d;
  std::string body = subst(R"(T acc = 0;
for (int64_t r = 0; r < $R; ++r) {
  const T *xr = x + r * $D;
  T mean = 0, var = 0;
  for (int64_t d = 0; d < $D; ++d) mean += xr[d];
  mean /= $D;
  for (int64_t d = 0; d < $D; ++d) { const T t = xr[d] - mean; var += t * t; }
  acc += dy[r * $D + i] * (xr[i] - mean) / sqrt(var / $D + $EPS);
}
y[i] = acc;
)", {{"D", num(d)}, {"R", num(rows)}, {"EPS", flt(op.getEps().convertToDouble())}});
  std::string host = normGradWeightHost(d, rows, op.getEps().convertToDouble(), R"(double mean, var;
MM_ROW_SUM(double, mean, $D, (double)xr[d]);
mean /= $D;
MM_ROW_SUM(double, var, $D, (xr[d] - mean) * (xr[d] - mean));
const double inv = 1 / sqrt(var / $D + $EPS);
)", "(xr[d] - mean) * inv");
  return withHostBody(makeKernel(op, {"dy", "x"}, d, body), host);
}

Kernel rmsNormGradInput(RMSNormGradInputOp op) {
  int64_t d = typeOf(op.getInput()).getShape().back();
  std::string body = subst(R"(const T *xr = x + i * $D, *dyr = dy + i * $D;
T *out = y + i * $D;
T ss, mgx;
MM_ROW_SUM(T, ss, $D, xr[d] * xr[d]);
MM_ROW_SUM(T, mgx, $D, dyr[d] * w[d] * xr[d]);
const T r = 1 / sqrt(ss / $D + $EPS);
mgx /= $D;
for (int64_t d = 0; d < $D; ++d) out[d] = r * dyr[d] * w[d] - xr[d] * r * r * r * mgx$ADDEND;
)", {{"D", num(d)}, {"EPS", flt(op.getEps().convertToDouble())},
                                {"ADDEND", op.getAddend() ? " + addend[i * $D + d]" : ""}});
  SmallVector<std::string> names{"dy", "x", "w"};
  if (op.getAddend()) names.push_back("addend");
  return makeKernel(op, names, typeOf(op.getInput()).getNumElements() / d, body);
}

Kernel rmsNormGradWeight(RMSNormGradWeightOp op) {
  auto x = typeOf(op.getInput());
  int64_t d = x.getShape().back(), rows = x.getNumElements() / d;
  std::string body = subst(R"(T acc = 0;
for (int64_t r = 0; r < $R; ++r) {
  const T *xr = x + r * $D;
  T ss = 0;
  for (int64_t d = 0; d < $D; ++d) ss += xr[d] * xr[d];
  acc += dy[r * $D + i] * xr[i] / sqrt(ss / $D + $EPS);
}
y[i] = acc;
)", {{"D", num(d)}, {"R", num(rows)}, {"EPS", flt(op.getEps().convertToDouble())}});
  std::string host = normGradWeightHost(d, rows, op.getEps().convertToDouble(), R"(double ss;
MM_ROW_SUM(double, ss, $D, (double)xr[d] * xr[d]);
const double inv = 1 / sqrt(ss / $D + $EPS);
)", "xr[d] * inv");
  return withHostBody(makeKernel(op, {"dy", "x"}, d, body), host);
}

/// f'(v) of an activation, an expression over `v` and `s` (the sigmoid the
/// derivative needs, where it needs one; for gelu_tanh the tanh).
std::string activationDerivative(ActivationKind kind) {
  switch (kind) {
  case ActivationKind::Gelu: return "mm_gelu_grad(v)"; // kernelPrelude
  case ActivationKind::GeluTanh:
    // s = tanh(u), u = c (v + 0.044715 v^3), c = sqrt(2 / pi).
    return "(T)0.5 * (1 + s) + (T)0.5 * v * (1 - s * s) * (T)0.79788456080286536 * (1 + (T)0.134145 * v * v)";
  case ActivationKind::QuickGelu: return "s + (T)1.702 * v * s * (1 - s)";
  case ActivationKind::Silu: return "s * (1 + v * (1 - s))";
  case ActivationKind::Relu: return "v > 0 ? (T)1 : (T)0";
  }
  llvm_unreachable("unknown activation");
}

/// One element of an elementwise op (isFusibleElementwise): statements that
/// set OUT from the operand expressions IN, in a scope of their own.
std::string elementwiseCode(Operation *op, ArrayRef<std::string> in, StringRef out) {
  if (isa<AddOp>(op)) return out.str() + " = " + in[0] + " + " + in[1] + ";\n";
  if (isa<MulOp>(op)) return out.str() + " = " + in[0] + " * " + in[1] + ";\n";
  if (auto grad = dyn_cast<ActivationGradOp>(op)) {
    ActivationKind kind = grad.getKind();
    std::string sigmoid = kind == ActivationKind::QuickGelu ? "1 / (1 + exp((T)-1.702 * v))"
                          : kind == ActivationKind::GeluTanh
                              ? "tanh((T)0.79788456080286536 * (v + (T)0.044715 * v * v * v))"
                              : "1 / (1 + exp(-v))";
    return "{\n  const T v = " + in[1] + ";\n  const T s = " + sigmoid + ";\n  (void)s;\n  " + out.str() + " = " +
           in[0] + " * (" + activationDerivative(kind) + ");\n}\n";
  }
  return "{\n  const T v = " + in[0] + ";\n  " + out.str() + " = " + activationExpr(*activationKindOf(op)) + ";\n}\n";
}

/// A single elementwise op: one element per work item.
Kernel elementwise(Operation *op) {
  SmallVector<std::string> names;
  if (op->getNumOperands() == 1) names = {"x"};
  else if (isa<ActivationGradOp>(op)) names = {"dy", "x"};
  else names = {"a", "b"};
  SmallVector<std::string> in;
  for (const std::string &n : names) in.push_back(n + "[i]");
  return makeKernel(op, names, typeOf(op->getResult(0)).getNumElements(), elementwiseCode(op, in, "y[i]"));
}

/// mm.fused_elementwise: its body's ops, one after another, per element;
/// the intermediate values live in registers.
Kernel fusedElementwise(FusedElementwiseOp op) {
  Block &block = op.getBody().front();
  DenseMap<Value, std::string> name;
  SmallVector<std::string> args;
  std::string body;
  for (BlockArgument a : block.getArguments()) {
    args.push_back("x" + num(a.getArgNumber()));
    name[a] = "a" + num(a.getArgNumber());
    body += "const T " + name[a] + " = " + args.back() + "[i];\n";
  }
  int t = 0;
  std::string ops;
  for (Operation &inner : block.without_terminator()) {
    ops += (ops.empty() ? "" : ", ") + inner.getName().getStringRef().drop_front(3).str();
    SmallVector<std::string> in;
    for (Value v : inner.getOperands()) in.push_back(name.lookup(v));
    std::string out = "t" + num(t++);
    body += "T " + out + ";\n" + elementwiseCode(&inner, in, out);
    name[inner.getResult(0)] = out;
  }
  body += "y[i] = " + name.lookup(block.getTerminator()->getOperand(0)) + ";\n";
  Kernel k = makeKernel(op, args, typeOf(op.getResult()).getNumElements(), body);
  k.comment += " (" + ops + ")";
  return k;
}

Kernel pad(PadOp op) {
  auto x = typeOf(op.getInput()), y = typeOf(op.getResult());
  int64_t axis = op.getAxis(), outer, inner;
  splitAt(y, axis, outer, inner);
  std::string body = subst(R"(const int64_t in = i % $INNER, j = (i / $INNER) % $NY, o = i / ($INNER * $NY);
const int64_t s = j - $START;
y[i] = (s >= 0 && s < $NX) ? x[(o * $NX + s) * $INNER + in] : (T)0;
)", {{"INNER", num(inner)}, {"NY", num(y.getDimSize(axis))}, {"NX", num(x.getDimSize(axis))},
     {"START", num(op.getStartAttr().getInt())}});
  return withHostBody(makeKernel(op, {"x"}, y.getNumElements(), body),
                      shiftedRowsHost(outer, inner, y.getDimSize(axis), x.getDimSize(axis),
                                      num(-op.getStartAttr().getInt())));
}

Kernel gatherImageFeatures(GatherImageFeaturesOp op) {
  auto in = typeOf(op.getInput()), out = typeOf(op.getResult());
  std::map<std::string, std::string> vars{{"B", num(in.getDimSize(0))}, {"D", num(in.getDimSize(2))},
                                          {"S", num(in.getDimSize(1))}, {"N", num(out.getDimSize(1))},
                                          {"TOKEN", num(op.getImageTokenIndex())}};
  std::string body = subst(R"(const int64_t d = i % $D, j = (i / $D) % $N, b = i / ($D * $N);
const int32_t *row = ids + b * $S;
T v = 0;
int64_t seen = 0;
for (int64_t s = 0; s < $S; ++s)
  if (row[s] == $TOKEN) {
    if (seen == j) { v = x[(b * $S + s) * $D + d]; break; }
    ++seen;
  }
y[i] = v;
)", vars);
  // The CPU walks each row once: the j-th image token's row of x to y's row
  // j, rows past the row's image tokens zero.
  std::string host = subst(R"(for (int64_t b = 0; b < $B; ++b) {
  const int32_t *row = ids + b * $S;
  int64_t j = 0;
  for (int64_t s = 0; s < $S && j < $N; ++s)
    if (row[s] == $TOKEN) memcpy(y + (b * $N + j++) * $D, x + (b * $S + s) * $D, $D * sizeof(T));
  if (j < $N) memset(y + (b * $N + j) * $D, 0, ($N - j) * $D * sizeof(T));
}
)", vars);
  return withHostBody(makeKernel(op, {"x", "ids"}, out.getNumElements(), body), host);
}

/// attention_stats: q[B,S,H*Dh], k[B,Skv,Hkv*Dh] -> lse[B,H,S].
Kernel attentionStats(AttentionStatsOp op) {
  auto q = typeOf(op.getQuery());
  int64_t s = q.getDimSize(1);
  std::string body = subst(R"($BUCKETSconst int64_t qi = i % $S, h = (i / $S) % $H, b = i / ($S * $H);
const int64_t kvh = h / $GROUP, len = $LEN;
const T *qr = q + (b * $S + qi) * $QW + h * $DH;
T m = -INFINITY, l = 0;
for (int64_t kj = 0; kj < $SKV; ++kj) {
  if (!($MASK)) continue;
  const T *kr = k + (b * $SKV + kj) * $KW + kvh * $DH;
  T score = 0;
  for (int64_t d = 0; d < $DH; ++d) score += qr[d] * kr[d];
  score = score * $SCALE$BIAS;
  if (score > m) { l *= exp(m - score); m = score; }
  l += exp(score - m);
}
y[i] = l > 0 ? m + log(l) : (T)0;
)", {{"MASK", maskCondition(op.getMask(), (bool)op.getLength())}});
  const std::map<std::string, std::string> vars = attentionVars(op, op.getQuery(), op.getKey());
  body = subst(body, vars);
  SmallVector<std::string> names{"q", "k"};
  if (op.getLength()) names.push_back("length");
  if (op.getPositionBias()) names.push_back("pb");
  return withHostBody(makeKernel(op, names, q.getDimSize(0) * op.getNumHeads() * s, body),
                      attentionHostBody(AttnHost::Stats, vars, op.getMask(), (bool)op.getLength(),
                                        q.getDimSize(0)));
}

/// Inside a loop over keys kj of query row `row` (with lrow, drow): skips a
/// masked key, else sets ds = p (dy.v - Drow), the gradient of the key's
/// score (after scale and bias), and leaves kr pointing at the key.
const char *kScoreGrad = R"(  if (!($MASK)) continue;
  const T *kr = k + (b * $SKV + kj) * $KW + kvh * $DH;
  const T *vr = v + (b * $SKV + kj) * $KW + kvh * $DH;
  T score = 0, dp = 0;
  for (int64_t d = 0; d < $DH; ++d) { score += q[row + d] * kr[d]; dp += dy[row + d] * vr[d]; }
  const T ds = exp(score * $SCALE$BIAS - lrow) * (dp - drow);
)";

/// The attention gradients. With p = exp(score - lse) and Drow = dy . out for
/// the query row: dq = scale * sum_k p (dy.v - Drow) k; dk = scale * sum_q
/// p (dy.v - Drow) q; dv = sum_q p dy.
enum class AttnGrad { Query, Key, Value };
/// The operand names of the attention gradient kernels.
template <typename OpT> SmallVector<std::string> attentionGradNames(OpT op) {
  SmallVector<std::string> names{"q", "k", "v", "dy", "out", "lse"};
  if (op.getLength()) names.push_back("length");
  if (op.getPositionBias()) names.push_back("pb");
  return names;
}

/// The per-item body of one attention gradient (one query row for dq, one
/// key row for dk and dv), writing `y`; VARS as attentionVars gives them.
template <typename OpT>
std::string attentionGradBody(OpT op, AttnGrad which, const std::map<std::string, std::string> &vars) {
  std::string body;
  if (which == AttnGrad::Query) {
    body = R"($BUCKETSconst int64_t qi = i % $S, h = (i / $S) % $H, b = i / ($S * $H);
const int64_t kvh = h / $GROUP, len = $LEN;
const int64_t row = (b * $S + qi) * $QW + h * $DH;
const T lrow = lse[(b * $H + h) * $S + qi];
T drow = 0, acc[$DH];
for (int64_t d = 0; d < $DH; ++d) { drow += dy[row + d] * out[row + d]; acc[d] = 0; }
for (int64_t kj = 0; kj < $SKV; ++kj) {
$SCOREGRAD  const T dss = ds * $SCALE;
  for (int64_t d = 0; d < $DH; ++d) acc[d] += dss * kr[d];
}
for (int64_t d = 0; d < $DH; ++d) y[row + d] = acc[d];
)";
  } else {
    body = R"($BUCKETSconst int64_t kj = i % $SKV, kvh = (i / $SKV) % $HKV, b = i / ($SKV * $HKV);
const int64_t kv = (b * $SKV + kj) * $KW + kvh * $DH;
T acc[$DH];
for (int64_t d = 0; d < $DH; ++d) acc[d] = 0;
for (int64_t g = 0; g < $GROUP; ++g) {
  const int64_t h = kvh * $GROUP + g;
  for (int64_t qi = 0; qi < $S; ++qi) {
    const int64_t len = $LEN;
    if (!($MASK)) continue;
    const int64_t row = (b * $S + qi) * $QW + h * $DH;
    T score = 0;
    for (int64_t d = 0; d < $DH; ++d) score += q[row + d] * k[kv + d];
    const T p = exp(score * $SCALE$BIAS - lse[(b * $H + h) * $S + qi]);
$UPDATE  }
}
for (int64_t d = 0; d < $DH; ++d) y[kv + d] = acc[d];
)";
    std::string update =
        which == AttnGrad::Value
            ? "    for (int64_t d = 0; d < $DH; ++d) acc[d] += p * dy[row + d];\n"
            : "    T dp = 0, drow = 0;\n"
              "    for (int64_t d = 0; d < $DH; ++d) { dp += dy[row + d] * v[kv + d]; drow += dy[row + d] * out[row + d]; }\n"
              "    const T ds = p * (dp - drow) * $SCALE;\n"
              "    for (int64_t d = 0; d < $DH; ++d) acc[d] += ds * q[row + d];\n";
    body = subst(body, {{"UPDATE", update}});
  }
  body = subst(body, {{"SCOREGRAD", kScoreGrad}, {"MASK", maskCondition(op.getMask(), (bool)op.getLength())}});
  return subst(body, vars);
}

template <typename OpT>
Kernel attentionGrad(OpT op, AttnGrad which) {
  auto q = typeOf(op.getQuery());
  int64_t s = q.getDimSize(1), skv = typeOf(op.getKey()).getDimSize(1);
  const std::map<std::string, std::string> vars = attentionVars(op, op.getQuery(), op.getKey());
  std::string body = attentionGradBody(op, which, vars);
  int64_t domain = which == AttnGrad::Query ? q.getDimSize(0) * op.getNumHeads() * s
                                            : q.getDimSize(0) * op.getNumKvHeads() * skv;
  AttnHost host = which == AttnGrad::Query ? AttnHost::GradQuery
                  : which == AttnGrad::Key ? AttnHost::GradKey
                                           : AttnHost::GradValue;
  return withHostBody(makeKernel(op, attentionGradNames(op), domain, body),
                      attentionHostBody(host, vars, op.getMask(), (bool)op.getLength(), q.getDimSize(0)));
}

/// fused_attention_grad: q[B,S,H*Dh], k/v[B,Skv,Hkv*Dh], dy/out[B,S,H*Dh],
/// lse[B,H,S] -> dq[B,S,H*Dh], dk/dv[B,Skv,Hkv*Dh]. Per item (CUDA): the three
/// gradients' own bodies, dq rows first, then dk rows, then dv rows. On the
/// CPU: attentionHostBody's one pass per KV head (AttnHost::Fused).
Kernel fusedAttentionGrad(FusedAttentionGradOp op) {
  auto q = typeOf(op.getQuery()), k = typeOf(op.getKey());
  const int64_t nq = q.getDimSize(0) * op.getNumHeads() * q.getDimSize(1);
  const int64_t nkv = q.getDimSize(0) * op.getNumKvHeads() * k.getDimSize(1);
  const std::map<std::string, std::string> vars = attentionVars(op, op.getQuery(), op.getKey());
  auto part = [&](AttnGrad which, const char *out, int64_t first) {
    return "{\n  const int64_t mm_item = i - " + num(first) + ";\n  {\n    const int64_t i = mm_item;\n    T *const y = " +
           std::string(out) + ";\n" + attentionGradBody(op, which, vars) + "  }\n}\n";
  };
  std::string body = "if (i < " + num(nq) + ") " + part(AttnGrad::Query, "dq", 0) + "else if (i < " +
                     num(nq + nkv) + ") " + part(AttnGrad::Key, "dk", nq) + "else " +
                     part(AttnGrad::Value, "dv", nq + nkv);
  return withHostBody(makeKernel(op, attentionGradNames(op), nq + 2 * nkv, body, {"dq", "dk", "dv"}),
                      attentionHostBody(AttnHost::Fused, vars, op.getMask(), (bool)op.getLength(),
                                        q.getDimSize(0)));
}

/// attention_grad_position_bias: q[B,S,H*Dh], k/v[B,S,Hkv*Dh], dy/out[B,S,H*Dh],
/// lse[B,H,S], pb[NB,H] -> y[NB,H]. One work item per head sums its column:
/// y[bucket(kj - qi), h] += p (dy.v - dy.out) over every batch row and every
/// (query, key) pair the mask lets through.
Kernel attentionGradPositionBias(AttentionGradPositionBiasOp op) {
  auto q = typeOf(op.getQuery());
  std::string body = R"($BUCKETSconst int64_t h = i, kvh = h / $GROUP;
for (int64_t n = 0; n < $NB; ++n) y[n * $H + h] = 0;
for (int64_t b = 0; b < $BATCH; ++b) {
  const int64_t len = $LEN;
  for (int64_t qi = 0; qi < $S; ++qi) {
    const int64_t row = (b * $S + qi) * $QW + h * $DH;
    const T lrow = lse[(b * $H + h) * $S + qi];
    T drow = 0;
    for (int64_t d = 0; d < $DH; ++d) drow += dy[row + d] * out[row + d];
    for (int64_t kj = 0; kj < $SKV; ++kj) {
$SCOREGRAD      y[mm_bucket[kj - qi + $SM1] * $H + h] += ds;
    }
  }
}
)";
  body = subst(body, {{"SCOREGRAD", kScoreGrad}, {"MASK", maskCondition(op.getMask(), (bool)op.getLength())}});
  std::map<std::string, std::string> vars = attentionVars(op, op.getQuery(), op.getKey());
  vars["NB"] = num(typeOf(op.getPositionBias()).getDimSize(0));
  vars["BATCH"] = num(q.getDimSize(0));
  vars["SM1"] = num(q.getDimSize(1) - 1);
  body = subst(body, vars);
  return makeKernel(op, attentionGradNames(op), op.getNumHeads(), body);
}

/// cache_update: writes new[B,T,W] at positions position.. of layer `layer`
/// of cache[L,B,Smax,W]; y is the cache's own buffer (updated in place).
Kernel cacheUpdate(CacheUpdateOp op) {
  auto c = typeOf(op.getCache()), u = typeOf(op.getUpdate());
  std::string body = subst(R"(const int64_t w = i % $W, t = (i / $W) % $TN, b = i / ($W * $TN);
const int64_t at = $POS + t;
if (at >= 0 && at < $SMAX) y[(($LAYER * $B + b) * $SMAX + at) * $W + w] = update[i];
)", {{"W", num(c.getDimSize(3))}, {"TN", num(u.getDimSize(1))}, {"SMAX", num(c.getDimSize(2))},
     {"B", num(c.getDimSize(1))}, {"LAYER", num(op.getLayerAttr().getInt())},
     {"POS", op.getPosition() ? "(int64_t)position[0]" : "0"}});
  SmallVector<std::string> names{"cache", "update"};
  if (op.getPosition()) names.push_back("position");
  Kernel k = makeKernel(op, names, u.getNumElements(), body);
  k.elements = 2 * u.getNumElements(); // the rest of the cache is not touched
  return k;
}

Kernel cacheRead(CacheReadOp op) {
  auto r = typeOf(op.getResult());
  std::string body = "y[i] = cache[" + num(op.getLayerAttr().getInt() * r.getNumElements()) + " + i];\n";
  return makeKernel(op, {"cache"}, r.getNumElements(), body);
}

} // namespace

FailureOr<Kernel> buildKernel(Operation *op) {
  std::optional<Kernel> k = llvm::TypeSwitch<Operation *, std::optional<Kernel>>(op)
      .Case([](LinearOp o) { return linear(o); })
      .Case([](EmbeddingOp o) { return embedding(o); })
      .Case([](PatchEmbedOp o) { return patchEmbed(o); })
      .Case([](Conv2dOp o) { return conv2d(o); })
      .Case([](Conv2dGradInputOp o) { return conv2dGradInput(o); })
      .Case([](Conv2dGradWeightOp o) { return conv2dGradWeight(o); })
      .Case([](Conv2dGradBiasOp o) { return conv2dGradBias(o); })
      .Case([](PatchEmbedGradInputOp o) { return patchEmbedGradInput(o); })
      .Case([](LayerNormOp o) { return layerNorm(o); })
      .Case([](RMSNormOp o) { return rmsNorm(o); })
      .Case<GeluOp, GeluTanhOp, QuickGeluOp, SiluOp, ReluOp, AddOp, MulOp, ActivationGradOp>(
          [](Operation *o) { return elementwise(o); })
      .Case([](FusedLinearOp o) { return fusedLinear(o); })
      .Case([](FusedElementwiseOp o) { return fusedElementwise(o); })
      .Case([](RoPEOp o) { return rope(o); })
      .Case([](AttentionOp o) { return attention(o); })
      .Case([](ConcatOp o) { return concat(o); })
      .Case([](SliceOp o) { return slice(o); })
      .Case([](BroadcastOp o) { return broadcast(o); })
      .Case([](MergeImageFeaturesOp o) { return mergeImageFeatures(o); })
      .Case([](CrossEntropyOp o) { return crossEntropy(o); })
      .Case([](CrossEntropyGradOp o) { return crossEntropyGrad(o); })
      .Case([](ReduceSumOp o) { return reduceSum(o); })
      .Case([](FillOp o) { return fill(o); })
      .Case([](ConstantOp o) { return constant(o); })
      .Case([](IotaOp o) { return iota(o); })
      .Case([](DivOp o) { return div(o); })
      .Case([](ReshapeOp o) { return reshape(o); })
      .Case([](TransposeOp o) { return transpose(o); })
      .Case([](ReduceMaxOp o) { return reduceMax(o); })
      .Case([](ReduceMaxGradOp o) { return reduceMaxGrad(o); })
      .Case([](L2NormalizeOp o) { return l2Normalize(o); })
      .Case([](L2NormalizeGradOp o) { return l2NormalizeGrad(o); })
      .Case([](GatherOp o) { return gather(o); })
      .Case([](SampleNegativesOp o) { return sampleNegatives(o); })
      .Case([](LinearGradInputOp o) { return linearGradInput(o); })
      .Case([](LinearGradWeightOp o) { return linearGradWeight(o); })
      .Case([](ReduceToOp o) { return reduceTo(o); })
      .Case([](EmbeddingGradOp o) { return embeddingGrad(o); })
      .Case([](PatchEmbedGradWeightOp o) { return patchEmbedGradWeight(o); })
      .Case([](LayerNormGradInputOp o) { return layerNormGradInput(o); })
      .Case([](LayerNormGradWeightOp o) { return layerNormGradWeight(o); })
      .Case([](RMSNormGradInputOp o) { return rmsNormGradInput(o); })
      .Case([](RMSNormGradWeightOp o) { return rmsNormGradWeight(o); })
      .Case([](PadOp o) { return pad(o); })
      .Case([](GatherImageFeaturesOp o) { return gatherImageFeatures(o); })
      .Case([](AttentionStatsOp o) { return attentionStats(o); })
      .Case([](FusedAttentionOp o) { return fusedAttention(o); })
      .Case([](AttentionGradQueryOp o) { return attentionGrad(o, AttnGrad::Query); })
      .Case([](AttentionGradKeyOp o) { return attentionGrad(o, AttnGrad::Key); })
      .Case([](AttentionGradValueOp o) { return attentionGrad(o, AttnGrad::Value); })
      .Case([](FusedAttentionGradOp o) { return fusedAttentionGrad(o); })
      .Case([](AttentionGradPositionBiasOp o) { return attentionGradPositionBias(o); })
      .Case([](CacheUpdateOp o) { return cacheUpdate(o); })
      .Case([](CacheReadOp o) { return cacheRead(o); })
      .Default([](Operation *) { return std::nullopt; });
  if (!k) {
    op->emitOpError("has no kernel in target code generation");
    return failure();
  }
  return *k;
}

const char *kernelPrelude() {
  // <math.h> in C++ brings the float and double overloads of exp, sqrt, ...
  return R"(#include <math.h>
#include <stdint.h>
#include <string.h>

// The exact GELU, v Phi(v), and its derivative Phi(v) + v phi(v) (Phi, phi:
// the standard normal CDF and density).
#ifdef __CUDACC__
// CUDA's normcdf computes Phi from erfc, accurate in the tails.
template <class T> static __device__ inline T mm_gelu(T v) { return (T)((double)v * normcdf((double)v)); }
template <class T> static __device__ inline T mm_gelu_grad(T v) {
  const double x = v;
  return (T)(normcdf(x) + x * exp(-0.5 * x * x) * 0.39894228040143268);
}
#else
// On the CPU, branch-free so that the loops vectorise (glibc has no vector
// erf): with t = |v| / sqrt(2), erf(t) = t A(t^2) below t = 0.75 and
// erfc(t) = exp(-t^2) G((t - 3) / (t + 3)) above, A and G least-squares fits
// (relative error under 5e-11 up to t = 10, past which Phi(-|v|) is under
// 1e-44), never 1 + erf(-t), which cancels. In double for double kernels (the
// gradient checks); float kernels use the float form below.
struct mm_normal { double cdf, pdf; };
static inline mm_normal mm_normal_of(double v) {
  const double t = fabs(v) * 0.70710678118654752, s = t * t;
  const double erf_small = t * (1.1283791670848295 + s * (-0.37612638564106116 + s * (0.11283780646378602 +
      s * (-0.026864907613101216 + s * (0.005217221426981234 + s * (-0.0008363392125157876 +
      s * 9.507211641633676e-05))))));
  const double tc = t < 10 ? t : 10, w = (tc - 3) / (tc + 3), e = exp(-tc * tc);
  const double g = 0.17900115118128498 + w * (-0.3262335600477137 + w * (0.2456038017381429 +
      w * (-0.15011593607947535 + w * (0.071665836222469 + w * (-0.024392510297621413 +
      w * (0.004269148685899268 + w * (0.0007078706147706934 + w * (-0.0005971181343431238 +
      w * (4.45626378750276e-05 + w * (6.405595475501017e-05 + w * (-1.0965077612566551e-05 +
      w * -7.344475999191119e-06)))))))))));
  const double erfc_t = t < 0.75 ? 1 - erf_small : (t < 10 ? e * g : 0.0);
  return {v >= 0 ? 1 - 0.5 * erfc_t : 0.5 * erfc_t, t < 10 ? e * 0.39894228040143268 : 0.0};
}
template <class T> static inline T mm_gelu(T v) { return (T)(v * mm_normal_of(v).cdf); }
template <class T> static inline T mm_gelu_grad(T v) {
  const mm_normal n = mm_normal_of(v);
  return (T)(n.cdf + v * n.pdf);
}
// Float kernels: the same forms in float, twice as many lanes per vector and
// no conversions (half the time of the double form). What float would lose is
// kept: t^2 = v^2 / 2 is carried exactly as s + sl (fma), and exp(-t^2) is
// e1 * e1 with e1 = exp(-s / 2) (1 - sl / 2), normal up to t = 10, multiplied
// in last, so that a GELU under float's normal range is rounded once. G is
// refitted for float (9 terms, relative error 1.5e-8 with float coefficients),
// and exp is inlined (mm_exp_neg): with libmvec's expf the call and the
// registers saved around it were a third of the time (1.44 -> 0.87 ns per
// element on one Zen 4 thread). Within 8 ulps of the exact value on
// [-14, 14], the derivative within 2e-7.
//
// exp(x) for x in [-50, 0]: x = k ln2 + r, |r| <= ln2 / 2 (ln2 in two parts,
// k ln2's high part exact), e^r by its Taylor series to r^7 (truncation under
// 6e-9, relative), times 2^k built in the exponent bits (k >= -73: normal).
static inline float mm_exp_neg(float x) {
  const float kf = __builtin_rintf(x * 1.44269504088896341f);
  const float r = fmaf(kf, -1.428606820309417e-06f, fmaf(kf, -0.693145751953125f, x));
  const float p = 1.0f + r * (1.0f + r * (0.5f + r * (0.16666667f + r * (0.041666668f + r * (0.008333334f +
      r * (0.0013888889f + r * 0.00019841270f))))));
  const int32_t bits = ((int32_t)kf + 127) << 23;
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}
struct mm_normal_f { float erf_small, h, e1; bool small; };
static inline mm_normal_f mm_normal_f_of(float v) {
  const float t = fabsf(v) * 0.70710678f, vv = v * v, s = 0.5f * vv, sl = 0.5f * fmaf(v, v, -vv);
  const float erf_small = t * (1.1283791670848295f + s * (-0.37612638564106116f + s * (0.11283780646378602f +
      s * (-0.026864907613101216f + s * (0.005217221426981234f + s * (-0.0008363392125157876f +
      s * 9.507211641633676e-05f))))));
  const float tc = t < 10 ? t : 10, w = (tc - 3) / (tc + 3);
  const float e1 = mm_exp_neg(-0.5f * (s < 100 ? s : 100)) * (1 - 0.5f * sl);
  const float g = 0.17900115251541138f + w * (-0.32623356580734253f + w * (0.24560368061065674f +
      w * (-0.15011554956436157f + w * (0.07166825979948044f + w * (-0.024397924542427063f +
      w * (0.004251743201166391f + w * (0.0007342671160586178f + w * -0.000543310132343322f)))))));
  // h e1 = Phi(-|v|) = erfc(t) / 2 from t = 0.75; 0 from t = 10.
  return {erf_small, t < 10 ? 0.5f * g * e1 : 0.0f, t < 10 ? e1 : 0.0f, t < 0.75f};
}
static inline float mm_gelu(float v) {
  const mm_normal_f n = mm_normal_f_of(v);
  if (n.small) return v * (v >= 0 ? 0.5f + 0.5f * n.erf_small : 0.5f - 0.5f * n.erf_small);
  return v >= 0 ? v * (1 - n.h * n.e1) : (v * n.h) * n.e1;
}
static inline float mm_gelu_grad(float v) {
  const mm_normal_f n = mm_normal_f_of(v);
  const float lower = n.small ? 0.5f - 0.5f * n.erf_small : n.h * n.e1; // Phi(-|v|)
  return (v >= 0 ? 1 - lower : lower) + v * ((0.39894228040143268f * n.e1) * n.e1);
}
#endif

// ACC = the sum over d in [0, N) of the expression (which reads d), in 16
// interleaved partial sums added in a fixed order at the end: the loop
// vectorises (a plain sum is one chain of dependent adds), and its result does
// not depend on the vector width the compiler picks.
#define MM_ROW_SUM(T, acc, n, ...) do { \
  T mm_p_[16] = {}; \
  const int64_t mm_n_ = (n), mm_f_ = mm_n_ / 16 * 16; \
  for (int64_t mm_d0_ = 0; mm_d0_ < mm_f_; mm_d0_ += 16) \
    for (int64_t d = mm_d0_; d < mm_d0_ + 16; ++d) mm_p_[d - mm_d0_] += (__VA_ARGS__); \
  for (int64_t d = mm_f_; d < mm_n_; ++d) mm_p_[d - mm_f_] += (__VA_ARGS__); \
  for (int mm_w_ = 8; mm_w_ > 0; mm_w_ /= 2) \
    for (int mm_l_ = 0; mm_l_ < mm_w_; ++mm_l_) mm_p_[mm_l_] += mm_p_[mm_l_ + mm_w_]; \
  acc = mm_p_[0]; \
} while (0)
)";
}

} // namespace mm
