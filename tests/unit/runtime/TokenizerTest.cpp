//===- TokenizerTest.cpp - tests for mm/Tokenizer.h -----------------------===//

#include "mm/Tokenizer.h"
#include "mm/Error.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <climits>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

using nlohmann::json;

namespace {

std::string tempPath(const std::string &name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/')
    dir += '/';
  return dir + "mm_tok_test_" + std::to_string(::getpid()) + "_" + name;
}

void writeText(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

bool isFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

std::string dirOf(const std::string &path) {
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

/// Finds models/tokenizers/byte-level.tokenizer.json: under MM_SOURCE_DIR if
/// the build defines it, else in the current directory or the test binary's
/// directory or any of their parents.
std::string byteTokenizerPath() {
  const std::string rel = "models/tokenizers/byte-level.tokenizer.json";
#ifdef MM_SOURCE_DIR
  if (isFile(std::string(MM_SOURCE_DIR) + "/" + rel))
    return std::string(MM_SOURCE_DIR) + "/" + rel;
#endif
  std::vector<std::string> starts;
  char buf[PATH_MAX];
  if (::getcwd(buf, sizeof(buf)))
    starts.push_back(buf);
  ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
  if (n > 0) {
    buf[n] = 0;
    starts.push_back(dirOf(buf));
  }
  for (std::string dir : starts)
    for (int up = 0; up < 8 && !dir.empty(); ++up) {
      if (isFile(dir + "/" + rel))
        return dir + "/" + rel;
      if (dir == "/")
        break;
      dir = dirOf(dir);
      if (dir.empty())
        dir = "/";
    }
  return "";
}

mm::Tokenizer loadByteTokenizer() {
  std::string path = byteTokenizerPath();
  if (path.empty())
    throw std::runtime_error(
        "cannot find models/tokenizers/byte-level.tokenizer.json (define "
        "MM_SOURCE_DIR or run from inside the source tree)");
  return mm::Tokenizer::fromFile(path);
}

std::vector<int32_t> byteIds(const std::string &text) {
  std::vector<int32_t> ids;
  for (unsigned char c : text)
    ids.push_back(5 + c);
  return ids;
}

/// Writes J to a temp file called NAME and loads it.
mm::Tokenizer loadJson(const std::string &name, const json &j) {
  std::string path = tempPath(name);
  writeText(path, j.dump());
  mm::Tokenizer tok = mm::Tokenizer::fromFile(path);
  std::remove(path.c_str());
  return tok;
}

/// Writes TEXT to a temp file called NAME and expects fromFile to throw
/// mm::Error naming the file and mentioning every string in NEEDLES.
void expectLoadError(const std::string &name, const std::string &text,
                     std::initializer_list<std::string> needles) {
  std::string path = tempPath(name);
  writeText(path, text);
  try {
    mm::Tokenizer::fromFile(path);
    ADD_FAILURE() << name << ": expected mm::Error";
  } catch (const mm::Error &e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(name), std::string::npos)
        << "message '" << msg << "' does not name the file";
    for (const std::string &n : needles)
      EXPECT_NE(msg.find(n), std::string::npos)
          << "message '" << msg << "' does not mention '" << n << "'";
  }
  std::remove(path.c_str());
}

/// A small byte-level BPE with merges (ids chosen by hand).
json tinyTokenizer() {
  json vocab = {{"<|endoftext|>", 0},
                {"h", 1},
                {"e", 2},
                {"l", 3},
                {"o", 4},
                {"\u0120", 5},
                {"w", 6},
                {"r", 7},
                {"d", 8},
                {"he", 9},
                {"ll", 10},
                {"hell", 11},
                {"hello", 12},
                {"\u0120w", 13},
                {"or", 14},
                {"\u0120wor", 15},
                {"ld", 16},
                {"a", 17},
                {"b", 18},
                {"\u0120\u0120", 19},
                {"\u0120b", 20},
                {"o\u0120", 21}};
  json merges = json::array(
      {"o \u0120", "h e", "l l", json::array({"he", "ll"}), "hell o",
       "\u0120 w", "o r", "\u0120w or", "l d", "\u0120 \u0120", "\u0120 b"});
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 0},
                                     {"content", "<|endoftext|>"},
                                     {"special", true},
                                     {"lstrip", false},
                                     {"rstrip", false},
                                     {"normalized", false},
                                     {"single_word", false}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "ByteLevel"},
        {"add_prefix_space", false},
        {"use_regex", true}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model",
       {{"type", "BPE"},
        {"vocab", vocab},
        {"merges", merges},
        {"unk_token", nullptr}}},
  };
}

} // namespace

