//===- TokenizerToolsTest.cpp - BPE trainer, mmdata tokenizer/tokenize ----===//
//
// mm::tokenizer::trainByteLevelBpe (checked against a naive re-count-every-
// round trainer), mm::tokenizerTrainCommand / mm::tokenizeCommand, and
// Tokenizer::fromVocabMerges on small hand-written GPT-2-style files.
//
//===----------------------------------------------------------------------===//

#include "mm/Error.h"
#include "mm/Tokenizer.h"
#include "mm/TokenizerTools.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using nlohmann::json;
using Ids = std::vector<int32_t>;

namespace {

class TempDir {
public:
  TempDir() {
    std::string base = ::testing::TempDir();
    if (!base.empty() && base.back() != '/')
      base += '/';
    std::string templ = base + "mm_tok_tools_XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data()))
      ADD_FAILURE() << "mkdtemp " << templ;
    path_ = buf.data();
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0) {
    }
  }
  std::string operator/(const std::string &name) const {
    return path_ + "/" + name;
  }

private:
  std::string path_;
};

void writeText(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

std::string readText(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A small corpus: sentences about coloured shapes, like llava-tiny's data,
/// with numbers, punctuation, accents and CJK.
std::vector<std::string> corpus() {
  const char *colors[] = {"red", "green", "blue", "yellow", "purple"};
  const char *shapes[] = {"circle", "square", "triangle", "star"};
  const char *extras[] = {"It's bright.", "Caf\u00e9 na\u00efve!",
                          "\u65e5\u672c\u8a9e\u3067\u3059\u3002",
                          "Numbers: 12, 345 and 6789.", "  two  spaces\n\n"};
  std::vector<std::string> out;
  for (int i = 0; i < 200; ++i) {
    std::string s = "The image shows a " + std::string(colors[i % 5]) + " " +
                    shapes[(i / 5) % 4] + " at (" + std::to_string(i % 17) +
                    ", " + std::to_string(i % 13) + "). " + extras[i % 5];
    out.push_back(s);
  }
  return out;
}

/// The reference trainer: re-counts every pair each round (see the rules in
/// mm/Tokenizer.h). Returns the merges as "a b" in byte-level spelling.
std::vector<std::string> naiveTrain(const std::vector<std::string> &texts,
                                    size_t maxMerges,
                                    const std::vector<std::string> &specials) {
  const auto &alphabet = mm::tokenizer::byteLevelAlphabet();
  std::map<std::string, int64_t> counts;
  for (const std::string &t : texts) {
    // Split at the specials first.
    std::vector<std::string> segments(1);
    for (size_t i = 0; i < t.size();) {
      bool hit = false;
      for (const std::string &s : specials)
        if (t.compare(i, s.size(), s) == 0) {
          segments.emplace_back();
          i += s.size();
          hit = true;
          break;
        }
      if (!hit)
        segments.back() += t[i++];
    }
    for (const std::string &seg : segments)
      for (std::string_view w : mm::tokenizer::splitGpt2(seg))
        ++counts[std::string(w)];
  }
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto &[w, n] : counts) {
    std::vector<std::string> syms;
    for (unsigned char c : w)
      syms.push_back(alphabet[c]);
    words.emplace_back(syms, n);
  }
  std::vector<std::string> merges;
  while (merges.size() < maxMerges) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto &[syms, n] : words)
      for (size_t j = 0; j + 1 < syms.size(); ++j)
        pairs[{syms[j], syms[j + 1]}] += n;
    const std::pair<const std::pair<std::string, std::string>, int64_t> *best =
        nullptr;
    for (const auto &p : pairs) // map order: ties go to the smallest pair
      if (!best || p.second > best->second)
        best = &p;
    if (!best || best->second < 2)
      break;
    auto [a, b] = best->first;
    merges.push_back(a + " " + b);
    for (auto &[syms, n] : words) {
      std::vector<std::string> out;
      for (size_t j = 0; j < syms.size(); ++j) {
        if (j + 1 < syms.size() && syms[j] == a && syms[j + 1] == b) {
          out.push_back(a + b);
          ++j;
        } else {
          out.push_back(syms[j]);
        }
      }
      syms = std::move(out);
    }
  }
  return merges;
}

