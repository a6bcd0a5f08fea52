//===- KernelsTest.cpp - every generated kernel against the plain reference -===//
//
// One model file holds one entry per op case. The test compiles it once with
// `mmc compile` for the backend under test (MM_TEST_TARGET=cpu by default,
// `cuda` on a GPU machine), runs each entry on random inputs and compares
// every output element with the reference kernels in tests/reference/RefOps.
// NaN or infinity in an output never passes.
//
//===----------------------------------------------------------------------===//
#include "RefOps.h"
#include "mm/Error.h"
#include "mm/Model.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>

namespace {

using mm::HostTensor;

// The cases. Names of entries match the tests below.
const char *kModel = R"mlir(
mm.model @kernels {
  mm.group @g
  mm.param @"w" : tensor<12x20xf32> group @g init #mm.init<normal, 0.5>
  mm.entry @linear_bias(%x: tensor<2x3x20xf32>, %b: tensor<12xf32>) -> tensor<2x3x12xf32> {
    %w = mm.weight @"w" : tensor<12x20xf32>
    %y = mm.linear %x, %w, %b : (tensor<2x3x20xf32>, tensor<12x20xf32>, tensor<12xf32>) -> tensor<2x3x12xf32>
    mm.return %y : tensor<2x3x12xf32>
  }
  mm.entry @linear(%x: tensor<5x7xf32>, %w: tensor<3x7xf32>) -> tensor<5x3xf32> {
    %y = mm.linear %x, %w : (tensor<5x7xf32>, tensor<3x7xf32>) -> tensor<5x3xf32>
    mm.return %y : tensor<5x3xf32>
  }
  mm.entry @embedding(%ids: tensor<2x6xi32>, %t: tensor<10x8xf32>) -> tensor<2x6x8xf32> {
    %y = mm.embedding %ids, %t : (tensor<2x6xi32>, tensor<10x8xf32>) -> tensor<2x6x8xf32>
    mm.return %y : tensor<2x6x8xf32>
  }
  mm.entry @patch_embed(%p: tensor<2x3x8x12xf32>, %w: tensor<5x3x4x4xf32>) -> tensor<2x6x5xf32> {
    %y = mm.patch_embed %p, %w : (tensor<2x3x8x12xf32>, tensor<5x3x4x4xf32>) -> tensor<2x6x5xf32>
    mm.return %y : tensor<2x6x5xf32>
  }
  mm.entry @layer_norm(%x: tensor<3x4x16xf32>, %g: tensor<16xf32>, %b: tensor<16xf32>) -> tensor<3x4x16xf32> {
    %y = mm.layer_norm %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<3x4x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<3x4x16xf32>
    mm.return %y : tensor<3x4x16xf32>
  }
  mm.entry @rms_norm(%x: tensor<3x16xf32>, %g: tensor<16xf32>) -> tensor<3x16xf32> {
    %y = mm.rms_norm %x, %g {eps = 1.0e-6 : f64} : (tensor<3x16xf32>, tensor<16xf32>) -> tensor<3x16xf32>
    mm.return %y : tensor<3x16xf32>
  }
  mm.entry @gelu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.gelu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @quick_gelu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.quick_gelu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @silu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.silu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @relu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.relu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @add(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %y = mm.add %a, %b : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  mm.entry @mul(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %y = mm.mul %a, %b : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  mm.entry @rope(%x: tensor<2x40x24xf32>) -> tensor<2x40x24xf32> {
    %y = mm.rope %x {num_heads = 3 : i64, theta = 10000.0 : f64} : tensor<2x40x24xf32>
    mm.return %y : tensor<2x40x24xf32>
  }
  mm.entry @concat(%a: tensor<2x1x4xf32>, %b: tensor<2x3x4xf32>) -> tensor<2x4x4xf32> {
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<2x1x4xf32>, tensor<2x3x4xf32>) -> tensor<2x4x4xf32>
    mm.return %y : tensor<2x4x4xf32>
  }
  mm.entry @slice(%x: tensor<2x6x3xf32>) -> tensor<2x3x3xf32> {
    %y = mm.slice %x {axis = 1 : i64, start = 2 : i64} : (tensor<2x6x3xf32>) -> tensor<2x3x3xf32>
    mm.return %y : tensor<2x3x3xf32>
  }
  mm.entry @broadcast(%x: tensor<5x1xf32>) -> tensor<2x5x4xf32> {
    %y = mm.broadcast %x : (tensor<5x1xf32>) -> tensor<2x5x4xf32>
    mm.return %y : tensor<2x5x4xf32>
  }
  mm.entry @merge_image_features(%e: tensor<2x7x4xf32>, %ids: tensor<2x7xi32>, %f: tensor<2x3x4xf32>) -> tensor<2x7x4xf32> {
    %y = mm.merge_image_features %e, %ids, %f {image_token_index = 9 : i64} : (tensor<2x7x4xf32>, tensor<2x7xi32>, tensor<2x3x4xf32>) -> tensor<2x7x4xf32>
    mm.return %y : tensor<2x7x4xf32>
  }
@ATTENTION@
}
)mlir";

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

/// Attention cases: B=2, S=6, 4 query heads over 2 K/V heads (grouped), Dh=8,
/// with the run-time length operand (5 of 6 positions real).
std::string attentionEntries() {
  std::string s;
  for (const MaskCase &m : kMasks) {
    std::string layout = *m.layout ? std::string(", layout = #mm.seq_layout<") + m.layout + ">" : "";
    s += std::string("  mm.entry @") + m.name +
         "(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> "
         "tensor<2x6x32xf32> {\n"
         "    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<" +
         m.mask + ">" + layout +
         ", scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> "
         "tensor<2x6x32xf32>\n    mm.return %y : tensor<2x6x32xf32>\n  }\n";
  }
  return s;
}

std::string target() {
  const char *t = getenv("MM_TEST_TARGET");
  return t && *t ? t : "cpu";
}

class Kernels : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    std::string dir = ::testing::TempDir() + "mm_kernels_" + target() + "_" + std::to_string(getpid());
    std::string cmd = "mkdir -p '" + dir + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    std::string text = kModel;
    text.replace(text.find("@ATTENTION@"), 11, attentionEntries());
    std::ofstream(dir + "/kernels.mlir") << text;
    std::string so = dir + "/kernels.so";
    cmd = std::string(MMC_PATH) + " compile '" + dir + "/kernels.mlir' --target " + target() + " -o '" + so + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
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
  static const float *f(const HostTensor &t) { return t.as<float>(); }

