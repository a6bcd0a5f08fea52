//===- ChatTest.cpp - KV-cache decoding equals the full forward pass --------===//
#include "mm/Chat.h"
#include "mm/Error.h"
#include "mm/Llava.h"

#include <gtest/gtest.h>

#include <cmath>
#include <memory>

namespace {

class KVCache : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    std::string dir = ::testing::TempDir() + "mm_chat_" + std::to_string(getpid());
    ASSERT_EQ(std::system(("mkdir -p '" + dir + "'").c_str()), 0);
    std::string so = dir + "/tiny.so";
    std::string cmd = std::string(MMC_PATH) + " compile '" MM_SOURCE_DIR "/models/llava-tiny.mlir' -o '" + so + "'";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
    model_ = std::make_unique<mm::CompiledModel>(mm::CompiledModel::load(so));
    params_ = std::make_unique<mm::ParameterStore>(model_->params());
    params_->initFromSeed(11);
    // Non-trivial norms so that every layer matters.
    for (size_t i = 0; i < params_->size(); ++i)
      if (params_->spec(i).init == "ones")
        for (int64_t j = 0; j < params_->spec(i).numel(); ++j) params_->data(i)[j] = 1.0f + 0.3f * std::sin(j + i);
  }
  static void TearDownTestSuite() {
    params_.reset();
    model_.reset();
  }
  static std::unique_ptr<mm::CompiledModel> model_;
  static std::unique_ptr<mm::ParameterStore> params_;
};
std::unique_ptr<mm::CompiledModel> KVCache::model_;
std::unique_ptr<mm::ParameterStore> KVCache::params_;

TEST_F(KVCache, PrefillThenDecodeMatchesTheForwardPass) {
  mm::LlavaShape shape = mm::llavaShape(*model_);
  std::vector<int32_t> ids{1, 40, 50};
  ids.insert(ids.end(), shape.imagePositions, shape.imageToken);
  for (int32_t t : {60, 70, 80, 90, 100, 110, 120, 130, 140, 150}) ids.push_back(t);
  const int64_t n = (int64_t)ids.size(), k = n - 8, vocab = shape.vocab;
  std::string image = MM_SOURCE_DIR "/models/samples/red-circle-blue-square.png";
  auto params = params_->pointers();

  std::vector<mm::HostTensor> full = model_->run("forward", params, mm::llavaForwardArgs(*model_, ids, image));
  const float *reference = full[0].as<float>();

  std::vector<int32_t> prompt(ids.begin(), ids.begin() + k);
  std::vector<mm::HostTensor> args = mm::llavaForwardArgs(*model_, prompt, image);
  for (int i = 3; i < 5; ++i) {
    mm::HostTensor cache;
    cache.bytes.assign(model_->entry("prefill").args[i].bytes(), 0);
    args.push_back(std::move(cache));
  }
  std::vector<mm::HostTensor> pre = model_->run("prefill", params, args);
  auto expectRow = [&](const float *got, int64_t position) {
    const float *want = reference + position * vocab;
    float scale = 0;
    for (int64_t v = 0; v < vocab; ++v) scale = std::max(scale, std::fabs(want[v]));
    for (int64_t v = 0; v < vocab; ++v)
      ASSERT_TRUE(std::fabs(got[v] - want[v]) <= 1e-4f * scale + 1e-6f)
          << "position " << position << ", token " << v << ": " << got[v] << " vs " << want[v];
  };
  for (int64_t p = 0; p < k; ++p) expectRow(pre[0].as<float>() + p * vocab, p);

  std::vector<mm::HostTensor> step(5);
  for (int i = 0; i < 3; ++i) step[i].bytes.resize(4);
  step[3] = std::move(args[3]);
  step[4] = std::move(args[4]);
  for (int64_t p = k; p < n; ++p) {
    *step[0].as<int32_t>() = ids[p];
    *step[1].as<int32_t>() = (int32_t)p;
    *step[2].as<int32_t>() = (int32_t)p + 1;
    std::vector<mm::HostTensor> out = model_->run("decode", params, step);
    SCOPED_TRACE("decode at position " + std::to_string(p));
    expectRow(out[0].as<float>(), p);
  }
}

TEST_F(KVCache, ManifestMarksTheCachesInout) {
  const mm::EntrySpec &decode = model_->entry("decode");
  EXPECT_TRUE(decode.args[3].inout);
  EXPECT_TRUE(decode.args[4].inout);
  EXPECT_FALSE(decode.args[0].inout);
}

TEST(Sampling, GreedyTopKAndTopP) {
  std::vector<float> logits{0.1f, 2.0f, 1.5f, -1.0f, 1.9f};
  std::mt19937_64 rng(3);
  mm::SamplingOptions greedy;
  EXPECT_EQ(mm::sampleToken(logits.data(), 5, greedy, rng), 1);
  mm::SamplingOptions top1;
  top1.temperature = 1.0;
  top1.topK = 1;
  for (int i = 0; i < 20; ++i) EXPECT_EQ(mm::sampleToken(logits.data(), 5, top1, rng), 1);
  mm::SamplingOptions nucleus;
  nucleus.temperature = 1.0;
  nucleus.topP = 0.01; // only the most likely token is inside the nucleus
  for (int i = 0; i < 20; ++i) EXPECT_EQ(mm::sampleToken(logits.data(), 5, nucleus, rng), 1);
  mm::SamplingOptions top3;
  top3.temperature = 1.0;
  top3.topK = 3;
  std::vector<int> seen(5, 0);
  for (int i = 0; i < 400; ++i) ++seen[mm::sampleToken(logits.data(), 5, top3, rng)];
  EXPECT_EQ(seen[0] + seen[3], 0) << "tokens outside the top 3 were drawn";
  EXPECT_GT(seen[1], 0);
  EXPECT_GT(seen[2], 0);
  EXPECT_GT(seen[4], 0);
  // Same seed, same draws.
  std::mt19937_64 a(9), b(9);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(mm::sampleToken(logits.data(), 5, top3, a), mm::sampleToken(logits.data(), 5, top3, b));
}

} // namespace

namespace {
TEST(Eval, AnswersCompareAfterNormalising) {
  EXPECT_EQ(mm::normalizeAnswer("  Red. "), "red");
  EXPECT_EQ(mm::normalizeAnswer("There is none."), "there is none");
  EXPECT_EQ(mm::normalizeAnswer("Two!"), mm::normalizeAnswer("two"));
  EXPECT_NE(mm::normalizeAnswer("Two"), mm::normalizeAnswer("Three"));
}
} // namespace
