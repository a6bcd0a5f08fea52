//===- fma_peak.cpp - the machine's measured fp32 FMA peak ----------------===//
//
// Independent FMA chains (more than latency x ports) in registers, no memory
// traffic: the ceiling every GEMM and training-step figure in
// docs/BENCHMARKS.md is divided by. Prints GFLOP/s for 1 and all threads, for
// AVX2 and, where the processor has it, AVX-512.
//
//===----------------------------------------------------------------------===//
#include "mm/cpu/Gemm.h"

#include <omp.h>

#include <chrono>
#include <cstdio>

namespace {

template <int W> struct Chains {
  typedef float V __attribute__((vector_size(W * 4)));
};

#define MM_FMA_LOOP(NAME, TARGET, W)                                                               \
  TARGET __attribute__((noinline)) float NAME(long iters) {                                        \
    typedef Chains<W>::V V;                                                                        \
    V acc[12], x = (V){} + 1.0000001f, y = (V){} + 1e-7f;                                          \
    for (int i = 0; i < 12; ++i) acc[i] = (V){} + (float)i;                                        \
    for (long it = 0; it < iters; ++it)                                                            \
      for (int i = 0; i < 12; ++i) acc[i] = acc[i] * x + y;                                        \
    float s = 0;                                                                                   \
    for (int i = 0; i < 12; ++i) s += acc[i][0];                                                   \
    return s;                                                                                      \
  }
MM_FMA_LOOP(fmaAvx2, __attribute__((target("avx2,fma"))), 8)
MM_FMA_LOOP(fmaAvx512, __attribute__((target("avx512f"))), 16)

double gflops(float (*fn)(long), int lanes, int threads) {
  const long iters = 100000000;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0;
    auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads) reduction(+ : sink)
    sink += fn(iters);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double g = threads * (double)iters * 12 * lanes * 2 / s / 1e9;
    if (sink == 12345.f) std::printf(" ");
    best = g > best ? g : best;
  }
  return best;
}

} // namespace

int main() {
  const int all = omp_get_max_threads();
  const mm_cpu::Isa isa = mm_cpu::detectIsa();
  std::printf("fp32 FMA peak (best of 3), %d threads available\n", all);
  if (isa >= mm_cpu::Isa::Avx2)
    std::printf("avx2:    1 thread %6.1f GFLOP/s   %d threads %6.1f GFLOP/s\n", gflops(fmaAvx2, 8, 1), all,
                gflops(fmaAvx2, 8, all));
  if (isa >= mm_cpu::Isa::Avx512)
    std::printf("avx512:  1 thread %6.1f GFLOP/s   %d threads %6.1f GFLOP/s\n", gflops(fmaAvx512, 16, 1), all,
                gflops(fmaAvx512, 16, all));
  return 0;
}
