#!/usr/bin/python3
"""Self-test of llava_train_ref.py (the training-stage reference).

  /usr/bin/python3 tests/reference/selftest_train_ref.py [--keep DIR]

On a tiny random LLaVA (GQA, non-trivial norms and biases) with a random
batches.jsonl of 2 steps x 2 samples (one with a PNG image) it checks:
  a. gradients against central finite differences of the step loss, in
     float64, for elements of vision, projector and LLM parameters (also
     parameters the graph never reaches: exactly zero); the step loss against
     llava_ref.llava_forward's logits with a numpy cross-entropy;
  b. frozen parameters get no gradient, trainable ones always one (zeros for
     a text-only step in a projector-only stage); what --dump-grads holds;
  c. two AdamW steps (clipping, two weight-decay groups, bias correction)
     against a numpy float64 transcription of the update rule;
  d. the learning-rate schedules for a few (W, T, s), and the lr the trainer
     actually used per step;
  e. the CLI: dumps, self-comparison passes; a perturbed gradient, a frozen
     parameter's gradient, a missing one, NaN, a wrong loss, a changed frozen
     weight fail; bad inputs exit 2;
  f. make_llava_train_data.py's byte-level tokenizer and chat templates (the
     parity test's check of mmrun's --dump-batches) on hand-built records;
  g. BLIP-2 stage 1's pieces in blip2_ref.py: the hard-negative sampler never
     draws the positive (uniform numbers 0 and 1 - 2^-24, a dominant positive,
     ties), its draws against searchsorted on the renormalised softmax, its
     draw frequencies over an even grid of uniforms; the three stage-1
     attention masks against hand-written ones.
Exits non-zero on any failure.
"""

import argparse
import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llava_ref as R  # noqa: E402
import llava_train_ref as TR  # noqa: E402
import blip2_ref as B2  # noqa: E402
import make_random_llava as M  # noqa: E402

PY = sys.executable or "/usr/bin/python3"
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

HF_CONFIG = {
    "model_type": "llava", "image_token_index": 3, "projector_hidden_act": "gelu",
    "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
    "vision_config": {"hidden_size": 8, "intermediate_size": 12, "num_hidden_layers": 3,
                      "num_attention_heads": 2, "image_size": 8, "patch_size": 4,
                      "num_channels": 3, "layer_norm_eps": 1e-5, "hidden_act": "quick_gelu"},
    "text_config": {"hidden_size": 16, "intermediate_size": 20, "num_hidden_layers": 2,
                    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 23,
                    "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "hidden_act": "silu",
                    "tie_word_embeddings": False},
}

GROUPS = ("vision_tower", "multi_modal_projector", "language_model")


def group_of(name):
    for g in GROUPS:
        if name.startswith(g + "."):
            return g
    raise ValueError(name)


def make_manifest():
    cfg = R.normalize_config(HF_CONFIG)
    init_kind = {"mat": {"kind": "normal", "std": 0.02}, "norm": {"kind": "ones"}, "bias": {"kind": "zeros"}}
    params = [{"name": n, "shape": list(s), "dtype": "F32", "group": group_of(n), "init": init_kind[k]}
              for n, s, k in M.weight_shapes(cfg)]
    stage = dict(loss="lm_loss", data="caption", schedule="cosine", warmup_ratio=0.03, weight_decay=0.0,
                 batch=2, epochs=1)
    stages = [
        dict(stage, name="stage1", trainable=["multi_modal_projector"], lr=1e-3),
        dict(stage, name="stage2", trainable=["multi_modal_projector", "language_model"], lr=2e-4,
             data="conversation"),
        # Everything trains, weight decay on, no warmup (so step 0 moves the weights).
        dict(stage, name="all", trainable=list(GROUPS), lr=1e-2, weight_decay=0.1, warmup_ratio=0.0),
    ]
    return {"name": "tiny", "config": HF_CONFIG, "parameters": params, "stages": stages}


