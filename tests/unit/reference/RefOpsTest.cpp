// Hand-computed checks of the reference kernels in tests/reference/RefOps.h.
#include "RefOps.h"

#include <gtest/gtest.h>

#include <cmath>
#include <stdexcept>
#include <vector>

using namespace mm::ref;

namespace {

void expectNear(const std::vector<float>& got, const std::vector<float>& want, float tol = 1e-6f) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol) << "index " << i;
}

}  // namespace

TEST(RefOps, LinearWithAndWithoutBias) {
  // x[2,2], w[3,2] ([out,in]), b[3]
  std::vector<float> x = {1, 2, 3, 4};
  std::vector<float> w = {1, 0, 0, 1, 1, 1};
  std::vector<float> b = {0.5f, -1, 0};
  std::vector<float> y(6);
  linear(x.data(), w.data(), b.data(), y.data(), 2, 2, 3);
  expectNear(y, {1.5f, 1, 3, 3.5f, 3, 7});
  linear(x.data(), w.data(), nullptr, y.data(), 2, 2, 3);
  expectNear(y, {1, 2, 3, 3, 4, 7});
}

TEST(RefOps, EmbeddingOutOfRangeGivesZeros) {
  std::vector<float> table = {0, 1, 2, 3, 4, 5};  // [V=3, D=2]
  std::vector<int32_t> ids = {2, 0, -1, 3};
  std::vector<float> y(8, 7.0f);
  embedding(ids.data(), table.data(), y.data(), 4, 3, 2);
  expectNear(y, {4, 5, 0, 1, 0, 0, 0, 0});
}

TEST(RefOps, PatchEmbedSumsBlocksRowMajor) {
  // pix[1,1,2,4] = 0..7, w[1,1,2,2] = ones -> two patches: 0+1+4+5, 2+3+6+7.
  std::vector<float> pix = {0, 1, 2, 3, 4, 5, 6, 7};
  std::vector<float> w(4, 1.0f);
  std::vector<float> y(2);
  patchEmbed(pix.data(), w.data(), y.data(), 1, 1, 2, 4, 2, 1);
  expectNear(y, {10, 18});
}

TEST(RefOps, PatchEmbedChannelsAndRemainder) {
  // pix[1,2,3,4]: channel c, row r, col q -> 100c + 10r + q.  H=3 with P=2: the
  // last row is ignored, grid 1x2.  w[2,2,2,2]: d0 picks (c1,i1,j0), d1 picks (c0,i0,j1).
  const int64_t C = 2, H = 3, W = 4, P = 2, D = 2;
  std::vector<float> pix(C * H * W);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t r = 0; r < H; ++r)
      for (int64_t q = 0; q < W; ++q) pix[(c * H + r) * W + q] = 100.0f * c + 10.0f * r + q;
  std::vector<float> w(D * C * P * P, 0.0f);
  w[((0 * C + 1) * P + 1) * P + 0] = 1.0f;
  w[((1 * C + 0) * P + 0) * P + 1] = 2.0f;
  std::vector<float> y(2 * D);
  patchEmbed(pix.data(), w.data(), y.data(), 1, C, H, W, P, D);
  // patch 0 (cols 0-1): d0 = pix(c1,r1,q0) = 110; d1 = 2*pix(c0,r0,q1) = 2
  // patch 1 (cols 2-3): d0 = pix(c1,r1,q2) = 112; d1 = 2*pix(c0,r0,q3) = 6
  expectNear(y, {110, 2, 112, 6});
}

TEST(RefOps, LayerNormOfOneTwoThree) {
  std::vector<float> x = {1, 2, 3};
  std::vector<float> y(3);
  const double inv = 1.0 / std::sqrt(2.0 / 3.0 + 1e-5);
  layerNorm(x.data(), nullptr, nullptr, y.data(), 1, 3, 1e-5f);
  expectNear(y, {float(-inv), 0.0f, float(inv)}, 1e-5f);
  std::vector<float> g = {1, 2, 3}, b = {0, 0, 1};
  layerNorm(x.data(), g.data(), b.data(), y.data(), 1, 3, 1e-5f);
  expectNear(y, {float(-inv), 0.0f, float(3 * inv + 1)}, 1e-5f);
  // Two rows are normalised independently; a constant row gives b.
  std::vector<float> x2 = {5, 5, 5, 1, 2, 3};
  std::vector<float> y2(6);
  layerNorm(x2.data(), g.data(), b.data(), y2.data(), 2, 3, 1e-5f);
  expectNear(y2, {0, 0, 1, float(-inv), 0.0f, float(3 * inv + 1)}, 1e-5f);
}

