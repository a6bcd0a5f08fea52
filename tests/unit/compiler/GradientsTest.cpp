//===- GradientsTest.cpp - every VJP rule against finite differences --------===//
//
// gradients.mlir (written by gen_gradients.py) holds one float64 stage per
// VJP rule. mmc compiles it; mm-autodiff builds each stage's training step.
// For every element of every trainable parameter, the step's gradient must
// match the central finite difference (f(p+h) - f(p-h)) / 2h of the stage's
// loss entry, in float64, with h = 1e-5. The attention stages run twice:
// through mm-fuse's one-pass backward (mm.fused_attention_grad, what mmc
// compiles by default) and through the three separate gradient kernels of
// `mmc compile --no-fuse`.
//
//===----------------------------------------------------------------------===//
#include "CompiledTestModel.h"
#include "mm/Error.h"
#include "mm/Model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <numeric>
#include <random>

namespace {

using mm::HostTensor;

/// The gradients library, compiled with mmc's FLAGS for MM_TEST_TARGET
/// (MM_TEST_TARGET=cuda checks the CUDA backend).
std::unique_ptr<mm::CompiledModel> loadGradients(const std::string &flags) {
  const char *target = getenv("MM_TEST_TARGET");
  std::string so = mmtest::compiledTestModel("gradients", target && *target ? target : "cpu", flags);
  return so.empty() ? nullptr : std::make_unique<mm::CompiledModel>(mm::CompiledModel::load(so));
}

/// On a GPU machine without the compiler, MM_TEST_PREBUILT_GRADIENTS_SO
/// names a library built elsewhere (tests/gpu/prepare.sh).
const char *prebuiltGradients() {
  const char *prebuilt = getenv("MM_TEST_PREBUILT_GRADIENTS_SO");
  return prebuilt && *prebuilt ? prebuilt : nullptr;
}

class Gradients : public ::testing::TestWithParam<std::string> {
protected:
  static void SetUpTestSuite() {
    if (const char *prebuilt = prebuiltGradients())
      model_ = std::make_unique<mm::CompiledModel>(mm::CompiledModel::load(prebuilt));
    else
      model_ = loadGradients("");
    ASSERT_NE(model_, nullptr);
  }
  static void TearDownTestSuite() { model_.reset(); }
  static std::unique_ptr<mm::CompiledModel> model_;
};
std::unique_ptr<mm::CompiledModel> Gradients::model_;

/// The attention stages compiled with --no-fuse: the three separate
/// gradient kernels instead of mm.fused_attention_grad.
class GradientsUnfused : public ::testing::TestWithParam<std::string> {
protected:
  static void SetUpTestSuite() {
    if (!prebuiltGradients()) model_ = loadGradients("--no-fuse");
  }
  void SetUp() override {
    if (prebuiltGradients()) GTEST_SKIP() << "a prebuilt library only (no compiler on this machine)";
    ASSERT_NE(model_, nullptr);
  }
  static void TearDownTestSuite() { model_.reset(); }
  static std::unique_ptr<mm::CompiledModel> model_;
};
std::unique_ptr<mm::CompiledModel> GradientsUnfused::model_;

/// Arguments of a loss entry: random reals; ids, targets and lengths by name.
std::vector<HostTensor> makeArgs(const mm::EntrySpec &entry, std::mt19937 &rng) {
  std::vector<HostTensor> args;
  std::normal_distribution<double> normal;
  for (const mm::TensorSpec &a : entry.args) {
    HostTensor t;
    t.bytes.resize(a.bytes());
    int64_t n = a.numel();
    const bool isLong = entry.name.rfind("attention_long", 0) == 0;
    if (a.type == mm::ElemType::F64 && a.name == "spread") {
      // Distinct multiples of 10 in shuffled order: added to parameters of
      // scale 0.7, each column's maximum stands well clear of the rest.
      std::vector<int64_t> order(n);
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (int64_t i = 0; i < n; ++i) t.as<double>()[i] = 10.0 * static_cast<double>(order[i]);
    } else if (a.type == mm::ElemType::F64) {
      for (int64_t i = 0; i < n; ++i) t.as<double>()[i] = normal(rng);
    } else if (a.name == "len" && n == 1) {
      // 4 of 5 positions real (120 of 130 in the long cases): the padding mask matters.
      t.as<int32_t>()[0] = isLong ? 120 : 4;
    } else if (a.name == "len") {
      // One length per batch row (the [2] cases have 6 or 130 positions): the
      // first row 6 of 6 (120 of 130), the second 4 (60).
      EXPECT_EQ(n, 2) << entry.name;
      const int32_t rows[2] = {isLong ? 120 : 6, isLong ? 60 : 4};
      for (int64_t i = 0; i < n && i < 2; ++i) t.as<int32_t>()[i] = rows[i];
    } else if (a.name == "ids" && entry.name == "merge_image_features_loss") {
      // Two image tokens (9) per row of 6, at different places.
      const int32_t ids[12] = {1, 9, 2, 9, 3, 4, 9, 5, 6, 7, 9, 8};
      std::memcpy(t.bytes.data(), ids, sizeof ids);
    } else if (a.name == "targets") {
      for (int64_t i = 0; i < n; ++i) t.as<int32_t>()[i] = (i % 3 == 2) ? -100 : static_cast<int32_t>(rng() % 7);
    } else {
      for (int64_t i = 0; i < n; ++i) t.as<int32_t>()[i] = static_cast<int32_t>(rng() % 6);
    }
    args.push_back(std::move(t));
  }
  return args;
}

void checkStage(mm::CompiledModel &model, const std::string &stage) {
  const nlohmann::json *stageInfo = nullptr;
  for (const auto &s : model.manifest().at("stages"))
    if (s.at("name") == stage) stageInfo = &s;
  ASSERT_NE(stageInfo, nullptr);
  ASSERT_TRUE(stageInfo->contains("train_entry")) << "mm-autodiff built no training step";

  // Parameters: random values for the stage's, zeros elsewhere.
  std::mt19937 rng(1234);
  std::normal_distribution<double> normal(0.0, 0.7);
  const auto &specs = model.params();
  std::vector<std::vector<double>> values(specs.size());
  std::map<std::string, size_t> index;
  for (size_t i = 0; i < specs.size(); ++i) {
    ASSERT_EQ(specs[i].type, mm::ElemType::F64);
    values[i].resize(specs[i].numel());
    index[specs[i].name] = i;
    for (double &v : values[i]) v = normal(rng);
  }
  auto pointers = [&] {
    std::vector<const void *> p;
    for (auto &v : values) p.push_back(v.data());
    return p;
  };
  const mm::EntrySpec &lossEntry = model.entry(stageInfo->at("loss_entry").get<std::string>());
  std::vector<HostTensor> args = makeArgs(lossEntry, rng);
  auto loss = [&] { return model.run(lossEntry.name, pointers(), args)[0].as<double>()[0]; };

  std::vector<HostTensor> step = model.run(stageInfo->at("train_entry").get<std::string>(), pointers(), args);
  const auto &trainable = stageInfo->at("trainable_parameters");
  ASSERT_EQ(step.size(), trainable.size() + 1);
  EXPECT_DOUBLE_EQ(step[0].as<double>()[0], loss()) << "the step's loss differs from the loss entry's";

  const double h = 1e-5;
  for (size_t j = 0; j < trainable.size(); ++j) {
    std::string name = trainable[j].get<std::string>();
    std::vector<double> &p = values[index.at(name)];
    const double *grad = step[j + 1].as<double>();
    ASSERT_EQ(step[j + 1].bytes.size(), p.size() * sizeof(double)) << name;
    for (size_t e = 0; e < p.size(); ++e) {
      double saved = p[e];
      p[e] = saved + h;
      double up = loss();
      p[e] = saved - h;
      double down = loss();
      p[e] = saved;
      double fd = (up - down) / (2 * h);
      // Written so that NaN fails.
      ASSERT_TRUE(std::fabs(grad[e] - fd) <= 1e-6 + 1e-6 * std::fabs(fd))
          << name << "[" << e << "]: autodiff " << grad[e] << ", finite difference " << fd;
    }
  }
}

TEST_P(Gradients, MatchFiniteDifferences) { checkStage(*model_, GetParam()); }
TEST_P(GradientsUnfused, MatchFiniteDifferences) { checkStage(*model_, GetParam()); }

const std::vector<std::string> kStages = {
    "linear", "embedding", "patch_embed", "patch_embed_input", "conv2d", "conv2d_unpadded", "layer_norm", "rms_norm",
    "gelu", "gelu_tanh", "quick_gelu", "silu", "relu", "add", "mul", "reuse", "rope", "attention_bidirectional",
    "attention_causal", "attention_padding", "attention_image_prefix_causal", "attention_itm_bidirectional",
    "attention_itg_multimodal_causal", "attention_itc_unimodal", "attention_long_causal",
    "attention_long_itg_multimodal_causal", "cross_attention", "concat", "slice", "broadcast",
    "merge_image_features", "cross_entropy", "cross_entropy_mean", "bounded_rows", "attention_rows_itc_unimodal",
    "attention_rows_itg_multimodal_causal", "attention_long_rows_itg_multimodal_causal", "div", "transpose",
    "reduce_max", "l2_normalize", "attention_bias_bidirectional", "attention_bias_causal",
    "attention_long_bias_padding", "attention_long_bias_causal", "attention_bias_no_length"};

/// The stages whose backward mm-fuse changes (it fuses only attention gradients).
std::vector<std::string> attentionStages() {
  std::vector<std::string> out;
  for (const std::string &s : kStages)
    if (s.find("attention") != std::string::npos) out.push_back(s);
  return out;
}

INSTANTIATE_TEST_SUITE_P(EveryVJPRule, Gradients, ::testing::ValuesIn(kStages));
INSTANTIATE_TEST_SUITE_P(EveryAttentionStage, GradientsUnfused, ::testing::ValuesIn(attentionStages()));

} // namespace
