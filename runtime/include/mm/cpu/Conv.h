//===- Conv.h - im2col and col2im for the CPU convolution kernels -*- C++ -*-===//
//
// Header-only, included by the C++ that `mmc compile` generates: a 2-D
// convolution is a GEMM over an unfolded input (Gemm.h does the product).
//
//   x    [C, H, W]           one image of the batch
//   col  [C*KH*KW, HO*WO]    col[(c*KH + u)*KW + v][oy*WO + ox] =
//                            x[c][oy*S - P + u][ox*S - P + v], 0 outside
//
// conv2d:             y[O, HO*WO]   = w[O, C*KH*KW] . col
// conv2d_grad_weight: dw[O, C*KH*KW] = dy[O, HO*WO] . col^T, computed as
//                     dw^T = col . dy^T and transposed when the output has
//                     few channels (see gradWeightTransposed)
// conv2d_grad_input:  dcol = w^T . dy, then col2im adds every tap back
//                     into the input position it read.
//
// col's rows lie colStride(HO*WO) apart: HO*WO itself, unless that is a
// multiple of 4 KiB, where rows read together would share an L1 set.
//
//===----------------------------------------------------------------------===//
#ifndef MM_CPU_CONV_H
#define MM_CPU_CONV_H

#include "mm/cpu/Gemm.h"

#include <stdint.h>
#include <string.h>

namespace mm_cpu {

/// The distance between col's rows for HO*WO = n outputs: n, or n and one
/// cache line when n values span a multiple of 4 KiB (32 x 32 outputs). The
/// GEMMs then read col's rows in place instead of packing them (a weight
/// gradient of 64 channels over 32 x 32 outputs: 82 -> 110 GFLOP/s on one
/// Zen 4 thread).
template <typename T> constexpr int64_t colStride(int64_t n) {
  return (n * (int64_t)sizeof(T)) % 4096 == 0 ? n + 64 / (int64_t)sizeof(T) : n;
}

/// Whether conv2d_grad_weight computes dw^T = col . dy^T and transposes it:
/// with few output channels O (the GEMM's rows) against many outputs (its
/// depth), dw = dy . col^T spends as long packing col^T as multiplying, while
/// dw^T reads col in place and packs only dy (the same sums in the same
/// order, the same bits, wherever both products have the 4 rows or more that
/// the blocked path takes; below that gemmSmall sums in another order).
constexpr bool gradWeightTransposed(int64_t O, int64_t n) { return n >= 4 * O; }

/// dst[cols, rows] = src[rows, cols]^T, in 16 x 16 blocks.
template <typename T> void transposeInto(const T *src, int64_t rows, int64_t cols, T *dst) {
  for (int64_t i0 = 0; i0 < rows; i0 += 16)
    for (int64_t j0 = 0; j0 < cols; j0 += 16) {
      const int64_t i1 = i0 + 16 < rows ? i0 + 16 : rows, j1 = j0 + 16 < cols ? j0 + 16 : cols;
      for (int64_t j = j0; j < j1; ++j)
        for (int64_t i = i0; i < i1; ++i) dst[j * rows + i] = src[i * cols + j];
    }
}

/// The outputs [ox0, ox1) of a row of WO whose tap v (stride S, padding P)
/// reads inside an input row of W: ox * S - P + v in [0, W).
inline void tapRange(int64_t W, int64_t WO, int64_t S, int64_t P, int64_t v, int64_t &ox0, int64_t &ox1) {
  const int64_t first = P - v; // ox * S must reach it
  ox0 = first <= 0 ? 0 : (first + S - 1) / S;
  const int64_t last = W - 1 + P - v; // ox * S must not pass it
  ox1 = last < 0 ? 0 : last / S + 1;
  if (ox1 > WO) ox1 = WO;
  if (ox0 > ox1) ox0 = ox1;
}

template <typename T>
void im2col(const T *x, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t S, int64_t P,
            int64_t HO, int64_t WO, T *col, int64_t ld = -1) {
  if (ld < 0) ld = HO * WO;
#pragma omp parallel for schedule(static) if (C * KH * KW * HO * WO >= 65536 && !inParallel())
  for (int64_t k = 0; k < C * KH * KW; ++k) {
    const int64_t c = k / (KH * KW), u = (k / KW) % KH, v = k % KW;
    // The outputs whose tap lands inside the row: ox in [ox0, ox1).
    int64_t ox0, ox1;
    tapRange(W, WO, S, P, v, ox0, ox1);
    T *row = col + k * ld;
    for (int64_t oy = 0; oy < HO; ++oy) {
      const int64_t iy = oy * S - P + u;
      T *out = row + oy * WO;
      if (iy < 0 || iy >= H || ox0 >= ox1) {
        for (int64_t ox = 0; ox < WO; ++ox) out[ox] = 0;
        continue;
      }
      const T *in = x + (c * H + iy) * W + (ox0 * S - P + v);
      for (int64_t ox = 0; ox < ox0; ++ox) out[ox] = 0;
      if (S == 1)
        memcpy(out + ox0, in, (size_t)(ox1 - ox0) * sizeof(T));
      else
        for (int64_t ox = ox0; ox < ox1; ++ox) out[ox] = in[(ox - ox0) * S];
      for (int64_t ox = ox1; ox < WO; ++ox) out[ox] = 0;
    }
  }
}

/// x[C, H, W] = the sum of every col entry that im2col read from each
/// position (x is overwritten). Channels in parallel: no two write one value.
template <typename T>
void col2im(const T *col, int64_t C, int64_t H, int64_t W, int64_t KH, int64_t KW, int64_t S, int64_t P,
            int64_t HO, int64_t WO, T *x, int64_t ld = -1) {
  if (ld < 0) ld = HO * WO;
#pragma omp parallel for schedule(static) if (C * KH * KW * HO * WO >= 65536 && !inParallel())
  for (int64_t c = 0; c < C; ++c) {
    T *plane = x + c * H * W;
    for (int64_t i = 0; i < H * W; ++i) plane[i] = 0;
    for (int64_t u = 0; u < KH; ++u)
      for (int64_t v = 0; v < KW; ++v) {
        const T *row = col + ((c * KH + u) * KW + v) * ld;
        int64_t ox0, ox1;
        tapRange(W, WO, S, P, v, ox0, ox1);
        if (ox0 >= ox1) continue; // the tap never lands inside a row
        for (int64_t oy = 0; oy < HO; ++oy) {
          const int64_t iy = oy * S - P + u;
          if (iy < 0 || iy >= H) continue;
          T *dst = plane + iy * W + (ox0 * S - P + v);
          const T *src = row + oy * WO;
          for (int64_t ox = ox0; ox < ox1; ++ox) dst[(ox - ox0) * S] += src[ox];
        }
      }
  }
}

} // namespace mm_cpu

#endif // MM_CPU_CONV_H
