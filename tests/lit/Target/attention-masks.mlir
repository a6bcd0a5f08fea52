// RUN: mmc compile %s --emit=cpp | FileCheck %s

// COM: Each mask kind reaches the generated attention kernel as its condition,
// COM: with the first layout segment's length (here 2) baked in; the run-time
// COM: length masks keys only where the op has the length operand.
// CHECK: k0_attention
// CHECK: if (!((qi < 2 ? kj < 2 : (kj < 2 || kj <= qi)))) continue;
// CHECK: k1_attention
// CHECK: if (!(((qi < 2) == (kj < 2)))) continue;
// CHECK: k2_attention
// CHECK: const int64_t len = (int64_t)length[0];
// CHECK: if (!(kj < len && kj <= qi)) continue;
// CHECK: k3_attention
// CHECK: const int64_t len = 4;
// CHECK: if (!(true)) continue;
mm.model @masks {
  mm.entry @f(%x: tensor<1x4x8xf32>, %len: tensor<i32>) -> tensor<1x4x8xf32> {
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %b = mm.attention %a, %a, %a {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %c = mm.attention %b, %b, %b, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    %d = mm.attention %c, %c, %c {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %d : tensor<1x4x8xf32>
  }
}
