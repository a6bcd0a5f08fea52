//===- mmdata.cpp - builds LLaVA training data ------------------------------===//
//
//   mmdata scenes --out DIR [--count N] [--eval-count M] [--seed S] [--size PX] ...
//   mmdata instruct --scenes DIR/scenes.jsonl --endpoint URL [--model NAME] ...
//   mmdata tokenizer ... / mmdata tokenize ...            (mm/TokenizerTools.h)
//
// The work is in mm/Synth.h; this file parses arguments.
//
//===----------------------------------------------------------------------===//
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Synth.h"
#include "mm/TokenizerTools.h"

#include <cstring>
#include <iostream>
#include <string>
#include <vector>

namespace {

const char *kUsage =
    "usage: mmdata scenes --out DIR [--count N] [--eval-count M] [--seed S] [--size PX]\n"
    "                     [--min-objects K] [--max-objects K] [--no-noise] [--no-stripes]\n"
    "                     [--patch-grid G] [--conversations C] [--quiet]\n"
    "       mmdata instruct --scenes DIR/scenes.jsonl --endpoint http://HOST:PORT [--model NAME]\n"
    "                       [--api-key-env VAR] [--out FILE] [--kind conversation|detail|reasoning|all]\n"
    "                       [--limit N] [--timeout SECONDS]\n"
    "       mmdata tokenizer ARGS...   train a tokenizer\n"
    "       mmdata tokenize ARGS...    tokenize text with a tokenizer\n"
    "\n"
    "scenes: renders synthetic scenes (1-4 coloured shapes) and writes, under DIR:\n"
    "  images/*.png        training (train_NNNNNN) and held-out (eval_NNNNNN) images\n"
    "  scenes.jsonl        the training scenes' symbolic descriptions (shapes, colours, boxes)\n"
    "  eval_scenes.jsonl   the held-out scenes' descriptions\n"
    "  captions.json       stage-1 data: a brief-description instruction and the caption\n"
    "  instruct.json       stage-2 data per scene: C conversations (default 2), a detailed\n"
    "                      description and a reasoning record (\"kind\")\n"
    "  patches.json        vision pre-training data: per image, G x G patch labels (\"patch_labels\":\n"
    "                      0 background, else 1 + (colour x shape x size) of the object shown)\n"
    "  eval.json           held-out questions, one per record, with \"type\" and \"answer\"\n"
    "  Image paths in the JSON files are relative to DIR (mmrun --train ... --image-dir DIR).\n"
    "  --count N           training scenes (default 1000)\n"
    "  --eval-count M      held-out scenes, from a different seed stream (default 200)\n"
    "  --seed S            seed of everything (default 0); the same seed writes the same bytes\n"
    "  --patch-grid G      patches per side in patches.json (default 8: 64 px images, 8 px patches)\n"
    "  --conversations C   conversation records per scene in instruct.json (default 2; more weight\n"
    "                      the stage-2 mix towards the questions the evaluation asks)\n"
    "  --size PX           image width and height (default 64, llava-tiny's image size)\n"
    "\n"
    "instruct: LLaVA's GPT-assisted generation: for each scene, sends its captions and boxes\n"
    "  with a system prompt and few-shot examples to an OpenAI-compatible endpoint\n"
    "  (POST URL/v1/chat/completions; plain http:// only) and writes LLaVA JSON.\n"
    "  --model NAME        model name sent in the request (default gpt-3.5-turbo)\n"
    "  --api-key-env VAR   send \"Authorization: Bearer $VAR\"\n"
    "  --out FILE          default: instruct_gpt.json next to the scenes file\n"
    "  --kind K            conversation (default), detail, reasoning, or all three\n"
    "  --limit N           only the first N scenes\n"
    "  --timeout SECONDS   per request (default 120)\n";

uint64_t parseSeed(const std::string &v) {
  size_t used = 0;
  unsigned long long x = 0;
  try {
    x = std::stoull(v, &used, 10);
  } catch (const std::exception &) {
    used = 0;
  }
  if (v.empty() || v[0] == '-' || used != v.size()) throw mm::Error("--seed: expected a non-negative integer, got '" + v + "'");
  return x;
}

double parseSeconds(const std::string &flag, const std::string &v) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception &) {
    used = 0;
  }
  if (v.empty() || used != v.size() || !(x > 0) || x > 86400) throw mm::Error(flag + ": expected seconds (> 0), got '" + v + "'");
  return x;
}

