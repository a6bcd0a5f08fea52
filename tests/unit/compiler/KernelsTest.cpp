//===- KernelsTest.cpp - every generated kernel against the plain reference -===//
//
// kernels.mlir beside this file holds one entry per op case. The test
// compiles it once with `mmc compile` for the backend under test
// (MM_TEST_TARGET=cpu by default, `cuda` on a GPU machine), runs each entry on
// random inputs and compares every output element with the reference kernels
// in tests/reference/RefOps.
// NaN or infinity in an output never passes.
//
//===----------------------------------------------------------------------===//
#include "CompiledTestModel.h"
#include "RefOps.h"
#include "mm/Error.h"
#include "mm/Model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

namespace {

using mm::HostTensor;

struct MaskCase {
  const char *name, *mask, *layout;
  mm::ref::Mask kind;
};
const MaskCase kMasks[] = {
    {"attn_bidirectional", "bidirectional", "", mm::ref::Mask::Bidirectional},
    {"attn_causal", "causal", "", mm::ref::Mask::Causal},
    {"attn_padding", "padding", "", mm::ref::Mask::Padding},
    {"attn_image_prefix_causal", "image_prefix_causal", "image = 2, text = 4", mm::ref::Mask::ImagePrefixCausal},
    {"attn_itm_bidirectional", "itm_bidirectional", "query = 2, text = 4", mm::ref::Mask::ItmBidirectional},
    {"attn_itg_multimodal_causal", "itg_multimodal_causal", "query = 2, text = 4", mm::ref::Mask::ItgMultimodalCausal},
    {"attn_itc_unimodal", "itc_unimodal", "query = 2, text = 4", mm::ref::Mask::ItcUnimodal},
};

std::string target() {
  const char *t = getenv("MM_TEST_TARGET");
  return t && *t ? t : "cpu";
}

class Kernels : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    // On a GPU machine without the compiler, a library built elsewhere with
    // `mmc compile tests/unit/compiler/kernels.mlir --target cuda` is given.
    std::string so;
    if (const char *prebuilt = getenv("MM_TEST_PREBUILT_SO"); prebuilt && *prebuilt) {
      so = prebuilt;
    } else {
      so = mmtest::compiledTestModel("kernels", target());
      ASSERT_FALSE(so.empty());
    }
    model_ = std::make_unique<mm::CompiledModel>(mm::CompiledModel::load(so));
  }
  static void TearDownTestSuite() { model_.reset(); }

  static HostTensor randomF32(int64_t n, uint32_t seed, float scale = 1.0f) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> dist(0.0f, scale);
    HostTensor t;
    t.bytes.resize(n * 4);
    for (int64_t i = 0; i < n; ++i) t.as<float>()[i] = dist(rng);
    return t;
  }
  static HostTensor ints(std::vector<int32_t> v) {
    HostTensor t;
    t.bytes.resize(v.size() * 4);
    std::memcpy(t.bytes.data(), v.data(), v.size() * 4);
    return t;
  }
  static HostTensor floats(std::vector<float> v) {
    HostTensor t;
    t.bytes.resize(v.size() * 4);
    std::memcpy(t.bytes.data(), v.data(), v.size() * 4);
    return t;
  }
  static const float *f(const HostTensor &t) { return t.as<float>(); }

  /// `params`, or a zero buffer for every parameter: entries that read no
  /// parameter still get a valid buffer for each one (a CUDA library uploads
  /// every parameter).
  static std::vector<const float *> paramsOrZeros(const std::vector<const float *> &params) {
    static std::vector<std::vector<float>> zeros;
    if (zeros.empty())
      for (const mm::ParamSpec &spec : model_->params()) zeros.emplace_back(spec.numel(), 0.0f);
    std::vector<const float *> p = params;
    if (p.empty())
      for (const auto &z : zeros) p.push_back(z.data());
    return p;
  }

  /// Runs `entry` and compares its only result with `expected`.
  static void check(const std::string &entry, const std::vector<HostTensor> &args, const std::vector<float> &expected,
                    const std::vector<const float *> &params = {}) {
    ASSERT_EQ(model_->entry(entry).results.at(0).type, mm::ElemType::F32) << entry;
    std::vector<HostTensor> out = model_->run(entry, paramsOrZeros(params), args);
    ASSERT_EQ(out.size(), 1u);
    ASSERT_EQ(out[0].bytes.size(), expected.size() * 4) << entry;
    const float *got = out[0].as<float>();
    for (size_t i = 0; i < expected.size(); ++i) {
      float tol = 2e-5f * (1.0f + std::fabs(expected[i]));
      // Written so that NaN in either fails.
      ASSERT_TRUE(std::fabs(got[i] - expected[i]) <= tol)
          << entry << "[" << i << "]: got " << got[i] << ", reference " << expected[i];
    }
  }

  /// Runs `entry`, whose only result is i32, and returns it in `got`.
  static void runInts(const std::string &entry, const std::vector<HostTensor> &args, std::vector<int32_t> &got) {
    ASSERT_EQ(model_->entry(entry).results.at(0).type, mm::ElemType::I32) << entry;
    std::vector<HostTensor> out = model_->run(entry, paramsOrZeros({}), args);
    ASSERT_EQ(out.size(), 1u);
    got.resize(out[0].bytes.size() / 4);
    std::memcpy(got.data(), out[0].bytes.data(), got.size() * 4);
  }

  /// Runs `entry`, whose only result is i32, and compares every element exactly.
  static void checkInts(const std::string &entry, const std::vector<HostTensor> &args,
                        const std::vector<int32_t> &expected) {
    std::vector<int32_t> got;
    ASSERT_NO_FATAL_FAILURE(runInts(entry, args, got));
    ASSERT_EQ(got.size(), expected.size()) << entry;
    for (size_t i = 0; i < expected.size(); ++i)
      ASSERT_EQ(got[i], expected[i]) << entry << "[" << i << "]";
  }

  static std::unique_ptr<mm::CompiledModel> model_;
};
std::unique_ptr<mm::CompiledModel> Kernels::model_;

