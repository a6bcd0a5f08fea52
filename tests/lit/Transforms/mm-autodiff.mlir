// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff))' | FileCheck %s

// COM: A frozen tower feeds a trainable adapter feeding a frozen head: the tower
// COM: gets no backward at all, the head only an activation gradient (no
// COM: weight-gradient matmul for its frozen weight), the adapter its weight
// COM: gradient. Results: the loss, then one gradient per trainable parameter.
// CHECK-LABEL: mm.model @adapter
// CHECK: mm.entry @train_s(%[[X:.*]]: tensor<2x4xf32>, %[[T:.*]]: tensor<2xi32>) -> (tensor<f32> {mm.name = "loss"}, tensor<4x4xf32> {mm.name = "grad:adapter.w"})
// CHECK-SAME: mm.stage = "s"
// CHECK: %[[TW:.*]] = mm.weight @tower.w
// CHECK: %[[F:.*]] = mm.linear %[[X]], %[[TW]]
// CHECK: %[[AW:.*]] = mm.weight @adapter.w
// CHECK: %[[A:.*]] = mm.linear %[[F]], %[[AW]]
// CHECK: %[[HW:.*]] = mm.weight @head.w
// CHECK: %[[L:.*]] = mm.linear %[[A]], %[[HW]]
// CHECK: %[[LOSS:.*]] = mm.cross_entropy %[[L]], %[[T]]
// CHECK: %[[ONE:.*]] = mm.constant {value = 1.000000e+00 : f64} : tensor<f32>
// CHECK: %[[DL:.*]] = mm.cross_entropy_grad %[[L]], %[[T]], %[[ONE]]
// CHECK-NEXT: %[[DA:.*]] = mm.linear_grad_input %[[DL]], %[[HW]]
// CHECK-NEXT: %[[DW:.*]] = mm.linear_grad_weight %[[DA]], %[[F]]
// CHECK-NEXT: mm.return %[[LOSS]], %[[DW]]
// CHECK-NOT: linear_grad
mm.model @adapter {
  mm.group @tower
  mm.group @adapter
  mm.group @head
  mm.param @"tower.w" : tensor<4x4xf32> group @tower init #mm.init<normal, 0.02>
  mm.param @"adapter.w" : tensor<4x4xf32> group @adapter init #mm.init<normal, 0.02>
  mm.param @"head.w" : tensor<8x4xf32> group @head init #mm.init<normal, 0.02>
  mm.stage @s trainable [@adapter] loss @loss data "caption"
  mm.entry @loss(%x: tensor<2x4xf32>, %t: tensor<2xi32>) -> tensor<f32> {
    %tw = mm.weight @"tower.w" : tensor<4x4xf32>
    %f = mm.linear %x, %tw : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %aw = mm.weight @"adapter.w" : tensor<4x4xf32>
    %a = mm.linear %f, %aw : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %hw = mm.weight @"head.w" : tensor<8x4xf32>
    %l = mm.linear %a, %hw : (tensor<2x4xf32>, tensor<8x4xf32>) -> tensor<2x8xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<2x8xf32>, tensor<2xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: A parameter read twice gets the sum of both reads' gradients; a
// COM: trainable parameter the loss never reaches gets zeros.
// CHECK-LABEL: mm.model @reuse
// CHECK: mm.entry @train_s
// CHECK: mm.fill
// CHECK: %[[G1:.*]] = mm.mul
// CHECK: %[[G2:.*]] = mm.mul
// CHECK: %[[SUM:.*]] = mm.add %[[G1]], %[[G2]]
// CHECK: %[[Z:.*]] = mm.constant {value = 0.000000e+00 : f64} : tensor<3xf32>
// CHECK: mm.return %{{.*}}, %[[SUM]], %[[Z]]
mm.model @reuse {
  mm.group @g
  mm.param @"a" : tensor<3xf32> group @g init #mm.init<ones>
  mm.param @"unused" : tensor<3xf32> group @g init #mm.init<ones>
  mm.stage @s trainable [@g] loss @loss data "none"
  mm.entry @loss() -> tensor<f32> {
    %a = mm.weight @"a" : tensor<3xf32>
    %b = mm.weight @"a" : tensor<3xf32>
    %s = mm.mul %a, %b : tensor<3xf32>
    %l = mm.reduce_sum %s : (tensor<3xf32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}

// -----

// COM: A slice at a run-time offset has no gradient, but one of a frozen
// COM: table needs none: the trainable weight after it still gets its own,
// COM: and the slice is only a forward op (no mm.pad for its input).
// CHECK-LABEL: mm.model @frozen_offset_slice
// CHECK: mm.entry @train_s(%[[X:.*]]: tensor<1x4xf32>, %[[OFF:.*]]: tensor<i32>, %{{.*}}: tensor<1xi32>) -> (tensor<f32> {mm.name = "loss"}, tensor<8x4xf32> {mm.name = "grad:head.w"})
// CHECK: %[[P:.*]] = mm.weight @pos
// CHECK: %[[S:.*]] = mm.slice %[[P]], %[[OFF]]
// CHECK: %[[H:.*]] = mm.add %[[X]], %[[S]]
// CHECK: mm.linear_grad_weight %{{.*}}, %[[H]]
// CHECK-NOT: mm.pad
// CHECK: mm.return
mm.model @frozen_offset_slice {
  mm.group @frozen
  mm.group @head
  mm.param @"pos" : tensor<10x4xf32> group @frozen init #mm.init<normal, 0.02>
  mm.param @"head.w" : tensor<8x4xf32> group @head init #mm.init<normal, 0.02>
  mm.stage @s trainable [@head] loss @loss data "none"
  mm.entry @loss(%x: tensor<1x4xf32>, %off: tensor<i32>, %t: tensor<1xi32>) -> tensor<f32> {
    %p = mm.weight @"pos" : tensor<10x4xf32>
    %s = mm.slice %p, %off {axis = 0 : i64, start = 2 : i64} : (tensor<10x4xf32>, tensor<i32>) -> tensor<1x4xf32>
    %h = mm.add %x, %s : tensor<1x4xf32>
    %w = mm.weight @"head.w" : tensor<8x4xf32>
    %l = mm.linear %h, %w : (tensor<1x4xf32>, tensor<8x4xf32>) -> tensor<1x8xf32>
    %loss = mm.cross_entropy %l, %t : (tensor<1x8xf32>, tensor<1xi32>) -> tensor<f32>
    mm.return %loss : tensor<f32>
  }
}

// -----

// COM: BLIP-2's stage 1 in small: ITC over l2-normalised features (the
// COM: similarities and their transpose against in-batch targets from mm.iota,
// COM: each a mean cross-entropy) and hard negatives drawn from the
// COM: similarities. mm.sample_negatives (integer result) and mm.gather of the
// COM: frozen images need no gradient: the step differentiates through the
// COM: rest, and the negatives' path reaches the weight through reduce_max.
// CHECK-LABEL: mm.model @hard_negatives
// CHECK: mm.entry @train_s
// CHECK: %[[F:.*]] = mm.linear %arg0, %[[W:.*]] :
// CHECK: %[[SIM:.*]] = mm.linear
// CHECK: %[[SIMT:.*]] = mm.transpose %[[SIM]]
// CHECK: %[[T:.*]] = mm.iota : tensor<4xi32>
// CHECK: %[[NEG:.*]] = mm.sample_negatives %[[SIM]], %arg2
// CHECK: %[[NIMG:.*]] = mm.gather %arg0, %[[NEG]]
// CHECK: %[[NF:.*]] = mm.linear %[[NIMG]], %[[W]]
// CHECK: %[[ONE:.*]] = mm.constant {value = 1.000000e+00 : f64} : tensor<f32>
// CHECK: mm.reduce_max_grad %[[NF]], %{{.*}} {axis = 1 : i64}
// CHECK: %[[DT:.*]] = mm.cross_entropy_grad %[[SIMT]], %[[T]], %[[ONE]] {mean}
// CHECK: %[[DS:.*]] = mm.cross_entropy_grad %[[SIM]], %[[T]], %[[ONE]] {mean}
// CHECK: %[[DTT:.*]] = mm.transpose %[[DT]]
// CHECK: mm.add %[[DS]], %[[DTT]]
// CHECK: mm.l2_normalize_grad %[[F]], %{{.*}} {eps = 9.9999999999999998E-13 : f64}
// CHECK-NOT: mm.gather
// CHECK: mm.return
mm.model @hard_negatives {
  mm.group @g
  mm.param @"proj" : tensor<4x4xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "none"
  mm.entry @loss(%img: tensor<4x4xf32>, %txt: tensor<4x4xf32>, %u: tensor<4xf32>) -> tensor<f32> {
    %w = mm.weight @"proj" : tensor<4x4xf32>
    %f = mm.linear %img, %w : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %n = mm.l2_normalize %f : tensor<4x4xf32>
    %sim = mm.linear %n, %txt : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %simt = mm.transpose %sim : (tensor<4x4xf32>) -> tensor<4x4xf32>
    %t = mm.iota : tensor<4xi32>
    %l1 = mm.cross_entropy %sim, %t {mean} : (tensor<4x4xf32>, tensor<4xi32>) -> tensor<f32>
    %l2 = mm.cross_entropy %simt, %t {mean} : (tensor<4x4xf32>, tensor<4xi32>) -> tensor<f32>
    %neg = mm.sample_negatives %sim, %u : (tensor<4x4xf32>, tensor<4xf32>) -> tensor<4xi32>
    %nimg = mm.gather %img, %neg : (tensor<4x4xf32>, tensor<4xi32>) -> tensor<4x4xf32>
    %nf = mm.linear %nimg, %w : (tensor<4x4xf32>, tensor<4x4xf32>) -> tensor<4x4xf32>
    %nm = mm.reduce_max %nf {axis = 1 : i64} : (tensor<4x4xf32>) -> tensor<4xf32>
    %l3 = mm.reduce_sum %nm : (tensor<4xf32>) -> tensor<f32>
    %a = mm.add %l1, %l2 : tensor<f32>
    %l = mm.add %a, %l3 : tensor<f32>
    mm.return %l : tensor<f32>
  }
}
