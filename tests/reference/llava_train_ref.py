#!/usr/bin/python3
"""PyTorch reference of mmc's LLaVA training stages (gradients, losses, weights).

It replays, step by step, the optimizer steps that `mmrun --train STAGE` took
(the batches mmrun dumped with --dump-batches) from the same initial weights,
with the forward math of llava_ref.py (imported, not copied) under autograd,
and compares gradients, losses and final weights the way llm.c checks itself
against PyTorch.

Usage:
  llava_train_ref.py --config MANIFEST.json --weights W.safetensors
                     --batches BATCHES.jsonl --stage NAME
                     [--steps N] [--total-steps T] [--lr LR] [--max-grad-norm 1.0]
                     [--dump-grads G.safetensors] [--dump-losses L.json]
                     [--dump-weights W2.safetensors]
                     [--compare-grads G.safetensors] [--compare-losses LOG.jsonl]
                     [--compare-weights W2.safetensors]
                     [--rtol 1e-4] [--grads-rtol R] [--losses-rtol R] [--weights-rtol R]
                     [--grads-rtol-for REGEX=R ...] [--weights-rtol-for REGEX=R ...]
                     [--dtype float32|float64] [--grads-float32-factor K [--grads-float32-cap C]]

  --config    `mmc inspect MODEL.so --json`: "config" (the HF config),
              "parameters" (name, shape, group), "stages" (name, trainable
              groups, lr, schedule, warmup_ratio, weight_decay).
  --weights   initial weights, HF names; tensors named optimizer.* are ignored;
              every manifest parameter must be present with its shape.
  --batches   one JSON line per optimizer step:
                {"step": s, "samples": [{"id": ..., "image": "/abs.png" | null,
                  "input_ids": [...image token already expanded...],
                  "targets": [...same length, -100 = ignored...]}]}
              targets[t] is the label of the logits at position t.
              A batched step (BLIP-2's stage 1, data "image_text") also has
                "micro_batches": [{"negative_text_uniform": [...],
                                   "negative_image_uniform": [...]}, ...]
              (one per call of the stage's entry, over consecutive samples);
              its samples are the Q-Former's texts ([CLS] caption "\n",
              unpadded: padded here to the text length with the pad id,
              targets with -100) and their images.
  --steps     optimizer steps to run (default: every line of --batches).
  --total-steps  the schedule's length T (default: --steps).
  --lr        peak learning rate (default: the stage's lr).
  --max-grad-norm  clip_grad_norm_ threshold (default 1.0; <= 0: no clipping,
              the norm is still reported).
  --dtype     float32 (default; what the runtime computes) or float64 (for
              finite-difference checks and for measuring fp32 rounding).

The runtime's rules, reproduced exactly:
  * requires_grad only for parameters whose group is in the stage's
    "trainable" list; frozen parameters are checked to have grad None.
  * a batched step (BLIP-2 stage 1): each micro-batch is one call of
    blip2_ref.stage1_loss (ITC + ITM + ITG, each a mean; the ITM hard
    negatives redrawn from the dumped uniform numbers and checked never to be
    the positive); the step's loss and gradients are the mean over its
    micro-batches.  Otherwise:
  * loss of a step = sum over its samples and positions of
    cross_entropy(logits[t], targets[t]) over targets != -100, divided by the
    number of such targets in the whole step.  Each sample is its own forward
    pass (batch 1, its unpadded length).  A step without any target is an error.
  * Gradients are accumulated sample by sample into buffers of their own
    (torch.autograd.grad, not .backward(): PyTorch can give two leaves .grad
    views of one buffer, e.g. class_embedding and position_embedding, which
    later in-place accumulation or clipping would corrupt).
  * A trainable parameter that a step's graph does not reach (e.g. the
    projector in a text-only step) gets a zero gradient, not None, so AdamW
    still advances its moments and step count, as a dense runtime does.
  * torch.nn.utils.clip_grad_norm_(trainable, max_norm); the logged grad_norm
    is the norm before clipping.
  * torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8), two groups:
    weight_decay = stage weight_decay for parameters of rank >= 2, 0 otherwise.
  * LambdaLR with Hugging Face's schedules, W = ceil(warmup_ratio * T); update
    s (0-based) uses lr * lambda(s):  s / max(1, W) while s < W, then
      cosine:   0.5 * (1 + cos(pi * (s - W) / max(1, T - W)))   (>= 0)
      linear:   (T - s) / max(1, T - W)                         (>= 0)
      constant: 1
    The scheduler steps after each optimizer step.

Outputs:
  --dump-grads    step 0's gradients (loss after the division, before
                  clipping) of every trainable parameter, F32, HF names.
  --dump-losses   JSON list, one {"step", "loss", "lr", "grad_norm"} per step.
  --dump-weights  every manifest parameter after the last step, F32.

Comparisons (OTHER = mmrun's files; rel = |ours - other| / max(|other|,
1e-2 * max|other| over the tensor)):
  --compare-grads    every trainable parameter must be in OTHER, none of the
                     frozen ones (nor any unknown name) may be; no NaN/Inf;
                     max rel <= grads rtol.  Prints a table and the worst.
  --compare-losses   mmrun's --log JSONL (lines with "step" and "loss"; lines
                     without them are skipped): every step run here must be
                     there with |a - b| / |b| <= losses rtol.  When the log also
                     has "lr" / "grad_norm", they are compared the same way.
  --grads-rtol-for / --weights-rtol-for REGEX=R (repeatable): tensors whose
                     name matches REGEX (re.search; the first match wins) are
                     held to R instead; each such tensor's row shows its R.
                     For gradients that are ill-conditioned in float32 at the
                     test point (the caller documents the measurement).
  --grads-float32-factor K  (with --dtype float64 and --compare-grads):
                     also compute the first batch's gradients in float32; a
                     gradient over its rtol still passes when its largest
                     absolute difference is at most K x the float32 run's
                     own against float64, its max rel at most
                     --grads-float32-cap (default 1e-3), and its norm-wise
                     error ||ours - other|| / ||other|| within the rtol:
                     where PyTorch's own float32 is that far from the exact
                     result (the max rel is set by elements near the 1e-2
                     floor, where rounding noise of the same size as
                     PyTorch's decides which element is worst), the compiled
                     float32 run may be as well.  Such rows say so.  Ignored
                     (with a note) when the float32 run draws other stage-1
                     hard negatives than the float64 one.
  --compare-weights  trainable parameters: max rel <= weights rtol; frozen
                     parameters must be bit-identical to the initial weights;
                     optimizer.* tensors in OTHER are ignored.
Exit status: 0 all good, 1 a comparison failed, 2 bad input.

Threads: torch.set_num_threads($MMC_REF_THREADS) when set.  Deterministic
algorithms are on.
"""

