//===- Gemm.h - packed GEMM for the CPU kernels mmc generates ---*- C++ -*-===//
//
// Header-only, included by the C++ that `mmc compile` generates (the linear
// ops and their gradients call it) and by tests/unit/runtime/GemmTest.cpp.
//
//   C[M,N] (+)= A[M,K] . B[K,N]
//   A(m,k) = a[m*rsa + k*csa]     any strides: the packing absorbs transposes
//   B(k,n) = b[k*rsb + n*csb]
//   C(m,n) = c[m*ldc + n]
//
// The structure is the classic one (Goto/BLIS): B is packed into KC x NR
// panels, A into MR x KC panels, and a register-blocked MR x NR microkernel
// runs rank-1 updates over the packed panels with every accumulator in a
// vector register. The microkernel is written once with vector extensions
// and instantiated per instruction set; the instruction set is chosen at
// run time from the processor's features (AVX-512, else AVX2+FMA, else a
// portable 128-bit build), or forced with MM_CPU_ISA=avx512|avx2|generic.
//
// Determinism: every C element is summed in k order by one thread, whatever
// the thread count, so results do not depend on OMP_NUM_THREADS.
//
//===----------------------------------------------------------------------===//
#ifndef MM_CPU_GEMM_H
#define MM_CPU_GEMM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

namespace mm_cpu {

enum class Isa { Generic, Avx2, Avx512 };

/// The widest instruction set this processor runs, or the one MM_CPU_ISA
/// names (never one the processor lacks).
inline Isa detectIsa() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  Isa best = __builtin_cpu_supports("avx512f") ? Isa::Avx512
             : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? Isa::Avx2
                                                                                  : Isa::Generic;
#else
  Isa best = Isa::Generic;
#endif
  if (const char *env = getenv("MM_CPU_ISA")) {
    Isa want = !strcmp(env, "avx512") ? Isa::Avx512 : !strcmp(env, "avx2") ? Isa::Avx2 : Isa::Generic;
    if ((int)want < (int)best) best = want;
  }
  return best;
}

inline Isa cpuIsa() {
  static const Isa isa = detectIsa();
  return isa;
}

inline const char *isaName(Isa isa) {
  return isa == Isa::Avx512 ? "avx512" : isa == Isa::Avx2 ? "avx2" : "generic";
}

/// This thread's contiguous share [first, last) of `count` items, inside an
/// OpenMP parallel region (all of them outside one).
inline void threadShare(int64_t count, int64_t &first, int64_t &last) {
#ifdef _OPENMP
  const int64_t t = omp_get_thread_num(), n = omp_get_num_threads();
#else
  const int64_t t = 0, n = 1;
#endif
  first = count * t / n;
  last = count * (t + 1) / n;
}

/// Whether the caller already runs inside a parallel region: GEMMs called
/// from one (attention's per-head strips) run on the calling thread alone.
inline bool inParallel() {
#ifdef _OPENMP
  return omp_in_parallel();
#else
  return false;
#endif
}

