#!/usr/bin/python3
"""One training step per stage of a compiled model against PyTorch, in one run.

usage: bench/train_step.py MODEL.so [--reps N] [--threads T]

For each stage: the compiled `train_<stage>` entry (called through the C ABI
with ctypes: one sample at the compiled sequence length, image included) and
the PyTorch reference (tests/reference/llava_train_ref.py: the same math,
same sample, gradients only for the stage's trainable parameters, OpenBLAS)
are timed on the same machine with the same thread count. Reports ms per
sample, the FLOPs mmc counts for the step, and the ratio.

mmc is timed in a child process that never loads PyTorch (`--mmc-only`), so
each side runs with its own thread pools and its own OpenMP settings: the
child drops OMP_WAIT_POLICY, which is PyTorch's knob here. The two sides
alternate per stage, in two rounds, and each keeps its best round.
"""
import argparse
import ctypes
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))


class Entry(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char_p), ("fn", ctypes.c_void_p), ("workspace", ctypes.c_uint64),
                ("num_args", ctypes.c_int32), ("num_results", ctypes.c_int32)]


class Desc(ctypes.Structure):
    _fields_ = [("abi", ctypes.c_uint32), ("size", ctypes.c_uint32), ("target", ctypes.c_char_p),
                ("manifest", ctypes.c_char_p), ("tokenizer", ctypes.c_char_p), ("num_params", ctypes.c_int32),
                ("num_entries", ctypes.c_int32), ("entries", ctypes.POINTER(Entry)), ("device", ctypes.c_void_p)]


FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)


def random_params(manifest, rng):
    """Every parameter N(0, 0.02), norms' scales 1: the weights both sides use."""
    params = {p["name"]: (rng.standard_normal(p["shape"]) * 0.02).astype(np.float32) for p in manifest["parameters"]}
    for p in manifest["parameters"]:
        if p["init"]["kind"] == "ones":
            params[p["name"]][...] = 1
    return params


def sample_inputs(manifest, cfg, specs, rng):
    """One sample filling the compiled length: BOS, the image, text, loss on the second half;
    an image; and random labels for a patch_labels stage. Returns (S, P, ids, targets, pixels, labels)."""
    import llava_ref as R
    S = specs["forward"]["args"][1]["shape"][1]
    P = R.num_image_tokens(cfg)
    ids = [1] + [manifest["config"]["image_token_index"]] * P + list(rng.integers(5, 200, S - P - 1))
    targets = [-100] * (S // 2) + ids[S // 2 + 1:] + [-100]
    size = cfg["vision"]["image_size"]
    pixels = rng.standard_normal((3, size, size)).astype(np.float32)
    labels = rng.integers(0, 81, (1, P)).astype(np.int32)
    return S, P, ids, targets, pixels, labels


def patch_loss_sum(cfg, W, tensors, pix, labels):
    """The model file's patch_loss in PyTorch: CLIP features (all layers but the last, [CLS]
    dropped), a linear classifier per patch, summed cross-entropy."""
    import torch
    import llava_ref as R
    hidden = R.vision_tower(cfg, W, pix[None])
    feats = hidden[cfg["vision_feature_layer"]][:, 1:]
    head = tensors["vision_pretrain_head.weight"]
    logits = R.linear(feats, head, tensors["vision_pretrain_head.bias"]).reshape(-1, head.shape[0])
    return torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).long().reshape(-1), reduction="sum")


def timed(fn, reps):
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mmc-only", metavar="STAGE", help="time only mmc's step of STAGE; print ms")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    if a.mmc_only:
        import llava_ref as R
    else:
        import torch
        import llava_ref as R
        import llava_train_ref as TR
        torch.set_num_threads(a.threads)

    lib = ctypes.CDLL(os.path.abspath(a.model))
    lib.mm_model_v1.restype = ctypes.POINTER(Desc)
    desc = lib.mm_model_v1().contents
    manifest = json.loads(desc.manifest)
    rng = np.random.default_rng(0)
    params = random_params(manifest, rng)
    pointers = (ctypes.c_void_p * len(params))(*[params[p["name"]].ctypes.data for p in manifest["parameters"]])
    cfg = R.normalize_config(manifest["config"])
    entries = {desc.entries[i].name.decode(): desc.entries[i] for i in range(desc.num_entries)}
    specs = {e["name"]: e for e in manifest["entries"]}

    S, P, ids, targets, pixels, labels = sample_inputs(manifest, cfg, specs, rng)

    if not a.mmc_only:
        print(f"model {manifest['name']}: sequence {S}, threads {a.threads}, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
              f"for PyTorch; median of {a.reps}, best of 2 rounds")
        print(f"{'stage':15s} {'GFLOP':>7s} {'mmc ms':>9s} {'GFLOP/s':>8s} {'torch ms':>9s} {'GFLOP/s':>8s} "
              f"{'torch/mmc':>9s}")
    child_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    for stage in manifest["stages"]:
        if a.mmc_only and stage["name"] != a.mmc_only:
            continue
        name = stage["train_entry"]
        entry, spec = entries[name], specs[name]
        patch_stage = spec["args"][1]["name"] == "patch_labels"
        if patch_stage:  # the vision tower's pre-training: (pixel_values, patch_labels)
            args = [pixels, labels]
        else:
            args = [pixels, np.array([ids], np.int32), np.array([targets], np.int32), np.array(S, np.int32)]
        results = [np.zeros(r["shape"], np.float32) for r in spec["results"]]
        workspace = np.zeros(entry.workspace // 4 + 16, np.float32)
        A = (ctypes.c_void_p * len(args))(*[x.ctypes.data for x in args])
        Rs = (ctypes.c_void_p * len(results))(*[x.ctypes.data for x in results])
        fn = FN(entry.fn)
        if a.mmc_only:
            print(timed(lambda: fn(pointers, A, Rs, workspace.ctypes.data), a.reps) * 1e3)
            return

        trainable = set(stage["trainable"])
        tensors = {}
        for p in manifest["parameters"]:
            t = torch.from_numpy(params[p["name"]].copy())
            t.requires_grad_(p["group"] in trainable)
            tensors[p["name"]] = t
        W = TR.TensorWeights(tensors)
        wrt = [tensors[n] for n in stage["trainable_parameters"]]
        pix = torch.from_numpy(pixels)
        sample = {"input_ids": ids, "targets": targets, "images": ["x"]}

        def torch_step():
            if patch_stage:
                ce = patch_loss_sum(cfg, W, tensors, pix, labels)
            else:
                ce, _ = TR.sample_loss_sum(cfg, W, sample, lambda _p: pix)
            torch.autograd.grad(ce, wrt, allow_unused=True)

        mmc_s = torch_s = float("inf")
        for _ in range(2):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), a.model, "--reps", str(a.reps),
                                  "--threads", str(a.threads), "--mmc-only", stage["name"]],
                                 env=child_env, check=True, capture_output=True, text=True).stdout
            mmc_s = min(mmc_s, float(out.split()[-1]) / 1e3)
            torch_s = min(torch_s, timed(torch_step, a.reps))
        gflop = stage["flops_per_sample"] / 1e9
        print(f"{stage['name']:15s} {gflop:7.3f} {mmc_s * 1e3:9.1f} {gflop / mmc_s:8.2f} {torch_s * 1e3:9.1f} "
              f"{gflop / torch_s:8.2f} {torch_s / mmc_s:9.2f}")


if __name__ == "__main__":
    main()
