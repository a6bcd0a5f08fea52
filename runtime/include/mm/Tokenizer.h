//===- Tokenizer.h - Hugging Face tokenizer.json (BPE) ----------*- C++ -*-===//
//
// Loads a Hugging Face tokenizer.json whose model is BPE and encodes text to
// the ids Hugging Face's `tokenizers` library gives, following its pipeline:
//
//   1. added tokens (special or not) are split out of the raw text: those with
//      "normalized": false are matched in the raw text, the others in each
//      normalized piece (leftmost, longest first; lstrip / rstrip swallow the
//      white space around a match; single_word needs non-word neighbours);
//   2. the normalizer runs on the text between them: Sequence, Prepend,
//      Replace (string pattern), Strip, Lowercase, NFC/NFD/NFKC/NFKD (see
//      the approximations below);
//   3. the pre-tokenizer splits it into words: Sequence, ByteLevel
//      (add_prefix_space, use_regex with GPT-2's regex implemented by hand;
//      trim_offsets only changes offsets, which this class does not report),
//      Metaspace (replacement, prepend_scheme always/first/never or the old
//      add_prefix_space, split), Split (string patterns, and the GPT-2 and
//      Llama-3 / Qwen2 regexes, every behavior, invert), Whitespace,
//      WhitespaceSplit, Digits;
//   4. the BPE model merges each word (merges by rank, leftmost first on
//      ties; unk_token, fuse_unk, byte_fallback to <0xNN> tokens,
//      ignore_merges); a character that is not in the vocabulary and has
//      neither a byte fallback nor an unk_token is dropped, as in HF;
//   5. the post-processor adds special tokens: TemplateProcessing ("single"
//      template), BertProcessing / RobertaProcessing (cls $A sep), ByteLevel
//      (offsets only, so nothing), Sequence.
//
// decode() runs the declared decoder over the tokens' strings: Sequence,
// ByteLevel, Metaspace, Replace (string pattern), ByteFallback, Fuse, Strip;
// with no decoder the tokens are joined with spaces, as HF does.
//
// fromVocabMerges() builds GPT-2's tokenizer from the older pair of files,
// encoder.json / vocab.json (token -> id) and vocab.bpe / merges.txt.
//
// Known differences from HF:
//  * Unicode normalization forms (NFC, NFKC, ...) are accepted but not
//    applied: text must already be in the declared form (most text is NFC).
//  * Character classes (\p{L}, \p{N}, \s, ...) come from a table generated
//    from Unicode 17 (runtime/lib/TokenizerUnicode.inc); HF's regex engines
//    may use an older Unicode version for recently added characters.
//  * decode() returns raw bytes: where HF's ByteLevel / ByteFallback decoders
//    write U+FFFD for bytes that are not valid UTF-8 (e.g. half of a
//    character), decode() keeps the bytes, so streaming output can wait for
//    the rest of the character. Valid text decodes exactly as in HF.
//  * Unsupported components (WordPiece / Unigram models, BertNormalizer,
//    regex Replace, other Split regexes, ...) are load errors, never silently
//    approximated.
//  * bosId()/eosId() are guessed: the first/last special token of the
//    single template, else well-known names (<s>, </s>, <|endoftext|>, ...).
//
// All load errors throw mm::Error naming the file.
//
//===----------------------------------------------------------------------===//
#ifndef MM_TOKENIZER_H
#define MM_TOKENIZER_H

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mm {

class Tokenizer {
public:
  /// Loads a Hugging Face tokenizer.json. Throws mm::Error naming PATH.
  static Tokenizer fromFile(const std::string &path);
  /// Parses tokenizer.json text held in memory (e.g. embedded in a compiled
  /// model). NAME stands in for the file name in error messages and path().
  static Tokenizer fromJson(const std::string &jsonText,
                            const std::string &name);
  /// GPT-2's tokenizer from a vocabulary JSON (encoder.json / vocab.json:
  /// {"token": id, ...}) and a merges file (vocab.bpe / merges.txt: an
  /// optional "#version" line, then one "a b" merge per line): byte-level
  /// pre-tokenization without a prefix space, no post-processor, and
  /// <|endoftext|> (if in the vocabulary) as a special added token, as
  /// Hugging Face's GPT2TokenizerFast sets it up. Errors name the file.
  static Tokenizer fromVocabMerges(const std::string &vocabPath,
                                   const std::string &mergesPath);

  /// Tokenizes TEXT (UTF-8; invalid bytes are tolerated). With ADDSPECIAL the
  /// post-processor's template is applied (e.g. a leading BOS).
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecial = true) const;
  /// What the model is given for TEXT: the added tokens (as matched, with
  /// the white space lstrip / rstrip took) and the normalized, pre-tokenized
  /// words in between (byte-level words in the byte alphabet: " hi" is
  /// "Ġhi"). For tests and debugging.
  std::vector<std::string> pieces(std::string_view text) const;
  /// Turns ids back into text through the decoder (raw bytes: a prefix of a
  /// multi-byte character comes back as its bytes). SKIPSPECIAL drops special
  /// added tokens. Throws mm::Error for an id outside [0, vocabSize()).
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecial = false) const;

  /// The id of the token spelled TOKEN (as in tokenizer.json, i.e. in the
  /// byte-level alphabet: " hi" is "Ġhi"; or "▁hi" for SentencePiece BPE).
  std::optional<int32_t> tokenToId(std::string_view token) const;
  /// The token spelled as in tokenizer.json; "" for an unused id. Throws
  /// mm::Error for an id outside [0, vocabSize()).
  std::string idToToken(int32_t id) const;
  /// One more than the largest id.
  int32_t vocabSize() const;
  std::optional<int32_t> bosId() const;
  std::optional<int32_t> eosId() const;
  /// Whether ID is a special added token (dropped by decode(ids, true)).
  bool isSpecial(int32_t id) const;

  /// The path given to fromFile (or the NAME given to fromJson).
  const std::string &path() const { return path_; }

  struct Impl;