import argparse
import json
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llava_ref as R  # noqa: E402
import blip2_ref as B2  # noqa: E402
import make_random_llava as M  # noqa: E402  (write_safetensors)

IGNORE_INDEX = -100
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8


class InputError(ValueError):
    """Bad input files or arguments (exit status 2)."""


# --------------------------------------------------------------------------
# manifest, weights, batches
# --------------------------------------------------------------------------

def load_manifest(path):
    """Returns dict(cfg=normalized config, params=[(name, shape, group)], stages={name: stage})."""
    with open(path) as f:
        obj = json.load(f)
    if not isinstance(obj, dict) or not isinstance(obj.get("config"), dict):
        raise InputError(f"{path}: expected `mmc inspect --json` output with a \"config\" object")
    try:
        blip2 = obj["config"].get("model_type") == "blip-2"
        cfg = B2.normalize_config(obj["config"]) if blip2 else R.normalize_config(obj["config"])
    except (ValueError, KeyError, NotImplementedError) as e:
        raise InputError(f"{path}: config: {e}")
    params = []
    for p in obj.get("parameters") or []:
        try:
            params.append((str(p["name"]), tuple(int(d) for d in p["shape"]), str(p["group"])))
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{path}: malformed parameter entry {p!r}")
    if not params:
        raise InputError(f"{path}: no \"parameters\"")
    names = [p[0] for p in params]
    if len(set(names)) != len(names):
        raise InputError(f"{path}: duplicate parameter names")
    stages = {}
    for s in obj.get("stages") or []:
        if not isinstance(s, dict) or "name" not in s:
            raise InputError(f"{path}: malformed stage entry {s!r}")
        stages[str(s["name"])] = s
    return dict(cfg=cfg, params=params, stages=stages, raw=obj)


def stage_settings(manifest, name):
    st = manifest["stages"].get(name)
    if st is None:
        raise InputError(f"no stage {name!r} in the manifest (stages: {', '.join(manifest['stages']) or 'none'})")
    groups = {g for _, _, g in manifest["params"]}
    trainable = [str(g) for g in st.get("trainable") or []]
    if not trainable:
        raise InputError(f"stage {name!r} trains no group")
    for g in trainable:
        if g not in groups:
            raise InputError(f"stage {name!r}: trainable group {g!r} holds no parameter")
    listed = st.get("trainable_parameters")
    if listed is not None:  # newer manifests also list the trainable tensors: must agree with the groups
        derived = [n for n, _, g in manifest["params"] if g in trainable]
        if sorted(map(str, listed)) != sorted(derived):
            raise InputError(f"stage {name!r}: trainable_parameters ({len(listed)}) disagree with the parameters "
                             f"of groups {trainable} ({len(derived)})")
    schedule = str(st.get("schedule", "constant"))
    if schedule not in ("cosine", "linear", "constant"):
        raise InputError(f"stage {name!r}: unknown schedule {schedule!r}")
    return dict(name=name, trainable=trainable, lr=float(st.get("lr", 0.0)), schedule=schedule,
                warmup_ratio=float(st.get("warmup_ratio", 0.0)),
                weight_decay=float(st.get("weight_decay", 0.0)))


def load_initial_weights(path, params):
    """{name: float32 np.ndarray} for exactly the manifest's parameters."""
    try:
        arrays = R.read_safetensors(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}")
    out = {}
    for name, shape, _ in params:
        if name not in arrays:
            raise InputError(f"{path}: missing parameter {name}")
        a = arrays[name]
        if tuple(a.shape) != shape:
            raise InputError(f"{path}: {name}: shape {list(a.shape)}, the manifest says {list(shape)}")
        if not np.issubdtype(a.dtype, np.floating):
            raise InputError(f"{path}: {name}: not a floating-point tensor ({a.dtype})")
        out[name] = np.array(a, dtype=np.float32, order="C")  # keeps 0-d tensors (temp) 0-d
    known = set(out)
    extra = [n for n in arrays if n not in known and not n.startswith("optimizer.")]
    if extra:
        print(f"llava_train_ref: note: {path}: ignoring {len(extra)} tensor(s) that are not parameters "
              f"(first: {extra[0]})", file=sys.stderr)
    return out


def load_batches(path, cfg, steps=None):
    """Parses BATCHES.jsonl; validates ids, targets and image-token counts."""
    V = cfg["text"]["vocab_size"]
    img_tok = cfg["image_token_index"]
    per_image = B2.num_image_tokens(cfg) if is_blip2(cfg) else R.num_image_tokens(cfg)
    patches = (cfg["vision"]["image_size"] // cfg["vision"]["patch_size"]) ** 2
    batches = []
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                b = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"{where}: not JSON: {e}")
            if not isinstance(b, dict) or not isinstance(b.get("samples"), list) or not b["samples"]:
                raise InputError(f"{where}: expected {{\"step\": s, \"samples\": [...]}} with at least one sample")
            step = b.get("step", len(batches))
            if "micro_batches" in b:  # BLIP-2 stage 1: batched calls with in-batch negatives
                batches.append(dict(step=step, **stage1_batch(b, cfg, where)))
                if steps is not None and len(batches) >= steps:
                    break
                continue
            samples = []
            for j, s in enumerate(b["samples"]):
                sw = f"{where}: sample {j} (id {s.get('id')!r})" if isinstance(s, dict) else f"{where}: sample {j}"
                if not isinstance(s, dict):
                    raise InputError(f"{sw}: not an object")
                ids, tg = s.get("input_ids"), s.get("targets")
                image = s.get("image")
                if ids == [] and isinstance(tg, list) and isinstance(image, str):
                    # A patch-label sample (the vision tower's pre-training): one label per patch.
                    if len(tg) != patches:
                        raise InputError(f"{sw}: {len(tg)} patch labels, the vision tower has {patches} patches")
                    if not all(isinstance(x, int) and (x == IGNORE_INDEX or x >= 0) for x in tg):
                        raise InputError(f"{sw}: patch labels must be -100 or non-negative integers")
                    cells = s.get("patch_cells")
                    if cells is not None and (not isinstance(cells, list) or len(cells) != patches or
                                              not all(isinstance(x, int) and x >= 0 for x in cells)):
                        raise InputError(f"{sw}: patch_cells must be {patches} non-negative integers")
                    samples.append(dict(id=s.get("id"), images=[image], input_ids=[], targets=tg, patch_cells=cells))
                    continue
                if not isinstance(ids, list) or not isinstance(tg, list) or not ids:
                    raise InputError(f"{sw}: input_ids / targets must be non-empty lists")
                dec = s.get("decoder_input_ids")
                if dec is not None:  # an encoder-decoder sample: the targets are the decoder's
                    if not isinstance(dec, list) or len(dec) != len(tg) or not dec:
                        raise InputError(f"{sw}: decoder_input_ids must be a list as long as targets")
                    if not all(isinstance(x, int) and 0 <= x < V for x in dec):
                        raise InputError(f"{sw}: decoder_input_ids must be integers in [0, {V})")
                elif len(ids) != len(tg):
                    raise InputError(f"{sw}: {len(ids)} input_ids but {len(tg)} targets")
                if not all(isinstance(x, int) and 0 <= x < V for x in ids):
                    raise InputError(f"{sw}: input_ids must be integers in [0, {V})")
                if not all(isinstance(x, int) and (x == IGNORE_INDEX or 0 <= x < V) for x in tg):
                    raise InputError(f"{sw}: targets must be -100 or integers in [0, {V})")
                images = [] if image is None else (list(image) if isinstance(image, list) else [image])
                if not all(isinstance(p, str) for p in images):
                    raise InputError(f"{sw}: image must be a path, a list of paths, or null")
                n_img = sum(1 for x in ids if x == img_tok)
                # No image token with an image: a text-context sample (blip2_prefix), the image unused.
                if n_img != per_image * len(images) and n_img != 0:
                    raise InputError(f"{sw}: {n_img} image tokens, expected {per_image} x {len(images)} image(s)")
                cells = None
                if "cell_colour_ids" in s or "cell_shape_ids" in s:  # a layout-context sample (blip2_layout)
                    cells = (s.get("cell_colour_ids"), s.get("cell_shape_ids"))
                    if not all(isinstance(c, list) and len(c) == per_image and
                               all(isinstance(x, int) and 0 <= x < V for x in c) for c in cells):
                        raise InputError(f"{sw}: cell_colour_ids / cell_shape_ids must be {per_image} integers "
                                         f"in [0, {V}) each")
                    if n_img != per_image:
                        raise InputError(f"{sw}: a layout-context sample needs {per_image} image tokens, has {n_img}")
                samples.append(dict(id=s.get("id"), images=images, input_ids=ids, targets=tg, decoder_input_ids=dec,
                                    cells=cells))
            batches.append(dict(step=step, samples=samples))
            if steps is not None and len(batches) >= steps:
                break
    if not batches:
        raise InputError(f"{path}: no batches")
    if steps is not None and len(batches) < steps:
        raise InputError(f"{path}: {len(batches)} batches, --steps asks for {steps}")
    return batches