TEST(RefOps, RmsNormThreeFour) {
  // mean(x^2) = 12.5, rms = 3.5355339
  std::vector<float> x = {3, 4};
  std::vector<float> g = {2, 1};
  std::vector<float> y(2);
  rmsNorm(x.data(), g.data(), y.data(), 1, 2, 0.0f);
  expectNear(y, {float(2 * 3 / std::sqrt(12.5)), float(4 / std::sqrt(12.5))});
  rmsNorm(x.data(), nullptr, y.data(), 1, 2, 0.0f);
  expectNear(y, {0.8485281f, 1.1313709f});
}

TEST(RefOps, Activations) {
  std::vector<float> x = {0, 1, -1, 3};
  std::vector<float> y(4);
  gelu(x.data(), y.data(), 4);
  expectNear(y, {0.0f, 0.8413447f, -0.1586553f, 2.9959502f});
  quickGelu(x.data(), y.data(), 4);
  expectNear(y, {0.0f, 0.8457957f, -0.1542043f, 2.9819287f});
  silu(x.data(), y.data(), 4);
  expectNear(y, {0.0f, 0.7310586f, -0.2689414f, 2.8577223f});
  relu(x.data(), y.data(), 4);
  expectNear(y, {0, 1, 0, 3});
  // In place is allowed.
  std::vector<float> z = {-2, 2};
  silu(z.data(), z.data(), 2);
  expectNear(z, {-0.2384058f, 1.7615942f});
}

TEST(RefOps, AddMul) {
  std::vector<float> a = {1, -2, 3}, b = {4, 5, -6}, y(3);
  add(a.data(), b.data(), y.data(), 3);
  expectNear(y, {5, 3, -3});
  mul(a.data(), b.data(), y.data(), 3);
  expectNear(y, {4, -10, -18});
}

TEST(RefOps, RopeAtPositionZeroIsIdentity) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8};  // [B=1,S=1,H=2,Dh=4]
  std::vector<float> y(8);
  rope(x.data(), y.data(), 1, 1, 2, 4, 10000.0f, 0);
  expectNear(y, x, 0.0f);
}

TEST(RefOps, RopeRotateHalfPairs) {
  // Dh=4, theta=100: inv_freq = {1, 0.1}.  Pair (0,2) rotates by p, pair (1,3) by 0.1p.
  // S=2 with posOffset=1: rows are positions 1 and 2.
  std::vector<float> x = {1, 0, 0, 0,   // position 1
                          1, 1, 0, 0};  // position 2
  std::vector<float> y(8);
  rope(x.data(), y.data(), 1, 2, 1, 4, 100.0f, 1);
  expectNear(y, {std::cos(1.0f), 0, std::sin(1.0f), 0,
                 std::cos(2.0f), std::cos(0.2f), std::sin(2.0f), std::sin(0.2f)}, 1e-6f);
  // Second half maps to: y[i+Dh/2] = x[i+Dh/2]*cos + x[i]*sin; y[i] = x[i]*cos - x[i+Dh/2]*sin.
  std::vector<float> x2 = {0, 0, 1, 0};
  std::vector<float> y2(4);
  rope(x2.data(), y2.data(), 1, 1, 1, 4, 100.0f, 1);
  expectNear(y2, {-std::sin(1.0f), 0, std::cos(1.0f), 0}, 1e-6f);
  // Batches and heads each get the same rotation for the same position.
  std::vector<float> x3 = {1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};  // [B=2,S=1,H=2,4]
  std::vector<float> y3(16);
  rope(x3.data(), y3.data(), 2, 1, 2, 4, 100.0f, 3);
  for (int r = 0; r < 4; ++r) {
    EXPECT_NEAR(y3[r * 4 + 0], std::cos(3.0f), 1e-6f);
    EXPECT_NEAR(y3[r * 4 + 2], std::sin(3.0f), 1e-6f);
  }
}