TEST_F(Kernels, LinearWithBiasFromParameter) {
  HostTensor x = randomF32(2 * 3 * 20, 1), b = randomF32(12, 2), w = randomF32(12 * 20, 3);
  std::vector<float> y(2 * 3 * 12);
  mm::ref::linear(f(x), f(w), f(b), y.data(), 6, 20, 12);
  check("linear_bias", {x, b}, y, {f(w)});
}

TEST_F(Kernels, Linear) {
  HostTensor x = randomF32(35, 4), w = randomF32(21, 5);
  std::vector<float> y(15);
  mm::ref::linear(f(x), f(w), nullptr, y.data(), 5, 7, 3);
  check("linear", {x, w}, y);
}

TEST_F(Kernels, EmbeddingWithOutOfRangeIds) {
  HostTensor ids = ints({0, 3, 9, -1, 10, 2, 5, 5, 1, 7, 8, 4}), t = randomF32(80, 6);
  std::vector<float> y(2 * 6 * 8);
  mm::ref::embedding(ids.as<int32_t>(), f(t), y.data(), 12, 10, 8);
  check("embedding", {ids, t}, y);
}

TEST_F(Kernels, PatchEmbed) {
  HostTensor p = randomF32(2 * 3 * 8 * 12, 7), w = randomF32(5 * 3 * 16, 8);
  std::vector<float> y(2 * 6 * 5);
  mm::ref::patchEmbed(f(p), f(w), y.data(), 2, 3, 8, 12, 4, 5);
  check("patch_embed", {p, w}, y);
}

TEST_F(Kernels, Conv2d) {
  HostTensor x = randomF32(2 * 3 * 9 * 8, 60), w = randomF32(5 * 27, 61), b = randomF32(5, 62);
  std::vector<float> y(2 * 5 * 5 * 4);
  mm::ref::conv2d(f(x), f(w), f(b), y.data(), 2, 3, 9, 8, 5, 3, 3, 2, 1);
  check("conv2d", {x, w, b}, y);
  HostTensor x2 = randomF32(4 * 36, 63), w2 = randomF32(7 * 4 * 4, 64);
  std::vector<float> y2(7 * 25);
  mm::ref::conv2d(f(x2), f(w2), nullptr, y2.data(), 1, 4, 6, 6, 7, 2, 2, 1, 0);
  check("conv2d_2x2", {x2, w2}, y2);
  HostTensor x3 = randomF32(3 * 1024, 70), w3 = randomF32(4 * 27, 71), b3 = randomF32(4, 72);
  std::vector<float> y3(4 * 1024);
  mm::ref::conv2d(f(x3), f(w3), f(b3), y3.data(), 1, 3, 32, 32, 4, 3, 3, 1, 1);
  check("conv2d_32x32", {x3, w3, b3}, y3);
}

