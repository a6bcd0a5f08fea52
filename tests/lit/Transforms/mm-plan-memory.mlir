// RUN: mmc-opt %s -split-input-file -pass-pipeline='builtin.module(mm.model(mm-plan-memory))' | FileCheck %s

// COM: A chain a -> b -> c -> d of 4 KiB tensors needs only two live buffers:
// COM: each result is placed before its input is freed (no in-place writes),
// COM: and the buffer freed by the last read is reused.
// COM: The entry's result %d is written straight into the caller's result
// COM: buffer (mm.result): the arena holds at most two intermediates.
// CHECK-LABEL: mm.model @chain
// CHECK: mm.entry @f
// CHECK-SAME: mm.activation_bytes = 8192
// CHECK-SAME: mm.workspace_bytes = 8192
// CHECK: mm.relu %{{.*}} {mm.offset = 0 : i64}
// CHECK: mm.relu %{{.*}} {mm.offset = 4096 : i64}
// CHECK: mm.relu %{{.*}} {mm.offset = 0 : i64}
// CHECK: mm.relu %{{.*}} {mm.result = 0 : i64}
mm.model @chain {
  mm.entry @f(%x: tensor<1024xf32>) -> tensor<1024xf32> {
    %a = mm.relu %x : tensor<1024xf32>
    %b = mm.relu %a : tensor<1024xf32>
    %c = mm.relu %b : tensor<1024xf32>
    %d = mm.relu %c : tensor<1024xf32>
    mm.return %d : tensor<1024xf32>
  }
}

// -----

// COM: A value read late (the residual %a) stays live across the ops in between.
// CHECK-LABEL: mm.model @residual
// CHECK: mm.activation_bytes = 12288 : i64, mm.workspace_bytes = 12288
// CHECK: %[[A:.*]] = mm.relu %{{.*}} {mm.offset = 0 : i64}
// CHECK: mm.relu %[[A]] {mm.offset = 4096 : i64}
// CHECK: mm.relu %{{.*}} {mm.offset = 8192 : i64}
// CHECK: mm.add %[[A]], %{{.*}} {mm.result = 0 : i64}
mm.model @residual {
  mm.entry @f(%x: tensor<1024xf32>) -> tensor<1024xf32> {
    %a = mm.relu %x : tensor<1024xf32>
    %b = mm.relu %a : tensor<1024xf32>
    %c = mm.relu %b : tensor<1024xf32>
    %d = mm.add %a, %c : tensor<1024xf32>
    mm.return %d : tensor<1024xf32>
  }
}

// -----

// COM: Parameters need no arena space; sizes are rounded up to the 64-byte alignment.
// CHECK-LABEL: mm.model @weights
// CHECK: mm.activation_bytes = 64 : i64, mm.workspace_bytes = 64
// CHECK: mm.weight @w : tensor<3xf32>
// CHECK-NOT: mm.offset
// CHECK: mm.add {{.*}} {mm.offset = 0 : i64}
// CHECK: mm.mul {{.*}} {mm.result = 0 : i64}
mm.model @weights {
  mm.group @g
  mm.param @"w" : tensor<3xf32> group @g init #mm.init<ones>
  mm.entry @f(%x: tensor<3xf32>) -> tensor<3xf32> {
    %w = mm.weight @"w" : tensor<3xf32>
    %y = mm.add %x, %w : tensor<3xf32>
    %z = mm.mul %y, %w : tensor<3xf32>
    mm.return %z : tensor<3xf32>
  }
}

// -----

// COM: A value returned twice is written into the first result buffer; the
// COM: second is copied from it (code generation). An argument or a
// COM: parameter returned as it is takes no arena space either.
// CHECK-LABEL: mm.model @returned_twice
// CHECK: mm.activation_bytes = 0 : i64, mm.workspace_bytes = 0
// CHECK: mm.relu %{{.*}} {mm.result = 0 : i64}
mm.model @returned_twice {
  mm.entry @f(%x: tensor<4xf32>) -> (tensor<4xf32>, tensor<4xf32>, tensor<4xf32>) {
    %y = mm.relu %x : tensor<4xf32>
    mm.return %y, %y, %x : tensor<4xf32>, tensor<4xf32>, tensor<4xf32>
  }
}

// -----

// COM: A decode step's cache read is a view of its layer's slice of the cache
// COM: (mm.view, no arena space, no copy): nothing writes that layer while
// COM: the result is read. The update itself writes into the cache (no offset).
// CHECK-LABEL: mm.model @cache_read_view
// CHECK: mm.activation_bytes = 0 : i64, mm.workspace_bytes = 0
// CHECK: mm.cache_update
// CHECK-NOT: mm.offset
// CHECK-SAME: -> tensor<2x1x8x4xf32>
// CHECK: mm.cache_read %{{.*}} {layer = 1 : i64, mm.view}
// CHECK: mm.add {{.*}} {mm.result = 0 : i64}
mm.model @cache_read_view {
  mm.entry @f(%c: tensor<2x1x8x4xf32>, %new: tensor<1x1x4xf32>, %pos: tensor<i32>, %x: tensor<1x8x4xf32>) -> tensor<1x8x4xf32> {
    %c2 = mm.cache_update %c, %new, %pos {layer = 1 : i64} : (tensor<2x1x8x4xf32>, tensor<1x1x4xf32>, tensor<i32>) -> tensor<2x1x8x4xf32>
    %k = mm.cache_read %c2 {layer = 1 : i64} : (tensor<2x1x8x4xf32>) -> tensor<1x8x4xf32>
    %y = mm.add %k, %x : tensor<1x8x4xf32>
    mm.return %y : tensor<1x8x4xf32>
  }
}

// -----

// COM: A read that is still used after a later update of the same layer gets
// COM: its own copy: as a view it would see the new keys.
// CHECK-LABEL: mm.model @cache_read_copied
// CHECK: mm.cache_read %{{.*}} {layer = 0 : i64, mm.offset = 0 : i64}
// CHECK: mm.cache_read %{{.*}} {layer = 1 : i64, mm.view}
mm.model @cache_read_copied {
  mm.entry @f(%c: tensor<2x1x8x4xf32>, %new: tensor<1x1x4xf32>, %pos: tensor<i32>) -> (tensor<1x8x4xf32>, tensor<2x1x8x4xf32>) {
    %k0 = mm.cache_read %c {layer = 0 : i64} : (tensor<2x1x8x4xf32>) -> tensor<1x8x4xf32>
    %k1 = mm.cache_read %c {layer = 1 : i64} : (tensor<2x1x8x4xf32>) -> tensor<1x8x4xf32>
    %c2 = mm.cache_update %c, %new, %pos {layer = 0 : i64} : (tensor<2x1x8x4xf32>, tensor<1x1x4xf32>, tensor<i32>) -> tensor<2x1x8x4xf32>
    %y = mm.add %k0, %k1 : tensor<1x8x4xf32>
    mm.return %y, %c2 : tensor<1x8x4xf32>, tensor<2x1x8x4xf32>
  }
}
