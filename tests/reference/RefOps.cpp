// Plain C++ reference kernels; see RefOps.h for shapes and semantics.
#include "RefOps.h"

#include <vector>
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace mm::ref {

namespace {

void require(bool cond, const char* what) {
  if (!cond) throw std::invalid_argument(std::string("mm::ref: ") + what);
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

void linear(const float* x, const float* w, const float* b, float* y, int64_t M, int64_t K,
            int64_t N) {
  for (int64_t m = 0; m < M; ++m) {
    for (int64_t n = 0; n < N; ++n) {
      double acc = b ? static_cast<double>(b[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k)
        acc += static_cast<double>(x[m * K + k]) * static_cast<double>(w[n * K + k]);
      y[m * N + n] = static_cast<float>(acc);
    }
  }
}

void embedding(const int32_t* ids, const float* table, float* y, int64_t T, int64_t V, int64_t D) {
  for (int64_t t = 0; t < T; ++t) {
    const int64_t id = ids[t];
    for (int64_t d = 0; d < D; ++d)
      y[t * D + d] = (id >= 0 && id < V) ? table[id * D + d] : 0.0f;
  }
}

namespace {

/// The output size of a convolution along one axis; OP names the caller in
/// the error for a non-positive stride or a negative padding.
int64_t convOut(int64_t size, int64_t k, int64_t S, int64_t P, const char* op) {
  require(S > 0 && P >= 0, op);
  return (size + 2 * P - k) / S + 1;
}

/// Every product of a 2-D convolution (zero padding P on every side, stride
/// S): f(xi, wi, yi) for each output element yi, each weight element wi and
/// the input element xi it multiplies there, in the order n, o, oy, ox, c, u,
/// v (taps that fall in the padding skipped). The forward pass and both
/// gradients are this one walk, each adding a product where it belongs.
template <typename F>
void forEachConvTap(int64_t B, int64_t C, int64_t H, int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t S,
                    int64_t P, const char* op, F f) {
  const int64_t HO = convOut(H, KH, S, P, op), WO = convOut(W, KW, S, P, op);
  for (int64_t n = 0; n < B; ++n)
    for (int64_t o = 0; o < O; ++o)
      for (int64_t oy = 0; oy < HO; ++oy)
        for (int64_t ox = 0; ox < WO; ++ox)
          for (int64_t c = 0; c < C; ++c)
            for (int64_t u = 0; u < KH; ++u)
              for (int64_t v = 0; v < KW; ++v) {
                const int64_t iy = oy * S - P + u, ix = ox * S - P + v;
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                f(((n * C + c) * H + iy) * W + ix, ((o * C + c) * KH + u) * KW + v, ((n * O + o) * HO + oy) * WO + ox);
              }
}

}  // namespace

// Each sums its products in double, in the walk's order, and rounds once.
void conv2d(const float* x, const float* w, const float* b, float* y, int64_t B, int64_t C, int64_t H,
            int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P) {
  const char* op = "conv2d: stride must be positive and padding non-negative";
  const int64_t plane = convOut(H, KH, S, P, op) * convOut(W, KW, S, P, op);
  std::vector<double> acc(B * O * plane);
  for (size_t i = 0; i < acc.size(); ++i) acc[i] = b ? static_cast<double>(b[i / plane % O]) : 0.0;
  forEachConvTap(B, C, H, W, O, KH, KW, S, P, op,
                 [&](int64_t xi, int64_t wi, int64_t yi) {
                   acc[yi] += static_cast<double>(x[xi]) * static_cast<double>(w[wi]);
                 });
  for (size_t i = 0; i < acc.size(); ++i) y[i] = static_cast<float>(acc[i]);
}

void conv2dGradInput(const float* dy, const float* w, float* dx, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P) {
  std::vector<double> acc(B * C * H * W, 0.0);
  forEachConvTap(B, C, H, W, O, KH, KW, S, P, "conv2dGradInput: stride must be positive and padding non-negative",
                 [&](int64_t xi, int64_t wi, int64_t yi) {
                   acc[xi] += static_cast<double>(dy[yi]) * static_cast<double>(w[wi]);
                 });
  for (size_t i = 0; i < acc.size(); ++i) dx[i] = static_cast<float>(acc[i]);
}

void conv2dGradWeight(const float* dy, const float* x, float* dw, int64_t B, int64_t C, int64_t H, int64_t W,
                      int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P) {
  std::vector<double> acc(O * C * KH * KW, 0.0);
  forEachConvTap(B, C, H, W, O, KH, KW, S, P, "conv2dGradWeight: stride must be positive and padding non-negative",
                 [&](int64_t xi, int64_t wi, int64_t yi) {
                   acc[wi] += static_cast<double>(dy[yi]) * static_cast<double>(x[xi]);
                 });
  for (size_t i = 0; i < acc.size(); ++i) dw[i] = static_cast<float>(acc[i]);
}

void patchEmbed(const float* pix, const float* w, float* y, int64_t B, int64_t C, int64_t H,
                int64_t W, int64_t P, int64_t D) {
  require(P > 0, "patchEmbed: P must be positive");
  const int64_t gh = H / P, gw = W / P, N = gh * gw;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t py = 0; py < gh; ++py) {
      for (int64_t px = 0; px < gw; ++px) {
        const int64_t patch = py * gw + px;
        for (int64_t d = 0; d < D; ++d) {
          double acc = 0.0;
          for (int64_t c = 0; c < C; ++c)
            for (int64_t i = 0; i < P; ++i)
              for (int64_t j = 0; j < P; ++j) {
                const float pv = pix[((b * C + c) * H + (py * P + i)) * W + (px * P + j)];
                const float wv = w[((d * C + c) * P + i) * P + j];
                acc += static_cast<double>(pv) * static_cast<double>(wv);
              }
          y[(b * N + patch) * D + d] = static_cast<float>(acc);
        }
      }
    }
  }
}

void layerNorm(const float* x, const float* g, const float* b, float* y, int64_t M, int64_t D,
               float eps) {
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * D;
    double mean = 0.0;
    for (int64_t d = 0; d < D; ++d) mean += row[d];
    mean /= static_cast<double>(D);
    double var = 0.0;
    for (int64_t d = 0; d < D; ++d) {
      const double c = row[d] - mean;
      var += c * c;
    }
    var /= static_cast<double>(D);
    const double inv = 1.0 / std::sqrt(var + static_cast<double>(eps));
    for (int64_t d = 0; d < D; ++d) {
      const double gv = g ? g[d] : 1.0;
      const double bv = b ? b[d] : 0.0;
      y[m * D + d] = static_cast<float>((row[d] - mean) * inv * gv + bv);
    }
  }
}

void rmsNorm(const float* x, const float* g, float* y, int64_t M, int64_t D, float eps) {
  for (int64_t m = 0; m < M; ++m) {
    const float* row = x + m * D;
    double ms = 0.0;
    for (int64_t d = 0; d < D; ++d) ms += static_cast<double>(row[d]) * row[d];
    ms /= static_cast<double>(D);
    const double inv = 1.0 / std::sqrt(ms + static_cast<double>(eps));
    for (int64_t d = 0; d < D; ++d) {
      const double gv = g ? g[d] : 1.0;
      y[m * D + d] = static_cast<float>(row[d] * inv * gv);
    }
  }
}

void gelu(const float* x, float* y, int64_t n) {
  const double invSqrt2 = 1.0 / std::sqrt(2.0);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(0.5 * v * (1.0 + std::erf(v * invSqrt2)));
  }
}

