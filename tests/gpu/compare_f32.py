"""Compares two raw little-endian f32 files; exits 1 past the tolerance or on NaN.

usage: compare_f32.py GOT REFERENCE RTOL   (stdlib only: runs where numpy is absent)
rel = |got - ref| / max(|ref|, 1e-2 * max|ref|)
"""
import array
import math
import sys

got, ref = array.array("f"), array.array("f")
with open(sys.argv[1], "rb") as f:
    got.frombytes(f.read())
with open(sys.argv[2], "rb") as f:
    ref.frombytes(f.read())
rtol = float(sys.argv[3])
if len(got) != len(ref):
    sys.exit(f"FAIL: {len(got)} values vs {len(ref)}")
scale = max(abs(v) for v in ref) * 1e-2
worst, where = 0.0, 0
for i, (a, b) in enumerate(zip(got, ref)):
    if not (math.isfinite(a) and math.isfinite(b)):
        sys.exit(f"FAIL: non-finite value at {i}: {a} vs {b}")
    rel = abs(a - b) / max(abs(b), scale)
    if rel > worst:
        worst, where = rel, i
print(f"{'PASS' if worst <= rtol else 'FAIL'} max_rel_diff={worst:.3e} at {where} over {len(ref)} values (rtol {rtol})")
sys.exit(0 if worst <= rtol else 1)