/// Walks ARGS as --flag value pairs.
struct Args {
  std::vector<std::string> a;
  size_t i = 0;
  std::string value() {
    if (i + 1 >= a.size()) throw mm::Error(a[i] + " needs a value");
    return a[++i];
  }
  [[noreturn]] void unknown() const {
    throw mm::Error("unknown option '" + a[i] + "' (mmdata --help lists them)");
  }
};

int scenes(const std::vector<std::string> &argv) {
  mm::synth::DatasetOptions o;
  bool quiet = false;
  Args args{argv};
  for (; args.i < args.a.size(); ++args.i) {
    const std::string &f = args.a[args.i];
    if (f == "--out") o.outDir = args.value();
    else if (f == "--count") o.count = (int)mm::parseIntFlag(f, args.value(), 1, 1000000);
    else if (f == "--eval-count") o.evalCount = (int)mm::parseIntFlag(f, args.value(), 0, 1000000);
    else if (f == "--patch-grid") o.patchGrid = (int)mm::parseIntFlag(f, args.value(), 1, 4096);
    else if (f == "--conversations") o.conversations = (int)mm::parseIntFlag(f, args.value(), 0, 64);
    else if (f == "--seed") o.seed = parseSeed(args.value());
    else if (f == "--size") o.scene.size = (int)mm::parseIntFlag(f, args.value(), 16, 4096);
    else if (f == "--min-objects") o.scene.minObjects = (int)mm::parseIntFlag(f, args.value(), 1, 4);
    else if (f == "--max-objects") o.scene.maxObjects = (int)mm::parseIntFlag(f, args.value(), 1, 4);
    else if (f == "--no-noise") o.scene.noise = false;
    else if (f == "--no-stripes") o.scene.stripes = false;
    else if (f == "--quiet") quiet = true;
    else args.unknown();
  }
  if (o.outDir.empty()) throw mm::Error("scenes: no output directory given (--out DIR)");
  mm::synth::DatasetSummary s = mm::synth::writeDataset(o, quiet ? nullptr : &std::cerr);
  if (!quiet) std::cout << mm::synth::formatSummary(o, s);
  return 0;
}

int instruct(const std::vector<std::string> &argv) {
  mm::synth::AssistedOptions o;
  Args args{argv};
  for (; args.i < args.a.size(); ++args.i) {
    const std::string &f = args.a[args.i];
    if (f == "--scenes") o.scenesPath = args.value();
    else if (f == "--endpoint") o.endpoint = args.value();
    else if (f == "--model") o.model = args.value();
    else if (f == "--api-key-env") o.apiKeyEnv = args.value();
    else if (f == "--out") o.out = args.value();
    else if (f == "--kind") {
      std::string k = args.value();
      if (k == "all") o.kinds = {mm::synth::InstructKind::Conversation, mm::synth::InstructKind::Detail,
                                 mm::synth::InstructKind::Reasoning};
      else o.kinds = {mm::synth::parseInstructKind(k)};
    } else if (f == "--limit") o.limit = (int)mm::parseIntFlag(f, args.value(), 0, 100000000);
    else if (f == "--timeout") o.timeoutSeconds = parseSeconds(f, args.value());
    else args.unknown();
  }
  if (o.scenesPath.empty()) throw mm::Error("instruct: no scenes file given (--scenes DIR/scenes.jsonl)");
  if (o.endpoint.empty()) throw mm::Error("instruct: no endpoint given (--endpoint http://HOST:PORT)");
  mm::synth::AssistedSummary s = mm::synth::runAssisted(o, &std::cerr);
  std::cout << "mmdata: wrote " << s.records << " records to " << s.out << " (" << s.scenes << " scenes, " << s.requests
            << " requests, " << s.skipped.size() << " unusable replies skipped)\n";
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return 1;
  }
  const std::string cmd = args[0];
  std::vector<std::string> rest(args.begin() + 1, args.end());
  try {
    if (cmd == "-h" || cmd == "--help" || cmd == "help") {
      std::cout << kUsage;
      return 0;
    }
    for (const std::string &a : rest)
      if ((a == "-h" || a == "--help") && (cmd == "scenes" || cmd == "instruct")) {
        std::cout << kUsage;
        return 0;
      }
    if (cmd == "scenes") return scenes(rest);
    if (cmd == "instruct") return instruct(rest);
    if (cmd == "tokenizer") return mm::tokenizerTrainCommand(rest);
    if (cmd == "tokenize") return mm::tokenizeCommand(rest);
    throw mm::Error("unknown subcommand '" + cmd + "' (expected scenes, instruct, tokenizer or tokenize)\n" + kUsage);
  } catch (const mm::Error &e) {
    std::cerr << "mmdata: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception &e) {
    std::cerr << "mmdata: error: " << e.what() << "\n";
    return 1;
  }
}