std::string captureStdout(int (*cmd)(const std::vector<std::string> &),
                          const std::vector<std::string> &args) {
  ::testing::internal::CaptureStdout();
  int rc = -1;
  try {
    rc = cmd(args);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  return out;
}

void expectErrorMentioning(const std::function<void()> &f,
                           std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected mm::Error";
  } catch (const mm::Error &e) {
    for (const std::string &n : needles)
      EXPECT_NE(std::string(e.what()).find(n), std::string::npos)
          << "'" << e.what() << "' does not mention '" << n << "'";
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// The trainer
//===----------------------------------------------------------------------===//

TEST(TokenizerTrainer, MatchesTheNaiveTrainer) {
  std::vector<std::string> texts = corpus();
  mm::tokenizer::BpeTrainOptions options;
  options.vocabSize = 261 + 100;
  mm::tokenizer::BpeTrainStats stats;
  json doc = json::parse(mm::tokenizer::trainByteLevelBpe(texts, options, &stats));
  std::vector<std::string> merges = doc["model"]["merges"];
  EXPECT_EQ(merges, naiveTrain(texts, 100, options.specials));
  EXPECT_EQ(stats.merges, merges.size());
  EXPECT_EQ(stats.vocabSize, 261 + 100);
  EXPECT_EQ(doc["model"]["vocab"].size(), size_t(261 + 100));

  // Until no pair is seen twice.
  options.vocabSize = 5000;
  doc = json::parse(mm::tokenizer::trainByteLevelBpe(texts, options, &stats));
  merges = doc["model"]["merges"].get<std::vector<std::string>>();
  EXPECT_GT(merges.size(), 100u);
  EXPECT_LT(stats.vocabSize, 5000);
  EXPECT_EQ(merges, naiveTrain(texts, 5000, options.specials));
}

TEST(TokenizerTrainer, IsDeterministicAndLoadable) {
  std::vector<std::string> texts = corpus();
  mm::tokenizer::BpeTrainOptions options;
  options.vocabSize = 350;
  std::string a = mm::tokenizer::trainByteLevelBpe(texts, options);
  std::string b = mm::tokenizer::trainByteLevelBpe(texts, options);
  EXPECT_EQ(a, b);
  // Word order does not matter either.
  std::vector<std::string> reversed(texts.rbegin(), texts.rend());
  EXPECT_EQ(mm::tokenizer::trainByteLevelBpe(reversed, options), a);

  mm::Tokenizer tok = mm::Tokenizer::fromJson(a, "trained");
  EXPECT_EQ(tok.vocabSize(), 350);
  const char *specials[] = {"<unk>", "<s>", "</s>", "<pad>", "<image>"};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(tok.tokenToId(specials[i]), std::optional<int32_t>(i));
    EXPECT_TRUE(tok.isSpecial(i));
  }
  EXPECT_EQ(tok.tokenToId("A"), std::optional<int32_t>(5 + 'A'));
  EXPECT_EQ(tok.tokenToId("\u0120"), std::optional<int32_t>(5 + ' '));
  EXPECT_EQ(tok.bosId(), std::optional<int32_t>(1));
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(2));
}

TEST(TokenizerTrainer, RoundTripsAndCompresses) {
  std::vector<std::string> texts = corpus();
  mm::tokenizer::BpeTrainOptions options;
  options.vocabSize = 512;
  mm::Tokenizer tok = mm::Tokenizer::fromJson(
      mm::tokenizer::trainByteLevelBpe(texts, options), "trained");
  size_t bytes = 0, tokens = 0;
  for (const std::string &t : texts) {
    Ids ids = tok.encode(t, false);
    EXPECT_EQ(tok.decode(ids), t);
    bytes += t.size();
    tokens += ids.size();
  }
  EXPECT_LT(tokens * 3, bytes) << tokens << " tokens for " << bytes << " bytes";
  // Unseen text, every byte value, broken UTF-8.
  std::string all;
  for (int b = 0; b < 256; ++b)
    all.push_back(char(b));
  for (const std::string &t :
       {std::string("A purple hexagon? \U0001F642 \u00c5ngstr\u00f6m 99"), all,
        std::string("\xff\xfe broken \xc3 utf8 \xe2\x82"), std::string("")}) {
    Ids ids = tok.encode(t);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids.front(), 1);
    EXPECT_EQ(tok.decode(ids, true), t);
  }
}