namespace {

// Truth table for length 4 (two prefix rows, two text rows), row = query.
void expectTable(Mask m, const int (&want)[4][4], int64_t length = 4) {
  for (int q = 0; q < 4; ++q)
    for (int k = 0; k < 4; ++k)
      EXPECT_EQ(maskAllows(m, q, k, length, 2), want[q][k] != 0)
          << "mask " << static_cast<int>(m) << " q=" << q << " k=" << k;
}

}  // namespace

TEST(RefOps, MaskTruthTables) {
  const int all[4][4] = {{1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}, {1, 1, 1, 1}};
  const int causal[4][4] = {{1, 0, 0, 0}, {1, 1, 0, 0}, {1, 1, 1, 0}, {1, 1, 1, 1}};
  const int itg[4][4] = {{1, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 1, 0}, {1, 1, 1, 1}};
  const int itc[4][4] = {{1, 1, 0, 0}, {1, 1, 0, 0}, {0, 0, 1, 1}, {0, 0, 1, 1}};
  expectTable(Mask::Bidirectional, all);
  expectTable(Mask::Padding, all);
  expectTable(Mask::ItmBidirectional, all);
  expectTable(Mask::Causal, causal);
  expectTable(Mask::ImagePrefixCausal, causal);
  expectTable(Mask::ItgMultimodalCausal, itg);
  expectTable(Mask::ItcUnimodal, itc);
}

TEST(RefOps, MaskLengthHidesPaddedKeys) {
  // length 3: key 3 is masked for every kind.
  const int allPad[4][4] = {{1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}};
  const int causalPad[4][4] = {{1, 0, 0, 0}, {1, 1, 0, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}};
  const int itgPad[4][4] = {{1, 1, 0, 0}, {1, 1, 0, 0}, {1, 1, 1, 0}, {1, 1, 1, 0}};
  const int itcPad[4][4] = {{1, 1, 0, 0}, {1, 1, 0, 0}, {0, 0, 1, 0}, {0, 0, 1, 0}};
  expectTable(Mask::Bidirectional, allPad, 3);
  expectTable(Mask::Padding, allPad, 3);
  expectTable(Mask::ItmBidirectional, allPad, 3);
  expectTable(Mask::Causal, causalPad, 3);
  expectTable(Mask::ImagePrefixCausal, causalPad, 3);
  expectTable(Mask::ItgMultimodalCausal, itgPad, 3);
  expectTable(Mask::ItcUnimodal, itcPad, 3);
}

TEST(RefOps, AttentionSingleKeyReturnsV) {
  std::vector<float> q = {0.3f, -2.0f}, k = {5.0f, 1.0f}, v = {7.0f, -8.0f}, y(2);
  attention(q.data(), k.data(), v.data(), y.data(), 1, 1, 1, 1, 2, Mask::Bidirectional, 1, 0, 0.7f);
  expectNear(y, v);
}

TEST(RefOps, AttentionCausalWeights) {
  // Dh=1, S=2, scale 1.  q1.k0 = 0, q1.k1 = ln 3 -> weights 1/4, 3/4.
  std::vector<float> q = {1.0f, 1.0f};
  std::vector<float> k = {0.0f, std::log(3.0f)};
  std::vector<float> v = {4.0f, 8.0f};
  std::vector<float> y(2);
  attention(q.data(), k.data(), v.data(), y.data(), 1, 2, 1, 1, 1, Mask::Causal, 2, 0, 1.0f);
  expectNear(y, {4.0f, 0.25f * 4 + 0.75f * 8}, 1e-5f);
  attention(q.data(), k.data(), v.data(), y.data(), 1, 2, 1, 1, 1, Mask::Bidirectional, 2, 0, 1.0f);
  expectNear(y, {7.0f, 7.0f}, 1e-5f);
  // Scale applies to the scores: scale 0 -> uniform average.
  attention(q.data(), k.data(), v.data(), y.data(), 1, 2, 1, 1, 1, Mask::Bidirectional, 2, 0, 0.0f);
  expectNear(y, {6.0f, 6.0f}, 1e-5f);
  // Padding: length 1 hides key 1 for both rows.
  attention(q.data(), k.data(), v.data(), y.data(), 1, 2, 1, 1, 1, Mask::Padding, 1, 0, 1.0f);
  expectNear(y, {4.0f, 4.0f}, 1e-5f);
}