void geluTanh(const float* x, float* y, int64_t n) {
  const double c = std::sqrt(2.0 / 3.14159265358979323846);
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(0.5 * v * (1.0 + std::tanh(c * (v + 0.044715 * v * v * v))));
  }
}

void quickGelu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(v * sigmoid(1.702 * v));
  }
}

void silu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double v = x[i];
    y[i] = static_cast<float>(v * sigmoid(v));
  }
}

void relu(const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void add(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(static_cast<double>(a[i]) + static_cast<double>(b[i]));
}

void mul(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(static_cast<double>(a[i]) * static_cast<double>(b[i]));
}

void rope(const float* x, float* y, int64_t B, int64_t S, int64_t H, int64_t Dh, float theta,
          int64_t posOffset) {
  require(Dh % 2 == 0, "rope: head dim must be even");
  const int64_t half = Dh / 2;
  std::vector<float> invFreq(half);
  for (int64_t i = 0; i < half; ++i) {
    const float e = static_cast<float>(2 * i) / static_cast<float>(Dh);
    invFreq[i] = 1.0f / std::pow(theta, e);
  }
  std::vector<double> tmp(Dh);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t s = 0; s < S; ++s) {
      const float pos = static_cast<float>(posOffset + s);
      for (int64_t h = 0; h < H; ++h) {
        const int64_t base = ((b * S + s) * H + h) * Dh;
        for (int64_t i = 0; i < half; ++i) {
          const double a = static_cast<double>(pos * invFreq[i]);  // float32 angle, as HF
          const double c = std::cos(a), sn = std::sin(a);
          const double x1 = x[base + i], x2 = x[base + i + half];
          tmp[i] = x1 * c - x2 * sn;
          tmp[i + half] = x2 * c + x1 * sn;
        }
        for (int64_t d = 0; d < Dh; ++d) y[base + d] = static_cast<float>(tmp[d]);
      }
    }
  }
}

