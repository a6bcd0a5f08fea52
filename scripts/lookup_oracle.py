"""Stage 2 with a perfect vision tower, in plain PyTorch (docs/BENCHMARKS.md,
"An LLM that reads perfect patch labels").

    /usr/bin/python3 scripts/lookup_oracle.py DATA [--steps 2000] [--width 128] [--layers 4]
        [--lr 5e-4] [--batch 8] [--held 100] [--qfirst] [--beta2 0.95] [--init-std 0.02] ...

DATA is an `mmdata scenes` directory. Each image is replaced by its ground-truth
patch labels (patches.json: 0 background, else 1 + colour x shape x size of the
object the cell shows), embedded with a learned table plus a learned position
per cell and projected by a two-layer GELU MLP, as the projector would project
a perfect tower's features; a LLaMA-style decoder (RMSNorm, RoPE, SwiGLU; word
tokens, no system prompt) is trained from random weights on instruct.json with
loss on the answers only (AdamW, warm-up and cosine decay). The last --held
images' records are held out; every --eval-every steps it prints, per question
type, how often every token of the answer is the argmax given the true history
(teacher-forced exact match: a wrong answer earlier in a conversation does not
spoil a later one). The question: how many samples the LLM needs to learn to
find the object a question names among the image tokens, when the image side
is perfect, and which settings shorten that.
"""

import argparse, json, math, random, re, time, collections
import torch, torch.nn as nn, torch.nn.functional as F

ap = argparse.ArgumentParser()
ap.add_argument("data")
ap.add_argument("--width", type=int, default=128)
ap.add_argument("--layers", type=int, default=4)
ap.add_argument("--heads", type=int, default=4)
ap.add_argument("--lr", type=float, default=5e-4)
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--steps", type=int, default=3000)
ap.add_argument("--warmup", type=float, default=0.03)
ap.add_argument("--eval-every", type=int, default=500)
ap.add_argument("--held", type=int, default=400)
ap.add_argument("--kinds", default="conversation,detail,reasoning")
ap.add_argument("--beta2", type=float, default=0.999)
ap.add_argument("--init-std", type=float, default=0, help="normal init of every matrix (0: PyTorch defaults)")
ap.add_argument("--qfirst", action="store_true", help="the image after the first question, never before")
ap.add_argument("--nopos", action="store_true", help="no patch position embedding")
ap.add_argument("--words", action="store_true",
                help="an image slot is the sum of the LLM's own embeddings of its object's colour, shape and "
                     "size words (no learned table, no projector): image tokens that share the words' space")
ap.add_argument("--poswords", action="store_true",
                help="with --words: plus the embeddings of the object's grid-cell words (top/bottom, left/right, centre)")
ap.add_argument("--forms", action="store_true",
                help="score colour, shape and position questions apart by what names the object (its place, "
                     "size and shape, colour, shape, or colour and shape)")
ap.add_argument("--bos", action="store_true", help="a <s> token first, as the real LLM's prompt has (an attention sink)")
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--seed", type=int, default=1)
args = ap.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(args.seed); random.seed(args.seed)

recs = json.load(open(args.data + "/instruct.json"))
patch_recs = json.load(open(args.data + "/patches.json"))
labels = {p["image"]: p["patch_labels"] for p in patch_recs}
cells = {p["image"]: p.get("patch_cells") for p in patch_recs}
images = sorted(labels)
NP = len(next(iter(labels.values())))
held = set(images[-args.held:])
kinds = set(args.kinds.split(","))
tok_re = re.compile(r"<image>|[A-Za-z]+|[0-9]+|[^\sA-Za-z0-9]")
vocab = {"<pad>": 0, "</s>": 1, "<image>": 2, "USER": 3, "ASSISTANT": 4, ":": 5}
if args.bos:  # only then: the other words keep the ids (and initial embeddings) of runs without it
    vocab["<s>"] = len(vocab)
def ids(text):
    out = []
    for w in tok_re.findall(text):
        if w not in vocab: vocab[w] = len(vocab)
        out.append(vocab[w])
    return out

def qtype(q):
    q = q.replace("<image>", "").strip()
    if q.startswith("What colour is it") or q.startswith("Where is it") or q.startswith("What shape is it"): return "followup"
    if q.startswith("What colour"): return "colour"
    if q.startswith("What shape"): return "shape"
    if q.startswith("How many"): return "count"
    if q.startswith("Where is"): return "position"
    if q.startswith("Is the"): return "relative_position"
    return "other"

def qform(q):
    """Which words pick the object out: 'pos' (its place), 'size' (size and shape), 'colour', 'shape',
    'both' (colour and shape); for --forms' breakdown."""
    q = q.replace("<image>", "").strip()
    if " object at " in q or " object on " in q or " object in " in q: return "pos"
    if re.search(r" (small|large) ", q): return "size"
    m = re.match(r"(What colour is|What shape is|Where is) the (\w+)( (\w+))?\?", q)
    if not m: return "other"
    if m.group(4) == "object": return "colour"
    return "both" if m.group(4) else "shape"