def make_batches(cfg, image_path, seed=0):
    rng = np.random.default_rng(seed)
    V, img = cfg["text"]["vocab_size"], cfg["image_token_index"]
    nimg = R.num_image_tokens(cfg)

    def text(n):
        return [int(x) if x != img else (img + 1) % V for x in rng.integers(0, V, size=n)]

    def targets(ids, first_loss):
        return [ids[t + 1] if first_loss <= t < len(ids) - 1 else -100 for t in range(len(ids))]

    steps = []
    for s in range(2):
        a = [1] + text(2) + [img] * nimg + text(5 + s)
        b = [1] + text(7 - s)
        steps.append({"step": s, "samples": [
            {"id": f"s{s}-img", "image": image_path, "input_ids": a, "targets": targets(a, 2 + nimg)},
            {"id": f"s{s}-txt", "image": None, "input_ids": b, "targets": targets(b, 2)}]})
    return steps


def write_jsonl(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


class Fixture:
    def __init__(self, tmp):
        self.tmp = tmp
        self.manifest_path = os.path.join(tmp, "manifest.json")
        self.weights_path = os.path.join(tmp, "init.safetensors")
        self.batches_path = os.path.join(tmp, "batches.jsonl")
        self.image_path = os.path.join(tmp, "img.png")
        raw = make_manifest()
        with open(self.manifest_path, "w") as f:
            json.dump(raw, f, indent=1)
        self.manifest = TR.load_manifest(self.manifest_path)
        self.cfg = self.manifest["cfg"]
        w = M.random_weights(self.cfg, seed=3, mat_std=0.3, norm_std=0.3, bias_std=0.1)
        w["optimizer.step"] = np.array([7], dtype=np.int64)  # must be ignored
        M.write_safetensors(self.weights_path, w)
        M.write_test_image(self.image_path, 12, 10, seed=2)
        write_jsonl(self.batches_path, make_batches(self.cfg, self.image_path))
        self.init = TR.load_initial_weights(self.weights_path, self.manifest["params"])
        self.batches = TR.load_batches(self.batches_path, self.cfg)

    def trainer(self, stage, dtype=torch.float32, total_steps=2, max_grad_norm=1.0, lr=None):
        st = TR.stage_settings(self.manifest, stage)
        return TR.Trainer(self.manifest, st, self.init, lr=lr, total_steps=total_steps,
                          max_grad_norm=max_grad_norm, dtype=dtype)


# --------------------------------------------------------------------------
# a. finite differences, loss value
# --------------------------------------------------------------------------

def test_finite_differences(fx):
    test_fd_batch(fx, fx.batches[0], "step 0")
    two_images = {"step": 0, "samples": [fx.batches[0]["samples"][0], fx.batches[1]["samples"][0],
                                         fx.batches[1]["samples"][1]]}
    test_fd_batch(fx, two_images, "a step with two image samples")


def test_fd_batch(fx, batch, label):
    tr = fx.trainer("all", dtype=torch.float64)
    tr.compute_grads(batch)
    ptrs = {}
    shared = []
    for n in tr.trainable:
        g = tr.tensors[n].grad
        key = g.untyped_storage().data_ptr() if hasattr(g, "untyped_storage") else g.storage().data_ptr()
        if key in ptrs:
            shared.append((ptrs[key], n))
        ptrs[key] = n
    check(not shared, f"a. {label}: no two gradients share storage {shared[:2]}")
    grads = tr.grads()
    L = fx.cfg["vision"]["num_hidden_layers"]
    names = [
        "vision_tower.vision_model.embeddings.patch_embedding.weight",
        "vision_tower.vision_model.embeddings.class_embedding",
        "vision_tower.vision_model.embeddings.position_embedding.weight",
        "vision_tower.vision_model.pre_layrnorm.weight",
        "vision_tower.vision_model.encoder.layers.0.self_attn.q_proj.weight",
        "vision_tower.vision_model.encoder.layers.1.layer_norm2.bias",
        "vision_tower.vision_model.encoder.layers.1.mlp.fc1.weight",
        "multi_modal_projector.linear_1.weight",
        "multi_modal_projector.linear_1.bias",
        "multi_modal_projector.linear_2.weight",
        "language_model.model.embed_tokens.weight",
        "language_model.model.layers.0.self_attn.k_proj.weight",
        "language_model.model.layers.0.input_layernorm.weight",
        "language_model.model.layers.1.self_attn.v_proj.weight",
        "language_model.model.layers.1.mlp.down_proj.weight",
        "language_model.model.norm.weight",
        "language_model.lm_head.weight",
    ]
    unused = [f"vision_tower.vision_model.encoder.layers.{L - 1}.mlp.fc2.weight",
              "vision_tower.vision_model.post_layernorm.weight"]
    rng = np.random.default_rng(0)
    h = 1e-5
    worst = 0.0
    all_ok = True
    for name in names + unused:
        p = tr.tensors[name]
        g = grads[name].reshape(-1)
        flat_idx = [int(g.abs().argmax())] + [int(i) for i in rng.integers(0, g.numel(), size=2)]
        for i in flat_idx:
            with torch.no_grad():
                orig = p.view(-1)[i].item()
                p.view(-1)[i] = orig + h
                lp, _, _ = TR.step_loss(fx.cfg, tr.W, batch, tr.pixels)
                p.view(-1)[i] = orig - h
                lm, _, _ = TR.step_loss(fx.cfg, tr.W, batch, tr.pixels)
                p.view(-1)[i] = orig
            fd = (lp - lm) / (2 * h)
            an = float(g[i])
            err = abs(fd - an)
            ok = err <= 1e-8 + 1e-6 * abs(an)
            worst = max(worst, err / max(abs(an), 1e-8))
            if not ok:
                all_ok = False
                print(f"     {name}[{i}]: autograd {an:.10e} finite difference {fd:.10e}")
    check(all_ok, f"a. {label}: float64 gradients == central finite differences ({len(names + unused)} "
                  f"tensors x 3 elements, worst rel {worst:.1e})")
    check(all(float(grads[n].abs().max()) == 0.0 for n in unused),
          "a. parameters the graph never reaches (last CLIP layer, post_layernorm) get exactly zero")
    nz = [n for n in names if float(grads[n].abs().max()) == 0.0]
    check(not nz, f"a. every probed reachable parameter has a non-zero gradient {nz}")


def np_cross_entropy_sum(logits, targets):
    logits = logits.astype(np.float64)
    tot, n = 0.0, 0
    for t, y in enumerate(targets):
        if y == -100:
            continue
        row = logits[t]
        m = row.max()
        tot += (m + math.log(np.exp(row - m).sum())) - row[y]
        n += 1
    return tot, n


def test_loss_value(fx):
    tr = fx.trainer("stage2")
    batch = fx.batches[1]
    loss, count, _ = TR.step_loss(fx.cfg, tr.W, batch, tr.pixels)
    tot, n = 0.0, 0
    size = fx.cfg["vision"]["image_size"]
    for s in batch["samples"]:
        pix = [R.preprocess_image(p, size) for p in s["images"]]
        logits = R.llava_forward(fx.cfg, fx.init, pix, s["input_ids"]).numpy()
        a, b = np_cross_entropy_sum(logits, s["targets"])
        tot, n = tot + a, n + b
    ref = tot / n
    check(count == n and abs(loss - ref) <= 1e-5 * abs(ref),
          f"a. step loss {loss:.8f} == llava_ref logits + numpy CE / count {ref:.8f} ({n} targets)")


# --------------------------------------------------------------------------
# b. frozen / trainable
# --------------------------------------------------------------------------

def test_frozen(fx):
    tr = fx.trainer("stage1")
    tr.compute_grads(fx.batches[0])
    frozen_none = all(tr.tensors[n].grad is None for n in tr.frozen)
    frozen_nograd = all(not tr.tensors[n].requires_grad for n in tr.frozen)
    check(frozen_none and frozen_nograd and len(tr.frozen) > 0,
          f"b. stage1: {len(tr.frozen)} frozen tensors have requires_grad False and grad None")
    check(sorted(tr.trainable) == sorted(n for n, _, g in fx.manifest["params"] if g == "multi_modal_projector"),
          "b. stage1 trains exactly the projector")
    check(all(float(tr.tensors[n].grad.abs().max()) > 0 for n in tr.trainable),
          "b. stage1 projector gradients are non-zero with an image in the step")
    # A step whose only sample is text-only: the projector is not reached.
    text_only = {"step": 9, "samples": [fx.batches[0]["samples"][1]]}
    tr.compute_grads(text_only)
    check(all(tr.tensors[n].grad is not None and float(tr.tensors[n].grad.abs().max()) == 0.0
              for n in tr.trainable),
          "b. text-only step: trainable projector gets zero gradients (not None)")
    tr2 = fx.trainer("stage2")
    tr2.compute_grads(fx.batches[0])
    check(all(tr2.tensors[n].grad is None for n in tr2.frozen) and
          all(n.startswith("vision_tower.") for n in tr2.frozen),
          "b. stage2: only the vision tower is frozen, with no gradient")


# --------------------------------------------------------------------------
# c. AdamW by hand
# --------------------------------------------------------------------------

def test_adamw(fx):
    max_norm = 0.05
    tr = fx.trainer("all", dtype=torch.float64, total_steps=2, max_grad_norm=max_norm)
    lam = TR.schedule_lambda("cosine", 0, 2)
    p = {n: fx.init[n].astype(np.float64) for n in tr.trainable}
    m = {n: np.zeros_like(v) for n, v in p.items()}
    v = {n: np.zeros_like(x) for n, x in p.items()}
    b1, b2, eps, lr0, wd = 0.9, 0.999, 1e-8, 1e-2, 0.1
    worst, norms_ok, lrs_ok, clipped = 0.0, True, True, True
    for k, batch in enumerate(fx.batches):
        rec, grads = tr.step(batch)
        g = {n: grads[n].numpy().astype(np.float64) for n in tr.trainable}
        norm = math.sqrt(sum(float((x * x).sum()) for x in g.values()))
        norms_ok &= abs(norm - rec["grad_norm"]) <= 1e-12 * norm
        clipped &= norm > max_norm
        coef = min(1.0, max_norm / (norm + 1e-6))
        lr = lr0 * lam(k)
        lrs_ok &= abs(rec["lr"] - lr) <= 1e-15
        t = k + 1
        for n in tr.trainable:
            gg = g[n] * coef
            m[n] = b1 * m[n] + (1 - b1) * gg
            v[n] = b2 * v[n] + (1 - b2) * gg * gg
            decay = wd if p[n].ndim >= 2 else 0.0
            p[n] = p[n] * (1 - lr * decay)
            mhat = m[n] / (1 - b1 ** t)
            vhat = v[n] / (1 - b2 ** t)
            p[n] = p[n] - lr * mhat / (np.sqrt(vhat) + eps)
        for n in tr.trainable:
            ours = tr.tensors[n].detach().numpy()
            moved = np.abs(p[n] - fx.init[n]).max()
            worst = max(worst, float(np.abs(ours - p[n]).max() / max(moved, 1e-30)))
    check(clipped, f"c. clipping was active (pre-clip norms > {max_norm})")
    check(norms_ok, "c. reported grad_norm == sqrt(sum g^2) before clipping")
    check(lrs_ok, "c. lr per step == peak * lambda(s)")
    check(worst <= 1e-9, f"c. 2 AdamW steps (wd 0.1 on rank>=2 only, bias correction) == numpy "
                         f"(max |diff| / max update {worst:.1e})")
    # Weight decay really was applied only to rank >= 2 parameters.
    groups = tr.opt.param_groups
    ok = all((g["weight_decay"] == 0.1) == (g["params"][0].dim() >= 2) for g in groups) and \
        all(len({p.dim() >= 2 for p in g["params"]}) == 1 for g in groups)
    check(ok, "c. AdamW groups: weight_decay 0.1 for rank >= 2, 0 for rank < 2")


# --------------------------------------------------------------------------
# d. schedules
# --------------------------------------------------------------------------

def test_schedules(fx):
    W = TR.warmup_steps
    cases = [
        (W(0.03, 10), 1), (W(0.0, 10), 0), (W(0.5, 3), 2),
        (W(0.07, 100), 8),  # 100 * 0.07 = 7.000000000000001 in doubles: HF's ceil gives 8
    ]
    check(all(a == b for a, b in cases), f"d. W = ceil(T * warmup_ratio): {[a for a, _ in cases]}")
    c = lambda x: 0.5 * (1 + math.cos(math.pi * x))  # noqa: E731
    table = [
        ("cosine", 1, 10, 0, 0.0), ("cosine", 1, 10, 1, 1.0), ("cosine", 1, 10, 5, c(4 / 9)),
        ("cosine", 1, 10, 9, c(8 / 9)), ("cosine", 1, 10, 10, 0.0),
        ("cosine", 3, 10, 1, 1 / 3), ("cosine", 3, 10, 2, 2 / 3), ("cosine", 3, 10, 3, 1.0),
        ("cosine", 0, 1, 0, 1.0), ("cosine", 0, 4, 2, 0.5),
        ("linear", 2, 10, 1, 0.5), ("linear", 2, 10, 2, 1.0), ("linear", 2, 10, 6, 0.5),
        ("linear", 2, 10, 10, 0.0), ("linear", 0, 4, 3, 0.25),
        ("constant", 0, 5, 0, 1.0), ("constant", 4, 5, 2, 0.5), ("constant", 4, 5, 4, 1.0),
    ]
    bad = [(k, w, t, s, TR.schedule_lambda(k, w, t)(s), e) for k, w, t, s, e in table
           if abs(TR.schedule_lambda(k, w, t)(s) - e) > 1e-15]
    check(not bad, f"d. {len(table)} schedule values (cosine / linear / constant, with and without warmup) {bad}")
    # The trainer's LambdaLR: lr of update s == peak * lambda(s), T independent of the steps run.
    tr = fx.trainer("stage2", total_steps=5)
    lrs = [tr.step(b)[0]["lr"] for b in fx.batches]
    W5 = TR.warmup_steps(0.03, 5)
    exp = [2e-4 * TR.schedule_lambda("cosine", W5, 5)(s) for s in range(2)]
    check(all(abs(a - b) <= 1e-18 for a, b in zip(lrs, exp)) and exp[0] == 0.0 and exp[1] == 2e-4,
          f"d. trainer lrs with T=5 (W=1): {lrs}")


# --------------------------------------------------------------------------
# e. CLI
# --------------------------------------------------------------------------

def run_main(args):
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = TR.main(args)
    return rc, buf.getvalue()


def test_cli(fx):
    tmp = fx.tmp
    base = ["--config", fx.manifest_path, "--weights", fx.weights_path, "--batches", fx.batches_path]
    g, l, w = (os.path.join(tmp, x) for x in ("g.safetensors", "l.json", "w.safetensors"))
    r = subprocess.run([PY, os.path.join(HERE, "llava_train_ref.py")] + base +
                       ["--stage", "stage2", "--dump-grads", g, "--dump-losses", l, "--dump-weights", w],
                       capture_output=True, text=True)
    check(r.returncode == 0 and os.path.exists(g) and os.path.exists(l) and os.path.exists(w),
          f"e. CLI run with dumps (rc {r.returncode}) {r.stderr.strip()[-300:]}")
    grads = R.read_safetensors(g)
    trainable = {n for n, _, grp in fx.manifest["params"] if grp in ("multi_modal_projector", "language_model")}
    check(set(grads) == trainable and all(a.dtype == np.float32 for a in grads.values()),
          f"e. --dump-grads holds exactly the {len(trainable)} trainable tensors, F32")
    with open(l) as f:
        losses = json.load(f)
    check(len(losses) == 2 and all(set(x) == {"step", "loss", "lr", "grad_norm"} for x in losses),
          "e. --dump-losses: one {step, loss, lr, grad_norm} per step")
    wts = R.read_safetensors(w)
    check(set(wts) == {n for n, _, _ in fx.manifest["params"]} and
          all(np.array_equal(wts[n], fx.init[n]) for n, _, grp in fx.manifest["params"] if grp == "vision_tower"),
          "e. --dump-weights: every parameter; frozen ones unchanged")

    # mmrun-style log: JSONL with extra lines and keys.
    log = os.path.join(tmp, "log.jsonl")
    with open(log, "w") as f:
        f.write(json.dumps({"event": "start"}) + "\n")
        for x in losses:
            f.write(json.dumps({"step": x["step"], "loss": x["loss"], "lr": x["lr"], "tokens": 5}) + "\n")
    cmp_args = base + ["--stage", "stage2", "--compare-grads", g, "--compare-losses", log, "--compare-weights", w]
    rc, out = run_main(cmp_args)
    check(rc == 0 and "PASS grads" in out and "PASS losses" in out and "PASS weights" in out,
          f"e. self-comparison passes (rc {rc})")

    def tampered(fn, src, name):
        arrays = R.read_safetensors(src)
        fn(arrays)
        path = os.path.join(tmp, name)
        M.write_safetensors(path, arrays)
        return path

    lm = "language_model.lm_head.weight"

    def bump(a):
        a[lm] = a[lm].copy()
        a[lm].flat[7] += 1e-3 * np.abs(a[lm]).max()

    cases = [
        ("perturbed gradient", ["--compare-grads", tampered(bump, g, "g_bump.safetensors")]),
        ("gradient of a frozen parameter",
         ["--compare-grads", tampered(lambda a: a.__setitem__("vision_tower.vision_model.pre_layrnorm.bias",
                                                             np.zeros(8, np.float32)), g, "g_frozen.safetensors")]),
        ("missing gradient", ["--compare-grads", tampered(lambda a: a.pop(lm), g, "g_missing.safetensors")]),
        ("NaN gradient", ["--compare-grads", tampered(
            lambda a: (a.__setitem__(lm, a[lm].copy()), a[lm].__setitem__((0, 0), np.nan)), g, "g_nan.safetensors")]),
        ("changed frozen weight", ["--compare-weights", tampered(
            lambda a: a.__setitem__("vision_tower.vision_model.pre_layrnorm.weight",
                                    a["vision_tower.vision_model.pre_layrnorm.weight"] + np.float32(1e-6)),
            w, "w_frozen.safetensors")]),
        ("perturbed trained weight", ["--compare-weights", tampered(bump, w, "w_bump.safetensors")]),
    ]
    bad_log = os.path.join(tmp, "log_bad.jsonl")
    write_jsonl(bad_log, [{"step": x["step"], "loss": x["loss"] * (1 + 1e-3 * (x["step"] == 1))} for x in losses])
    short_log = os.path.join(tmp, "log_short.jsonl")
    write_jsonl(short_log, [{"step": 0, "loss": losses[0]["loss"]}])
    wrong_lr = os.path.join(tmp, "log_lr.jsonl")
    write_jsonl(wrong_lr, [{"step": x["step"], "loss": x["loss"], "lr": 1e-4} for x in losses])
    cases += [("wrong loss", ["--compare-losses", bad_log]), ("missing step", ["--compare-losses", short_log]),
              ("wrong logged lr", ["--compare-losses", wrong_lr])]
    for what, extra in cases:
        rc, out = run_main(base + ["--stage", "stage2"] + extra)
        check(rc == 1, f"e. fails on a {what} (rc {rc})")
    # optimizer.* tensors in mmrun's --save output are ignored.
    wopt = tampered(lambda a: a.__setitem__("optimizer.exp_avg." + lm, np.zeros((2, 2), np.float32)), w,
                    "w_opt.safetensors")
    rc, _ = run_main(base + ["--stage", "stage2", "--compare-weights", wopt])
    check(rc == 0, "e. optimizer.* tensors in OTHER weights are ignored")
    # Looser tolerance lets the perturbed gradient through.
    rc, _ = run_main(base + ["--stage", "stage2", "--compare-grads", os.path.join(tmp, "g_bump.safetensors"),
                             "--grads-rtol", "0.5"])
    check(rc == 0, "e. --grads-rtol loosens only that comparison")
    for what, extra in [("unknown stage", ["--stage", "nope"]), ("--steps beyond the batches", ["--stage", "stage1",
                                                                                             "--steps", "3"])]:
        rc, out = run_main(base + extra)
        check(rc == 2, f"e. bad input exits 2: {what}")
    bad_batches = os.path.join(tmp, "bad.jsonl")
    b0 = make_batches(fx.cfg, fx.image_path)[0]
    b0["samples"][0]["image"] = None  # image tokens without an image
    write_jsonl(bad_batches, [b0])
    rc, out = run_main(["--config", fx.manifest_path, "--weights", fx.weights_path, "--batches", bad_batches,
                        "--stage", "stage1"])
    check(rc == 2 and "image tokens" in out, "e. bad input exits 2: image tokens without an image")


# --------------------------------------------------------------------------
# f. parity fixtures: byte-level template samples (make_llava_train_data.py)
# --------------------------------------------------------------------------

def test_templates(fx):
    import make_llava_train_data as D
    tok_path = os.path.join(os.path.dirname(os.path.dirname(HERE)), "models", "tokenizers",
                            "byte-level.tokenizer.json")
    if not os.path.exists(tok_path):
        print("skip f. (no models/tokenizers/byte-level.tokenizer.json)")
        return
    tok = D.ByteTokenizer(tok_path)
    a, nl = tok.encode("a"), tok.encode("\n")
    check(len(a) == 1 and len(nl) == 1 and tok.encode("a</s>a") == a + [2] + a and tok.bos == 1 and
          len(tok.encode("\u00e9")) == 2, "f. byte tokenizer: one id per UTF-8 byte, </s> matched literally")
    shape = dict(image_token=4, positions=3, max_len=None, pad=3, vocab=261)
    rec = {"id": 7, "image": "x.png", "conversations": [{"from": "human", "value": "<image>\nhi"},
                                                         {"from": "gpt", "value": "ab"}]}
    ids, tg = D.build_sample(rec, "caption", tok, shape)
    ab = tok.encode("ab")
    check(ids == [1, 4, 4, 4] + ab + nl and tg == [-100, -100, -100, ab[0], ab[1], nl[0], -100],
          "f. plain template: BOS, image, caption, newline; loss on caption and newline")
    rec2 = {"conversations": [{"from": "human", "value": "q<image>"}, {"from": "gpt", "value": "r"},
                              {"from": "human", "value": "s"}, {"from": "gpt", "value": "t"}]}
    ids, tg = D.build_sample(rec2, "conversation", tok, shape)
    first = [1] + tok.encode(D.VICUNA_SYSTEM + " USER: q") + [4, 4, 4] + tok.encode(" ASSISTANT:")
    ans1 = tok.encode(" r") + [2]
    turn2 = tok.encode("USER: s ASSISTANT:")
    ans2 = tok.encode(" t") + [2]
    exp_ids = first + ans1 + turn2 + ans2
    lab = [False] * len(first) + [True] * len(ans1) + [False] * len(turn2) + [True] * len(ans2)
    exp_tg = [exp_ids[t + 1] if t + 1 < len(exp_ids) and lab[t + 1] else -100 for t in range(len(exp_ids))]
    check(ids == exp_ids and tg == exp_tg, "f. vicuna_v1 template: loss on ' answer</s>' of both exchanges")
    shape["max_len"] = len(exp_ids) - 2
    tids, ttg = D.truncate(ids, tg, shape, "rec2")
    check(tids == exp_ids[:-2] and ttg == exp_tg[:len(exp_ids) - 3] + [-100], "f. truncation drops the cut label")
    shape["max_len"] = len(first) - len(tok.encode(" ASSISTANT:")) - 1  # keeps 2 of the 3 image ids
    try:
        D.truncate(ids, tg, shape, "rec2")
        cut = False
    except ValueError:
        cut = True
    check(cut, "f. truncation into the image positions is an error")
    # trainable_parameters in the manifest must agree with the groups.
    raw = make_manifest()
    raw["stages"][0]["trainable_parameters"] = ["multi_modal_projector.linear_1.weight"]
    bad = os.path.join(fx.tmp, "bad_manifest.json")
    with open(bad, "w") as f:
        json.dump(raw, f)
    rc, out = run_main(["--config", bad, "--weights", fx.weights_path, "--batches", fx.batches_path,
                        "--stage", "stage1"])
    check(rc == 2 and "trainable_parameters" in out, "f. a manifest whose trainable_parameters disagree exits 2")


def test_stage1_pieces(fx):
    rng = np.random.default_rng(7)
    B = 8
    never_positive, agree = True, True
    sims = [rng.normal(0, s, size=(B, B)) for s in (0.1, 1.0, 5.0, 30.0)]
    sims.append(np.zeros((B, B)))                      # all ties
    dom = rng.normal(0, 1, size=(B, B))
    dom[np.arange(B), np.arange(B)] = 1e3              # the positive dominates its row
    sims.append(dom)
    us = [np.zeros(B), np.full(B, 1 - 2.0 ** -24), rng.uniform(0, 1, B)]
    for sim in sims:
        for u in us:
            idx, margin = B2.sample_negatives(sim, u)
            never_positive &= bool(np.all(idx != np.arange(B))) and margin >= 0
            for r in range(B):
                others = np.array([j for j in range(B) if j != r])
                w = np.exp(sim[r, others] - sim[r, others].max())
                cdf = np.cumsum(w) / w.sum()
                k = min(int(np.searchsorted(cdf, u[r], side="right")), B - 2)
                # Far from a boundary the draw is the inverse transform's.
                if np.min(np.abs(cdf - u[r])) > 1e-9:
                    agree &= bool(idx[r] == others[k])
    check(never_positive, "g. sample_negatives never draws the positive (ties, u = 0 and 1 - 2^-24, dominant positive)")
    check(agree, "g. sample_negatives = searchsorted on the softmax renormalised without the positive")
    sim = rng.normal(0, 1.5, size=(B, B))
    N = 4000
    counts = np.zeros((B, B))
    for i in range(N):
        idx, _ = B2.sample_negatives(sim, np.full(B, (i + 0.5) / N))
        counts[np.arange(B), idx] += 1
    p = np.exp(sim - sim.max(axis=1, keepdims=True))
    p[np.arange(B), np.arange(B)] = 0
    p /= p.sum(axis=1, keepdims=True)
    check(np.abs(counts / N - p).max() <= 1.0 / N + 1e-12 and np.all(np.diag(counts) == 0),
          f"g. sample_negatives' frequencies over an even grid of uniforms = the renormalised softmax "
          f"(max diff {np.abs(counts / N - p).max():.1e})")
    Q, L = 2, 5
    length = torch.tensor([5, 4])
    exp = {
        "itc_unimodal": [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1], [0, 0, 1, 1, 1]],
        "itm_bidirectional": [[1] * 5] * 5,
        "itg_multimodal_causal": [[1, 1, 0, 0, 0], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0],
                                  [1, 1, 1, 1, 1]],
    }
    ok = True
    for mask, e in exp.items():
        got = B2.stage1_allowed(mask, Q, L, length)
        e = torch.tensor(e, dtype=torch.bool)
        ok &= bool(torch.equal(got[0], e)) and bool(torch.equal(got[1], e & (torch.arange(L) < 4)[None]))
    check(ok, "g. stage-1 masks (itc_unimodal, itm_bidirectional, itg_multimodal_causal) AND key < length")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep")
    args = ap.parse_args()
    threads = os.environ.get("MMC_REF_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    tmp = args.keep or tempfile.mkdtemp(prefix="llava_train_ref_selftest_")
    os.makedirs(tmp, exist_ok=True)
    t0 = time.time()
    try:
        fx = Fixture(tmp)
        for test in (test_finite_differences, test_loss_value, test_frozen, test_adamw, test_schedules, test_cli,
                     test_templates, test_stage1_pieces):
            test(fx)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'FAILED' if FAILS else 'passed'}: {len(FAILS)} failure(s) in {time.time() - t0:.1f} s")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
