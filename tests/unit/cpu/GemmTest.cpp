//===- GemmTest.cpp - the packed CPU GEMM against a plain triple loop ------===//
//
// runtime/include/mm/cpu/Gemm.h is what the generated linear and attention
// kernels call. Every instruction-set path this processor runs is checked,
// in float and double, over shapes that cross every cache block (KC=256,
// MC=144, a last row block of up to 192) and end in partial register tiles
// (each of the narrower tail kernels), for all four transpositions,
// with and without accumulation; results must not depend on the thread
// count; and an epilogue sees every finished element once.
//
//===----------------------------------------------------------------------===//
#include "mm/cpu/Gemm.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <cmath>
#include <random>
#include <vector>

namespace {

using mm_cpu::Isa;

bool supported(Isa isa) { return (int)isa <= (int)mm_cpu::detectIsa(); }

struct Shape {
  int64_t m, n, k;
};
const Shape kShapes[] = {{1, 7, 5},    {3, 40, 33},  {4, 16, 8},   {6, 16, 1},  {7, 17, 300},
                         // fewer than 4 rows (decode): dot products, four columns at a time,
                         // partial column groups and k tails; the last split over the threads
                         {2, 37, 77},  {1, 700, 256},
                         {13, 35, 64}, {150, 70, 9}, {300, 33, 600}, {65, 520, 40},
                         // past 2^18 elements of A and of B: both packed whatever their layout
                         {200, 300, 1400},
                         // rows of A 4 KiB apart (K = 1024): A packed even when not transposed
                         {260, 45, 1024},
                         // the last row block a third longer than MC (144 + 186 rows), A packed
                         {330, 40, 1024},
                         // M >= 512 and several k blocks: C finished rows first
                         {520, 60, 1100}};

template <typename T> void checkAll(Isa isa) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(-1, 1);
  for (const Shape &s : kShapes)
    for (int transA = 0; transA < 2; ++transA)
      for (int transB = 0; transB < 2; ++transB)
        for (int accumulate = 0; accumulate < 2; ++accumulate) {
          SCOPED_TRACE(testing::Message() << s.m << "x" << s.n << "x" << s.k << " transA " << transA
                                          << " transB " << transB << " accumulate " << accumulate);
          std::vector<T> a(s.m * s.k), b(s.k * s.n), c(s.m * (s.n + 3));
          for (T &x : a) x = (T)u(rng);
          for (T &x : b) x = (T)u(rng);
          for (T &x : c) x = (T)u(rng);
          const std::vector<T> before = c;
          const int64_t rsa = transA ? 1 : s.k, csa = transA ? s.m : 1;
          const int64_t rsb = transB ? 1 : s.n, csb = transB ? s.k : 1;
          const int64_t ldc = s.n + 3; // a row stride wider than N: columns past N stay untouched
          mm_cpu::gemm<T>(s.m, s.n, s.k, a.data(), rsa, csa, b.data(), rsb, csb, c.data(), ldc,
                          accumulate, isa);
          for (int64_t m = 0; m < s.m; ++m)
            for (int64_t n = 0; n < ldc; ++n) {
              const T got = c[m * ldc + n];
              if (n >= s.n) {
                ASSERT_EQ(got, before[m * ldc + n]) << "wrote past N at " << m << "," << n;
                continue;
              }
              double want = accumulate ? (double)before[m * ldc + n] : 0, mag = std::fabs(want);
              for (int64_t k = 0; k < s.k; ++k) {
                const double p = (double)a[m * rsa + k * csa] * (double)b[k * rsb + n * csb];
                want += p;
                mag += std::fabs(p);
              }
              const double tol = (sizeof(T) == 4 ? 2e-6 : 1e-14) * (mag + 1);
              // Written so that NaN fails.
              ASSERT_TRUE(std::fabs(got - want) <= tol) << "C(" << m << "," << n << ") = " << got
                                                        << ", reference " << want;
            }
        }
}

class Gemm : public testing::TestWithParam<Isa> {
protected:
  void SetUp() override {
    if (!supported(GetParam()))
      GTEST_SKIP() << "this processor has no " << mm_cpu::isaName(GetParam());
  }
};

