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
// Epilogue: `gemm(..., ep)` calls ep(m, n0, n1) once for every element
// C(m, n0..n1) after its last update, while the block is still in cache
// (mm-fuse's bias, activation, residual and addend epilogues); every
// element exactly once, by one thread.
//
// Determinism: every C element is summed in k order by one thread, whatever
// the thread count, so results do not depend on OMP_NUM_THREADS.
//
// Packed weights: while a caller declares its parameters unchanged
// (weightCacheBegin .. weightCacheEnd, exported by the generated library as
// mm_weight_cache_v1), a B that is one of them is packed once and reused by
// every later product that reads it the same way (the samples of a training
// step share their weights; the same bits, the packing only moves).
//
//===----------------------------------------------------------------------===//
#ifndef MM_CPU_GEMM_H
#define MM_CPU_GEMM_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif
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

// Cache blocking: KC steps of k per block (the microkernel's sums); MC rows
// of A per block (in L2); NC bounds the packed B block. With many rows and
// several k blocks, B's k blocks are instead packed up to
// rowsFirstPackBytes at a time and C finished MC_ROWS rows at a time over
// all of them (below).
constexpr int64_t KC = 256, MC = 144, NC = 4096, MC_ROWS = 24, ROWS_FIRST_M = 512;
/// The most bytes of packed B the rows-first order holds (a variable so that
/// tests can make it split small products).
inline int64_t rowsFirstPackBytes = 8 << 20;