def encode(r):
    toks, tgt, types = [], [], []  # tgt: -1 no loss; types: per-token answer type (for eval)
    if args.bos:
        toks, tgt, types = [vocab["<s>"]], [-1], [None]
    conv = [dict(c) for c in r["conversations"]]
    if args.qfirst:
        conv[0]["value"] = conv[0]["value"].replace("<image>", "").strip() + "\n<image>"
    for i in range(0, len(conv), 2):
        q, a = conv[i]["value"], conv[i + 1]["value"]
        u = [vocab["USER"], vocab[":"]] + ids(q) + [vocab["ASSISTANT"], vocab[":"]]
        toks += u; tgt += [-1] * len(u); types += [None] * len(u)
        av = ids(a) + [vocab["</s>"]]
        t = qtype(q) if r["kind"] == "conversation" else r["kind"]
        if t == "position" and a == "There is none.": t = "none"
        if args.forms and t in ("colour", "shape", "position"): t = t + "/" + qform(q)
        toks += av; tgt += av; types += [(t, i)] * len(av)
    # <image> becomes NP slots; img holds 1 + the cell index there, 0 elsewhere
    x, y, ty, img = [], [], [], []
    for t, g, k in zip(toks, tgt, types):
        if t == vocab["<image>"]:
            x += [0] * NP; y += [-1] * NP; ty += [None] * NP; img += list(range(1, NP + 1))
        else:
            x.append(t); y.append(g); ty.append(k); img.append(0)
    # next-token targets
    yy = y[1:] + [-1]
    tt = ty[1:] + [None]
    return x, yy, tt, img

train, test = [], []
for r in recs:
    if r["kind"] not in kinds and r["image"] not in held: continue
    e = encode(r) + (labels[r["image"]], cells[r["image"]] or [0] * NP)
    (test if r["image"] in held else train).append(e)
print(f"train {len(train)} records, held-out {len(test)}, vocab {len(vocab)}", flush=True)

# mmdata's patch class: 1 + (colour * 5 + shape) * 2 + large (runtime/lib/Synth/Scene.cpp);
# patch cell: 1 + row * 3 + column, 0 for background
COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"]
SHAPES = ["circle", "square", "triangle", "diamond", "cross"]
for w in COLOURS + SHAPES + ["small", "large", "top", "bottom", "left", "right", "centre"]:
    ids(w)