TEST(RefOps, AttentionGroupedKvHeads) {
  // S=1, H=4, Hkv=2, Dh=1: heads 0,1 read kv head 0; heads 2,3 read kv head 1.
  std::vector<float> q = {1, 2, 3, 4}, k = {1, 1}, v = {10, 20}, y(4);
  attention(q.data(), k.data(), v.data(), y.data(), 1, 1, 4, 2, 1, Mask::Causal, 1, 0, 1.0f);
  expectNear(y, {10, 10, 20, 20});
  // Batches are independent.
  std::vector<float> qb = {1, 1}, kb = {0, 0}, vb = {3, 5}, yb(2);
  attention(qb.data(), kb.data(), vb.data(), yb.data(), 2, 1, 1, 1, 1, Mask::Causal, 1, 0, 1.0f);
  expectNear(yb, {3, 5});
  EXPECT_THROW(attention(q.data(), k.data(), v.data(), y.data(), 1, 1, 3, 2, 1, Mask::Causal, 1,
                         0, 1.0f),
               std::invalid_argument);
}

TEST(RefOps, AttentionRowWithNoKeyIsZero) {
  // ItcUnimodal with prefixLen 1 and length 1: the text query (row 1) has no
  // real key in its own segment -> zeros; the prefix query sees key 0.
  std::vector<float> q = {1, 1}, k = {1, 1}, v = {9, 9}, y = {-1, -1};
  attention(q.data(), k.data(), v.data(), y.data(), 1, 2, 1, 1, 1, Mask::ItcUnimodal, 1, 1, 1.0f);
  expectNear(y, {9, 0});
}

TEST(RefOps, MergeImageFeaturesInOrder) {
  // B=2, S=4, D=1, Nimg=2, image token 9.
  std::vector<float> embeds = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int32_t> ids = {1, 9, 9, 2,   // both image slots filled in order
                              9, 9, 9, 3};  // third image token keeps its embedding
  std::vector<float> feats = {100, 101, 200, 201};
  std::vector<float> y(8);
  mergeImageFeatures(embeds.data(), ids.data(), feats.data(), y.data(), 2, 4, 1, 2, 9);
  expectNear(y, {1, 100, 101, 4, 200, 201, 7, 8});
  // D=2 copies whole rows.
  std::vector<float> e2 = {0, 0, 0, 0}, f2 = {5, 6}, y2(4);
  std::vector<int32_t> i2 = {3, 9};
  mergeImageFeatures(e2.data(), i2.data(), f2.data(), y2.data(), 1, 2, 2, 1, 9);
  expectNear(y2, {0, 0, 5, 6});
}

TEST(RefOps, ConcatAndSlice) {
  // a[2,1,2], b[2,2,2] -> y[2,3,2]
  std::vector<float> a = {1, 2, 3, 4}, b = {5, 6, 7, 8, 9, 10, 11, 12}, y(12);
  concat(a.data(), b.data(), y.data(), 2, 1, 2, 2);
  expectNear(y, {1, 2, 5, 6, 7, 8, 3, 4, 9, 10, 11, 12});
  // slice rows 1..2 of each outer block back out: == b
  std::vector<float> s(8);
  slice(y.data(), s.data(), 2, 3, 1, 2, 2);
  expectNear(s, b);
  std::vector<float> s0(4);
  slice(y.data(), s0.data(), 2, 3, 0, 1, 2);
  expectNear(s0, a);
  EXPECT_THROW(slice(y.data(), s.data(), 2, 3, 2, 2, 2), std::invalid_argument);
}