TEST_F(Kernels, Conv2dGradients) {
  HostTensor dy = randomF32(2 * 4 * 1024, 65), w = randomF32(4 * 27, 66), x = randomF32(2 * 3 * 1024, 67);
  std::vector<float> dx(2 * 3 * 1024), dw(4 * 27);
  mm::ref::conv2dGradInput(f(dy), f(w), dx.data(), 2, 3, 32, 32, 4, 3, 3, 1, 1);
  check("conv2d_grad_input_32x32", {dy, w}, dx);
  mm::ref::conv2dGradWeight(f(dy), f(x), dw.data(), 2, 3, 32, 32, 4, 3, 3, 1, 1);
  check("conv2d_grad_weight_32x32", {dy, x}, dw);
  HostTensor dy2 = randomF32(32 * 64, 68), x2 = randomF32(2 * 256, 69);
  std::vector<float> dw2(32 * 18);
  mm::ref::conv2dGradWeight(f(dy2), f(x2), dw2.data(), 1, 2, 16, 16, 32, 3, 3, 2, 1);
  check("conv2d_grad_weight_8x8", {dy2, x2}, dw2);
}

TEST_F(Kernels, LayerNorm) {
  HostTensor x = randomF32(3 * 4 * 16, 9, 3.0f), g = randomF32(16, 10), b = randomF32(16, 11);
  std::vector<float> y(3 * 4 * 16);
  mm::ref::layerNorm(f(x), f(g), f(b), y.data(), 12, 16, 1e-5f);
  check("layer_norm", {x, g, b}, y);
}

TEST_F(Kernels, RMSNorm) {
  HostTensor x = randomF32(48, 12, 3.0f), g = randomF32(16, 13);
  std::vector<float> y(48);
  mm::ref::rmsNorm(f(x), f(g), y.data(), 3, 16, 1e-6f);
  check("rms_norm", {x, g}, y);
}

TEST_F(Kernels, Activations) {
  HostTensor x = randomF32(37, 14, 3.0f);
  std::vector<float> y(37);
  mm::ref::gelu(f(x), y.data(), 37);
  check("gelu", {x}, y);
  mm::ref::geluTanh(f(x), y.data(), 37);
  check("gelu_tanh", {x}, y);
  mm::ref::quickGelu(f(x), y.data(), 37);
  check("quick_gelu", {x}, y);
  mm::ref::silu(f(x), y.data(), 37);
  check("silu", {x}, y);
  mm::ref::relu(f(x), y.data(), 37);
  check("relu", {x}, y);
}

TEST_F(Kernels, GeluIsAccurateInItsTails) {
  // COM: Phi(v) for negative v is 1 + erf(v / sqrt 2), which float arithmetic
  // COM: loses to cancellation (v = -6: every digit); the GELU and its
  // COM: derivative are held to 1e-6 of the exact value, relative, on
  // COM: [-14, 14] (past v = -14 the GELU is under 1e-43; below 1.2e-38 a
  // COM: float is denormal, so half its smallest step is allowed too; the
  // COM: derivative's zero near v = -0.75 is held to 1e-6 absolute).
  std::vector<float> xs, ones(2801, 1.0f);
  for (int i = 0; i <= 2800; ++i) xs.push_back(-14.0f + 0.01f * (float)i);
  std::vector<HostTensor> out = model_->run("gelu_wide", paramsOrZeros({}), {floats(xs)});
  std::vector<HostTensor> grad = model_->run("gelu_grad_wide", paramsOrZeros({}), {floats(ones), floats(xs)});
  for (size_t i = 0; i < xs.size(); ++i) {
    const double v = xs[i], cdf = 0.5 * std::erfc(-v / std::sqrt(2.0));
    const double y = v * cdf, dy = cdf + v * std::exp(-0.5 * v * v) / std::sqrt(2.0 * M_PI);
    const double got = out[0].as<float>()[i], gotd = grad[0].as<float>()[i];
    ASSERT_TRUE(std::fabs(got - y) <= 1e-6 * std::fabs(y) + 0.5 * std::ldexp(1.0, -149)) << "gelu(" << v << "): got " << got << ", exact " << y;
    ASSERT_TRUE(std::fabs(gotd - dy) <= 1e-6 * std::max(std::fabs(dy), 1.0))
        << "gelu'(" << v << "): got " << gotd << ", exact " << dy;
  }
}

