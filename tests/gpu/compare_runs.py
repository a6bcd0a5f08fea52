"""Compares a CUDA training run against the CPU run of the same stage.

usage: compare_runs.py PREFIX --grads R --losses R --weights R
                       [--rtol-for REGEX=R ...] [--zero-grad REGEX]
Reads PREFIX-{cpu,cuda}.grads.safetensors (step 0's gradients),
PREFIX-{cpu,cuda}.jsonl (the per-step log) and PREFIX-{cpu,cuda}.safetensors
(the checkpoint: weights, AdamW moments, step), with
rel = |cuda - cpu| / max(|cpu|, 1e-2 * max|cpu| over the tensor); NaN fails.

Both sides are float32, each within the PyTorch float64 reference's bounds
(tests/reference/*_train_parity.sh), so their difference may reach the sum.
A gradient that is mathematically zero (--zero-grad: the attention key bias's,
since softmax ignores a shift shared by every key) is rounding noise on both
sides: it passes below ZERO_FLOOR times the largest gradient, and its weights
and moments (noise divided by AdamW's eps) are left out of the checkpoint
comparison, as in the PyTorch parity tests.
"""
import argparse
import json
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "reference"))
from llava_ref import read_safetensors as load  # noqa: E402
from llava_train_ref import ZERO_FLOOR  # noqa: E402


def rel(got, ref):
    got, ref = got.astype(np.float64).ravel(), ref.astype(np.float64).ravel()
    if not (np.isfinite(got).all() and np.isfinite(ref).all()):
        return float("inf")
    if got.size == 0:
        return 0.0
    scale = max(np.abs(ref).max() * 1e-2, 1e-30)
    return float((np.abs(got - ref) / np.maximum(np.abs(ref), scale)).max())


def compare_tensors(what, cuda, cpu, rtol, overrides, zero_grad, grads):
    if sorted(cuda) != sorted(cpu):
        print(f"FAIL {what}: tensor names differ")
        return False
    floor = ZERO_FLOOR * max(float(np.abs(a).max()) for a in cpu.values() if a.size) if grads else 0.0
    ok, worst, where, left_out = True, 0.0, "", 0
    for name in cpu:
        if cuda[name].shape != cpu[name].shape:
            print(f"FAIL {what}: {name} shape {cuda[name].shape} vs {cpu[name].shape}")
            return False
        zero = zero_grad is not None and zero_grad.search(name)
        if zero and not grads:
            left_out += 1
            continue
        tol = next((t for rx, t in overrides if rx.search(name)), rtol)
        r = rel(cuda[name], cpu[name])
        if zero and np.isfinite(cuda[name]).all() and \
                float(np.abs(cuda[name].astype(np.float64) - cpu[name]).max()) <= floor:
            continue
        if r > tol:
            ok = False
            print(f"  {name}: max rel {r:.3e} > {tol}")
        if r / tol >= worst:
            worst, where = r / tol, f"{name}: {r:.3e}, rtol {tol}"
    print(f"{'PASS' if ok else 'FAIL'} {what}: {len(cpu) - left_out} tensors, worst {where}"
          + (f" ({left_out} with a zero gradient left out)" if left_out else ""))
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prefix")
    ap.add_argument("--grads", type=float, required=True)
    ap.add_argument("--losses", type=float, required=True)
    ap.add_argument("--weights", type=float, required=True)
    ap.add_argument("--rtol-for", action="append", default=[], metavar="REGEX=R",
                    help="tolerance R for the gradients and weights of tensors matching REGEX")
    ap.add_argument("--zero-grad", help="regex: tensors whose gradient is identically zero")
    a = ap.parse_args()
    prefix, losses_rtol = a.prefix, a.losses
    overrides = [(re.compile(o.rsplit("=", 1)[0]), float(o.rsplit("=", 1)[1])) for o in a.rtol_for]
    zero = re.compile(a.zero_grad) if a.zero_grad else None
    ok = compare_tensors("step-0 gradients", load(prefix + "-cuda.grads.safetensors"),
                         load(prefix + "-cpu.grads.safetensors"), a.grads, overrides, zero, True)
    logs = {}
    for t in ("cpu", "cuda"):
        with open(f"{prefix}-{t}.jsonl") as f:
            logs[t] = [json.loads(line) for line in f if line.strip()]
    cpu_loss = np.array([r["loss"] for r in logs["cpu"]])
    cuda_loss = np.array([r["loss"] for r in logs["cuda"]])
    if cpu_loss.shape != cuda_loss.shape:
        print(f"FAIL losses: {cuda_loss.size} steps vs {cpu_loss.size}")
        ok = False
    else:
        r = float((np.abs(cuda_loss - cpu_loss) / np.abs(cpu_loss)).max())
        good = np.isfinite(cuda_loss).all() and r <= losses_rtol
        print(f"{'PASS' if good else 'FAIL'} losses: {cuda_loss.size} steps, max rel {r:.3e}, rtol {losses_rtol}"
              f" (cpu {cpu_loss.round(6).tolist()})")
        ok = ok and good
    for t in ("cpu", "cuda"):
        tps = [r.get("tokens_per_s", 0) for r in logs[t][1:]] or [logs[t][0].get("tokens_per_s", 0)]
        print(f"   {t}: {np.median(tps):.0f} target tokens/s (median over steps after the first)")
    ok = compare_tensors("checkpoint after the run", load(prefix + "-cuda.safetensors"),
                         load(prefix + "-cpu.safetensors"), a.weights, overrides, zero, False) and ok
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