TEST(RefOps, BroadcastToNumpyRules) {
  std::vector<float> row = {1, 2, 3}, y(6);
  broadcastTo(row.data(), y.data(), {3}, {2, 3});
  expectNear(y, {1, 2, 3, 1, 2, 3});
  std::vector<float> col = {1, 2};
  broadcastTo(col.data(), y.data(), {2, 1}, {2, 3});
  expectNear(y, {1, 1, 1, 2, 2, 2});
  std::vector<float> one = {7}, y4(4);
  broadcastTo(one.data(), y4.data(), {}, {2, 2});
  expectNear(y4, {7, 7, 7, 7});
  broadcastTo(one.data(), y4.data(), {1}, {4});
  expectNear(y4, {7, 7, 7, 7});
  // Middle axis: [2,1,3] -> [2,2,3]
  std::vector<float> m = {1, 2, 3, 4, 5, 6}, y12(12);
  broadcastTo(m.data(), y12.data(), {2, 1, 3}, {2, 2, 3});
  expectNear(y12, {1, 2, 3, 1, 2, 3, 4, 5, 6, 4, 5, 6});
  // Identity.
  std::vector<float> same(6);
  broadcastTo(m.data(), same.data(), {2, 3}, {2, 3});
  expectNear(same, m);
  EXPECT_THROW(broadcastTo(m.data(), y12.data(), {2, 3}, {3, 3}), std::invalid_argument);
  EXPECT_THROW(broadcastTo(m.data(), y12.data(), {1, 2, 3}, {2, 3}), std::invalid_argument);
}

// COM: the buckets of T5's usual 32 buckets and max distance 128, for key
// offsets -200..200, as PyTorch computes Hugging Face's formula (float32 log:
// offset -64 lands exactly on a bucket boundary, 14 and not 13).
TEST(RefOps, T5RelativeBucketsMatchPyTorch) {
  const int64_t bidirectional[401] = {
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14,
    14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 14, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 13, 12, 12, 12, 12, 12,
    12, 12, 12, 12, 12, 12, 12, 12, 12, 11, 11, 11, 11, 11, 11, 11, 11, 11, 10, 10, 10, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8, 7, 6, 5, 4, 3, 2, 1,
    0, 17, 18, 19, 20, 21, 22, 23, 24, 24, 24, 24, 25, 25, 25, 25, 26, 26, 26, 26, 26, 26, 26, 27, 27, 27, 27, 27, 27, 27, 27, 27, 28, 28, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 28, 28, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30,
    30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31,
  };
  const int64_t causal[401] = {
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31, 31,
    31, 31, 31, 31, 31, 31, 31, 31, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 30, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 29, 28, 28, 28, 28, 28, 28,
    28, 28, 28, 28, 27, 27, 27, 27, 27, 27, 27, 27, 27, 27, 26, 26, 26, 26, 26, 26, 26, 26, 25, 25, 25, 25, 25, 25, 25, 24, 24, 24, 24, 24, 24, 23, 23, 23, 23, 23,
    23, 22, 22, 22, 22, 22, 21, 21, 21, 21, 20, 20, 20, 20, 19, 19, 19, 18, 18, 18, 17, 17, 16, 16, 16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
  };
  for (int64_t rel = -200; rel <= 200; ++rel) {
    EXPECT_EQ(t5RelativeBucket(rel, true, 32, 128), bidirectional[rel + 200]) << "offset " << rel;
    EXPECT_EQ(t5RelativeBucket(rel, false, 32, 128), causal[rel + 200]) << "offset " << rel;
  }
}

