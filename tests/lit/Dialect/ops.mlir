// RUN: mmc-opt %s -split-input-file | mmc-opt -split-input-file | FileCheck %s
// COM: Every op and attribute of the mm dialect parses, prints, and parses again.

// CHECK-LABEL: mm.model @structure
// CHECK: mm.group @g
// CHECK: mm.param @embed.weight : tensor<32x16xf32> group @g init #mm.init<normal, 2.000000e-02>
// CHECK: mm.param @norm.weight : tensor<16xf32> group @g init #mm.init<ones>
// CHECK: mm.param @norm.bias : tensor<16xf32> group @g init #mm.init<zeros>
// CHECK: mm.stage @s trainable [@g] loss @loss data "caption"
// CHECK-SAME: batch = 4
mm.model @structure attributes {config = {model_type = "llava"}} {
  mm.group @g
  mm.param @"embed.weight" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"norm.weight" : tensor<16xf32> group @g init #mm.init<ones>
  mm.param @"norm.bias" : tensor<16xf32> group @g init #mm.init<zeros>
  mm.stage @s trainable [@g] loss @loss data "caption" {batch = 4 : i64, lr = 1.0e-3 : f64}
  mm.entry @loss(%x: tensor<4x32xf32>, %t: tensor<4xi32>) -> tensor<f32> {
    %l = mm.cross_entropy %x, %t {ignore_index = -100 : i64} : (tensor<4x32xf32>, tensor<4xi32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}

// -----

// CHECK-LABEL: mm.model @layers
// CHECK: mm.layer @block(%{{.*}}: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> attributes {count = 2 : i64, prefix = "layers"}
// CHECK: mm.weight @ln.weight : tensor<8xf32>
// CHECK: mm.rms_norm
// CHECK: mm.yield
// CHECK: mm.entry @forward
// CHECK: mm.apply_layer @block from 0 to 2
mm.model @layers {
  mm.group @g
  mm.layer @block(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> attributes {count = 2 : i64, prefix = "layers"} {
    mm.param @"ln.weight" : tensor<8xf32> group @g init #mm.init<ones>
    %w = mm.weight @"ln.weight" : tensor<8xf32>
    %y = mm.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<1x4x8xf32>, tensor<8xf32>) -> tensor<1x4x8xf32>
    mm.yield %y : tensor<1x4x8xf32>
  }
  mm.entry @forward(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    %y = mm.apply_layer @block from 0 to 2 (%x) : (tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @tensor_ops
mm.model @tensor_ops {
  mm.group @g
  mm.param @"t" : tensor<32x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"w" : tensor<16x3x4x4xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"v" : tensor<16xf32> group @g init #mm.init<ones>
  mm.param @"p" : tensor<5x16xf32> group @g init #mm.init<normal, 0.02>
  mm.param @"l" : tensor<8x16xf32> group @g init #mm.init<normal, 0.02>
  mm.entry @forward(%ids: tensor<1x8xi32>, %pix: tensor<1x3x8x8xf32>, %len: tensor<i32>) -> tensor<1x8x8xf32> {
    %t = mm.weight @"t" : tensor<32x16xf32>
    %w = mm.weight @"w" : tensor<16x3x4x4xf32>
    %v = mm.weight @"v" : tensor<16xf32>
    %p = mm.weight @"p" : tensor<5x16xf32>
    %l = mm.weight @"l" : tensor<8x16xf32>
    // CHECK: mm.embedding
    %e = mm.embedding %ids, %t : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x16xf32>
    // CHECK: mm.patch_embed
    %pe = mm.patch_embed %pix, %w : (tensor<1x3x8x8xf32>, tensor<16x3x4x4xf32>) -> tensor<1x4x16xf32>
    // CHECK: mm.broadcast
    %c = mm.broadcast %v : (tensor<16xf32>) -> tensor<1x1x16xf32>
    // CHECK: mm.concat %{{.*}}, %{{.*}} {axis = 1 : i64}
    %cat = mm.concat %c, %pe {axis = 1 : i64} : (tensor<1x1x16xf32>, tensor<1x4x16xf32>) -> tensor<1x5x16xf32>
    %pb = mm.broadcast %p : (tensor<5x16xf32>) -> tensor<1x5x16xf32>
    // CHECK: mm.add
    %s = mm.add %cat, %pb : tensor<1x5x16xf32>
    // CHECK: mm.layer_norm
    %n = mm.layer_norm %s, %v, %v {eps = 1.0e-5 : f64} : (tensor<1x5x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<1x5x16xf32>
    // CHECK: mm.attention {{.*}}mask = #mm.mask<bidirectional>
    %a = mm.attention %n, %n, %n {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 0.35 : f64} : (tensor<1x5x16xf32>, tensor<1x5x16xf32>, tensor<1x5x16xf32>) -> tensor<1x5x16xf32>
    // CHECK: mm.slice
    %f = mm.slice %a {axis = 1 : i64, start = 1 : i64} : (tensor<1x5x16xf32>) -> tensor<1x4x16xf32>
    // CHECK: mm.gelu
    %g = mm.gelu %f : tensor<1x4x16xf32>
    // CHECK: mm.quick_gelu
    %qg = mm.quick_gelu %g : tensor<1x4x16xf32>
    // CHECK: mm.gelu_tanh
    %gt = mm.gelu_tanh %qg : tensor<1x4x16xf32>
    // CHECK: mm.relu
    %r = mm.relu %gt : tensor<1x4x16xf32>
    // CHECK: mm.merge_image_features {{.*}}{image_token_index = 4 : i64}
    %m = mm.merge_image_features %e, %ids, %r {image_token_index = 4 : i64} : (tensor<1x8x16xf32>, tensor<1x8xi32>, tensor<1x4x16xf32>) -> tensor<1x8x16xf32>
    // CHECK: mm.rms_norm
    %rn = mm.rms_norm %m, %v {eps = 1.0e-6 : f64} : (tensor<1x8x16xf32>, tensor<16xf32>) -> tensor<1x8x16xf32>
    // CHECK: mm.rope
    %q = mm.rope %rn {num_heads = 2 : i64, theta = 10000.0 : f64} : tensor<1x8x16xf32>
    %kv = mm.linear %rn, %l : (tensor<1x8x16xf32>, tensor<8x16xf32>) -> tensor<1x8x8xf32>
    // CHECK: mm.attention {{.*}}mask = #mm.mask<causal>
    %ca = mm.attention %q, %kv, %kv, %len {num_heads = 2 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 0.35 : f64} : (tensor<1x8x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>, tensor<i32>) -> tensor<1x8x16xf32>
    // CHECK: mm.silu
    %si = mm.silu %ca : tensor<1x8x16xf32>
    // CHECK: mm.mul
    %mu = mm.mul %si, %rn : tensor<1x8x16xf32>
    // CHECK: mm.linear
    %o = mm.linear %mu, %l : (tensor<1x8x16xf32>, tensor<8x16xf32>) -> tensor<1x8x8xf32>
    mm.return %o : tensor<1x8x8xf32>
  }
}

// -----

// COM: T5's relative position bias: the table after `bias`, with and without a
// COM: run-time length; and the table's gradient op, as mm-autodiff writes it.
// CHECK-LABEL: mm.model @position_bias
// CHECK: mm.attention %{{.*}}, %{{.*}}, %{{.*}} bias %{{.*}} {{{.*}}bias_max_distance = 128 : i64{{.*}}mask = #mm.mask<bidirectional>
// CHECK: mm.attention %{{.*}}, %{{.*}}, %{{.*}}, %{{.*}} bias %{{.*}} {{{.*}}mask = #mm.mask<causal>
// CHECK: mm.attention_stats %{{.*}}, %{{.*}} bias %{{.*}}
// CHECK: mm.attention_grad_position_bias {{.*}} bias %{{.*}} {{.*}} -> tensor<8x2xf32>
mm.model @position_bias {
  mm.entry @f(%x: tensor<1x4x8xf32>, %t: tensor<8x2xf32>, %len: tensor<i32>) -> tensor<8x2xf32> {
    %a = mm.attention %x, %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 128 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<8x2xf32>) -> tensor<1x4x8xf32>
    %b = mm.attention %a, %a, %a, %len bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<i32>, tensor<8x2xf32>) -> tensor<1x4x8xf32>
    %lse = mm.attention_stats %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 128 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<8x2xf32>) -> tensor<1x2x4xf32>
    %g = mm.attention_grad_position_bias %x, %x, %x, %b, %a, %lse bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 128 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x2x4xf32>, tensor<8x2xf32>) -> tensor<8x2xf32>
    mm.return %g : tensor<8x2xf32>
  }
}

// -----

// COM: The one-pass attention backward mm-fuse writes: three results, the
// COM: query's, key's and value's types (grouped-query: two heads per KV head).
// CHECK-LABEL: mm.model @fused_attention_grad
// CHECK: %{{.*}}, %{{.*}}, %{{.*}} = mm.fused_attention_grad %{{.*}} {{{.*}}mask = #mm.mask<causal>{{.*}}} : ({{.*}}) -> (tensor<1x8x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>)
mm.model @fused_attention_grad {
  mm.entry @f(%q: tensor<1x8x16xf32>, %kv: tensor<1x8x8xf32>, %lse: tensor<1x2x8xf32>, %len: tensor<i32>) -> tensor<1x8x8xf32> {
    %dq, %dk, %dv = mm.fused_attention_grad %q, %kv, %kv, %q, %q, %lse, %len {num_heads = 2 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 0.35 : f64} : (tensor<1x8x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>, tensor<1x8x16xf32>, tensor<1x8x16xf32>, tensor<1x2x8xf32>, tensor<i32>) -> (tensor<1x8x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>)
    mm.return %dv : tensor<1x8x8xf32>
  }
}

// -----

// COM: The one-pass attention forward mm-fuse writes for a training step: the
// COM: output (the query's type) and the per-row statistics [B, H, S].
// CHECK-LABEL: mm.model @fused_attention
// CHECK: %{{.*}}, %{{.*}} = mm.fused_attention %{{.*}} {{{.*}}mask = #mm.mask<causal>{{.*}}} : ({{.*}}) -> (tensor<1x8x16xf32>, tensor<1x2x8xf32>)
mm.model @fused_attention {
  mm.entry @f(%q: tensor<1x8x16xf32>, %kv: tensor<1x8x8xf32>, %len: tensor<i32>) -> tensor<1x2x8xf32> {
    %y, %lse = mm.fused_attention %q, %kv, %kv, %len {num_heads = 2 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 0.35 : f64} : (tensor<1x8x16xf32>, tensor<1x8x8xf32>, tensor<1x8x8xf32>, tensor<i32>) -> (tensor<1x8x16xf32>, tensor<1x2x8xf32>)
    mm.return %lse : tensor<1x2x8xf32>
  }
}

// -----

// COM: Every mask kind with the layout it needs.
// CHECK-LABEL: mm.model @masks
// CHECK: #mm.seq_layout<query = 2, text = 2>, mask = #mm.mask<itm_bidirectional>
// CHECK: #mm.mask<itg_multimodal_causal>
// CHECK: #mm.mask<itc_unimodal>
// CHECK: #mm.seq_layout<image = 1, text = 3>, mask = #mm.mask<image_prefix_causal>
// CHECK: #mm.mask<padding>
mm.model @masks {
  mm.entry @f(%x: tensor<1x4x8xf32>, %len: tensor<i32>) -> tensor<1x4x8xf32> {
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %b = mm.attention %a, %a, %a {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %c = mm.attention %b, %b, %b {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %d = mm.attention %c, %c, %c {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<image_prefix_causal>, layout = #mm.seq_layout<image = 1, text = 3>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    %e = mm.attention %d, %d, %d, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<padding>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    mm.return %e : tensor<1x4x8xf32>
  }
}

// -----

// COM: The ops mm-fuse makes round-trip too, with and without each optional part.
// CHECK-LABEL: mm.model @fused
// CHECK: mm.fused_linear %arg0, %arg1 bias %arg2 residual %arg3 {activation = #mm.activation<quick_gelu>}
// CHECK: mm.fused_linear %{{.*}}, %arg1 :
// CHECK: mm.linear_grad_input %{{.*}}, %arg1 addend %arg3 :
// CHECK: mm.rms_norm_grad_input %{{.*}}, %arg3, %arg2 addend %arg3 {eps
// CHECK: mm.fused_elementwise(%{{.*}}, %arg3)
// CHECK-NEXT: ^bb0(%{{.*}}: tensor<4x8xf32>, %{{.*}}: tensor<4x8xf32>):
// CHECK: mm.activation_grad
// CHECK: mm.yield
mm.model @fused {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>, %r: tensor<4x8xf32>) -> tensor<4x8xf32> {
    %a = mm.fused_linear %x, %w bias %b residual %r {activation = #mm.activation<quick_gelu>} : (tensor<4x8xf32>, tensor<8x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %c = mm.fused_linear %a, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    %d = mm.linear_grad_input %c, %w addend %r : (tensor<4x8xf32>, tensor<8x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %e = mm.rms_norm_grad_input %d, %r, %b addend %r {eps = 1.0e-6 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    %y = mm.fused_elementwise (%e, %r) : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%p: tensor<4x8xf32>, %q: tensor<4x8xf32>):
      %s = mm.mul %p, %q : tensor<4x8xf32>
      %t = mm.activation_grad %s, %q {kind = #mm.activation<gelu>} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
      mm.yield %t : tensor<4x8xf32>
    }
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

// COM: A convolutional stem's ops and their gradients round-trip.
// CHECK-LABEL: mm.model @conv
// CHECK: mm.conv2d %arg0, %arg1, %arg2 {padding = 1 : i64, stride = 2 : i64}
// CHECK: mm.conv2d_grad_input %{{.*}}, %arg1 {padding = 1 : i64, stride = 2 : i64}
// CHECK: mm.conv2d_grad_weight %{{.*}}, %arg0 {padding = 1 : i64, stride = 2 : i64}
// CHECK: mm.conv2d_grad_bias
// CHECK: mm.patch_embed_grad_input
mm.model @conv {
  mm.entry @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>, %p: tensor<5x4x2x2xf32>) -> (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>, tensor<1x4x4x4xf32>) {
    %y = mm.conv2d %x, %w, %b {stride = 2 : i64, padding = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x4x4xf32>
    %dx = mm.conv2d_grad_input %y, %w {stride = 2 : i64, padding = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<4x3x3x3xf32>) -> tensor<1x3x8x8xf32>
    %dw = mm.conv2d_grad_weight %y, %x {stride = 2 : i64, padding = 1 : i64} : (tensor<1x4x4x4xf32>, tensor<1x3x8x8xf32>) -> tensor<4x3x3x3xf32>
    %db = mm.conv2d_grad_bias %y : (tensor<1x4x4x4xf32>) -> tensor<4xf32>
    %t = mm.patch_embed %y, %p : (tensor<1x4x4x4xf32>, tensor<5x4x2x2xf32>) -> tensor<1x4x5xf32>
    %dt = mm.patch_embed_grad_input %t, %p : (tensor<1x4x5xf32>, tensor<5x4x2x2xf32>) -> tensor<1x4x4x4xf32>
    mm.return %dx, %dw, %db, %dt : tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>, tensor<1x4x4x4xf32>
  }
}

// -----

// COM: index_start and index_step print where they differ from 0 and 1 (a
// COM: stack alternating two layer kinds, BLIP-2's Q-Former); a decoding
// COM: variant sharing the odd layers' parameters repeats them.
// CHECK-LABEL: mm.model @interleaved
// CHECK: mm.layer @even(%{{.*}}: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, index_step = 2 : i64, prefix = "layers"}
// CHECK: mm.layer @odd(%{{.*}}: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, index_start = 1 : i64, index_step = 2 : i64, prefix = "layers"}
// CHECK: mm.layer @odd_step(%{{.*}}: tensor<8xf32>) -> tensor<8xf32> attributes {count = 2 : i64, index_start = 1 : i64, index_step = 2 : i64, parameters_from = @odd, prefix = "layers"}
// CHECK: mm.apply_layer @even from 0 to 1
// CHECK: mm.apply_layer @odd_step from 1 to 2
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
    %y = mm.mul %x, %w : tensor<8xf32>
    mm.yield %y : tensor<8xf32>
  }
  mm.entry @forward(%x: tensor<8xf32>) -> tensor<8xf32> {
    %a = mm.apply_layer @even from 0 to 1 (%x) : (tensor<8xf32>) -> tensor<8xf32>
    %b = mm.apply_layer @odd_step from 1 to 2 (%a) : (tensor<8xf32>) -> tensor<8xf32>
    mm.return %b : tensor<8xf32>
  }
}

// -----

// COM: mm.slice with a run-time offset (a decode step reading its own learned
// COM: position, OPT) prints the offset operand; without one it prints none.
// CHECK-LABEL: mm.model @slice_offset
// CHECK: mm.slice %arg0, %arg1 {axis = 0 : i64, start = 2 : i64} : (tensor<10x4xf32>, tensor<i32>) -> tensor<1x4xf32>
// CHECK: mm.slice %arg0 {axis = 0 : i64, start = 0 : i64} : (tensor<10x4xf32>) -> tensor<1x4xf32>
mm.model @slice_offset {
  mm.entry @f(%x: tensor<10x4xf32>, %off: tensor<i32>) -> tensor<1x4xf32> {
    %y = mm.slice %x, %off {axis = 0 : i64, start = 2 : i64} : (tensor<10x4xf32>, tensor<i32>) -> tensor<1x4xf32>
    %z = mm.slice %x {axis = 0 : i64, start = 0 : i64} : (tensor<10x4xf32>) -> tensor<1x4xf32>
    %s = mm.add %y, %z : tensor<1x4xf32>
    mm.return %s : tensor<1x4xf32>
  }
}

// -----

// COM: The length of attention and its backward ops may be one per batch row.
// CHECK-LABEL: mm.model @attention_row_lengths
// CHECK: mm.attention %arg0, %arg0, %arg0, %arg1 {{.*}} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
// CHECK: mm.attention_stats %arg0, %arg0, %arg1 {{.*}} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x1x4xf32>
// CHECK: mm.attention_grad_query %arg0, %arg0, %arg0, %{{.*}}, %{{.*}}, %{{.*}}, %arg1 {{.*}}tensor<2xi32>) -> tensor<2x4x8xf32>
mm.model @attention_row_lengths {
  mm.entry @f(%x: tensor<2x4x8xf32>, %len: tensor<2xi32>) -> tensor<2x4x8xf32> {
    %a = mm.attention %x, %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
    %s = mm.attention_stats %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2xi32>) -> tensor<2x1x4xf32>
    %g = mm.attention_grad_query %x, %x, %x, %a, %a, %s, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x1x4xf32>, tensor<2xi32>) -> tensor<2x4x8xf32>
    mm.return %g : tensor<2x4x8xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @concat_i32
// CHECK: mm.concat %arg0, %arg1 {axis = 0 : i64} : (tensor<2x5xi32>, tensor<3x5xi32>) -> tensor<5x5xi32>
mm.model @concat_i32 {
  mm.entry @f(%a: tensor<2x5xi32>, %b: tensor<3x5xi32>) -> tensor<5x5xi32> {
    %y = mm.concat %a, %b {axis = 0 : i64} : (tensor<2x5xi32>, tensor<3x5xi32>) -> tensor<5x5xi32>
    mm.return %y : tensor<5x5xi32>
  }
}

// -----

// COM: `mean` prints where it is set; the default ignore_index does not.
// CHECK-LABEL: mm.model @cross_entropy_mean
// CHECK: mm.cross_entropy %arg0, %arg1 {mean} : (tensor<4x32xf32>, tensor<4xi32>) -> tensor<f32>
// CHECK: mm.cross_entropy_grad %arg0, %arg1, %{{.*}} {mean} : (tensor<4x32xf32>, tensor<4xi32>, tensor<f32>) -> tensor<4x32xf32>
// CHECK: mm.cross_entropy_grad %arg0, %arg1, %{{.*}} {ignore_index = 3 : i64} :
mm.model @cross_entropy_mean {
  mm.entry @f(%x: tensor<4x32xf32>, %t: tensor<4xi32>) -> (tensor<4x32xf32>, tensor<4x32xf32>) {
    %l = mm.cross_entropy %x, %t {ignore_index = -100 : i64, mean} : (tensor<4x32xf32>, tensor<4xi32>) -> tensor<f32>
    %g = mm.cross_entropy_grad %x, %t, %l {ignore_index = -100 : i64, mean} : (tensor<4x32xf32>, tensor<4xi32>, tensor<f32>) -> tensor<4x32xf32>
    %h = mm.cross_entropy_grad %x, %t, %l {ignore_index = 3 : i64} : (tensor<4x32xf32>, tensor<4xi32>, tensor<f32>) -> tensor<4x32xf32>
    mm.return %g, %h : tensor<4x32xf32>, tensor<4x32xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @constant_i32
// CHECK: mm.constant {value = 1.000000e+00 : f64} : tensor<8xi32>
mm.model @constant_i32 {
  mm.entry @f() -> tensor<8xi32> {
    %y = mm.constant {value = 1.0 : f64} : tensor<8xi32>
    mm.return %y : tensor<8xi32>
  }
}

// -----

// CHECK-LABEL: mm.model @div
// CHECK: mm.div %arg0, %arg1 : tensor<8x8xf32>
mm.model @div {
  mm.entry @f(%a: tensor<8x8xf32>, %b: tensor<8x8xf32>) -> tensor<8x8xf32> {
    %y = mm.div %a, %b : tensor<8x8xf32>
    mm.return %y : tensor<8x8xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @transpose
// CHECK: mm.transpose %arg0 : (tensor<2x8x4xf32>) -> tensor<2x4x8xf32>
mm.model @transpose {
  mm.entry @f(%x: tensor<2x8x4xf32>) -> tensor<2x4x8xf32> {
    %y = mm.transpose %x : (tensor<2x8x4xf32>) -> tensor<2x4x8xf32>
    mm.return %y : tensor<2x4x8xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @reduce_max
// CHECK: mm.reduce_max %arg0 {axis = 1 : i64} : (tensor<8x32x8xf32>) -> tensor<8x8xf32>
mm.model @reduce_max {
  mm.entry @f(%x: tensor<8x32x8xf32>) -> tensor<8x8xf32> {
    %y = mm.reduce_max %x {axis = 1 : i64} : (tensor<8x32x8xf32>) -> tensor<8x8xf32>
    mm.return %y : tensor<8x8xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @reduce_max_grad
// CHECK: mm.reduce_max_grad %arg0, %arg1 {axis = 1 : i64} : (tensor<8x32x8xf32>, tensor<8x8xf32>) -> tensor<8x32x8xf32>
mm.model @reduce_max_grad {
  mm.entry @f(%x: tensor<8x32x8xf32>, %dy: tensor<8x8xf32>) -> tensor<8x32x8xf32> {
    %y = mm.reduce_max_grad %x, %dy {axis = 1 : i64} : (tensor<8x32x8xf32>, tensor<8x8xf32>) -> tensor<8x32x8xf32>
    mm.return %y : tensor<8x32x8xf32>
  }
}

// -----

// COM: eps prints where it is not the default (1e-12).
// CHECK-LABEL: mm.model @l2_normalize
// CHECK: mm.l2_normalize %arg0 : tensor<8x64xf32>
// CHECK: mm.l2_normalize %arg0 {eps = 5.000000e-01 : f64} : tensor<8x64xf32>
mm.model @l2_normalize {
  mm.entry @f(%x: tensor<8x64xf32>) -> (tensor<8x64xf32>, tensor<8x64xf32>) {
    %y = mm.l2_normalize %x : tensor<8x64xf32>
    %z = mm.l2_normalize %x {eps = 0.5 : f64} : tensor<8x64xf32>
    mm.return %y, %z : tensor<8x64xf32>, tensor<8x64xf32>
  }
}

// -----

// CHECK-LABEL: mm.model @l2_normalize_grad
// CHECK: mm.l2_normalize_grad %arg0, %arg1 {eps = 9.9999999999999998E-13 : f64} : (tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
mm.model @l2_normalize_grad {
  mm.entry @f(%x: tensor<8x64xf32>, %dy: tensor<8x64xf32>) -> tensor<8x64xf32> {
    %y = mm.l2_normalize_grad %x, %dy {eps = 1.0e-12 : f64} : (tensor<8x64xf32>, tensor<8x64xf32>) -> tensor<8x64xf32>
    mm.return %y : tensor<8x64xf32>
  }
}

// -----

// COM: f32 rows (image features) and i32 rows (token ids).
// CHECK-LABEL: mm.model @gather
// CHECK: mm.gather %arg0, %arg2 : (tensor<8x65x128xf32>, tensor<6xi32>) -> tensor<6x65x128xf32>
// CHECK: mm.gather %arg1, %arg2 : (tensor<8x32xi32>, tensor<6xi32>) -> tensor<6x32xi32>
mm.model @gather {
  mm.entry @f(%x: tensor<8x65x128xf32>, %ids: tensor<8x32xi32>, %idx: tensor<6xi32>) -> (tensor<6x65x128xf32>, tensor<6x32xi32>) {
    %y = mm.gather %x, %idx : (tensor<8x65x128xf32>, tensor<6xi32>) -> tensor<6x65x128xf32>
    %z = mm.gather %ids, %idx : (tensor<8x32xi32>, tensor<6xi32>) -> tensor<6x32xi32>
    mm.return %y, %z : tensor<6x65x128xf32>, tensor<6x32xi32>
  }
}

// -----

// CHECK-LABEL: mm.model @sample_negatives
// CHECK: mm.sample_negatives %arg0, %arg1 : (tensor<8x8xf32>, tensor<8xf32>) -> tensor<8xi32>
mm.model @sample_negatives {
  mm.entry @f(%sim: tensor<8x8xf32>, %u: tensor<8xf32>) -> tensor<8xi32> {
    %y = mm.sample_negatives %sim, %u : (tensor<8x8xf32>, tensor<8xf32>) -> tensor<8xi32>
    mm.return %y : tensor<8xi32>
  }
}

// -----

// CHECK-LABEL: mm.model @iota
// CHECK: mm.iota : tensor<8xi32>
mm.model @iota {
  mm.entry @f() -> tensor<8xi32> {
    %y = mm.iota : tensor<8xi32>
    mm.return %y : tensor<8xi32>
  }
}

// -----

// COM: reshape keeps the elements in row-major order (ITC's text features drop their sequence axis).
// CHECK-LABEL: mm.model @reshape
// CHECK: mm.reshape %arg0 : (tensor<8x1x64xf32>) -> tensor<8x64xf32>
mm.model @reshape {
  mm.entry @f(%x: tensor<8x1x64xf32>) -> tensor<8x64xf32> {
    %y = mm.reshape %x : (tensor<8x1x64xf32>) -> tensor<8x64xf32>
    mm.return %y : tensor<8x64xf32>
  }
}

// -----

// COM: a constant initialiser (BLIP-2's ITC temperature) on a 0-d parameter.
// CHECK-LABEL: mm.model @constant_init
// CHECK: mm.param @temp : tensor<f32> group @g init #mm.init<constant, 7.000000e-02>
mm.model @constant_init {
  mm.group @g
  mm.param @temp : tensor<f32> group @g init #mm.init<constant, 0.07>
}
