// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-autodiff))' -verify-diagnostics
// COM: What mm-autodiff refuses to differentiate, with a message that says why.

// COM: A slice at a run-time offset (OPT's learned position in a decode step)
// COM: has no gradient: the trainable table it reads cannot be trained through it.
mm.model @slice_offset_trainable {
  mm.group @g
  mm.param @"pos" : tensor<10x4xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "none"
  mm.entry @loss(%off: tensor<i32>) -> tensor<f32> {
    %p = mm.weight @"pos" : tensor<10x4xf32>
    // expected-error @+1 {{has a run-time offset and so no gradient}}
    %y = mm.slice %p, %off {axis = 0 : i64, start = 2 : i64} : (tensor<10x4xf32>, tensor<i32>) -> tensor<1x4xf32>
    %l = mm.reduce_sum %y : (tensor<1x4xf32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}

// -----

// COM: mm.gather has no VJP rule: BLIP-2's stage 1 gathers frozen image
// COM: features and token ids only. A gather whose input a trainable parameter
// COM: reaches (here through an add) is refused.
mm.model @gather_trainable {
  mm.group @g
  mm.param @"feat" : tensor<4x8xf32> group @g init #mm.init<normal, 0.02>
  mm.stage @s trainable [@g] loss @loss data "none"
  mm.entry @loss(%x: tensor<4x8xf32>, %idx: tensor<4xi32>) -> tensor<f32> {
    %p = mm.weight @"feat" : tensor<4x8xf32>
    %h = mm.add %p, %x : tensor<4x8xf32>
    // expected-error @+1 {{'mm.gather' op has no VJP rule; mm-autodiff cannot differentiate through it}}
    %y = mm.gather %h, %idx : (tensor<4x8xf32>, tensor<4xi32>) -> tensor<4x8xf32>
    %l = mm.reduce_sum %y : (tensor<4x8xf32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}

// -----

// COM: A stage whose loss reaches none of a trainable group's parameters (a
// COM: loss over a frozen part's cached output, with that part named
// COM: trainable) is compiled, with a warning: the group would get zero
// COM: gradients. A group that is only partly reached (LLaVA never reads its
// COM: tower's last layer) gets none.
mm.model @group_not_reached {
  mm.group @tower
  mm.group @head
  mm.param @"tower.w" : tensor<4x4xf32> group @tower init #mm.init<normal, 0.02>
  mm.param @"head.w" : tensor<4x4xf32> group @head init #mm.init<normal, 0.02>
  mm.param @"head.unused" : tensor<4x4xf32> group @head init #mm.init<normal, 0.02>
  // expected-warning @+1 {{trains group @tower, but its loss @loss reaches none of its parameters: their gradients are zero}}
  mm.stage @s trainable [@tower, @head] loss @loss data "none"
  mm.entry @loss(%features: tensor<2x4xf32>) -> tensor<f32> {
    %h = mm.weight @"head.w" : tensor<4x4xf32>
    %y = mm.linear %features, %h : (tensor<2x4xf32>, tensor<4x4xf32>) -> tensor<2x4xf32>
    %l = mm.reduce_sum %y : (tensor<2x4xf32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}