TEST_P(Gemm, FloatMatchesTripleLoop) { checkAll<float>(GetParam()); }
TEST_P(Gemm, DoubleMatchesTripleLoop) { checkAll<double>(GetParam()); }

TEST_P(Gemm, ResultsDoNotDependOnTheThreadCount) {
  const int64_t M = 200, N = 150, K = 700;
  std::mt19937 rng(3);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(M * K), b(K * N), one(M * N), two(M * N);
  for (float &x : a) x = u(rng);
  for (float &x : b) x = u(rng);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  mm_cpu::gemm<float>(M, N, K, a.data(), K, 1, b.data(), 1, K, one.data(), N, false, GetParam());
  omp_set_num_threads(3);
  mm_cpu::gemm<float>(M, N, K, a.data(), K, 1, b.data(), 1, K, two.data(), N, false, GetParam());
  omp_set_num_threads(saved);
  EXPECT_EQ(one, two);
}

// Finishing C rows first (M >= 512, several k blocks; packed B held whole or
// in passes of a few k blocks) keeps every sum's order: the same bits as the
// k-block-at-a-time order that products of fewer rows take (here the same
// product as two calls of 260 rows), on one thread and on three.
TEST_P(Gemm, RowsFirstOrderGivesTheSameBits) {
  const int64_t M = 520, N = 60, K = 1100, half = M / 2;
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> a(M * K), b(K * N), halves(M * N);
  for (float &x : a) x = u(rng);
  for (float &x : b) x = u(rng);
  for (int64_t r : {(int64_t)0, half})
    mm_cpu::gemm<float>(half, N, K, a.data() + r * K, K, 1, b.data(), 1, K, halves.data() + r * N, N, false,
                        GetParam());
  const int saved = omp_get_max_threads();
  const int64_t savedBytes = mm_cpu::detail::rowsFirstPackBytes;
  // 5 k blocks of 256 x 64 floats (64 KiB each): all at once, or 2 + 2 + 1
  for (int64_t bytes : {savedBytes, (int64_t)128 << 10})
    for (int threads : {1, 3}) {
      SCOPED_TRACE(testing::Message() << bytes << " bytes of packed B, " << threads << " threads");
      mm_cpu::detail::rowsFirstPackBytes = bytes;
      omp_set_num_threads(threads);
      std::vector<float> whole(M * N);
      mm_cpu::gemm<float>(M, N, K, a.data(), K, 1, b.data(), 1, K, whole.data(), N, false, GetParam());
      EXPECT_EQ(whole, halves);
    }
  mm_cpu::detail::rowsFirstPackBytes = savedBytes;
  omp_set_num_threads(saved);
}

// A B declared unchanged (weightCacheBegin) is packed once and read from the
// copy: the same bits as packing it per call, for a linear layer's forward
// (B = W^T, transposed) and input gradient (B = W, rows along n), across
// several k blocks and a partial last panel, on one thread and on three, and
// in the rows-first order. After B changes in place (an optimizer step) and
// Begin is called again, the product follows the new B; a B that is not
// declared is not cached; End frees the copies.
TEST_P(Gemm, CachedWeightsGiveTheSameBitsAndFollowChanges) {
  // W[N, K]: k blocks of 256 (three and two), N % 16 and N % 32 != 0, K * N past
  // 2^18 (B with rows along n is packed only from there)
  const int64_t K = 600, N = 500;
  std::mt19937 rng(13);
  std::uniform_real_distribution<float> u(-1, 1);
  std::vector<float> w(N * K), other(N * K);
  for (float &x : w) x = u(rng);
  for (float &x : other) x = u(rng);
  struct Layout {
    const char *name;
    int64_t k, n, rsb, csb; // C[M, n] = A[M, k] . B[k, n], B read from w
  };
  const Layout layouts[] = {{"forward x . W^T", K, N, 1, K}, {"input gradient dy . W", N, K, K, 1}};
  const void *both[] = {other.data(), w.data()}, *onlyOther[] = {other.data()};
  const int saved = omp_get_max_threads();
  for (const Layout &l : layouts)
    for (int64_t M : {(int64_t)150, (int64_t)530}) // 530 rows: the rows-first order
      for (int threads : {1, 3}) {
        SCOPED_TRACE(testing::Message() << l.name << ", " << M << " rows, " << threads << " threads");
        omp_set_num_threads(threads);
        std::vector<float> a(M * l.k);
        for (float &x : a) x = u(rng);
        auto product = [&] {
          std::vector<float> c(M * l.n);
          mm_cpu::gemm<float>(M, l.n, l.k, a.data(), l.k, 1, w.data(), l.rsb, l.csb, c.data(), l.n, false,
                              GetParam());
          return c;
        };
        const std::vector<float> plain = product();
        mm_cpu::weightCacheBegin(both, 2);
        EXPECT_EQ(product(), plain); // packs the copy
        EXPECT_GT(mm_cpu::weightCache().bytes, 0);
        EXPECT_EQ(product(), plain); // reads it
        for (float &x : w) x *= 0.5f;
        mm_cpu::weightCacheBegin(both, 2); // w changed: its copy is stale
        const std::vector<float> halved = product();
        mm_cpu::weightCacheEnd();
        EXPECT_EQ(mm_cpu::weightCache().bytes, 0);
        EXPECT_EQ(halved, product());
        EXPECT_NE(halved, plain);
        for (float &x : w) x *= 2.0f;
        mm_cpu::weightCacheBegin(onlyOther, 1);
        EXPECT_EQ(product(), plain);
        EXPECT_EQ(mm_cpu::weightCache().bytes, 0); // w not declared: nothing packed
        mm_cpu::weightCacheEnd();
      }
  omp_set_num_threads(saved);
}