TEST_F(Kernels, AddMul) {
  HostTensor a = randomF32(36, 15), b = randomF32(36, 16);
  std::vector<float> y(36);
  mm::ref::add(f(a), f(b), y.data(), 36);
  check("add", {a, b}, y);
  mm::ref::mul(f(a), f(b), y.data(), 36);
  check("mul", {a, b}, y);
}

// The fused entries against the reference ops one after another.
TEST_F(Kernels, FusedLinearEpilogues) {
  HostTensor x = randomF32(21 * 20, 40), w = randomF32(24 * 20, 41), b = randomF32(24, 42), r = randomF32(21 * 24, 43);
  std::vector<float> h(21 * 24), g(21 * 24), y(21 * 24);
  mm::ref::linear(f(x), f(w), f(b), h.data(), 21, 20, 24);
  mm::ref::gelu(h.data(), g.data(), 21 * 24);
  mm::ref::add(g.data(), f(r), y.data(), 21 * 24);
  check("fused_linear_gelu_residual", {x, w, b, r}, y);

  HostTensor xw = randomF32(6 * 40, 44), ww = randomF32(300 * 40, 45), rw = randomF32(6 * 300, 46);
  std::vector<float> hw(6 * 300), yw(6 * 300);
  mm::ref::linear(f(xw), f(ww), nullptr, hw.data(), 6, 40, 300);
  mm::ref::add(f(rw), hw.data(), yw.data(), 6 * 300);
  check("fused_linear_residual_wide", {xw, ww, rw}, yw);

  HostTensor xs = randomF32(10, 47), ws = randomF32(45, 48);
  std::vector<float> hs(18), ys(18);
  mm::ref::linear(f(xs), f(ws), nullptr, hs.data(), 2, 5, 9);
  mm::ref::silu(hs.data(), ys.data(), 18);
  check("fused_linear_silu_small", {xs, ws}, ys);
}

TEST_F(Kernels, FusedElementwiseTree) {
  HostTensor a = randomF32(36, 49, 2.0f), b = randomF32(36, 50), c = randomF32(36, 51);
  std::vector<float> s(36), p(36), y(36);
  mm::ref::silu(f(a), s.data(), 36);
  mm::ref::mul(s.data(), f(b), p.data(), 36);
  mm::ref::add(p.data(), f(c), y.data(), 36);
  check("fused_swiglu_add", {a, b, c}, y);
}

TEST_F(Kernels, RoPE) {
  HostTensor x = randomF32(2 * 40 * 24, 17);
  std::vector<float> y(2 * 40 * 24);
  mm::ref::rope(f(x), y.data(), 2, 40, 3, 8, 10000.0f, 0);
  check("rope", {x}, y);
}

TEST_F(Kernels, ConcatSliceBroadcast) {
  HostTensor a = randomF32(8, 18), b = randomF32(24, 19), x = randomF32(36, 20), c = randomF32(5, 21);
  std::vector<float> y(32);
  mm::ref::concat(f(a), f(b), y.data(), 2, 1, 3, 4);
  check("concat", {a, b}, y);
  std::vector<float> s(18);
  mm::ref::slice(f(x), s.data(), 2, 6, 2, 3, 3);
  check("slice", {x}, s);
  std::vector<float> bc(40);
  mm::ref::broadcastTo(f(c), bc.data(), {5, 1}, {2, 5, 4});
  check("broadcast", {c}, bc);
}

// A pad is the input between zero rows: two before, two after.
TEST_F(Kernels, Pad) {
  HostTensor x = randomF32(2 * 3 * 4, 31);
  std::vector<float> before(2 * 2 * 4, 0.0f), after(2 * 2 * 4, 0.0f), left(2 * 5 * 4), y(2 * 7 * 4);
  mm::ref::concat(before.data(), f(x), left.data(), 2, 2, 3, 4);
  mm::ref::concat(left.data(), after.data(), y.data(), 2, 5, 2, 4);
  check("pad", {x}, y);
}

// The same copies at a size where the CPU shares them among its threads.
TEST_F(Kernels, LargeCopies) {
  HostTensor a = randomF32(4 * 100 * 100, 32), b = randomF32(4 * 80 * 100, 33);
  std::vector<float> y(4 * 180 * 100);
  mm::ref::concat(f(a), f(b), y.data(), 4, 100, 80, 100);
  check("concat_large", {a, b}, y);
  std::vector<float> before(4 * 30 * 100, 0.0f), after(4 * 50 * 100, 0.0f), left(4 * 130 * 100);
  mm::ref::concat(before.data(), f(a), left.data(), 4, 30, 100, 100);
  mm::ref::concat(left.data(), after.data(), y.data(), 4, 130, 50, 100);
  check("pad_large", {a}, y);
}