//===----------------------------------------------------------------------===//
// The committed byte-level tokenizer
//===----------------------------------------------------------------------===//

TEST(Tokenizer, ByteLevelFileBasics) {
  mm::Tokenizer tok = loadByteTokenizer();
  EXPECT_EQ(tok.vocabSize(), 261);
  EXPECT_EQ(tok.bosId(), std::optional<int32_t>(1));
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(2));
  EXPECT_EQ(tok.tokenToId("<unk>"), std::optional<int32_t>(0));
  EXPECT_EQ(tok.tokenToId("<pad>"), std::optional<int32_t>(3));
  EXPECT_EQ(tok.tokenToId("<image>"), std::optional<int32_t>(4));
  EXPECT_EQ(tok.tokenToId("A"), std::optional<int32_t>(5 + 'A'));
  EXPECT_EQ(tok.tokenToId("\u0120"), std::optional<int32_t>(5 + ' '));
  EXPECT_FALSE(tok.tokenToId(" ").has_value());
  EXPECT_EQ(tok.idToToken(5), "\u0100");        // byte 0
  EXPECT_EQ(tok.idToToken(5 + '\n'), "\u010A"); // byte 10
  EXPECT_EQ(tok.idToToken(5 + 0x7F), "\u0121"); // DEL
  EXPECT_EQ(tok.idToToken(5 + 0xAD), "\u0143"); // soft hyphen
  EXPECT_EQ(tok.idToToken(5 + 0xE9), "\u00E9"); // printable Latin-1
  EXPECT_EQ(tok.idToToken(4), "<image>");
  EXPECT_THROW(tok.idToToken(261), mm::Error);
  EXPECT_THROW(tok.idToToken(-1), mm::Error);
}

TEST(Tokenizer, ByteLevelRoundTripsArbitraryText) {
  mm::Tokenizer tok = loadByteTokenizer();
  std::string allBytes;
  for (int b = 0; b < 256; ++b)
    allBytes.push_back(char(b));
  for (const std::string &text :
       {std::string(""), std::string("Hello, world!"),
        std::string(
            "Gr\u00fc\u00dfe, w\u00f6rld! \u4f60\u597d \U0001F642\n\tend  "),
        std::string("  leading and trailing spaces   "),
        std::string("it's   they'll\r\n\n 12345 abc123 ...!!"), allBytes,
        std::string("\xff\xfe broken \xc3 utf8 \xe2\x82")}) {
    std::vector<int32_t> ids = tok.encode(text, /*addSpecial=*/false);
    EXPECT_EQ(ids, byteIds(text));
    EXPECT_EQ(tok.decode(ids), text);
    std::vector<int32_t> withBos = tok.encode(text);
    ASSERT_FALSE(withBos.empty());
    EXPECT_EQ(withBos.front(), 1);
    EXPECT_EQ(tok.decode(withBos, /*skipSpecial=*/true), text);
    EXPECT_EQ(tok.decode(withBos), "<s>" + text);
  }
}

TEST(Tokenizer, ImageIsOneTokenAndBosIsAdded) {
  mm::Tokenizer tok = loadByteTokenizer();
  std::vector<int32_t> ids = tok.encode("<image>\nDescribe.");
  std::vector<int32_t> expected = {1, 4};
  for (int32_t id : byteIds("\nDescribe."))
    expected.push_back(id);
  EXPECT_EQ(ids, expected);

  EXPECT_EQ(tok.encode("<image><image>"), (std::vector<int32_t>{1, 4, 4}));
  EXPECT_EQ(tok.encode("a<image>b", false),
            (std::vector<int32_t>{5 + 'a', 4, 5 + 'b'}));
  // Only the exact spelling is special.
  EXPECT_EQ(tok.encode("<imag", false), byteIds("<imag"));
  EXPECT_EQ(tok.encode("<IMAGE>", false), byteIds("<IMAGE>"));
  // Other specials are split out too.
  EXPECT_EQ(tok.encode("x</s>", false), (std::vector<int32_t>{5 + 'x', 2}));

  EXPECT_EQ(tok.decode({1, 4, 5 + 'h', 5 + 'i', 2}), "<s><image>hi</s>");
  EXPECT_EQ(tok.decode({1, 4, 5 + 'h', 5 + 'i', 2}, true), "hi");
  EXPECT_THROW(tok.decode({261}), mm::Error);
  EXPECT_THROW(tok.decode({-5}), mm::Error);
}