word_of_class = torch.zeros(82, 3, dtype=torch.long)  # 0 (<pad>) for background
for c in range(1, 81):
    k = c - 1
    word_of_class[c] = torch.tensor([vocab[COLOURS[k // 2 // 5]], vocab[SHAPES[k // 2 % 5]],
                                     vocab["large" if k % 2 else "small"]])
word_of_cell = torch.zeros(10, 2, dtype=torch.long)
for cell in range(9):
    r, c = divmod(cell, 3)
    if cell == 4:
        word_of_cell[cell + 1] = torch.tensor([vocab["centre"], 0])
    else:
        word_of_cell[cell + 1] = torch.tensor([vocab[["top", "", "bottom"][r]] if r != 1 else 0,
                                               vocab[["left", "", "right"][c]] if c != 1 else 0])
V, D, L, H = len(vocab) + 8, args.width, args.layers, args.heads
class RMS(nn.Module):
    def __init__(s, d): super().__init__(); s.w = nn.Parameter(torch.ones(d))
    def forward(s, x): return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * s.w
def rope(x, cos, sin):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2:]
    return x * cos + torch.cat([-x2, x1], -1) * sin
class Layer(nn.Module):
    def __init__(s):
        super().__init__()
        s.n1, s.n2 = RMS(D), RMS(D)
        s.qkv = nn.Linear(D, 3 * D, bias=False); s.o = nn.Linear(D, D, bias=False)
        F_ = int(D * 8 / 3 / 8) * 8 if D != 256 else 688
        s.g = nn.Linear(D, F_, bias=False); s.u = nn.Linear(D, F_, bias=False); s.d = nn.Linear(F_, D, bias=False)
    def forward(s, x, cos, sin, mask):
        B, T, _ = x.shape
        q, k, v = s.qkv(s.n1(x)).view(B, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k = rope(q, cos, sin), rope(k, cos, sin)
        a = (q @ k.transpose(-1, -2)) / math.sqrt(D // H) + mask
        x = x + s.o((a.softmax(-1) @ v).transpose(1, 2).reshape(B, T, D))
        h = s.n2(x)
        return x + s.d(F.silu(s.g(h)) * s.u(h))
class Model(nn.Module):
    def __init__(s):
        super().__init__()
        s.emb = nn.Embedding(V, D)
        s.patch = nn.Embedding(82, 128); s.ppos = nn.Embedding(NP + 1, D if args.words else 128)
        s.proj = nn.Sequential(nn.Linear(128, D), nn.GELU(), nn.Linear(D, D))
        s.layers = nn.ModuleList(Layer() for _ in range(L))
        s.norm = RMS(D); s.head = nn.Linear(D, V, bias=False)
    def forward(s, x, img, lab, cel):
        B, T = x.shape
        e = s.emb(x)
        # image slots: img[b,t] in 1..NP -> the label lab[b, img-1]
        idx = (img - 1).clamp(min=0)
        pl = torch.gather(lab, 1, idx)
        if args.words:  # the LLM's own word embeddings (index 0, <pad>, masked out for background)
            w = word_of_class[pl]
            f = (s.emb(w) * (w > 0).unsqueeze(-1)).sum(-2)
            if args.poswords:
                pw = word_of_cell[torch.gather(cel, 1, idx)]
                f = f + (s.emb(pw) * (pw > 0).unsqueeze(-1)).sum(-2)
            f = f + (0 if args.nopos else s.ppos(img))
        else:
            f = s.proj(s.patch(pl) + (0 if args.nopos else s.ppos(img)))
        e = torch.where((img > 0).unsqueeze(-1), f, e)
        pos = torch.arange(T).float()
        inv = 1.0 / (10000 ** (torch.arange(0, D // H, 2).float() / (D // H)))
        ang = pos[:, None] * inv[None]
        cos = torch.cat([ang.cos(), ang.cos()], -1); sin = torch.cat([ang.sin(), ang.sin()], -1)
        mask = torch.full((T, T), float("-inf")).triu(1)
        for l in s.layers: e = l(e, cos, sin, mask)
        return s.head(s.norm(e))

def batchify(es):
    T = max(len(e[0]) for e in es)
    x = torch.zeros(len(es), T, dtype=torch.long); y = torch.full((len(es), T), -1, dtype=torch.long)
    img = torch.zeros(len(es), T, dtype=torch.long); lab = torch.zeros(len(es), NP, dtype=torch.long)
    cel = torch.zeros(len(es), NP, dtype=torch.long)
    for i, e in enumerate(es):
        n = len(e[0])
        x[i, :n] = torch.tensor(e[0]); y[i, :n] = torch.tensor(e[1]); img[i, :n] = torch.tensor(e[3]); lab[i] = torch.tensor(e[4])
        cel[i] = torch.tensor(e[5])
    return x, y, img, lab, cel

m = Model()
print(f"params {sum(p.numel() for p in m.parameters())/1e6:.2f} M", flush=True)
if args.init_std:
    for n_, p_ in m.named_parameters():
        if p_.dim() == 2: nn.init.normal_(p_, std=args.init_std)
opt = torch.optim.AdamW(m.parameters(), lr=args.lr, betas=(0.9, args.beta2), weight_decay=0.0)
def lr_at(s):
    w = max(1, int(args.warmup * args.steps))
    if s < w: return args.lr * (s + 1) / w
    return args.lr * 0.5 * (1 + math.cos(math.pi * (s - w) / max(1, args.steps - w)))

def evaluate():
    m.eval(); right = collections.Counter(); total = collections.Counter()
    with torch.no_grad():
        for i in range(0, len(test), 32):
            es = test[i:i + 32]
            x, y, img, lab, cel = batchify(es)
            pred = m(x, img, lab, cel).argmax(-1)
            for b, e in enumerate(es):
                ans = collections.defaultdict(lambda: True)
                for t, (tt, yt) in enumerate(zip(e[2], e[1])):
                    if tt is None: continue
                    ans[tt] &= bool(pred[b, t].item() == yt)
                for (k, turn), ok in ans.items():
                    if k in ("detail",): continue
                    if k == "reasoning" and turn > 0: continue
                    right[k] += ok; total[k] += 1
    m.train()
    return " ".join(f"{k} {100*right[k]/total[k]:.1f}" for k in sorted(total)) + f" | all {100*sum(right.values())/sum(total.values()):.1f}"

t0 = time.time(); order = []
run = 0.0
for s in range(args.steps):
    if not order: order = list(range(len(train))); random.shuffle(order)
    es = [train[order.pop()] for _ in range(min(args.batch, len(order)))]
    x, y, img, lab, cel = batchify(es)
    for g in opt.param_groups: g["lr"] = lr_at(s)
    loss = F.cross_entropy(m(x, img, lab, cel).view(-1, V), y.view(-1), ignore_index=-1)
    opt.zero_grad(); loss.backward(); opt.step()
    run = 0.98 * run + 0.02 * loss.item() if s else loss.item()
    if (s + 1) % args.eval_every == 0 or s + 1 == args.steps:
        print(f"step {s+1} loss {run:.3f} {time.time()-t0:.0f}s | {evaluate()}", flush=True)