// The slice at start 2 + a run-time offset: the reference slices the input
// padded with zero positions on both sides, so the range may run past either end.
TEST_F(Kernels, SliceAtRunTimeOffset) {
  HostTensor x = randomF32(2 * 6 * 3, 30);
  const int64_t pad = 12;
  std::vector<float> zeros(2 * pad * 3, 0.0f), left(2 * (pad + 6) * 3), padded(2 * (2 * pad + 6) * 3);
  mm::ref::concat(zeros.data(), f(x), left.data(), 2, pad, 6, 3);
  mm::ref::concat(left.data(), zeros.data(), padded.data(), 2, pad + 6, pad, 3);
  // Inside (1: up to the last position), one or all past the end (2, 4), inside, one or all before the start (-3, -5).
  for (int32_t off : {0, 1, 2, 4, -1, -3, -5}) {
    SCOPED_TRACE("offset " + std::to_string(off));
    std::vector<float> y(2 * 3 * 3);
    mm::ref::slice(padded.data(), y.data(), 2, 2 * pad + 6, pad + 2 + off, 3, 3);
    check("slice_offset", {x, ints({off})}, y);
  }
}

TEST_F(Kernels, MergeImageFeatures) {
  // Row 0 has three image tokens, row 1 has four (the fourth keeps its embedding).
  HostTensor e = randomF32(56, 22), ids = ints({1, 9, 9, 9, 2, 3, 4, 9, 5, 9, 9, 6, 9, 7}), feats = randomF32(24, 23);
  std::vector<float> y(56);
  mm::ref::mergeImageFeatures(f(e), ids.as<int32_t>(), f(feats), y.data(), 2, 7, 4, 3, 9);
  check("merge_image_features", {e, ids, feats}, y);
}

TEST_F(Kernels, GatherImageFeatures) {
  // COM: row 0 has two image tokens (its third feature row is zero), row 1
  // COM: four (the fourth is not gathered).
  HostTensor x = randomF32(56, 52), ids = ints({1, 9, 2, 3, 9, 4, 5, 9, 5, 9, 9, 6, 9, 7});
  std::vector<float> y(24);
  mm::ref::gatherImageFeatures(f(x), ids.as<int32_t>(), y.data(), 2, 7, 4, 3, 9);
  check("gather_image_features", {x, ids}, y);
}

TEST_F(Kernels, AttentionUnderEveryMask) {
  HostTensor q = randomF32(2 * 6 * 32, 24), k = randomF32(2 * 6 * 16, 25), v = randomF32(2 * 6 * 16, 26);
  HostTensor len = ints({5});
  for (const MaskCase &m : kMasks) {
    SCOPED_TRACE(m.name);
    std::vector<float> y(2 * 6 * 32);
    mm::ref::attention(f(q), f(k), f(v), y.data(), 2, 6, 4, 2, 8, m.kind, 5, 2, 0.35355339f);
    check(m.name, {q, k, v, len}, y);
  }
}

// COM: the CPU computes attention in strips of 64 query (or key) rows; 150
// positions give two full blocks and a partial one under every mask.
TEST_F(Kernels, AttentionAcrossBlocksUnderEveryMask) {
  HostTensor q = randomF32(150 * 32, 27), k = randomF32(150 * 16, 28), v = randomF32(150 * 16, 29);
  HostTensor len = ints({140});
  for (const MaskCase &m : kMasks) {
    SCOPED_TRACE(m.name);
    const int64_t prefix = m.kind == mm::ref::Mask::ImagePrefixCausal ? 50 : 40;
    std::vector<float> y(150 * 32);
    mm::ref::attention(f(q), f(k), f(v), y.data(), 1, 150, 4, 2, 8, m.kind, 140, prefix, 0.35355339f);
    check(std::string("attn_long_") + (m.name + 5), {q, k, v, len}, y);
  }
}

