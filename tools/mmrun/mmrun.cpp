//===- mmrun.cpp - runs a compiled model ------------------------------------===//
//
//   mmrun MODEL.so --forward [--weights W.safetensors | --seed S] [--image IMG]
//                  (--prompt TEXT | --tokens ID,ID,...) [--dump-logits FILE] [--top K]
//   mmrun MODEL.so --save-init W.safetensors [--seed S]
//   mmrun MODEL.so --train STAGE --data FILE.json [--image-dir DIR] ...   (mm/Trainer.h)
//   mmrun MODEL.so --chat [--weights W] [--image IMG] [--prompt TEXT] ...  (mm/Chat.h)
//   mmrun MODEL.so --rank | --eval-retrieval ...                           (mm/Retrieval.h)
//
//===----------------------------------------------------------------------===//
#include "mm/Chat.h"
#include "mm/Error.h"
#include "mm/Llava.h"
#include "mm/Model.h"
#include "mm/Parameters.h"
#include "mm/Retrieval.h"
#include "mm/Tokenizer.h"
#include "mm/Trainer.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>

namespace {

const char *kForwardUsage =
    "usage: mmrun MODEL.so --forward [--weights W.safetensors | --seed S] [--image IMG]\n"
    "                      (--prompt TEXT | --tokens ID,ID,...) [--dump-logits FILE] [--top K]\n"
    "       mmrun MODEL.so --save-init W.safetensors [--seed S]\n"
    "       mmrun MODEL.so --info\n";
const char *kForwardOptions =
    "  --forward         run the forward pass and print the top-K next tokens of the last position\n"
    "  --weights FILE    load parameters from safetensors (Hugging Face names); default: seeded init\n"
    "  --seed S          seed of the initialisation (default 0)\n"
    "  --image IMG       image file (PNG, JPEG, BMP, ...); CLIP preprocessing at the model's size\n"
    "  --prompt TEXT     text, tokenised with the model's tokenizer; <image> marks the image\n"
    "  --tokens IDS      token ids; the image token id expands to the image's feature positions\n"
    "  --dump-logits F   write all logits as raw little-endian f32 [positions x vocabulary]\n"
    "  --save-init FILE  write the seeded initial weights\n";
const std::string kUsage = std::string(kForwardUsage) + mm::kTrainUsage + mm::kChatUsage + mm::kEvalUsage + mm::kRetrievalUsage + "\n" + kForwardOptions;

struct Options {
  std::string model, mode, weights, saveInit, prompt, tokens, dumpLogits;
  std::optional<std::string> image;
  uint64_t seed = 0;
  int top = 5;
  bool havePrompt = false, haveTokens = false;
};

Options parse(int argc, char **argv) {
  Options o;
  std::vector<std::string> a(argv + 1, argv + argc);
  for (size_t i = 0; i < a.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= a.size()) throw mm::Error(a[i] + " needs a value");
      return a[++i];
    };
    const std::string &f = a[i];
    if (f == "-h" || f == "--help") { std::cout << kUsage; exit(0); }
    else if (f == "--forward" || f == "--info") o.mode = f.substr(2);
    else if (f == "--save-init") { o.mode = "save-init"; o.saveInit = value(); }
    else if (f == "--weights") o.weights = value();
    else if (f == "--seed") o.seed = std::stoull(value());
    else if (f == "--image") o.image = value();
    else if (f == "--prompt") { o.prompt = value(); o.havePrompt = true; }
    else if (f == "--tokens") { o.tokens = value(); o.haveTokens = true; }
    else if (f == "--dump-logits") o.dumpLogits = value();
    else if (f == "--top") o.top = std::stoi(value());
    else if (!f.empty() && f[0] == '-') throw mm::Error("unknown option '" + f + "'\n" + kUsage);
    else if (o.model.empty()) o.model = f;
    else throw mm::Error("more than one model file ('" + o.model + "', '" + f + "')");
  }
  if (o.model.empty()) throw mm::Error("no model library given\n" + kUsage);
  if (o.mode.empty()) throw mm::Error("nothing to do: give --forward, --train, --save-init or --info\n" + kUsage);
  return o;
}

std::vector<int32_t> parseTokenList(const std::string &text) {
  std::vector<int32_t> ids;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(start, end - start);
    char *stop = nullptr;
    long v = std::strtol(item.c_str(), &stop, 10);
    if (item.empty() || *stop != '\0' || v < INT32_MIN || v > INT32_MAX)
      throw mm::Error("--tokens: '" + item + "' is not a token id");
    ids.push_back(static_cast<int32_t>(v));
    start = end + 1;
  }
  return ids;
}

