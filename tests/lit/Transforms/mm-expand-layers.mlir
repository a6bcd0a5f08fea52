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

// -----

// COM: BLIP-2's Q-Former alternates two layer kinds: one mm.layer for the
// COM: even checkpoint indices (index_step = 2) and one for the odd ones
// COM: (index_start = 1, index_step = 2). Their instances' parameters are
// COM: named .0./.2. and .1./.3., each layer's at its place, and instance i of
// COM: a layer reads index index_start + i * index_step; a layer sharing @odd's
// COM: parameters (a decode step) reads the same ones.
// CHECK-LABEL: mm.model @interleaved
// CHECK: mm.param @layers.0.w
// CHECK-NEXT: mm.param @layers.2.w
// CHECK-NEXT: mm.param @layers.1.w
// CHECK-NEXT: mm.param @layers.3.w
// CHECK-NOT: mm.layer
// CHECK: mm.entry @forward(%[[X:.*]]: tensor<8xf32>)
// CHECK: %[[W0:.*]] = mm.weight @layers.0.w
// CHECK: %[[Y0:.*]] = mm.add %[[X]], %[[W0]]
// CHECK: %[[W1:.*]] = mm.weight @layers.1.w
// CHECK: %[[Y1:.*]] = mm.mul %[[Y0]], %[[W1]]
// CHECK: %[[W2:.*]] = mm.weight @layers.2.w
// CHECK: %[[Y2:.*]] = mm.add %[[Y1]], %[[W2]]
// CHECK: %[[W3:.*]] = mm.weight @layers.3.w
// CHECK: %[[Y3:.*]] = mm.mul %[[Y2]], %[[W3]]
// CHECK: mm.return %[[Y3]]
// CHECK: mm.entry @step(%[[S:.*]]: tensor<8xf32>)
// CHECK: %[[V3:.*]] = mm.weight @layers.3.w
// CHECK: mm.add %[[S]], %[[V3]]
mm.model @interleaved {
  mm.group @g
  mm.layer @even(%x: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, prefix = "layers", index_step = 2 : i64} {
    mm.param @"w" : tensor<8xf32> group @g init #mm.init<ones>
    %w = mm.weight @"w" : tensor<8xf32>
    %y = mm.add %x, %w : tensor<8xf32>
    mm.yield %y : tensor<8xf32>
  }
  mm.layer @odd(%x: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, prefix = "layers", index_start = 1 : i64, index_step = 2 : i64} {
    mm.param @"w" : tensor<8xf32> group @g init #mm.init<ones>
    %w = mm.weight @"w" : tensor<8xf32>
    %y = mm.mul %x, %w : tensor<8xf32>
    mm.yield %y : tensor<8xf32>
  }
  mm.layer @odd_step(%x: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, prefix = "layers", index_start = 1 : i64, index_step = 2 : i64, parameters_from = @odd} {
    %w = mm.weight @"w" : tensor<8xf32>
    %y = mm.add %x, %w : tensor<8xf32>
    mm.yield %y : tensor<8xf32>
  }
  mm.entry @forward(%x: tensor<8xf32>) -> tensor<8xf32> {
    %a = mm.apply_layer @even from 0 to 1 (%x) : (tensor<8xf32>) -> tensor<8xf32>
    %b = mm.apply_layer @odd from 0 to 1 (%a) : (tensor<8xf32>) -> tensor<8xf32>
    %c = mm.apply_layer @even from 1 to 2 (%b) : (tensor<8xf32>) -> tensor<8xf32>
    %d = mm.apply_layer @odd from 1 to 2 (%c) : (tensor<8xf32>) -> tensor<8xf32>
    mm.return %d : tensor<8xf32>
  }
  mm.entry @step(%x: tensor<8xf32>) -> tensor<8xf32> {
    %y = mm.apply_layer @odd_step from 1 to 2 (%x) : (tensor<8xf32>) -> tensor<8xf32>
    mm.return %y : tensor<8xf32>
  }
}

// -----

// COM: A layer that yields more values than it takes (a cross-attention's keys
// COM: and values of one image input), applied one instance at a time: the
// COM: extra results are the application's own (this once crashed the pass).
// CHECK-LABEL: mm.model @more_results
// CHECK: mm.entry @forward(%[[X:.*]]: tensor<8xf32>)
// CHECK: %[[K:.*]] = mm.weight @layers.1.k
// CHECK: %[[A:.*]] = mm.add %[[X]], %[[K]]
// CHECK: %[[V:.*]] = mm.weight @layers.1.v
// CHECK: %[[B:.*]] = mm.mul %[[X]], %[[V]]
// CHECK: mm.add %[[A]], %[[B]]
mm.model @more_results {
  mm.group @g
  mm.layer @kv(%x: tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>) attributes {count = 2 : i64, prefix = "layers"} {
    mm.param @"k" : tensor<8xf32> group @g init #mm.init<ones>
    mm.param @"v" : tensor<8xf32> group @g init #mm.init<ones>
    %k = mm.weight @"k" : tensor<8xf32>
    %a = mm.add %x, %k : tensor<8xf32>
    %v = mm.weight @"v" : tensor<8xf32>
    %b = mm.mul %x, %v : tensor<8xf32>
    mm.yield %a, %b : tensor<8xf32>, tensor<8xf32>
  }
  mm.entry @forward(%x: tensor<8xf32>) -> tensor<8xf32> {
    %kv:2 = mm.apply_layer @kv from 1 to 2 (%x) : (tensor<8xf32>) -> (tensor<8xf32>, tensor<8xf32>)
    %y = mm.add %kv#0, %kv#1 : tensor<8xf32>
    mm.return %y : tensor<8xf32>
  }
}
