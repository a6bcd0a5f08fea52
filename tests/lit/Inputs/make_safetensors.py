"""Writes deliberately broken safetensors files for the error tests.

usage: make_safetensors.py KIND OUT
"""
import json
import struct
import sys

kind, out = sys.argv[1], sys.argv[2]


def write(header, data, length=None):
    h = json.dumps(header).encode()
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(h) if length is None else length))
        f.write(h)
        f.write(data)


if kind == "header-past-end":
    write({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4, length=1 << 40)
elif kind == "overlap":
    write({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
           "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12)
elif kind == "out-of-range":
    write({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}, b"\0" * 8)
elif kind == "bad-json":
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", 5) + b"{oops")
elif kind == "tiny":
    with open(out, "wb") as f:
        f.write(b"\1\2\3")
elif kind == "wrong-shape":
    # A real parameter name of llava-tiny with the wrong shape, plus nothing else.
    write({"multi_modal_projector.linear_1.bias": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]}},
          b"\0" * 12)
elif kind == "other-model":
    write({"model.decoder.embed_tokens.weight": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}},
          b"\0" * 4)
else:
    sys.exit("unknown kind " + kind)