  /// Runs `entry` and compares its only result with `expected`.
  static void check(const std::string &entry, const std::vector<HostTensor> &args, const std::vector<float> &expected,
                    const std::vector<const float *> &params = {}) {
    std::vector<const float *> p = params;
    if (p.empty()) p.assign(model_->params().size(), nullptr);
    std::vector<HostTensor> out = model_->run(entry, p, args);
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
  mm::ref::quickGelu(f(x), y.data(), 37);
  check("quick_gelu", {x}, y);
  mm::ref::silu(f(x), y.data(), 37);
  check("silu", {x}, y);
  mm::ref::relu(f(x), y.data(), 37);
  check("relu", {x}, y);
}

TEST_F(Kernels, AddMul) {
  HostTensor a = randomF32(36, 15), b = randomF32(36, 16);
  std::vector<float> y(36);
  mm::ref::add(f(a), f(b), y.data(), 36);
  check("add", {a, b}, y);
  mm::ref::mul(f(a), f(b), y.data(), 36);
  check("mul", {a, b}, y);
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

TEST_F(Kernels, MergeImageFeatures) {
  // Row 0 has three image tokens, row 1 has four (the fourth keeps its embedding).
  HostTensor e = randomF32(56, 22), ids = ints({1, 9, 9, 9, 2, 3, 4, 9, 5, 9, 9, 6, 9, 7}), feats = randomF32(24, 23);
  std::vector<float> y(56);
  mm::ref::mergeImageFeatures(f(e), ids.as<int32_t>(), f(feats), y.data(), 2, 7, 4, 3, 9);
  check("merge_image_features", {e, ids, feats}, y);
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

TEST(KernelCheck, NaNNeverPasses) {
  // The comparison the tests use must reject NaN.
  float got = std::nanf(""), expected = 1.0f;
  EXPECT_FALSE(std::fabs(got - expected) <= 2e-5f * (1.0f + std::fabs(expected)));
}

} // namespace
