//===- OptimizerTest.cpp - tests for mm/Optimizer.h -----------------------===//
//
// AdamW against the update written out by hand (two steps, with and without
// weight decay), LR schedules against transformers' formulas at chosen
// steps, and clip_grad_norm_.
//
//===----------------------------------------------------------------------===//
#include "mm/Error.h"
#include "mm/Optimizer.h"

#include <gtest/gtest.h>

#include <cmath>

namespace {

mm::TensorSpec spec(const std::string &name, std::vector<int64_t> shape) {
  mm::TensorSpec s;
  s.name = name;
  s.shape = std::move(shape);
  return s;
}

/// torch.optim.AdamW for one scalar, in double: returns the new p and
/// updates m, v.
double adamw(double p, double g, double &m, double &v, int t, double lr, double wd) {
  const double b1 = 0.9, b2 = 0.999, eps = 1e-8;
  p *= 1 - lr * wd;
  m = b1 * m + (1 - b1) * g;
  v = b2 * v + (1 - b2) * g * g;
  double denom = std::sqrt(v) / std::sqrt(1 - std::pow(b2, t)) + eps;
  return p - lr / (1 - std::pow(b1, t)) * m / denom;
}

} // namespace

TEST(AdamW, FirstStepIsSignedLrAndDecayOnlyOnMatrices) {
  mm::AdamWOptions o;
  o.weightDecay = 0.1;
  mm::AdamW opt({spec("w", {1, 2}), spec("b", {2})}, o);
  EXPECT_TRUE(opt.decays(0));
  EXPECT_FALSE(opt.decays(1));
  std::vector<float> w = {1.0f, -2.0f}, b = {0.5f, 0.25f};
  std::vector<float> gw = {0.5f, -0.25f}, gb = {2.0f, 0.0f};
  const double lr = 0.1;
  opt.step({w.data(), b.data()}, {gw.data(), gb.data()}, lr);
  EXPECT_EQ(opt.stepCount(), 1);
  // Step 1: m = 0.1 g, v = 0.001 g^2, so p -= lr * g / (|g| + eps): lr * sign(g).
  // Decay first, on w only: p *= 1 - lr * wd = 0.99.
  EXPECT_NEAR(w[0], 1.0 * 0.99 - 0.1 * 0.5 / (0.5 + 1e-8), 1e-6);
  EXPECT_NEAR(w[1], -2.0 * 0.99 + 0.1 * 0.25 / (0.25 + 1e-8), 1e-6);
  EXPECT_NEAR(b[0], 0.5 - 0.1, 1e-6);
  EXPECT_FLOAT_EQ(b[1], 0.25f); // zero gradient, no decay on a bias: unchanged
  EXPECT_NEAR(opt.expAvg(0)[0], 0.05, 1e-7);
  EXPECT_NEAR(opt.expAvgSq(0)[1], 0.001 * 0.0625, 1e-9);
  EXPECT_NEAR(opt.expAvg(1)[0], 0.2, 1e-7);
}

TEST(AdamW, TwoStepsMatchTheFormula) {
  mm::AdamWOptions o;
  o.weightDecay = 0.05;
  mm::AdamW opt({spec("w", {2, 2}), spec("norm", {2})}, o);
  std::vector<float> w = {0.3f, -0.7f, 1.5f, 0.0f}, n = {1.0f, 1.0f};
  std::vector<double> wd(w.begin(), w.end()), nd(n.begin(), n.end());
  std::vector<double> mw(4, 0), vw(4, 0), mn(2, 0), vn(2, 0);
  const float g1w[] = {0.1f, -0.2f, 0.3f, 1e-4f}, g1n[] = {-0.5f, 0.05f};
  const float g2w[] = {-0.3f, -0.1f, 0.2f, 0.0f}, g2n[] = {0.25f, 0.05f};
  const double lrs[] = {0.01, 0.02};
  for (int t = 1; t <= 2; ++t) {
    const float *gw = t == 1 ? g1w : g2w, *gn = t == 1 ? g1n : g2n;
    opt.step({w.data(), n.data()}, {gw, gn}, lrs[t - 1]);
    for (int i = 0; i < 4; ++i) wd[i] = adamw(wd[i], gw[i], mw[i], vw[i], t, lrs[t - 1], 0.05);
    for (int i = 0; i < 2; ++i) nd[i] = adamw(nd[i], gn[i], mn[i], vn[i], t, lrs[t - 1], 0.0);
  }
  for (int i = 0; i < 4; ++i) {
    EXPECT_NEAR(w[i], wd[i], 2e-6) << i;
    EXPECT_NEAR(opt.expAvg(0)[i], mw[i], 1e-7) << i;
    EXPECT_NEAR(opt.expAvgSq(0)[i], vw[i], 1e-9) << i;
  }
  for (int i = 0; i < 2; ++i) EXPECT_NEAR(n[i], nd[i], 2e-6) << i;
  // Hand-computed step 2 of w[0]: m = 0.9*0.01 + 0.1*(-0.3) = -0.021,
  // v = 0.999*1e-5 + 0.001*0.09 = 9.999e-5; m_hat = -0.021/0.19,
  // v_hat = 9.999e-5/0.001999.
  double w1 = 0.3 * (1 - 0.01 * 0.05) - 0.01 * 0.1 / (0.1 + 1e-8);
  double w2 = w1 * (1 - 0.02 * 0.05) - 0.02 * (-0.021 / 0.19) / (std::sqrt(9.999e-5 / 0.001999) + 1e-8);
  EXPECT_NEAR(w[0], w2, 2e-6);
}