bool maskAllows(Mask m, int64_t q, int64_t k, int64_t length, int64_t prefixLen) {
  if (k < 0 || k >= length) return false;
  switch (m) {
    case Mask::Bidirectional:
    case Mask::Padding:
    case Mask::ItmBidirectional:
      return true;
    case Mask::Causal:
    case Mask::ImagePrefixCausal:
      return k <= q;
    case Mask::ItgMultimodalCausal:
      if (q < prefixLen) return k < prefixLen;
      return k < prefixLen || k <= q;
    case Mask::ItcUnimodal:
      return (q < prefixLen) == (k < prefixLen);
  }
  return false;
}

void attention(const float* q, const float* k, const float* v, float* y, int64_t B, int64_t S,
               int64_t H, int64_t Hkv, int64_t Dh, Mask mask, int64_t length, int64_t prefixLen,
               float scale) {
  const std::vector<int64_t> lengths(B, length);
  attentionRowLengths(q, k, v, y, B, S, H, Hkv, Dh, mask, lengths.data(), prefixLen, scale);
}

int64_t t5RelativeBucket(int64_t rel, bool bidirectional, int64_t numBuckets, int64_t maxDistance) {
  // Per direction: offsets below half the buckets exactly, then logarithmic
  // ranges (float32 arithmetic, as Hugging Face's T5Attention) up to
  // maxDistance, where the last bucket takes every larger offset.
  const int64_t perDirection = bidirectional ? numBuckets / 2 : numBuckets;
  const int64_t base = bidirectional && rel > 0 ? perDirection : 0;
  const int64_t distance = bidirectional ? std::llabs(rel) : std::max<int64_t>(-rel, 0);
  const int64_t exact = perDirection / 2;
  if (distance < exact) return base + distance;
  const float logRatio = std::log(static_cast<float>(distance) / static_cast<float>(exact)) /
                         static_cast<float>(std::log(static_cast<double>(maxDistance) / exact));
  const float scaled = logRatio * static_cast<float>(perDirection - exact);
  if (!(scaled < static_cast<float>(perDirection))) return base + perDirection - 1;
  return base + std::min(exact + static_cast<int64_t>(scaled), perDirection - 1);
}

void attentionRowLengths(const float* q, const float* k, const float* v, float* y, int64_t B,
                         int64_t S, int64_t H, int64_t Hkv, int64_t Dh, Mask mask,
                         const int64_t* lengths, int64_t prefixLen, float scale) {
  attentionWithPositionBias(q, k, v, y, B, S, H, Hkv, Dh, mask, lengths, prefixLen, scale, nullptr);
}