def stage1_batch(b, cfg, where):
    """A batched step's samples (BLIP-2 stage 1, data "image_text"): each an image
    and its Q-Former text ([CLS] caption "\n", unpadded; targets the next token,
    -100 at the last position), and per micro-batch the two rows of uniform
    numbers the entry draws its ITM hard negatives from."""
    V = cfg["text"]["vocab_size"]
    TT = int(cfg["qformer"].get("max_position_embeddings") or 0)
    if TT < 2:
        raise InputError(f"{where}: batched (micro_batches) steps need a Q-Former text side in the config")
    mbs = b["micro_batches"]
    if not isinstance(mbs, list) or not mbs or len(b["samples"]) % len(mbs):
        raise InputError(f"{where}: {len(b['samples'])} samples do not split into the "
                         f"{len(mbs) if isinstance(mbs, list) else '?'} micro-batches")
    per = len(b["samples"]) // len(mbs)
    if per < 2:
        raise InputError(f"{where}: micro-batches of {per} sample(s): in-batch negatives need at least 2")
    micro = []
    for m, mb in enumerate(mbs):
        us = []
        for key in ("negative_text_uniform", "negative_image_uniform"):
            u = mb.get(key) if isinstance(mb, dict) else None
            if not isinstance(u, list) or len(u) != per or not all(
                    isinstance(x, (int, float)) and 0 <= x < 1 for x in u):
                raise InputError(f"{where}: micro-batch {m}: {key} must be {per} numbers in [0, 1)")
            us.append(np.asarray(u, dtype=np.float32))
        micro.append(dict(negative_text_uniform=us[0], negative_image_uniform=us[1]))
    samples = []
    for j, s in enumerate(b["samples"]):
        sw = f"{where}: sample {j} (id {s.get('id')!r})" if isinstance(s, dict) else f"{where}: sample {j}"
        if not isinstance(s, dict):
            raise InputError(f"{sw}: not an object")
        ids, tg, image = s.get("input_ids"), s.get("targets"), s.get("image")
        if not isinstance(image, str):
            raise InputError(f"{sw}: image-text samples need an image")
        if not isinstance(ids, list) or not isinstance(tg, list) or not ids or len(ids) != len(tg):
            raise InputError(f"{sw}: input_ids / targets must be non-empty lists of one length")
        if len(ids) > TT:
            raise InputError(f"{sw}: {len(ids)} text positions, the Q-Former takes {TT}")
        if not all(isinstance(x, int) and 0 <= x < V for x in ids):
            raise InputError(f"{sw}: input_ids must be integers in [0, {V})")
        if not all(isinstance(x, int) and (x == IGNORE_INDEX or 0 <= x < V) for x in tg):
            raise InputError(f"{sw}: targets must be -100 or integers in [0, {V})")
        samples.append(dict(id=s.get("id"), images=[image], input_ids=ids, targets=tg))
    return dict(samples=samples, micro_batches=micro)


# --------------------------------------------------------------------------
# learning-rate schedule (Hugging Face semantics)
# --------------------------------------------------------------------------

def warmup_steps(warmup_ratio, total_steps):
    """TrainingArguments.get_warmup_steps: ceil(T * warmup_ratio)."""
    return int(math.ceil(total_steps * warmup_ratio))


def schedule_lambda(schedule, W, T):
    """lambda(s) multiplying the peak lr for update s (0-based)."""
    def f(s):
        if s < W:
            return float(s) / float(max(1, W))
        if schedule == "constant":
            return 1.0
        if schedule == "linear":
            return max(0.0, float(T - s) / float(max(1, T - W)))
        if schedule == "cosine":
            progress = float(s - W) / float(max(1, T - W))
            return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
        raise ValueError(f"unknown schedule {schedule!r}")
    return f


# --------------------------------------------------------------------------
# model under autograd
# --------------------------------------------------------------------------

class TensorWeights(R.Weights):
    """llava_ref's weight accessor over live torch tensors (leaves with grads)."""

    def __init__(self, tensors):
        self.tensors = tensors

    def has(self, name):
        return name in self.tensors

    def get(self, name, shape=None):
        if name not in self.tensors:
            raise KeyError(f"missing weight {name}")
        t = self.tensors[name]
        if shape is not None and tuple(t.shape) != tuple(shape):
            raise ValueError(f"weight {name}: shape {tuple(t.shape)}, expected {tuple(shape)}")
        return t

    def opt(self, name, shape=None):
        return self.get(name, shape) if name in self.tensors else None


