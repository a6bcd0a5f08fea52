// One entry per op case of tests/unit/compiler/KernelsTest.cpp, which compiles this
// file for the backend under test and checks every entry against tests/reference/RefOps.
mm.model @kernels {
  mm.group @g
  mm.param @"w" : tensor<12x20xf32> group @g init #mm.init<normal, 0.5>
  mm.entry @linear_bias(%x: tensor<2x3x20xf32>, %b: tensor<12xf32>) -> tensor<2x3x12xf32> {
    %w = mm.weight @"w" : tensor<12x20xf32>
    %y = mm.linear %x, %w, %b : (tensor<2x3x20xf32>, tensor<12x20xf32>, tensor<12xf32>) -> tensor<2x3x12xf32>
    mm.return %y : tensor<2x3x12xf32>
  }
  mm.entry @linear(%x: tensor<5x7xf32>, %w: tensor<3x7xf32>) -> tensor<5x3xf32> {
    %y = mm.linear %x, %w : (tensor<5x7xf32>, tensor<3x7xf32>) -> tensor<5x3xf32>
    mm.return %y : tensor<5x3xf32>
  }
  mm.entry @embedding(%ids: tensor<2x6xi32>, %t: tensor<10x8xf32>) -> tensor<2x6x8xf32> {
    %y = mm.embedding %ids, %t : (tensor<2x6xi32>, tensor<10x8xf32>) -> tensor<2x6x8xf32>
    mm.return %y : tensor<2x6x8xf32>
  }
  mm.entry @patch_embed(%p: tensor<2x3x8x12xf32>, %w: tensor<5x3x4x4xf32>) -> tensor<2x6x5xf32> {
    %y = mm.patch_embed %p, %w : (tensor<2x3x8x12xf32>, tensor<5x3x4x4xf32>) -> tensor<2x6x5xf32>
    mm.return %y : tensor<2x6x5xf32>
  }
  mm.entry @layer_norm(%x: tensor<3x4x16xf32>, %g: tensor<16xf32>, %b: tensor<16xf32>) -> tensor<3x4x16xf32> {
    %y = mm.layer_norm %x, %g, %b {eps = 1.0e-5 : f64} : (tensor<3x4x16xf32>, tensor<16xf32>, tensor<16xf32>) -> tensor<3x4x16xf32>
    mm.return %y : tensor<3x4x16xf32>
  }
  mm.entry @rms_norm(%x: tensor<3x16xf32>, %g: tensor<16xf32>) -> tensor<3x16xf32> {
    %y = mm.rms_norm %x, %g {eps = 1.0e-6 : f64} : (tensor<3x16xf32>, tensor<16xf32>) -> tensor<3x16xf32>
    mm.return %y : tensor<3x16xf32>
  }
  mm.entry @gelu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.gelu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @gelu_wide(%x: tensor<2801xf32>) -> tensor<2801xf32> {
    %y = mm.gelu %x : tensor<2801xf32>
    mm.return %y : tensor<2801xf32>
  }
  mm.entry @gelu_grad_wide(%dy: tensor<2801xf32>, %x: tensor<2801xf32>) -> tensor<2801xf32> {
    %y = mm.activation_grad %dy, %x {kind = #mm.activation<gelu>} : (tensor<2801xf32>, tensor<2801xf32>) -> tensor<2801xf32>
    mm.return %y : tensor<2801xf32>
  }
  mm.entry @gelu_tanh(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.gelu_tanh %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @quick_gelu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.quick_gelu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @silu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.silu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @relu(%x: tensor<37xf32>) -> tensor<37xf32> {
    %y = mm.relu %x : tensor<37xf32>
    mm.return %y : tensor<37xf32>
  }
  mm.entry @add(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %y = mm.add %a, %b : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  mm.entry @mul(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %y = mm.mul %a, %b : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  mm.entry @rope(%x: tensor<2x40x24xf32>) -> tensor<2x40x24xf32> {
    %y = mm.rope %x {num_heads = 3 : i64, theta = 10000.0 : f64} : tensor<2x40x24xf32>
    mm.return %y : tensor<2x40x24xf32>
  }
  mm.entry @concat(%a: tensor<2x1x4xf32>, %b: tensor<2x3x4xf32>) -> tensor<2x4x4xf32> {
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<2x1x4xf32>, tensor<2x3x4xf32>) -> tensor<2x4x4xf32>
    mm.return %y : tensor<2x4x4xf32>
  }
  mm.entry @slice(%x: tensor<2x6x3xf32>) -> tensor<2x3x3xf32> {
    %y = mm.slice %x {axis = 1 : i64, start = 2 : i64} : (tensor<2x6x3xf32>) -> tensor<2x3x3xf32>
    mm.return %y : tensor<2x3x3xf32>
  }
  // The range at start + a run-time offset; positions outside the input read zero.
  mm.entry @slice_offset(%x: tensor<2x6x3xf32>, %off: tensor<i32>) -> tensor<2x3x3xf32> {
    %y = mm.slice %x, %off {axis = 1 : i64, start = 2 : i64} : (tensor<2x6x3xf32>, tensor<i32>) -> tensor<2x3x3xf32>
    mm.return %y : tensor<2x3x3xf32>
  }
  // A convolution over a 32 x 32 output grid (the CPU's column rows padded
  // past 4 KiB), and copies of 2^16 elements or more (the CPU shares their
  // outer blocks among the threads).
  mm.entry @conv2d_32x32(%x: tensor<1x3x32x32xf32>, %w: tensor<4x3x3x3xf32>, %b: tensor<4xf32>) -> tensor<1x4x32x32xf32> {
    %y = mm.conv2d %x, %w, %b {stride = 1 : i64, padding = 1 : i64} : (tensor<1x3x32x32xf32>, tensor<4x3x3x3xf32>, tensor<4xf32>) -> tensor<1x4x32x32xf32>
    mm.return %y : tensor<1x4x32x32xf32>
  }
  mm.entry @concat_large(%a: tensor<4x100x100xf32>, %b: tensor<4x80x100xf32>) -> tensor<4x180x100xf32> {
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<4x100x100xf32>, tensor<4x80x100xf32>) -> tensor<4x180x100xf32>
    mm.return %y : tensor<4x180x100xf32>
  }
  mm.entry @pad_large(%x: tensor<4x100x100xf32>) -> tensor<4x180x100xf32> {
    %y = mm.pad %x {axis = 1 : i64, start = 30 : i64} : (tensor<4x100x100xf32>) -> tensor<4x180x100xf32>
    mm.return %y : tensor<4x180x100xf32>
  }
  // Zero rows before and after along the middle axis (a slice's gradient).
  mm.entry @pad(%x: tensor<2x3x4xf32>) -> tensor<2x7x4xf32> {
    %y = mm.pad %x {axis = 1 : i64, start = 2 : i64} : (tensor<2x3x4xf32>) -> tensor<2x7x4xf32>
    mm.return %y : tensor<2x7x4xf32>
  }
  mm.entry @broadcast(%x: tensor<5x1xf32>) -> tensor<2x5x4xf32> {
    %y = mm.broadcast %x : (tensor<5x1xf32>) -> tensor<2x5x4xf32>
    mm.return %y : tensor<2x5x4xf32>
  }
  mm.entry @merge_image_features(%e: tensor<2x7x4xf32>, %ids: tensor<2x7xi32>, %f: tensor<2x3x4xf32>) -> tensor<2x7x4xf32> {
    %y = mm.merge_image_features %e, %ids, %f {image_token_index = 9 : i64} : (tensor<2x7x4xf32>, tensor<2x7xi32>, tensor<2x3x4xf32>) -> tensor<2x7x4xf32>
    mm.return %y : tensor<2x7x4xf32>
  }
  mm.entry @gather_image_features(%x: tensor<2x7x4xf32>, %ids: tensor<2x7xi32>) -> tensor<2x3x4xf32> {
    %y = mm.gather_image_features %x, %ids {image_token_index = 9 : i64} : (tensor<2x7x4xf32>, tensor<2x7xi32>) -> tensor<2x3x4xf32>
    mm.return %y : tensor<2x3x4xf32>
  }
  // Attention: B=2, S=6, 4 query heads over 2 K/V heads (grouped), Dh=8, run-time length 5 of 6.
  mm.entry @attn_bidirectional(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_causal(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_padding(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<padding>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_image_prefix_causal(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<image_prefix_causal>, layout = #mm.seq_layout<image = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_itm_bidirectional(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_itg_multimodal_causal(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  mm.entry @attn_itc_unimodal(%q: tensor<2x6x32xf32>, %k: tensor<2x6x16xf32>, %v: tensor<2x6x16xf32>, %len: tensor<i32>) -> tensor<2x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<2x6x32xf32>, tensor<2x6x16xf32>, tensor<2x6x16xf32>, tensor<i32>) -> tensor<2x6x32xf32>
    mm.return %y : tensor<2x6x32xf32>
  }
  // Attention across the CPU's 64-row blocks: B=1, S=150 (blocks of 64, 64, 22), 4 heads over 2 K/V heads, Dh=8, length 140.
  // T5's relative position bias ([32 buckets, 4 heads], max distance 128) on the same 150 positions,
  // both bucket directions (padding mask: keys before and after) and one (causal).
  mm.entry @attn_bias_padding(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>, %pb: tensor<32x4xf32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len bias %pb {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<padding>, scale = 1.0 : f64, bias_max_distance = 128 : i64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>, tensor<32x4xf32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_bias_causal(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>, %pb: tensor<32x4xf32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len bias %pb {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 1.0 : f64, bias_max_distance = 128 : i64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>, tensor<32x4xf32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_bidirectional(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<bidirectional>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_causal(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<causal>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_padding(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<padding>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_image_prefix_causal(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<image_prefix_causal>, layout = #mm.seq_layout<image = 50, text = 100>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_itm_bidirectional(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_itg_multimodal_causal(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  mm.entry @attn_long_itc_unimodal(%q: tensor<1x150x32xf32>, %k: tensor<1x150x16xf32>, %v: tensor<1x150x16xf32>, %len: tensor<i32>) -> tensor<1x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<1x150x32xf32>, tensor<1x150x16xf32>, tensor<1x150x16xf32>, tensor<i32>) -> tensor<1x150x32xf32>
    mm.return %y : tensor<1x150x32xf32>
  }
  // Chains mm-fuse folds (the compile pipeline runs it): the packed GEMM with
  // bias, activation and residual in its epilogue; a wide product (each thread
  // owns column panels); a small one (M < 4, no packing); an elementwise tree.
  mm.entry @fused_linear_gelu_residual(%x: tensor<3x7x20xf32>, %w: tensor<24x20xf32>, %b: tensor<24xf32>, %r: tensor<3x7x24xf32>) -> tensor<3x7x24xf32> {
    %h = mm.linear %x, %w, %b : (tensor<3x7x20xf32>, tensor<24x20xf32>, tensor<24xf32>) -> tensor<3x7x24xf32>
    %g = mm.gelu %h : tensor<3x7x24xf32>
    %y = mm.add %g, %r : tensor<3x7x24xf32>
    mm.return %y : tensor<3x7x24xf32>
  }
  mm.entry @fused_linear_residual_wide(%x: tensor<6x40xf32>, %w: tensor<300x40xf32>, %r: tensor<6x300xf32>) -> tensor<6x300xf32> {
    %h = mm.linear %x, %w : (tensor<6x40xf32>, tensor<300x40xf32>) -> tensor<6x300xf32>
    %y = mm.add %r, %h : tensor<6x300xf32>
    mm.return %y : tensor<6x300xf32>
  }
  mm.entry @fused_linear_silu_small(%x: tensor<2x5xf32>, %w: tensor<9x5xf32>) -> tensor<2x9xf32> {
    %h = mm.linear %x, %w : (tensor<2x5xf32>, tensor<9x5xf32>) -> tensor<2x9xf32>
    %y = mm.silu %h : tensor<2x9xf32>
    mm.return %y : tensor<2x9xf32>
  }
  mm.entry @fused_swiglu_add(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>, %c: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %s = mm.silu %a : tensor<4x9xf32>
    %p = mm.mul %s, %b : tensor<4x9xf32>
    %y = mm.add %p, %c : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  // A convolution: strided, padded, with bias (im2col + GEMM on the CPU), and
  // a 2x2 kernel without padding or bias.
  mm.entry @conv2d(%x: tensor<2x3x9x8xf32>, %w: tensor<5x3x3x3xf32>, %b: tensor<5xf32>) -> tensor<2x5x5x4xf32> {
    %y = mm.conv2d %x, %w, %b {stride = 2 : i64, padding = 1 : i64} : (tensor<2x3x9x8xf32>, tensor<5x3x3x3xf32>, tensor<5xf32>) -> tensor<2x5x5x4xf32>
    mm.return %y : tensor<2x5x5x4xf32>
  }
  mm.entry @conv2d_2x2(%x: tensor<1x4x6x6xf32>, %w: tensor<7x4x2x2xf32>) -> tensor<1x7x5x5xf32> {
    %y = mm.conv2d %x, %w {stride = 1 : i64, padding = 0 : i64} : (tensor<1x4x6x6xf32>, tensor<7x4x2x2xf32>) -> tensor<1x7x5x5xf32>
    mm.return %y : tensor<1x7x5x5xf32>
  }
  // The convolution's gradients over a 32 x 32 output grid, where the CPU's
  // column buffer rows are padded past 4 KiB: four output channels (the
  // weight gradient computed transposed and summed over two images), and
  // 32 channels over an 8 x 8 grid (computed directly).
  mm.entry @conv2d_grad_input_32x32(%dy: tensor<2x4x32x32xf32>, %w: tensor<4x3x3x3xf32>) -> tensor<2x3x32x32xf32> {
    %y = mm.conv2d_grad_input %dy, %w {stride = 1 : i64, padding = 1 : i64} : (tensor<2x4x32x32xf32>, tensor<4x3x3x3xf32>) -> tensor<2x3x32x32xf32>
    mm.return %y : tensor<2x3x32x32xf32>
  }
  mm.entry @conv2d_grad_weight_32x32(%dy: tensor<2x4x32x32xf32>, %x: tensor<2x3x32x32xf32>) -> tensor<4x3x3x3xf32> {
    %y = mm.conv2d_grad_weight %dy, %x {stride = 1 : i64, padding = 1 : i64} : (tensor<2x4x32x32xf32>, tensor<2x3x32x32xf32>) -> tensor<4x3x3x3xf32>
    mm.return %y : tensor<4x3x3x3xf32>
  }
  mm.entry @conv2d_grad_weight_8x8(%dy: tensor<1x32x8x8xf32>, %x: tensor<1x2x16x16xf32>) -> tensor<32x2x3x3xf32> {
    %y = mm.conv2d_grad_weight %dy, %x {stride = 2 : i64, padding = 1 : i64} : (tensor<1x32x8x8xf32>, tensor<1x2x16x16xf32>) -> tensor<32x2x3x3xf32>
    mm.return %y : tensor<32x2x3x3xf32>
  }
  // Attention with one real-key count per batch row ([B] i32 length): B=3,
  // S=6 (query = 2, text = 4), rows of different lengths; and across the CPU's
  // 64-row blocks (B=2, S=150).
  mm.entry @attn_rows_itc_unimodal(%q: tensor<3x6x32xf32>, %k: tensor<3x6x16xf32>, %v: tensor<3x6x16xf32>, %len: tensor<3xi32>) -> tensor<3x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<3x6x32xf32>, tensor<3x6x16xf32>, tensor<3x6x16xf32>, tensor<3xi32>) -> tensor<3x6x32xf32>
    mm.return %y : tensor<3x6x32xf32>
  }
  mm.entry @attn_rows_itm_bidirectional(%q: tensor<3x6x32xf32>, %k: tensor<3x6x16xf32>, %v: tensor<3x6x16xf32>, %len: tensor<3xi32>) -> tensor<3x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<3x6x32xf32>, tensor<3x6x16xf32>, tensor<3x6x16xf32>, tensor<3xi32>) -> tensor<3x6x32xf32>
    mm.return %y : tensor<3x6x32xf32>
  }
  mm.entry @attn_rows_itg_multimodal_causal(%q: tensor<3x6x32xf32>, %k: tensor<3x6x16xf32>, %v: tensor<3x6x16xf32>, %len: tensor<3xi32>) -> tensor<3x6x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 2, text = 4>, scale = 0.35355339 : f64} : (tensor<3x6x32xf32>, tensor<3x6x16xf32>, tensor<3x6x16xf32>, tensor<3xi32>) -> tensor<3x6x32xf32>
    mm.return %y : tensor<3x6x32xf32>
  }
  mm.entry @attn_long_rows_itc_unimodal(%q: tensor<2x150x32xf32>, %k: tensor<2x150x16xf32>, %v: tensor<2x150x16xf32>, %len: tensor<2xi32>) -> tensor<2x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itc_unimodal>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<2x150x32xf32>, tensor<2x150x16xf32>, tensor<2x150x16xf32>, tensor<2xi32>) -> tensor<2x150x32xf32>
    mm.return %y : tensor<2x150x32xf32>
  }
  mm.entry @attn_long_rows_itm_bidirectional(%q: tensor<2x150x32xf32>, %k: tensor<2x150x16xf32>, %v: tensor<2x150x16xf32>, %len: tensor<2xi32>) -> tensor<2x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itm_bidirectional>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<2x150x32xf32>, tensor<2x150x16xf32>, tensor<2x150x16xf32>, tensor<2xi32>) -> tensor<2x150x32xf32>
    mm.return %y : tensor<2x150x32xf32>
  }
  mm.entry @attn_long_rows_itg_multimodal_causal(%q: tensor<2x150x32xf32>, %k: tensor<2x150x16xf32>, %v: tensor<2x150x16xf32>, %len: tensor<2xi32>) -> tensor<2x150x32xf32> {
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 2 : i64, mask = #mm.mask<itg_multimodal_causal>, layout = #mm.seq_layout<query = 40, text = 110>, scale = 0.35355339 : f64} : (tensor<2x150x32xf32>, tensor<2x150x16xf32>, tensor<2x150x16xf32>, tensor<2xi32>) -> tensor<2x150x32xf32>
    mm.return %y : tensor<2x150x32xf32>
  }
  // BLIP-2 stage 1's ops (ITC similarities, hard negatives, ITM batches).
  mm.entry @div(%a: tensor<4x9xf32>, %b: tensor<4x9xf32>) -> tensor<4x9xf32> {
    %y = mm.div %a, %b : tensor<4x9xf32>
    mm.return %y : tensor<4x9xf32>
  }
  mm.entry @transpose(%x: tensor<2x3x5xf32>) -> tensor<2x5x3xf32> {
    %y = mm.transpose %x : (tensor<2x3x5xf32>) -> tensor<2x5x3xf32>
    mm.return %y : tensor<2x5x3xf32>
  }
  // The maximum over a middle axis, and its gradient to the first maximum.
  mm.entry @reduce_max(%x: tensor<2x5x3xf32>) -> tensor<2x3xf32> {
    %y = mm.reduce_max %x {axis = 1 : i64} : (tensor<2x5x3xf32>) -> tensor<2x3xf32>
    mm.return %y : tensor<2x3xf32>
  }
  mm.entry @reduce_max_grad(%x: tensor<2x5x3xf32>, %dy: tensor<2x3xf32>) -> tensor<2x5x3xf32> {
    %y = mm.reduce_max_grad %x, %dy {axis = 1 : i64} : (tensor<2x5x3xf32>, tensor<2x3xf32>) -> tensor<2x5x3xf32>
    mm.return %y : tensor<2x5x3xf32>
  }
  // eps = 0.5: the test's small rows have their norm clamped.
  mm.entry @l2_normalize(%x: tensor<3x4x16xf32>) -> tensor<3x4x16xf32> {
    %y = mm.l2_normalize %x {eps = 0.5 : f64} : tensor<3x4x16xf32>
    mm.return %y : tensor<3x4x16xf32>
  }
  mm.entry @l2_normalize_grad(%x: tensor<3x4x16xf32>, %dy: tensor<3x4x16xf32>) -> tensor<3x4x16xf32> {
    %y = mm.l2_normalize_grad %x, %dy {eps = 0.5 : f64} : (tensor<3x4x16xf32>, tensor<3x4x16xf32>) -> tensor<3x4x16xf32>
    mm.return %y : tensor<3x4x16xf32>
  }
  mm.entry @gather(%x: tensor<4x3x5xf32>, %idx: tensor<6xi32>) -> tensor<6x3x5xf32> {
    %y = mm.gather %x, %idx : (tensor<4x3x5xf32>, tensor<6xi32>) -> tensor<6x3x5xf32>
    mm.return %y : tensor<6x3x5xf32>
  }
  mm.entry @gather_i32(%x: tensor<4x7xi32>, %idx: tensor<5xi32>) -> tensor<5x7xi32> {
    %y = mm.gather %x, %idx : (tensor<4x7xi32>, tensor<5xi32>) -> tensor<5x7xi32>
    mm.return %y : tensor<5x7xi32>
  }
  mm.entry @sample_negatives(%sim: tensor<6x6xf32>, %u: tensor<6xf32>) -> tensor<6xi32> {
    %y = mm.sample_negatives %sim, %u : (tensor<6x6xf32>, tensor<6xf32>) -> tensor<6xi32>
    mm.return %y : tensor<6xi32>
  }
  mm.entry @iota() -> tensor<7xi32> {
    %y = mm.iota : tensor<7xi32>
    mm.return %y : tensor<7xi32>
  }
  mm.entry @constant_i32() -> tensor<2x3xi32> {
    %y = mm.constant {value = -3.0 : f64} : tensor<2x3xi32>
    mm.return %y : tensor<2x3xi32>
  }
  mm.entry @concat_i32(%a: tensor<2x3xi32>, %b: tensor<2x2xi32>) -> tensor<2x5xi32> {
    %y = mm.concat %a, %b {axis = 1 : i64} : (tensor<2x3xi32>, tensor<2x2xi32>) -> tensor<2x5xi32>
    mm.return %y : tensor<2x5xi32>
  }
  // Cross-entropy summed, and averaged over the counted targets; the gradients.
  mm.entry @cross_entropy(%x: tensor<2x4x7xf32>, %t: tensor<2x4xi32>) -> tensor<f32> {
    %l = mm.cross_entropy %x, %t {ignore_index = -100 : i64} : (tensor<2x4x7xf32>, tensor<2x4xi32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
  mm.entry @cross_entropy_grad(%x: tensor<2x4x7xf32>, %t: tensor<2x4xi32>, %g: tensor<f32>) -> tensor<2x4x7xf32> {
    %y = mm.cross_entropy_grad %x, %t, %g {ignore_index = -100 : i64} : (tensor<2x4x7xf32>, tensor<2x4xi32>, tensor<f32>) -> tensor<2x4x7xf32>
    mm.return %y : tensor<2x4x7xf32>
  }
  mm.entry @cross_entropy_mean(%x: tensor<2x4x7xf32>, %t: tensor<2x4xi32>) -> tensor<f32> {
    %l = mm.cross_entropy %x, %t {ignore_index = -100 : i64, mean} : (tensor<2x4x7xf32>, tensor<2x4xi32>) -> tensor<f32>
    mm.return %l : tensor<f32>
  }
  mm.entry @cross_entropy_grad_mean(%x: tensor<2x4x7xf32>, %t: tensor<2x4xi32>, %g: tensor<f32>) -> tensor<2x4x7xf32> {
    %y = mm.cross_entropy_grad %x, %t, %g {ignore_index = -100 : i64, mean} : (tensor<2x4x7xf32>, tensor<2x4xi32>, tensor<f32>) -> tensor<2x4x7xf32>
    mm.return %y : tensor<2x4x7xf32>
  }
}