/// One MR x NR tile over kc steps: C(0..mr, 0..nr) (+)= A . B with
/// A(i,k) = a[i*ars + k*acs] (read as broadcasts) and B(k,j) = b[k*brs + j]
/// (NR contiguous values per step, read as vectors).
template <typename T, int W, int MR, int NV, bool PackedA>
static inline __attribute__((always_inline)) void
microkernel(int64_t kc, const T *__restrict a, int64_t ars, int64_t acs, const T *__restrict b,
            int64_t brs, T *c, int64_t ldc, bool accumulate, int64_t mr, int64_t nr) {
  typedef T V __attribute__((vector_size(W * sizeof(T))));
  constexpr int NR = W * NV;
  V acc[MR][NV];
  for (int i = 0; i < MR; ++i)
    for (int j = 0; j < NV; ++j) acc[i][j] = (V){};
  // C's lines are requested now and written after the k loop: a weight
  // gradient's C (rows a whole row of the weight apart) would otherwise wait
  // on a miss per row at the end of every tile.
  for (int64_t i = 0; i < mr; ++i)
    for (int j = 0; j < NV; ++j) __builtin_prefetch(c + i * ldc + j * W, 1);
  if (PackedA) {
    // A's MR rows adjacent, a[k * acs + i] (packed: acs = MR; in place, a
    // transposed A): every broadcast at a constant offset from one pointer
    // (MR row pointers and their increments cost the loop a tenth of its
    // speed; measured on Zen 4).
    for (int64_t k = 0; k < kc; ++k, a += acs) {
      V bv[NV];
      for (int j = 0; j < NV; ++j) memcpy(&bv[j], b + j * W, sizeof(V));
      for (int i = 0; i < MR; ++i) {
        const V av = a[i] - (V){}; // a splat: x - (+0) folds to x
        for (int j = 0; j < NV; ++j) acc[i][j] += av * bv[j];
      }
      b += brs;
    }
  } else {
    const T *row[MR];
    for (int i = 0; i < MR; ++i) row[i] = a + i * ars;
    for (int64_t k = 0, ak = 0; k < kc; ++k, ak += acs) {
      V bv[NV];
      for (int j = 0; j < NV; ++j) memcpy(&bv[j], b + j * W, sizeof(V));
      for (int i = 0; i < MR; ++i) {
        const V av = row[i][ak] - (V){};
        for (int j = 0; j < NV; ++j) acc[i][j] += av * bv[j];
      }
      b += brs;
    }
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

/// One block: C(ic.., jc..) over k in [pc, pc + kc). Full MR-row panels of A
/// are read in place through its strides, or from `aPacked` when it is set
/// (panel i at aPacked + i * MR * kc); the last, partial one from `aTail`
/// (packed, zero-padded). B's NR-column panels are read from `bPacked`, or in
/// place when it is null; a partial last panel always from `bTail`.
template <typename T> struct Block {
  int64_t kc, mc, nc, ldc, panelStride; // packed B panels start panelStride * NR apart
  bool accumulate;
  const T *a;
  int64_t rsa, csa;
  const T *aPacked;
  const T *aTail;
  const T *b;
  int64_t rsb;
  const T *bPacked, *bTail;
  T *c;
};

#define MM_GEMM_TILES(NAME, TARGET, W_BYTES, MR)                                                   \
  template <typename T>                                                                            \
  TARGET __attribute__((noinline)) void NAME(const Block<T> &g, int64_t first, int64_t last) {    \
    constexpr int W = W_BYTES / sizeof(T), NR = 2 * W;                                             \
    const int64_t panelsA = (g.mc + MR - 1) / MR;                                                  \
    for (int64_t t = first; t < last; ++t) {                                                       \
      const int64_t ir = t % panelsA, jr = t / panelsA;                                            \
      const int64_t m0 = ir * MR, n0 = jr * NR;                                                    \
      const int64_t mr = g.mc - m0 < MR ? g.mc - m0 : MR, nr = g.nc - n0 < NR ? g.nc - n0 : NR;    \
      const bool fullA = mr == MR;                                                                 \
      const bool inPlaceA = fullA && !g.aPacked;                                                   \
      const T *a = !fullA ? g.aTail : g.aPacked ? g.aPacked + ir * MR * g.kc : g.a + m0 * g.rsa;  \
      const T *b = nr < NR ? g.bTail : g.bPacked ? g.bPacked + jr * NR * g.panelStride : g.b + n0;          \
      const int64_t brs = (nr < NR || g.bPacked) ? NR : g.rsb;                                     \
      T *c = g.c + m0 * g.ldc + n0;                                                                \
      /* A's partial last panel (packed, MR wide) by the narrowest kernel that covers its rows:    \
         a 150-row product would otherwise spend 13 full tiles on 12.5 panels of work. */          \
      if (!fullA && mr <= MR / 3)                                                                  \
        microkernel<T, W, MR / 3, 2, true>(g.kc, a, 1, MR, b, brs, c, g.ldc, g.accumulate, mr, nr); \
      else if (!fullA && mr <= 2 * MR / 3)                                                         \
        microkernel<T, W, 2 * MR / 3, 2, true>(g.kc, a, 1, MR, b, brs, c, g.ldc, g.accumulate, mr, nr); \
      else if (inPlaceA && g.rsa != 1)                                                             \
        microkernel<T, W, MR, 2, false>(g.kc, a, g.rsa, g.csa, b, brs, c, g.ldc, g.accumulate, mr, nr); \
      else                                                                                         \
        microkernel<T, W, MR, 2, true>(g.kc, a, 1, inPlaceA ? g.csa : MR, b, brs, c, g.ldc, g.accumulate, mr, nr); \
    }                                                                                              \
  }
#if defined(__x86_64__) || defined(__i386__)
MM_GEMM_TILES(tilesAvx512, __attribute__((target("avx512f"))), 64, 12)
MM_GEMM_TILES(tilesAvx2, __attribute__((target("avx2,fma"))), 32, 6)
#endif
MM_GEMM_TILES(tilesGeneric, , 16, 4)
#undef MM_GEMM_TILES

template <typename T>
void runTiles(Isa isa, const Block<T> &g, int64_t first, int64_t last) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return tilesAvx512<T>(g, first, last);
  if (isa == Isa::Avx2) return tilesAvx2<T>(g, first, last);
#endif
  tilesGeneric<T>(g, first, last);
}

#if defined(__x86_64__) || defined(__i386__)
/// dst[k * width + j] = src[j * lane + k] for the first n (<= 16) lanes j and
/// 16 steps k: one 16 x 16 transpose in registers (unpack 32- and 64-bit,
/// then 128-bit lane shuffles), the missing lanes zero and not stored.
__attribute__((target("avx512f"))) inline void transpose16(const float *src, int64_t lane, float *dst,
                                                          int64_t width, int n, int64_t ahead) {
  __m512 r[16], a[16], b[16];
  for (int i = 0; i < 16; ++i) {
    r[i] = i < n ? _mm512_loadu_ps(src + i * lane) : _mm512_setzero_ps();
    __builtin_prefetch(src + i * lane + ahead);
  }
  const __mmask16 m = (__mmask16)((1u << n) - 1);
  for (int i = 0; i < 16; i += 2) {
    a[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  // b[4g + c]: rows 4g..4g+3 of column 4L + c in 128-bit lane L.
  for (int g = 0; g < 16; g += 4) {
    const __m512d a0 = _mm512_castps_pd(a[g]), a1 = _mm512_castps_pd(a[g + 1]);
    const __m512d a2 = _mm512_castps_pd(a[g + 2]), a3 = _mm512_castps_pd(a[g + 3]);
    b[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(a0, a2));
    b[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a0, a2));
    b[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(a1, a3));
    b[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(a1, a3));
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 u0 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0x44), u1 = _mm512_shuffle_f32x4(b[c], b[4 + c], 0xEE);
    const __m512 v0 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0x44),
                 v1 = _mm512_shuffle_f32x4(b[8 + c], b[12 + c], 0xEE);
    _mm512_mask_storeu_ps(dst + c * width, m, _mm512_shuffle_f32x4(u0, v0, 0x88));
    _mm512_mask_storeu_ps(dst + (4 + c) * width, m, _mm512_shuffle_f32x4(u0, v0, 0xDD));
    _mm512_mask_storeu_ps(dst + (8 + c) * width, m, _mm512_shuffle_f32x4(u1, v1, 0x88));
    _mm512_mask_storeu_ps(dst + (12 + c) * width, m, _mm512_shuffle_f32x4(u1, v1, 0xDD));
  }
}