// COM: T5's relative position bias over 150 positions (the CPU's strips,
// offsets up to 149: exact, logarithmic and the open last bucket), with a
// table large enough against q.k (scale 1, as T5) that a wrong bucket shows.
TEST_F(Kernels, AttentionWithPositionBias) {
  HostTensor q = randomF32(150 * 32, 80, 0.3f), k = randomF32(150 * 16, 81, 0.3f), v = randomF32(150 * 16, 82);
  HostTensor pb = randomF32(32 * 4, 83, 2.0f), len = ints({140});
  const mm::ref::PositionBias bias{f(pb), 32, 128};
  const int64_t lengths[1] = {140};
  for (auto [entry, mask] : {std::pair{"attn_bias_padding", mm::ref::Mask::Padding},
                             std::pair{"attn_bias_causal", mm::ref::Mask::Causal}}) {
    SCOPED_TRACE(entry);
    std::vector<float> y(150 * 32), unbiased(150 * 32);
    mm::ref::attentionWithPositionBias(f(q), f(k), f(v), y.data(), 1, 150, 4, 2, 8, mask, lengths, 0, 1.0f, &bias);
    check(entry, {q, k, v, len, pb}, y);
    mm::ref::attentionWithPositionBias(f(q), f(k), f(v), unbiased.data(), 1, 150, 4, 2, 8, mask, lengths, 0, 1.0f,
                                       nullptr);
    EXPECT_NE(unbiased, y); // the bias matters
  }
}

// One real-key count per batch row ([B] i32 length), under BLIP-2's masks:
// rows of 6, 3 and 1 real keys of 6 (1 leaves itc_unimodal's text rows no key
// at all: zeros); across the CPU's 64-row strips, rows of 140 and 70 of 150
// (the second ends inside the second strip).
TEST_F(Kernels, AttentionWithRowLengths) {
  const MaskCase rowMasks[] = {kMasks[6], kMasks[4], kMasks[5]}; // itc_unimodal, itm_bidirectional, itg_multimodal_causal
  HostTensor q = randomF32(3 * 6 * 32, 70), k = randomF32(3 * 6 * 16, 71), v = randomF32(3 * 6 * 16, 72);
  const int64_t lengths[] = {6, 3, 1};
  HostTensor len = ints({6, 3, 1});
  HostTensor ql = randomF32(2 * 150 * 32, 73), kl = randomF32(2 * 150 * 16, 74), vl = randomF32(2 * 150 * 16, 75);
  const int64_t longLengths[] = {140, 70};
  HostTensor lenl = ints({140, 70});
  for (const MaskCase &m : rowMasks) {
    SCOPED_TRACE(m.name);
    std::vector<float> y(3 * 6 * 32);
    mm::ref::attentionRowLengths(f(q), f(k), f(v), y.data(), 3, 6, 4, 2, 8, m.kind, lengths, 2, 0.35355339f);
    check(std::string("attn_rows_") + (m.name + 5), {q, k, v, len}, y);
    // The rows really differ: one shared length (the first row's) gives another answer.
    std::vector<float> shared(3 * 6 * 32);
    mm::ref::attention(f(q), f(k), f(v), shared.data(), 3, 6, 4, 2, 8, m.kind, 6, 2, 0.35355339f);
    EXPECT_NE(shared, y);

    std::vector<float> yl(2 * 150 * 32);
    mm::ref::attentionRowLengths(f(ql), f(kl), f(vl), yl.data(), 2, 150, 4, 2, 8, m.kind, longLengths, 40,
                                 0.35355339f);
    check(std::string("attn_long_rows_") + (m.name + 5), {ql, kl, vl, lenl}, yl);
  }
}

TEST_F(Kernels, Div) {
  HostTensor a = randomF32(36, 76), b = randomF32(36, 77);
  std::vector<float> y(36);
  mm::ref::div(f(a), f(b), y.data(), 36);
  check("div", {a, b}, y);
}

TEST_F(Kernels, Transpose) {
  HostTensor x = randomF32(30, 78);
  std::vector<float> y(30);
  mm::ref::transposeLast2(f(x), y.data(), 2, 3, 5);
  check("transpose", {x}, y);
}

