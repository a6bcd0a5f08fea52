#!/usr/bin/python3
"""Training-parity fixtures for llava_train_parity.sh (and its --dry-run).

Subcommands:
  records  --out-dir DIR [--seed S]
        DIR/captions.json (stage1, LLaVA "plain" data: every record has an
        image), DIR/conversations.json (stage2: two human/gpt exchanges, some
        records with an image, some text-only) and DIR/images/*.png (RGB, at
        the model's size and non-square ones that go through resize + crop).
  fit      --manifest M --tokenizer TOK --data D.json --kind caption|conversation
        Builds every record's sample as the runtime documents it
        (runtime/include/mm/Data.h) and prints "needed=N have=M": N the longest
        untruncated sample, M the compiled length.  Exit 0 if every sample
        fits, 3 if not.
  variant  --out MODEL.mlir --seq N
        models/gen_llava.py's llava-tiny with the compiled sequence length N
        (max_position_embeddings raised to match), tokenizer copied next to it.
  patch-manifest --in M.json --out M2.json --seq N
        The manifest of that variant without compiling it (only the config's
        max_sequence_length / max_position_embeddings differ): for --dry-run.
  init     --manifest M --out W.safetensors [--seed S]
        Seeded initial weights following the manifest's initialisers (normal
        std / ones / zeros): the --dry-run stand-in for `mmrun --save-init`.
  perturb  --manifest M --in W.safetensors --out W2.safetensors [--seed S] [--scale REGEX=K ...]
        Makes initial weights non-trivial: "ones" parameters (norm scales)
        become 1 + N(0, 0.2), "zeros" parameters (biases) N(0, 0.02); the
        others are kept bit for bit, except those whose name matches a
        --scale REGEX, multiplied by K.  optimizer.* tensors are dropped.
  batches  --manifest M --tokenizer TOK --data D.json --image-dir DIR
           --kind K --steps N --batch B [--seed S] --out B.jsonl
        A --dump-batches-format file built here (records drawn by a seeded
        shuffle, epoch after epoch): what the --dry-run feeds the reference
        in place of mmrun's dump.
  check-batches  (same inputs as batches, --batches B.jsonl instead of --out)
        Checks that every sample of mmrun's --dump-batches file equals the
        documented template's sample of the record with that id (ids,
        targets, image file).  Exit 1 on any difference.

The sample builder covers merge-free byte-level BPE tokenizers (one id per
byte plus literally matched added tokens), which is what llava-tiny uses;
`fit`, `batches` and `check-batches` refuse other tokenizers (exit 4).
"""

import argparse
import json
import os
import random
import re
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import llava_ref as R  # noqa: E402
import make_random_llava as M  # noqa: E402

IGNORE_INDEX = -100
IMAGE_MARKER = "<image>"
VICUNA_SYSTEM = ("A chat between a curious human and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the human's questions.")


class Unsupported(Exception):
    pass


# --------------------------------------------------------------------------
# records and images
# --------------------------------------------------------------------------

def write_image(path, w, h, seed):
    """Deterministic RGB picture: a colour gradient, a disc and noise."""
    from PIL import Image
    rng = np.random.default_rng(1000 + seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    base = rng.uniform(0, 255, size=3)
    img = np.empty((h, w, 3))
    img[..., 0] = base[0] + 90 * np.sin(xx / (3 + seed % 5))
    img[..., 1] = base[1] + 90 * np.cos(yy / (4 + seed % 3))
    img[..., 2] = base[2] * (xx + yy) / (w + h)
    cy, cx, r = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w, min(w, h) / 4
    img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 12, size=img.shape)
    Image.fromarray(np.clip(np.rint(img), 0, 255).astype(np.uint8), mode="RGB").save(path)


IMAGE_SIZES = [(64, 64), (96, 80), (80, 72), (64, 96), (128, 128), (70, 64)]

CAPTIONS = [
    "a red disc on a striped field",
    "green waves under a bright sky",
    "a blue circle near the centre",
    "soft colours with a dark spot",
    "a yellow ball on grey stripes",
    "noisy gradient, round shape",
]

EXCHANGES = [  # (question 1, answer 1, question 2, answer 2)
    ("What is in the picture?", "A disc.", "Which colour?", "Mostly red."),
    ("Describe it.", "Stripes, a circle.", "Is it noisy?", "A little."),
    ("What shape do you see?", "A round one.", "Where?", "Near the middle."),
    ("Name a colour here.", "Blue.", "Any other?", "Some green."),
    ("Say hello.", "Hello!", "Count to three.", "One, two, three."),
    ("What is two plus two?", "Four.", "And three plus one?", "Also four."),
]


