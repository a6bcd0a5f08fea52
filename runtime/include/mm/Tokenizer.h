//===- Tokenizer.h - Hugging Face tokenizer.json (byte-level BPE) -*- C++
//-*-===//
//
// Loads the subset of Hugging Face's tokenizer.json that byte-level BPE
// tokenizers (GPT-2 style) use:
//
//  * model: {"type": "BPE", "vocab": {...}, "merges": [...]} with merges as
//    "a b" strings or ["a", "b"] pairs; optional unk_token, fuse_unk,
//    byte_fallback and ignore_merges. (continuing_subword_prefix /
//    end_of_word_suffix are rejected.)
//  * byte-level mapping (GPT-2's bytes-to-unicode table) when the
//    pre_tokenizer is ByteLevel (or a Sequence containing it) or the decoder
//    is ByteLevel.
//  * added_tokens: split out of the text before BPE, matched literally
//    (longest match first), honouring lstrip / rstrip.
//  * post_processor TemplateProcessing ("single" template), also inside a
//    Sequence; RobertaProcessing / BertProcessing (cls A sep).
//
// Known approximations (to be replaced by a later issue):
//  * Pre-tokenisation uses a GPT-2-like rule, not the exact regex: a word is
//    an English contraction ('s 't 're 've 'm 'll 'd), or an optional leading
//    space followed by a run of letters, a run of digits or a run of other
//    non-space characters; whitespace runs stay separate and leave their
//    last space to the following word. Every non-ASCII code point counts as
//    a letter. A Split pre-tokenizer is accepted but this rule is used in
//    place of its pattern.
//  * Normalizers: none and NFC/NFKC/NFD/NFKD are accepted; the Unicode
//    normalizations are NOT applied (input is assumed to be normalized
//    already). Other normalizers are rejected at load time.
//  * bosId()/eosId() are guessed: the first/last special token of the
//    single template, else well-known names (<s>, </s>, <|endoftext|>, ...).
//
// All load errors throw mm::Error naming the file.
//
//===----------------------------------------------------------------------===//
#ifndef MM_TOKENIZER_H
#define MM_TOKENIZER_H

#include <cstdint>
#include <map>
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

  /// Tokenizes TEXT (UTF-8; invalid bytes are tolerated). With ADDSPECIAL the
  /// post-processor's template is applied (e.g. a leading BOS).
  std::vector<int32_t> encode(std::string_view text,
                              bool addSpecial = true) const;
  /// Turns ids back into text (raw bytes: a prefix of a multi-byte character
  /// comes back as its bytes). SKIPSPECIAL drops special added tokens.
  /// Throws mm::Error for an id outside [0, vocabSize()).
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecial = false) const;

  /// The id of the token spelled TOKEN (as in tokenizer.json, i.e. in the
  /// byte-level alphabet: " hi" is "Ġhi").
  std::optional<int32_t> tokenToId(std::string_view token) const;
  /// The token spelled as in tokenizer.json; "" for an unused id. Throws
  /// mm::Error for an id outside [0, vocabSize()).
  std::string idToToken(int32_t id) const;
  /// One more than the largest id.
  int32_t vocabSize() const { return int32_t(idToToken_.size()); }
  std::optional<int32_t> bosId() const { return bos_; }
  std::optional<int32_t> eosId() const { return eos_; }

  /// The path given to fromFile (or the NAME given to fromJson).
  const std::string &path() const { return path_; }

  struct AddedToken {
    std::string content;
    int32_t id = 0;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
  };

private:
  Tokenizer() = default;

  void encodeWord(const std::string &word, std::vector<int32_t> &out) const;
  void encodeText(std::string_view text, std::vector<int32_t> &out) const;
  [[noreturn]] void fail(const std::string &msg) const;

  std::string path_;
  std::unordered_map<std::string, int32_t> tokenToId_;
  std::vector<std::string> idToToken_;
  std::vector<uint8_t> isSpecial_; // per id
  // Merge (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges_;
  std::vector<AddedToken> added_; // sorted by content length, longest first
  std::vector<int32_t> prefixIds_, suffixIds_; // around sequence A
  std::optional<int32_t> bos_, eos_, unk_;
  bool byteLevel_ = false;
  bool addPrefixSpace_ = false;
  bool splitWords_ = false;
  bool fuseUnk_ = false;
  bool byteFallback_ = false;
  bool ignoreMerges_ = false;
};

} // namespace mm

#endif // MM_TOKENIZER_H
