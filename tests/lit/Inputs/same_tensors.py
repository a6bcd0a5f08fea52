"""Exits 0 if two safetensors files hold the same tensors, byte for byte."""
import json
import struct
import sys


def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    return {k: (v["dtype"], v["shape"], data[v["data_offsets"][0]:v["data_offsets"][1]]) for k, v in header.items()}


a, b = tensors(sys.argv[1]), tensors(sys.argv[2])
if a.keys() != b.keys():
    sys.exit(f"different tensor names: {sorted(a.keys() ^ b.keys())[:3]}")
diff = [k for k in a if a[k] != b[k]]
if diff:
    sys.exit(f"{len(diff)} tensors differ, first {diff[0]}")
print(f"{len(a)} tensors identical")
