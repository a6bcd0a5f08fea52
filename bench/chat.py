#!/usr/bin/python3
"""Chat speed of a compiled LLaVA against a PyTorch generate loop, in one run.

usage: bench/chat.py MODEL.so [--prompt-tokens N] [--new-tokens N] [--reps N] [--threads T]

Both sides answer the same prompt (BOS, the image's positions, text) about the
same image with the same weights, greedily:
  - mmc: the library's `prefill` entry (image encode + the prompt into the KV
    cache) and then one `decode` call per new token, through the C ABI with
    ctypes, in a child process that never loads PyTorch (so each side keeps
    its own thread pools and OpenMP settings);
  - PyTorch: the reference model (tests/reference/llava_ref.py) run as
    Hugging Face's generate loop runs it: the image features, a prefill of
    the prompt that returns the keys and values of every layer, then one
    forward per token over the new position against the growing cache.
Reports the time to first token (image encode + prefill + the first token's
choice), decode tokens/s, and whether the two greedy continuations agree.
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
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "reference"))
from train_step import Desc, FN, random_params  # noqa: E402  (the C ABI's structures, the weights)


def setup(model, prompt_tokens):
    lib = ctypes.CDLL(os.path.abspath(model))
    lib.mm_model_v1.restype = ctypes.POINTER(Desc)
    desc = lib.mm_model_v1().contents
    manifest = json.loads(desc.manifest)
    rng = np.random.default_rng(0)
    params = random_params(manifest, rng)
    image_token = manifest["config"]["image_token_index"]
    entries = {desc.entries[i].name.decode(): desc.entries[i] for i in range(desc.num_entries)}
    specs = {e["name"]: e for e in manifest["entries"]}
    pixels = rng.standard_normal(specs["prefill"]["args"][0]["shape"][1:]).astype(np.float32)
    return lib, manifest, params, entries, specs, pixels, image_token, rng


def prompt_ids(manifest, specs, prompt_tokens, rng):
    import llava_ref as R
    cfg = R.normalize_config(manifest["config"])
    P = R.num_image_tokens(cfg)
    image_token = manifest["config"]["image_token_index"]
    S = specs["prefill"]["args"][1]["shape"][1]
    n = max(prompt_tokens, P + 2)
    if n >= S:
        sys.exit(f"--prompt-tokens {n} does not fit the compiled length {S}")
    return [1] + [image_token] * P + [int(t) for t in rng.integers(5, 200, n - P - 1)]


def mmc_generate(model, prompt_tokens, new_tokens, reps):
    lib, manifest, params, entries, specs, pixels, image_token, rng = setup(model, prompt_tokens)
    ids = prompt_ids(manifest, specs, prompt_tokens, rng)
    pointers = (ctypes.c_void_p * len(params))(*[params[p["name"]].ctypes.data for p in manifest["parameters"]])
    S = specs["prefill"]["args"][1]["shape"][1]
    V = specs["decode"]["results"][0]["shape"][-1]
    prefill, decode = entries["prefill"], entries["decode"]
    pre_ws = np.zeros(prefill.workspace // 4 + 16, np.float32)
    dec_ws = np.zeros(decode.workspace // 4 + 16, np.float32)
    cache_shape = specs["prefill"]["args"][3]["shape"]
    k_cache, v_cache = np.zeros(cache_shape, np.float32), np.zeros(cache_shape, np.float32)
    padded = np.zeros((1, S), np.int32)
    padded[0, :len(ids)] = ids
    length = np.array(len(ids), np.int32)
    logits = np.zeros((1, S, V), np.float32)
    step_logits = np.zeros((1, 1, V), np.float32)
    token, position, step_len = np.zeros((1, 1), np.int32), np.zeros((), np.int32), np.zeros((), np.int32)

    def ptrs(*arrays):
        return (ctypes.c_void_p * len(arrays))(*[x.ctypes.data for x in arrays])

    pre_args, pre_res = ptrs(pixels[None], padded, length, k_cache, v_cache), ptrs(logits)
    dec_args, dec_res = ptrs(token, position, step_len, k_cache, v_cache), ptrs(step_logits)
    pre_fn, dec_fn = FN(prefill.fn), FN(decode.fn)

    def run():
        t0 = time.perf_counter()
        pre_fn(pointers, pre_args, pre_res, pre_ws.ctypes.data)
        out = [int(np.argmax(logits[0, len(ids) - 1]))]
        t1 = time.perf_counter()
        for i in range(new_tokens - 1):
            token[0, 0] = out[-1]
            position[()] = len(ids) + i
            step_len[()] = len(ids) + i + 1
            dec_fn(pointers, dec_args, dec_res, dec_ws.ctypes.data)
            out.append(int(np.argmax(step_logits[0, 0])))
        t2 = time.perf_counter()
        return t1 - t0, t2 - t1, out

    run()
    results = [run() for _ in range(reps)]
    return (statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[0][2],
            len(ids))


def torch_generate(model, prompt_tokens, new_tokens, reps, threads):
    import torch
    import llava_ref as R
    torch.set_num_threads(threads)
    lib, manifest, params, entries, specs, pixels, image_token, rng = setup(model, prompt_tokens)
    ids = prompt_ids(manifest, specs, prompt_tokens, rng)
    cfg = R.normalize_config(manifest["config"])
    W = R.Weights({k: v for k, v in params.items()})
    t = cfg["text"]
    D, L, H, Hkv, Dh = t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"], \
        t["num_key_value_heads"], t["head_dim"]
    I, eps, theta, V = t["intermediate_size"], t["rms_norm_eps"], float(t["rope_theta"]), t["vocab_size"]
    act = R.act_fn(t["hidden_act"])
    rep = H // Hkv
    pre = "language_model.model."
    w = {name: torch.from_numpy(a) for name, a in params.items()}

    def layers(x, start, cache):
        """x [S,D] at positions start..; cache: per layer [k, v] of [Hkv, T, Dh] (grown)."""
        S = x.shape[0]
        cos, sin = R.rope_cos_sin(S, Dh, theta, start)
        for i in range(L):
            lp = pre + f"layers.{i}."
            h = R.rms_norm(x, w[lp + "input_layernorm.weight"], eps)
            q = R.apply_rope(R.linear(h, w[lp + "self_attn.q_proj.weight"]).reshape(S, H, Dh).transpose(0, 1), cos, sin)
            k = R.apply_rope(R.linear(h, w[lp + "self_attn.k_proj.weight"]).reshape(S, Hkv, Dh).transpose(0, 1), cos, sin)
            v = R.linear(h, w[lp + "self_attn.v_proj.weight"]).reshape(S, Hkv, Dh).transpose(0, 1)
            if len(cache) <= i:
                cache.append([k, v])
            else:
                cache[i] = [torch.cat([cache[i][0], k], 1), torch.cat([cache[i][1], v], 1)]
            kk = cache[i][0].repeat_interleave(rep, dim=0)
            vv = cache[i][1].repeat_interleave(rep, dim=0)
            a = R.softmax_attention(q, kk, vv, Dh ** -0.5, causal=True).transpose(0, 1).reshape(S, H * Dh)
            x = x + R.linear(a, w[lp + "self_attn.o_proj.weight"])
            h = R.rms_norm(x, w[lp + "post_attention_layernorm.weight"], eps)
            x = x + R.linear(act(R.linear(h, w[lp + "mlp.gate_proj.weight"])) * R.linear(h, w[lp + "mlp.up_proj.weight"]),
                             w[lp + "mlp.down_proj.weight"])
        x = R.rms_norm(x[-1:], w[pre + "norm.weight"], eps)
        return R.linear(x, w["language_model.lm_head.weight"])[0]

    ids_t = torch.tensor(ids, dtype=torch.long)
    pix = torch.from_numpy(pixels[None])

    def run():
        with torch.no_grad():
            t0 = time.perf_counter()
            feats = R.image_features(cfg, W, pix).reshape(-1, D)
            embeds = R.merge_image_features(w[pre + "embed_tokens.weight"][ids_t], ids_t, feats, image_token)
            cache = []
            out = [int(torch.argmax(layers(embeds, 0, cache)))]
            t1 = time.perf_counter()
            for i in range(new_tokens - 1):
                x = w[pre + "embed_tokens.weight"][out[-1]][None]
                out.append(int(torch.argmax(layers(x, len(ids) + i, cache))))
            t2 = time.perf_counter()
        return t1 - t0, t2 - t1, out

    run()
    results = [run() for _ in range(reps)]
    return statistics.median(r[0] for r in results), statistics.median(r[1] for r in results), results[0][2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--prompt-tokens", type=int, default=100)
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds of mmc and PyTorch")
    ap.add_argument("--mmc-only", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(a.threads))
    if a.mmc_only:
        ttft, dec, out, n = mmc_generate(a.model, a.prompt_tokens, a.new_tokens, a.reps)
        print(json.dumps({"ttft": ttft, "decode": dec, "tokens": out, "prompt": n}))
        return
    child_env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    # Rounds alternate the two sides (mmc in a child process that never loads PyTorch, then
    # PyTorch here), so that a slow spell of this shared machine hits both; each side's figure
    # is the median over rounds of its per-round median.
    mmc_rounds, torch_rounds = [], []
    for _ in range(a.rounds):
        out = subprocess.run([sys.executable, os.path.abspath(__file__), a.model, "--prompt-tokens",
                              str(a.prompt_tokens), "--new-tokens", str(a.new_tokens), "--reps", str(a.reps),
                              "--threads", str(a.threads), "--mmc-only"],
                             env=child_env, check=True, capture_output=True, text=True).stdout
        mmc_rounds.append(json.loads(out.strip().splitlines()[-1]))
        torch_rounds.append(torch_generate(a.model, a.prompt_tokens, a.new_tokens, a.reps, a.threads))
        # PyTorch's OpenMP and OpenBLAS threads spin for a while after the last call; the next
        # mmc child would share the two cores with them.
        time.sleep(1.0)
    m = {"ttft": statistics.median(r["ttft"] for r in mmc_rounds),
         "decode": statistics.median(r["decode"] for r in mmc_rounds),
         "tokens": mmc_rounds[0]["tokens"], "prompt": mmc_rounds[0]["prompt"]}
    t_ttft = statistics.median(r[0] for r in torch_rounds)
    t_dec = statistics.median(r[1] for r in torch_rounds)
    t_out = torch_rounds[0][2]
    n = a.new_tokens - 1
    print(f"chat: {m['prompt']}-token prompt (image included), {a.new_tokens} new tokens, greedy, {a.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')} for PyTorch; median of {a.reps} "
          f"in each of {a.rounds} alternating rounds, median over the rounds")
    print(f"{'':22s} {'mmc':>10s} {'PyTorch':>10s} {'mmc/PyTorch speed':>18s}")
    print(f"{'time to first token':22s} {m['ttft'] * 1e3:8.1f}ms {t_ttft * 1e3:8.1f}ms {t_ttft / m['ttft']:18.2f}")
    print(f"{'decode tokens/s':22s} {n / m['decode']:10.1f} {n / t_dec:10.1f} {t_dec / m['decode']:18.2f}")
    per_round = sorted(t[1] / r["decode"] for r, t in zip(mmc_rounds, torch_rounds))
    print(f"decode speed-up per round: {', '.join(f'{x:.2f}' for x in per_round)}")
    mmc_tps = ", ".join(f"{n / r['decode']:.0f}" for r in mmc_rounds)
    torch_tps = ", ".join(f"{n / t[1]:.0f}" for t in torch_rounds)
    print(f"decode tokens/s per round, mmc: {mmc_tps}; PyTorch: {torch_tps}")
    same = sum(1 for x, y in zip(m["tokens"], t_out) if x == y)
    print(f"greedy tokens that agree: {same} of {len(t_out)}")


if __name__ == "__main__":
    main()