namespace detail {

/// Register blocking per instruction set: MR rows of A, NV vectors of W lanes
/// of B. AVX2: 6 x 16 floats = 12 ymm accumulators; AVX-512: 12 x 32 floats =
/// 24 zmm accumulators; generic: 4 x 8 floats in 128-bit registers.
template <typename T> struct Blocking {
  int mr, nr;
};
template <typename T> inline Blocking<T> blocking(Isa isa) {
  const int lanes = (isa == Isa::Avx512 ? 64 : isa == Isa::Avx2 ? 32 : 16) / (int)sizeof(T);
  const int mr = isa == Isa::Avx512 ? 12 : isa == Isa::Avx2 ? 6 : 4;
  return {mr, 2 * lanes};
}

// Cache blocking: a KC x NR panel of B stays in L1 while MC x KC of A sits
// in L2; NC bounds the packed B block.
constexpr int64_t KC = 256, MC = 144, NC = 4096;

/// One MR x NR tile: C(0..mr, 0..nr) (+)= Ap . Bp over kc packed steps.
template <typename T, int W, int MR, int NV>
static inline __attribute__((always_inline)) void microkernel(int64_t kc, const T *__restrict ap,
                                                              const T *__restrict bp, T *c,
                                                              int64_t ldc, bool accumulate,
                                                              int64_t mr, int64_t nr) {
  typedef T V __attribute__((vector_size(W * sizeof(T))));
  constexpr int NR = W * NV;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = (V){} ;
  for (int64_t k = 0; k < kc; ++k) {
    V b[NV];
    for (int j = 0; j < NV; ++j) memcpy(&b[j], bp + j * W, sizeof(V));
    for (int i = 0; i < MR; ++i) {
      const V a = ap[i] - (V){}; // a splat: x - (+0) folds to x
      for (int j = 0; j < NV; ++j) acc[i][j] += a * b[j];
    }
    ap += MR;
    bp += NR;
  }
  if (mr == MR && nr == NR) {
    for (int i = 0; i < MR; ++i)
      for (int j = 0; j < NV; ++j) {
        T *dst = c + i * ldc + j * W;
        V v = acc[i][j];
        if (accumulate) {
          V old;
          memcpy(&old, dst, sizeof(V));
          v += old;
        }
        memcpy(dst, &v, sizeof(V));
      }
    return;
  }
  T tile[MR][NR];
  memcpy(tile, acc, sizeof(tile));
  for (int64_t i = 0; i < mr; ++i)
    for (int64_t j = 0; j < nr; ++j)
      c[i * ldc + j] = accumulate ? c[i * ldc + j] + tile[i][j] : tile[i][j];
}

/// Runs the tiles [first, last) of one packed block (tiles ordered with the
/// A panel fastest, so one B panel is reused from L1 across A panels).
struct BlockArgs {
  int64_t kc, mc, nc, ldc;
  bool accumulate;
};
#define MM_GEMM_TILES(NAME, TARGET, W_BYTES, MR)                                                   \
  template <typename T>                                                                            \
  TARGET __attribute__((noinline)) void NAME(const BlockArgs &g, const T *ap, const T *bp, T *c,  \
                                             int64_t first, int64_t last) {                       \
    constexpr int W = W_BYTES / sizeof(T), NR = 2 * W;                                             \
    const int64_t panelsA = (g.mc + MR - 1) / MR;                                                  \
    for (int64_t t = first; t < last; ++t) {                                                       \
      const int64_t ir = t % panelsA, jr = t / panelsA;                                            \
      const int64_t m0 = ir * MR, n0 = jr * NR;                                                    \
      const int64_t mr = g.mc - m0 < MR ? g.mc - m0 : MR, nr = g.nc - n0 < NR ? g.nc - n0 : NR;    \
      microkernel<T, W, MR, 2>(g.kc, ap + ir * MR * g.kc, bp + jr * NR * g.kc, c + m0 * g.ldc + n0, \
                               g.ldc, g.accumulate, mr, nr);                                       \
    }                                                                                              \
  }
#if defined(__x86_64__) || defined(__i386__)
MM_GEMM_TILES(tilesAvx512, __attribute__((target("avx512f"))), 64, 12)
MM_GEMM_TILES(tilesAvx2, __attribute__((target("avx2,fma"))), 32, 6)
#endif
MM_GEMM_TILES(tilesGeneric, , 16, 4)
#undef MM_GEMM_TILES

template <typename T>
void runTiles(Isa isa, const BlockArgs &g, const T *ap, const T *bp, T *c, int64_t first,
              int64_t last) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return tilesAvx512<T>(g, ap, bp, c, first, last);
  if (isa == Isa::Avx2) return tilesAvx2<T>(g, ap, bp, c, first, last);
#endif
  tilesGeneric<T>(g, ap, bp, c, first, last);
}

} // namespace detail

