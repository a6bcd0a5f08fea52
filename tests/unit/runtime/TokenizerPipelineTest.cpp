//===- TokenizerPipelineTest.cpp - mm::Tokenizer's HF pipeline parts ------===//
//
// The pieces of Hugging Face's tokenizer pipeline one at a time, on small
// hand-written tokenizer.json files: GPT-2's pre-tokenization regex, the
// Llama-3 / Qwen2 Split regexes, Split behaviors, the other pre-tokenizers,
// normalizers, added-token flags, LLaMA-style SentencePiece BPE (Prepend /
// Replace normalizer, byte fallback, Replace/ByteFallback/Fuse/Strip
// decoder), Metaspace, decoders and post-processors. Expected values follow
// the documented behaviour of HF's `tokenizers` (worked out by hand in the
// comments); TokenizerFilesTest checks real files against their reference
// encoders.
//
//===----------------------------------------------------------------------===//

#include "mm/Error.h"
#include "mm/Tokenizer.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <string>
#include <vector>

using nlohmann::json;
using Pieces = std::vector<std::string>;
using Ids = std::vector<int32_t>;

namespace {

Pieces gpt2(const std::string &text) {
  Pieces out;
  for (std::string_view p : mm::tokenizer::splitGpt2(text))
    out.emplace_back(p);
  return out;
}

/// A tokenizer.json with the given components around a BPE model whose
/// vocabulary is VOCAB (token -> id) and MERGES.
json tokenizerJson(json vocab, json merges = json::array()) {
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer", nullptr},
          {"post_processor", nullptr},
          {"decoder", nullptr},
          {"model",
           {{"type", "BPE"},
            {"vocab", vocab},
            {"merges", merges},
            {"unk_token", nullptr}}}};
}

/// All 256 byte-level symbols (ids 0..255) plus the tokens MERGES make, in
/// order (ids 256..).
json byteLevelJson(const std::vector<std::string> &merges = {}) {
  json vocab = json::object();
  const auto &alphabet = mm::tokenizer::byteLevelAlphabet();
  for (int b = 0; b < 256; ++b)
    vocab[alphabet[b]] = b;
  int next = 256;
  for (const std::string &m : merges) {
    size_t sp = m.find(' ');
    std::string merged = m.substr(0, sp) + m.substr(sp + 1);
    if (!vocab.contains(merged))
      vocab[merged] = next++;
  }
  json j = tokenizerJson(vocab, merges);
  j["pre_tokenizer"] = {{"type", "ByteLevel"},
                        {"add_prefix_space", false},
                        {"trim_offsets", true},
                        {"use_regex", true}};
  j["decoder"] = {{"type", "ByteLevel"}};
  return j;
}

json added(int id, const std::string &content, bool special = true) {
  return {{"id", id},          {"content", content}, {"single_word", false},
          {"lstrip", false},   {"rstrip", false},    {"normalized", !special},
          {"special", special}};
}

mm::Tokenizer load(const json &j, const std::string &name = "test.json") {
  return mm::Tokenizer::fromJson(j.dump(), name);
}

/// A plain-text tokenizer (no byte-level mapping) whose vocabulary has
/// every printable ASCII character, for looking at pieces().
json plainJson() {
  json vocab = json::object();
  for (int c = 32; c < 127; ++c)
    vocab[std::string(1, char(c))] = c - 32;
  return tokenizerJson(vocab);
}

Pieces piecesWith(const json &preTokenizer, const std::string &text,
                  const json &normalizer = nullptr) {
  json j = plainJson();
  j["pre_tokenizer"] = preTokenizer;
  j["normalizer"] = normalizer;
  return load(j).pieces(text);
}

const char *kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| "
                         "?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

json splitRegex(const char *regex, const char *behavior = "Isolated",
                bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{"Regex", regex}}},
          {"behavior", behavior},
          {"invert", invert}};
}

} // namespace

