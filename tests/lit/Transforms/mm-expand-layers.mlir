// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-expand-layers))' | FileCheck %s

// COM: Two applications of a 3-instance layer: instances 0..1 chained, then
// COM: instance 2; each instance reads its own renamed parameter, and every
// COM: instance's parameter becomes top-level at the layer's place.
// CHECK-LABEL: mm.model @chain
// CHECK: mm.param @first
// CHECK-NEXT: mm.param @layers.0.ln.weight
// CHECK-NEXT: mm.param @layers.1.ln.weight
// CHECK-NEXT: mm.param @layers.2.ln.weight
// CHECK-NEXT: mm.param @last
// CHECK-NOT: mm.layer
// CHECK: mm.entry @forward(%[[X:.*]]: tensor<1x4x8xf32>)
// CHECK: %[[W0:.*]] = mm.weight @layers.0.ln.weight
// CHECK: %[[Y0:.*]] = mm.rms_norm %[[X]], %[[W0]]
// CHECK: %[[W1:.*]] = mm.weight @layers.1.ln.weight
// CHECK: %[[Y1:.*]] = mm.rms_norm %[[Y0]], %[[W1]]
// CHECK: %[[W2:.*]] = mm.weight @layers.2.ln.weight
// CHECK: %[[Y2:.*]] = mm.rms_norm %[[Y1]], %[[W2]]
// CHECK: mm.return %[[Y2]]
mm.model @chain {
  mm.group @g
  mm.param @"first" : tensor<8xf32> group @g init #mm.init<ones>
  mm.layer @block(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> attributes {count = 3 : i64, prefix = "layers"} {
    mm.param @"ln.weight" : tensor<8xf32> group @g init #mm.init<ones>
    %w = mm.weight @"ln.weight" : tensor<8xf32>
    %y = mm.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
    mm.yield %y : tensor<1x4x8xf32>
  }
  mm.param @"last" : tensor<8xf32> group @g init #mm.init<ones>
  mm.entry @forward(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    %a = mm.apply_layer @block from 0 to 2 (%x) : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %b = mm.apply_layer @block from 2 to 3 (%a) : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %b : tensor<1x4x8xf32>
  }
}

// -----

// COM: Context arguments (here the run-time length) reach every instance unchanged.
// CHECK-LABEL: mm.model @context
// CHECK: mm.entry @forward(%[[X:.*]]: tensor<1x4x8xf32>, %[[LEN:.*]]: tensor<i32>)
// CHECK: %[[A0:.*]] = mm.attention %[[X]], %[[X]], %[[X]], %[[LEN]]
// CHECK: %[[A1:.*]] = mm.attention %[[A0]], %[[A0]], %[[A0]], %[[LEN]]
// CHECK: mm.return %[[A1]]
mm.model @context {
  mm.layer @attn(%x: tensor<1x4x8xf32>, %len: tensor<i32>) -> tensor<1x4x8xf32> attributes {count = 2 : i64, prefix = "layers"} {
    %a = mm.attention %x, %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    mm.yield %a : tensor<1x4x8xf32>
  }
  mm.entry @forward(%x: tensor<1x4x8xf32>, %len: tensor<i32>) -> tensor<1x4x8xf32> {
    %y = mm.apply_layer @attn from 0 to 2 (%x, %len) : (tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

// COM: LLaVA skips the last CLIP layer; its parameters must still exist (they are in the checkpoint).
// CHECK-LABEL: mm.model @unused_instance
// CHECK: mm.param @layers.0.w
// CHECK: mm.param @layers.1.w
// CHECK: mm.weight @layers.0.w
// CHECK-NOT: mm.weight @layers.1.w
mm.model @unused_instance {
  mm.group @g
  mm.layer @block(%x: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, prefix = "layers"} {
    mm.param @"w" : tensor<8xf32> group @g init #mm.init<ones>
    %w = mm.weight @"w" : tensor<8xf32>
    %y = mm.add %x, %w : tensor<8xf32>
    mm.yield %y : tensor<8xf32>
  }
  mm.entry @forward(%x: tensor<8xf32>) -> tensor<8xf32> {
    %y = mm.apply_layer @block from 0 to 1 (%x) : (tensor<8xf32>) -> tensor<8xf32>
    mm.return %y : tensor<8xf32>
  }
}
