"""Vision-tower shape-learning experiments in plain PyTorch (docs/BENCHMARKS.md, "Where it stops").

    /usr/bin/python3 scripts/tower_experiment.py --train-dir DATA --eval-dir HELDOUT [--steps 1500]
        [--kernel 8|16|24] [--factor] [--cnn] [--stem] [--stem6] [--layers 3] [--width 128] ...

Trains llava-tiny's vision tower shape (a 4-head pre-norm ViT, quick-GELU MLPs,
[CLS] + learned positions) from scratch on `mmdata scenes` patch labels
(patches.json of --train-dir), AdamW with warm-up and cosine decay, and prints
the held-out per-patch colour and shape accuracy (object patches of
--eval-dir, e.g. `mmdata scenes --seed 7`) every 500 steps. Variants: an
overlapping patch embedding (--kernel), factorised colour/shape/size heads
(--factor), a per-patch MLP without attention (--layers 0 --mlphead), and
convolutional front ends: --cnn (six 3x3 convs, the last one stride 2 giving
the 8x8 tokens), --stem (five convs, then 2x2 patches), --stem6 (six convs,
then a 1x1 projection: what models/llava-tiny.mlir declares). The preprocessed
images are cached as px.pt in each data directory.
"""
import json, os, sys, time, argparse, math
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "reference"))
import llava_ref as ref
ap = argparse.ArgumentParser()
ap.add_argument("--train-dir", required=True)
ap.add_argument("--eval-dir", required=True)
ap.add_argument("--steps", type=int, default=1500)
ap.add_argument("--lr", type=float, default=1e-3)
ap.add_argument("--kernel", type=int, default=8)
ap.add_argument("--width", type=int, default=128)
ap.add_argument("--layers", type=int, default=3)
ap.add_argument("--factor", action="store_true")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--cnn", action="store_true")
ap.add_argument("--mlphead", action="store_true")
ap.add_argument("--stem", action="store_true")
ap.add_argument("--stem6", action="store_true")
a = ap.parse_args()
torch.set_num_threads(a.threads); torch.manual_seed(0)
def load(d, limit=None):
    recs = json.load(open(d + "/patches.json"))[:limit]
    cache = d + "/px.pt"
    if os.path.exists(cache) and limit is None:
        px = torch.load(cache)
    else:
        px = torch.stack([torch.from_numpy(ref.preprocess_image(os.path.join(d, r["image"]), 64)) for r in recs])
        if limit is None: torch.save(px, cache)
    return px, torch.tensor([r["patch_labels"] for r in recs])