//===----------------------------------------------------------------------===//
// Unicode classes and GPT-2's regex
//===----------------------------------------------------------------------===//

TEST(TokenizerPipeline, CharClasses) {
  using mm::tokenizer::CharClass;
  using mm::tokenizer::charClass;
  EXPECT_EQ(charClass('A'), CharClass::Letter);
  EXPECT_EQ(charClass('z'), CharClass::Letter);
  EXPECT_EQ(charClass('5'), CharClass::Number);
  EXPECT_EQ(charClass(' '), CharClass::Space);
  EXPECT_EQ(charClass('\n'), CharClass::Space);
  EXPECT_EQ(charClass(','), CharClass::Punct);
  EXPECT_EQ(charClass('$'), CharClass::Other);
  EXPECT_EQ(charClass(0xE9), CharClass::Letter);    // é
  EXPECT_EQ(charClass(0xB2), CharClass::Number);    // superscript two
  EXPECT_EQ(charClass(0xA0), CharClass::Space);     // no-break space
  EXPECT_EQ(charClass(0x301), CharClass::Mark);     // combining acute
  EXPECT_EQ(charClass(0x3A9), CharClass::Letter);   // Ω
  EXPECT_EQ(charClass(0x416), CharClass::Letter);   // Ж
  EXPECT_EQ(charClass(0x660), CharClass::Number);   // Arabic-indic zero
  EXPECT_EQ(charClass(0x2248), CharClass::Other);   // ≈
  EXPECT_EQ(charClass(0x3000), CharClass::Space);   // ideographic space
  EXPECT_EQ(charClass(0x3001), CharClass::Punct);   // 、
  EXPECT_EQ(charClass(0x65E5), CharClass::Letter);  // 日
  EXPECT_EQ(charClass(0x30C6), CharClass::Letter);  // テ
  EXPECT_EQ(charClass(0x1F600), CharClass::Other);  // 😀
  EXPECT_EQ(charClass(0x20000), CharClass::Letter); // CJK extension B
  EXPECT_EQ(charClass(0x10FFFF), CharClass::Other);
}

TEST(TokenizerPipeline, ByteLevelAlphabet) {
  const auto &a = mm::tokenizer::byteLevelAlphabet();
  EXPECT_EQ(a[' '], "\u0120");
  EXPECT_EQ(a['\n'], "\u010A");
  EXPECT_EQ(a['a'], "a");
  EXPECT_EQ(a[0], "\u0100");
  EXPECT_EQ(a[0xAD], "\u0143");
  EXPECT_EQ(a[0xE9], "\u00E9");
}

