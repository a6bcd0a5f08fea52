"""Exits 0 if two raw little-endian f32 files (mmrun --dump-logits) agree:
every |a - b| <= RTOL * (|a| + |b|) / 2 + ATOL, NaN never, same length.

    close_f32.py A B [--rtol 1e-4] [--atol 1e-5]
"""
import argparse
import array
import math
import sys

ap = argparse.ArgumentParser()
ap.add_argument("a")
ap.add_argument("b")
ap.add_argument("--rtol", type=float, default=1e-4)
ap.add_argument("--atol", type=float, default=1e-5)
args = ap.parse_args()


def floats(path):
    x = array.array("f")
    with open(path, "rb") as f:
        x.frombytes(f.read())
    if sys.byteorder != "little":
        x.byteswap()
    return x


a, b = floats(args.a), floats(args.b)
if len(a) != len(b) or not a:
    sys.exit(f"{len(a)} and {len(b)} values")
worst, where = 0.0, 0
for i, (x, y) in enumerate(zip(a, b)):
    err = abs(x - y)
    bound = args.rtol * (abs(x) + abs(y)) / 2 + args.atol
    if not err <= bound:  # NaN fails
        sys.exit(f"value {i}: {x} vs {y} (tolerance {bound:.3g})")
    if err > worst:
        worst, where = err, i
print(f"{len(a)} values agree; largest difference {worst:.3g} at {where}")