trX, trY = load(a.train_dir); teX, teY = load(a.eval_dir)
D, P, K = a.width, 8, a.kernel
class Block(nn.Module):
    def __init__(s):
        super().__init__(); s.n1 = nn.LayerNorm(D); s.n2 = nn.LayerNorm(D)
        s.qkv = nn.Linear(D, 3 * D); s.o = nn.Linear(D, D); s.f1 = nn.Linear(D, 4 * D); s.f2 = nn.Linear(4 * D, D)
    def forward(s, x):
        B, T, _ = x.shape
        q, k, v = s.qkv(s.n1(x)).reshape(B, T, 3, 4, D // 4).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D // 4), -1) @ v
        x = x + s.o(att.transpose(1, 2).reshape(B, T, D))
        h = s.f1(s.n2(x)); h = h * torch.sigmoid(1.702 * h)
        return x + s.f2(h)
class Vit(nn.Module):
    def __init__(s):
        super().__init__()
        if a.stem6:
            s.conv = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(), nn.Conv2d(64, 64, 3, 1, 1), nn.GELU(),
                                   nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(), nn.Conv2d(128, 128, 3, 1, 1), nn.GELU(), nn.Conv2d(128, 128, 3, 2, 1), nn.GELU(),
                                   nn.Conv2d(128, D, 1, 1, 0, bias=False))
        elif a.stem:
            s.conv = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(), nn.Conv2d(64, 64, 3, 1, 1), nn.GELU(),
                                   nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(), nn.Conv2d(128, 128, 3, 1, 1), nn.GELU(), nn.Conv2d(128, D, 2, 2, 0, bias=False))
        elif a.cnn:
            s.conv = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1), nn.GELU(), nn.Conv2d(32, 64, 3, 2, 1), nn.GELU(), nn.Conv2d(64, 64, 3, 1, 1), nn.GELU(),
                                   nn.Conv2d(64, 128, 3, 2, 1), nn.GELU(), nn.Conv2d(128, 128, 3, 1, 1), nn.GELU(), nn.Conv2d(128, D, 3, 2, 1))
        else:
            s.conv = nn.Conv2d(3, D, K, stride=P, padding=(K - P) // 2, bias=False)
        s.cls = nn.Parameter(torch.randn(D) * .02); s.pos = nn.Parameter(torch.randn(65, D) * .02)
        s.pre = nn.LayerNorm(D); s.blocks = nn.ModuleList([Block() for _ in range(a.layers)])
        s.head = nn.Linear(D, 19 if a.factor else 96)
        if a.mlphead: s.head = nn.Sequential(nn.Linear(D, 512), nn.GELU(), nn.Linear(512, 512), nn.GELU(), nn.Linear(512, 96))
        for m in s.modules():
            if isinstance(m, nn.Linear): nn.init.normal_(m.weight, std=.02); nn.init.zeros_(m.bias)
        if not (a.cnn or a.stem or a.stem6): nn.init.normal_(s.conv.weight, std=.02)
    def forward(s, x):
        B = x.shape[0]
        t = s.conv(x).flatten(2).transpose(1, 2)
        t = torch.cat([s.cls.expand(B, 1, D), t], 1) + s.pos
        t = s.pre(t)
        for b in s.blocks: t = b(t)
        return s.head(t[:, 1:])
def loss_fn(logits, y):
    if not a.factor: return F.cross_entropy(logits.reshape(-1, 96), y.reshape(-1))
    y = y.reshape(-1); lg = logits.reshape(-1, 19); obj = y > 0; c = (y - 1).clamp(min=0)
    l = F.binary_cross_entropy_with_logits(lg[:, 0], obj.float())
    if obj.any():
        l = l + F.cross_entropy(lg[obj, 1:9], c[obj] // 2 // 5) + F.cross_entropy(lg[obj, 9:14], c[obj] // 2 % 5) + F.cross_entropy(lg[obj, 14:16], c[obj] % 2)
    return l
def evaluate(m):
    with torch.no_grad():
        lg = torch.cat([m(teX[i:i + 100]) for i in range(0, len(teX), 100)])
    y = teY.reshape(-1); lg = lg.reshape(y.numel(), -1); obj = y > 0; t = y[obj] - 1
    if a.factor:
        col = lg[obj, 1:9].argmax(-1); sh = lg[obj, 9:14].argmax(-1)
        return float((col == t // 2 // 5).float().mean()), float((sh == t // 2 % 5).float().mean())
    g = lg[obj].argmax(-1) - 1
    return float(((g >= 0) & (g // 2 // 5 == t // 2 // 5)).float().mean()), float(((g >= 0) & (g // 2 % 5 == t // 2 % 5)).float().mean())
m = Vit(); opt = torch.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=0)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1, (s + 1) / (0.03 * a.steps)) * 0.5 * (1 + math.cos(math.pi * s / a.steps)))
g = torch.Generator().manual_seed(1); t0 = time.time()
for s in range(a.steps):
    idx = torch.randint(len(trX), (a.batch,), generator=g)
    l = loss_fn(m(trX[idx]), trY[idx]); opt.zero_grad(); l.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(), 1.0); opt.step(); sched.step()
    if (s + 1) % 500 == 0 or s + 1 == a.steps:
        c, sh = evaluate(m); print(f"step {s+1} loss {l.item():.3f} colour {c:.3f} shape {sh:.3f} t {time.time()-t0:.0f}s", flush=True)
print(vars(a))