TEST(TokenizerPipeline, Gpt2Regex) {
  EXPECT_EQ(gpt2(""), Pieces{});
  EXPECT_EQ(gpt2("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(gpt2("it's  they'll"), (Pieces{"it", "'s", " ", " they", "'ll"}));
  EXPECT_EQ(gpt2("they're we've I'm he'd"),
            (Pieces{"they", "'re", " we", "'ve", " I", "'m", " he", "'d"}));
  // Contractions are case-sensitive.
  EXPECT_EQ(gpt2("DON'T"), (Pieces{"DON", "'", "T"}));
  // \s+(?!\S) leaves the last white-space character to the next word.
  EXPECT_EQ(gpt2("a  b"), (Pieces{"a", " ", " b"}));
  EXPECT_EQ(gpt2("a \n b"), (Pieces{"a", " \n", " b"}));
  EXPECT_EQ(gpt2("x\n\ny"), (Pieces{"x", "\n", "\n", "y"}));
  EXPECT_EQ(gpt2("end  "), (Pieces{"end", "  "}));
  EXPECT_EQ(gpt2("   lead"), (Pieces{"  ", " lead"}));
  EXPECT_EQ(gpt2("tab\tx"), (Pieces{"tab", "\t", "x"}));
  // Letters, numbers and the rest form separate runs.
  EXPECT_EQ(gpt2("123abc 456"), (Pieces{"123", "abc", " 456"}));
  EXPECT_EQ(gpt2("!!! ?$"), (Pieces{"!!!", " ?$"}));
  EXPECT_EQ(gpt2("3.14"), (Pieces{"3", ".", "14"}));
  // Unicode letters, marks (not letters), symbols, no-break space.
  EXPECT_EQ(gpt2("\u00dcn\u00efc\u00f6d\u00e9 caf\u00e9"),
            (Pieces{"\u00dcn\u00efc\u00f6d\u00e9", " caf\u00e9"}));
  EXPECT_EQ(gpt2("\u65e5\u672c \u30c6\u30b9\u30c8"),
            (Pieces{"\u65e5\u672c", " \u30c6\u30b9\u30c8"}));
  EXPECT_EQ(gpt2("e\u0301"), (Pieces{"e", "\u0301"}));
  EXPECT_EQ(gpt2("\U0001F600\U0001F44D ok"),
            (Pieces{"\U0001F600\U0001F44D", " ok"}));
  EXPECT_EQ(gpt2("a\u00a0b"), (Pieces{"a", "\u00a0", "b"}));
  // Invalid UTF-8 bytes count as "other" characters.
  EXPECT_EQ(gpt2("\xff\xfe" "ab"), (Pieces{"\xff\xfe", "ab"}));
}

//===----------------------------------------------------------------------===//
// Pre-tokenizers
//===----------------------------------------------------------------------===//

TEST(TokenizerPipeline, SplitLlama3AndQwen2Regex) {
  EXPECT_EQ(piecesWith(splitRegex(kLlama3Regex),
                       "Hello world's 12345 foo\n\n  bar"),
            (Pieces{"Hello", " world", "'s", " ", "123", "45", " foo", "\n\n",
                    " ", " bar"}));
  // Case-insensitive contractions; a non-letter glued to a word.
  EXPECT_EQ(piecesWith(splitRegex(kLlama3Regex), "DON'T (go) \tnow"),
            (Pieces{"DON", "'T", " (", "go", ")", " ", "\tnow"}));
  EXPECT_EQ(piecesWith(splitRegex(kLlama3Regex), "  ,\n"),
            (Pieces{" ", " ,\n"}));
  EXPECT_EQ(piecesWith(splitRegex(kLlama3Regex), "x \r\n\r\n y"),
            (Pieces{"x", " \r\n\r\n", " y"}));
  EXPECT_EQ(piecesWith(splitRegex(kQwen2Regex), "ab12345"),
            (Pieces{"ab", "1", "2", "3", "4", "5"}));
  EXPECT_EQ(piecesWith(splitRegex(kGpt2Regex), "it's 12"),
            (Pieces{"it", "'s", " 12"}));
}

TEST(TokenizerPipeline, SplitBehaviors) {
  auto split = [](const char *behavior, bool invert = false) {
    json p = {{"type", "Split"},
              {"pattern", {{"String", "-"}}},
              {"behavior", behavior},
              {"invert", invert}};
    return piecesWith(p, "the-final--countdown");
  };
  // The examples of HF's SplitDelimiterBehavior.
  EXPECT_EQ(split("Removed"), (Pieces{"the", "final", "countdown"}));
  EXPECT_EQ(split("Isolated"),
            (Pieces{"the", "-", "final", "-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithPrevious"),
            (Pieces{"the-", "final-", "-", "countdown"}));
  EXPECT_EQ(split("MergedWithNext"),
            (Pieces{"the", "-final", "-", "-countdown"}));
  EXPECT_EQ(split("Contiguous"), (Pieces{"the", "-", "final", "--", "countdown"}));
  // invert: the pattern marks what to keep.
  EXPECT_EQ(split("Removed", true), (Pieces{"-", "-", "-"}));
}

TEST(TokenizerPipeline, OtherPreTokenizers) {
  EXPECT_EQ(piecesWith({{"type", "Whitespace"}}, "Hey friend!  How's it?"),
            (Pieces{"Hey", "friend", "!", "How", "'", "s", "it", "?"}));
  EXPECT_EQ(piecesWith({{"type", "WhitespaceSplit"}}, " Hey  friend!\tyo "),
            (Pieces{"Hey", "friend!", "yo"}));
  EXPECT_EQ(piecesWith({{"type", "Digits"}, {"individual_digits", true}},
                       "ab123c"),
            (Pieces{"ab", "1", "2", "3", "c"}));
  EXPECT_EQ(piecesWith({{"type", "Digits"}, {"individual_digits", false}},
                       "ab123c"),
            (Pieces{"ab", "123", "c"}));
  EXPECT_EQ(piecesWith({{"type", "Punctuation"}}, "Hey, you!"),
            (Pieces{"Hey", ",", " you", "!"}));
  EXPECT_EQ(piecesWith({{"type", "BertPreTokenizer"}}, "Hey, you! $5"),
            (Pieces{"Hey", ",", "you", "!", "$", "5"}));
  EXPECT_EQ(piecesWith({{"type", "CharDelimiterSplit"}, {"delimiter", "x"}},
                       "axbxxc"),
            (Pieces{"a", "b", "c"}));
  // A Sequence applies each pre-tokenizer to every piece of the one before.
  EXPECT_EQ(piecesWith({{"type", "Sequence"},
                        {"pretokenizers",
                         json::array({{{"type", "WhitespaceSplit"}},
                                      {{"type", "Digits"},
                                       {"individual_digits", true}}})}},
                       "a12 b3"),
            (Pieces{"a", "1", "2", "b", "3"}));
}

TEST(TokenizerPipeline, ByteLevelPreTokenizerOptions) {
  json j = byteLevelJson();
  EXPECT_EQ(load(j).pieces("Hi  there"),
            (Pieces{"Hi", "\u0120", "\u0120there"}));
  j["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(load(j).pieces("Hi there"), (Pieces{"\u0120Hi", "\u0120there"}));
  EXPECT_EQ(load(j).pieces(" Hi"), (Pieces{"\u0120Hi"}));
  j["pre_tokenizer"]["add_prefix_space"] = false;
  j["pre_tokenizer"]["use_regex"] = false;
  EXPECT_EQ(load(j).pieces("Hi there\n"), (Pieces{"Hi\u0120there\u010A"}));
  // Missing options take HF's defaults (add_prefix_space and use_regex on).
  j["pre_tokenizer"] = {{"type", "ByteLevel"}};
  EXPECT_EQ(load(j).pieces("Hi there"), (Pieces{"\u0120Hi", "\u0120there"}));
}

//===----------------------------------------------------------------------===//
// Normalizers and added tokens
//===----------------------------------------------------------------------===//

TEST(TokenizerPipeline, Normalizers) {
  json seq = {{"type", "Sequence"},
              {"normalizers",
               json::array({{{"type", "Strip"},
                             {"strip_left", true},
                             {"strip_right", true}},
                            {{"type", "NFC"}},
                            {{"type", "Lowercase"}},
                            {{"type", "Replace"},
                             {"pattern", {{"String", "ll"}}},
                             {"content", "L"}}})}};
  EXPECT_EQ(piecesWith({{"type", "WhitespaceSplit"}},
                       "  HeLLo \u00c0\u00c9\u00ce W\u00d6RLD \u0130\u03a3\u0416 ",
                       seq),
            (Pieces{"heLo", "\u00e0\u00e9\u00ee", "w\u00f6rld",
                    "i\u0307\u03c3\u0436"}));
  json prepend = {{"type", "Prepend"}, {"prepend", ">>"}};
  EXPECT_EQ(piecesWith(nullptr, "abc", prepend), (Pieces{">>abc"}));
  EXPECT_EQ(piecesWith(nullptr, "", prepend), Pieces{});
}

TEST(TokenizerPipeline, AddedTokenFlags) {
  json j = byteLevelJson();
  j["model"]["vocab"]["hi"] = 256;
  j["model"]["vocab"]["<mask>"] = 257;
  json hi = added(256, "hi", false);
  hi["single_word"] = true;
  json mask = added(257, "<mask>");
  mask["lstrip"] = true;
  j["added_tokens"] = json::array({hi, mask});
  mm::Tokenizer tok = load(j);
  // single_word: "hi" inside "this" / "hint" is not the added token.
  EXPECT_EQ(tok.pieces("hi this hint, hi!"),
            (Pieces{"hi", "\u0120this", "\u0120hint", ",", "\u0120", "hi",
                    "!"}));
  EXPECT_EQ(tok.encode("hi"), (Ids{256}));
  // lstrip: the spaces before <mask> belong to it.
  Ids ids = tok.encode("a  <mask> b");
  EXPECT_EQ(ids, (Ids{'a', 257, ' ', 'b'})); // byte b has id b; ' ' is Ġ
  EXPECT_EQ(tok.decode(ids), "a<mask> b");
  EXPECT_TRUE(tok.isSpecial(257));
  EXPECT_FALSE(tok.isSpecial(256));
  EXPECT_EQ(tok.decode(ids, /*skipSpecial=*/true), "a b");

  // A normalized added token is matched in normalized text (and its
  // content is normalized too).
  json k = plainJson();
  k["model"]["vocab"]["<x>"] = 95;
  json x = added(95, "<X>", false);
  k["added_tokens"] = json::array({x});
  k["normalizer"] = {{"type", "Lowercase"}};
  mm::Tokenizer lower = load(k);
  EXPECT_EQ(lower.encode("A<X>b<x>"), (Ids{'a' - 32, 95, 'b' - 32, 95}));
  // Not normalized: matched in the raw text only.
  k["added_tokens"][0]["normalized"] = false;
  EXPECT_EQ(load(k).encode("A<X>b<x>"),
            (Ids{'a' - 32, 95, 'b' - 32, '<' - 32, 'x' - 32, '>' - 32}));
}

TEST(TokenizerPipeline, LongestAddedTokenWins) {
  json j = byteLevelJson();
  j["model"]["vocab"]["<a>"] = 256;
  j["model"]["vocab"]["<a><b>"] = 257;
  j["added_tokens"] = json::array({added(256, "<a>"), added(257, "<a><b>")});
  mm::Tokenizer tok = load(j);
  EXPECT_EQ(tok.encode("<a><b><a>x"), (Ids{257, 256, 'x'}));
}

//===----------------------------------------------------------------------===//
// LLaMA-style SentencePiece BPE and Metaspace
//===----------------------------------------------------------------------===//

namespace {

/// A miniature LLaMA-2 tokenizer.json: <unk> <s> </s>, the 256 <0xNN> byte
/// tokens (ids 3..258), then "▁"-words built by merges; normalizer
/// Prepend("▁") + Replace(" ", "▁"), no pre-tokenizer, TemplateProcessing
/// <s> $A, decoder Replace("▁", " ") ByteFallback Fuse Strip(" ", 1, 0),
/// byte_fallback and fuse_unk on.
json llamaJson() {
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int next = 259;
  for (const char *t : {"\u2581", "h", "e", "l", "o", "w", "r", "d"})
    vocab[t] = next++;
  std::vector<std::string> merges = {
      "\u2581 h",      "\u2581h e",    "l l",   "\u2581he ll",
      "\u2581hell o",  "\u2581 w",     "o r",   "\u2581w or",
      "l d",           "\u2581wor ld", "\u2581 \u2581"};
  for (const std::string &m : merges) {
    size_t sp = m.find(' ');
    std::string t = m.substr(0, sp) + m.substr(sp + 1);
    if (!vocab.contains(t))
      vocab[t] = next++;
  }
  json j = tokenizerJson(vocab, merges);
  j["added_tokens"] = json::array({added(0, "<unk>"), added(1, "<s>"),
                                   added(2, "</s>")});
  j["normalizer"] = {
      {"type", "Sequence"},
      {"normalizers",
       json::array({{{"type", "Prepend"}, {"prepend", "\u2581"}},
                    {{"type", "Replace"},
                     {"pattern", {{"String", " "}}},
                     {"content", "\u2581"}}})}};
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       json::array({{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"pair", json::array()},
      {"special_tokens",
       {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}};
  j["decoder"] = {
      {"type", "Sequence"},
      {"decoders",
       json::array({{{"type", "Replace"},
                     {"pattern", {{"String", "\u2581"}}},
                     {"content", " "}},
                    {{"type", "ByteFallback"}},
                    {{"type", "Fuse"}},
                    {{"type", "Strip"},
                     {"content", " "},
                     {"start", 1},
                     {"stop", 0}}})}};
  j["model"]["unk_token"] = "<unk>";
  j["model"]["byte_fallback"] = true;
  j["model"]["fuse_unk"] = true;
  return j;
}

} // namespace

TEST(TokenizerPipeline, LlamaStyleSentencePieceBpe) {
  json j = llamaJson();
  mm::Tokenizer tok = load(j, "llama.json");
  int32_t sp = *tok.tokenToId("\u2581"), hello = *tok.tokenToId("\u2581hello"),
          world = *tok.tokenToId("\u2581world"),
          spsp = *tok.tokenToId("\u2581\u2581");
  EXPECT_EQ(tok.bosId(), std::optional<int32_t>(1));
  EXPECT_EQ(tok.pieces("hello world"), (Pieces{"\u2581hello\u2581world"}));
  EXPECT_EQ(tok.encode("hello world"), (Ids{1, hello, world}));
  EXPECT_EQ(tok.encode("hello world", false), (Ids{hello, world}));
  // One word (no pre-tokenizer): "▁▁" merges across the spaces.
  EXPECT_EQ(tok.encode("hello   world", false), (Ids{hello, spsp, world}));
  EXPECT_EQ(tok.decode(tok.encode("hello   world")), "<s> hello   world");
  EXPECT_EQ(tok.decode(tok.encode("hello   world"), true), "hello   world");
  EXPECT_EQ(tok.decode(tok.encode("  hello"), true), "  hello");
  // Unknown characters fall back to their UTF-8 bytes.
  EXPECT_EQ(tok.encode("h\u00e9!", false),
            (Ids{*tok.tokenToId("\u2581h"), 3 + 0xC3, 3 + 0xA9, 3 + '!'}));
  EXPECT_EQ(tok.decode(tok.encode("h\u00e9! \U0001F600"), true),
            "h\u00e9! \U0001F600");
  // Special tokens are split out first; each piece is normalized alone.
  EXPECT_EQ(tok.encode("hello</s>world", false), (Ids{hello, 2, world}));
  EXPECT_EQ(tok.encode(""), (Ids{1}));
  // Half a character decodes to its raw byte (HF would write U+FFFD).
  EXPECT_EQ(tok.decode({3 + 0xC3}), "\xc3");

  // Without byte fallback, unknown characters become <unk>, fused.
  j["model"]["byte_fallback"] = false;
  mm::Tokenizer unk = load(j);
  EXPECT_EQ(unk.encode("h\u00e9\u00e9!h", false),
            (Ids{*unk.tokenToId("\u2581h"), 0, *unk.tokenToId("h")}));
  j["model"]["fuse_unk"] = false;
  EXPECT_EQ(load(j).encode("\u00e9\u00e9", false), (Ids{sp, 0, 0}));
}

TEST(TokenizerPipeline, Metaspace) {
  json j = llamaJson();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"prepend_scheme", "first"},
                        {"split", true}};
  j["decoder"] = {{"type", "Metaspace"},
                  {"replacement", "\u2581"},
                  {"prepend_scheme", "first"},
                  {"split", true}};
  mm::Tokenizer first = load(j);
  EXPECT_EQ(first.pieces("hello world"), (Pieces{"\u2581hello", "\u2581world"}));
  EXPECT_EQ(first.pieces("hello  world"),
            (Pieces{"\u2581hello", "\u2581", "\u2581world"}));
  // "first": only the piece at the start of the text gets a ▁.
  EXPECT_EQ(first.pieces("hello</s>world"),
            (Pieces{"\u2581hello", "</s>", "world"}));
  EXPECT_EQ(first.pieces("</s>world"), (Pieces{"</s>", "world"}));
  EXPECT_EQ(first.decode(first.encode("hello world"), true), "hello world");

  j["pre_tokenizer"]["prepend_scheme"] = "always";
  EXPECT_EQ(load(j).pieces("hello</s>world"),
            (Pieces{"\u2581hello", "</s>", "\u2581world"}));
  j["pre_tokenizer"]["split"] = false;
  EXPECT_EQ(load(j).pieces("hello world"), (Pieces{"\u2581hello\u2581world"}));
  // Old files: add_prefix_space false means never.
  j["pre_tokenizer"] = {{"type", "Metaspace"},
                        {"replacement", "\u2581"},
                        {"add_prefix_space", false}};
  EXPECT_EQ(load(j).pieces("hello world"), (Pieces{"hello", "\u2581world"}));
  j["decoder"]["prepend_scheme"] = "never";
  mm::Tokenizer never = load(j);
  EXPECT_EQ(never.decode(never.encode("hello world")), "<s>hello world");
}

//===----------------------------------------------------------------------===//
// Decoders and post-processors
//===----------------------------------------------------------------------===//

TEST(TokenizerPipeline, Decoders) {
  json j = plainJson();
  mm::Tokenizer none = load(j);
  // Without a decoder HF joins the tokens with spaces.
  EXPECT_EQ(none.decode(none.encode("ab")), "a b");
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders",
                   json::array({{{"type", "Fuse"}},
                                {{"type", "Strip"},
                                 {"content", "x"},
                                 {"start", 2},
                                 {"stop", 1}}})}};
  mm::Tokenizer strip = load(j);
  // Fuse: "xxxaxx"; Strip: at most 2 leading and 1 trailing "x".
  EXPECT_EQ(strip.decode(strip.encode("xxxaxx")), "xax");
}

TEST(TokenizerPipeline, PostProcessors) {
  json j = plainJson();
  j["post_processor"] = {{"type", "BertProcessing"},
                         {"sep", json::array({"!", 1})},
                         {"cls", json::array({"\"", 2})}};
  mm::Tokenizer bert = load(j);
  EXPECT_EQ(bert.encode("a"), (Ids{2, 'a' - 32, 1}));
  EXPECT_EQ(bert.encode("a", false), (Ids{'a' - 32}));
  EXPECT_EQ(bert.bosId(), std::optional<int32_t>(2));
  EXPECT_EQ(bert.eosId(), std::optional<int32_t>(1));
  j["post_processor"]["type"] = "RobertaProcessing";
  EXPECT_EQ(load(j).encode("a"), (Ids{2, 'a' - 32, 1}));
}

TEST(TokenizerPipeline, LongInputIsFast) {
  // LLaMA-style files have no pre-tokenizer: the whole text is one word.
  mm::Tokenizer tok = load(llamaJson());
  std::string text;
  for (int i = 0; i < 20000; ++i)
    text += i % 3 ? "hello " : "world ";
  auto start = std::chrono::steady_clock::now();
  Ids ids = tok.encode(text, false);
  double seconds = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - start)
                       .count();
  EXPECT_EQ(ids.size(), 20001u); // 20000 words and the final "▁"
  EXPECT_LT(seconds, 5.0);
  EXPECT_EQ(tok.decode(ids), text);
}