//===----------------------------------------------------------------------===//
// A hand-written tokenizer with merges
//===----------------------------------------------------------------------===//

TEST(Tokenizer, TinyMergesEncodeAsExpected) {
  mm::Tokenizer tok = loadJson("tiny.json", tinyTokenizer());
  EXPECT_EQ(tok.vocabSize(), 22);
  EXPECT_FALSE(tok.bosId().has_value());
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(0)); // <|endoftext|>

  // "hello" -> h e l l o -> he l l o -> he ll o -> hell o -> hello
  // " world" -> Ġ w o r l d -> Ġw o r l d -> Ġw or l d -> Ġwor l d -> Ġwor ld
  // The top-ranked merge "o Ġ" must not apply across the word boundary.
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{12, 15, 16}));
  EXPECT_EQ(tok.decode({12, 15, 16}), "hello world");
  // Equal ranks merge leftmost first: l l l -> ll l.
  EXPECT_EQ(tok.encode("lll"), (std::vector<int32_t>{10, 3}));
  // Whitespace before a word leaves its last space to the word.
  EXPECT_EQ(tok.encode("a  b"), (std::vector<int32_t>{17, 5, 20}));
  EXPECT_EQ(tok.encode("a  "), (std::vector<int32_t>{17, 19}));
  // Added tokens are split out before BPE.
  EXPECT_EQ(tok.encode("hello<|endoftext|>"), (std::vector<int32_t>{12, 0}));
  // A character that is not in the vocabulary, without unk_token or byte
  // fallback, is dropped, as Hugging Face's BPE does.
  EXPECT_EQ(tok.encode("hello!"), (std::vector<int32_t>{12}));
  EXPECT_EQ(tok.encode("!hello"), (std::vector<int32_t>{12}));
}

TEST(Tokenizer, UnkTokenAndFuseUnk) {
  json j = tinyTokenizer();
  j["model"]["vocab"]["<unk>"] = 22;
  j["model"]["unk_token"] = "<unk>";
  mm::Tokenizer tok = loadJson("unk.json", j);
  EXPECT_EQ(tok.encode("a!?b"), (std::vector<int32_t>{17, 22, 22, 18}));
  j["model"]["fuse_unk"] = true;
  mm::Tokenizer fused = loadJson("fused.json", j);
  EXPECT_EQ(fused.encode("a!?b"), (std::vector<int32_t>{17, 22, 18}));
}

