// RUN: mmc-opt %s -split-input-file -verify-diagnostics
// COM: Each verifier rejects what a model file must not say, with a message that says why.

mm.model @stage_unknown_group {
  mm.group @g
  // expected-error @+1 {{stage @s trains group @nope, which is not an mm.group of this model}}
  mm.stage @s trainable [@nope] loss @loss data "caption"
}

// -----

mm.model @param_no_group {
  mm.group @g
  // expected-error @+1 {{parameter 'w' is in no group; every parameter must belong to exactly one mm.group}}
  mm.param @"w" : tensor<4xf32> init #mm.init<zeros>
}

// -----

mm.model @param_bad_group {
  mm.group @g
  // expected-error @+1 {{names group @h, which is not an mm.group of this model}}
  mm.param @"w" : tensor<4xf32> group @h init #mm.init<zeros>
}

// -----

mm.model @stage_nothing {
  mm.group @g
  // expected-error @+1 {{stage @s trains no group}}
  mm.stage @s trainable [] loss @loss data "caption"
}

// -----

mm.model @stage_schedule {
  mm.group @g
  // expected-error @+1 {{unknown schedule 'step'}}
  mm.stage @s trainable [@g] loss @loss data "caption" {schedule = "step"}
}

// -----

mm.model @mask_needs_layout {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{mask itg_multimodal_causal needs a sequence layout #mm.seq_layout<query = N, text = M>}}
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itg_multimodal_causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @mask_layout_too_long {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{covers 6 positions but the sequence has 4}}
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @mask_wrong_segments {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{mask itc_unimodal needs segments (query, text) in that order}}
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<text = 2, query = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @image_prefix_needs_image {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{mask image_prefix_causal needs segments (image, text) in that order}}
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<image_prefix_causal>, layout = #mm.seq_layout<query = 2, text = 2>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @padding_needs_length {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{a padding mask needs the run-time length operand}}
    %a = mm.attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<padding>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @cross_attention_causal {
  mm.entry @f(%x: tensor<1x4x8xf32>, %y: tensor<1x6x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{cross-attention (4 queries, 6 keys) needs a bidirectional mask, got causal}}
    %a = mm.attention %x, %y, %y {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x6x8xf32>, tensor<1x6x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @heads {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{num_heads 3 must be a positive multiple of num_kv_heads 2}}
    %a = mm.attention %x, %x, %x {num_heads = 3 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

// expected-error @+1 {{segment 'query' must have a positive length, got 0}}
#bad = #mm.seq_layout<query = 0, text = 4>

// -----

mm.model @linear_mismatch {
  mm.entry @f(%x: tensor<1x4x8xf32>, %w: tensor<16x7xf32>) -> tensor<1x4x16xf32> {
    // expected-error @+1 {{weight 16x7 does not contract with input 1x4x8: expected [N, 8]}}
    %y = mm.linear %x, %w : (tensor<1x4x8xf32>, tensor<16x7xf32>) -> tensor<1x4x16xf32>
    mm.return %y : tensor<1x4x16xf32>
  }
}

// -----

mm.model @linear_bias {
  mm.entry @f(%x: tensor<1x4x8xf32>, %w: tensor<16x8xf32>, %b: tensor<8xf32>) -> tensor<1x4x16xf32> {
    // expected-error @+1 {{bias 8 should be [16]}}
    %y = mm.linear %x, %w, %b : (tensor<1x4x8xf32>, tensor<16x8xf32>, tensor<8xf32>) -> tensor<1x4x16xf32>
    mm.return %y : tensor<1x4x16xf32>
  }
}

// -----

mm.model @linear_result {
  mm.entry @f(%x: tensor<1x4x8xf32>, %w: tensor<16x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{result shape 1x4x8 should be 1x4x16}}
    %y = mm.linear %x, %w : (tensor<1x4x8xf32>, tensor<16x8xf32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

mm.model @add_mismatch {
  mm.entry @f(%x: tensor<1x4x8xf32>, %y: tensor<1x4x9xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{requires the same type for all operands and results}}
    %z = "mm.add"(%x, %y) : (tensor<1x4x8xf32>, tensor<1x4x9xf32>) -> tensor<1x4x8xf32>
    mm.return %z : tensor<1x4x8xf32>
  }
}

// -----

mm.model @norm_shape {
  mm.entry @f(%x: tensor<1x4x8xf32>, %g: tensor<4xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{scale/shift 4 should be [8]}}
    %y = mm.rms_norm %x, %g {eps = 1.0e-6 : f64} : (tensor<1x4x8xf32>, tensor<4xf32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

mm.model @patch_size {
  mm.entry @f(%x: tensor<1x3x10x10xf32>, %w: tensor<8x3x4x4xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{image 10x10 is not a multiple of the patch size 4}}
    %y = mm.patch_embed %x, %w : (tensor<1x3x10x10xf32>, tensor<8x3x4x4xf32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

mm.model @rope_heads {
  mm.entry @f(%x: tensor<1x4x12xf32>) -> tensor<1x4x12xf32> {
    // expected-error @+1 {{width 12 does not split into 4 heads of even size}}
    %y = mm.rope %x {num_heads = 4 : i64, theta = 10000.0 : f64} : tensor<1x4x12xf32>
    mm.return %y : tensor<1x4x12xf32>
  }
}

// -----

mm.model @slice_range {
  mm.entry @f(%x: tensor<1x5x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{slice [2, 6) runs outside the input's 5 positions}}
    %y = mm.slice %x {axis = 1 : i64, start = 2 : i64} : (tensor<1x5x8xf32>) -> tensor<1x4x8xf32>
    mm.return %y : tensor<1x4x8xf32>
  }
}

// -----

mm.model @concat_shape {
  mm.entry @f(%a: tensor<1x1x8xf32>, %b: tensor<1x4x9xf32>) -> tensor<1x5x8xf32> {
    // expected-error @+1 {{operand shapes 1x1x8 and 1x4x9 differ outside axis 1}}
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<1x1x8xf32>, tensor<1x4x9xf32>) -> tensor<1x5x8xf32>
    mm.return %y : tensor<1x5x8xf32>
  }
}

// -----

mm.model @broadcast_shape {
  mm.entry @f(%a: tensor<3x8xf32>) -> tensor<1x5x8xf32> {
    // expected-error @+1 {{cannot broadcast 3x8 to 1x5x8}}
    %y = mm.broadcast %a : (tensor<3x8xf32>) -> tensor<1x5x8xf32>
    mm.return %y : tensor<1x5x8xf32>
  }
}

// -----

mm.model @merge_width {
  mm.entry @f(%e: tensor<1x8x16xf32>, %ids: tensor<1x8xi32>, %f: tensor<1x4x8xf32>) -> tensor<1x8x16xf32> {
    // expected-error @+1 {{features 1x4x8 do not match embeds 1x8x16 in batch and width}}
    %y = mm.merge_image_features %e, %ids, %f {image_token_index = 4 : i64} : (tensor<1x8x16xf32>, tensor<1x8xi32>, tensor<1x4x8xf32>) -> tensor<1x8x16xf32>
    mm.return %y : tensor<1x8x16xf32>
  }
}

// -----

mm.model @embedding_shape {
  mm.entry @f(%ids: tensor<1x8xi32>, %t: tensor<32x16xf32>) -> tensor<1x8x8xf32> {
    // expected-error @+1 {{result shape 1x8x8 should be 1x8x16}}
    %y = mm.embedding %ids, %t : (tensor<1x8xi32>, tensor<32x16xf32>) -> tensor<1x8x8xf32>
    mm.return %y : tensor<1x8x8xf32>
  }
}

// -----

mm.model @weight_type {
  mm.group @g
  mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
  mm.entry @f() -> tensor<8xf32> {
    // expected-error @+1 {{type 'tensor<8xf32>' does not match parameter @w of type 'tensor<4xf32>'}}
    %w = mm.weight @"w" : tensor<8xf32>
    mm.return %w : tensor<8xf32>
  }
}

// -----

mm.model @weight_unknown {
  mm.entry @f() -> tensor<8xf32> {
    // expected-error @+1 {{refers to @nope, which is not a parameter declared in the enclosing model}}
    %w = mm.weight @"nope" : tensor<8xf32>
    mm.return %w : tensor<8xf32>
  }
}

// -----

mm.model @entry_return {
  // expected-error @+2 {{returns 'tensor<4xf32>' but the entry declares results 'tensor<8xf32>'}}
  mm.entry @f(%x: tensor<4xf32>) -> tensor<8xf32> {
    mm.return %x : tensor<4xf32>
  }
}

// -----

mm.model @apply_range {
  mm.group @g
  mm.layer @block(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers"} {
    mm.yield %x : tensor<4xf32>
  }
  mm.entry @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    // expected-error @+1 {{instance range [1, 3) is empty or outside layer @block's 2 instances}}
    %y = mm.apply_layer @block from 1 to 3 (%x) : (tensor<4xf32>) -> tensor<4xf32>
    mm.return %y : tensor<4xf32>
  }
}

// -----

mm.model @duplicate_names {
  mm.group @g
  mm.param @"layers.0.w" : tensor<4xf32> group @g init #mm.init<zeros>
  mm.layer @block(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers"} {
    // expected-error @+1 {{instance 0 of layer @block names parameter 'layers.0.w', which is already declared}}
    mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
    mm.yield %x : tensor<4xf32>
  }
}

// -----

mm.model @dynamic_shape {
  mm.group @g
  // expected-error @+1 {{attribute 'type' failed to satisfy constraint}}
  mm.param @"w" : tensor<?xf32> group @g init #mm.init<zeros>
}

// -----

mm.model @init_kind {
  mm.group @g
  // expected-error @+1 {{unknown initialiser 'xavier'; expected zeros, ones, normal or constant}}
  mm.param @"w" : tensor<4xf32> group @g init #mm.init<xavier>
}

// -----

mm.model @layer_count {
  // expected-error @+1 {{count must be positive, got -1}}
  mm.layer @block(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = -1 : i64, prefix = "layers"} {
    mm.yield %x : tensor<4xf32>
  }
}

// -----

mm.model @layer_index_step {
  mm.group @g
  // COM: Reported by the layer, not as the two instances' clash on layers.0.w it would cause.
  // expected-error @+1 {{index_start must be non-negative and index_step positive, got 0 and 0}}
  mm.layer @block(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers", index_step = 0 : i64} {
    mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
    mm.yield %x : tensor<4xf32>
  }
}

// -----

mm.model @layer_shared_index_step {
  mm.group @g
  mm.layer @odd(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers", index_start = 1 : i64, index_step = 2 : i64} {
    mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
    mm.yield %x : tensor<4xf32>
  }
  // COM: Instances 0, 1 would read layers.1.w and layers.2.w, not @odd's layers.1.w and layers.3.w.
  // expected-error @+1 {{shares the parameters of @odd and so needs its count, prefix, index_start and index_step}}
  mm.layer @odd_step(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers", index_start = 1 : i64, parameters_from = @odd} {
    mm.yield %x : tensor<4xf32>
  }
}

// -----

mm.model @interleaved_names_clash {
  mm.group @g
  // COM: @even names layers.0.w and layers.2.w; @odd, starting at 2 instead of 1, names layers.2.w again.
  mm.layer @even(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers", index_step = 2 : i64} {
    mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
    mm.yield %x : tensor<4xf32>
  }
  mm.layer @odd(%x: tensor<4xf32>) -> tensor<4xf32> attributes {count = 2 : i64, prefix = "layers", index_start = 2 : i64, index_step = 2 : i64} {
    // expected-error @+1 {{instance 0 of layer @odd names parameter 'layers.2.w', which is already declared}}
    mm.param @"w" : tensor<4xf32> group @g init #mm.init<zeros>
    mm.yield %x : tensor<4xf32>
  }
}

// -----

mm.model @stage_unknown_loss {
  mm.group @g
  // expected-error @+1 {{stage @s names loss @nope, which is not an mm.entry of this model}}
  mm.stage @s trainable [@g] loss @nope data "caption"
}

// -----

mm.model @stage_loss_not_scalar {
  mm.group @g
  // expected-error @+1 {{loss entry @f must return one floating-point scalar}}
  mm.stage @s trainable [@g] loss @f data "caption"
  mm.entry @f(%x: tensor<4xf32>) -> tensor<4xf32> {
    mm.return %x : tensor<4xf32>
  }
}

// -----

mm.model @cross_entropy_shape {
  mm.entry @f(%x: tensor<4x32xf32>, %t: tensor<3xi32>) -> tensor<f32> {
    // expected-error @+1 {{targets 3 must have the logits' shape 4x32 without its last (vocabulary) dimension}}
    %l = mm.cross_entropy %x, %t : (tensor<4x32xf32>, tensor<3xi32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
}

// -----

mm.model @fused_linear_residual {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<6x8xf32>, %r: tensor<4x8xf32>) -> tensor<4x6xf32> {
    // expected-error @+1 {{residual 4x8 should have the result's type 'tensor<4x6xf32>'}}
    %y = mm.fused_linear %x, %w residual %r : (tensor<4x8xf32>, tensor<6x8xf32>, tensor<4x8xf32>) -> tensor<4x6xf32>
    mm.return %y : tensor<4x6xf32>
  }
}

// -----

mm.model @grad_addend {
  mm.entry @f(%dy: tensor<4x6xf32>, %w: tensor<6x8xf32>, %a: tensor<4x6xf32>) -> tensor<4x8xf32> {
    // expected-error @+1 {{addend 4x6 should have the result's type 'tensor<4x8xf32>'}}
    %y = mm.linear_grad_input %dy, %w addend %a : (tensor<4x6xf32>, tensor<6x8xf32>, tensor<4x6xf32>) -> tensor<4x8xf32>
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

mm.model @fused_elementwise_op {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>) -> tensor<4x8xf32> {
    %y = mm.fused_elementwise (%x, %w) : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%p: tensor<4x8xf32>, %q: tensor<8x8xf32>):
      // expected-error @+1 {{cannot be fused elementwise}}
      %s = mm.linear %p, %q : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
      mm.yield %s : tensor<4x8xf32>
    }
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

mm.model @fused_elementwise_args {
  mm.entry @f(%x: tensor<4x8xf32>) -> tensor<4x8xf32> {
    // expected-error @+1 {{body has 2 arguments for 1 inputs}}
    %y = mm.fused_elementwise (%x) : (tensor<4x8xf32>) -> tensor<4x8xf32> {
    ^bb0(%p: tensor<4x8xf32>, %q: tensor<4x8xf32>):
      %s = mm.add %p, %q : tensor<4x8xf32>
      mm.yield %s : tensor<4x8xf32>
    }
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

mm.model @fused_elementwise_shape {
  mm.entry @f(%x: tensor<4x8xf32>, %z: tensor<8xf32>) -> tensor<4x8xf32> {
    %y = mm.fused_elementwise (%x, %z) : (tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32> {
    ^bb0(%p: tensor<4x8xf32>, %q: tensor<8xf32>):
      // expected-error @+1 {{operand type 'tensor<8xf32>' differs from the fused result's 'tensor<4x8xf32>'}}
      %s = mm.silu %q : tensor<8xf32>
      mm.yield %p : tensor<4x8xf32>
    }
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

mm.model @conv_channels {
  mm.entry @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x2x3x3xf32>) -> tensor<1x4x8x8xf32> {
    // expected-error @+1 {{weight 4x2x3x3 does not take the input's 3 channels}}
    %y = mm.conv2d %x, %w {stride = 1 : i64, padding = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x2x3x3xf32>) -> tensor<1x4x8x8xf32>
    mm.return %y : tensor<1x4x8x8xf32>
  }
}

// -----

mm.model @conv_stride {
  mm.entry @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32> {
    // expected-error @+1 {{stride 0 must be >= 1 and padding 1 >= 0}}
    %y = mm.conv2d %x, %w {stride = 0 : i64, padding = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>) -> tensor<1x4x8x8xf32>
    mm.return %y : tensor<1x4x8x8xf32>
  }
}

// -----

mm.model @conv_result {
  mm.entry @f(%x: tensor<1x3x8x8xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>) -> tensor<1x4x8x8xf32> {
    // COM: stride 2 halves the 8x8 map.
    // expected-error @+1 {{result shape 1x4x8x8 should be 1x4x4x4}}
    %y = mm.conv2d %x, %w, %b {stride = 2 : i64, padding = 1 : i64} : (tensor<1x3x8x8xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x8x8xf32>
    mm.return %y : tensor<1x4x8x8xf32>
  }
}

// -----

mm.model @conv_kernel {
  mm.entry @f(%x: tensor<1x3x2x2xf32>, %w: tensor<4x3x5x5xf32>) -> tensor<1x4x1x1xf32> {
    // expected-error @+1 {{kernel 5x5 does not fit the 2x2 input with padding 0}}
    %y = mm.conv2d %x, %w {stride = 1 : i64, padding = 0 : i64} : (tensor<1x3x2x2xf32>, tensor<4x3x5x5xf32>) -> tensor<1x4x1x1xf32>
    mm.return %y : tensor<1x4x1x1xf32>
  }
}

// -----

mm.model @attention_length_rows {
  mm.entry @f(%x: tensor<2x4x8xf32>, %len: tensor<3xi32>) -> tensor<2x4x8xf32> {
    // COM: one length per batch row: 2, not 3.
    // expected-error @+1 {{length must be a scalar or one per batch row [2], got 3}}
    %a = mm.attention %x, %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<padding>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<3xi32>) -> tensor<2x4x8xf32>
    mm.return %a : tensor<2x4x8xf32>
  }
}

// -----

mm.model @attention_length_rank {
  mm.entry @f(%x: tensor<2x4x8xf32>, %len: tensor<2x1xi32>) -> tensor<2x4x8xf32> {
    // expected-error @+1 {{length must be a scalar or one per batch row [2], got 2x1}}
    %a = mm.attention %x, %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x1xi32>) -> tensor<2x4x8xf32>
    mm.return %a : tensor<2x4x8xf32>
  }
}

// -----

mm.model @attention_stats_length {
  mm.entry @f(%x: tensor<2x4x8xf32>, %len: tensor<4xi32>) -> tensor<2x1x4xf32> {
    // expected-error @+1 {{length must be a scalar or one per batch row [2], got 4}}
    %s = mm.attention_stats %x, %x, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<4xi32>) -> tensor<2x1x4xf32>
    mm.return %s : tensor<2x1x4xf32>
  }
}

// -----

mm.model @fused_attention_result_type {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x1x4xf32> {
    // expected-error @+1 {{result type must equal the query type}}
    %y, %s = mm.fused_attention %x, %x, %x {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> (tensor<1x4x4xf32>, tensor<1x1x4xf32>)
    mm.return %s : tensor<1x1x4xf32>
  }
}

// -----

mm.model @fused_attention_stats_shape {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x4xf32> {
    // expected-error @+1 {{statistics 1x4x4 should be [1, 2, 4]}}
    %y, %s = mm.fused_attention %x, %x, %x {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> (tensor<1x4x8xf32>, tensor<1x4x4xf32>)
    mm.return %s : tensor<1x4x4xf32>
  }
}

// -----

mm.model @fused_attention_grad_types {
  mm.entry @f(%x: tensor<1x4x8xf32>, %s: tensor<1x1x4xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{results must have the query's, the key's and the value's types}}
    %dq, %dk, %dv = mm.fused_attention_grad %x, %x, %x, %x, %x, %s {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x1x4xf32>) -> (tensor<1x4x8xf32>, tensor<1x4x4xf32>, tensor<1x4x8xf32>)
    mm.return %dq : tensor<1x4x8xf32>
  }
}

// -----

mm.model @attention_grad_length {
  mm.entry @f(%x: tensor<2x4x8xf32>, %s: tensor<2x1x4xf32>, %len: tensor<1xi32>) -> tensor<2x4x8xf32> {
    // expected-error @+1 {{length must be a scalar or one per batch row [2], got 1}}
    %g = mm.attention_grad_key %x, %x, %x, %x, %x, %s, %len {num_heads = 1 : i64, num_kv_heads = 1 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64} : (tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x4x8xf32>, tensor<2x1x4xf32>, tensor<1xi32>) -> tensor<2x4x8xf32>
    mm.return %g : tensor<2x4x8xf32>
  }
}

// -----

mm.model @concat_element_types {
  mm.entry @f(%a: tensor<2x3xi32>, %b: tensor<2x2xf32>) -> tensor<2x5xi32> {
    // expected-error @+1 {{operands and result must have one element type}}
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<2x3xi32>, tensor<2x2xf32>) -> tensor<2x5xi32>
    mm.return %y : tensor<2x5xi32>
  }
}

// -----

mm.model @concat_result_element_type {
  mm.entry @f(%a: tensor<2x3xf32>, %b: tensor<2x2xf32>) -> tensor<2x5xi32> {
    // expected-error @+1 {{operands and result must have one element type}}
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<2x3xf32>, tensor<2x2xf32>) -> tensor<2x5xi32>
    mm.return %y : tensor<2x5xi32>
  }
}

// -----

mm.model @constant_i32_fraction {
  mm.entry @f() -> tensor<4xi32> {
    // expected-error @+1 {{an i32 constant needs an integer value, got 5.000000e-01}}
    %y = mm.constant {value = 0.5 : f64} : tensor<4xi32>
    mm.return %y : tensor<4xi32>
  }
}

// -----

mm.model @transpose_result {
  mm.entry @f(%x: tensor<2x8x4xf32>) -> tensor<2x8x4xf32> {
    // expected-error @+1 {{result 2x8x4 should be 2x4x8}}
    %y = mm.transpose %x : (tensor<2x8x4xf32>) -> tensor<2x8x4xf32>
    mm.return %y : tensor<2x8x4xf32>
  }
}

// -----

mm.model @transpose_rank {
  mm.entry @f(%x: tensor<8xf32>) -> tensor<8xf32> {
    // expected-error @+1 {{needs at least two axes, got 8}}
    %y = mm.transpose %x : (tensor<8xf32>) -> tensor<8xf32>
    mm.return %y : tensor<8xf32>
  }
}

// -----

mm.model @reduce_max_axis {
  mm.entry @f(%x: tensor<2x3x4xf32>) -> tensor<2x3xf32> {
    // expected-error @+1 {{axis 3 is outside the input's 3 axes}}
    %y = mm.reduce_max %x {axis = 3 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3xf32>
    mm.return %y : tensor<2x3xf32>
  }
}

// -----

mm.model @reduce_max_result {
  mm.entry @f(%x: tensor<2x3x4xf32>) -> tensor<2x3xf32> {
    // expected-error @+1 {{result 2x3 should be 2x4 (the input without axis 1)}}
    %y = mm.reduce_max %x {axis = 1 : i64} : (tensor<2x3x4xf32>) -> tensor<2x3xf32>
    mm.return %y : tensor<2x3xf32>
  }
}

// -----

mm.model @gather_result {
  mm.entry @f(%x: tensor<8x4xf32>, %idx: tensor<6xi32>) -> tensor<8x4xf32> {
    // expected-error @+1 {{result 8x4 should be 6x4 of the input's element type}}
    %y = mm.gather %x, %idx : (tensor<8x4xf32>, tensor<6xi32>) -> tensor<8x4xf32>
    mm.return %y : tensor<8x4xf32>
  }
}

// -----

mm.model @gather_element_type {
  mm.entry @f(%x: tensor<8x4xi32>, %idx: tensor<6xi32>) -> tensor<6x4xf32> {
    // expected-error @+1 {{result 6x4 should be 6x4 of the input's element type}}
    %y = mm.gather %x, %idx : (tensor<8x4xi32>, tensor<6xi32>) -> tensor<6x4xf32>
    mm.return %y : tensor<6x4xf32>
  }
}

// -----

mm.model @sample_negatives_square {
  mm.entry @f(%sim: tensor<4x5xf32>, %u: tensor<4xf32>) -> tensor<4xi32> {
    // expected-error @+1 {{needs square similarities [B, B] with B >= 2, got 4x5}}
    %y = mm.sample_negatives %sim, %u : (tensor<4x5xf32>, tensor<4xf32>) -> tensor<4xi32>
    mm.return %y : tensor<4xi32>
  }
}

// -----

mm.model @sample_negatives_one_row {
  mm.entry @f(%sim: tensor<1x1xf32>, %u: tensor<1xf32>) -> tensor<1xi32> {
    // COM: one row has no negative to draw.
    // expected-error @+1 {{needs square similarities [B, B] with B >= 2, got 1x1}}
    %y = mm.sample_negatives %sim, %u : (tensor<1x1xf32>, tensor<1xf32>) -> tensor<1xi32>
    mm.return %y : tensor<1xi32>
  }
}

// -----

mm.model @sample_negatives_uniform {
  mm.entry @f(%sim: tensor<4x4xf32>, %u: tensor<3xf32>) -> tensor<4xi32> {
    // expected-error @+1 {{needs one uniform number and gives one index per row: [4]}}
    %y = mm.sample_negatives %sim, %u : (tensor<4x4xf32>, tensor<3xf32>) -> tensor<4xi32>
    mm.return %y : tensor<4xi32>
  }
}

// -----

mm.model @reshape_count {
  mm.entry @f(%x: tensor<8x1x64xf32>) -> tensor<8x60xf32> {
    // expected-error @+1 {{cannot reshape 8x1x64 (512 elements) to 8x60 (480 elements) of the same element type}}
    %y = mm.reshape %x : (tensor<8x1x64xf32>) -> tensor<8x60xf32>
    mm.return %y : tensor<8x60xf32>
  }
}

// -----

mm.model @l2_normalize_eps {
  mm.entry @f(%x: tensor<8x64xf32>) -> tensor<8x64xf32> {
    // expected-error @+1 {{eps must be positive}}
    %y = mm.l2_normalize %x {eps = 0.0 : f64} : tensor<8x64xf32>
    mm.return %y : tensor<8x64xf32>
  }
}

// COM: T5's relative position bias: the table's shape, its distance, the masks it applies under.
// -----

mm.model @bias_without_distance {
  mm.entry @f(%x: tensor<1x4x8xf32>, %t: tensor<8x2xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{a position_bias table needs bias_max_distance >= 1}}
    %a = mm.attention %x, %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<8x2xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @bias_wrong_heads {
  mm.entry @f(%x: tensor<1x4x8xf32>, %t: tensor<8x3xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{position_bias must be [num_buckets, 2], got 8x3}}
    %a = mm.attention %x, %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<8x3xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @bias_odd_buckets {
  mm.entry @f(%x: tensor<1x4x8xf32>, %t: tensor<5x2xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{position_bias needs an even number of at least 4 buckets under a bidirectional mask, got 5}}
    %a = mm.attention %x, %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<5x2xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @bias_under_blip2_mask {
  mm.entry @f(%x: tensor<1x4x8xf32>, %t: tensor<8x2xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{a position_bias applies under a bidirectional, padding or causal mask, not itm_bidirectional}}
    %a = mm.attention %x, %x, %x bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itm_bidirectional>, scale = 1.0 : f64, layout = #mm.seq_layout<query = 2, text = 2>, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<8x2xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @distance_without_bias {
  mm.entry @f(%x: tensor<1x4x8xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{bias_max_distance is set but there is no position_bias table}}
    %a = mm.attention %x, %x, %x {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @bias_cross_attention {
  mm.entry @f(%x: tensor<1x4x8xf32>, %y: tensor<1x3x8xf32>, %t: tensor<8x2xf32>) -> tensor<1x4x8xf32> {
    // expected-error @+1 {{a position_bias needs self-attention (as many keys as queries)}}
    %a = mm.attention %x, %y, %y bias %t {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64, bias_max_distance = 16 : i64} : (tensor<1x4x8xf32>, tensor<1x3x8xf32>, tensor<1x3x8xf32>, tensor<8x2xf32>) -> tensor<1x4x8xf32>
    mm.return %a : tensor<1x4x8xf32>
  }
}

// -----

mm.model @bias_grad_needs_table {
  mm.entry @f(%x: tensor<1x4x8xf32>, %l: tensor<1x2x4xf32>) -> tensor<8x2xf32> {
    // expected-error @+1 {{needs the position_bias table}}
    %g = mm.attention_grad_position_bias %x, %x, %x, %x, %x, %l {num_heads = 2 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 1.0 : f64} : (tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x4x8xf32>, tensor<1x2x4xf32>) -> tensor<8x2xf32>
    mm.return %g : tensor<8x2xf32>
  }
}
