// RUN: mmc compile %s --no-fuse --emit=cpp | FileCheck %s
// RUN: mmc compile %s --emit=cpp | FileCheck %s --check-prefix=FUSED
// RUN: mmc compile %s --no-fuse --target cuda --emit=cuda | FileCheck %s --check-prefix=CUDA

// COM: Identical ops (same op, shapes, attributes) share one kernel; shapes are
// COM: baked in as constants; parameters, arguments and arena buffers are
// COM: addressed from the entry's tables; the op computing the result writes
// COM: it into the caller's buffer.
// CHECK: // mm.linear: x[2,8] w[4,8] b[4] -> y[2,4]
// CHECK-NEXT: static void k0_linear(const float * __restrict x, const float * __restrict w, const float * __restrict b, float * __restrict y) {
// CHECK-NEXT:   typedef float T;
// COM: On the CPU a linear op is the packed GEMM of x . w^T (w read
// COM: transposed through strides); its epilogue adds the bias to each
// COM: finished block of y.
// CHECK-NEXT:   auto epilogue = [&](int64_t m, int64_t n0, int64_t n1) {
// CHECK:          const T v = acc + b[n];
// CHECK:        mm_cpu::gemm<T>(2, 4, 8, x, 8, 1, w, 1, 8, y, 4, false, mm_cpu::epilogueRef(epilogue));
// CHECK: static void k1_silu(
// CHECK-NOT: k2_linear
// CHECK: static int entry_forward(
// CHECK-NEXT: char *arena = (char *)workspace;
// COM: Every call is wrapped in the profiler's tick/tock (MM_PROFILE=1:
// COM: EmitCommon.h), one branch each when it is off.
// CHECK: const int prof = mm_profiling();
// CHECK: long long t0;
// CHECK-NEXT: t0 = mm_tick(prof);
// CHECK-NEXT: k0_linear((const float *)args[0], (const float *)params[0], (const float *)params[1], (float *)(arena + 0));
// CHECK-NEXT: mm_tock(prof, 0, t0);
// CHECK-NEXT: t0 = mm_tick(prof);
// CHECK-NEXT: k1_silu((const float *)(arena + 0), (float *)(arena + 64));
// CHECK-NEXT: mm_tock(prof, 1, t0);
// CHECK-NEXT: t0 = mm_tick(prof);
// CHECK-NEXT: k0_linear((const float *)args[0], (const float *)params[0], (const float *)params[1], (float *)(arena + 0));
// CHECK-NEXT: mm_tock(prof, 0, t0);
// CHECK-NEXT: t0 = mm_tick(prof);
// CHECK-NEXT: k2_mul((const float *)(arena + 64), (const float *)(arena + 0), (float *)results[0]);
// CHECK-NEXT: mm_tock(prof, 2, t0);
// CHECK-NOT: memcpy
// CHECK: static int entry_twice(
// COM: A value returned twice is copied from the first result buffer; an
// COM: argument returned as it is, from the argument.
// CHECK: k3_relu((const float *)args[0], (float *)results[0]);
// CHECK: memcpy(results[1], (const float *)results[0], 32);
// CHECK-NEXT: memcpy(results[2], (const float *)args[0], 32);
// CHECK: static const mm_entry_desc kEntries[] = {
// CHECK-NEXT: {"forward", entry_forward, 128ull, 1, 1},
// CHECK-NEXT: {"twice", entry_twice, 0ull, 1, 3},
// CHECK: extern "C" __attribute__((visibility("default"))) const mm_model_desc *mm_model_v1(void)

// COM: Fused (the default), the first linear's silu joins its epilogue; the
// COM: second linear, read by the mul, keeps its own kernel.
// FUSED: // mm.fused_linear: x[2,8] w[4,8] b[4] -> y[2,4]
// FUSED-NEXT: static void k0_fused_linear(
// FUSED: const T z = v / (1 + exp(-v));
// FUSED: k0_fused_linear((const float *)args[0]
// FUSED: k1_linear((const float *)args[0]
// FUSED: k2_mul(

// CUDA: __global__ void k0_linear(const float * __restrict__ x
// CUDA: for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < 8; i += (int64_t)blockDim.x * gridDim.x) {
// CUDA: for (int64_t k = 0; k < 8; ++k) acc += xr[k] * wr[k];
// CUDA: k0_linear<<<mm_blocks(8), 256>>>(
// CUDA-NEXT: if (mm_check(cudaGetLastError(), "k0_linear")) return 1;
// CUDA: cudaMemcpyDeviceToDevice
// CUDA: static const mm_device_ops kDevice
mm.model @tiny {
  mm.group @g
  mm.param @"w" : tensor<4x8xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"b" : tensor<4xf32> group @g init #mm.init<zeros>
  mm.entry @forward(%x: tensor<2x8xf32>) -> tensor<2x4xf32> {
    %w = mm.weight @"w" : tensor<4x8xf32>
    %b = mm.weight @"b" : tensor<4xf32>
    %y = mm.linear %x, %w, %b : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %s = mm.silu %y : tensor<2x4xf32>
    %z = mm.linear %x, %w, %b : (tensor<2x8xf32>, tensor<4x8xf32>, tensor<4xf32>) -> tensor<2x4xf32>
    %o = mm.mul %s, %z : tensor<2x4xf32>
    mm.return %o : tensor<2x4xf32>
  }
  mm.entry @twice(%x: tensor<2x4xf32>) -> (tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>) {
    %r = mm.relu %x : tensor<2x4xf32>
    mm.return %r, %r, %x : tensor<2x4xf32>, tensor<2x4xf32>, tensor<2x4xf32>
  }
}