// x[2,5,3] over axis 1, with ties: column (0, *, 0) holds its maximum at j = 1
// and j = 3, column (1, *, 2) is constant; the gradient goes to the first.
TEST_F(Kernels, ReduceMaxOverAMiddleAxisAndItsGradient) {
  HostTensor x = randomF32(30, 79), dy = randomF32(6, 80);
  float *xs = x.as<float>();
  xs[(0 * 5 + 1) * 3 + 0] = xs[(0 * 5 + 3) * 3 + 0] = 9.0f;
  for (int64_t j = 0; j < 5; ++j) xs[(1 * 5 + j) * 3 + 2] = -2.0f;
  std::vector<float> y(6);
  mm::ref::reduceMax(f(x), y.data(), 2, 5, 3);
  EXPECT_EQ(y[0], 9.0f);
  check("reduce_max", {x}, y);
  std::vector<float> dx(30);
  mm::ref::reduceMaxGrad(f(x), f(dy), dx.data(), 2, 5, 3);
  EXPECT_EQ(dx[(0 * 5 + 1) * 3 + 0], f(dy)[0]);
  EXPECT_EQ(dx[(0 * 5 + 3) * 3 + 0], 0.0f);
  EXPECT_EQ(dx[(1 * 5 + 0) * 3 + 2], f(dy)[5]);
  check("reduce_max_grad", {x, dy}, dx);
}

// eps = 0.5 over rows of 16: every odd row is scaled to a norm far below eps
// (clamped), row 4 is zero.
TEST_F(Kernels, L2NormalizeAndItsGradient) {
  HostTensor x = randomF32(12 * 16, 81), dy = randomF32(12 * 16, 82);
  float *xs = x.as<float>();
  for (int64_t r = 1; r < 12; r += 2)
    for (int64_t d = 0; d < 16; ++d) xs[r * 16 + d] *= 0.02f;
  for (int64_t d = 0; d < 16; ++d) xs[4 * 16 + d] = 0.0f;
  std::vector<float> y(12 * 16), dx(12 * 16);
  mm::ref::l2Normalize(f(x), y.data(), 12, 16, 0.5f);
  check("l2_normalize", {x}, y);
  mm::ref::l2NormalizeGrad(f(x), f(dy), dx.data(), 12, 16, 0.5f);
  check("l2_normalize_grad", {x, dy}, dx);
}

// Indices out of [0, B) (-1, B, -5, 7) read zeros.
TEST_F(Kernels, GatherWithOutOfRangeIndices) {
  HostTensor x = randomF32(4 * 15, 83), idx = ints({3, 0, -1, 2, 4, 0});
  std::vector<float> y(6 * 15);
  mm::ref::gather(f(x), idx.as<int32_t>(), y.data(), 4, 6, 15);
  check("gather", {x, idx}, y);

  std::vector<int32_t> xi(4 * 7);
  for (size_t i = 0; i < xi.size(); ++i) xi[i] = static_cast<int32_t>(i * 37 % 101) - 50;
  HostTensor xt = ints(xi), idxi = ints({1, 3, 7, 0, -5});
  std::vector<int32_t> yi(5 * 7);
  mm::ref::gather(xi.data(), idxi.as<int32_t>(), yi.data(), 4, 5, 7);
  checkInts("gather_i32", {xt, idxi}, yi);
}

TEST_F(Kernels, SampleNegatives) {
  const int64_t B = 6;
  HostTensor sim = randomF32(B * B, 84, 2.0f);
  // 0, values near 1, and others; each at least 1e-4 from a cumulative
  // probability where float and double could pick different columns.
  const std::vector<float> u = {0.0f, 0.31f, 0.999f, 0.62f, std::nextafter(1.0f, 0.0f), 0.5f};
  for (int64_t r = 0; r < B; ++r) {
    std::vector<double> p(B);
    mm::ref::negativeProbabilities(f(sim), B, r, p.data());
    double c = 0;
    for (int64_t j = 0; j < B; ++j) {
      if (j == r) continue;
      c += p[j];
      if (c < 1 - 1e-9) ASSERT_GT(std::fabs(c - u[r]), 1e-4) << "row " << r << ": pick another u";
    }
  }
  std::vector<int32_t> y(B);
  mm::ref::sampleNegatives(f(sim), u.data(), y.data(), B);
  checkInts("sample_negatives", {sim, floats(u)}, y);
}