TEST(TokenizerTrainer, HandlesImageAndSpecials) {
  std::vector<std::string> texts = corpus();
  for (std::string &t : texts)
    t = "<image>\n" + t + "<image>";
  mm::tokenizer::BpeTrainOptions options;
  options.vocabSize = 450;
  options.specials.push_back("<video>");
  std::string text = mm::tokenizer::trainByteLevelBpe(texts, options);
  json doc = json::parse(text);
  // Nothing was learned across or inside the markers.
  for (const auto &[token, id] : doc["model"]["vocab"].items()) {
    if (id.get<int>() < 6)
      continue;
    EXPECT_EQ(token.find("image>"), std::string::npos) << token;
    EXPECT_EQ(token.find("<image"), std::string::npos) << token;
  }
  mm::Tokenizer tok = mm::Tokenizer::fromJson(text, "trained");
  EXPECT_EQ(tok.tokenToId("<video>"), std::optional<int32_t>(5));
  EXPECT_EQ(tok.tokenToId("A"), std::optional<int32_t>(6 + 'A'));
  Ids ids = tok.encode("<image>\nThe image<video>");
  ASSERT_GE(ids.size(), 4u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 4);
  EXPECT_EQ(ids.back(), 5);
  EXPECT_EQ(tok.decode(ids, true), "\nThe image");
  EXPECT_EQ(tok.decode(ids), "<s><image>\nThe image<video>");
  // The same training data without the markers gives the same merges.
  std::vector<std::string> plain = corpus();
  for (std::string &t : plain)
    t = "\n" + t;
  json plainDoc = json::parse(mm::tokenizer::trainByteLevelBpe(plain, options));
  EXPECT_EQ(doc["model"]["merges"], plainDoc["model"]["merges"]);
}

TEST(TokenizerTrainer, Limits) {
  mm::tokenizer::BpeTrainOptions options;
  options.vocabSize = 260;
  EXPECT_THROW(mm::tokenizer::trainByteLevelBpe({"abc"}, options), mm::Error);
  // Too little text to reach the size: stops when no pair repeats.
  options.vocabSize = 1000;
  mm::tokenizer::BpeTrainStats stats;
  std::string text =
      mm::tokenizer::trainByteLevelBpe({"abab abab"}, options, &stats);
  EXPECT_LT(stats.vocabSize, 1000);
  EXPECT_GT(stats.merges, 0u);
  mm::Tokenizer tok = mm::Tokenizer::fromJson(text, "small");
  EXPECT_EQ(tok.encode("abab", false).size(), 1u);
  options.bos = "<nope>";
  EXPECT_THROW(mm::tokenizer::trainByteLevelBpe({"abc"}, options), mm::Error);
}

//===----------------------------------------------------------------------===//
// mmdata tokenizer / mmdata tokenize
//===----------------------------------------------------------------------===//

TEST(TokenizerTools, TrainCommandWritesALoadableTokenizer) {
  TempDir dir;
  json records = json::array();
  for (int i = 0; i < 50; ++i)
    records.push_back(
        {{"id", std::to_string(i)},
         {"image", "img.png"},
         {"conversations",
          json::array({{{"from", "human"},
                        {"value", "<image>\nWhat shape is shown?"}},
                       {{"from", "gpt"},
                        {"value", "A " + std::string(i % 2 ? "red" : "blue") +
                                      " circle near the top."}}})}});
  writeText(dir / "data.json", records.dump());
  writeText(dir / "extra.txt",
            "A chat between a curious human and an artificial intelligence "
            "assistant. USER: ASSISTANT:\n");
  std::string out = dir / "tok.json";
  EXPECT_EQ(mm::tokenizerTrainCommand({"--data", dir / "data.json", "--data",
                                       dir / "extra.txt", "--vocab-size",
                                       "300", "--out", out, "--special",
                                       "<image>,<extra>"}),
            0);
  mm::Tokenizer tok = mm::Tokenizer::fromFile(out);
  EXPECT_EQ(tok.vocabSize(), 300);
  EXPECT_EQ(tok.tokenToId("<image>"), std::optional<int32_t>(4));
  EXPECT_EQ(tok.tokenToId("<extra>"), std::optional<int32_t>(5));
  std::string prompt = "<image>\nWhat shape is shown? A red circle.";
  Ids ids = tok.encode(prompt);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(ids[1], 4);
  EXPECT_LT(ids.size(), prompt.size() / 2);
  EXPECT_EQ(tok.decode(ids, true), "\nWhat shape is shown? A red circle.");

  // The same again gives the same bytes.
  std::string again = dir / "tok2.json";
  mm::tokenizerTrainCommand({"--data", dir / "data.json", "--data",
                             dir / "extra.txt", "--vocab-size", "300", "--out",
                             again, "--special", "<image>,<extra>"});
  EXPECT_EQ(readText(out), readText(again));

  // mmdata tokenize prints what encode gives.
  std::string expected;
  for (int32_t id : ids)
    expected += (expected.empty() ? "" : ",") + std::to_string(id);
  EXPECT_EQ(captureStdout(mm::tokenizeCommand, {"--tokenizer", out, prompt}),
            expected + "\n");
  Ids noSpecial = tok.encode(prompt, false);
  EXPECT_EQ(noSpecial.size() + 1, ids.size());
  std::string line =
      captureStdout(mm::tokenizeCommand, {"--no-special", "--tokenizer", out, prompt});
  EXPECT_EQ(line.substr(0, line.find(',')), std::to_string(noSpecial[0]));
}

