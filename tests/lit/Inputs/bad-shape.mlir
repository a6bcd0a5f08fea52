// A model whose projector weight does not fit its input.
mm.model @bad {
  mm.group @g
  mm.param @"w" : tensor<16x7xf32> group @g init #mm.init<normal, 0.02>
  mm.entry @forward(%x: tensor<1x4x8xf32>) -> tensor<1x4x16xf32> {
    %w = mm.weight @"w" : tensor<16x7xf32>
    %y = mm.linear %x, %w : (tensor<1x4x8xf32>, tensor<16x7xf32>) -> tensor<1x4x16xf32>
    mm.return %y : tensor<1x4x16xf32>
  }
}