def make_records(out_dir, seed=0):
    img_dir = os.path.join(out_dir, "images")
    os.makedirs(img_dir, exist_ok=True)
    names = []
    for i, (w, h) in enumerate(IMAGE_SIZES):
        name = f"img{i}_{w}x{h}.png"
        write_image(os.path.join(img_dir, name), w, h, seed * 100 + i)
        names.append(name)
    captions = []
    for i, cap in enumerate(CAPTIONS):
        captions.append({"id": f"cap{i}", "image": names[i % len(names)],
                         "conversations": [{"from": "human", "value": IMAGE_MARKER + "\nDescribe the image."},
                                           {"from": "gpt", "value": cap}]})
    convs = []
    for i, (q1, a1, q2, a2) in enumerate(EXCHANGES):
        with_image = i < 4
        first = (IMAGE_MARKER + "\n" + q1) if with_image else q1
        rec = {"id": i + 100 if i % 2 else f"conv{i}",  # numeric ids too
               "conversations": [{"from": "human", "value": first}, {"from": "gpt", "value": a1},
                                 {"from": "human", "value": q2}, {"from": "gpt", "value": a2}]}
        if with_image:
            rec["image"] = names[(i + 1) % len(names)]
        convs.append(rec)
    with open(os.path.join(out_dir, "captions.json"), "w") as f:
        json.dump(captions, f, indent=1)
    with open(os.path.join(out_dir, "conversations.json"), "w") as f:
        json.dump(convs, f, indent=1)


# --------------------------------------------------------------------------
# tokenizer (merge-free byte-level BPE only) and templates
# --------------------------------------------------------------------------

