// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-bound-rows))' | FileCheck %s
// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-bound-rows{report=true}))' -o /dev/null 2>&1 | FileCheck %s --check-prefix=REMARK

// COM: A causal LM loss over 8 positions, its attention bounded by %len
// COM: (argument #2). Every product over the sequence, forward and backward,
// COM: and the loss with its gradient, stop at the length: they carry
// COM: mm.rows = 2, in the loss entry as in its training step, so that both
// COM: compute the same loss. The other row-wise ops (the norm) compute every row.
// CHECK-LABEL: mm.model @lm
// CHECK-LABEL: mm.entry @loss
// CHECK: mm.linear {{.*}} {mm.rows = 2 : i64}
// CHECK: mm.cross_entropy {{.*}}mm.rows = 2 : i64
// CHECK-LABEL: mm.entry @train_s
// CHECK-NOT: mm.rms_norm{{.*}}mm.rows
// CHECK: mm.linear {{.*}} {mm.rows = 2 : i64}
// CHECK: mm.attention
// CHECK: mm.linear {{.*}} {mm.rows = 2 : i64}
// CHECK: mm.cross_entropy {{.*}}mm.rows = 2 : i64
// CHECK: mm.cross_entropy_grad {{.*}}mm.rows = 2 : i64
// CHECK-DAG: mm.linear_grad_weight {{.*}} {mm.rows = 2 : i64}
// CHECK-DAG: mm.linear_grad_input {{.*}} {mm.rows = 2 : i64}
// REMARK: remark: rows bounded by argument #2
mm.model @lm {
  mm.group @g
  mm.param @"e" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"n" : tensor<16xf32> group @g init #mm.init<ones>
  mm.param @"wq" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"wo" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%ids: tensor<1x8xi32>, %t: tensor<1x8xi32>, %len: tensor<i32>) -> tensor<f32> {
    %e = mm.weight @"e" : tensor<32x16xf32>
    %x = mm.embedding %ids, %e : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
    %n = mm.weight @"n" : tensor<16xf32>
    %h = mm.rms_norm %x, %n {eps = 1.0e-06 : f64} : (tensor<1x8x16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    %wq = mm.weight @"wq" : tensor<16x16xf32>
    %q = mm.linear %h, %wq : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %a = mm.attention %q, %h, %h, %len {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    %wo = mm.weight @"wo" : tensor<32x16xf32>
    %l = mm.linear %a, %wo : (tensor<1x8x16xf32>, tensor<32x16xf32>) -> tensor<1x8x32xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<1x8x32xf32>, tensor<1x8xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: Attention over the sequence that no length bounds (every key read):
// COM: rows past any length reach every query, so nothing is bounded.
// CHECK-LABEL: mm.model @unbounded_attention
// CHECK-NOT: mm.rows
// REMARK: remark: rows not bounded: attention over the sequence is not bounded by its length
mm.model @unbounded_attention {
  mm.group @g
  mm.param @"wq" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%x: tensor<1x8x16xf32>, %t: tensor<1x8xi32>, %len: tensor<i32>) -> tensor<f32> {
    %wq = mm.weight @"wq" : tensor<16x16xf32>
    %q = mm.linear %x, %wq : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %a = mm.attention %q, %x, %x, %len {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    %b = mm.attention %a, %a, %a {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
    %loss = mm.cross_entropy %b, %t : (tensor<1x8x16xf32>, tensor<1x8xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: A slice along the positions moves row r + 1 to row r: a padded row
// COM: would reach the last real one, so the entry is left as it is.
// CHECK-LABEL: mm.model @pooled
// CHECK-NOT: mm.rows
// REMARK: remark: rows not bounded: 'mm.slice' may mix the sequence's rows
mm.model @pooled {
  mm.group @g
  mm.param @"wq" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%x: tensor<1x8x16xf32>, %t: tensor<1x7xi32>, %len: tensor<i32>) -> tensor<f32> {
    %wq = mm.weight @"wq" : tensor<16x16xf32>
    %q = mm.linear %x, %wq : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %a = mm.attention %q, %x, %x, %len {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    %p = mm.slice %a {axis = 1 : i64, start = 1 : i64} : (tensor<1x8x16xf32>) -> tensor<1x7x16xf32>
    %loss = mm.cross_entropy %p, %t : (tensor<1x7x16xf32>, tensor<1x7xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: LLaVA's merge: the image features' rows are patches, not positions,
// COM: even when they number as many as the positions (8 here). The
// COM: projector and its weight gradient (from the gather of the image
// COM: positions' gradients) compute every patch; the LM after the merge
// COM: stops at the length.
// CHECK-LABEL: mm.model @merge_same_length
// CHECK-LABEL: mm.entry @train_s
// CHECK: mm.linear %arg1, %{{[0-9]+}} : (tensor<1x8x16xf32>
// CHECK: mm.merge_image_features
// CHECK: mm.linear {{.*}} {mm.rows = 3 : i64}
// CHECK: mm.gather_image_features
// CHECK: mm.linear_grad_weight %{{[0-9]+}}, %arg1 : (tensor<1x8x16xf32>
mm.model @merge_same_length {
  mm.group @g
  mm.param @"e" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"wp" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"wq" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"wo" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%ids: tensor<1x8xi32>, %img: tensor<1x8x16xf32>, %t: tensor<1x8xi32>, %len: tensor<i32>) -> tensor<f32> {
    %wp = mm.weight @"wp" : tensor<16x16xf32>
    %f = mm.linear %img, %wp : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %e = mm.weight @"e" : tensor<32x16xf32>
    %x = mm.embedding %ids, %e : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
    %m = mm.merge_image_features %x, %ids, %f {image_token_index = 4 : i64} : (tensor<1x8x16xf32>, tensor<1x8xi32>, tensor<1x8x16xf32>) -> tensor<1x8x16xf32>
    %wq = mm.weight @"wq" : tensor<16x16xf32>
    %q = mm.linear %m, %wq : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %a = mm.attention %q, %m, %m, %len {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    %wo = mm.weight @"wo" : tensor<32x16xf32>
    %l = mm.linear %a, %wo : (tensor<1x8x16xf32>, tensor<32x16xf32>) -> tensor<1x8x32xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<1x8x32xf32>, tensor<1x8xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: A forward entry returning the sequence (logits) is bounded too: its
// COM: rows past the length are zeros that no caller reads.
// CHECK-LABEL: mm.model @returns_logits
// CHECK: mm.linear {{.*}} {mm.rows = 1 : i64}
// REMARK: remark: rows bounded by argument #1
mm.model @returns_logits {
  mm.group @g
  mm.param @"wq" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.entry @forward(%x: tensor<1x8x16xf32>, %len: tensor<i32>) -> tensor<1x8x16xf32> {
    %wq = mm.weight @"wq" : tensor<16x16xf32>
    %q = mm.linear %x, %wq : (tensor<1x8x16xf32>, tensor<16x16xf32>) -> tensor<1x8x16xf32>
    %a = mm.attention %q, %x, %x, %len {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.25 : f64} : (tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    mm.return %a : tensor<1x8x16xf32>
  }
}