class PixelCache:
    def __init__(self, cfg, dtype):
        self.cfg, self.dtype, self.cache = cfg, dtype, {}

    def __call__(self, path):
        if path not in self.cache:
            try:
                pix = R.preprocess_image(path, self.cfg["vision"]["image_size"])
            except (OSError, ValueError) as e:
                raise InputError(f"image {path}: {e}")
            self.cache[path] = torch.from_numpy(pix).to(self.dtype)
        return self.cache[path]


def is_blip2(cfg):
    return cfg.get("model_type") == "blip-2"


def sample_logits(cfg, W, sample, pixels_of, vision_of=None):
    """One sample's logits [S, V] with autograd (llava_ref's or blip2_ref's math).
    VISION_OF (path -> the frozen vision tower's output for one image, as the
    vision_embeds entry returns it), when given, stands in for the tower."""
    if is_blip2(cfg):
        ids = torch.tensor(sample["input_ids"], dtype=torch.long)
        if len(sample["images"]) > 1:
            raise InputError("a BLIP-2 sample holds at most one image")
        pixels = vit = None
        if sample["images"] and vision_of is not None:
            vit = vision_of(sample["images"][0])[None]
        elif sample["images"]:
            pixels = pixels_of(sample["images"][0])[None]
        if sample.get("decoder_input_ids") is not None:  # the encoder-decoder variant
            dec = torch.tensor(sample["decoder_input_ids"], dtype=torch.long)
            return B2.seq2seq_logits(cfg, W, ids, dec, pixels, vit)
        if sample.get("cells") is not None:  # the scene's layout where the queries stand; no image
            colours, shapes = (torch.tensor(c, dtype=torch.long) for c in sample["cells"])
            return B2.layout_logits(cfg, W, ids, colours, shapes)
        return B2.sample_logits(cfg, W, ids, pixels, vit)
    t = cfg["text"]
    V, D = t["vocab_size"], t["hidden_size"]
    ids = torch.tensor(sample["input_ids"], dtype=torch.long)
    table = W.get("language_model.model.embed_tokens.weight", (V, D))
    embeds = table[ids]
    if sample["images"]:
        if vision_of is not None:
            feats = R.image_features(cfg, W, None, selected=torch.stack([vision_of(p) for p in sample["images"]]))
        else:
            feats = R.image_features(cfg, W, torch.stack([pixels_of(p) for p in sample["images"]]))
        embeds = R.merge_image_features(embeds, ids, feats.reshape(-1, D), cfg["image_token_index"])
    return R.language_model(cfg, W, embeds)


def sample_loss_sum(cfg, W, sample, pixels_of, vision_of=None):
    """(sum of cross-entropy over targets != -100, number of such targets); VISION_OF as in
    sample_logits."""
    tg = torch.tensor(sample["targets"], dtype=torch.long)
    n = int((tg != IGNORE_INDEX).sum())
    if n == 0:  # contributes nothing to the loss nor to any gradient
        return None, 0
    if not sample["input_ids"]:  # a patch-label sample: one image, one label per patch
        if sample.get("patch_cells") is not None:  # and each patch's object's grid cell: a second head
            both = B2.patch_and_cell_logits if is_blip2(cfg) else R.patch_and_cell_logits
            class_logits, cell_logits = (x[0] for x in both(cfg, W, pixels_of(sample["images"][0])[None]))
            cells = torch.tensor(sample["patch_cells"], dtype=torch.long)
            return (F.cross_entropy(class_logits, tg, ignore_index=IGNORE_INDEX, reduction="sum")
                    + F.cross_entropy(cell_logits, cells, ignore_index=IGNORE_INDEX, reduction="sum")), n
        patch_logits = B2.patch_logits if is_blip2(cfg) else R.patch_logits
        logits = patch_logits(cfg, W, pixels_of(sample["images"][0])[None])[0]
    else:
        logits = sample_logits(cfg, W, sample, pixels_of, vision_of)
    return F.cross_entropy(logits, tg, ignore_index=IGNORE_INDEX, reduction="sum"), n


class ImageEmbedsCache:
    """The frozen ViT's output per image path (stage 1 trains no vision parameter)."""

    def __init__(self, cfg, pixels_of):
        self.cfg, self.pixels_of, self.cache = cfg, pixels_of, {}

    def __call__(self, W, path):
        if path not in self.cache:
            with torch.no_grad():
                self.cache[path] = B2.image_embeds(self.cfg, W, self.pixels_of(path)[None])[0]
        return self.cache[path]


def accumulate_grads(acc, part, wrt):
    """ACC[i] += d PART / d WRT[i], in buffers of its own (see step_loss)."""
    for i, g in enumerate(torch.autograd.grad(part, wrt, allow_unused=True)):
        if g is not None:
            acc[i] = g.detach().clone(memory_format=torch.contiguous_format) if acc[i] is None else acc[i] + g


def stage1_step_loss(cfg, W, batch, pixels_of, wrt=None, embeds=None, info=None):
    """A batched step (BLIP-2 stage 1): one call of blip2_ref.stage1_loss per
    micro-batch (texts padded to the Q-Former's text length with the pad id,
    targets with -100, length = queries + the text's positions), the step's
    loss and gradients the mean over the micro-batches, as the runtime divides
    them.  Returns step_loss's triple; INFO (a list) receives each micro-batch's
    parts and drawn hard negatives."""
    q = cfg["qformer"]
    TT, pad, Q = int(q["max_position_embeddings"]), int(q.get("pad_token_id", 0)), cfg["num_query_tokens"]
    mbs = batch["micro_batches"]
    M = len(mbs)
    per = len(batch["samples"]) // M
    vision_trained = any(W.get(n).requires_grad for n in W.tensors if n.startswith("vision_model."))
    total, acc = None, [None] * len(wrt) if wrt is not None else None
    for m, mb in enumerate(mbs):
        ss = batch["samples"][m * per:(m + 1) * per]
        ids = torch.tensor([s["input_ids"] + [pad] * (TT - len(s["input_ids"])) for s in ss], dtype=torch.long)
        tg = torch.tensor([s["targets"] + [IGNORE_INDEX] * (TT - len(s["targets"])) for s in ss], dtype=torch.long)
        length = torch.tensor([Q + len(s["input_ids"]) for s in ss], dtype=torch.long)
        with torch.set_grad_enabled(wrt is not None):
            if embeds is None or vision_trained:
                img = B2.image_embeds(cfg, W, torch.stack([pixels_of(s["images"][0]) for s in ss]))
            else:
                img = torch.stack([embeds(W, s["images"][0]) for s in ss])
            loss, mi = B2.stage1_loss(cfg, W, img, ids, tg, length, mb["negative_text_uniform"],
                                      mb["negative_image_uniform"])
            part = loss / M
        if info is not None:
            info.append(mi)
        if wrt is not None and part.requires_grad:
            accumulate_grads(acc, part, wrt)
        part = part.detach()
        total = part if total is None else total + part
    return float(total), M, acc