TEST(TokenizerTools, CommandErrors) {
  TempDir dir;
  writeText(dir / "t.txt", "some text some text");
  expectErrorMentioning(
      [&] { mm::tokenizerTrainCommand({"--data", dir / "t.txt"}); },
      {"--vocab-size", "usage"});
  expectErrorMentioning(
      [&] {
        mm::tokenizerTrainCommand({"--data", dir / "t.txt", "--vocab-size",
                                   "100", "--out", dir / "o.json"});
      },
      {"too small"});
  expectErrorMentioning(
      [&] {
        mm::tokenizerTrainCommand({"--data", dir / "t.txt", "--vocab-size",
                                   "x", "--out", dir / "o.json"});
      },
      {"--vocab-size", "'x'"});
  expectErrorMentioning([&] { mm::tokenizerTrainCommand({"--bogus"}); },
                        {"unknown option '--bogus'"});
  expectErrorMentioning(
      [&] {
        mm::tokenizerTrainCommand({"--data", dir / "missing.txt",
                                   "--vocab-size", "300", "--out",
                                   dir / "o.json"});
      },
      {"missing.txt"});
  writeText(dir / "bad.json", "{\"not\": \"a list\"}");
  expectErrorMentioning(
      [&] {
        mm::tokenizerTrainCommand({"--data", dir / "bad.json", "--vocab-size",
                                   "300", "--out", dir / "o.json"});
      },
      {"bad.json"});

  expectErrorMentioning([&] { mm::tokenizeCommand({"text"}); }, {"usage"});
  expectErrorMentioning(
      [&] { mm::tokenizeCommand({"--tokenizer", dir / "x.json"}); },
      {"TEXT"});
  expectErrorMentioning(
      [&] { mm::tokenizeCommand({"--vocab", dir / "v.json", "hi"}); },
      {"--merges"});
  expectErrorMentioning(
      [&] { mm::tokenizeCommand({"--tokenizer", dir / "x.json", "a", "b"}); },
      {"more than one TEXT"});
  expectErrorMentioning(
      [&] { mm::tokenizeCommand({"--tokenizer", dir / "x.json", "hi"}); },
      {"x.json"});
}

//===----------------------------------------------------------------------===//
// GPT-2's vocabulary + merges pair
//===----------------------------------------------------------------------===//

TEST(TokenizerTools, VocabMergesPair) {
  TempDir dir;
  json vocab = json::object();
  const auto &alphabet = mm::tokenizer::byteLevelAlphabet();
  for (int b = 0; b < 256; ++b)
    vocab[alphabet[b]] = b;
  vocab["\u0120w"] = 256;
  vocab["or"] = 257;
  vocab["\u0120wor"] = 258;
  vocab["ld"] = 259;
  vocab["\u0120world"] = 260;
  vocab["<|endoftext|>"] = 261;
  writeText(dir / "encoder.json", vocab.dump());
  writeText(dir / "vocab.bpe", "#version: 0.2\n\u0120 w\no r\n\u0120w or\nl d\n"
                               "\u0120wor ld\n");
  mm::Tokenizer tok = mm::Tokenizer::fromVocabMerges(dir / "encoder.json",
                                                     dir / "vocab.bpe");
  EXPECT_EQ(tok.vocabSize(), 262);
  EXPECT_EQ(tok.encode("a world"), (Ids{'a', 260}));
  EXPECT_EQ(tok.encode("a world<|endoftext|>"), (Ids{'a', 260, 261}));
  EXPECT_EQ(tok.decode({'a', 260, 261}, true), "a world");
  EXPECT_EQ(captureStdout(mm::tokenizeCommand,
                          {"--vocab", dir / "encoder.json", "--merges",
                           dir / "vocab.bpe", "a world"}),
            "97,260\n");

  writeText(dir / "bad.bpe", "#version: 0.2\n\u0120 w\nor\n");
  expectErrorMentioning(
      [&] {
        mm::Tokenizer::fromVocabMerges(dir / "encoder.json", dir / "bad.bpe");
      },
      {"bad.bpe:3", "\"or\""});
  writeText(dir / "unknown.bpe", "x y\n");
  expectErrorMentioning(
      [&] {
        mm::Tokenizer::fromVocabMerges(dir / "encoder.json",
                                       dir / "unknown.bpe");
      },
      {"unknown.bpe:1", "\"xy\"", "encoder.json"});
  writeText(dir / "list.json", "[1, 2]");
  expectErrorMentioning(
      [&] {
        mm::Tokenizer::fromVocabMerges(dir / "list.json", dir / "vocab.bpe");
      },
      {"list.json", "expected an object"});
  expectErrorMentioning(
      [&] {
        mm::Tokenizer::fromVocabMerges(dir / "encoder.json", dir / "none.bpe");
      },
      {"none.bpe"});
}
