#!/usr/bin/python3
"""One training step per stage of a compiled model against PyTorch, in one run.

usage: bench/train_step.py MODEL.so [--reps N] [--threads T]

For each stage: the compiled `train_<stage>` entry (called through the C ABI
with ctypes: one sample at the compiled sequence length, image included) and
the PyTorch reference (tests/reference/llava_train_ref.py: the same math,
same sample, gradients only for the stage's trainable parameters, OpenBLAS)
are timed on the same machine with the same thread count. Reports ms per
sample, the FLOPs mmc counts for the step, and the ratio. A stage that
freezes the vision tower takes the tower's output (image_embeds), which
mmrun computes once per image and caches: both sides get it as input, and
neither runs the tower in the step.

LLaVA and BLIP-2 (the manifest's model_type "blip-2": tests/reference/
blip2_ref.py's math) alike. BLIP-2's stage 1 (ITC + ITM + ITG over the
Q-Former) is batched: one call of `train_stage1` takes a whole batch of image-
text pairs (16 for blip2-tiny: texts as `mmrun --train stage1` builds them,
[CLS] caption "\\n" padded, length = queries + text, uniform numbers for the
hard negatives) and returns the mean loss's gradients; its row is per call
(GFLOP as the manifest counts the entry: the whole batch), followed by the
per-pair times. PyTorch computes the same call: the frozen ViT over the 16
images (unless the entry takes their cached output, image_embeds, as
blip2-tiny's does), blip2_ref.stage1_loss, gradients of the stage's parameters.

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
import threading
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


STAGE1_ARGS = ["input_ids", "targets", "length", "negative_text_uniform", "negative_image_uniform"]
# The first argument: the images' pixels, or the frozen tower's output for them (image_embeds,
# which mmrun computes once per image and caches; the PyTorch step then skips the tower too).
STAGE1_IMAGE_ARGS = ("pixel_values", "image_embeds")


def is_blip2(manifest):
    return manifest["config"].get("model_type") == "blip-2"


def random_params(manifest, rng):
    """Every parameter N(0, 0.02), norms' scales 1, constants (BLIP-2's ITC temperature) their
    value: the weights both sides use."""
    params = {p["name"]: np.asarray(rng.standard_normal(p["shape"]) * 0.02, np.float32)  # 0-d stays an array
              for p in manifest["parameters"]}
    for p in manifest["parameters"]:
        if p["init"]["kind"] == "ones":
            params[p["name"]][...] = 1
        elif p["init"]["kind"] == "constant":
            params[p["name"]][...] = p["init"]["value"]
    return params


def sample_inputs(manifest, cfg, specs, rng):
    """One sample filling the compiled length: BOS, the image, text, loss on the second half
    (BLIP-2: the query positions first, then BOS, as mmrun's blip2 template puts them);
    an image; and random labels and grid cells for a patch_labels stage. Returns (S, P, ids, targets,
    pixels, (labels, cells)).
    A BLIP-2 manifest needs no reference module (the mmc-only child stays free of PyTorch)."""
    S = specs["forward" if "forward" in specs else "encode"]["args"][1]["shape"][1]
    if is_blip2(manifest):
        c = manifest["config"]
        P = int(c["num_query_tokens"])
        bos = int(c["text_config"].get("bos_token_id", 1))
        if "encode" in specs:  # the encoder-decoder: queries, text, </s> (mmrun's blip2_t5 template)
            ids = [c["image_token_index"]] * P + list(rng.integers(5, 200, S - P - 1)) + [c["text_config"]["eos_token_id"]]
        else:
            ids = [c["image_token_index"]] * P + [bos] + list(rng.integers(5, 200, S - P - 1))
        size = c["vision_config"]["image_size"]
        patches = (size // c["vision_config"]["patch_size"]) ** 2
    else:
        import llava_ref as R
        P = R.num_image_tokens(cfg)
        ids = [1] + [manifest["config"]["image_token_index"]] * P + list(rng.integers(5, 200, S - P - 1))
        size = cfg["vision"]["image_size"]
        patches = P
    targets = [-100] * (S // 2) + ids[S // 2 + 1:] + [-100]
    pixels = rng.standard_normal((3, size, size)).astype(np.float32)
    labels = rng.integers(0, 81, (1, patches)).astype(np.int32)
    # and each patch's grid cell (0: background, 1..9), for a tower that also learns where
    cells = rng.integers(0, 10, (1, patches)).astype(np.int32)
    return S, P, ids, targets, pixels, (labels, cells)


def reads_patch_cells(spec):
    """Whether a patch_labels entry also takes each patch's grid cell (a tower with a cell head)."""
    return [x["name"] for x in spec["args"]][1:3] == ["patch_labels", "patch_cells"]


def newline_id(tokenizer_json):
    """The id of "\\n" in the model's tokenizer (byte-level BPE: "\\u010a"), None when unknown."""
    try:
        vocab = json.loads(tokenizer_json)["model"]["vocab"]
    except (TypeError, ValueError, KeyError):
        return None
    for k in ("\u010a", "<0x0A>", "\n"):
        if k in vocab:
            return int(vocab[k])
    return None


def stage1_inputs(manifest, spec, nl, rng):
    """One call of BLIP-2's batched stage-1 entry, as `mmrun --train stage1` fills it: per pair an
    image and the Q-Former text [CLS] caption "\\n" (12-18 caption tokens), padded with the pad id
    to the text length, targets the next token (-100 at the last real position and past it),
    length = queries + the text's positions; uniform numbers in [0, 1) for the hard negatives.
    Returns the entry's six arguments as numpy arrays."""
    c = manifest["config"]
    q = c["qformer_config"]
    B, TT = spec["args"][1]["shape"]
    Q, V = int(c["num_query_tokens"]), int(q["vocab_size"])
    pixels = rng.standard_normal(spec["args"][0]["shape"]).astype(np.float32)
    ids = np.full((B, TT), int(q.get("pad_token_id", 0)), np.int32)
    targets = np.full((B, TT), -100, np.int32)
    length = np.zeros(B, np.int32)
    for b in range(B):
        caption = list(rng.integers(5, V, int(rng.integers(12, 19))))
        text = ([int(q["cls_token_id"])] + caption + [nl if nl is not None else caption[-1]])[:TT]
        ids[b, :len(text)] = text
        targets[b, :len(text) - 1] = text[1:]
        length[b] = Q + len(text)
    u_text = rng.random(B, dtype=np.float32)
    u_image = rng.random(B, dtype=np.float32)
    return [pixels, ids, targets, length, u_text, u_image]


def patch_loss_sum(cfg, W, tensors, pix, labels, cells=None):
    """The model file's patch_loss in PyTorch: CLIP features (all layers but the last, [CLS]
    dropped; BLIP-2: the ViT's post-layernormed output, [CLS] dropped), a linear classifier per
    patch, summed cross-entropy; with CELLS, plus the cell head's (llava-tiny's tower learns
    each patch's object's grid cell too)."""
    import torch
    import llava_ref as R
    ce = torch.nn.functional.cross_entropy
    head = tensors["vision_pretrain_head.weight"]
    blip2 = cfg.get("model_type") == "blip-2"
    if cells is not None:
        import blip2_ref as B2
        both = B2.patch_and_cell_logits if blip2 else R.patch_and_cell_logits
        class_logits, cell_logits = (x[0] for x in both(cfg, W, pix[None]))
        return (ce(class_logits, torch.from_numpy(labels).long().reshape(-1), reduction="sum")
                + ce(cell_logits, torch.from_numpy(cells).long().reshape(-1), reduction="sum"))
    if blip2:  # post_layernorm over the last layer, [CLS] dropped
        import blip2_ref as B2
        logits = B2.patch_logits(cfg, W, pix[None]).reshape(-1, head.shape[0])
    else:
        hidden = R.vision_tower(cfg, W, pix[None])
        feats = hidden[cfg["vision_feature_layer"]][:, 1:]
        logits = R.linear(feats, head, tensors["vision_pretrain_head.bias"]).reshape(-1, head.shape[0])
    return ce(logits, torch.from_numpy(labels).long().reshape(-1), reduction="sum")


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
    ap.add_argument("--step-samples", type=int, default=1, metavar="N",
                    help="with --mmc-only: time N calls that share their packed weights, as the N samples of "
                         "one mmrun step do (abi.h, mm_weight_cache_v1); print ms per sample and GFLOP/s")
    ap.add_argument("--sample-threads", type=int, default=1, metavar="W",
                    help="with --step-samples: the step's samples on W threads at once, every kernel inside on "
                         "its one thread, as mmrun --train runs the tiny models (--sample-threads); 0: as "
                         "mmrun chooses by default (--threads where the extra gradient copies take at most "
                         "256 MiB, else 1)")
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))

    lib = ctypes.CDLL(os.path.abspath(a.model))
    lib.mm_model_v1.restype = ctypes.POINTER(Desc)
    desc = lib.mm_model_v1().contents
    manifest = json.loads(desc.manifest)
    blip2 = is_blip2(manifest)
    if a.mmc_only:
        if not blip2:
            import llava_ref as R
    else:
        import torch
        import llava_ref as R
        import blip2_ref as B2
        import llava_train_ref as TR
        torch.set_num_threads(a.threads)
    rng = np.random.default_rng(0)
    params = random_params(manifest, rng)
    pointers = (ctypes.c_void_p * len(params))(*[params[p["name"]].ctypes.data for p in manifest["parameters"]])
    if blip2:
        cfg = None if a.mmc_only else B2.normalize_config(manifest["config"])
    else:
        cfg = R.normalize_config(manifest["config"])
    entries = {desc.entries[i].name.decode(): desc.entries[i] for i in range(desc.num_entries)}
    specs = {e["name"]: e for e in manifest["entries"]}

    S, P, ids, targets, pixels, (labels, cells) = sample_inputs(manifest, cfg, specs, rng)
    # Batched stages (BLIP-2's stage 1): one call's arguments, drawn after the one-sample inputs.
    batched = {}
    for stage in manifest["stages"]:
        spec = specs.get(stage.get("train_entry"))
        names = [x["name"] for x in spec["args"]] if spec is not None else []
        if names[:1] and names[0] in STAGE1_IMAGE_ARGS and names[1:] == STAGE1_ARGS:
            batched[stage["name"]] = stage1_inputs(manifest, spec, newline_id(desc.tokenizer), rng)
    # One-sample stages that freeze the vision tower take its output (image_embeds), which mmrun
    # computes once per image and caches: both sides get these values in its place (the PyTorch
    # step then skips the tower too).
    vit = None
    if "vision_embeds" in specs:
        vit = rng.standard_normal(specs["vision_embeds"]["results"][0]["shape"]).astype(np.float32)

    if not a.mmc_only:
        extra = ""
        if batched:
            b0 = next(iter(batched.values()))
            extra = (f" ({', '.join(batched)}: {b0[1].shape[0]} pairs per call, {P} queries + {b0[1].shape[1]} "
                     f"text positions, texts of {int(b0[3].min()) - P}-{int(b0[3].max()) - P})")
        print(f"model {manifest['name']}: sequence {S}{extra}, threads {a.threads}, torch {torch.__version__} "
              f"({torch.get_num_threads()} threads), OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} "
              f"for PyTorch; median of {a.reps}, best of 2 rounds")
        print(f"{'stage':15s} {'GFLOP':>7s} {'mmc ms':>9s} {'GFLOP/s':>8s} {'torch ms':>9s} {'GFLOP/s':>8s} "
              f"{'torch/mmc':>9s}")
    child_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    dec_sample = None  # the encoder-decoder's (decoder input, targets), drawn once
    for stage in manifest["stages"]:
        if a.mmc_only and stage["name"] != a.mmc_only:
            continue
        name = stage["train_entry"]
        entry, spec = entries[name], specs[name]
        arg_names = [x["name"] for x in spec["args"]]
        patch_stage = arg_names[1] == "patch_labels"
        with_cells = reads_patch_cells(spec)
        batch_args = batched.get(stage["name"])
        if batch_args is not None:  # one call over a batch of image-text pairs
            args = batch_args
        elif patch_stage:  # the vision tower's pre-training: (pixel_values, patch_labels[, patch_cells])
            args = [pixels, labels] + ([cells] if with_cells else [])
        elif "decoder_input_ids" in arg_names:
            # The encoder-decoder (blip2-t5-tiny): every encoder and decoder position real, the
            # loss on every decoder position; the T5's pre-training reads no image.
            Sd = next(x["shape"][1] for x in spec["args"] if x["name"] == "decoder_input_ids")
            if dec_sample is None:
                dec_targets = [int(x) for x in rng.integers(5, 200, Sd)]
                dec_sample = ([int(manifest["config"]["text_config"]["decoder_start_token_id"])] + dec_targets[:-1],
                              dec_targets)
            by_name = {"pixel_values": pixels, "image_embeds": vit,
                       "input_ids": np.array([ids], np.int32), "length": np.array(S, np.int32),
                       "decoder_input_ids": np.array([dec_sample[0]], np.int32),
                       "targets": np.array([dec_sample[1]], np.int32), "decoder_length": np.array(Sd, np.int32)}
            args = [by_name[x["name"]] for x in spec["args"]]
        elif "cell_colour_ids" in arg_names:
            # BLIP-2's OPT pre-trained on the scene's layout (layout_lm_loss): at each query
            # position a colour and a shape word's embeddings, no image.
            layout = [rng.integers(5, 200, (1, P)).astype(np.int32) for _ in range(2)]
            by_name = {"input_ids": np.array([ids], np.int32), "cell_colour_ids": layout[0],
                       "cell_shape_ids": layout[1], "targets": np.array([targets], np.int32),
                       "length": np.array(S, np.int32)}
            args = [by_name[x["name"]] for x in spec["args"]]
        else:
            args = [vit if arg_names[0] == "image_embeds" else pixels, np.array([ids], np.int32),
                    np.array([targets], np.int32), np.array(S, np.int32)]
        results = [np.zeros(r["shape"], np.float32) for r in spec["results"]]
        workspace = np.zeros(entry.workspace // 4 + 16, np.float32)
        A = (ctypes.c_void_p * len(args))(*[x.ctypes.data for x in args])
        Rs = (ctypes.c_void_p * len(results))(*[x.ctypes.data for x in results])
        fn = FN(entry.fn)
        if a.mmc_only and a.step_samples > 1:
            # mmrun declares the weights unchanged before each step's samples (the optimizer has
            # just changed them): the first sample packs each weight, the rest reuse the copies.
            # With W sample threads each takes a contiguous share of the samples, with its own
            # results and workspace, its kernels on its one thread (ctypes releases the GIL).
            cache = lib.mm_weight_cache_v1
            cache.argtypes = [ctypes.c_void_p, ctypes.c_int64]
            set_threads = lib.omp_set_num_threads  # the OpenMP runtime the library links
            set_threads.argtypes = [ctypes.c_int]
            W = a.sample_threads
            if W == 0:  # runtime/lib/Trainer.cpp's default
                sizes = {p["name"]: int(np.prod(p["shape"])) for p in manifest["parameters"]}
                train_bytes = 4 * sum(sizes[n] for n in stage["trainable_parameters"])
                W = a.threads if 2 * train_bytes * (a.threads - 1) <= 256 << 20 else 1
            W = max(1, min(W, a.step_samples))
            own = [(Rs, workspace)]
            for _ in range(W - 1):
                res = [np.zeros(r["shape"], np.float32) for r in spec["results"]]
                own.append(((ctypes.c_void_p * len(res))(*[x.ctypes.data for x in res]),
                            np.zeros(entry.workspace // 4 + 16, np.float32), res))

            def share(w):
                if W > 1:
                    set_threads(1)
                for _ in range(a.step_samples * w // W, a.step_samples * (w + 1) // W):
                    fn(pointers, A, own[w][0], own[w][1].ctypes.data)

            def step():
                cache(pointers, len(params))
                if W == 1:
                    share(0)
                    return
                workers = [threading.Thread(target=share, args=(w,)) for w in range(W)]
                for t in workers:
                    t.start()
                for t in workers:
                    t.join()

            ms = timed(step, a.reps) * 1e3 / a.step_samples
            cache(None, 0)
            print(f"{ms:.1f} ms per sample, {stage['flops_per_sample'] / ms / 1e6:.1f} GFLOP/s "
                  f"({a.step_samples} samples per step" + (f", {W} at a time" if W > 1 else "") + ")")
            return
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
        if "cell_colour_ids" in arg_names:
            sample = {"input_ids": ids, "targets": targets, "images": [],
                      "cells": tuple([int(v) for v in x[0]] for x in layout)}
        if dec_sample is not None and "decoder_input_ids" in arg_names:
            sample = {"input_ids": ids, "decoder_input_ids": dec_sample[0], "targets": dec_sample[1],
                      "images": ["x"] if spec["args"][0]["name"] in STAGE1_IMAGE_ARGS else []}
        vision_of = (lambda _p: torch.from_numpy(vit[0])) if arg_names[0] == "image_embeds" else None

        if batch_args is not None:
            embeds_given = spec["args"][0]["name"] == "image_embeds"
            b_pix = torch.from_numpy(batch_args[0])
            b_ids, b_tg, b_len = (torch.from_numpy(x).long() for x in batch_args[1:4])
            u_text, u_image = batch_args[4], batch_args[5]

        def torch_step():
            if batch_args is not None:  # the frozen ViT over the batch (unless cached), then ITC + ITM + ITG
                img = b_pix if embeds_given else B2.image_embeds(cfg, W, b_pix)
                ce, _ = B2.stage1_loss(cfg, W, img, b_ids, b_tg, b_len, u_text, u_image)
            elif patch_stage:
                ce = patch_loss_sum(cfg, W, tensors, pix, labels, cells if with_cells else None)
            else:
                ce, _ = TR.sample_loss_sum(cfg, W, sample, lambda _p: pix, vision_of)
            torch.autograd.grad(ce, wrt, allow_unused=True)

        mmc_s = torch_s = float("inf")
        for _ in range(2):
            out = subprocess.run([sys.executable, os.path.abspath(__file__), a.model, "--reps", str(a.reps),
                                  "--threads", str(a.threads), "--mmc-only", stage["name"]],
                                 env=child_env, check=True, capture_output=True, text=True).stdout
            mmc_s = min(mmc_s, float(out.split()[-1]) / 1e3)
            torch_s = min(torch_s, timed(torch_step, a.reps))
        gflop = stage["flops_per_sample"] / 1e9  # per call of the entry (a batched stage: the whole batch)
        label = stage["name"] if batch_args is None else f"{stage['name']} (x{batch_args[1].shape[0]})"
        print(f"{label:15s} {gflop:7.3f} {mmc_s * 1e3:9.1f} {gflop / mmc_s:8.2f} {torch_s * 1e3:9.1f} "
              f"{gflop / torch_s:8.2f} {torch_s / mmc_s:9.2f}")
        if batch_args is not None:
            n = batch_args[1].shape[0]
            print(f"{'':15s} per pair: {gflop / n:.3f} GFLOP, mmc {mmc_s * 1e3 / n:.2f} ms, "
                  f"torch {torch_s * 1e3 / n:.2f} ms")


if __name__ == "__main__":
    main()