def step_loss(cfg, W, batch, pixels_of, wrt=None, embeds=None, info=None):
    """The step's loss (sum CE / count) as a python float, the target count,
    and, when WRT (a list of leaf tensors) is given, d loss / d WRT as a list
    (None where the graph does not reach a tensor).

    The gradient is accumulated sample by sample (d(sum_i CE_i / N) =
    sum_i d(CE_i / N)) into buffers owned here, with torch.autograd.grad
    rather than .backward(): autograd may hand a leaf, as its .grad, a view of
    a buffer that another leaf's .grad also views (class_embedding and
    position_embedding both receive slices of one gradient), and then a later
    in-place accumulation or clipping of one would silently change the other.

    A batched step (one with "micro_batches": BLIP-2's stage 1) goes to
    stage1_step_loss; its count is the number of micro-batches."""
    if batch.get("micro_batches") is not None:
        return stage1_step_loss(cfg, W, batch, pixels_of, wrt, embeds, info)
    n_total = sum(sum(1 for x in s["targets"] if x != IGNORE_INDEX) for s in batch["samples"])
    if n_total == 0:
        raise InputError(f"step {batch['step']}: no target != -100 in any sample")
    total = None
    acc = [None] * len(wrt) if wrt is not None else None
    for s in batch["samples"]:
        with torch.set_grad_enabled(wrt is not None):
            ce, _ = sample_loss_sum(cfg, W, s, pixels_of)
        if ce is None:
            continue
        part = ce / n_total
        if wrt is not None and part.requires_grad:
            accumulate_grads(acc, part, wrt)
        part = part.detach()
        total = part if total is None else total + part
    return float(total), n_total, acc


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

class Trainer:
    def __init__(self, manifest, stage, init_arrays, lr=None, total_steps=1, max_grad_norm=1.0,
                 dtype=torch.float32):
        self.cfg = manifest["cfg"]
        self.params = manifest["params"]
        self.stage = stage
        self.dtype = dtype
        self.max_grad_norm = max_grad_norm
        trainable_groups = set(stage["trainable"])
        self.tensors = {}
        self.trainable, self.frozen = [], []
        for name, _, group in self.params:
            t = torch.from_numpy(np.array(init_arrays[name], dtype=np.float32)).to(dtype)
            if group in trainable_groups:
                t.requires_grad_(True)
                self.trainable.append(name)
            else:
                self.frozen.append(name)
            self.tensors[name] = t
        if not self.trainable:
            raise InputError(f"stage {stage['name']!r}: no trainable parameter")
        self.W = TensorWeights(self.tensors)
        self.pixels = PixelCache(self.cfg, dtype)
        self.embeds = ImageEmbedsCache(self.cfg, self.pixels)
        self.sampler_problems = []  # hard negatives that drew the positive (must stay empty)
        decay = [self.tensors[n] for n in self.trainable if self.tensors[n].dim() >= 2]
        no_decay = [self.tensors[n] for n in self.trainable if self.tensors[n].dim() < 2]
        groups = []
        if decay:
            groups.append({"params": decay, "weight_decay": stage["weight_decay"]})
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        self.peak_lr = stage["lr"] if lr is None else float(lr)
        self.opt = torch.optim.AdamW(groups, lr=self.peak_lr, betas=BETAS, eps=ADAM_EPS, foreach=False)
        self.W_steps = warmup_steps(stage["warmup_ratio"], total_steps)
        self.T = total_steps
        self.lam = schedule_lambda(stage["schedule"], self.W_steps, total_steps)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda=self.lam)

    def compute_grads(self, batch):
        """zero grads, loss, backward; afterwards every trainable parameter has a
        grad (zeros where the graph did not reach it) and no frozen one has."""
        leaves = [self.tensors[n] for n in self.trainable]
        for p in leaves:
            p.grad = None
        self.last_info = []
        loss, count, grads = step_loss(self.cfg, self.W, batch, self.pixels, wrt=leaves, embeds=self.embeds,
                                       info=self.last_info)
        for m, mi in enumerate(self.last_info):  # the sampler never draws the positive
            for key in ("neg_text", "neg_image"):
                bad = [r for r, j in enumerate(mi[key]) if j == r]
                if bad:
                    self.sampler_problems.append(f"step {batch['step']} micro-batch {m}: {key}[r] == r for r = {bad}")
        for n in self.frozen:
            t = self.tensors[n]
            assert t.grad is None and not t.requires_grad, f"frozen parameter {n} received a gradient"
        for p, g in zip(leaves, grads):
            p.grad = torch.zeros_like(p) if g is None else g
        return loss, count

    def grads(self):
        return {n: self.tensors[n].grad.detach().clone() for n in self.trainable}

    def clip(self):
        ps = [self.tensors[n] for n in self.trainable]
        if self.max_grad_norm > 0:
            norm = torch.nn.utils.clip_grad_norm_(ps, self.max_grad_norm)
        else:
            norm = torch.norm(torch.stack([torch.norm(p.grad.detach(), 2.0) for p in ps]), 2.0)
        return float(norm)

    def step(self, batch):
        """One optimizer step.  Returns (record, {name: gradient before clipping})."""
        B2.RELU_KINK[0] = math.inf
        loss, count = self.compute_grads(batch)
        kink = B2.RELU_KINK[0]
        lr = float(self.opt.param_groups[0]["lr"])
        grads = self.grads()
        norm = self.clip()
        self.opt.step()
        self.sched.step()
        rec = dict(step=batch["step"], loss=loss, lr=lr, grad_norm=norm, targets=count)
        if kink < math.inf:
            rec["relu_kink"] = kink
        if self.last_info:
            rec["stage1"] = self.last_info
        return rec, grads

    def weights(self):
        return {n: self.tensors[n].detach().to(torch.float32).numpy().copy() for n, _, _ in self.params}


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------