def byte_to_unicode():
    """GPT-2's reversible byte -> printable character table: bytes that are
    printable Latin-1 map to themselves, the rest to 256, 257, ... in order."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAC + 1)) | set(range(0xAE, 0xFF + 1))
    table, extra = {}, 0
    for b in range(256):
        if b in keep:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return table


class ByteTokenizer:
    def __init__(self, path):
        with open(path) as f:
            tj = json.load(f)
        model = tj.get("model") or {}
        if model.get("type") != "BPE" or model.get("merges"):
            raise Unsupported(f"{path}: only merge-free byte-level BPE tokenizers are emulated")
        pre = json.dumps(tj.get("pre_tokenizer")) + json.dumps(tj.get("decoder"))
        if "ByteLevel" not in pre:
            raise Unsupported(f"{path}: not a byte-level tokenizer")
        vocab = model["vocab"]
        b2u = byte_to_unicode()
        try:
            self.byte_ids = [vocab[b2u[b]] for b in range(256)]
        except KeyError as e:
            raise Unsupported(f"{path}: byte {e} has no vocabulary entry")
        self.added = sorted(((a["content"], a["id"]) for a in tj.get("added_tokens") or []),
                            key=lambda x: -len(x[0]))
        for a in tj.get("added_tokens") or []:
            if a.get("lstrip") or a.get("rstrip"):
                raise Unsupported(f"{path}: added token {a['content']!r} strips spaces")
        self.bos = None
        for a in tj.get("added_tokens") or []:
            if a["content"] == "<s>":
                self.bos = a["id"]

    def encode(self, text):
        """ids without special tokens added; added tokens matched literally."""
        out = []
        i = 0
        plain = []
        while i < len(text):
            hit = next(((c, t) for c, t in self.added if c and text.startswith(c, i)), None)
            if hit:
                out += [self.byte_ids[b] for b in "".join(plain).encode("utf-8")]
                plain = []
                out.append(hit[1])
                i += len(hit[0])
            else:
                plain.append(text[i])
                i += 1
        out += [self.byte_ids[b] for b in "".join(plain).encode("utf-8")]
        return out


def model_shape(manifest):
    cfg = R.normalize_config(manifest["config"])
    raw = manifest["config"]
    return dict(image_token=cfg["image_token_index"], positions=R.num_image_tokens(cfg),
                max_len=int(raw.get("max_sequence_length", 0)) or None,
                pad=int(raw.get("pad_token_id", 0)), vocab=cfg["text"]["vocab_size"])


def build_sample(rec, kind, tok, shape):
    """(ids, targets) untruncated, following runtime/include/mm/Data.h.
    Patch-label records (the vision tower's pre-training) have no text: no
    ids, and their patch labels as the targets."""
    if kind == "patch_labels":
        return [], list(rec["patch_labels"])
    ids, assistant = [], []

    def push(piece, a):
        ids.extend(piece)
        assistant.extend([a] * len(piece))

    def text(s, a):
        if s:
            piece = tok.encode(s)
            if shape["image_token"] in piece:
                raise ValueError(f"record {rec.get('id')}: text encodes to the image token")
            push(piece, a)

    def image():
        push([shape["image_token"]] * shape["positions"], False)

    def text_with_image(s):
        parts = s.split(IMAGE_MARKER)
        for j, p in enumerate(parts):
            text(p, False)
            if j + 1 < len(parts):
                image()

    push([tok.bos], False)
    turns = rec["conversations"]
    if kind == "caption":
        image()
        text(turns[1]["value"], True)
        text("\n", True)
    else:
        for i in range(0, len(turns) - 1, 2):
            human = (VICUNA_SYSTEM + " USER: " if i == 0 else "USER: ") + turns[i]["value"] + " ASSISTANT:"
            text_with_image(human)
            text(" " + turns[i + 1]["value"], True)
            text("</s>", True)
    targets = [IGNORE_INDEX] * len(ids)
    for t in range(len(ids) - 1):
        if assistant[t + 1]:
            targets[t] = ids[t + 1]
    return ids, targets


def truncate(ids, targets, shape, where):
    L = shape["max_len"]
    if L is None or len(ids) <= L:
        return ids, targets
    if shape["image_token"] in ids[L:]:
        raise ValueError(f"{where}: {len(ids)} tokens; truncating to {L} would cut into the image positions")
    ids, targets = ids[:L], list(targets[:L])
    targets[-1] = IGNORE_INDEX  # the label of the last kept position was cut away
    return ids, targets


def record_id(rec, index):
    rid = rec.get("id", index)
    return str(rid)


def samples_by_id(data_path, kind, tok, shape, image_dir):
    with open(data_path) as f:
        recs = json.load(f)
    out = {}
    for i, rec in enumerate(recs):
        rid = record_id(rec, i)
        ids, tg = build_sample(rec, kind, tok, shape)
        if kind != "patch_labels":
            ids, tg = truncate(ids, tg, shape, f"{data_path}: record {i}")
        img = rec.get("image")
        out[rid] = dict(id=rid, image=os.path.abspath(os.path.join(image_dir, img)) if img else None,
                        input_ids=ids, targets=tg)
    return recs, out


# --------------------------------------------------------------------------
# subcommands
# --------------------------------------------------------------------------

def load_manifest(path):
    with open(path) as f:
        return json.load(f)


def cmd_fit(a):
    man = load_manifest(a.manifest)
    shape = model_shape(man)
    tok = ByteTokenizer(a.tokenizer)
    with open(a.data) as f:
        recs = json.load(f)
    need = 0
    for i, rec in enumerate(recs):
        ids, tg = build_sample(rec, a.kind, tok, shape)
        need = max(need, len(ids))
    have = shape["max_len"]
    print(f"needed={need} have={have}")
    return 0 if have is None or need <= have else 3


def cmd_variant(a):
    sys.path.insert(0, os.path.join(SRC, "models"))
    import gen_llava as G
    c = dict(G.CONFIGS["llava-tiny"])
    c["seq"] = a.seq
    c["max_pos"] = max(int(c.get("max_pos", 0)), a.seq)
    if getattr(a, "tokenizer", None):
        c["tokenizer"] = a.tokenizer
    c["name"] = c["name"] + f"_seq{a.seq}"
    out_dir = os.path.dirname(os.path.abspath(a.out))
    os.makedirs(out_dir, exist_ok=True)
    with open(a.out, "w") as f:
        f.write(G.generate(c))
    tok = c.get("tokenizer")
    if tok:
        dst = os.path.join(out_dir, tok)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(os.path.join(SRC, "models", tok), dst)
    return 0


def cmd_patch_manifest(a):
    man = load_manifest(a.inp)
    cfg = man["config"]
    cfg["max_sequence_length"] = a.seq
    tc = cfg.get("text_config") or {}
    tc["max_position_embeddings"] = max(int(tc.get("max_position_embeddings", 0)), a.seq)
    with open(a.out, "w") as f:
        json.dump(man, f, indent=1)
    return 0


def cmd_init(a):
    man = load_manifest(a.manifest)
    rng = np.random.default_rng(a.seed)
    out = {}
    for p in man["parameters"]:
        shape = tuple(p["shape"])
        init = p.get("init") or {}
        kind = init.get("kind")
        if kind == "normal":
            arr = rng.normal(0.0, float(init.get("std", 0.02)), size=shape)
        elif kind == "ones":
            arr = np.ones(shape)
        elif kind == "zeros":
            arr = np.zeros(shape)
        else:
            raise SystemExit(f"make_llava_train_data: {p['name']}: unknown initialiser {init}")
        out[p["name"]] = arr.astype(np.float32)
    M.write_safetensors(a.out, out)
    return 0


def cmd_perturb(a):
    man = load_manifest(a.manifest)
    arrays = R.read_safetensors(a.inp)
    rng = np.random.default_rng(a.seed)
    scales = []
    for spec in a.scale or []:
        rx, _, k = spec.rpartition("=")
        if not rx:
            raise ValueError(f"--scale {spec!r}: expected REGEX=K")
        scales.append((re.compile(rx), float(k)))
    out = {}
    changed = 0
    for p in man["parameters"]:
        name = p["name"]
        arr = np.asarray(arrays[name], dtype=np.float32)
        kind = (p.get("init") or {}).get("kind")
        if kind == "ones":
            arr = (1.0 + rng.normal(0.0, 0.2, size=arr.shape)).astype(np.float32)
            changed += 1
        elif kind == "zeros":
            arr = rng.normal(0.0, 0.02, size=arr.shape).astype(np.float32)
            changed += 1
        for rx, k in scales:
            if rx.search(name):
                arr = (arr * np.float32(k)).astype(np.float32)
                changed += 1
                break
        out[name] = arr
    M.write_safetensors(a.out, out)
    print(f"perturbed {changed} norm/bias{' (and scaled)' if scales else ''} tensors of {len(out)}")
    return 0


def cmd_batches(a):
    man = load_manifest(a.manifest)
    shape = model_shape(man)
    tok = ByteTokenizer(a.tokenizer)
    recs, samples = samples_by_id(a.data, a.kind, tok, shape, a.image_dir)
    order = []
    rng = random.Random(a.seed)
    keys = [record_id(r, i) for i, r in enumerate(recs)]
    with open(a.out, "w") as f:
        for s in range(a.steps):
            batch = []
            for _ in range(a.batch):
                if not order:
                    order = keys[:]
                    rng.shuffle(order)
                batch.append(samples[order.pop(0)])
            f.write(json.dumps({"step": s, "samples": batch}) + "\n")
    return 0


def cmd_check_batches(a):
    man = load_manifest(a.manifest)
    shape = model_shape(man)
    tok = ByteTokenizer(a.tokenizer)
    _, samples = samples_by_id(a.data, a.kind, tok, shape, a.image_dir)
    bad = 0
    n = 0
    with open(a.batches) as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            b = json.loads(line)
            for s in b["samples"]:
                n += 1
                rid = str(s.get("id"))
                exp = samples.get(rid)
                where = f"{a.batches}:{lineno}: sample id {rid!r}"
                if exp is None:
                    print(f"FAIL {where}: no record with that id in {a.data}")
                    bad += 1
                    continue
                img = s.get("image")
                if (img is None) != (exp["image"] is None) or (
                        img is not None and os.path.realpath(img) != os.path.realpath(exp["image"])):
                    print(f"FAIL {where}: image {img!r}, expected {exp['image']!r}")
                    bad += 1
                for key in ("input_ids", "targets"):
                    got, want = s.get(key), exp[key]
                    if got != want:
                        k = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]),
                                 min(len(got), len(want)))
                        print(f"FAIL {where}: {key} differ (lengths {len(got)} / {len(want)}, first at {k}: "
                              f"{got[k:k + 8]} vs {want[k:k + 8]})")
                        bad += 1
    print(("PASS" if not bad else "FAIL") + f" batches: {n} samples checked against the {a.kind} template")
    return 1 if bad or n == 0 else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("records")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("fit")
    for k in ("--manifest", "--tokenizer", "--data"):
        p.add_argument(k, required=True)
    p.add_argument("--kind", choices=["caption", "conversation"], required=True)
    p = sub.add_parser("variant")
    p.add_argument("--out", required=True)
    p.add_argument("--seq", type=int, required=True)
    p.add_argument("--tokenizer", help="tokenizer.json relative to models/ (default: the model's)")
    p = sub.add_parser("patch-manifest")
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seq", type=int, required=True)
    p = sub.add_parser("init")
    p.add_argument("--manifest", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p = sub.add_parser("perturb")
    p.add_argument("--manifest", required=True)
    p.add_argument("--in", dest="inp", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", action="append", metavar="REGEX=K")
    for name in ("batches", "check-batches"):
        p = sub.add_parser(name)
        for k in ("--manifest", "--tokenizer", "--data", "--image-dir"):
            p.add_argument(k, required=True)
        p.add_argument("--kind", choices=["caption", "conversation", "patch_labels"], required=True)
        if name == "batches":
            p.add_argument("--steps", type=int, required=True)
            p.add_argument("--batch", type=int, required=True)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--out", required=True)
        else:
            p.add_argument("--batches", required=True)
    a = ap.parse_args(argv)
    try:
        if a.cmd == "records":
            make_records(a.out_dir, a.seed)
            return 0
        return {"fit": cmd_fit, "variant": cmd_variant, "patch-manifest": cmd_patch_manifest, "init": cmd_init, "perturb": cmd_perturb,
                "batches": cmd_batches, "check-batches": cmd_check_batches}[a.cmd](a)
    except Unsupported as e:
        print(f"make_llava_train_data: unsupported: {e}", file=sys.stderr)
        return 4
    except (ValueError, KeyError, OSError) as e:
        print(f"make_llava_train_data: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
