#!/usr/bin/python3
"""Checks `mmrun --chat --beams N` against a beam search written here over full
forward passes (`mmrun --forward --dump-logits`, no KV cache).

usage: beam_search_check.py MMRUN MODEL.so WEIGHTS IMAGE TOKENIZER.json PROMPT_IDS WIDTH MAX_NEW CHAT_OUTPUT

PROMPT_IDS: the chat's prompt as token ids (comma-separated, the image token
once: --forward expands it as chat does). The rules are the runtime's: the
first WIDTH tokens from the prompt's last logits; each open hypothesis
extended by every token, the WIDTH best by summed log-probability kept
(finished ones compete as they are); a hypothesis ends at </s>, at a token
whose text holds a newline (caption templates), or at MAX_NEW tokens; the
finished one with the best log-probability per token wins. Exits 1 when the
text differs from CHAT_OUTPUT.
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np


def byte_decoder():
    """The inverse of the byte-level pre-tokeniser's byte -> printable character map."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def beam_search(logprobs, choices, width, ends, max_steps):
    """The runtime's beam search: LOGPROBS(tokens) gives the next token's log-
    probabilities after the reply TOKENS; the first WIDTH tokens from the
    prompt's; each open hypothesis extended by every token and the WIDTH best
    by summed log-probability kept (finished ones compete as they are); a
    hypothesis ends where ENDS(token, length) says, or after MAX_STEPS
    extensions; the finished one with the best log-probability per token wins.
    Returns {"tokens", "lp"}."""
    lp = logprobs([])
    first = np.argsort(-np.asarray(lp[:choices], dtype=np.float64), kind="stable")[:width]
    beams = [{"tokens": [int(t)], "lp": float(lp[t]), "done": ends(int(t), 1)} for t in first]
    for k in range(max_steps):
        if all(b["done"] for b in beams):
            break
        cands = []
        for i, b in enumerate(beams):
            if b["done"]:
                cands.append((b["lp"], i, -1))
                continue
            lp = logprobs(b["tokens"])
            cands += [(b["lp"] + float(lp[j]), i, j) for j in range(choices)]
        cands.sort(key=lambda c: -c[0])
        nxt = []
        for score, i, j in cands[:width]:
            b = beams[i]
            if j < 0:
                nxt.append(dict(b, done=True))
            else:
                toks = b["tokens"] + [j]
                nxt.append({"tokens": toks, "lp": score, "done": ends(j, len(toks)) or k + 1 >= max_steps})
        beams = nxt
    best = beams[0]
    for b in beams:
        if b["lp"] / len(b["tokens"]) > best["lp"] / len(best["tokens"]):
            best = b
    return best


def main():
    mmrun, model, weights, image, tok_path, prompt, width, max_new, got = sys.argv[1:10]
    width, max_new = int(width), int(max_new)
    tok = json.load(open(tok_path))
    id_to_token = {i: t for t, i in tok["model"]["vocab"].items()}
    special = {a["id"] for a in tok.get("added_tokens", [])}
    dec = byte_decoder()

    def text(ids):
        out = bytearray()
        for i in ids:
            if i in special:
                continue
            out += bytes(dec[c] for c in id_to_token[i])
        return out.decode("utf-8", errors="replace")

    eos = tok["model"]["vocab"]["</s>"]
    info = json.loads(subprocess.run([mmrun, model, "--info"], check=True, capture_output=True, text=True).stdout)
    vocab = info["config"]["text_config"]["vocab_size"]  # the logits' width
    choices = min(vocab, len(id_to_token))               # rows past the tokenizer's are padding
    prompt_ids = [int(x) for x in prompt.split(",")]
    tmp = tempfile.mkdtemp()

    def last_logprobs(ids):
        path = os.path.join(tmp, "logits.f32")
        subprocess.run([mmrun, model, "--forward", "--weights", weights, "--image", image, "--tokens",
                        ",".join(map(str, ids)), "--dump-logits", path, "--top", "1"],
                       check=True, stdout=subprocess.DEVNULL)
        logits = np.fromfile(path, dtype=np.float32).reshape(-1, vocab)[-1].astype(np.float64)
        logits = logits[:choices]
        m = logits.max()
        return logits - m - np.log(np.exp(logits - m).sum())

    def ends(t, length):
        return t == eos or "\n" in text([t]) or length >= max_new

    best = beam_search(lambda toks: last_logprobs(prompt_ids + toks), choices, width, ends, max_new)
    toks = best["tokens"][:-1] if best["tokens"][-1] == eos else best["tokens"]
    want = text(toks).split("\n")[0]
    if want != got:
        print(f"FAIL: chat --beams {width} gave {got!r}; beam search over full forwards {want!r} "
              f"(ids {toks}, log-prob {best['lp']:.6f})", file=sys.stderr)
        return 1
    print(f"chat --beams {width} = beam search over full forwards: {got!r} (log-prob {best['lp']:.4f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
