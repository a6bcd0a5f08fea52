// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-remat))' | FileCheck %s
// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-remat{report=true}))' -verify-diagnostics -o /dev/null
// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-plan-memory))' | FileCheck %s --check-prefix=SAVED
// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff,mm-remat,mm-plan-memory))' | FileCheck %s --check-prefix=REMAT

// COM: The second layer's weight gradient reads the GELU's output. Its input
// COM: %h is saved anyway (activation_grad reads it), so the backward computes
// COM: the GELU again right before that gradient, and the forward GELU's
// COM: result dies at the second linear.
// CHECK-LABEL: mm.model @mlp
// CHECK: mm.entry @train_s
// CHECK: %[[H:.*]] = mm.linear
// CHECK: %[[G:.*]] = mm.gelu %[[H]]
// CHECK: mm.linear %[[G]]
// CHECK: mm.cross_entropy
// CHECK: %[[G2:.*]] = mm.gelu %[[H]]
// CHECK-NEXT: mm.linear_grad_weight %{{.*}}, %[[G2]]
// CHECK-NOT: mm.linear_grad_weight %{{.*}}, %[[G]]
// CHECK: mm.activation_grad %{{.*}}, %[[H]]
// COM: Saved, the GELU's output (256 bytes) is live with the logits and their
// COM: gradient at the turn to the backward; recomputed, it is not, and its copy
// COM: lives only from the recomputation to the weight gradient. The peak of
// COM: live intermediate values (the gradients, the entry's results, not
// COM: counted) drops by one 64-byte-aligned 4x16 buffer minus the copy's overlap.
// SAVED-LABEL: mm.model @mlp
// SAVED: mm.entry @train_s{{.*}}mm.activation_bytes = 1088
// REMAT-LABEL: mm.model @mlp
// REMAT: mm.entry @train_s{{.*}}mm.activation_bytes = 1024
mm.model @mlp {
  mm.group @g
  mm.param @"w1" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"w2" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%x: tensor<4x16xf32>, %t: tensor<4xi32>) -> tensor<f32> {
    %w1 = mm.weight @"w1" : tensor<16x16xf32>
    %h = mm.linear %x, %w1 : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    // expected-remark @+1 {{recomputed in the backward}}
    %g = mm.gelu %h : tensor<4x16xf32>
    %w2 = mm.weight @"w2" : tensor<16x16xf32>
    %l = mm.linear %g, %w2 : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<4x16xf32>, tensor<4xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: A gated MLP (LLaMA's): silu(gate) * up feeds the down projection. The
// COM: product is recomputed from the recomputed silu and the saved up; the
// COM: copy of the silu is placed before the copy of the product that reads it.
// CHECK-LABEL: mm.model @gated
// CHECK: mm.entry @train_s
// CHECK: %[[GATE:.*]] = mm.linear
// CHECK: %[[UP:.*]] = mm.linear
// CHECK: %[[S:.*]] = mm.silu %[[GATE]]
// CHECK: %[[M:.*]] = mm.mul %[[S]], %[[UP]]
// CHECK: mm.cross_entropy
// CHECK: %[[S2:.*]] = mm.silu %[[GATE]]
// CHECK-NEXT: %[[M2:.*]] = mm.mul %[[S2]], %[[UP]]
// CHECK-NEXT: mm.linear_grad_weight %{{.*}}, %[[M2]]
mm.model @gated {
  mm.group @g
  mm.param @"gate" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"up" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"down" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%x: tensor<4x16xf32>, %t: tensor<4xi32>) -> tensor<f32> {
    %wg = mm.weight @"gate" : tensor<16x16xf32>
    %gate = mm.linear %x, %wg : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %wu = mm.weight @"up" : tensor<16x16xf32>
    %up = mm.linear %x, %wu : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    // expected-remark @+1 {{recomputed in the backward}}
    %s = mm.silu %gate : tensor<4x16xf32>
    // expected-remark @+1 {{recomputed in the backward}}
    %m = mm.mul %s, %up : tensor<4x16xf32>
    %wd = mm.weight @"down" : tensor<16x16xf32>
    %l = mm.linear %m, %wd : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<4x16xf32>, tensor<4xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: Refusal: below a frozen layer no gradient reaches %h, so no backward op
// COM: reads it; recomputing the norm would keep %h alive instead of the
// COM: norm's output, which saves nothing. The norm's output stays saved.
// CHECK-LABEL: mm.model @frozen_below
// CHECK: mm.entry @train_s
// CHECK: %[[N:.*]] = mm.rms_norm
// CHECK: mm.cross_entropy
// CHECK-NOT: mm.rms_norm
// CHECK: mm.linear_grad_weight %{{.*}}, %[[N]]
mm.model @frozen_below {
  mm.group @frozen
  mm.group @g
  mm.param @"f" : tensor<16x16xf32> group @frozen init #mm.init<normal, 0.02>
  mm.param @"norm" : tensor<16xf32> group @frozen init #mm.init<ones>
  mm.param @"w" : tensor<16x16xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "caption"
  mm.entry @loss(%x: tensor<4x16xf32>, %t: tensor<4xi32>) -> tensor<f32> {
    %wf = mm.weight @"f" : tensor<16x16xf32>
    %h = mm.linear %x, %wf : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %wn = mm.weight @"norm" : tensor<16xf32>
    // expected-remark @+1 {{kept for the backward: operand #0 is not otherwise saved for it}}
    %n = mm.rms_norm %h, %wn {eps = 1.0e-6 : f64} : (tensor<4x16xf32>, tensor<16xf32>) -> tensor<4x16xf32>
    %w = mm.weight @"w" : tensor<16x16xf32>
    %l = mm.linear %n, %w : (tensor<4x16xf32>, tensor<16x16xf32>) -> tensor<4x16xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<4x16xf32>, tensor<4xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: Entries that are not training steps are left alone.
// CHECK-LABEL: mm.model @forward_only
// CHECK-COUNT-1: mm.gelu
mm.model @forward_only {
  mm.entry @f(%x: tensor<4x16xf32>) -> tensor<4x16xf32> {
    %g = mm.gelu %x : tensor<4x16xf32>
    %y = mm.add %g, %x : tensor<4x16xf32>
    mm.return %y : tensor<4x16xf32>
  }
}