def norm_rel(a, b):
    """||a - b|| / ||b|| (0 where b is all zeros and a equals it)."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1)
    nb = float(np.linalg.norm(b64))
    nd = float(np.linalg.norm(a64 - b64))
    return nd / nb if nb > 0 else (0.0 if nd == 0 else float("inf"))


def tensor_diff(a, b):
    """(max_abs, max_rel, ok_finite); rel = |a-b| / max(|b|, 1e-2*max|b|)."""
    a64 = np.asarray(a, dtype=np.float64).reshape(-1)
    b64 = np.asarray(b, dtype=np.float64).reshape(-1)
    finite = bool(np.all(np.isfinite(a64)) and np.all(np.isfinite(b64)))
    if not finite or a64.size == 0:
        return float("nan") if not finite else 0.0, float("nan") if not finite else 0.0, finite
    diff = np.abs(a64 - b64)
    floor = 1e-2 * float(np.max(np.abs(b64)))
    rel = diff / np.maximum(np.abs(b64), max(floor, 1e-30))
    return float(diff.max()), float(rel.max()), True


def _read_other(path):
    try:
        return R.read_safetensors(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: {e}")


ZERO_FLOOR = 1e-8
# The float32 similarities of blip2-tiny's stage 1 differ from float64 ones by ~2e-6, which moves
# a row's partial sums of sampler weights by ~1.5e-7 of its total: a draw closer than this to a
# boundary could differ between the compiled run and this one.
SAMPLER_MARGIN_NOTE = 1e-5


def parse_rtol_overrides(specs, option):
    """["REGEX=TOL", ...] -> [(compiled regex, tol)]."""
    out = []
    for spec in specs or []:
        rx, sep, tol = spec.rpartition("=")
        try:
            if not sep or not rx:
                raise ValueError("expected REGEX=TOL")
            out.append((re.compile(rx), float(tol)))
        except (ValueError, re.error) as e:
            raise InputError(f"{option} {spec!r}: {e}")
    return out


def compare_tensors(kind, ours, other_path, trainable, frozen, rtol, frozen_exact=None, skip=(), overrides=(),
                    floor_of=None):
    """ours: {name: array} for the trainable parameters.  frozen_exact: for
    weights, {name: initial array} that OTHER must hold bit-identically.
    SKIP: trainable names listed as skipped, not compared.  OVERRIDES:
    [(regex, tol)]: a tensor whose name matches is held to that tol instead.
    FLOOR_OF: (cap, {name: abs bound}) from the float32 reference: a tensor
    over its rtol passes when its max rel is at most CAP and its largest
    absolute difference at most the bound, and then also norm-wise within
    the rtol (see --grads-float32-factor)."""
    other = _read_other(other_path)
    ok = True
    problems = []
    frozen_set = set(frozen)
    known = set(trainable) | frozen_set
    rows = []
    nrels = {}  # printed where the float32 floor is in use (the norm-wise check runs there)
    # A gradient that is mathematically zero (the attention key bias's:
    # softmax ignores a shift that is the same for every key) holds only
    # rounding noise on both sides, which no relative tolerance bounds; it
    # passes when its largest difference is below ZERO_FLOOR times the largest
    # gradient compared. Weights get no floor.
    scale = 0.0
    if kind == "grads":
        scale = max([float(np.max(np.abs(np.asarray(other[n], np.float64))))
                     for n in trainable if n in other and np.asarray(other[n]).size] + [0.0])
    def tol_of(n):
        tol, note = rtol, ""
        for rx, t in overrides:
            if rx.search(n):
                tol, note = t, f" (rtol {t:g})"
                break
        return tol, note

    def float32_pass(n, mabs, mrel):  # within what PyTorch's own float32 gets wrong
        return bool(floor_of) and mrel <= floor_of[0] and mabs <= floor_of[1].get(n, 0.0)

    for n in trainable:
        if n in skip:
            rows.append((n, float("nan"), float("nan"), "skipped"))
            continue
        if n not in other:
            problems.append(f"{n}: missing in {other_path}")
            rows.append((n, float("nan"), float("nan"), "MISSING"))
            continue
        b = other[n]
        if tuple(b.shape) != tuple(ours[n].shape):
            problems.append(f"{n}: shape {list(b.shape)} in {other_path}, expected {list(ours[n].shape)}")
            rows.append((n, float("nan"), float("nan"), "SHAPE"))
            continue
        mabs, mrel, finite = tensor_diff(ours[n], b)
        nrel = norm_rel(ours[n], b) if finite else float("nan")
        if not finite:
            status = "NAN"
            problems.append(f"{n}: non-finite values (ours {int(np.sum(~np.isfinite(ours[n])))}, "
                            f"other {int(np.sum(~np.isfinite(np.asarray(b, np.float64))))})")
        elif mrel > tol_of(n)[0] and mabs > ZERO_FLOOR * scale and float32_pass(n, mabs, mrel):
            if nrel > tol_of(n)[0]:
                status = "FAIL (norm-wise)"
                problems.append(f"{n}: ||ours - other|| / ||other|| = {nrel:.3e} > {tol_of(n)[0]:g}")
            else:
                status = f"ok (max abs <= {floor_of[1][n]:.2e}, float32 reference)"
        elif mrel > tol_of(n)[0] and mabs > ZERO_FLOOR * scale:
            status = "FAIL" + tol_of(n)[1]
            problems.append(f"{n}: max rel {mrel:.3e} > {tol_of(n)[0]:g}")
        elif mrel > tol_of(n)[0]:
            status = "ok (below the zero floor)"
        else:
            status = "ok" + tol_of(n)[1]
        rows.append((n, mabs, mrel, status))
        nrels[n] = nrel
    if frozen_exact is not None:
        for n in frozen:
            if n not in other:
                problems.append(f"{n} (frozen): missing in {other_path}")
                rows.append((n, float("nan"), float("nan"), "MISSING"))
                continue
            b = np.asarray(other[n])
            a = frozen_exact[n]
            same = tuple(b.shape) == tuple(a.shape) and np.array_equal(
                np.asarray(b, np.float32).view(np.uint32), np.asarray(a, np.float32).view(np.uint32))
            if not same:
                problems.append(f"{n}: frozen parameter changed")
                rows.append((n, float("nan"), float("nan"), "CHANGED"))
    for n in other:
        if n in known and (frozen_exact is not None or n not in frozen_set):
            continue
        if kind == "weights" and n.startswith("optimizer."):
            continue
        if n in frozen_set:
            problems.append(f"{n}: {other_path} holds a gradient of a frozen parameter")
        else:
            problems.append(f"{n}: {other_path} holds a tensor that is not a "
                            f"{'trainable ' if kind == 'grads' else ''}parameter")
    width = max([len(r[0]) for r in rows] + [4])
    print(f"== {kind}: ours vs {other_path} (rel = |ours-other| / max(|other|, 1e-2*max|other|), rtol {rtol:g})")
    print(f"{'name':<{width}}  {'max_abs':>11}  {'max_rel':>11}  status")
    for n, mabs, mrel, status in rows:
        extra = f"  (norm rel {nrels[n]:.1e})" if floor_of and n in nrels else ""
        print(f"{n:<{width}}  {mabs:11.4e}  {mrel:11.4e}  {status}{extra}")
    finite_rows = [r for r in rows if r[3].split(" ")[0] in ("ok", "FAIL")]
    if finite_rows:
        worst = max(finite_rows, key=lambda r: r[2])
        print(f"worst {kind}: {worst[0]} max_rel={worst[2]:.4e} max_abs={worst[1]:.4e}")
        plain = [r for r in finite_rows if " " not in r[3]]
        if plain and len(plain) < len(finite_rows):
            worst = max(plain, key=lambda r: r[2])
            print(f"worst {kind} at rtol {rtol:g}: {worst[0]} max_rel={worst[2]:.4e} max_abs={worst[1]:.4e}")
    if problems:
        ok = False
        for p in problems:
            print(f"FAIL {kind}: {p}")
    print(("PASS " if ok else "FAIL ") + f"{kind}: {len(rows)} tensors compared")
    return ok


def read_loss_log(path):
    """mmrun --log JSONL (or a JSON list as --dump-losses writes) -> {step: record}."""
    with open(path) as f:
        text = f.read()
    recs = []
    stripped = text.lstrip()
    if stripped.startswith("["):
        recs = json.loads(text)
    else:
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                recs.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise InputError(f"{path}:{lineno}: not JSON: {e}")
    out = {}
    for r in recs:
        if isinstance(r, dict) and "step" in r and "loss" in r:
            s = int(r["step"])
            if s in out:
                raise InputError(f"{path}: step {s} logged twice")
            out[s] = r
    if not out:
        raise InputError(f"{path}: no line with \"step\" and \"loss\"")
    return out


def scalar_rel(a, b):
    if not (math.isfinite(a) and math.isfinite(b)):
        return float("nan")
    d = abs(a - b)
    return 0.0 if d == 0 else d / max(abs(b), 1e-30)


# ReLU inputs nearer zero than this fraction of their rms may change sign
# between float64 and float32 (a K = 256 dot product's rounding).
RELU_KINK_NOISE = 1e-6


def compare_losses(records, other_path, rtol):
    other = read_loss_log(other_path)
    ok = True
    extra = sorted(set(other) - {r["step"] for r in records})
    print(f"== losses: ours vs {other_path} (rel = |ours-other| / |other|, rtol {rtol:g})")
    print(f"{'step':>5}  {'ours':>14}  {'other':>14}  {'rel':>10}  extra")
    worst = (0.0, None)
    for r in records:
        o = other.get(r["step"])
        if o is None:
            print(f"{r['step']:>5}  {r['loss']:14.8f}  {'missing':>14}")
            print(f"FAIL losses: step {r['step']} missing in {other_path}")
            ok = False
            continue
        notes = []
        rel = scalar_rel(r["loss"], float(o["loss"]))
        bad = not (rel <= rtol)
        for key in ("lr", "grad_norm"):
            if key in o and o[key] is not None:
                kr = scalar_rel(r[key], float(o[key]))
                notes.append(f"{key} {float(o[key]):.6g} (ours {r[key]:.6g}, rel {kr:.1e})")
                if not (kr <= rtol):
                    bad = True
                    print(f"FAIL losses: step {r['step']}: {key} ours {r[key]!r} other {o[key]!r} rel {kr:.3e}")
        if rel == rel and rel > worst[0]:
            worst = (rel, r["step"])
        print(f"{r['step']:>5}  {r['loss']:14.8f}  {float(o['loss']):14.8f}  {rel:10.3e}  {'; '.join(notes)}")
        if bad:
            ok = False
            if not (rel <= rtol):
                print(f"FAIL losses: step {r['step']}: loss rel {rel:.3e} > {rtol:g}")
            if r.get("relu_kink", math.inf) < RELU_KINK_NOISE:
                print(f"note: at step {r['step']} a ReLU input lies {r['relu_kink']:.1e} of its tensor's rms from "
                      f"zero, within float32 rounding: mmc may take the other side of the kink there, which "
                      f"changes that unit's gradient whole (a data or seed matter, not a kernel error)")
    if extra:
        print(f"note: {other_path} has {len(extra)} more step(s) than were run here (from {extra[0]}); not compared")
    if worst[1] is not None:
        print(f"worst loss: step {worst[1]} rel={worst[0]:.4e}")
    print(("PASS " if ok else "FAIL ") + f"losses: {len(records)} steps compared")
    return ok


# --------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------

def run_training(manifest, stage, init, batches, total_steps, lr, max_grad_norm, dtype, log=print):
    tr = Trainer(manifest, stage, init, lr=lr, total_steps=total_steps, max_grad_norm=max_grad_norm, dtype=dtype)
    log(f"stage {stage['name']}: {len(tr.trainable)} trainable / {len(tr.frozen)} frozen tensors "
        f"({sum(tr.tensors[n].numel() for n in tr.trainable)} trainable values); schedule {stage['schedule']} "
        f"T={total_steps} W={tr.W_steps} peak lr {tr.peak_lr:g} wd {stage['weight_decay']:g} "
        f"max_grad_norm {max_grad_norm:g} dtype {str(dtype).replace('torch.', '')}")
    records, grads0 = [], None
    for i, b in enumerate(batches):
        rec, grads = tr.step(b)
        if i == 0:
            grads0 = grads
        records.append(rec)
        log(f"step {rec['step']:>4}  loss {rec['loss']:.8f}  lr {rec['lr']:.6e}  grad_norm {rec['grad_norm']:.6e}  "
            f"targets {rec['targets']}  samples {len(b['samples'])}"
            + (f"  relu_kink {rec['relu_kink']:.1e}" if "relu_kink" in rec else ""))
        for m, mi in enumerate(rec.get("stage1") or []):
            log(f"      micro-batch {m}: itc {mi['loss_itc']:.8f}  itm {mi['loss_itm']:.8f}  itg {mi['loss_itg']:.8f}  "
                f"neg_text {mi['neg_text']}  neg_image {mi['neg_image']}  sampler margin {mi['margin']:.2e}  "
                f"query max gap {mi['query_gap']:.2e}")
    return tr, records, grads0


def float32_grad_bounds(manifest, stage, init, batch, total_steps, lr, factor, cap):
    """The first batch's gradients in float32.  Returns a function that, given
    the float64 run (trainer, step-0 gradients, records), gives (cap, {name:
    FACTOR x the float32 gradient's largest absolute difference from the
    float64 one}), or None (with a note) when the two runs drew different
    hard negatives."""
    t32 = Trainer(manifest, stage, init, lr=lr, total_steps=total_steps, dtype=torch.float32)
    t32.compute_grads(batch)
    g32 = t32.grads()
    info32 = t32.last_info

    def bounds(tr64, grads64, records):
        info64 = records[0].get("stage1") or []
        for a, b in zip(info32, info64):
            if list(a["neg_text"]) != list(b["neg_text"]) or list(a["neg_image"]) != list(b["neg_image"]):
                print("note: the float32 reference drew other hard negatives than the float64 one; "
                      "--grads-float32-factor is ignored")
                return None
        rels, abss = {}, {}
        # A gradient whose every element is under ZERO_FLOOR x the largest gradient is
        # rounding noise of one that is mathematically zero: no float32 error to scale.
        scale = max(float(grads64[n].abs().max()) for n in tr64.trainable if grads64[n].numel())
        for n in tr64.trainable:
            mabs, rel, finite = tensor_diff(g32[n].to(torch.float64).numpy(), grads64[n].to(torch.float64).numpy())
            noise = grads64[n].numel() and float(grads64[n].abs().max()) <= ZERO_FLOOR * scale
            rels[n], abss[n] = (rel, mabs) if finite and not noise else (0.0, 0.0)
        worst = max(rels, key=rels.get)
        print(f"float32 reference against float64 (step-0 gradients): worst max rel {worst} {rels[worst]:.3e}; "
              f"a gradient over its rtol passes if its largest absolute difference is at most {factor:g} x "
              f"the float32 reference's, its max rel at most {cap:g} and its norm-wise rel within the rtol")
        return cap, {n: factor * a for n, a in abss.items()}
    return bounds


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="mmc inspect --json output")
    ap.add_argument("--weights", required=True, help="initial weights (safetensors)")
    ap.add_argument("--batches", required=True, help="mmrun --dump-batches JSONL")
    ap.add_argument("--stage", required=True)
    ap.add_argument("--steps", type=int)
    ap.add_argument("--total-steps", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    ap.add_argument("--dump-grads")
    ap.add_argument("--dump-losses")
    ap.add_argument("--dump-weights")
    ap.add_argument("--compare-grads")
    ap.add_argument("--compare-losses")
    ap.add_argument("--compare-weights")
    ap.add_argument("--rtol", type=float, default=1e-4, help="default tolerance of every comparison")
    ap.add_argument("--grads-rtol", type=float)
    ap.add_argument("--losses-rtol", type=float)
    ap.add_argument("--weights-rtol", type=float)
    ap.add_argument("--grads-rtol-for", action="append", metavar="REGEX=R",
                    help="tolerance R for the gradients of the tensors whose name matches REGEX (repeatable)")
    ap.add_argument("--weights-rtol-for", action="append", metavar="REGEX=R",
                    help="tolerance R for the final weights of the tensors whose name matches REGEX (repeatable)")
    ap.add_argument("--grads-float32-factor", type=float, metavar="K",
                    help="hold each gradient to max(rtol, K x the float32 reference's own error), "
                    "capped at --grads-float32-cap (needs --dtype float64)")
    ap.add_argument("--grads-float32-cap", type=float, default=1e-3)
    ap.add_argument("--weights-skip", help="regex: trainable tensors left out of the weights comparison "
                    "(those whose gradient is identically zero, e.g. attention key biases: AdamW's update of "
                    "them is rounding noise divided by eps)")
    args = ap.parse_args(argv)

    threads = os.environ.get("MMC_REF_THREADS")
    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    torch.use_deterministic_algorithms(True)
    dtype = torch.float64 if args.dtype == "float64" else torch.float32

    try:
        if args.steps is not None and args.steps < 1:
            raise InputError("--steps must be >= 1")
        manifest = load_manifest(args.config)
        stage = stage_settings(manifest, args.stage)
        init = load_initial_weights(args.weights, manifest["params"])
        batches = load_batches(args.batches, manifest["cfg"], args.steps)
        N = len(batches)
        T = args.total_steps if args.total_steps is not None else N
        if T < N:
            raise InputError(f"--total-steps {T} is less than the {N} steps run")
        if args.grads_float32_factor is not None and (dtype != torch.float64 or not args.compare_grads):
            raise InputError("--grads-float32-factor needs --dtype float64 and --compare-grads")
        float32_floor = None
        if args.grads_float32_factor is not None:
            float32_floor = float32_grad_bounds(manifest, stage, init, batches[0], T, args.lr,
                                                args.grads_float32_factor, args.grads_float32_cap)
        tr, records, grads0 = run_training(manifest, stage, init, batches, T, args.lr, args.max_grad_norm, dtype)
        if float32_floor is not None:
            float32_floor = float32_floor(tr, grads0, records)
    except (InputError, KeyError, OSError) as e:
        print(f"llava_train_ref: error: {e}", file=sys.stderr)
        return 2

    bad = [r for r in records if not (math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]))]
    margins = [mi["margin"] for r in records for mi in r.get("stage1") or []]
    if margins:
        # The compiled float32 run draws the same hard negatives unless its rounding of the
        # similarities moves a partial sum of a row's weights across its target; the losses
        # and gradients then differ by far more than the tolerances.
        print(f"stage 1 hard negatives: none is a positive ({'no' if not tr.sampler_problems else 'SOME'} "
              f"violations); smallest margin of a draw to a boundary {min(margins):.2e} of its row's total"
              + ("  (small: a float32 run could draw differently)" if min(margins) < SAMPLER_MARGIN_NOTE else ""))
    final = tr.weights()
    g32 = {n: grads0[n].to(torch.float32).numpy() for n in tr.trainable}
    meta = {"format": "pt", "stage": stage["name"], "producer": "llava_train_ref.py"}
    if args.dump_grads:
        M.write_safetensors(args.dump_grads, g32, "F32", dict(meta, content="step-0 gradients before clipping"))
    if args.dump_losses:
        with open(args.dump_losses, "w") as f:
            json.dump([{k: r[k] for k in ("step", "loss", "lr", "grad_norm")} for r in records], f, indent=1)
    if args.dump_weights:
        M.write_safetensors(args.dump_weights, final, "F32", dict(meta, content=f"weights after {len(records)} steps"))
    if tr.sampler_problems:
        for p in tr.sampler_problems:
            print(f"FAIL sampler: {p}")
        return 1
    if bad:
        print(f"llava_train_ref: error: non-finite loss or gradient norm at step {bad[0]['step']}", file=sys.stderr)
        return 1

    ok = True
    try:
        if args.compare_grads:
            ok &= compare_tensors("grads", g32, args.compare_grads, tr.trainable, tr.frozen,
                                  args.grads_rtol if args.grads_rtol is not None else args.rtol,
                                  overrides=parse_rtol_overrides(args.grads_rtol_for, "--grads-rtol-for"),
                                  floor_of=float32_floor)
        if args.compare_losses:
            ok &= compare_losses(records, args.compare_losses,
                                 args.losses_rtol if args.losses_rtol is not None else args.rtol)
        if args.compare_weights:
            skip = re.compile(args.weights_skip) if args.weights_skip else None
            skipped = [n for n in tr.trainable if skip and skip.search(n)]
            if skipped:
                print(f"weights: {len(skipped)} tensor(s) left out by --weights-skip (first: {skipped[0]})")
            ok &= compare_tensors("weights", {n: final[n] for n in tr.trainable}, args.compare_weights,
                                  tr.trainable, tr.frozen,
                                  args.weights_rtol if args.weights_rtol is not None else args.rtol,
                                  frozen_exact=init, skip=set(skipped),
                                  overrides=parse_rtol_overrides(args.weights_rtol_for, "--weights-rtol-for"))
    except (InputError, OSError) as e:
        print(f"llava_train_ref: error: {e}", file=sys.stderr)
        return 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
