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
