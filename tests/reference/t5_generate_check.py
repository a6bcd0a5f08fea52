#!/usr/bin/python3
"""Checks the encoder-decoder BLIP-2's generation (`mmrun --chat` over the
`encode` and `decoder_logits` entries) against greedy decoding written here
with blip2_ref's T5 math in float64.

usage: t5_generate_check.py MANIFEST.json WEIGHTS IMAGE TOKENIZER.json PROMPT_IDS MAX_NEW CHAT_OUTPUT

PROMPT_IDS: the encoder's input as token ids (comma-separated, the image
token once: it stands for the queries, expanded here), "</s>" included. The
decoder starts from text_config.decoder_start_token_id and stops at </s> or
after MAX_NEW tokens. Exits 1 when the text differs from CHAT_OUTPUT.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blip2_ref as B2  # noqa: E402
import llava_train_ref as T  # noqa: E402
from beam_search_check import byte_decoder  # noqa: E402


def main():
    manifest_path, weights, image, tok_path, prompt, max_new, got = sys.argv[1:8]
    manifest = T.load_manifest(manifest_path)
    cfg, raw = manifest["cfg"], manifest["raw"]["config"]
    arrays = T.load_initial_weights(weights, manifest["params"])
    W = T.TensorWeights({n: torch.from_numpy(a).to(torch.float64) for n, a in arrays.items()})
    pixels = T.PixelCache(cfg, torch.float64)(image)[None]
    tok = json.load(open(tok_path))
    id_to_token = {i: t for t, i in tok["model"]["vocab"].items()}
    special = {a["id"] for a in tok.get("added_tokens", [])}
    dec = byte_decoder()
    choices = min(cfg["text"]["vocab_size"], len(id_to_token))
    eos, start = raw["text_config"]["eos_token_id"], raw["text_config"]["decoder_start_token_id"]
    ids = []
    for x in prompt.split(","):
        ids += [int(x)] * (cfg["num_query_tokens"] if int(x) == cfg["image_token_index"] else 1)
    ids = torch.tensor(ids, dtype=torch.long)
    generated = []
    with torch.no_grad():
        while len(generated) < int(max_new):
            logits = B2.seq2seq_logits(cfg, W, ids, torch.tensor([start] + generated), pixels)
            nxt = int(torch.argmax(logits[-1, :choices]))
            if nxt == eos:
                break
            generated.append(nxt)
    out = bytearray()
    for i in generated:
        if i not in special:
            out += bytes(dec[c] for c in id_to_token[i])
    # Compared as bytes: random weights give pieces of UTF-8 characters.
    text = out.decode("utf-8", errors="replace")
    if bytes(out) != os.fsencode(got):
        print(f"FAIL: chat gave {got!r}, greedy decoding over the reference {text!r} (ids {generated})",
              file=sys.stderr)
        return 1
    print(f"chat decodes as the reference's greedy decoding does: {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
