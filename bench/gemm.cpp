//===- gemm.cpp - mmc's CPU GEMM against OpenBLAS in the same process ------===//
//
// C[M,N] = A[M,K] . B[K,N] for the shapes the training steps run (the tiny
// and small LLaVA's linear layers) and a large square one; mm_cpu::gemm
// (runtime/include/mm/cpu/Gemm.h) and OpenBLAS's cblas_sgemm (loaded with
// dlopen, the library PyTorch uses here) alternate in phases (see
// alternate()), same thread count.
//   usage: mm-bench-gemm [threads]
//
//===----------------------------------------------------------------------===//
#include "mm/cpu/Gemm.h"

#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

namespace {

typedef void (*SgemmFn)(int, int, int, int, int, int, float, const float *, int, const float *, int, float,
                        float *, int);
typedef void (*SetThreadsFn)(int);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

/// Median seconds of `a` and of `b`, timed in alternating phases (a block of
/// calls of one, then of the other, five rounds; each side's best round), so
/// that the machine's slow spells hit both sides alike. Not call by call: with
/// two threads each library's idle workers spin for a while after a call
/// (OpenMP's block time, OpenBLAS's thread timeout) and would take the core
/// the other library's call needs; a pause between phases lets them sleep.
template <typename A, typename B> void alternate(A a, B b, double flop, double &sa, double &sb) {
  const int reps = std::max(5, (int)(4e8 / flop));
  auto phase = [&](auto &&f) {
    f(); // warm-up: wakes the thread pool
    std::vector<double> t;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      f();
      t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    std::sort(t.begin(), t.end());
    std::this_thread::sleep_for(std::chrono::milliseconds(400));
    return t[t.size() / 2];
  };
  sa = sb = 1e30;
  for (int round = 0; round < 5; ++round) {
    sa = std::min(sa, phase(a));
    sb = std::min(sb, phase(b));
  }
}

} // namespace

int main(int argc, char **argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : omp_get_max_threads();
  omp_set_num_threads(threads);
  void *blas = nullptr;
  for (const char *name : {"libopenblas.so.0", "libopenblasp-r0.3.21.so", "libblas.so.3"})
    if ((blas = dlopen(name, RTLD_NOW))) break;
  SgemmFn sgemm = blas ? (SgemmFn)dlsym(blas, "cblas_sgemm") : nullptr;
  if (SetThreadsFn set = blas ? (SetThreadsFn)dlsym(blas, "openblas_set_num_threads") : nullptr) set(threads);
  std::printf("GEMM, %d threads, isa %s; y = x . w^T as in a linear layer (w stored [N,K])\n", threads,
              mm_cpu::isaName(mm_cpu::cpuIsa()));
  std::printf("%18s %10s %10s %8s\n", "M x N x K", "mmc GF/s", "BLAS GF/s", "ratio");
  const int shapes[][3] = {{176, 256, 256}, {176, 688, 256}, {176, 256, 688}, {176, 800, 256},
                           {65, 128, 128},  {176, 768, 768}, {176, 2048, 768}, {176, 768, 2048},
                           {1024, 1024, 1024}};
  for (const auto &s : shapes) {
    const int M = s[0], N = s[1], K = s[2];
    std::vector<float> x((size_t)M * K), w((size_t)N * K), y((size_t)M * N);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (float)((i * 7919) % 1000) / 1000.f - 0.5f;
    for (size_t i = 0; i < w.size(); ++i) w[i] = (float)((i * 104729) % 1000) / 1000.f - 0.5f;
    const double flop = 2.0 * M * N * K;
    double ours = 0, theirs = 0;
    alternate([&] { mm_cpu::gemm<float>(M, N, K, x.data(), K, 1, w.data(), 1, K, y.data(), N, false); },
              [&] {
                if (sgemm) sgemm(kRowMajor, kNoTrans, kTrans, M, N, K, 1.f, x.data(), K, w.data(), K, 0.f, y.data(), N);
              },
              flop, ours, theirs);
    std::printf("%6d x%5d x%5d %10.1f %10.1f %8.2f\n", M, N, K, flop / ours / 1e9,
                sgemm ? flop / theirs / 1e9 : 0.0, sgemm ? theirs / ours : 0.0);
  }
  if (!sgemm) std::printf("(OpenBLAS not found: no peer column)\n");
  return 0;
}