void attentionWithPositionBias(const float* q, const float* k, const float* v, float* y, int64_t B,
                               int64_t S, int64_t H, int64_t Hkv, int64_t Dh, Mask mask,
                               const int64_t* lengths, int64_t prefixLen, float scale,
                               const PositionBias* bias) {
  require(Hkv > 0 && H % Hkv == 0, "attention: H must be a multiple of Hkv");
  const bool bidirectional = mask == Mask::Bidirectional || mask == Mask::Padding;
  const int64_t group = H / Hkv;
  const int64_t qStride = H * Dh, kvStride = Hkv * Dh;
  std::vector<double> score(S);
  std::vector<char> allowed(S);
  std::vector<double> acc(Dh);
  for (int64_t b = 0; b < B; ++b) {
    const int64_t length = lengths[b];
    for (int64_t h = 0; h < H; ++h) {
      const int64_t kh = h / group;
      for (int64_t i = 0; i < S; ++i) {
        const float* qi = q + (b * S + i) * qStride + h * Dh;
        double maxScore = -INFINITY;
        bool any = false;
        for (int64_t j = 0; j < S; ++j) {
          allowed[j] = maskAllows(mask, i, j, length, prefixLen);
          if (!allowed[j]) continue;
          const float* kj = k + (b * S + j) * kvStride + kh * Dh;
          double dot = 0.0;
          for (int64_t d = 0; d < Dh; ++d) dot += static_cast<double>(qi[d]) * kj[d];
          score[j] = dot * static_cast<double>(scale);
          if (bias)
            score[j] += bias->table[t5RelativeBucket(j - i, bidirectional, bias->numBuckets, bias->maxDistance) * H + h];
          maxScore = std::max(maxScore, score[j]);
          any = true;
        }
        std::fill(acc.begin(), acc.end(), 0.0);
        if (any) {
          double denom = 0.0;
          for (int64_t j = 0; j < S; ++j) {
            if (!allowed[j]) continue;
            const double p = std::exp(score[j] - maxScore);
            denom += p;
            const float* vj = v + (b * S + j) * kvStride + kh * Dh;
            for (int64_t d = 0; d < Dh; ++d) acc[d] += p * vj[d];
          }
          for (int64_t d = 0; d < Dh; ++d) acc[d] /= denom;
        }
        float* yi = y + (b * S + i) * qStride + h * Dh;
        for (int64_t d = 0; d < Dh; ++d) yi[d] = static_cast<float>(acc[d]);
      }
    }
  }
}

void mergeImageFeatures(const float* embeds, const int32_t* ids, const float* feats, float* y,
                        int64_t B, int64_t S, int64_t D, int64_t Nimg, int32_t imageToken) {
  for (int64_t b = 0; b < B; ++b) {
    int64_t j = 0;
    for (int64_t s = 0; s < S; ++s) {
      const float* src = embeds + (b * S + s) * D;
      if (ids[b * S + s] == imageToken && j < Nimg) {
        src = feats + (b * Nimg + j) * D;
        ++j;
      }
      std::copy(src, src + D, y + (b * S + s) * D);
    }
  }
}

void gatherImageFeatures(const float* x, const int32_t* ids, float* y, int64_t B, int64_t S, int64_t D,
                         int64_t Nimg, int32_t imageToken) {
  std::fill(y, y + B * Nimg * D, 0.0f);
  for (int64_t b = 0; b < B; ++b) {
    int64_t j = 0;
    for (int64_t s = 0; s < S; ++s) {
      if (ids[b * S + s] != imageToken) continue;
      if (j < Nimg) std::copy(x + (b * S + s) * D, x + (b * S + s + 1) * D, y + (b * Nimg + j) * D);
      ++j;
    }
  }
}

namespace {
/// concat for either element type: per outer index, a's rows then b's.
template <typename T>
void concatRows(const T* a, const T* b, T* y, int64_t outer, int64_t na, int64_t nb, int64_t inner) {
  const int64_t n = na + nb;
  for (int64_t o = 0; o < outer; ++o) {
    std::copy(a + o * na * inner, a + (o + 1) * na * inner, y + o * n * inner);
    std::copy(b + o * nb * inner, b + (o + 1) * nb * inner, y + (o * n + na) * inner);
  }
}

/// gather for either element type; an index outside [0, B) reads zeros.
template <typename T>
void gatherRows(const T* x, const int32_t* idx, T* y, int64_t B, int64_t N, int64_t W) {
  for (int64_t n = 0; n < N; ++n)
    for (int64_t w = 0; w < W; ++w) y[n * W + w] = (idx[n] >= 0 && idx[n] < B) ? x[idx[n] * W + w] : T(0);
}
}  // namespace