int runForward(const Options &o) {
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::LlavaShape shape = mm::llavaShape(model);
  mm::ParameterStore params(model.params());
  if (!o.weights.empty()) params.loadSafetensors(o.weights);
  else params.initFromSeed(o.seed);

  std::optional<mm::Tokenizer> tokenizer;
  if (!model.tokenizerJson().empty())
    tokenizer = mm::Tokenizer::fromJson(model.tokenizerJson(), o.model + " (embedded tokenizer.json)");
  std::vector<int32_t> ids;
  if (o.havePrompt == o.haveTokens) throw mm::Error("give exactly one of --prompt and --tokens");
  if (o.haveTokens) {
    ids = parseTokenList(o.tokens);
  } else {
    if (!tokenizer) throw mm::Error(o.model + " carries no tokenizer; use --tokens");
    std::string text = o.prompt;
    if (o.image && text.find("<image>") == std::string::npos) {
      std::cerr << "mmrun: note: the prompt has no <image>; placing the image first\n";
      text = "<image>\n" + text;
    }
    ids = tokenizer->encode(text);
  }
  std::vector<int32_t> expanded = mm::expandImageTokens(ids, shape.imageToken, shape.imagePositions);
  std::vector<mm::HostTensor> args = mm::llavaForwardArgs(model, expanded, o.image);
  std::vector<mm::HostTensor> results = model.run("forward", params.pointers(), args);

  const float *logits = results[0].as<float>();
  int64_t n = static_cast<int64_t>(expanded.size()), vocab = shape.vocab;
  if (!o.dumpLogits.empty()) {
    std::string tmp = o.dumpLogits + ".tmp";
    std::ofstream f(tmp, std::ios::binary);
    f.write(reinterpret_cast<const char *>(logits), n * vocab * sizeof(float));
    f.close();
    if (!f || std::rename(tmp.c_str(), o.dumpLogits.c_str()) != 0)
      throw mm::Error(o.dumpLogits + ": cannot write the logits");
  }
  const float *last = logits + (n - 1) * vocab;
  std::vector<int32_t> order(vocab);
  for (int32_t i = 0; i < vocab; ++i) order[i] = i;
  int k = std::min<int>(o.top, (int)vocab);
  std::partial_sort(order.begin(), order.begin() + k, order.end(),
                    [&](int32_t a, int32_t b) { return last[a] > last[b]; });
  double maxv = last[order[0]], sum = 0;
  for (int64_t i = 0; i < vocab; ++i) sum += std::exp(last[i] - maxv);
  for (int64_t i = 0; i < n * vocab; ++i)
    if (!std::isfinite(logits[i])) throw mm::Error("the forward pass produced a non-finite logit at position " +
                                                   std::to_string(i / vocab));
  std::printf("top-%d next tokens after %lld positions (%s):\n", k, (long long)n,
              o.weights.empty() ? ("seed " + std::to_string(o.seed)).c_str() : o.weights.c_str());
  for (int i = 0; i < k; ++i) {
    int32_t id = order[i];
    // The model's vocabulary may be larger than the tokenizer's (padding rows).
    std::string text = tokenizer && id < tokenizer->vocabSize() ? tokenizer->decode({id}) : "";
    std::string shown;
    for (char c : text) shown += (c == '\n') ? std::string("\\n") : std::string(1, c);
    std::printf("  %d. id %-6d %-12s logit %9.4f  p %.4f\n", i + 1, id, ("'" + shown + "'").c_str(), last[id],
                std::exp(last[id] - maxv) / sum);
  }
  return 0;
}

int runSaveInit(const Options &o) {
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::ParameterStore params(model.params());
  params.initFromSeed(o.seed);
  params.saveSafetensors(o.saveInit, {{"format", "pt"}, {"mm.model", model.name()},
                                      {"mm.seed", std::to_string(o.seed)}});
  std::fprintf(stderr, "mmrun: wrote %s (%zu tensors, seed %llu)\n", o.saveInit.c_str(), params.size(),
               (unsigned long long)o.seed);
  return 0;
}

} // namespace

int main(int argc, char **argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    bool help = std::count(args.begin(), args.end(), "-h") + std::count(args.begin(), args.end(), "--help");
    if (!help && std::count(args.begin(), args.end(), "--train"))
      return mm::runTraining(mm::parseTrainOptions(args));
    if (!help && std::count(args.begin(), args.end(), "--chat"))
      return mm::runChat(mm::parseChatOptions(args));
    if (!help && (std::count(args.begin(), args.end(), "--rank") ||
                  std::count(args.begin(), args.end(), "--eval-retrieval")))
      return mm::runRetrieval(mm::parseRetrievalOptions(args));
    if (!help && std::count(args.begin(), args.end(), "--eval"))
      return mm::runEval(mm::parseEvalOptions(args));
    Options o = parse(argc, argv);
    if (o.mode == "forward") return runForward(o);
    if (o.mode == "save-init") return runSaveInit(o);
    mm::CompiledModel model = mm::CompiledModel::load(o.model);
    std::cout << model.manifest().dump(2) << "\n";
    return 0;
  } catch (const mm::Error &e) {
    std::fprintf(stderr, "mmrun: error: %s\n", e.what());
    return 1;
  } catch (const std::exception &e) {
    std::fprintf(stderr, "mmrun: error: %s\n", e.what());
    return 1;
  }
}