// The bias moves each score by its bucket's entry: with q = 0 every score is
// the bias alone, so the output is a softmax over the table's entries.
TEST(RefOps, AttentionPositionBiasAddsTheBucketEntry) {
  const int64_t S = 3, H = 1;
  std::vector<float> q(S, 0.0f), k = {1, 2, 3}, v = {1, 10, 100}, y(S);
  // Bucket 0: offset 0; 1: keys before the query; 3: keys after it (2 only for offset +0).
  const float table[4] = {0.0f, std::log(2.0f), std::log(3.0f), std::log(5.0f)};
  const PositionBias bias{table, 4, 8};
  const int64_t lengths[1] = {S};
  attentionWithPositionBias(q.data(), k.data(), v.data(), y.data(), 1, S, H, 1, 1, Mask::Bidirectional, lengths, 0,
                            1.0f, &bias);
  // 4 bidirectional buckets: offset 0 -> 0, -1 -> 1, +1 -> 3, |offset| 2 -> the last of its side (1 or 3).
  for (int64_t i = 0; i < S; ++i) {
    double num = 0, den = 0;
    for (int64_t j = 0; j < S; ++j) {
      const double w = table[t5RelativeBucket(j - i, true, 4, 8)];
      num += std::exp(w) * v[j];
      den += std::exp(w);
    }
    EXPECT_NEAR(y[i], num / den, 1e-4 * std::fabs(num / den)) << "row " << i;
  }
  EXPECT_EQ(t5RelativeBucket(0, true, 4, 8), 0);
  EXPECT_EQ(t5RelativeBucket(-1, true, 4, 8), 1);
  EXPECT_EQ(t5RelativeBucket(1, true, 4, 8), 3);
  EXPECT_EQ(t5RelativeBucket(-2, true, 4, 8), 1);
}

TEST(RefOps, AttentionRowLengthsIsAttentionPerRow) {
  // Two batch rows with lengths 2 and 1: each row equals `attention` run on
  // that row alone with its own length.
  std::vector<float> q = {1, 2, 3, 4}, k = {0.5f, -1, 2, 0.25f}, v = {4, 8, -2, 6}, y(4);
  const int64_t lengths[] = {2, 1};
  attentionRowLengths(q.data(), k.data(), v.data(), y.data(), 2, 2, 1, 1, 1, Mask::Bidirectional, lengths, 0,
                      1.0f);
  for (int64_t b = 0; b < 2; ++b) {
    std::vector<float> one(2);
    attention(q.data() + 2 * b, k.data() + 2 * b, v.data() + 2 * b, one.data(), 1, 2, 1, 1, 1,
              Mask::Bidirectional, lengths[b], 0, 1.0f);
    expectNear({y[2 * b], y[2 * b + 1]}, one);
  }
  expectNear({y[2], y[3]}, {-2, -2});  // row 1 sees key 0 only
}

TEST(RefOps, DivTransposeAndConcatI32) {
  std::vector<float> a = {1, -6, 3}, b = {4, 3, -0.5f}, y(3);
  div(a.data(), b.data(), y.data(), 3);
  expectNear(y, {0.25f, -2, -6});
  // x[1,2,3] -> y[1,3,2]
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, t(6);
  transposeLast2(x.data(), t.data(), 1, 2, 3);
  expectNear(t, {1, 4, 2, 5, 3, 6});
  std::vector<int32_t> ia = {1, 2}, ib = {3, 4, 5, 6}, iy(6);
  concat(ia.data(), ib.data(), iy.data(), 2, 1, 2, 1);
  EXPECT_EQ(iy, (std::vector<int32_t>{1, 3, 4, 2, 5, 6}));
}

TEST(RefOps, ReduceMaxGradientGoesToTheFirstMaximum) {
  // x[1,3,2] over axis 1: column 0 = (1, 5, 5) ties at j = 1 and 2, column 1 = (7, 2, 3).
  std::vector<float> x = {1, 7, 5, 2, 5, 3}, y(2), dy = {10, 20}, dx(6);
  reduceMax(x.data(), y.data(), 1, 3, 2);
  expectNear(y, {5, 7});
  reduceMaxGrad(x.data(), dy.data(), dx.data(), 1, 3, 2);
  expectNear(dx, {0, 20, 10, 0, 0, 0});
}

