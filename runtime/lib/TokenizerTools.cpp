//===- TokenizerTools.cpp - mmdata tokenizer / mmdata tokenize -------------===//
//
// `mmdata tokenizer`: a byte-level BPE trainer (GPT-2 style) over the text of
// LLaVA conversation JSON files or plain text files, writing a Hugging Face
// tokenizer.json with the special tokens the tiny models use (<unk>, <s>,
// </s>, <pad>, <image> as ids 0..4, then the 256 byte symbols, then merges).
// `mmdata tokenize`: prints the ids a tokenizer.json gives for a text.
//
//===----------------------------------------------------------------------===//
#include "mm/TokenizerTools.h"
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Tokenizer.h"
#include "AtomicFile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

namespace mm {
namespace {

const char *kSpecials[] = {"<unk>", "<s>", "</s>", "<pad>", "<image>"};

/// GPT-2's reversible map from bytes to printable characters (as UTF-8).
std::vector<std::string> byteSymbols() {
  std::vector<int> printable;
  for (int b = '!'; b <= '~'; ++b) printable.push_back(b);
  for (int b = 0xA1; b <= 0xAC; ++b) printable.push_back(b);
  for (int b = 0xAE; b <= 0xFF; ++b) printable.push_back(b);
  std::vector<int> code(256, -1);
  for (int b : printable) code[b] = b;
  int next = 256;
  for (int b = 0; b < 256; ++b)
    if (code[b] < 0) code[b] = next++;
  std::vector<std::string> out(256);
  for (int b = 0; b < 256; ++b) {
    int c = code[b];
    std::string s;
    if (c < 0x80) s += (char)c;
    else {
      s += (char)(0xC0 | (c >> 6));
      s += (char)(0x80 | (c & 0x3F));
    }
    out[b] = s;
  }
  return out;
}

enum class CharClass { Space, Letter, Digit, Other };
CharClass classOf(unsigned char c) {
  if (c == ' ' || c == '\n' || c == '\t' || c == '\r') return CharClass::Space;
  if (std::isalpha(c) || c >= 0x80) return CharClass::Letter;
  if (std::isdigit(c)) return CharClass::Digit;
  return CharClass::Other;
}

/// GPT-2-like words: an optional leading space and a run of one class.
std::vector<std::string> words(const std::string &text) {
  std::vector<std::string> out;
  size_t i = 0;
  while (i < text.size()) {
    size_t start = i;
    if (text[i] == ' ' && i + 1 < text.size() && classOf(text[i + 1]) != CharClass::Space) ++i;
    CharClass k = classOf(text[i]);
    while (i < text.size() && classOf(text[i]) == k) ++i;
    out.push_back(text.substr(start, i - start));
  }
  return out;
}

std::vector<std::string> trainingTexts(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the training text");
  std::stringstream buf;
  buf << in.rdbuf();
  std::string text = buf.str();
  std::vector<std::string> out;
  if (path.size() > 5 && path.compare(path.size() - 5, 5, ".json") == 0) {
    for (const ConversationRecord &r : parseConversations(text, path))
      for (const auto &turn : r.turns) {
        std::string v = turn.value;
        for (size_t p; (p = v.find("<image>")) != std::string::npos;) v.erase(p, 7);
        out.push_back(v);
      }
  } else {
    out.push_back(text);
  }
  return out;
}

struct Options {
  std::vector<std::string> data;
  std::string out;
  int vocabSize = 512;
};

} // namespace

int tokenizerTrainCommand(const std::vector<std::string> &args) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size()) throw Error(args[i] + " needs a value");
      return args[++i];
    };
    if (args[i] == "--data") o.data.push_back(value());
    else if (args[i] == "--out") o.out = value();
    else if (args[i] == "--vocab-size") o.vocabSize = std::stoi(value());
    else throw Error("mmdata tokenizer: unknown option '" + args[i] +
                     "'\nusage: mmdata tokenizer --data FILE [--data FILE ...] --vocab-size N --out tokenizer.json");
  }
  const int base = 5 + 256;
  if (o.data.empty() || o.out.empty() || o.vocabSize < base)
    throw Error("mmdata tokenizer needs --data, --out and a --vocab-size of at least " + std::to_string(base));

  // Count words, each as a sequence of byte symbols.
  std::vector<std::string> bytes = byteSymbols();
  std::map<std::string, int64_t> counts;
  for (const std::string &path : o.data)
    for (const std::string &text : trainingTexts(path))
      for (const std::string &w : words(text)) ++counts[w];
  std::vector<std::vector<std::string>> symbols;
  std::vector<int64_t> freq;
  for (const auto &[w, n] : counts) {
    std::vector<std::string> s;
    for (unsigned char c : w) s.push_back(bytes[c]);
    symbols.push_back(std::move(s));
    freq.push_back(n);
  }

  // Merge the most frequent adjacent pair until the vocabulary is full; ties
  // go to the smallest pair, so training is deterministic.
  std::vector<std::pair<std::string, std::string>> merges;
  while (base + (int)merges.size() < o.vocabSize) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (size_t w = 0; w < symbols.size(); ++w)
      for (size_t j = 0; j + 1 < symbols[w].size(); ++j) pairs[{symbols[w][j], symbols[w][j + 1]}] += freq[w];
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;
    if (best->second < 2) break;
    auto [a, b] = best->first;
    merges.push_back(best->first);
    for (auto &s : symbols) {
      std::vector<std::string> merged;
      for (size_t j = 0; j < s.size(); ++j) {
        if (j + 1 < s.size() && s[j] == a && s[j + 1] == b) {
          merged.push_back(a + b);
          ++j;
        } else {
          merged.push_back(s[j]);
        }
      }
      s = std::move(merged);
    }
  }

  nlohmann::ordered_json vocab = nlohmann::ordered_json::object();
  nlohmann::json added = nlohmann::json::array();
  int id = 0;
  for (const char *s : kSpecials) {
    vocab[s] = id;
    added.push_back({{"id", id}, {"content", s}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                     {"normalized", false}, {"special", true}});
    ++id;
  }
  for (const std::string &b : bytes) vocab[b] = id++;
  nlohmann::json mergeList = nlohmann::json::array();
  for (const auto &[a, b] : merges) {
    if (!vocab.contains(a + b)) vocab[a + b] = id++;
    mergeList.push_back(a + " " + b);
  }
  nlohmann::json byteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                              {"use_regex", true}};
  nlohmann::json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  nlohmann::ordered_json doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byteLevel},
      {"post_processor",
       {{"type", "TemplateProcessing"},
        {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
      {"decoder", byteLevel},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", false},
        {"vocab", vocab}, {"merges", mergeList}}}};
  std::string textOut = doc.dump(1) + "\n";
  detail::AtomicFile file(o.out);
  file.write(textOut.data(), textOut.size());
  file.commit();
  Tokenizer check = Tokenizer::fromFile(o.out); // what we wrote must load
  std::fprintf(stderr, "mmdata: wrote %s (%d tokens: 5 special, 256 bytes, %zu merges) from %zu distinct words\n",
               o.out.c_str(), check.vocabSize(), merges.size(), counts.size());
  return 0;
}

int tokenizeCommand(const std::vector<std::string> &args) {
  std::string path, text;
  bool special = true, haveText = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--tokenizer" && i + 1 < args.size()) path = args[++i];
    else if (args[i] == "--no-special") special = false;
    else if (!args[i].empty() && args[i][0] == '-' && !haveText)
      throw Error("mmdata tokenize: unknown option '" + args[i] +
                  "'\nusage: mmdata tokenize --tokenizer tokenizer.json [--no-special] TEXT");
    else { text = args[i]; haveText = true; }
  }
  if (path.empty() || !haveText)
    throw Error("usage: mmdata tokenize --tokenizer tokenizer.json [--no-special] TEXT");
  std::vector<int32_t> ids = Tokenizer::fromFile(path).encode(text, special);
  for (size_t i = 0; i < ids.size(); ++i) std::printf("%s%d", i ? "," : "", ids[i]);
  std::printf("\n");
  return 0;
}

} // namespace mm