/// The same for 8 lanes and 8 steps in 256-bit registers.
__attribute__((target("avx2"))) inline void transpose8(const float *src, int64_t lane, float *dst, int64_t width,
                                                      int64_t ahead) {
  __m256 r[8], a[8], b[8];
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm256_loadu_ps(src + i * lane);
    __builtin_prefetch(src + i * lane + ahead);
  }
  for (int i = 0; i < 8; i += 2) {
    a[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    a[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int g = 0; g < 8; g += 4) {
    b[g] = _mm256_shuffle_ps(a[g], a[g + 2], 0x44);
    b[g + 1] = _mm256_shuffle_ps(a[g], a[g + 2], 0xEE);
    b[g + 2] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0x44);
    b[g + 3] = _mm256_shuffle_ps(a[g + 1], a[g + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    _mm256_storeu_ps(dst + c * width, _mm256_permute2f128_ps(b[c], b[4 + c], 0x20));
    _mm256_storeu_ps(dst + (4 + c) * width, _mm256_permute2f128_ps(b[c], b[4 + c], 0x31));
  }
}
#endif

} // namespace detail

/// Packed copies of the parameters a caller declared unchanged. Between
/// weightCacheBegin(params) and the next Begin or End, a product whose B is
/// one of those parameters (its first element) takes B's panels from here:
/// packed by the first product that reads it with those strides and shape,
/// reused by the rest. Begin marks every copy stale (kept, repacked on next
/// use: a training step's weights change between steps, their shapes do
/// not); End frees them and stops caching. Thread-safe: concurrent entry
/// calls (mmrun's samples on parallel threads) share the copies.
struct WeightCache {
  struct Packed {
    const void *b;
    int64_t rsb, csb, k, n, elemBytes;
    Isa isa;
    uint64_t generation = 0; // the Begin it was packed under
    void *data = nullptr;
    ~Packed() { free(data); }
  };
  std::mutex mu;
  std::atomic<bool> active{false}; // read without the lock by every product
  uint64_t generation = 1;
  std::vector<const void *> params; // sorted
  std::vector<std::unique_ptr<Packed>> packed;
  int64_t bytes = 0;
  /// The most bytes of packed copies kept (each weight once per way it is
  /// read: a linear layer's forward and input gradient, twice its size).
  static constexpr int64_t kMaxBytes = int64_t(2) << 30;
};
inline WeightCache &weightCache() {
  static WeightCache cache;
  return cache;
}
inline void weightCacheBegin(const void *const *params, int64_t count) {
  WeightCache &c = weightCache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.params.assign(params, params + count);
  std::sort(c.params.begin(), c.params.end());
  c.active = true;
  ++c.generation;
}
inline void weightCacheEnd() {
  WeightCache &c = weightCache();
  std::lock_guard<std::mutex> lock(c.mu);
  c.active = false;
  c.params.clear();
  c.packed.clear();
  c.bytes = 0;
}

namespace detail {

/// Packs `lanes` (<= width) vectors of `kc` elements into one panel:
/// dst[k * width + j] = src[j * lane + k * step], zero for j >= lanes. The
/// loop order follows whichever stride is contiguous, so both a plain and a
/// transposed operand are read along cache lines.
template <typename T>
void packPanel(const T *src, int64_t lane, int64_t step, int64_t kc, int64_t lanes, int64_t width,
               T *dst, Isa isa = cpuIsa()) {
  if (lane == 1 || step != 1) {
    for (int64_t k = 0; k < kc; ++k) {
      const T *s = src + k * step;
      T *d = dst + k * width;
      int64_t j = 0;
      for (; j < lanes; ++j) d[j] = s[j * lane];
      for (; j < width; ++j) d[j] = 0;
    }
    return;
  }
  // Contiguous along k (a transposed operand: a linear layer's weight as B,
  // the rows of A): blocks of 16 lanes (AVX-512, the last one partial) or 8
  // (AVX2) transposed in registers, block by block, each block's lanes read
  // along k while the next block's lines are prefetched (a weight comes
  // from memory once per training step, and element by element its packing
  // took 16-20% of a 176-row product's time; perf, Zen 4); the rest element
  // by element.
  int64_t kv = 0, jv = 0; // steps and lanes the register transposes cover
#if defined(__x86_64__) || defined(__i386__)
  if (sizeof(T) == 4 && isa != Isa::Generic && kc >= 16) {
    const float *s = (const float *)src;
    float *d = (float *)dst;
    kv = kc / 16 * 16;
    if (isa == Isa::Avx512) {
      for (; jv < lanes; jv += 16)
        for (int64_t k0 = 0; k0 < kv; k0 += 16)
          transpose16(s + jv * lane + k0, lane, d + k0 * width + jv, width,
                      lanes - jv < 16 ? (int)(lanes - jv) : 16, 16 * lane);
      jv = lanes;
    } else {
      for (; jv + 8 <= lanes; jv += 8)
        for (int64_t k0 = 0; k0 < kv; k0 += 8)
          transpose8(s + jv * lane + k0, lane, d + k0 * width + jv, width, 8 * lane);
    }
  }
#endif
  for (int64_t j = 0; j < lanes; ++j) {
    const T *s = src + j * lane;
    for (int64_t k = j < jv ? kv : 0; k < kc; ++k) dst[k * width + j] = s[k];
  }
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t j = lanes; j < width; ++j) dst[k * width + j] = 0;
}

/// Columns [n0, n1) of kc rows (row k at src + k * rs, contiguous along n)
/// into NR-wide panels: panel p at dst + p * panelStride, element (k, j) at
/// k * NR + j; columns past n1 in the last panel zero. n0 is a multiple of NR.
template <typename T>
void packRows(const T *src, int64_t rs, int64_t kc, int64_t n0, int64_t n1, int64_t NR, T *dst,
              int64_t panelStride) {
  const int64_t full = n0 + (n1 - n0) / NR * NR;
  for (int64_t k = 0; k < kc; ++k) {
    const T *s = src + k * rs;
    __builtin_prefetch(s + rs + n0);
    for (int64_t n = n0; n < full; n += NR) memcpy(dst + (n / NR) * panelStride + k * NR, s + n, NR * sizeof(T));
    if (full < n1) {
      T *d = dst + (full / NR) * panelStride + k * NR;
      for (int64_t j = 0; j < NR; ++j) d[j] = full + j < n1 ? s[full + j] : 0;
    }
  }
}

/// B's NR-column panel jr of the k block [pc, pc + kc) within the column
/// block [jc, jc + nc): packed into dst (dst[k * NR + j]), zero past nc. The
/// driver and the weight cache pack through it, so their layouts agree.
template <typename T>
inline void packBPanel(const T *b, int64_t rsb, int64_t csb, int64_t pc, int64_t kc, int64_t jc, int64_t nc,
                       int64_t jr, int64_t NR, T *dst, Isa isa) {
  packPanel(b + pc * rsb + (jc + jr * NR) * csb, csb, rsb, kc, nc - jr * NR < NR ? nc - jr * NR : NR, NR, dst, isa);
}

/// All of B's panels from the weight cache (null when B is not a cached
/// parameter): the layout the driver packs, bBlock = kcMax * ncPad elements
/// per k block, panel jr at jr * NR * kcMax within it; packed here when stale.
template <typename T>
const T *cachedPanels(const T *b, int64_t rsb, int64_t csb, int64_t K, int64_t N, int64_t KC, int64_t kcMax,
                      int64_t ncPad, int64_t NR, Isa isa) {
  WeightCache &c = weightCache();
  if (!c.active.load(std::memory_order_relaxed)) return nullptr;
  std::lock_guard<std::mutex> lock(c.mu);
  if (!c.active || !std::binary_search(c.params.begin(), c.params.end(), (const void *)b)) return nullptr;
  const int64_t kBlocks = (K + KC - 1) / KC, panels = ncPad / NR, bBlock = kcMax * ncPad;
  WeightCache::Packed *p = nullptr;
  for (auto &e : c.packed)
    if (e->b == b && e->rsb == rsb && e->csb == csb && e->k == K && e->n == N &&
        e->elemBytes == (int64_t)sizeof(T) && e->isa == isa)
      p = e.get();
  if (!p) {
    const int64_t bytes = (kBlocks * bBlock * (int64_t)sizeof(T) + 63) / 64 * 64;
    if (c.bytes + bytes > WeightCache::kMaxBytes) return nullptr;
    auto e = std::make_unique<WeightCache::Packed>();
    e->b = b, e->rsb = rsb, e->csb = csb, e->k = K, e->n = N, e->elemBytes = (int64_t)sizeof(T), e->isa = isa;
    if (!(e->data = aligned_alloc(64, (size_t)bytes))) return nullptr;
    c.bytes += bytes;
    p = e.get();
    c.packed.push_back(std::move(e));
  }
  if (p->generation != c.generation) {
    T *dst = (T *)p->data;
#pragma omp parallel for schedule(static) if (!inParallel())
    for (int64_t i = 0; i < kBlocks * panels; ++i) {
      const int64_t kb = i / panels, jr = i % panels, pc = kb * KC, kc = K - pc < KC ? K - pc : KC;
      packBPanel(b, rsb, csb, pc, kc, 0, N, jr, NR, dst + kb * bBlock + jr * NR * kcMax, isa);
    }
    p->generation = c.generation;
  }
  return (const T *)p->data;
}

/// Dot products for few-row products whose A rows and B columns both run
/// along k (decode's x . W^T): C(m, n) for rows m < M and columns [n0, n1),
/// four columns of B at a time, each with its own vector accumulator, so
/// four independent FMA chains are in flight and each B column is read once
/// for all M rows. Every element is summed by one thread in a fixed order
/// (lane-wise partial sums over k, the lanes added pairwise, then the k tail).
#define MM_GEMM_DOTS(NAME, TARGET, W_BYTES)                                                         \
  /* The lanes of a vector added pairwise, halving it in registers. */                            \
  template <typename T, int N> struct NAME##Lanes {                                                \
    typedef T V __attribute__((vector_size(N * sizeof(T))));                                       \
  };                                                                                               \
  template <typename T>                                                                            \
  TARGET __attribute__((always_inline)) inline T NAME##Sum(typename NAME##Lanes<T, 2>::V v) {     \
    return v[0] + v[1];                                                                            \
  }                                                                                                \
  template <typename T>                                                                            \
  TARGET __attribute__((always_inline)) inline T NAME##Sum(typename NAME##Lanes<T, 4>::V v) {     \
    return NAME##Sum<T>(__builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3)); \
  }                                                                                                \
  template <typename T>                                                                            \
  TARGET __attribute__((always_inline)) inline T NAME##Sum(typename NAME##Lanes<T, 8>::V v) {     \
    return NAME##Sum<T>(__builtin_shufflevector(v, v, 0, 1, 2, 3) +                               \
                        __builtin_shufflevector(v, v, 4, 5, 6, 7));                                \
  }                                                                                                \
  template <typename T>                                                                            \
  TARGET __attribute__((always_inline)) inline T NAME##Sum(typename NAME##Lanes<T, 16>::V v) {    \
    return NAME##Sum<T>(__builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +                    \
                        __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15));              \
  }                                                                                                \
  template <typename T>                                                                            \
  TARGET __attribute__((noinline)) void NAME(int64_t M, int64_t n0, int64_t n1, int64_t K,        \
                                             const T *__restrict a, int64_t rsa,                   \
                                             const T *__restrict b, int64_t csb, T *c,             \
                                             int64_t ldc, bool accumulate) {                       \
    constexpr int W = W_BYTES / sizeof(T);                                                         \
    typedef typename NAME##Lanes<T, W>::V V;                                                       \
    typedef T VU __attribute__((vector_size(W * sizeof(T)), aligned(sizeof(T))));                 \
    const int64_t kv = K / W * W;                                                                  \
    for (int64_t n = n0; n < n1; n += 4) {                                                         \
      const int64_t nn = n1 - n < 4 ? n1 - n : 4;                                                  \
      const T *bc[4];                                                                              \
      for (int j = 0; j < 4; ++j) bc[j] = b + (n + (j < nn ? j : 0)) * csb;                        \
      for (int64_t m = 0; m < M; ++m) {                                                            \
        const T *ar = a + m * rsa;                                                                 \
        V acc[4] = {};                                                                             \
        for (int64_t k = 0; k < kv; k += W) {                                                      \
          if (W * sizeof(T) == 64 && m == 0) /* the next four columns, a line each */             \
            for (int j = 0; j < 4; ++j) __builtin_prefetch(bc[0] + (4 + j) * csb + k);             \
          const V x = *(const VU *)(ar + k);                                                       \
          for (int j = 0; j < 4; ++j) acc[j] += x * *(const VU *)(bc[j] + k);                      \
        }                                                                                          \
        for (int j = 0; j < nn; ++j) {                                                             \
          T sum = NAME##Sum<T>(acc[j]);                                                            \
          for (int64_t k = kv; k < K; ++k) sum += ar[k] * bc[j][k];                                \
          T &out = c[m * ldc + n + j];                                                             \
          out = accumulate ? out + sum : sum;                                                      \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
  }
#if defined(__x86_64__) || defined(__i386__)
MM_GEMM_DOTS(dotsAvx512, __attribute__((target("avx512f"))), 64)
MM_GEMM_DOTS(dotsAvx2, __attribute__((target("avx2,fma"))), 32)
#endif
MM_GEMM_DOTS(dotsGeneric, , 16)
#undef MM_GEMM_DOTS

template <typename T>
void runDots(Isa isa, int64_t M, int64_t n0, int64_t n1, int64_t K, const T *a, int64_t rsa, const T *b,
             int64_t csb, T *c, int64_t ldc, bool accumulate) {
#if defined(__x86_64__) || defined(__i386__)
  if (isa == Isa::Avx512) return dotsAvx512<T>(M, n0, n1, K, a, rsa, b, csb, c, ldc, accumulate);
  if (isa == Isa::Avx2) return dotsAvx2<T>(M, n0, n1, K, a, rsa, b, csb, c, ldc, accumulate);
#endif
  dotsGeneric<T>(M, n0, n1, K, a, rsa, b, csb, c, ldc, accumulate);
}

} // namespace detail

/// Small products (few rows, as in single-token decode) skip the packing,
/// which would copy all of B to use it once; the columns are split over the
/// threads. B's columns along k (x . W^T): four dot products in flight
/// (detail::runDots). B's rows along n (P . V): C rows as sums of B rows.
template <typename T>
void gemmSmall(int64_t M, int64_t N, int64_t K, const T *a, int64_t rsa, int64_t csa, const T *b,
               int64_t rsb, int64_t csb, T *c, int64_t ldc, bool accumulate, Isa isa = cpuIsa()) {
  if (csb == 1 && rsb != 1) {
    // B's rows contiguous along n (attention's P . V over the cached values
    // in decode): each C row a sum of B rows, vectorised along n, in blocks
    // of NB columns; every element still summed in k order.
    constexpr int64_t NB = 64;
#pragma omp parallel for schedule(static) if (N * K >= 32768 && !inParallel())
    for (int64_t n0 = 0; n0 < N; n0 += NB) {
      const int64_t nb = N - n0 < NB ? N - n0 : NB;
      for (int64_t m = 0; m < M; ++m) {
        T acc[NB];
        for (int64_t n = 0; n < nb; ++n) acc[n] = 0;
        for (int64_t k = 0; k < K; ++k) {
          const T av = a[m * rsa + k * csa], *br = b + k * rsb + n0;
#pragma omp simd
          for (int64_t n = 0; n < nb; ++n) acc[n] += av * br[n];
        }
        T *cr = c + m * ldc + n0;
        for (int64_t n = 0; n < nb; ++n) cr[n] = accumulate ? cr[n] + acc[n] : acc[n];
      }
    }
    return;
  }
  if (csa == 1 && rsb == 1) {
    // Both along k: blocks of columns, each block's dots four at a time.
    constexpr int64_t NB = 16;
#pragma omp parallel for schedule(static) if (N * K >= 32768 && !inParallel())
    for (int64_t n0 = 0; n0 < N; n0 += NB)
      detail::runDots(isa, M, n0, N - n0 < NB ? N : n0 + NB, K, a, rsa, b, csb, c, ldc, accumulate);
    return;
  }
#pragma omp parallel for schedule(static) if (N * K >= 32768 && !inParallel())
  for (int64_t n = 0; n < N; ++n)
    for (int64_t m = 0; m < M; ++m) {
      const T *ar = a + m * rsa, *bc = b + n * csb;
      T acc = 0;
      for (int64_t k = 0; k < K; ++k) acc += ar[k * csa] * bc[k * rsb];
      c[m * ldc + n] = accumulate ? c[m * ldc + n] + acc : acc;
    }
}

/// The epilogue of a plain product: nothing.
struct NoEpilogue {
  void operator()(int64_t, int64_t, int64_t) const {}
};

/// Any callable epilogue behind one type: the generated kernels pass
/// `epilogueRef(lambda)`, so every fused kernel shares one instantiation of
/// the GEMM driver instead of compiling its own (one indirect call per row
/// of a finished block).
struct EpilogueRef {
  void *ctx;
  void (*fn)(void *, int64_t, int64_t, int64_t);
  void operator()(int64_t m, int64_t n0, int64_t n1) const { fn(ctx, m, n0, n1); }
};
template <typename F> EpilogueRef epilogueRef(F &f) {
  return {(void *)&f, [](void *c, int64_t m, int64_t n0, int64_t n1) { (*(F *)c)(m, n0, n1); }};
}

template <typename T, typename Epilogue>
void gemm(int64_t M, int64_t N, int64_t K, const T *a, int64_t rsa, int64_t csa, const T *b,
          int64_t rsb, int64_t csb, T *c, int64_t ldc, bool accumulate, const Epilogue &ep,
          Isa isa = cpuIsa()) {
  using namespace detail;
  if (M <= 0 || N <= 0) return;
  if (K <= 0 || M < 4) {
    if (K <= 0) {
      if (!accumulate)
        for (int64_t m = 0; m < M; ++m) memset(c + m * ldc, 0, N * sizeof(T));
    } else {
      gemmSmall(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate, isa);
    }
    for (int64_t m = 0; m < M; ++m) ep(m, 0, N);
    return;
  }
  const Blocking<T> blk = blocking<T>(isa);
  const int64_t MR = blk.mr, NR = blk.nr;
  const int64_t kcMax = K < KC ? K : KC;
  const int64_t ncMax = N < NC ? N : NC;
  const int64_t ncPad = (ncMax + NR - 1) / NR * NR;
  // B is packed when its rows are not contiguous (a transposed operand such
  // as a linear layer's weight), and when it is large: read in place, the
  // KC rows of a panel lie a large, power-of-two-ish stride apart, fall into
  // a few L1 sets and come from L2 again for every MR rows of A. A is read
  // in place when its rows are contiguous along k (the microkernel walks MR
  // rows at once), unless it is large and transposed (the output gradient
  // dy^T of a weight gradient; below 2^18 elements, llava-tiny's 256-wide
  // layers, that copy costs what it saves) or its rows lie a multiple of
  // 4 KiB apart, whatever its size (K = 1024, 2048: the MR rows then share
  // one L1 set; a 65-row ViT's MLP down-projection, 65 x 256 x 1024, in a
  // training step: 0.43 -> 0.39 ms).
  const bool bigA = M * K >= (1 << 18);
  // A parameter the caller declared unchanged: all of its panels, packed once
  // (one column block: N <= NC), even where a product would read it in place
  // (a 256 x 256 weight read untransposed by an input gradient: its rows
  // 1 KiB apart thrash L1, and the copy is paid once a step).
  const T *bCached = N <= NC ? cachedPanels(b, rsb, csb, K, N, KC, kcMax, ncPad, NR, isa) : nullptr;
  const bool packB = csb != 1 || K * N >= (1 << 18) || bCached,
             packA = csa != 1 ? bigA : (rsa * (int64_t)sizeof(T)) % 4096 == 0;
  // Rows first (M >= ROWS_FIRST_M and more than one k block): B's k blocks
  // are packed KP rows at a time (all of K when the copy stays under
  // rowsFirstPackBytes), and each block of MC_ROWS rows of C is finished
  // over all of them while it sits in L2, so that C, which comes from
  // memory, is read and written once per KP rows of k instead of once per
  // KC; the B panels stream from L2 or L3 at the microkernel's full speed.
  // Else one k block at a time over all of C, its packed B reused from L2
  // by every row block (with few rows that is what pays). Either way the
  // sums keep their KC blocks, in order: the same results to the bit.
  // 1024^3 on Zen 4, one thread: 98-101 -> 105-106 GFLOP/s (BENCHMARKS.md).
  const bool rowsFirst = M >= ROWS_FIRST_M && K > KC;
  const int64_t mcStep = rowsFirst ? MC_ROWS : MC;
  const int64_t bBlock = kcMax * (packB ? ncPad : NR);
  const int64_t kBlocks = (K + KC - 1) / KC, fit = rowsFirstPackBytes / (bBlock * (int64_t)sizeof(T));
  const int64_t kpBlocks = !rowsFirst || fit < 1 ? 1 : fit < kBlocks ? fit : kBlocks;
  const int64_t KP = kpBlocks * KC;
  T *bpack = bCached ? nullptr : (T *)aligned_alloc(64, (size_t)(kpBlocks * bBlock * sizeof(T) + 64) / 64 * 64);
  // Each thread packs A's partial last panel for itself: no barrier for it.
#ifdef _OPENMP
  const int64_t maxThreads = inParallel() ? 1 : omp_get_max_threads();
#else
  const int64_t maxThreads = 1;
#endif
  const int64_t tailSize = (kcMax * MR + 15) / 16 * 16;
  T *atail = (T *)aligned_alloc(64, (size_t)(tailSize * maxThreads * sizeof(T) + 64) / 64 * 64);
  // The last row block takes up to a third more rows than mcStep rather than
  // leaving a few rows to a block of their own, which would stream every B
  // panel again for them (176 rows: one block, not 144 + 32).
  const int64_t mcLast = mcStep + mcStep / 3;
  const int64_t mcMax = M < mcLast ? M : mcLast, aBlockSize = packA ? ((mcMax / MR) * MR * kcMax + 15) / 16 * 16 : 0;
  T *ablock = packA ? (T *)aligned_alloc(64, (size_t)(aBlockSize * maxThreads * sizeof(T) + 64) / 64 * 64) : nullptr;
#pragma omp parallel if (!inParallel())
  {
#ifdef _OPENMP
    const int64_t tid = omp_get_thread_num(), nth = omp_get_num_threads();
#else
    const int64_t tid = 0, nth = 1;
#endif
    T *myTail = atail + tid * tailSize;
    T *myA = packA ? ablock + tid * aBlockSize : nullptr;
    for (int64_t jc = 0; jc < N; jc += NC) {
      const int64_t nc = N - jc < NC ? N - jc : NC, panelsB = (nc + NR - 1) / NR;
      const int64_t tailB = nc % NR ? panelsB - 1 : panelsB; // first partial panel, if any
      // With enough B panels each thread owns whole ones: it packs only what
      // it reads, and no thread ever waits for another. Else the threads
      // share the packing and split the tiles, with barriers between.
      const bool own = panelsB >= 2 * nth;
      int64_t j0 = 0, j1 = panelsB;
      if (own) threadShare(panelsB, j0, j1);
      for (int64_t p0 = 0; p0 < K; p0 += KP) {
        const int64_t p1 = K - p0 < KP ? K : p0 + KP;
        // Pack B(pc.., jc..) of every k block in [p0, p1) into panels
        // bpack[block][jr][k][j], zero past N: all of them, or only the
        // partial last one.
        for (int64_t pc = p0; pc < p1 && !bCached; pc += KC) {
          const int64_t kc = K - pc < KC ? K - pc : KC;
          T *dst = bpack + (pc - p0) / KC * bBlock;
          auto packB1 = [&](int64_t jr) {
            packBPanel(b, rsb, csb, pc, kc, jc, nc, jr, NR, dst + (packB ? jr * NR * kcMax : 0), isa);
          };
          if (own && packB && csb == 1) {
            // B's rows contiguous along n: copy this thread's panels row by
            // row, each row of B read as one run (panel by panel, every row
            // would be a fresh miss for the NR columns of one panel).
            const int64_t n0 = j0 * NR, n1 = j1 * NR < nc ? j1 * NR : nc;
            packRows(b + pc * rsb + jc, rsb, kc, n0, n1, NR, dst, NR * kcMax);
          } else if (own) {
            for (int64_t jr = packB ? j0 : (tailB > j0 ? tailB : j0); jr < j1; ++jr) packB1(jr);
          } else {
#pragma omp for schedule(static)
            for (int64_t jr = packB ? 0 : tailB; jr < panelsB; ++jr) packB1(jr);
          }
        }
        for (int64_t ic = 0, mc = 0; ic < M; ic += mc) {
          mc = M - ic <= mcLast ? M - ic : mcStep;
          const int64_t panelsA = (mc + MR - 1) / MR;
          for (int64_t pc = p0; pc < p1; pc += KC) {
            const int64_t kc = K - pc < KC ? K - pc : KC;
            const T *bk = bCached ? bCached + pc / KC * bBlock : bpack + (pc - p0) / KC * bBlock;
            // A's partial last panel, packed and zero-padded: aTail[k][i].
            if (mc % MR)
              packPanel(a + (ic + (panelsA - 1) * MR) * rsa + pc * csa, rsa, csa, kc, mc % MR, MR, myTail, isa);
            // A's full panels when packed (transposed, or rows 4 KiB apart),
            // each thread its own copy (no barrier).
            if (packA)
              for (int64_t ir = 0; ir < mc / MR; ++ir)
                packPanel(a + (ic + ir * MR) * rsa + pc * csa, rsa, csa, kc, MR, MR, myA + ir * MR * kc, isa);
            Block<T> g{kc,    mc,         nc,       ldc,   kcMax, accumulate || pc > 0,
                       a + ic * rsa + pc * csa,   rsa,      csa,   myA,   myTail,
                       b + pc * rsb + jc * csb,   rsb,
                       packB ? bk : nullptr,      packB ? bk + tailB * NR * kcMax : bk,
                       c + ic * ldc + jc};
            int64_t first = j0 * panelsA, last = j1 * panelsA;
            if (!own) threadShare(panelsA * panelsB, first, last);
            runTiles<T>(isa, g, first, last);
            if (!own) {
#pragma omp barrier
            }
            if (pc + kc >= K) {
              // The block is final: the epilogue over this thread's columns
              // (its own panels) or rows (shared tiles, after the barrier).
              if (own) {
                const int64_t n0 = jc + j0 * NR, n1 = jc + (j1 * NR < nc ? j1 * NR : nc);
                if (n0 < n1)
                  for (int64_t m = ic; m < ic + mc; ++m) ep(m, n0, n1);
              } else {
                int64_t r0, r1;
                threadShare(mc, r0, r1);
                for (int64_t m = ic + r0; m < ic + r1; ++m) ep(m, jc, jc + nc);
              }
            }
          }
        }
      }
    }
  }
  free(ablock);
  free(atail);
  free(bpack);
}

template <typename T>
void gemm(int64_t M, int64_t N, int64_t K, const T *a, int64_t rsa, int64_t csa, const T *b,
          int64_t rsb, int64_t csb, T *c, int64_t ldc, bool accumulate, Isa isa = cpuIsa()) {
  gemm(M, N, K, a, rsa, csa, b, rsb, csb, c, ldc, accumulate, NoEpilogue{}, isa);
}

} // namespace mm_cpu

#endif // MM_CPU_GEMM_H