private:
  Tokenizer() = default;
  std::string path_;
  std::shared_ptr<const Impl> impl_;
};

//===----------------------------------------------------------------------===//
// Building blocks shared with the trainer (and tested on their own)
//===----------------------------------------------------------------------===//

namespace tokenizer {

/// Unicode character classes used by the pre-tokenizers' patterns.
enum class CharClass : uint8_t {
  Other = 0,  // anything below (symbols, controls, unassigned, invalid)
  Letter = 1, // \p{L}
  Number = 2, // \p{N}
  Mark = 3,   // \p{M}
  Punct = 4,  // \p{P}
  Space = 5,  // \s (White_Space)
};
CharClass charClass(uint32_t codePoint);

/// Splits TEXT as GPT-2's pre-tokenization regex does:
///   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
/// The pieces cover TEXT in order (a byte that is not valid UTF-8 counts as a
/// character that is neither a letter, a number nor a space).
std::vector<std::string_view> splitGpt2(std::string_view text);

/// GPT-2's reversible byte -> character table: the character (as UTF-8) that
/// stands for each byte in byte-level vocabularies (' ' is "Ġ", '\n' "Ċ").
const std::array<std::string, 256> &byteLevelAlphabet();

/// Options of trainByteLevelBpe().
struct BpeTrainOptions {
  /// Size of the vocabulary to reach: specials + 256 bytes + merges.
  int32_t vocabSize = 512;
  /// Special added tokens, ids 0.. in this order; split out of the training
  /// text (never merged across) and of the text to encode.
  std::vector<std::string> specials = {"<unk>", "<s>", "</s>", "<pad>",
                                       "<image>"};
  /// The special token the post-processor puts in front of every sequence
  /// ("" for none). It must be one of SPECIALS.
  std::string bos = "<s>";
  /// Pairs seen fewer times than this are never merged.
  int64_t minFrequency = 2;
};

/// What trainByteLevelBpe() did.
struct BpeTrainStats {
  size_t distinctWords = 0;
  size_t merges = 0;
  int32_t vocabSize = 0;
};

/// Trains a GPT-2-style byte-level BPE on TEXTS: each text is split at the
/// special tokens, pre-tokenized with splitGpt2, and the most frequent
/// adjacent pair of symbols (ties: the pair whose left, then right, symbol
/// sorts first bytewise) is merged until the vocabulary is full or no pair is
/// frequent enough. The initial alphabet is the 256 byte symbols (ids
/// specials.size() + byte). Returns the tokenizer.json text: ByteLevel
/// pre-tokenizer and decoder, the specials as special added tokens, and a
/// TemplateProcessing that puts OPTIONS.bos in front. Deterministic: the same
/// texts and options give the same bytes.
std::string trainByteLevelBpe(const std::vector<std::string> &texts,
                              const BpeTrainOptions &options,
                              BpeTrainStats *stats = nullptr);

} // namespace tokenizer

} // namespace mm

#endif // MM_TOKENIZER_H