/// Small products (few rows, as in single-token decode) skip the packing,
/// which would copy all of B to use it once: one output element per dot
/// product, split over the columns.
template <typename T>
void gemmSmall(int64_t M, int64_t N, int64_t K, const T *a, int64_t rsa, int64_t csa, const T *b,
               int64_t rsb, int64_t csb, T *c, int64_t ldc, bool accumulate) {
#pragma omp parallel for schedule(static) if (N * K >= 32768 && !inParallel())
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const T *ar = a + m * rsa, *bc = b + n * csb;
      T acc = 0;
      if (csa == 1 && rsb == 1) {
#pragma omp simd reduction(+ : acc)
        for (int64_t k = 0; k < K; ++k) acc += ar[k] * bc[k];
      } else {
        for (int64_t k = 0; k < K; ++k) acc += ar[k * csa] * bc[k * rsb];
      }
      c[m * ldc + n] = accumulate ? c[m * ldc + n] + acc : acc;
    }
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T *a, int64_t rsa, int64_t csa, const T *b,
          int64_t rsb, int64_t csb, T *c, int64_t ldc, bool accumulate, Isa isa = cpuIsa()) {
  using namespace detail;
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t m = 0; m < M; ++m) memset(c + m * ldc, 0, N * sizeof(T));
    return;
  }
  if (M < 4) return gemmSmall(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate);
  const Blocking<T> blk = blocking<T>(isa);
  const int64_t MR = blk.mr, NR = blk.nr;
  const int64_t kcMax = K < KC ? K : KC;
  const int64_t ncMax = N < NC ? N : NC, mcMax = M < MC ? M : MC;
  const int64_t ncPad = (ncMax + NR - 1) / NR * NR, mcPad = (mcMax + MR - 1) / MR * MR;
  T *bpack = (T *)aligned_alloc(64, (size_t)(kcMax * ncPad * sizeof(T) + 64) / 64 * 64);
  T *apack = (T *)aligned_alloc(64, (size_t)(kcMax * mcPad * sizeof(T) + 64) / 64 * 64);
#pragma omp parallel if (!inParallel())
  {
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = N - jc < NC ? N - jc : NC, panelsB = (nc + NR - 1) / NR;
      for (int64_t pc = 0; pc < K; pc += KC) {
        const int64_t kc = K - pc < KC ? K - pc : KC;
        // Pack B(pc.., jc..) into panels: bpack[jr][k][j], zero past N.
#pragma omp for schedule(static)
        for (int64_t jr = 0; jr < panelsB; ++jr) {
          T *dst = bpack + jr * NR * kc;
          const int64_t n0 = jc + jr * NR, nr = nc - jr * NR < NR ? nc - jr * NR : NR;
          for (int64_t k = 0; k < kc; ++k) {
            const T *src = b + (pc + k) * rsb + n0 * csb;
            int64_t j = 0;
            if (csb == 1)
              for (; j < nr; ++j) dst[k * NR + j] = src[j];
            else
              for (; j < nr; ++j) dst[k * NR + j] = src[j * csb];
            for (; j < NR; ++j) dst[k * NR + j] = 0;
          }
        }
        for (int64_t ic = 0; ic < M; ic += MC) {
          const int64_t mc = M - ic < MC ? M - ic : MC, panelsA = (mc + MR - 1) / MR;
          // Pack A(ic.., pc..) into panels: apack[ir][k][i], zero past M.
#pragma omp for schedule(static)
          for (int64_t ir = 0; ir < panelsA; ++ir) {
            T *dst = apack + ir * MR * kc;
            const int64_t m0 = ic + ir * MR, mr = mc - ir * MR < MR ? mc - ir * MR : MR;
            for (int64_t i = 0; i < MR; ++i) {
              if (i < mr) {
                const T *src = a + (m0 + i) * rsa + pc * csa;
                for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = src[k * csa];
              } else {
                for (int64_t k = 0; k < kc; ++k) dst[k * MR + i] = 0;
              }
            }
          }
          BlockArgs g{kc, mc, nc, ldc, accumulate || pc > 0};
          int64_t first, last;
          threadShare(panelsA * panelsB, first, last);
          runTiles<T>(isa, g, apack, bpack, c + ic * ldc + jc, first, last);
#pragma omp barrier
        }
      }
    }
  }
  free(apack);
  free(bpack);
}

} // namespace mm_cpu

#endif // MM_CPU_GEMM_H
