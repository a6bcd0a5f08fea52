#!/usr/bin/env python3
"""Writes byte-level.tokenizer.json: a minimal Hugging Face tokenizer.json.

The tokenizer is a byte-level BPE with no merges, so every UTF-8 byte of the
input becomes one token. Vocabulary:

    0 <unk>   1 <s>   2 </s>   3 <pad>   4 <image>      (special added tokens)
    5 .. 260  the 256 byte-level characters for bytes 0 .. 255

The post-processor puts <s> in front of a single sequence. Standard library
only; run it from anywhere:

    python3 models/tokenizers/make_byte_tokenizer.py [OUTPUT]
"""

import json
import os
import sys

SPECIALS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]


def bytes_to_unicode():
    """GPT-2's reversible byte -> character table.

    Bytes that are printable Latin-1 characters ('!'..'~', '\\xa1'..'\\xac',
    '\\xae'..'\\xff') map to themselves; the remaining 68 bytes map, in byte
    order, to U+0100, U+0101, ...
    """
    table = {}
    shifted = 0
    for b in range(256):
        printable = (ord("!") <= b <= ord("~") or 0xA1 <= b <= 0xAC
                     or 0xAE <= b <= 0xFF)
        if printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + shifted)
            shifted += 1
    return table


def build():
    vocab = {}
    for i, tok in enumerate(SPECIALS):
        vocab[tok] = i
    byte_chars = bytes_to_unicode()
    for b in range(256):
        vocab[byte_chars[b]] = len(SPECIALS) + b
    assert len(vocab) == len(SPECIALS) + 256, "byte characters must be unique"

    added = [{
        "id": i,
        "content": tok,
        "single_word": False,
        "lstrip": False,
        "rstrip": False,
        "normalized": False,
        "special": True,
    } for i, tok in enumerate(SPECIALS)]

    bos = {"SpecialToken": {"id": "<s>", "type_id": 0}}
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [bos, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [
                bos,
                {"Sequence": {"id": "A", "type_id": 0}},
                {"Sequence": {"id": "B", "type_id": 1}},
            ],
            "special_tokens": {
                "<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]},
            },
        },
        "decoder": {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": True,
            "use_regex": True,
        },
        "model": {
            "type": "BPE",
            "dropout": None,
            "unk_token": "<unk>",
            "continuing_subword_prefix": None,
            "end_of_word_suffix": None,
            "fuse_unk": False,
            "byte_fallback": False,
            "ignore_merges": False,
            "vocab": vocab,
            "merges": [],
        },
    }


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        here, "byte-level.tokenizer.json")
    text = json.dumps(build(), indent=2, ensure_ascii=False) + "\n"
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out)
    print("wrote", out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