TEST(AdamW, RejectsMismatchedBuffers) {
  mm::AdamW opt({spec("w", {2, 2})}, {});
  std::vector<float> w(4), g(4);
  EXPECT_THROW(opt.step({w.data(), w.data()}, {g.data()}, 0.1), mm::Error);
}

TEST(Schedule, CosineWithWarmup) {
  // T = 10, ratio 0.1: W = 1. lr(0) = 0, lr(1) = peak, then half a cosine over 9 steps.
  mm::LrSchedule s{2.0, mm::Schedule::Cosine, 10, mm::warmupSteps(0.1, 10)};
  EXPECT_EQ(s.warmup, 1);
  EXPECT_DOUBLE_EQ(s.at(0), 0.0);
  EXPECT_DOUBLE_EQ(s.at(1), 2.0);
  EXPECT_DOUBLE_EQ(s.at(5), 2.0 * 0.5 * (1 + std::cos(M_PI * 4.0 / 9.0)));
  EXPECT_NEAR(s.at(9), 2.0 * 0.5 * (1 + std::cos(M_PI * 8.0 / 9.0)), 1e-15);
  EXPECT_NEAR(s.at(10), 0.0, 1e-15);
  // Longer warm-up: linear ramp s / W.
  mm::LrSchedule w{1e-3, mm::Schedule::Cosine, 100, mm::warmupSteps(0.03, 100)};
  EXPECT_EQ(w.warmup, 3);
  EXPECT_DOUBLE_EQ(w.at(1), 1e-3 * (1.0 / 3.0));
  EXPECT_DOUBLE_EQ(w.at(2), 1e-3 * (2.0 / 3.0));
  EXPECT_DOUBLE_EQ(w.at(3), 1e-3);
  EXPECT_DOUBLE_EQ(w.at(50), 1e-3 * 0.5 * (1 + std::cos(M_PI * 47.0 / 97.0)));
}

TEST(Schedule, LinearAndConstant) {
  mm::LrSchedule l{1.0, mm::Schedule::Linear, 10, 2};
  EXPECT_DOUBLE_EQ(l.at(0), 0.0);
  EXPECT_DOUBLE_EQ(l.at(1), 0.5);
  EXPECT_DOUBLE_EQ(l.at(2), 1.0);
  EXPECT_DOUBLE_EQ(l.at(6), 4.0 / 8.0);
  EXPECT_DOUBLE_EQ(l.at(9), 1.0 / 8.0);
  mm::LrSchedule c{0.1, mm::Schedule::Constant, 10, 4};
  EXPECT_DOUBLE_EQ(c.at(2), 0.1 * 0.5);
  EXPECT_DOUBLE_EQ(c.at(4), 0.1);
  EXPECT_DOUBLE_EQ(c.at(9), 0.1);
  // No warm-up, one step: the whole rate at once.
  mm::LrSchedule one{0.3, mm::Schedule::Cosine, 1, mm::warmupSteps(0.0, 1)};
  EXPECT_DOUBLE_EQ(one.at(0), 0.3);
}

TEST(Schedule, WarmupStepsAndNames) {
  EXPECT_EQ(mm::warmupSteps(0.03, 1), 1); // ceil, as transformers
  EXPECT_EQ(mm::warmupSteps(0.03, 1000), 30);
  EXPECT_EQ(mm::warmupSteps(0.0, 1000), 0);
  EXPECT_EQ(mm::warmupSteps(0.5, 7), 4);
  EXPECT_EQ(mm::parseSchedule("cosine"), mm::Schedule::Cosine);
  EXPECT_EQ(mm::parseSchedule("linear"), mm::Schedule::Linear);
  EXPECT_EQ(mm::parseSchedule("constant"), mm::Schedule::Constant);
  EXPECT_STREQ(mm::scheduleName(mm::Schedule::Linear), "linear");
  EXPECT_THROW(mm::parseSchedule("step"), mm::Error);
}

TEST(ClipGradNorm, ScalesOnlyAboveTheMaximum) {
  std::vector<std::vector<float>> g = {{3.0f}, {0.0f, 4.0f}};
  EXPECT_DOUBLE_EQ(mm::clipGradNorm(g, 10.0), 5.0);
  EXPECT_EQ(g[0][0], 3.0f); // coef 10/5 > 1: untouched
  EXPECT_DOUBLE_EQ(mm::clipGradNorm(g, 1.0), 5.0);
  const float c = (float)(1.0 / (5.0 + 1e-6));
  EXPECT_EQ(g[0][0], 3.0f * c);
  EXPECT_EQ(g[1][1], 4.0f * c);
  EXPECT_NEAR(std::sqrt(g[0][0] * g[0][0] + g[1][1] * g[1][1]), 1.0, 1e-6);
  std::vector<std::vector<float>> h = {{30.0f, 40.0f}};
  EXPECT_DOUBLE_EQ(mm::clipGradNorm(h, 0.0), 50.0); // 0: measure only
  EXPECT_EQ(h[0][1], 40.0f);
  std::vector<std::vector<float>> bad = {{1.0f, NAN}};
  EXPECT_TRUE(std::isnan(mm::clipGradNorm(bad, 1.0)));
  EXPECT_EQ(bad[0][0], 1.0f);
}
