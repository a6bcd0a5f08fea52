// RUN: mmc compile %s --emit=cpp | FileCheck %s
// RUN: mmc compile %s --target cuda --emit=cuda | FileCheck %s --check-prefix=CUDA

// COM: Each mask kind reaches the generated attention kernel as its condition,
// COM: with the first layout segment's length (here 2) baked in; the run-time
// COM: length masks keys only where the op has the length operand.
// COM: The CPU kernel works on strips of query rows and masks the strip's
// COM: scores; causal masks also bound the keys a strip computes at all.
// CHECK-LABEL: static void k0_attention
// CHECK: const int64_t nk = false ?
// CHECK: row[kj] = ((qi < 2 ? kj < 2 : (kj < 2 || kj <= qi))) ? row[kj] * (T)1.0 : -INFINITY;
// CHECK-LABEL: static void k1_attention
// CHECK: row[kj] = (((qi < 2) == (kj < 2))) ? row[kj] * (T)1.0 : -INFINITY;
// CHECK-LABEL: static void k2_attention
// CHECK: const int64_t len = (int64_t)length[0] < 4 ? (int64_t)length[0] : 4
// CHECK: const int64_t nk = true ? (q0 + nq < len ? q0 + nq : len) : len;
// CHECK: row[kj] = (kj < len && kj <= qi) ? row[kj] * (T)1.0 : -INFINITY;
// CHECK-LABEL: static void k3_attention
// CHECK: const int64_t len = 4 < 4 ? 4 : 4
// CHECK: row[kj] = (true) ? row[kj] * (T)1.0 : -INFINITY;

// COM: The CUDA kernel keeps one query row per thread and skips masked keys.
// CUDA-LABEL: __global__ void k0_attention
// CUDA: if (!((qi < 2 ? kj < 2 : (kj < 2 || kj <= qi)))) continue;
// CUDA-LABEL: __global__ void k1_attention
// CUDA: if (!(((qi < 2) == (kj < 2)))) continue;
// CUDA-LABEL: __global__ void k2_attention
// CUDA: const int64_t len = (int64_t)length[0];
// CUDA: if (!(kj < len && kj <= qi)) continue;
// CUDA-LABEL: __global__ void k3_attention
// CUDA: const int64_t len = 4;
// CUDA: if (!(true)) continue;

// COM: A length per batch row ([B] i32): each strip (CPU) or query row (CUDA)
// COM: reads its own row's count.
// CHECK-LABEL: static void k4_attention
// CHECK: b = item / (nqb * 1)
// CHECK: const int64_t len = (int64_t)length[b] < 4 ? (int64_t)length[b] : 4;
// CHECK: row[kj] = (kj < len && ((qi < 2) == (kj < 2))) ? row[kj] * (T)1.0 : -INFINITY;
// CUDA-LABEL: __global__ void k4_attention
// CUDA: b = i / (4 * 1);
// CUDA: const int64_t len = (int64_t)length[b];
// CUDA: if (!(kj < len && ((qi < 2) == (kj < 2)))) continue;
mm.model @masks {
  mm.entry @f(%x: tensor<1x4x8xf32>, %len: tensor<i32>) -> tensor<1x4x8xf32> {
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %b = mm.attention %a, %a, %a {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %c = mm.attention %b, %b, %b, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    %d = mm.attention %c, %c, %c {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %d : tensor<1x4x8xf32>
  }  mm.entry @rows(%x: tensor<2x4x8xf32>, %len: tensor<2xi32>) -> tensor<2x4x8xf32> {
    %a = mm.attention %x, %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
    mm.return %a : tensor<2x4x8xf32>
  }
}