// Many draws over random similarities: the positive (the row's own column) is
// never returned, and each column's frequency follows softmax(sim[r]) without
// column r, renormalised. Each row sees every value of a grid over [0, 1)
// (0 included, then two values just below 1) and as many uniform random ones.
// The last matrix has a dominant diagonal, as a trained ITC's similarities do.
TEST_F(Kernels, SampleNegativesFollowTheRenormalisedSoftmax) {
  const int64_t B = 6, grid = 2000;
  std::vector<float> us;
  for (int64_t k = 0; k < grid; ++k) us.push_back(static_cast<float>(k) / grid);
  us.push_back(0.99999f);
  us.push_back(std::nextafter(1.0f, 0.0f));
  std::mt19937 rng(85);
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  for (int64_t k = 0; k < grid; ++k) {
    float v = uniform(rng);
    us.push_back(v < 1.0f ? v : 0.0f);
  }
  for (uint32_t seed : {86u, 87u, 88u, 89u}) {
    SCOPED_TRACE("similarities seed " + std::to_string(seed));
    HostTensor sim = randomF32(B * B, seed, 1.5f);
    if (seed == 89)
      for (int64_t r = 0; r < B; ++r) sim.as<float>()[r * B + r] = 30.0f;
    std::vector<std::vector<int64_t>> counts(B, std::vector<int64_t>(B, 0));
    for (size_t c = 0; c < us.size(); ++c) {
      std::vector<float> u(B);
      for (int64_t r = 0; r < B; ++r) u[r] = us[(c + r * 337) % us.size()];
      std::vector<int32_t> got;
      ASSERT_NO_FATAL_FAILURE(runInts("sample_negatives", {sim, floats(u)}, got));
      ASSERT_EQ(got.size(), static_cast<size_t>(B));
      for (int64_t r = 0; r < B; ++r) {
        ASSERT_TRUE(got[r] >= 0 && got[r] < B) << "row " << r << ", u " << u[r] << ": got " << got[r];
        ASSERT_NE(got[r], r) << "row " << r << " drew its own positive at u " << u[r];
        ++counts[r][got[r]];
      }
    }
    for (int64_t r = 0; r < B; ++r) {
      std::vector<double> p(B);
      mm::ref::negativeProbabilities(f(sim), B, r, p.data());
      for (int64_t j = 0; j < B; ++j)
        EXPECT_NEAR(static_cast<double>(counts[r][j]) / us.size(), p[j], 0.03) << "row " << r << ", column " << j;
    }
  }
}

TEST_F(Kernels, IotaAndIntegerConstant) {
  checkInts("iota", {}, {0, 1, 2, 3, 4, 5, 6});
  checkInts("constant_i32", {}, {-3, -3, -3, -3, -3, -3});
}

TEST_F(Kernels, ConcatI32) {
  std::vector<int32_t> a = {1, 2, 3, 4, 5, 6}, b = {-7, 8, 2147483647, -2147483647 - 1}, y(10);
  mm::ref::concat(a.data(), b.data(), y.data(), 2, 3, 2, 1);
  checkInts("concat_i32", {ints(a), ints(b)}, y);
}

// Rows 1 and 6 ignored (-100), 4 and 6 out of range (7, -1): 5 of 8 counted.
// With every target ignored the mean is 0 and the gradient zeros.
TEST_F(Kernels, CrossEntropySumAndMean) {
  HostTensor x = randomF32(2 * 4 * 7, 90, 2.0f), g = floats({1.7f});
  const std::vector<int32_t> targets = {3, -100, 6, 0, 7, 2, -1, 5};
  HostTensor t = ints(targets);
  check("cross_entropy", {x, t}, {mm::ref::crossEntropy(f(x), targets.data(), 8, 7, -100, false)});
  const float mean = mm::ref::crossEntropy(f(x), targets.data(), 8, 7, -100, true);
  EXPECT_NEAR(mean * 5, mm::ref::crossEntropy(f(x), targets.data(), 8, 7, -100, false), 1e-4f);
  check("cross_entropy_mean", {x, t}, {mean});
  std::vector<float> dx(2 * 4 * 7);
  mm::ref::crossEntropyGrad(f(x), targets.data(), 1.7f, dx.data(), 8, 7, -100, false);
  check("cross_entropy_grad", {x, t, g}, dx);
  mm::ref::crossEntropyGrad(f(x), targets.data(), 1.7f, dx.data(), 8, 7, -100, true);
  check("cross_entropy_grad_mean", {x, t, g}, dx);

  HostTensor none = ints(std::vector<int32_t>(8, -100));
  check("cross_entropy_mean", {x, none}, {0.0f});
  check("cross_entropy_grad_mean", {x, none, g}, std::vector<float>(2 * 4 * 7, 0.0f));
}

TEST(KernelCheck, NaNNeverPasses) {
  // The comparison the tests use must reject NaN.
  float got = std::nanf(""), expected = 1.0f;
  EXPECT_FALSE(std::fabs(got - expected) <= 2e-5f * (1.0f + std::fabs(expected)));
}

} // namespace