void concat(const float* a, const float* b, float* y, int64_t outer, int64_t na, int64_t nb,
            int64_t inner) {
  concatRows(a, b, y, outer, na, nb, inner);
}

void slice(const float* x, float* y, int64_t outer, int64_t n, int64_t start, int64_t size,
           int64_t inner) {
  require(start >= 0 && size >= 0 && start + size <= n, "slice: range outside the axis");
  for (int64_t o = 0; o < outer; ++o) {
    const float* src = x + (o * n + start) * inner;
    std::copy(src, src + size * inner, y + o * size * inner);
  }
}

void broadcastTo(const float* x, float* y, const std::vector<int64_t>& inShape,
                 const std::vector<int64_t>& outShape) {
  const size_t rank = outShape.size();
  require(inShape.size() <= rank, "broadcastTo: input rank exceeds output rank");
  // Input dims aligned to the output (leading 1s) and their row-major strides,
  // with stride 0 on broadcast axes.
  std::vector<int64_t> inDims(rank, 1), inStride(rank, 0);
  const size_t lead = rank - inShape.size();
  for (size_t i = 0; i < inShape.size(); ++i) inDims[lead + i] = inShape[i];
  int64_t stride = 1;
  for (size_t i = rank; i-- > 0;) {
    require(inDims[i] == outShape[i] || inDims[i] == 1, "broadcastTo: incompatible shapes");
    inStride[i] = (inDims[i] == 1 && outShape[i] != 1) ? 0 : stride;
    stride *= inDims[i];
  }
  int64_t total = 1;
  for (int64_t d : outShape) total *= d;
  std::vector<int64_t> idx(rank, 0);
  for (int64_t o = 0; o < total; ++o) {
    int64_t off = 0;
    for (size_t i = 0; i < rank; ++i) off += idx[i] * inStride[i];
    y[o] = x[off];
    for (size_t i = rank; i-- > 0;) {  // odometer increment, last axis fastest
      if (++idx[i] < outShape[i]) break;
      idx[i] = 0;
    }
  }
}

void concat(const int32_t* a, const int32_t* b, int32_t* y, int64_t outer, int64_t na, int64_t nb,
            int64_t inner) {
  concatRows(a, b, y, outer, na, nb, inner);
}

void div(const float* a, const float* b, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    y[i] = static_cast<float>(static_cast<double>(a[i]) / static_cast<double>(b[i]));
}

void transposeLast2(const float* x, float* y, int64_t outer, int64_t M, int64_t N) {
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) y[(o * N + j) * M + i] = x[(o * M + i) * N + j];
}

void reduceMax(const float* x, float* y, int64_t outer, int64_t J, int64_t inner) {
  require(J > 0, "reduceMax: empty axis");
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      float m = x[o * J * inner + i];
      for (int64_t j = 1; j < J; ++j) m = std::max(m, x[(o * J + j) * inner + i]);
      y[o * inner + i] = m;
    }
}

void reduceMaxGrad(const float* x, const float* dy, float* dx, int64_t outer, int64_t J,
                   int64_t inner) {
  require(J > 0, "reduceMaxGrad: empty axis");
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t i = 0; i < inner; ++i) {
      int64_t best = 0;
      for (int64_t j = 0; j < J; ++j) {
        if (x[(o * J + j) * inner + i] > x[(o * J + best) * inner + i]) best = j;
        dx[(o * J + j) * inner + i] = 0.0f;
      }
      dx[(o * J + best) * inner + i] = dy[o * inner + i];
    }
}

namespace {
double rowNorm(const float* x, int64_t D) {
  double ss = 0.0;
  for (int64_t d = 0; d < D; ++d) ss += static_cast<double>(x[d]) * x[d];
  return std::sqrt(ss);
}
}  // namespace

void l2Normalize(const float* x, float* y, int64_t M, int64_t D, float eps) {
  for (int64_t m = 0; m < M; ++m) {
    const double n = std::max(rowNorm(x + m * D, D), static_cast<double>(eps));
    for (int64_t d = 0; d < D; ++d) y[m * D + d] = static_cast<float>(x[m * D + d] / n);
  }
}

