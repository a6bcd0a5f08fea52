#!/usr/bin/python3
"""Peak memory of one training step per stage: mmc against PyTorch.

usage: bench/step_memory.py MODEL.so [--stage NAME ...]

Each side runs in its own fresh process: it loads the same weights and the
same sample (bench/train_step.py's), records its peak resident set, runs one
training step of the stage (loss and the trainable parameters' gradients),
and reports how much the peak grew. That growth is the step's own memory:
activations kept for the backward pass, gradients, workspaces, for mmc the
planned arena and the gradient results, for PyTorch its autograd graph and
.grad-free `torch.autograd.grad` results. Weights and libraries count on
neither side.
"""
import argparse
import json
import os
import resource
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(model, stage, side):
    import ctypes
    import numpy as np
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
    import train_step as TS
    import llava_ref as R
    lib = ctypes.CDLL(os.path.abspath(model))
    lib.mm_model_v1.restype = ctypes.POINTER(TS.Desc)
    desc = lib.mm_model_v1().contents
    manifest = json.loads(desc.manifest)
    rng = np.random.default_rng(0)
    params = TS.random_params(manifest, rng)
    cfg = R.normalize_config(manifest["config"])
    specs = {e["name"]: e for e in manifest["entries"]}
    st = next(s for s in manifest["stages"] if s["name"] == stage)
    spec = specs[st["train_entry"]]
    S, P, ids, targets, pixels, (labels, cells) = TS.sample_inputs(manifest, cfg, specs, rng)
    patch = spec["args"][1]["name"] == "patch_labels"
    if not TS.reads_patch_cells(spec):
        cells = None  # a tower that learns only the patch classes
    if side == "mmc":
        entries = {desc.entries[i].name.decode(): desc.entries[i] for i in range(desc.num_entries)}
        entry = entries[st["train_entry"]]
        pointers = (ctypes.c_void_p * len(params))(*[params[p["name"]].ctypes.data for p in manifest["parameters"]])
        args = [pixels, labels] + ([cells] if cells is not None else []) if patch else [pixels, np.array([ids], np.int32), np.array([targets], np.int32),
                                               np.array(S, np.int32)]
        A = (ctypes.c_void_p * len(args))(*[x.ctypes.data for x in args])
        base = peak_mib()
        results = [np.zeros(r["shape"], np.float32) for r in spec["results"]]
        workspace = np.zeros(entry.workspace // 4 + 16, np.float32)
        Rs = (ctypes.c_void_p * len(results))(*[x.ctypes.data for x in results])
        TS.FN(entry.fn)(pointers, A, Rs, workspace.ctypes.data)
    else:
        import torch
        import llava_train_ref as TR
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
        trainable = set(st["trainable"])
        tensors = {}
        for p in manifest["parameters"]:
            t = torch.from_numpy(params[p["name"]])
            t.requires_grad_(p["group"] in trainable)
            tensors[p["name"]] = t
        W = TR.TensorWeights(tensors)
        wrt = [tensors[n] for n in st["trainable_parameters"]]
        pix = torch.from_numpy(pixels)
        base = peak_mib()
        if patch:
            ce = TS.patch_loss_sum(cfg, W, tensors, pix, labels, cells)
        else:
            ce, _ = TR.sample_loss_sum(cfg, W, {"input_ids": ids, "targets": targets, "images": ["x"]},
                                       lambda _p: pix)
        grads = torch.autograd.grad(ce, wrt, allow_unused=True)
        del grads
    print(json.dumps({"step_mib": peak_mib() - base}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--stage", action="append")
    ap.add_argument("--child", nargs=2, metavar=("STAGE", "SIDE"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.model, a.child[0], a.child[1])
    manifest = json.loads(subprocess.run([os.path.join(HERE, "..", "build", "bin", "mmc"), "inspect", a.model,
                                          "--json"], check=True, capture_output=True, text=True).stdout)
    stages = a.stage or [s["name"] for s in manifest["stages"]]
    print(f"peak memory of one training step (growth of the peak resident set), {manifest['name']}")
    print(f"{'stage':15s} {'mmc MiB':>9s} {'PyTorch MiB':>12s} {'mmc/PyTorch':>12s}")
    for stage in stages:
        got = {}
        for side in ("mmc", "torch"):
            r = subprocess.run([sys.executable, os.path.abspath(__file__), a.model, "--child", stage, side],
                               check=True, capture_output=True, text=True)
            got[side] = json.loads(r.stdout.strip().splitlines()[-1])["step_mib"]
        print(f"{stage:15s} {got['mmc']:9.1f} {got['torch']:12.1f} {got['mmc'] / got['torch']:12.2f}")


if __name__ == "__main__":
    main()