TEST(Tokenizer, TemplateSequencesAndStripping) {
  json j = tinyTokenizer();
  j["model"]["vocab"]["<bos>"] = 22;
  j["model"]["vocab"]["<tag>"] = 23;
  j["added_tokens"].push_back(
      {{"id", 22}, {"content", "<bos>"}, {"special", true}});
  j["added_tokens"].push_back({{"id", 23},
                               {"content", "<tag>"},
                               {"special", false},
                               {"lstrip", true},
                               {"rstrip", true}});
  // Llama-3 style: Sequence[Split, ByteLevel(use_regex=false)] and
  // Sequence[ByteLevel, TemplateProcessing(<bos> $A <|endoftext|>)].
  const char *llama3Regex =
      "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
      "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
  j["pre_tokenizer"] = {
      {"type", "Sequence"},
      {"pretokenizers", json::array({{{"type", "Split"},
                                      {"pattern", {{"Regex", llama3Regex}}},
                                      {"behavior", "Isolated"},
                                      {"invert", false}},
                                     {{"type", "ByteLevel"},
                                      {"add_prefix_space", false},
                                      {"use_regex", false}}})}};
  j["post_processor"] = {
      {"type", "Sequence"},
      {"processors",
       json::array(
           {{{"type", "ByteLevel"}, {"trim_offsets", false}},
            {{"type", "TemplateProcessing"},
             {"single",
              json::array(
                  {{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                   {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                   {{"SpecialToken",
                     {{"id", "<|endoftext|>"}, {"type_id", 0}}}}})},
             {"pair", json::array()},
             {"special_tokens",
              {{"<bos>",
                {{"id", "<bos>"}, {"ids", {22}}, {"tokens", {"<bos>"}}}},
               {"<|endoftext|>",
                {{"id", "<|endoftext|>"},
                 {"ids", {0}},
                 {"tokens", {"<|endoftext|>"}}}}}}}})}};
  mm::Tokenizer tok = loadJson("llama3ish.json", j);
  EXPECT_EQ(tok.bosId(), std::optional<int32_t>(22));
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(0));
  EXPECT_EQ(tok.encode("hello world"),
            (std::vector<int32_t>{22, 12, 15, 16, 0}));
  EXPECT_EQ(tok.encode("hello world", false),
            (std::vector<int32_t>{12, 15, 16}));
  // lstrip/rstrip swallow the spaces around <tag>.
  EXPECT_EQ(tok.encode("hello  <tag>  hello", false),
            (std::vector<int32_t>{12, 23, 12}));
  // skipSpecial drops special tokens only.
  EXPECT_EQ(tok.decode({22, 12, 23, 0}, true), "hello<tag>");
}

TEST(Tokenizer, IgnoreMergesAndByteFallback) {
  json j = tinyTokenizer();
  j["model"]["merges"].erase(4); // "hell o"
  mm::Tokenizer plain = loadJson("nohello.json", j);
  EXPECT_EQ(plain.encode("hello"), (std::vector<int32_t>{11, 4}));
  j["model"]["ignore_merges"] = true;
  mm::Tokenizer whole = loadJson("ignore.json", j);
  EXPECT_EQ(whole.encode("hello"), (std::vector<int32_t>{12}));

  // Not byte-level: characters missing from the vocabulary fall back to
  // <0xXX> byte tokens.
  json k = tinyTokenizer();
  k["pre_tokenizer"] = nullptr;
  k["decoder"] = nullptr;
  k["model"]["vocab"]["<0x21>"] = 22;
  k["model"]["vocab"]["<0xC3>"] = 23;
  k["model"]["vocab"]["<0xA9>"] = 24;
  k["model"]["byte_fallback"] = true;
  mm::Tokenizer fb = loadJson("fallback.json", k);
  EXPECT_EQ(fb.encode("he!\u00e9"), (std::vector<int32_t>{9, 22, 23, 24}));
}

TEST(Tokenizer, AddPrefixSpace) {
  json j = tinyTokenizer();
  j["pre_tokenizer"]["add_prefix_space"] = true;
  mm::Tokenizer tok = loadJson("prefix.json", j);
  // " world" after the prefix space: Ġwor ld.
  EXPECT_EQ(tok.encode("world"), (std::vector<int32_t>{15, 16}));
  EXPECT_EQ(tok.encode(" world"), (std::vector<int32_t>{15, 16}));
}

TEST(Tokenizer, LongWordMergesCorrectly) {
  // 4000 'l's: merges pair them up (leftmost first) into 2000 "ll".
  mm::Tokenizer tok = loadJson("long.json", tinyTokenizer());
  std::vector<int32_t> ids = tok.encode(std::string(4000, 'l'));
  EXPECT_EQ(ids, std::vector<int32_t>(2000, 10));
  ids = tok.encode(std::string(4001, 'l'));
  ASSERT_EQ(ids.size(), 2001u);
  EXPECT_EQ(ids.back(), 3);
}

TEST(Tokenizer, FromJsonText) {
  mm::Tokenizer tok =
      mm::Tokenizer::fromJson(tinyTokenizer().dump(), "model.so (embedded)");
  EXPECT_EQ(tok.path(), "model.so (embedded)");
  EXPECT_EQ(tok.encode("hello world"), (std::vector<int32_t>{12, 15, 16}));
  try {
    mm::Tokenizer::fromJson("{\"model\": 3}", "model.so (embedded)");
    ADD_FAILURE() << "expected mm::Error";
  } catch (const mm::Error &e) {
    EXPECT_NE(std::string(e.what()).find("model.so (embedded)"),
              std::string::npos)
        << e.what();
  }
}

//===----------------------------------------------------------------------===//
// Load errors
//===----------------------------------------------------------------------===//

TEST(Tokenizer, MissingFile) {
  std::string path = tempPath("absent.tokenizer.json");
  try {
    mm::Tokenizer::fromFile(path);
    ADD_FAILURE() << "expected mm::Error";
  } catch (const mm::Error &e) {
    EXPECT_NE(std::string(e.what()).find("absent.tokenizer.json"),
              std::string::npos);
  }
}

TEST(Tokenizer, MalformedFiles) {
  expectLoadError("truncated.json", "{\"model\": {\"type\": \"BPE\"",
                  {"not valid JSON"});
  expectLoadError("empty.json", "", {"not valid JSON"});
  expectLoadError("array.json", "[1, 2]", {"expected an object"});
  expectLoadError("nomodel.json", R"({"version": "1.0"})",
                  {"missing \"model\""});
  expectLoadError("wordpiece.json",
                  R"({"model": {"type": "WordPiece", "vocab": {}}})",
                  {"unsupported model type \"WordPiece\""});
  expectLoadError("novocab.json", R"({"model": {"type": "BPE"}})", {"vocab"});

  json j = tinyTokenizer();
  j["model"]["merges"].push_back("x y");
  expectLoadError("badmerge.json", j.dump(),
                  {"merge #11", "\"x\"", "not in the vocabulary"});
  j = tinyTokenizer();
  j["model"]["merges"].push_back("a b"); // "ab" is not in the vocabulary
  expectLoadError("badmerged.json", j.dump(),
                  {"merge #11", "\"ab\"", "not in the vocabulary"});
  j = tinyTokenizer();
  j["model"]["merges"].push_back("ab");
  expectLoadError("mergeform.json", j.dump(), {"merge #11", "\"a b\""});
  j = tinyTokenizer();
  j["model"]["merges"].push_back(json::array({"a"}));
  expectLoadError("mergearr.json", j.dump(), {"merge #11"});

  j = tinyTokenizer();
  j["model"]["vocab"]["x"] = 1000;
  expectLoadError("bigid.json", j.dump(), {"\"x\"", "1000", "out of range"});
  j = tinyTokenizer();
  j["model"]["vocab"]["x"] = -1;
  expectLoadError("negid.json", j.dump(), {"\"x\"", "-1", "out of range"});
  j = tinyTokenizer();
  j["model"]["vocab"]["x"] = "7";
  expectLoadError("strid.json", j.dump(), {"\"x\"", "expected an integer"});
  j = tinyTokenizer();
  j["model"]["vocab"]["x"] = 3;
  expectLoadError("dupid.json", j.dump(), {"share id 3"});
  j = tinyTokenizer();
  j["added_tokens"][0]["id"] = 99;
  expectLoadError("addedid.json", j.dump(),
                  {"added_tokens[0]", "99", "out of range"});
  j = tinyTokenizer();
  j["model"]["unk_token"] = "<nope>";
  expectLoadError("unk.json", j.dump(), {"<nope>"});
  j = tinyTokenizer();
  j["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  expectLoadError("scripts.json", j.dump(),
                  {"unsupported pre_tokenizer type \"UnicodeScripts\""});
  j = tinyTokenizer();
  j["pre_tokenizer"] = {{"type", "Split"},
                        {"pattern", {{"Regex", "\\d+"}}},
                        {"behavior", "Isolated"},
                        {"invert", false}};
  expectLoadError("regex.json", j.dump(), {"unsupported Split regex"});
  j = tinyTokenizer();
  j["normalizer"] = {{"type", "BertNormalizer"}};
  expectLoadError("bertnorm.json", j.dump(), {"unsupported normalizer"});
  j = tinyTokenizer();
  j["normalizer"] = {{"type", "Replace"},
                     {"pattern", {{"Regex", " +"}}},
                     {"content", " "}};
  expectLoadError("replace.json", j.dump(), {"Regex pattern"});
  j = tinyTokenizer();
  j["decoder"] = {{"type", "WordPiece"}};
  expectLoadError("wpdecoder.json", j.dump(),
                  {"unsupported decoder type \"WordPiece\""});
  j = tinyTokenizer();
  j["post_processor"] = {
      {"type", "TemplateProcessing"},
      {"single",
       json::array({{{"SpecialToken", {{"id", "<x>"}, {"type_id", 0}}}},
                    {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
      {"special_tokens", json::object()}};
  expectLoadError("template.json", j.dump(), {"\"<x>\"", "special_tokens"});
  j = tinyTokenizer();
  j["model"]["continuing_subword_prefix"] = "##";
  expectLoadError("prefix.json", j.dump(), {"continuing_subword_prefix"});
}
