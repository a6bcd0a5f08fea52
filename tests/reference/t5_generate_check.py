#!/usr/bin/python3
"""Checks the encoder-decoder BLIP-2's generation (`mmrun --chat` over the
`encode` and `decoder_logits` entries) against greedy decoding written here
with blip2_ref's T5 math in float64.

usage: t5_generate_check.py MANIFEST.json WEIGHTS IMAGE TOKENIZER.json PROMPT_IDS MAX_NEW CHAT_OUTPUT [WIDTH]

PROMPT_IDS: the encoder's input as token ids (comma-separated, the image
token once: it stands for the queries, expanded here), "</s>" included. The
decoder starts from text_config.decoder_start_token_id and stops at </s> or
after MAX_NEW tokens. With WIDTH > 1, beam search by the runtime's rules
(as tests/reference/beam_search_check.py states them; a hypothesis also ends
when the compiled decoder is full). Exits 1 when the text differs from
CHAT_OUTPUT.
"""
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import blip2_ref as B2  # noqa: E402
import llava_train_ref as T  # noqa: E402
from beam_search_check import beam_search, byte_decoder  # noqa: E402


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
    width = int(sys.argv[8]) if len(sys.argv) > 8 else 1
    max_new, max_steps = int(max_new), raw["max_decoder_length"] - 1

    def logprobs(tokens):
        with torch.no_grad():
            logits = B2.seq2seq_logits(cfg, W, ids, torch.tensor([start] + tokens), pixels)[-1, :choices]
        return torch.log_softmax(logits, dim=-1)

    if width == 1:
        generated = []
        # The runtime's limit: as many tokens as the decoder's positions (the last read at its last one).
        while len(generated) < min(max_new, max_steps + 1):
            nxt = int(torch.argmax(logprobs(generated)))
            if nxt == eos:
                break
            generated.append(nxt)
    else:
        best = beam_search(lambda toks: logprobs(toks).numpy(), choices, width,
                           lambda t, length: t == eos or length >= max_new, max_steps)
        generated = best["tokens"][:-1] if best["tokens"][-1] == eos else best["tokens"]
    out = bytearray()
    for i in generated:
        if i not in special:
            out += bytes(dec[c] for c in id_to_token[i])
    # Compared as bytes: random weights give pieces of UTF-8 characters.
    text = out.decode("utf-8", errors="replace")
    if bytes(out) != os.fsencode(got):
        print(f"FAIL: chat gave {got!r}, the reference {text!r} (ids {generated})",
              file=sys.stderr)
        return 1
    how = "greedy decoding" if width == 1 else f"beam search over {width} hypotheses"
    print(f"chat decodes as the reference's {how} does: {text!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
