#!/usr/bin/python3
"""Self-test of llava_ref.py / make_random_llava.py.

  /usr/bin/python3 tests/reference/selftest_llava_ref.py [--keep DIR]

Checks:
  1. safetensors reader: F32/F16/BF16/I32/I64 round trips, malformed files.
  2. llava_forward() against an independent float64 numpy formulation written
     with explicit loops (per-patch conv dot products, per-head/per-query
     attention, per-pair RoPE rotation) on tiny configs, including GQA,
     vision_feature_layer variants, strategy "full" and tied embeddings.
  3. Patch embedding against torch conv2d; causal property of the logits.
  4. The CLI end to end on the default small config: --image and --pixels give
     identical logits, shapes, finiteness, --compare pass/fail, NaN and size
     mismatch, token/feature count mismatch, BF16 checkpoints.
Exits non-zero on the first failure.
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import llava_ref as R  # noqa: E402
import make_random_llava as M  # noqa: E402

PY = sys.executable or "/usr/bin/python3"
FAILS = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        FAILS.append(what)


# --------------------------------------------------------------------------
# independent float64 loop formulation
# --------------------------------------------------------------------------

def np_act(name, x):
    if name == "gelu":
        erf = np.vectorize(math.erf)
        return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))
    if name == "quick_gelu":
        return x / (1.0 + np.exp(-1.702 * x))
    if name == "silu":
        return x / (1.0 + np.exp(-x))
    raise NotImplementedError(name)


def np_ln(x, g, b, eps):
    y = np.empty_like(x)
    for r in range(x.shape[0]):
        row = x[r]
        mu = sum(row) / len(row)
        var = sum((v - mu) ** 2 for v in row) / len(row)
        y[r] = (row - mu) / math.sqrt(var + eps) * g + b
    return y


def np_rms(x, g, eps):
    y = np.empty_like(x)
    for r in range(x.shape[0]):
        ms = sum(v * v for v in x[r]) / x.shape[1]
        y[r] = x[r] / math.sqrt(ms + eps) * g
    return y


def np_attn(q, k, v, H, Hkv, Dh, causal, scale):
    """q [S,H*Dh], k/v [S,Hkv*Dh] -> [S,H*Dh] with explicit loops."""
    S = q.shape[0]
    out = np.zeros((S, H * Dh))
    rep = H // Hkv
    for h in range(H):
        kh = h // rep
        for i in range(S):
            keys = range(i + 1) if causal else range(S)
            sc = []
            for j in keys:
                sc.append(scale * sum(q[i, h * Dh + d] * k[j, kh * Dh + d] for d in range(Dh)))
            m = max(sc)
            e = [math.exp(s - m) for s in sc]
            z = sum(e)
            for jj, j in enumerate(keys):
                out[i, h * Dh:(h + 1) * Dh] += e[jj] / z * v[j, kh * Dh:(kh + 1) * Dh]
    return out


def np_rope(x, H, Dh, theta):
    """x [S,H*Dh]; pair (d, d+Dh/2) rotated by angle pos * theta^(-2d/Dh)."""
    y = x.copy()
    half = Dh // 2
    for s in range(x.shape[0]):
        for h in range(H):
            for d in range(half):
                ang = s * theta ** (-2.0 * d / Dh)
                a, b = x[s, h * Dh + d], x[s, h * Dh + d + half]
                y[s, h * Dh + d] = a * math.cos(ang) - b * math.sin(ang)
                y[s, h * Dh + d + half] = b * math.cos(ang) + a * math.sin(ang)
    return y


def np_llava(cfg, w, pixels, tokens):
    """Float64, one image [3,H,W] (or None)."""
    w = {k: v.astype(np.float64) for k, v in w.items()}
    v, t = cfg["vision"], cfg["text"]
    D, P, Hh = v["hidden_size"], v["patch_size"], v["num_attention_heads"]
    C = v["num_channels"]
    img_tok = cfg["image_token_index"]
    feats = None
    if pixels is not None:
        pre = "vision_tower.vision_model."
        conv = w[pre + "embeddings.patch_embedding.weight"]
        g = v["image_size"] // P
        rows = [w[pre + "embeddings.class_embedding"]]
        for py in range(g):
            for px in range(g):
                e = np.zeros(D)
                for o in range(D):
                    acc = 0.0
                    for c in range(C):
                        for i in range(P):
                            for j in range(P):
                                acc += pixels[c, py * P + i, px * P + j] * conv[o, c, i, j]
                    e[o] = acc
                rows.append(e)
        x = np.stack(rows) + w[pre + "embeddings.position_embedding.weight"]
        eps = v["layer_norm_eps"]
        x = np_ln(x, w[pre + "pre_layrnorm.weight"], w[pre + "pre_layrnorm.bias"], eps)
        hs = [x]
        Dh = D // Hh
        for li in range(v["num_hidden_layers"]):
            lp = pre + f"encoder.layers.{li}."
            L = lambda n, a: a @ w[lp + n + ".weight"].T + w[lp + n + ".bias"]  # noqa: E731
            h = np_ln(x, w[lp + "layer_norm1.weight"], w[lp + "layer_norm1.bias"], eps)
            a = np_attn(L("self_attn.q_proj", h), L("self_attn.k_proj", h), L("self_attn.v_proj", h),
                        Hh, Hh, Dh, False, 1.0 / math.sqrt(Dh))
            x = x + L("self_attn.out_proj", a)
            h = np_ln(x, w[lp + "layer_norm2.weight"], w[lp + "layer_norm2.bias"], eps)
            x = x + L("mlp.fc2", np_act(v["hidden_act"], L("mlp.fc1", h)))
            hs.append(x)
        layers = cfg["vision_feature_layer"]
        layers = layers if isinstance(layers, list) else [layers]
        nl = len(hs)
        sel = [hs[li if li >= 0 else nl + li] for li in layers]
        if cfg["vision_feature_select_strategy"] == "default":
            sel = [s[1:] for s in sel]
        f = np.concatenate(sel, axis=1)
        f = f @ w["multi_modal_projector.linear_1.weight"].T + w["multi_modal_projector.linear_1.bias"]
        f = np_act(cfg["projector_hidden_act"], f)
        feats = f @ w["multi_modal_projector.linear_2.weight"].T + w["multi_modal_projector.linear_2.bias"]

    tp = "language_model.model."
    x = np.stack([w[tp + "embed_tokens.weight"][tk] for tk in tokens])
    j = 0
    for s, tk in enumerate(tokens):
        if tk == img_tok:
            x[s] = feats[j]
            j += 1
    assert feats is None or j == feats.shape[0]
    H, Hkv, Dh = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    eps = t["rms_norm_eps"]
    for li in range(t["num_hidden_layers"]):
        lp = tp + f"layers.{li}."
        L = lambda n, a: a @ w[lp + n + ".weight"].T  # noqa: E731
        h = np_rms(x, w[lp + "input_layernorm.weight"], eps)
        q = np_rope(L("self_attn.q_proj", h), H, Dh, t["rope_theta"])
        k = np_rope(L("self_attn.k_proj", h), Hkv, Dh, t["rope_theta"])
        a = np_attn(q, k, L("self_attn.v_proj", h), H, Hkv, Dh, True, 1.0 / math.sqrt(Dh))
        x = x + L("self_attn.o_proj", a)
        h = np_rms(x, w[lp + "post_attention_layernorm.weight"], eps)
        x = x + L("mlp.down_proj", np_act(t["hidden_act"], L("mlp.gate_proj", h)) * L("mlp.up_proj", h))
    x = np_rms(x, w[tp + "norm.weight"], eps)
    head = w.get("language_model.lm_head.weight", w[tp + "embed_tokens.weight"])
    return x @ head.T


def tiny_config(**over):
    c = {
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
    for k, v in over.items():
        if k in ("vision_config", "text_config"):
            c[k].update(v)
        else:
            c[k] = v
    return R.normalize_config(c)


def test_against_loops():
    cases = [
        ("default -2, GQA 4/2", tiny_config()),
        ("layer -1, MHA", tiny_config(vision_feature_layer=-1, text_config={"num_key_value_heads": 4})),
        ("layer 0 (pre_layrnorm output)", tiny_config(vision_feature_layer=0)),
        ("layers [-3,-1] concat", tiny_config(vision_feature_layer=[-3, -1])),
        ("strategy full, MQA", tiny_config(vision_feature_select_strategy="full",
                                           text_config={"num_key_value_heads": 1})),
        ("tied embeddings, head_dim 8 != hidden/heads", tiny_config(
            text_config={"tie_word_embeddings": True, "head_dim": 8, "rope_theta": 500.0})),
    ]
    for i, (what, cfg) in enumerate(cases):
        w = M.random_weights(cfg, seed=10 + i, mat_std=0.3)
        rng = np.random.default_rng(100 + i)
        pix = rng.normal(0, 1, size=(3, 8, 8)).astype(np.float32)
        n = R.num_image_tokens(cfg)
        toks = [1, 7] + [3] * n + [22, 0, 5]
        got = R.llava_forward(cfg, w, [pix], toks).numpy().astype(np.float64)
        want = np_llava(cfg, w, pix.astype(np.float64), toks)
        err = np.abs(got - want).max() / np.abs(want).max()
        check(got.shape == want.shape and err < 2e-5,
              f"loops vs reference [{what}]: shape {got.shape}, max err/max|ref| = {err:.2e}")
    # text-only
    cfg = tiny_config()
    w = M.random_weights(cfg, seed=3, mat_std=0.3)
    toks = [1, 2, 4, 5, 6, 7, 8]
    got = R.llava_forward(cfg, w, [], toks).numpy().astype(np.float64)
    want = np_llava(cfg, w, None, toks)
    err = np.abs(got - want).max() / np.abs(want).max()
    check(err < 2e-5, f"loops vs reference [text only]: max err/max|ref| = {err:.2e}")
    # causal: changing the last token leaves earlier rows unchanged
    got2 = R.llava_forward(cfg, w, [], toks[:-1] + [9]).numpy()
    check(np.array_equal(got[:-1].astype(np.float32), got2[:-1]) and not np.array_equal(got[-1], got2[-1]),
          "causal: earlier logits independent of a later token")


def test_patch_embed_conv():
    rng = np.random.default_rng(5)
    x = torch.from_numpy(rng.normal(size=(2, 3, 16, 16)).astype(np.float32))
    wt = torch.from_numpy(rng.normal(size=(6, 3, 4, 4)).astype(np.float32))
    ref = torch.nn.functional.conv2d(x, wt, stride=4).flatten(2).transpose(1, 2)
    B, C, P, g = 2, 3, 4, 4
    p = x.reshape(B, C, g, P, g, P).permute(0, 2, 4, 1, 3, 5).reshape(B, g * g, C * P * P)
    ours = p @ wt.reshape(6, -1).t()
    check(torch.allclose(ours, ref, atol=1e-5), "patch embedding unfold+matmul == conv2d(stride P)")


def test_safetensors(tmp):
    rng = np.random.default_rng(1)
    t = {"a": rng.normal(size=(3, 5)).astype(np.float32), "b": rng.normal(size=(7,)).astype(np.float32),
         "i": np.arange(6, dtype=np.int32).reshape(2, 3) - 3, "l": np.array([1 << 40, -5], dtype=np.int64),
         "s": np.array(2.5, dtype=np.float32)}
    for dt in ("F32", "F16", "BF16"):
        p = os.path.join(tmp, f"t_{dt}.safetensors")
        M.write_safetensors(p, t, dt)
        r = R.read_safetensors(p)
        hdr, meta, start, _ = R.read_safetensors_header(p)
        ok = set(r) == set(t) and start % 8 == 0 and meta == {"format": "pt"}
        for k in t:
            if t[k].dtype.kind == "i":
                ok &= r[k].dtype == t[k].dtype and np.array_equal(r[k], t[k])
            else:
                ok &= r[k].dtype == np.float32 and r[k].shape == t[k].shape
                if dt == "F32":
                    ok &= np.array_equal(r[k], t[k])
                elif dt == "F16":
                    ok &= np.array_equal(r[k], t[k].astype(np.float16).astype(np.float32))
                else:
                    bits = M.f32_to_bf16_bits(t[k]).astype(np.uint32) << 16
                    ok &= np.array_equal(r[k], bits.view(np.float32).reshape(t[k].shape))
                    ok &= np.abs(r[k] - t[k]).max() <= np.abs(t[k]).max() * 2 ** -8
        check(bool(ok), f"safetensors round trip {dt} (+I32/I64, scalar, 8-aligned data)")
    # known bf16 bit patterns: 1.0 = 0x3f80, -2.0 = 0xc000, 1+2^-8 ties to even -> 0x3f80
    bits = M.f32_to_bf16_bits(np.array([1.0, -2.0, 1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8], np.float32))
    check(list(bits) == [0x3F80, 0xC000, 0x3F80, 0x3F82], f"bf16 rounding bits {[hex(b) for b in bits]}")
    # malformed: offsets past the end
    p = os.path.join(tmp, "bad.safetensors")
    hj = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    with open(p, "wb") as f:
        f.write(len(hj).to_bytes(8, "little") + hj + b"\0" * 8)
    try:
        R.read_safetensors(p)
        check(False, "malformed safetensors rejected")
    except R.SafetensorsError:
        check(True, "malformed safetensors rejected")


def test_preprocess(tmp):
    from PIL import Image
    # A uniform image maps to (c/255 - mean) / std everywhere.
    p = os.path.join(tmp, "flat.png")
    Image.new("RGB", (50, 30), (200, 100, 0)).save(p)
    x = R.preprocess_image(p, 16)
    want = (np.array([200, 100, 0]) / 255.0 - np.array(R.CLIP_MEAN)) / np.array(R.CLIP_STD)
    check(x.shape == (3, 16, 16) and np.abs(x - want[:, None, None]).max() < 1e-5,
          "preprocess: uniform image -> normalised constant, CHW 3x16x16")
    # Crop window: a 40x20 image resized to 32x16 by BICUBIC, crop columns 8..24.
    rng = np.random.default_rng(2)
    arr = rng.integers(0, 256, size=(20, 40, 3), dtype=np.uint8)
    p = os.path.join(tmp, "wide.png")
    Image.fromarray(arr).save(p)
    x = R.preprocess_image(p, 16)
    rs = np.asarray(Image.fromarray(arr).resize((32, 16), Image.BICUBIC)).astype(np.float64)
    want = ((rs[:, 8:24] / 255.0 - np.array(R.CLIP_MEAN)) / np.array(R.CLIP_STD)).transpose(2, 0, 1)
    check(np.abs(x - want).max() < 1e-5, "preprocess: shortest-edge resize + centre crop window")
    check(R.resize_shortest_edge_size(97, 61, 32) == (50, 32) and R.resize_shortest_edge_size(40, 90, 17) == (17, 38),
          "preprocess: HF int() output size rule")


def run(args):
    r = subprocess.run([PY, os.path.join(HERE, "llava_ref.py")] + args, capture_output=True, text=True)
    return r.returncode, r.stdout + r.stderr


def test_cli(tmp):
    cfgp, wp, imgp = (os.path.join(tmp, n) for n in ("cfg.json", "w.safetensors", "img.png"))
    r = subprocess.run([PY, os.path.join(HERE, "make_random_llava.py"), "--config", cfgp, "--emit-config",
                        "--weights", wp, "--image", imgp, "--print-tokens", "9"],
                       capture_output=True, text=True)
    check(r.returncode == 0, "make_random_llava.py runs")
    toks = r.stdout.strip()
    cfg = R.load_config(cfgp)
    S, V = len(toks.split(",")), cfg["text"]["vocab_size"]
    names = set(R.read_safetensors_header(wp)[0])
    check(names == {n for n, _, _ in M.weight_shapes(cfg)} and
          "vision_tower.vision_model.post_layernorm.weight" in names and len(names) == 4 * 16 + 7 + 4 + 1 + 4 * 9 + 2,
          f"checkpoint has exactly the HF names ({len(names)} tensors)")
    out = os.path.join(tmp, "a.f32")
    rc, txt = run(["--config", cfgp, "--weights", wp, "--image", imgp, "--tokens", toks, "--dump-logits", out])
    a = np.fromfile(out, dtype="<f4")
    check(rc == 0 and a.size == S * V and np.all(np.isfinite(a)) and a.std() > 0,
          f"CLI --image: rc {rc}, logits {a.size} == {S}x{V}, finite")
    # --pixels with the same preprocessed pixels gives bit-identical logits
    pixp = os.path.join(tmp, "pix.f32")
    R.preprocess_image(imgp, cfg["vision"]["image_size"]).astype("<f4").tofile(pixp)
    out2 = os.path.join(tmp, "b.f32")
    rc, txt = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks,
                   "--dump-logits", out2, "--compare", out, "--rtol", "0"])
    check(rc == 0 and np.array_equal(a, np.fromfile(out2, dtype="<f4")), "CLI --pixels == --image, --compare rtol 0 passes")
    # perturbed file fails, NaN fails, size mismatch fails
    bad = a.copy()
    bad[17] += 0.05 * np.abs(a).max()
    badp = os.path.join(tmp, "bad.f32")
    bad.tofile(badp)
    rc, txt = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks, "--compare", badp])
    check(rc == 1 and "FAIL" in txt and "max_rel_diff" in txt, "CLI --compare perturbed -> exit 1")
    rc2, _ = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks, "--compare", badp, "--rtol", "6"])
    check(rc2 == 0, "CLI --compare perturbed within a loose --rtol -> exit 0")
    bad = a.copy()
    bad[3] = np.nan
    bad.tofile(badp)
    rc, _ = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks, "--compare", badp])
    check(rc == 1, "CLI --compare NaN -> exit 1")
    a[:-1].tofile(badp)
    rc, _ = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks, "--compare", badp])
    check(rc == 1, "CLI --compare size mismatch -> exit 1")
    rc, txt = run(["--config", cfgp, "--weights", wp, "--pixels", pixp, "--tokens", toks + ",4"])
    check(rc != 0 and "do not match" in txt, "CLI image-token count mismatch -> error")
    # config given at top level (no "config" key) works the same
    with open(cfgp) as f:
        top = json.load(f)["config"]
    cfg2 = os.path.join(tmp, "cfg_top.json")
    with open(cfg2, "w") as f:
        json.dump(top, f)
    rc, _ = run(["--config", cfg2, "--weights", wp, "--pixels", pixp, "--tokens", toks, "--compare", out, "--rtol", "0"])
    check(rc == 0, "CLI accepts the HF config at top level")
    # BF16 checkpoint == F32 checkpoint holding the bf16-rounded weights
    wb = os.path.join(tmp, "wb.safetensors")
    subprocess.run([PY, os.path.join(HERE, "make_random_llava.py"), "--config", cfgp, "--weights", wb,
                    "--dtype", "BF16"], check=True)
    wr = {k: v for k, v in R.read_safetensors(wb).items()}
    wr32 = os.path.join(tmp, "wr32.safetensors")
    M.write_safetensors(wr32, wr, "F32")
    ob = os.path.join(tmp, "bf.f32")
    rc, _ = run(["--config", cfgp, "--weights", wb, "--pixels", pixp, "--tokens", toks, "--dump-logits", ob])
    rc2, _ = run(["--config", cfgp, "--weights", wr32, "--pixels", pixp, "--tokens", toks, "--compare", ob, "--rtol", "0"])
    check(rc == 0 and rc2 == 0, "CLI BF16 checkpoint == its exact F32 widening")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--keep", help="directory to keep the generated files in")
    args = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("MMC_REF_THREADS", "1")))
    tmp = args.keep or tempfile.mkdtemp(prefix="llava_ref_selftest_")
    os.makedirs(tmp, exist_ok=True)
    test_safetensors(tmp)
    test_patch_embed_conv()
    test_preprocess(tmp)
    test_against_loops()
    test_cli(tmp)
    print(f"{len(FAILS)} failure(s)" if FAILS else "all llava_ref self-tests passed")
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
