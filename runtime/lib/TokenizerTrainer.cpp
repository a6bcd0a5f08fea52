//===- TokenizerTrainer.cpp - byte-level BPE training ---------------------===//
//
// mm::tokenizer::trainByteLevelBpe (see mm/Tokenizer.h): GPT-2-style BPE
// training over byte-level symbols. Pair counts are kept incrementally (each
// merge only revisits the words that hold the merged pair) and the best pair
// comes from a lazily updated heap, so training costs about
// O(total word length + merges * affected words).
//
//===----------------------------------------------------------------------===//

#include "mm/Error.h"
#include "mm/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <queue>
#include <unordered_map>

namespace mm {
namespace tokenizer {

namespace {

using Key = uint64_t;
Key pairKey(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}
int32_t leftOf(Key k) { return int32_t(k >> 32); }
int32_t rightOf(Key k) { return int32_t(k & 0xFFFFFFFFu); }

struct Word {
  std::vector<int32_t> syms;
  int64_t freq = 0;
};

/// Splits TEXT at the special tokens (leftmost, longest first) and counts
/// the GPT-2 pre-tokenized words of the text in between.
void countWords(std::string_view text, const std::vector<std::string> &specials,
                std::unordered_map<std::string, int64_t> &counts) {
  auto addSegment = [&](std::string_view seg) {
    for (std::string_view w : splitGpt2(seg))
      ++counts[std::string(w)];
  };
  size_t start = 0;
  for (size_t i = 0; i < text.size();) {
    const std::string *best = nullptr;
    for (const std::string &s : specials)
      if (!s.empty() && text.compare(i, s.size(), s) == 0 &&
          (!best || s.size() > best->size()))
        best = &s;
    if (!best) {
      ++i;
      continue;
    }
    addSegment(text.substr(start, i - start));
    i += best->size();
    start = i;
  }
  addSegment(text.substr(start));
}

} // namespace

std::string trainByteLevelBpe(const std::vector<std::string> &texts,
                              const BpeTrainOptions &options,
                              BpeTrainStats *stats) {
  const std::vector<std::string> &specials = options.specials;
  for (size_t i = 0; i < specials.size(); ++i) {
    if (specials[i].empty())
      throw Error("tokenizer training: an empty special token");
    for (size_t j = 0; j < i; ++j)
      if (specials[j] == specials[i])
        throw Error("tokenizer training: special token \"" + specials[i] +
                    "\" is listed twice");
  }
  if (!options.bos.empty() &&
      std::find(specials.begin(), specials.end(), options.bos) ==
          specials.end())
    throw Error("tokenizer training: the BOS token \"" + options.bos +
                "\" is not one of the special tokens");
  const int32_t base = int32_t(specials.size()) + 256;
  if (options.vocabSize < base)
    throw Error("tokenizer training: a vocabulary size of " +
                std::to_string(options.vocabSize) + " is too small: " +
                std::to_string(specials.size()) +
                " special tokens and 256 bytes need at least " +
                std::to_string(base));

  // --- words ----------------------------------------------------------------
  std::unordered_map<std::string, int64_t> counts;
  for (const std::string &t : texts)
    countWords(t, specials, counts);
  std::vector<std::pair<std::string, int64_t>> sortedWords(counts.begin(),
                                                           counts.end());
  std::sort(sortedWords.begin(), sortedWords.end());

  // Symbols 0..255 are the bytes; merged symbols follow.
  const auto &alphabet = byteLevelAlphabet();
  std::vector<std::string> symbol(alphabet.begin(), alphabet.end());
  std::unordered_map<std::string, int32_t> symbolId;
  for (int32_t b = 0; b < 256; ++b)
    symbolId[symbol[b]] = b;

  std::vector<Word> words;
  words.reserve(sortedWords.size());
  for (const auto &[w, n] : sortedWords) {
    Word word;
    word.freq = n;
    for (unsigned char c : w)
      word.syms.push_back(int32_t(c));
    words.push_back(std::move(word));
  }

  // --- pair statistics ------------------------------------------------------
  std::unordered_map<Key, int64_t> pairCount;
  std::unordered_map<Key, std::vector<uint32_t>> pairWords;
  for (uint32_t w = 0; w < words.size(); ++w) {
    const Word &word = words[w];
    for (size_t j = 0; j + 1 < word.syms.size(); ++j) {
      Key k = pairKey(word.syms[j], word.syms[j + 1]);
      pairCount[k] += word.freq;
      std::vector<uint32_t> &where = pairWords[k];
      if (where.empty() || where.back() != w)
        where.push_back(w);
    }
  }

  struct Entry {
    int64_t count;
    Key key;
  };
  // Best first: the higher count, then the bytewise smaller left symbol,
  // then the smaller right symbol (every pair has a distinct spelling).
  auto worse = [&](const Entry &x, const Entry &y) {
    if (x.count != y.count)
      return x.count < y.count;
    const std::string &xl = symbol[leftOf(x.key)], &yl = symbol[leftOf(y.key)];
    if (xl != yl)
      return xl > yl;
    return symbol[rightOf(x.key)] > symbol[rightOf(y.key)];
  };
  std::priority_queue<Entry, std::vector<Entry>, decltype(worse)> heap(worse);
  for (const auto &[k, n] : pairCount)
    if (n >= options.minFrequency)
      heap.push({n, k});

  // --- merging --------------------------------------------------------------
  std::vector<std::pair<int32_t, int32_t>> merges;
  std::vector<int32_t> newSymbols; // in order of creation
  int32_t vocabCount = base;
  std::vector<uint32_t> stamp(words.size(), 0);
  std::vector<Key> banned;
  uint32_t round = 0;
  while (vocabCount < options.vocabSize && !heap.empty()) {
    Entry top = heap.top();
    heap.pop();
    auto cit = pairCount.find(top.key);
    int64_t current = cit == pairCount.end() ? 0 : cit->second;
    if (current != top.count) {
      // Stale: a lower count re-enters the heap; a higher one is there already.
      if (current < top.count && current >= options.minFrequency)
        heap.push({current, top.key});
      continue;
    }
    if (current < options.minFrequency)
      break;

    int32_t a = leftOf(top.key), b = rightOf(top.key);
    std::string merged = symbol[a] + symbol[b];
    if (std::find(specials.begin(), specials.end(), merged) != specials.end()) {
      // The vocabulary cannot hold a second token spelled like a special one.
      banned.push_back(top.key);
      pairCount.erase(top.key);
      continue;
    }
    int32_t id;
    auto sit = symbolId.find(merged);
    if (sit != symbolId.end()) {
      id = sit->second;
    } else {
      id = int32_t(symbol.size());
      symbol.push_back(merged);
      symbolId.emplace(merged, id);
      newSymbols.push_back(id);
      ++vocabCount;
    }
    merges.emplace_back(a, b);

    ++round;
    std::vector<uint32_t> where = std::move(pairWords[top.key]);
    pairWords.erase(top.key);
    std::unordered_map<Key, int64_t> delta;
    for (uint32_t w : where) {
      if (stamp[w] == round)
        continue;
      stamp[w] = round;
      Word &word = words[w];
      std::vector<int32_t> &s = word.syms;
      bool has = false;
      for (size_t j = 0; j + 1 < s.size() && !has; ++j)
        has = s[j] == a && s[j + 1] == b;
      if (!has)
        continue;
      for (size_t j = 0; j + 1 < s.size(); ++j)
        delta[pairKey(s[j], s[j + 1])] -= word.freq;
      std::vector<int32_t> out;
      out.reserve(s.size());
      for (size_t j = 0; j < s.size(); ++j) {
        if (j + 1 < s.size() && s[j] == a && s[j + 1] == b) {
          out.push_back(id);
          ++j;
        } else {
          out.push_back(s[j]);
        }
      }
      s = std::move(out);
      for (size_t j = 0; j + 1 < s.size(); ++j) {
        Key k = pairKey(s[j], s[j + 1]);
        delta[k] += word.freq;
        if (s[j] == id || s[j + 1] == id) {
          std::vector<uint32_t> &list = pairWords[k];
          if (list.empty() || list.back() != w)
            list.push_back(w);
        }
      }
    }
    // Apply the changes in a fixed order (the heap order does not depend on
    // it, but the container contents then do not either).
    std::vector<std::pair<Key, int64_t>> changes(delta.begin(), delta.end());
    std::sort(changes.begin(), changes.end());
    for (const auto &[k, d] : changes) {
      if (d == 0)
        continue;
      if (std::find(banned.begin(), banned.end(), k) != banned.end())
        continue;
      int64_t &n = pairCount[k];
      n += d;
      if (d > 0 && n >= options.minFrequency)
        heap.push({n, k});
      if (n <= 0)
        pairCount.erase(k);
    }
    pairCount.erase(top.key);
  }

  // --- tokenizer.json -------------------------------------------------------
  using ojson = nlohmann::ordered_json;
  ojson vocab = ojson::object();
  ojson added = ojson::array();
  int32_t next = 0;
  for (const std::string &s : specials) {
    vocab[s] = next;
    added.push_back({{"id", next},
                     {"content", s},
                     {"single_word", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"normalized", false},
                     {"special", true}});
    ++next;
  }
  for (int b = 0; b < 256; ++b)
    vocab[symbol[b]] = next++;
  for (int32_t s : newSymbols)
    vocab[symbol[s]] = next++;
  ojson mergeList = ojson::array();
  for (const auto &[a, b] : merges)
    mergeList.push_back(symbol[a] + " " + symbol[b]);

  ojson byteLevel = {{"type", "ByteLevel"},
                     {"add_prefix_space", false},
                     {"trim_offsets", true},
                     {"use_regex", true}};
  ojson postProcessor = nullptr;
  if (!options.bos.empty()) {
    ojson bos = {{"SpecialToken", {{"id", options.bos}, {"type_id", 0}}}};
    int32_t bosId = int32_t(
        std::find(specials.begin(), specials.end(), options.bos) -
        specials.begin());
    postProcessor = {
        {"type", "TemplateProcessing"},
        {"single", {bos, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
        {"pair",
         {bos,
          {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
          {{"Sequence", {{"id", "B"}, {"type_id", 1}}}}}},
        {"special_tokens",
         {{options.bos,
           {{"id", options.bos},
            {"ids", {bosId}},
            {"tokens", {options.bos}}}}}}};
  }
  const char *unk = nullptr;
  for (const std::string &s : specials)
    if (s == "<unk>")
      unk = "<unk>";
  ojson doc = {
      {"version", "1.0"},
      {"truncation", nullptr},
      {"padding", nullptr},
      {"added_tokens", added},
      {"normalizer", nullptr},
      {"pre_tokenizer", byteLevel},
      {"post_processor", postProcessor},
      {"decoder", byteLevel},
      {"model",
       {{"type", "BPE"},
        {"dropout", nullptr},
        {"unk_token", unk ? ojson(unk) : ojson(nullptr)},
        {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr},
        {"fuse_unk", false},
        {"byte_fallback", false},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", mergeList}}}};

  if (stats) {
    stats->distinctWords = words.size();
    stats->merges = merges.size();
    stats->vocabSize = next;
  }
  return doc.dump(1) + "\n";
}

} // namespace tokenizer
} // namespace mm