TEST(RefOps, L2NormalizeAndItsGradient) {
  // (3, 4) has norm 5; (0.3, 0.4) norm 0.5 < eps = 1 is divided by eps.
  std::vector<float> x = {3, 4, 0.3f, 0.4f}, y(4);
  l2Normalize(x.data(), y.data(), 2, 2, 1.0f);
  expectNear(y, {0.6f, 0.8f, 0.3f, 0.4f});
  // dy along y has no effect on the direction (zero gradient); across y it is scaled by 1/n.
  std::vector<float> dy = {0.6f, 0.8f, 1, 2}, dx(4);
  l2NormalizeGrad(x.data(), dy.data(), dx.data(), 2, 2, 1.0f);
  expectNear(dx, {0, 0, 1, 2});
  std::vector<float> across = {-0.8f, 0.6f, 0, 0};
  l2NormalizeGrad(x.data(), across.data(), dx.data(), 2, 2, 1.0f);
  expectNear(dx, {-0.16f, 0.12f, 0, 0});
}

TEST(RefOps, GatherOutOfRangeGivesZeros) {
  std::vector<float> x = {1, 2, 3, 4, 5, 6}, y(8, 7.0f);  // x[3,2]
  std::vector<int32_t> idx = {2, -1, 0, 3};
  gather(x.data(), idx.data(), y.data(), 3, 4, 2);
  expectNear(y, {5, 6, 0, 0, 1, 2, 0, 0});
  std::vector<int32_t> xi = {10, 20, 30}, yi(4, 7);
  gather(xi.data(), idx.data(), yi.data(), 3, 4, 1);
  EXPECT_EQ(yi, (std::vector<int32_t>{30, 0, 10, 0}));
}

TEST(RefOps, SampleNegativesByInverseTransformWithoutThePositive) {
  // Row 0: sim (9, 0, log 3): the positive's weight is left out, columns 1
  // and 2 get 1/4 and 3/4. Row 1: sim (0, 5, 0): columns 0 and 2 half each.
  const float l3 = std::log(3.0f);
  std::vector<float> sim = {9, 0, l3, 0, 5, 0, 0, 0, 0};
  std::vector<double> p(3);
  negativeProbabilities(sim.data(), 3, 0, p.data());
  EXPECT_NEAR(p[0], 0, 1e-12);
  EXPECT_NEAR(p[1], 0.25, 1e-7);
  EXPECT_NEAR(p[2], 0.75, 1e-7);
  std::vector<int32_t> y(3);
  std::vector<float> u = {0.2f, 0.6f, 0.0f};
  sampleNegatives(sim.data(), u.data(), y.data(), 3);
  EXPECT_EQ(y, (std::vector<int32_t>{1, 2, 0}));
  u = {0.3f, 0.4f, 0.99999994f};
  sampleNegatives(sim.data(), u.data(), y.data(), 3);
  EXPECT_EQ(y, (std::vector<int32_t>{2, 0, 1}));
}

TEST(RefOps, CrossEntropySumMeanAndGradient) {
  // Two rows of V=2 with equal logits: each counted row adds log 2. Targets
  // 1, ignored (-100), out of range (2), 0: two rows count.
  std::vector<float> logits(8, 0.0f);
  std::vector<int32_t> t = {1, -100, 2, 0};
  const float l2 = std::log(2.0f);
  EXPECT_NEAR(crossEntropy(logits.data(), t.data(), 4, 2, -100, false), 2 * l2, 1e-6f);
  EXPECT_NEAR(crossEntropy(logits.data(), t.data(), 4, 2, -100, true), l2, 1e-6f);
  std::vector<int32_t> none = {-100, -100, 5, -1};
  EXPECT_EQ(crossEntropy(logits.data(), none.data(), 4, 2, -100, true), 0.0f);
  std::vector<float> d(8);
  crossEntropyGrad(logits.data(), t.data(), 3.0f, d.data(), 4, 2, -100, false);
  expectNear(d, {1.5f, -1.5f, 0, 0, 0, 0, -1.5f, 1.5f});
  crossEntropyGrad(logits.data(), t.data(), 3.0f, d.data(), 4, 2, -100, true);
  expectNear(d, {0.75f, -0.75f, 0, 0, 0, 0, -0.75f, 0.75f});
}
