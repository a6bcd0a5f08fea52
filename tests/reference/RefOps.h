// Plain C++ reference kernels: the ground truth that mmc's generated CPU and
// CUDA kernels are tested against.
//
// Conventions (all functions):
//   * Arrays are dense, row-major float32 (ids int32); shapes are given in the
//     comment of each function as name[d0,d1,...], last index fastest.
//   * Accumulation (sums, means, dot products, softmax) is done in double and
//     rounded to float once when the result is stored.
//   * Output buffers must not alias inputs unless a function says otherwise
//     (the elementwise functions allow y == x / y == a).
//   * Shape errors that the caller could have checked (e.g. H % Hkv != 0,
//     non-broadcastable shapes) throw std::invalid_argument.
//   * Simple loops on purpose: readability over speed.
#pragma once

#include <cstdint>
#include <vector>

namespace mm::ref {

// y = x * w^T + b
//   x[M,K], w[N,K] (PyTorch/HF Linear layout [out,in]), b[N] or nullptr, y[M,N]
void linear(const float* x, const float* w, const float* b, float* y, int64_t M, int64_t K,
            int64_t N);

// Table lookup.
//   ids[T], table[V,D], y[T,D]; an id outside [0,V) produces a row of zeros.
void embedding(const int32_t* ids, const float* table, float* y, int64_t T, int64_t V, int64_t D);

// Non-overlapping patch embedding == conv2d(stride P, kernel P, no bias),
// flattened with patches in row-major order (patch index = py*(W/P) + px).
//   pix[B,C,H,W], w[D,C,P,P], y[B,(H/P)*(W/P),D]
//   Rows/columns beyond the last whole patch (H%P, W%P) are ignored, as conv2d does.
void patchEmbed(const float* pix, const float* w, float* y, int64_t B, int64_t C, int64_t H,
                int64_t W, int64_t P, int64_t D);

// 2-D convolution as PyTorch's Conv2d (zero padding P on every side, stride S):
//   x[B,C,H,W], w[O,C,KH,KW], b[O] (nullptr = none), y[B,O,HO,WO] with
//   HO = (H + 2P - KH)/S + 1, WO = (W + 2P - KW)/S + 1.
void conv2d(const float* x, const float* w, const float* b, float* y, int64_t B, int64_t C, int64_t H,
            int64_t W, int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P);

// Its gradients for the output gradient dy[B,O,HO,WO]: the input's
// dx[B,C,H,W] (every tap that read x[b,c,iy,ix]) and the weight's
// dw[O,C,KH,KW] (summed over the batch).
void conv2dGradInput(const float* dy, const float* w, float* dx, int64_t B, int64_t C, int64_t H, int64_t W,
                     int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P);
void conv2dGradWeight(const float* dy, const float* x, float* dw, int64_t B, int64_t C, int64_t H, int64_t W,
                      int64_t O, int64_t KH, int64_t KW, int64_t S, int64_t P);

// LayerNorm over the last axis with biased (population) variance:
//   y = (x - mean) / sqrt(var + eps) * g + b
//   x[M,D], g[D] (nullptr = ones), b[D] (nullptr = zeros), y[M,D]
void layerNorm(const float* x, const float* g, const float* b, float* y, int64_t M, int64_t D,
               float eps);

// RMSNorm (LLaMA): y = x / sqrt(mean(x^2) + eps) * g
//   x[M,D], g[D] (nullptr = ones), y[M,D]
void rmsNorm(const float* x, const float* g, float* y, int64_t M, int64_t D, float eps);

// Elementwise activations, x[n] -> y[n] (y may equal x).
//   gelu:      0.5 * x * (1 + erf(x / sqrt(2)))      (exact, HF "gelu")
//   geluTanh:  0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
//                                                    (HF "gelu_new", T5's gated-GELU)
//   quickGelu: x * sigmoid(1.702 * x)                (HF "quick_gelu", CLIP)
//   silu:      x * sigmoid(x)                        (HF "silu", LLaMA MLP)
//   relu:      max(x, 0)
void gelu(const float* x, float* y, int64_t n);
void geluTanh(const float* x, float* y, int64_t n);
void quickGelu(const float* x, float* y, int64_t n);
void silu(const float* x, float* y, int64_t n);
void relu(const float* x, float* y, int64_t n);

// Elementwise a[n] (+|*) b[n] -> y[n] (y may equal a or b).
void add(const float* a, const float* b, float* y, int64_t n);
void mul(const float* a, const float* b, float* y, int64_t n);

// Rotary position embedding, HF LLaMA "rotate_half" convention.
//   x[B,S,H*Dh] -> y[B,S,H*Dh] (y may equal x); Dh even.
//   For token s (position p = posOffset + s), head h, i in [0, Dh/2):
//     inv_freq_i = 1 / theta^(2i/Dh)          (computed in float32, like HF)
//     a          = float(p) * inv_freq_i      (float32 product, like HF)
//     y[i]        = x[i] * cos(a) - x[i+Dh/2] * sin(a)
//     y[i+Dh/2]   = x[i+Dh/2] * cos(a) + x[i] * sin(a)
//   (== x*cos(cat(f,f)) + rotate_half(x)*sin(cat(f,f)) with rotate_half(x) = cat(-x2, x1)).
//   cos/sin and the products are evaluated in double from the float angle.
void rope(const float* x, float* y, int64_t B, int64_t S, int64_t H, int64_t Dh, float theta,
          int64_t posOffset);

// Attention mask kinds.
//   Bidirectional        every real key (encoders: CLIP/ViT).
//   Causal               k <= q (decoder LMs).
//   Padding              every real key (like Bidirectional; the padding itself
//                        is expressed by `length`).
//   ImagePrefixCausal    k <= q (LLaVA: image rows are spliced into a causal LM).
//   ItmBidirectional     every real key (BLIP-2 Q-Former image-text matching).
//   ItgMultimodalCausal  BLIP-2 image-grounded generation: the first `prefixLen`
//                        rows (queries) see only the prefix; text rows see the
//                        whole prefix plus text keys up to themselves.
//   ItcUnimodal          BLIP-2 contrastive: queries and text do not see each
//                        other (q and k in the same segment).
enum class Mask { Bidirectional, Causal, Padding, ImagePrefixCausal, ItmBidirectional,
                  ItgMultimodalCausal, ItcUnimodal };

// True when query q may attend to key k.
//   length    real sequence length: keys k >= length are masked out for every kind.
//   prefixLen length of the first segment (image tokens for ImagePrefixCausal,
//             query tokens for the BLIP-2 masks); unused by the other kinds.
bool maskAllows(Mask m, int64_t q, int64_t k, int64_t length, int64_t prefixLen);

// Scaled dot-product attention with grouped KV heads.
//   q[B,S,H*Dh], k[B,S,Hkv*Dh], v[B,S,Hkv*Dh], y[B,S,H*Dh]
//   H % Hkv == 0; head h reads kv head h / (H/Hkv).
//   y[b,i,h] = sum_j softmax_j(scale * q[b,i,h].k[b,j,kvh]) * v[b,j,kvh] over the
//   keys j with maskAllows(mask, i, j, length, prefixLen); a query row with no
//   allowed key outputs zeros.
void attention(const float* q, const float* k, const float* v, float* y, int64_t B, int64_t S,
               int64_t H, int64_t Hkv, int64_t Dh, Mask mask, int64_t length, int64_t prefixLen,
               float scale);

// LLaVA merge of projected image features into the token embeddings.
//   embeds[B,S,D], ids[B,S], feats[B,Nimg,D], y[B,S,D]
//   y = embeds, except that the j-th position (in order) of batch row b whose id
//   equals imageToken gets feats[b,j]; image-token positions beyond the Nimg-th
//   keep their embedding.
void mergeImageFeatures(const float* embeds, const int32_t* ids, const float* feats, float* y,
                        int64_t B, int64_t S, int64_t D, int64_t Nimg, int32_t imageToken);

// The adjoint of mergeImageFeatures' feature rows (its VJP for feats).
//   x[B,S,D], ids[B,S] -> y[B,Nimg,D]
//   y[b,j] = x[b,s] for the j-th position s (in order) of row b whose id equals
//   imageToken; rows j past that row's image tokens are zero.
void gatherImageFeatures(const float* x, const int32_t* ids, float* y, int64_t B, int64_t S, int64_t D,
                         int64_t Nimg, int32_t imageToken);

// Concatenate along one axis.
//   a[outer,na,inner], b[outer,nb,inner] -> y[outer,na+nb,inner]
void concat(const float* a, const float* b, float* y, int64_t outer, int64_t na, int64_t nb,
            int64_t inner);

// Slice along one axis.
//   x[outer,n,inner] -> y[outer,size,inner] with y[o,i,:] = x[o,start+i,:];
//   requires 0 <= start and start + size <= n.
void slice(const float* x, float* y, int64_t outer, int64_t n, int64_t start, int64_t size,
           int64_t inner);

// NumPy broadcasting of x to outShape.
//   x[inShape], y[outShape]; inShape is right-aligned against outShape (missing
//   leading dims count as 1); each in-dim must be 1 or equal to the out-dim.
void broadcastTo(const float* x, float* y, const std::vector<int64_t>& inShape,
                 const std::vector<int64_t>& outShape);

// Attention with one real-key count per batch row: as `attention`, with
// lengths[b] the `length` of batch row b (BLIP-2's stage 1 batches texts of
// different lengths).
void attentionRowLengths(const float* q, const float* k, const float* v, float* y, int64_t B,
                         int64_t S, int64_t H, int64_t Hkv, int64_t Dh, Mask mask,
                         const int64_t* lengths, int64_t prefixLen, float scale);

// T5's relative position bias: table[bucket * H + h] is added to the score of
// query i and key j in head h, bucket = t5RelativeBucket(j - i, ...) with
// bidirectional buckets under a bidirectional or padding mask.
struct PositionBias {
  const float* table; // [numBuckets, H]
  int64_t numBuckets;
  int64_t maxDistance;
};
int64_t t5RelativeBucket(int64_t rel, bool bidirectional, int64_t numBuckets, int64_t maxDistance);

// Attention as attentionRowLengths, with a relative position bias when `bias`
// is not null.
void attentionWithPositionBias(const float* q, const float* k, const float* v, float* y, int64_t B,
                               int64_t S, int64_t H, int64_t Hkv, int64_t Dh, Mask mask,
                               const int64_t* lengths, int64_t prefixLen, float scale,
                               const PositionBias* bias);

// concat of int32 arrays (token ids, lengths); as the float concat.
void concat(const int32_t* a, const int32_t* b, int32_t* y, int64_t outer, int64_t na, int64_t nb,
            int64_t inner);

// Elementwise a[n] / b[n] -> y[n] (y may equal a or b).
void div(const float* a, const float* b, float* y, int64_t n);

// Swap the last two axes: x[outer,M,N] -> y[outer,N,M], y[o,j,i] = x[o,i,j].
void transposeLast2(const float* x, float* y, int64_t outer, int64_t M, int64_t N);

// Maximum along one axis: x[outer,J,inner] -> y[outer,inner].
void reduceMax(const float* x, float* y, int64_t outer, int64_t J, int64_t inner);

// Its gradient: dx[outer,J,inner] is dy[o,i] at the first j holding the
// maximum of x[o,:,i], zero elsewhere. x[outer,J,inner], dy[outer,inner].
void reduceMaxGrad(const float* x, const float* dy, float* dx, int64_t outer, int64_t J,
                   int64_t inner);

// Row-wise L2 normalisation (PyTorch F.normalize(x, dim=-1, eps)):
//   y = x / max(||x||, eps), x[M,D], y[M,D].
void l2Normalize(const float* x, float* y, int64_t M, int64_t D, float eps);

// Its gradient, with n = max(||x||, eps) and y = x / n per row:
//   dx = (dy - y (dy . y)) / n where ||x|| > eps, dy / eps where the norm is clamped.
//   x[M,D], dy[M,D], dx[M,D].
void l2NormalizeGrad(const float* x, const float* dy, float* dx, int64_t M, int64_t D, float eps);

// Rows picked by index along the first axis: x[B,W], idx[N] -> y[N,W],
// y[n,:] = x[idx[n],:]; an index outside [0,B) gives a row of zeros.
void gather(const float* x, const int32_t* idx, float* y, int64_t B, int64_t N, int64_t W);
void gather(const int32_t* x, const int32_t* idx, int32_t* y, int64_t B, int64_t N, int64_t W);

// The distribution mm.sample_negatives draws row r's negative from:
//   p[j] = softmax(sim[r,:])_j renormalised over j != r; p[r] = 0.  sim[B,B], p[B].
void negativeProbabilities(const float* sim, int64_t B, int64_t r, double* p);

// One negative per row by inverse transform: row r picks the first column
// j != r whose cumulative probability (columns in order, r left out) exceeds
// uniform[r]; the last column other than r if none does (uniform near 1).
//   sim[B,B], uniform[B] in [0,1), y[B]; B >= 2.
void sampleNegatives(const float* sim, const float* uniform, int32_t* y, int64_t B);

// Cross-entropy over rows: logits[R,V], targets[R].  A row counts unless its
// target is ignoreIndex or outside [0,V).  Returns the sum over counted rows of
// logsumexp(logits[r]) - logits[r,targets[r]]; with `mean`, that sum divided by
// the number of counted rows (0 when none counts).
float crossEntropy(const float* logits, const int32_t* targets, int64_t R, int64_t V,
                   int32_t ignoreIndex, bool mean);

// Its gradient times the scalar g: dlogits[r] = g * (softmax(logits[r]) -
// onehot(targets[r])) for counted rows (divided by the number of counted rows
// with `mean`), zeros for the others.  logits[R,V], targets[R], dlogits[R,V].
void crossEntropyGrad(const float* logits, const int32_t* targets, float g, float* dlogits, int64_t R,
                      int64_t V, int32_t ignoreIndex, bool mean);

}  // namespace mm::ref
