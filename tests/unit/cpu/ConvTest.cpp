//===- ConvTest.cpp - im2col and col2im against their definitions --------===//
//
// runtime/include/mm/cpu/Conv.h unfolds a convolution's input (im2col) and
// folds gradients back (col2im) around the GEMM. im2col is checked element
// by element against its definition, col2im as its adjoint
// (<im2col(x), y> = <x, col2im(y)>, exact on small integers), over every
// combination of small image sizes, kernel sizes, strides and paddings, so
// that every edge of the valid tap range is crossed.
//
//===----------------------------------------------------------------------===//
#include "mm/cpu/Conv.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace {

/// col[(c*KH + u)*KW + v][oy*WO + ox] = x[c][oy*S - P + u][ox*S - P + v], 0 outside.
float definition(const std::vector<float> &x, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t S, int64_t P,
                 int64_t HO, int64_t WO, int64_t row, int64_t pos) {
  const int64_t c = row / (KH * KW), u = (row / KW) % KH, v = row % KW;
  const int64_t iy = (pos / WO) * S - P + u, ix = (pos % WO) * S - P + v;
  return iy >= 0 && iy < H && ix >= 0 && ix < W ? x[(c * H + iy) * W + ix] : 0.0f;
}

TEST(Conv, Im2colMatchesItsDefinitionAndCol2imIsItsAdjoint) {
  std::mt19937 rng(3);
  std::uniform_int_distribution<int> small(-4, 4);
  const int64_t C = 2;
  int checked = 0;
  for (int64_t H = 1; H <= 7; ++H)
    for (int64_t W = 1; W <= 9; ++W)
      for (int64_t K = 1; K <= 4; ++K)
        for (int64_t S = 1; S <= 3; ++S)
          for (int64_t P = 0; P <= 3; ++P) {
            const int64_t HO = (H + 2 * P - K) / S + 1, WO = (W + 2 * P - K) / S + 1;
            if (H + 2 * P < K || W + 2 * P < K) continue;
            SCOPED_TRACE(testing::Message() << "H " << H << " W " << W << " K " << K << " S " << S << " P " << P);
            std::vector<float> x(C * H * W), y(C * K * K * HO * WO), col(y.size(), -99.0f), back(x.size(), -99.0f);
            for (float &v : x) v = (float)small(rng);
            for (float &v : y) v = (float)small(rng);
            mm_cpu::im2col<float>(x.data(), C, H, W, K, K, S, P, HO, WO, col.data());
            for (int64_t row = 0; row < C * K * K; ++row)
              for (int64_t pos = 0; pos < HO * WO; ++pos)
                ASSERT_EQ(col[row * HO * WO + pos], definition(x, H, W, K, K, S, P, HO, WO, row, pos))
                    << "col row " << row << " position " << pos;
            mm_cpu::col2im<float>(y.data(), C, H, W, K, K, S, P, HO, WO, back.data());
            double lhs = 0, rhs = 0;
            for (size_t i = 0; i < col.size(); ++i) lhs += (double)col[i] * y[i];
            for (size_t i = 0; i < x.size(); ++i) rhs += (double)x[i] * back[i];
            ASSERT_EQ(lhs, rhs);
            ++checked;
          }
  EXPECT_GT(checked, 1000);
}

} // namespace