// The epilogue sees every element of C exactly once, after its last update:
// C(m,n) -> 2 C(m,n) + m - n must equal the plain product followed by that
// loop, with one thread and with three (the shared-tile path: few panels),
// for small products (M < 4), one panel per thread and several K blocks.
TEST_P(Gemm, EpilogueSeesEveryFinishedElementOnce) {
  const Shape shapes[] = {{2, 9, 5}, {150, 70, 300}, {40, 8, 20}, {13, 700, 64}, {520, 60, 1100}};
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1, 1);
  const int saved = omp_get_max_threads();
  for (int threads : {1, 3})
    for (const Shape &s : shapes) {
      SCOPED_TRACE(testing::Message() << s.m << "x" << s.n << "x" << s.k << ", " << threads << " threads");
      omp_set_num_threads(threads);
      std::vector<float> a(s.m * s.k), b(s.k * s.n), plain(s.m * s.n), fused(s.m * s.n);
      std::vector<int> calls(s.m * s.n, 0);
      for (float &x : a) x = u(rng);
      for (float &x : b) x = u(rng);
      mm_cpu::gemm<float>(s.m, s.n, s.k, a.data(), s.k, 1, b.data(), 1, s.k, plain.data(), s.n, false, GetParam());
      float *c = fused.data();
      int *seen = calls.data();
      const int64_t N = s.n;
      mm_cpu::gemm<float>(s.m, s.n, s.k, a.data(), s.k, 1, b.data(), 1, s.k, c, N, false,
                          [&](int64_t m, int64_t n0, int64_t n1) {
                            for (int64_t n = n0; n < n1; ++n) {
                              c[m * N + n] = 2 * c[m * N + n] + (float)(m - n);
                              ++seen[m * N + n];
                            }
                          },
                          GetParam());
      for (int64_t i = 0; i < s.m * s.n; ++i) {
        ASSERT_EQ(calls[i], 1) << "element " << i;
        const float want = 2 * plain[i] + (float)(i / s.n - i % s.n);
        ASSERT_TRUE(std::fabs(fused[i] - want) <= 1e-5f * (std::fabs(want) + 1)) << "element " << i;
      }
    }
  omp_set_num_threads(saved);
}

INSTANTIATE_TEST_SUITE_P(EveryIsa, Gemm, testing::Values(Isa::Generic, Isa::Avx2, Isa::Avx512),
                         [](const testing::TestParamInfo<Isa> &i) {
                           return std::string(mm_cpu::isaName(i.param));
                         });

TEST(GemmIsa, DetectedIsaIsOneTheProcessorRuns) {
  // MM_CPU_ISA can only lower the choice, never raise it past the processor.
  EXPECT_LE((int)mm_cpu::cpuIsa(), (int)mm_cpu::detectIsa());
}

} // namespace
