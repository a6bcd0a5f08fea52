// A model file with a typo'd op name.
mm.model @bad {
  mm.group @g
  mm.parm @"w" : tensor<4xf32> group @g init #mm.init<zeros>
}
