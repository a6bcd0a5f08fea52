// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-fuse))' | FileCheck %s
// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-fuse{report=true}))' -verify-diagnostics -o /dev/null

// COM: A linear layer, its activation and the residual add become one op:
// COM: the GEMM applies bias, GELU and the residual to each finished block.
// CHECK-LABEL: mm.model @mlp_residual
// CHECK: %[[Y:.*]] = mm.fused_linear %arg0, %arg1 bias %arg2 residual %arg3 {activation = #mm.activation<gelu>}
// CHECK-NOT: mm.linear
// CHECK-NOT: mm.gelu
// CHECK-NOT: mm.add
// CHECK: mm.return %[[Y]]
mm.model @mlp_residual {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %b: tensor<8xf32>, %r: tensor<4x8xf32>) -> tensor<4x8xf32> {
    %h = mm.linear %x, %w, %b : (tensor<4x8xf32>, tensor<8x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    %g = mm.gelu %h : tensor<4x8xf32>
    // expected-remark @+1 {{fused linear + gelu + residual add}}
    %y = mm.add %r, %g : tensor<4x8xf32>
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

// COM: The residual may be either operand of the add.
// CHECK-LABEL: mm.model @residual_rhs
// CHECK: mm.fused_linear %arg0, %arg1 residual %arg2 :
// CHECK-NOT: activation
mm.model @residual_rhs {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %r: tensor<4x8xf32>) -> tensor<4x8xf32> {
    %h = mm.linear %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    // expected-remark @+1 {{fused linear + residual add}}
    %y = mm.add %h, %r : tensor<4x8xf32>
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

// COM: Refusal: in a training step the backward reads the pre-activation, so
// COM: the linear keeps its own result; the activation stays a separate op.
// CHECK-LABEL: mm.model @saved_preactivation
// CHECK: %[[H:.*]] = mm.linear
// CHECK: mm.silu %[[H]]
// CHECK: mm.activation_grad %{{.*}}, %[[H]]
mm.model @saved_preactivation {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %dy: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
    // expected-remark @+1 {{not fused into its mm.silu: the result has 2 uses}}
    %h = mm.linear %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    %s = mm.silu %h : tensor<4x8xf32>
    %dh = mm.activation_grad %dy, %h {kind = #mm.activation<silu>} : (tensor<4x8xf32>, tensor<4x8xf32>) -> tensor<4x8xf32>
    mm.return %s, %dh : tensor<4x8xf32>, tensor<4x8xf32>
  }
}

// -----

// COM: The activation is folded, but its output is read twice: no residual.
// CHECK-LABEL: mm.model @activation_used_twice
// CHECK: %[[A:.*]] = mm.fused_linear %arg0, %arg1 {activation = #mm.activation<relu>}
// CHECK: mm.add %[[A]], %arg2
// CHECK: mm.return
mm.model @activation_used_twice {
  mm.entry @f(%x: tensor<4x8xf32>, %w: tensor<8x8xf32>, %r: tensor<4x8xf32>) -> (tensor<4x8xf32>, tensor<4x8xf32>) {
    %h = mm.linear %x, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    // expected-remark @+2 {{fused linear + relu}}
    // expected-remark @+1 {{not fused into its add: the result has 2 uses}}
    %a = mm.relu %h : tensor<4x8xf32>
    %y = mm.add %a, %r : tensor<4x8xf32>
    mm.return %y, %a : tensor<4x8xf32>, tensor<4x8xf32>
  }
}

// -----

// COM: Gradient accumulation on the residual stream: the add after a
// COM: linear layer's input gradient becomes the GEMM's addend; the same for
// COM: the norms' input gradients.
// CHECK-LABEL: mm.model @accumulate
// CHECK: %[[D:.*]] = mm.linear_grad_input %arg0, %arg1 addend %arg2 :
// CHECK: %[[E:.*]] = mm.rms_norm_grad_input %arg0, %[[D]], %arg3 addend %[[D]] {eps
// CHECK: %[[F:.*]] = mm.layer_norm_grad_input %arg0, %[[E]], %arg3 addend %arg2 {eps
// CHECK-NOT: mm.add
// CHECK: mm.return %[[F]]
mm.model @accumulate {
  mm.entry @f(%dy: tensor<4x8xf32>, %w: tensor<8x8xf32>, %acc: tensor<4x8xf32>, %g: tensor<8xf32>) -> tensor<4x8xf32> {
    %dx = mm.linear_grad_input %dy, %w : (tensor<4x8xf32>, tensor<8x8xf32>) -> tensor<4x8xf32>
    // expected-remark @+1 {{fused gradient accumulation}}
    %s = mm.add %dx, %acc : tensor<4x8xf32>
    %dn = mm.rms_norm_grad_input %dy, %s, %g {eps = 1.0e-6 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    // expected-remark @+1 {{fused gradient accumulation}}
    %t = mm.add %s, %dn : tensor<4x8xf32>
    %dl = mm.layer_norm_grad_input %dy, %t, %g {eps = 1.0e-5 : f64} : (tensor<4x8xf32>, tensor<4x8xf32>, tensor<8xf32>) -> tensor<4x8xf32>
    // expected-remark @+1 {{fused gradient accumulation}}
    %u = mm.add %acc, %dl : tensor<4x8xf32>
    mm.return %u : tensor<4x8xf32>
  }
}

// -----

// COM: LLaMA's gated MLP at inference: silu(gate) * up, then + c, is one
// COM: elementwise kernel; the intermediates never reach memory.
// CHECK-LABEL: mm.model @swiglu
// CHECK: %[[Y:.*]] = mm.fused_elementwise(%arg0, %arg1, %arg2)
// CHECK-NEXT: ^bb0(%[[G:.*]]: tensor<4x8xf32>, %[[U:.*]]: tensor<4x8xf32>, %[[C:.*]]: tensor<4x8xf32>):
// CHECK-NEXT: %[[S:.*]] = mm.silu %[[G]]
// CHECK-NEXT: %[[P:.*]] = mm.mul %[[S]], %[[U]]
// CHECK-NEXT: %[[Q:.*]] = mm.add %[[P]], %[[C]]
// CHECK-NEXT: mm.yield %[[Q]]
// CHECK: mm.return %[[Y]]
mm.model @swiglu {
  mm.entry @f(%gate: tensor<4x8xf32>, %up: tensor<4x8xf32>, %c: tensor<4x8xf32>) -> tensor<4x8xf32> {
    %s = mm.silu %gate : tensor<4x8xf32>
    %p = mm.mul %s, %up : tensor<4x8xf32>
    // expected-remark @+1 {{fused 3 elementwise ops: mm.silu, mm.mul, mm.add}}
    %y = mm.add %p, %c : tensor<4x8xf32>
    mm.return %y : tensor<4x8xf32>
  }
}

// -----

// COM: Refusal: a value read twice ends a tree; it is computed once and stored
// COM: and both branches that read it join the tree of their consumer.
// CHECK-LABEL: mm.model @shared_value
// CHECK: %[[S:.*]] = mm.silu %arg0
// CHECK: mm.fused_elementwise(%[[S]], %arg1)
// CHECK-NOT: mm.fused_elementwise
mm.model @shared_value {
  mm.entry @f(%a: tensor<8xf32>, %b: tensor<8xf32>) -> tensor<8xf32> {
    // expected-remark @+2 {{not fused into its mm.add: the result has 2 uses}}
    // expected-remark @+1 {{not fused into its mm.mul: the result has 2 uses}}
    %s = mm.silu %a : tensor<8xf32>
    %p = mm.mul %s, %b : tensor<8xf32>
    %q = mm.relu %p : tensor<8xf32>
    %t = mm.add %s, %b : tensor<8xf32>
    %u = mm.gelu %t : tensor<8xf32>
    // expected-remark @+1 {{fused 5 elementwise ops: mm.mul, mm.relu, mm.add, mm.gelu, mm.add}}
    %y = mm.add %q, %u : tensor<8xf32>
    mm.return %y : tensor<8xf32>
  }
}

// -----

// COM: The three attention gradients over the same operands become one pass:
// COM: each probability and each dy . v is computed once for dq, dk and dv.
// CHECK-LABEL: mm.model @attention_backward
// CHECK: %[[DQ:.*]], %[[DK:.*]], %[[DV:.*]] = mm.fused_attention_grad %arg0, %arg1, %arg2, %arg3, %arg4, %arg5, %arg6 {mask = #mm.mask<causal>
// CHECK-NOT: mm.attention_grad_
// CHECK: mm.return %[[DQ]], %[[DK]], %[[DV]]
mm.model @attention_backward {
  mm.entry @f(%q: tensor<1x8x64xf32>, %k: tensor<1x8x64xf32>, %v: tensor<1x8x64xf32>, %dy: tensor<1x8x64xf32>,
              %o: tensor<1x8x64xf32>, %lse: tensor<1x4x8xf32>, %len: tensor<i32>)
      -> (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>) {
    // expected-remark @+1 {{fused attention backward: the query, key and value gradients in one pass}}
    %dq = mm.attention_grad_query %q, %k, %v, %dy, %o, %lse, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    %dk = mm.attention_grad_key %q, %k, %v, %dy, %o, %lse, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    %dv = mm.attention_grad_value %q, %k, %v, %dy, %o, %lse, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<causal>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    mm.return %dq, %dk, %dv : tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>
  }
}

// -----

// COM: Refusal: the key gradient reads another attention's scale, so the
// COM: query gradient has no partner over the same attention and stays.
// CHECK-LABEL: mm.model @attention_backward_mismatch
// CHECK: mm.attention_grad_query
// CHECK: mm.attention_grad_key
// CHECK: mm.attention_grad_value
// CHECK-NOT: mm.fused_attention_grad
mm.model @attention_backward_mismatch {
  mm.entry @f(%q: tensor<1x8x64xf32>, %k: tensor<1x8x64xf32>, %v: tensor<1x8x64xf32>, %dy: tensor<1x8x64xf32>,
              %o: tensor<1x8x64xf32>, %lse: tensor<1x4x8xf32>)
      -> (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>) {
    // expected-remark @+1 {{not fused with the key and value gradients: no attention_grad_key over the same operands and attributes}}
    %dq = mm.attention_grad_query %q, %k, %v, %dy, %o, %lse {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<bidirectional>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>) -> tensor<1x8x64xf32>
    %dk = mm.attention_grad_key %q, %k, %v, %dy, %o, %lse {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<bidirectional>, scale = 0.25 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>) -> tensor<1x8x64xf32>
    %dv = mm.attention_grad_value %q, %k, %v, %dy, %o, %lse {num_heads = 4 : i64, num_kv_heads = 4 : i64,
        mask = #mm.mask<bidirectional>, scale = 0.125 : f64}
        : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>,
           tensor<1x8x64xf32>, tensor<1x4x8xf32>) -> tensor<1x8x64xf32>
    mm.return %dq, %dk, %dv : tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>
  }
}

// -----

// COM: A training step's attention and the statistics its backward reads
// COM: (the same query, key, length and attributes) become one pass: the
// COM: log-sum-exp of each row comes out of the forward's softmax.
// CHECK-LABEL: mm.model @attention_forward_stats
// CHECK: %[[Y:.*]], %[[LSE:.*]] = mm.fused_attention %arg0, %arg1, %arg2, %arg3 {mask = #mm.mask<causal>
// CHECK-NOT: mm.attention_stats
// CHECK: mm.return %[[Y]], %[[LSE]]
mm.model @attention_forward_stats {
  mm.entry @f(%q: tensor<1x8x64xf32>, %k: tensor<1x8x64xf32>, %v: tensor<1x8x64xf32>, %len: tensor<i32>)
      -> (tensor<1x8x64xf32>, tensor<1x4x8xf32>) {
    // expected-remark @+1 {{fused attention forward: its statistics from the same softmax}}
    %y = mm.attention %q, %k, %v, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64, mask = #mm.mask<causal>,
        scale = 0.125 : f64} : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<i32>) -> tensor<1x8x64xf32>
    %lse = mm.attention_stats %q, %k, %len {num_heads = 4 : i64, num_kv_heads = 4 : i64, mask = #mm.mask<causal>,
        scale = 0.125 : f64} : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<i32>) -> tensor<1x4x8xf32>
    mm.return %y, %lse : tensor<1x8x64xf32>, tensor<1x4x8xf32>
  }
}

// -----

// COM: Refusal: statistics under another mask (bidirectional where the
// COM: attention is causal) are not the attention's own, and stay a pass.
// CHECK-LABEL: mm.model @attention_stats_mismatch
// CHECK: mm.attention %arg0
// CHECK: mm.attention_stats
// CHECK-NOT: mm.fused_attention
mm.model @attention_stats_mismatch {
  mm.entry @f(%q: tensor<1x8x64xf32>, %k: tensor<1x8x64xf32>, %v: tensor<1x8x64xf32>)
      -> (tensor<1x8x64xf32>, tensor<1x4x8xf32>) {
    %y = mm.attention %q, %k, %v {num_heads = 4 : i64, num_kv_heads = 4 : i64, mask = #mm.mask<causal>,
        scale = 0.125 : f64} : (tensor<1x8x64xf32>, tensor<1x8x64xf32>, tensor<1x8x64xf32>) -> tensor<1x8x64xf32>
    // expected-remark @+1 {{not fused with its attention: no earlier mm.attention over the same query, key and attributes}}
    %lse = mm.attention_stats %q, %k {num_heads = 4 : i64, num_kv_heads = 4 : i64, mask = #mm.mask<bidirectional>,
        scale = 0.125 : f64} : (tensor<1x8x64xf32>, tensor<1x8x64xf32>) -> tensor<1x4x8xf32>
    mm.return %y, %lse : tensor<1x8x64xf32>, tensor<1x4x8xf32>
  }
}