void l2NormalizeGrad(const float* x, const float* dy, float* dx, int64_t M, int64_t D, float eps) {
  for (int64_t m = 0; m < M; ++m) {
    const float *xr = x + m * D, *dyr = dy + m * D;
    const double norm = rowNorm(xr, D);
    if (norm > static_cast<double>(eps)) {
      double dot = 0.0;  // dy . y
      for (int64_t d = 0; d < D; ++d) dot += static_cast<double>(dyr[d]) * xr[d] / norm;
      for (int64_t d = 0; d < D; ++d) dx[m * D + d] = static_cast<float>((dyr[d] - xr[d] / norm * dot) / norm);
    } else {
      for (int64_t d = 0; d < D; ++d) dx[m * D + d] = static_cast<float>(dyr[d] / static_cast<double>(eps));
    }
  }
}

void gather(const float* x, const int32_t* idx, float* y, int64_t B, int64_t N, int64_t W) {
  gatherRows(x, idx, y, B, N, W);
}

void gather(const int32_t* x, const int32_t* idx, int32_t* y, int64_t B, int64_t N, int64_t W) {
  gatherRows(x, idx, y, B, N, W);
}

void negativeProbabilities(const float* sim, int64_t B, int64_t r, double* p) {
  require(B >= 2 && r >= 0 && r < B, "negativeProbabilities: needs B >= 2 and a row in [0, B)");
  const float* row = sim + r * B;
  double m = -INFINITY, total = 0.0;
  for (int64_t j = 0; j < B; ++j)
    if (j != r) m = std::max(m, static_cast<double>(row[j]));
  for (int64_t j = 0; j < B; ++j) {
    p[j] = j == r ? 0.0 : std::exp(row[j] - m);
    total += p[j];
  }
  for (int64_t j = 0; j < B; ++j) p[j] /= total;
}

void sampleNegatives(const float* sim, const float* uniform, int32_t* y, int64_t B) {
  std::vector<double> p(B);
  for (int64_t r = 0; r < B; ++r) {
    negativeProbabilities(sim, B, r, p.data());
    double acc = 0.0;
    int64_t pick = -1;
    for (int64_t j = 0; j < B; ++j) {
      if (j == r) continue;
      pick = j;
      acc += p[j];
      if (acc > uniform[r]) break;
    }
    y[r] = static_cast<int32_t>(pick);
  }
}

namespace {
bool counted(int32_t t, int64_t V, int32_t ignoreIndex) { return t != ignoreIndex && t >= 0 && t < V; }
}  // namespace

float crossEntropy(const float* logits, const int32_t* targets, int64_t R, int64_t V,
                   int32_t ignoreIndex, bool mean) {
  double total = 0.0;
  int64_t n = 0;
  for (int64_t r = 0; r < R; ++r) {
    if (!counted(targets[r], V, ignoreIndex)) continue;
    const float* row = logits + r * V;
    double m = row[0], sum = 0.0;
    for (int64_t j = 1; j < V; ++j) m = std::max(m, static_cast<double>(row[j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - m);
    total += m + std::log(sum) - row[targets[r]];
    ++n;
  }
  if (mean) total = n > 0 ? total / static_cast<double>(n) : 0.0;
  return static_cast<float>(total);
}

void crossEntropyGrad(const float* logits, const int32_t* targets, float g, float* dlogits, int64_t R,
                      int64_t V, int32_t ignoreIndex, bool mean) {
  int64_t n = 0;
  for (int64_t r = 0; r < R; ++r) n += counted(targets[r], V, ignoreIndex);
  const double scale = mean && n > 0 ? static_cast<double>(g) / static_cast<double>(n) : g;
  for (int64_t r = 0; r < R; ++r) {
    float* out = dlogits + r * V;
    if (!counted(targets[r], V, ignoreIndex)) {
      std::fill(out, out + V, 0.0f);
      continue;
    }
    const float* row = logits + r * V;
    double m = row[0], sum = 0.0;
    for (int64_t j = 1; j < V; ++j) m = std::max(m, static_cast<double>(row[j]));
    for (int64_t j = 0; j < V; ++j) sum += std::exp(row[j] - m);
    for (int64_t j = 0; j < V; ++j)
      out[j] = static_cast<float>(scale * (std::exp(row[j] - m) / sum - (j == targets[r] ? 1.0 : 0.0)));
  }
}

}  // namespace mm::ref
