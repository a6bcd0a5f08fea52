//===- TokenizerTools.cpp - mmdata tokenizer / mmdata tokenize -------------===//
//
// `mmdata tokenizer`: trains a byte-level BPE (mm::tokenizer::
// trainByteLevelBpe, GPT-2 style) over the text of LLaVA conversation JSON
// files (every turn's value; <image> markers are split out like every
// special token) or plain text files, and writes a Hugging Face
// tokenizer.json with <unk>, <s>, </s>, <pad>, <image> as ids 0..4 (then any
// --special tokens), the 256 byte symbols, then the merges.
// `mmdata tokenize`: prints the ids a tokenizer.json (or a GPT-2 vocabulary
// + merges pair) gives for a text.
//
//===----------------------------------------------------------------------===//
#include "mm/TokenizerTools.h"
#include "AtomicFile.h"
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

namespace mm {
namespace {

const char *kTrainUsage =
    "usage: mmdata tokenizer --data FILE [--data FILE ...] --vocab-size N --out tokenizer.json\n"
    "                        [--special TOKEN,TOKEN,...] [--min-frequency N]\n"
    "  Trains a byte-level BPE (GPT-2 style) on the text of LLaVA conversation JSON files\n"
    "  (FILE.json: every turn's value) or plain text files (any other name).\n"
    "  --vocab-size N      vocabulary size: 5 special tokens, 256 bytes, then merges\n"
    "  --special LIST      more special tokens after <unk>,<s>,</s>,<pad>,<image> (ids 0..4)\n"
    "  --min-frequency N   never merge a pair seen fewer than N times (default 2)\n";

const char *kTokenizeUsage =
    "usage: mmdata tokenize (--tokenizer tokenizer.json | --vocab VOCAB.json --merges MERGES.txt)\n"
    "                       [--no-special] [--] TEXT\n"
    "  Prints the token ids of TEXT, comma-separated, with the special tokens the\n"
    "  tokenizer's post-processor adds (none with --no-special).\n";

std::string readText(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw Error(path + ": cannot read the training text");
  std::stringstream buf;
  buf << in.rdbuf();
  if (in.bad())
    throw Error(path + ": read error");
  return buf.str();
}

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

/// The training texts in PATH: each conversation turn of a LLaVA JSON file,
/// or the whole of a plain text file.
void trainingTexts(const std::string &path, std::vector<std::string> &out) {
  std::string text = readText(path);
  if (endsWith(path, ".json")) {
    for (const ConversationRecord &r : parseConversations(text, path))
      for (const ConversationTurn &turn : r.turns)
        out.push_back(turn.value);
  } else {
    out.push_back(std::move(text));
  }
}

std::vector<std::string> splitList(const std::string &s) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(',', start);
    if (comma == std::string::npos)
      comma = s.size();
    std::string item = s.substr(start, comma - start);
    if (!item.empty())
      out.push_back(item);
    start = comma + 1;
  }
  return out;
}

} // namespace

int tokenizerTrainCommand(const std::vector<std::string> &args) {
  std::vector<std::string> data;
  std::string out;
  tokenizer::BpeTrainOptions options;
  bool haveSize = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size())
        throw Error("mmdata tokenizer: " + args[i] + " needs a value\n" +
                    kTrainUsage);
      return args[++i];
    };
    const std::string &a = args[i];
    if (a == "--data") {
      data.push_back(value());
    } else if (a == "--out") {
      out = value();
    } else if (a == "--vocab-size") {
      options.vocabSize = int32_t(parseIntFlag(a, value(), 1, 1 << 24));
      haveSize = true;
    } else if (a == "--min-frequency") {
      options.minFrequency = parseIntFlag(a, value(), 1, 1LL << 40);
    } else if (a == "--special") {
      for (const std::string &s : splitList(value()))
        if (std::find(options.specials.begin(), options.specials.end(), s) ==
            options.specials.end())
          options.specials.push_back(s);
    } else if (a == "-h" || a == "--help") {
      std::fputs(kTrainUsage, stdout);
      return 0;
    } else {
      throw Error("mmdata tokenizer: unknown option '" + a + "'\n" +
                  kTrainUsage);
    }
  }
  if (data.empty() || out.empty() || !haveSize)
    throw Error(std::string("mmdata tokenizer needs --data, --vocab-size and --out\n") +
                kTrainUsage);

  std::vector<std::string> texts;
  for (const std::string &path : data)
    trainingTexts(path, texts);
  tokenizer::BpeTrainStats stats;
  std::string json = tokenizer::trainByteLevelBpe(texts, options, &stats);

  detail::AtomicFile file(out);
  file.write(json.data(), json.size());
  file.commit();
  Tokenizer check = Tokenizer::fromFile(out); // what we wrote must load
  std::fprintf(stderr,
               "mmdata: wrote %s (%d tokens: %zu special, 256 bytes, %zu merges) "
               "from %zu distinct words\n",
               out.c_str(), check.vocabSize(), options.specials.size(),
               stats.merges, stats.distinctWords);
  if (stats.vocabSize < options.vocabSize)
    std::fprintf(stderr,
                 "mmdata: note: the text has too few frequent pairs to reach "
                 "--vocab-size %d\n",
                 options.vocabSize);
  return 0;
}

int tokenizeCommand(const std::vector<std::string> &args) {
  std::string path, vocab, merges, text;
  bool special = true, haveText = false, optionsDone = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= args.size())
        throw Error("mmdata tokenize: " + a + " needs a value\n" +
                    kTokenizeUsage);
      return args[++i];
    };
    if (!optionsDone && a == "--") {
      optionsDone = true;
    } else if (!optionsDone && a == "--tokenizer") {
      path = value();
    } else if (!optionsDone && a == "--vocab") {
      vocab = value();
    } else if (!optionsDone && a == "--merges") {
      merges = value();
    } else if (!optionsDone && a == "--no-special") {
      special = false;
    } else if (!optionsDone && (a == "-h" || a == "--help")) {
      std::fputs(kTokenizeUsage, stdout);
      return 0;
    } else if (!optionsDone && a.size() > 1 && a[0] == '-') {
      throw Error("mmdata tokenize: unknown option '" + a + "'\n" +
                  kTokenizeUsage);
    } else if (haveText) {
      throw Error("mmdata tokenize: more than one TEXT (quote the text)\n" +
                  std::string(kTokenizeUsage));
    } else {
      text = a;
      haveText = true;
    }
  }
  bool pair = !vocab.empty() || !merges.empty();
  if (!haveText || (path.empty() == !pair) ||
      (pair && (vocab.empty() || merges.empty())))
    throw Error(std::string("mmdata tokenize needs TEXT and either "
                            "--tokenizer or both --vocab and --merges\n") +
                kTokenizeUsage);
  Tokenizer tok = pair ? Tokenizer::fromVocabMerges(vocab, merges)
                       : Tokenizer::fromFile(path);
  std::vector<int32_t> ids = tok.encode(text, special);
  std::string line;
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i)
      line += ',';
    line += std::to_string(ids[i]);
  }
  line += '\n';
  std::fputs(line.c_str(), stdout);
  std::fflush(stdout);
  return 0;
}

} // namespace mm
