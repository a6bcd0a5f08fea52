//===- fake_train_model.cpp - a hand-written model library for training tests ===//
//
// Implements mm/abi.h by hand, as `mmc compile` would, for a tiny LLaVA-shaped
// model whose math is simple enough to differentiate by hand:
//
//   h[t]      = embed.weight[ids[t]] (+ the image feature of patch k at the
//               k-th image position: the mean of the patch's pixels of channel
//               d % 3, times (1 + d / 3) / 2)
//   logits[t] = head.weight @ h[t] + head.bias
//
// Entries: forward(pixel_values, input_ids, length) -> logits and, per stage,
// train_stageN(pixel_values, input_ids, targets, length) -> (loss, grads...):
// loss is the SUM over t < length with targets[t] != -100 of cross-entropy;
// stage1 trains group "head" (gradients for head.weight, head.bias), stage2
// trains both groups with its gradients in a deliberately different order
// from the manifest's (head.bias, embed.weight, head.weight).
//
// The embedded tokenizer is the byte-level one of
// models/tokenizers/byte-level.tokenizer.json (ids 0-4 <unk> <s> </s> <pad>
// <image>, byte b -> 5 + b), built here so the library needs no files.
// A sample containing the DEL byte (id 5 + 0x7f) gets a NaN loss, and one
// containing the SOH byte (id 5 + 0x01) an infinite gradient element, so
// tests can check that training stops on them.
//
//===----------------------------------------------------------------------===//
#include "mm/abi.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace {

constexpr int V = 272, D = 8, S = 256, IMG = 16, PATCH = 8, GRID = IMG / PATCH;
constexpr int32_t IMAGE_TOKEN = 4, PAD_TOKEN = 3, NAN_TOKEN = 5 + 0x7f, INF_TOKEN = 5 + 0x01;

using nlohmann::json;

std::string utf8(unsigned cp) {
  std::string s;
  if (cp < 0x80) s += char(cp);
  else {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

std::string makeTokenizer() {
  const char *specials[] = {"<unk>", "<s>", "</s>", "<pad>", "<image>"};
  json vocab = json::object(), added = json::array();
  for (int i = 0; i < 5; ++i) {
    vocab[specials[i]] = i;
    added.push_back({{"id", i}, {"content", specials[i]}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  }
  unsigned shifted = 0;
  for (unsigned b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    vocab[utf8(printable ? b : 256 + shifted++)] = 5 + int(b);
  }
  json bos = {{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}};
  json byteLevel = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", true}};
  json t = {{"version", "1.0"},
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
              {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false},
              {"ignore_merges", false}, {"vocab", vocab}, {"merges", json::array()}}}};
  return t.dump();
}

json tensor(const char *name, std::vector<int64_t> shape, const char *dtype = "F32") {
  return {{"name", name}, {"shape", shape}, {"dtype", dtype}};
}

json trainEntry(const char *name, const std::vector<std::pair<const char *, std::vector<int64_t>>> &grads) {
  json results = json::array({tensor("loss", {})});
  for (const auto &g : grads) results.push_back(tensor(("grad." + std::string(g.first)).c_str(), g.second));
  return {{"name", name},
          {"args", {tensor("pixel_values", {1, 3, IMG, IMG}), tensor("input_ids", {1, S}, "I32"),
                    tensor("targets", {1, S}, "I32"), tensor("length", {}, "I32")}},
          {"results", results},
          {"workspace_bytes", 0}};
}

std::string makeManifest() {
  auto param = [](const char *name, std::vector<int64_t> shape, const char *group, json init) {
    json p = tensor(name, shape);
    p["group"] = group;
    p["init"] = init;
    return p;
  };
  json config = {{"model_type", "llava"},
                 {"image_token_index", IMAGE_TOKEN},
                 {"pad_token_id", PAD_TOKEN},
                 {"vision_config", {{"image_size", IMG}, {"patch_size", PATCH}}},
                 {"text_config", {{"vocab_size", V}}}};
  json stage1 = {{"name", "stage1"},      {"trainable", {"head"}}, {"loss", "lm"},
                 {"data", "caption"},     {"lr", 0.05},            {"schedule", "cosine"},
                 {"warmup_ratio", 0.1},   {"weight_decay", 0.1},   {"batch", 2},
                 {"epochs", 2},           {"train_entry", "train_stage1"},
                 {"trainable_parameters", {"head.weight", "head.bias"}}};
  json stage2 = {{"name", "stage2"},      {"trainable", {"embed", "head"}}, {"loss", "lm"},
                 {"data", "conversation"}, {"lr", 0.02},                    {"schedule", "linear"},
                 {"warmup_ratio", 0.0},   {"weight_decay", 0.0},            {"batch", 2},
                 {"epochs", 1},           {"train_entry", "train_stage2"},
                 {"trainable_parameters", {"head.bias", "embed.weight", "head.weight"}}};
  json m = {
      {"abi_version", MM_ABI_VERSION},
      {"name", "fake_llava"},
      {"target", "cpu"},
      {"config", config},
      {"groups", {{{"name", "embed"}, {"parameters", V * D}, {"tensors", 1}},
                  {{"name", "head"}, {"parameters", V * D + V}, {"tensors", 2}}}},
      {"parameters",
       {param("embed.weight", {V, D}, "embed", {{"kind", "normal"}, {"std", 0.5}}),
        param("head.weight", {V, D}, "head", {{"kind", "normal"}, {"std", 0.1}}),
        param("head.bias", {V}, "head", {{"kind", "zeros"}})}},
      {"stages", {stage1, stage2}},
      {"entries",
       {{{"name", "forward"},
         {"args", {tensor("pixel_values", {1, 3, IMG, IMG}), tensor("input_ids", {1, S}, "I32"),
                   tensor("length", {}, "I32")}},
         {"results", {tensor("logits", {1, S, V})}},
         {"workspace_bytes", 0}},
        trainEntry("train_stage1", {{"head.weight", {V, D}}, {"head.bias", {V}}}),
        trainEntry("train_stage2", {{"head.bias", {V}}, {"embed.weight", {V, D}}, {"head.weight", {V, D}}})}},
      {"total_parameters", 2 * V * D + V}};
  return m.dump();
}

/// h = hidden states [len x D] in double; false on bad input.
bool hidden(const float *E, const float *pixels, const int32_t *ids, int len, std::vector<double> &h) {
  if (len < 1 || len > S) return false;
  h.assign(size_t(len) * D, 0.0);
  int k = 0;
  for (int t = 0; t < len; ++t) {
    int32_t id = ids[t];
    if (id < 0 || id >= V) return false;
    for (int d = 0; d < D; ++d) h[t * D + d] = E[id * D + d];
    if (id == IMAGE_TOKEN) {
      int py = (k / GRID) % GRID, px = k % GRID;
      for (int d = 0; d < D; ++d) {
        const float *ch = pixels + (d % 3) * IMG * IMG;
        double sum = 0;
        for (int y = 0; y < PATCH; ++y)
          for (int x = 0; x < PATCH; ++x) sum += ch[(py * PATCH + y) * IMG + px * PATCH + x];
        h[t * D + d] += sum / (PATCH * PATCH) * (1 + d / 3) * 0.5;
      }
      ++k;
    }
  }
  return true;
}

void logitsAt(const float *W, const float *b, const double *h, double *out) {
  for (int v = 0; v < V; ++v) {
    double s = b[v];
    for (int d = 0; d < D; ++d) s += W[v * D + d] * h[d];
    out[v] = s;
  }
}

int forward(void *const *params, void *const *args, void *const *results, void *) {
  const float *E = (const float *)params[0], *W = (const float *)params[1], *b = (const float *)params[2];
  const float *pixels = (const float *)args[0];
  const int32_t *ids = (const int32_t *)args[1];
  int len = *(const int32_t *)args[2];
  std::vector<double> h;
  if (!hidden(E, pixels, ids, len, h)) return 1;
  float *out = (float *)results[0];
  std::memset(out, 0, sizeof(float) * S * V);
  std::vector<double> z(V);
  for (int t = 0; t < len; ++t) {
    logitsAt(W, b, &h[t * D], z.data());
    for (int v = 0; v < V; ++v) out[t * V + v] = (float)z[v];
  }
  return 0;
}

/// GBIAS, GEMBED (may be null), GHEAD: where each gradient goes.
int train(void *const *params, void *const *args, float *loss, float *gBias, float *gEmbed, float *gHead) {
  const float *E = (const float *)params[0], *W = (const float *)params[1], *b = (const float *)params[2];
  const float *pixels = (const float *)args[0];
  const int32_t *ids = (const int32_t *)args[1], *targets = (const int32_t *)args[2];
  int len = *(const int32_t *)args[3];
  std::vector<double> h;
  if (!hidden(E, pixels, ids, len, h)) return 1;
  std::vector<double> gW(V * D, 0.0), gb(V, 0.0), gE(V * D, 0.0), z(V);
  double total = 0;
  bool poison = false, infinite = false;
  for (int t = 0; t < len; ++t) {
    poison |= ids[t] == NAN_TOKEN;
    infinite |= ids[t] == INF_TOKEN;
  }
  for (int t = 0; t < len; ++t) {
    int32_t y = targets[t];
    if (y == -100) continue;
    if (y < 0 || y >= V) return 1;
    logitsAt(W, b, &h[t * D], z.data());
    double mx = z[0];
    for (double x : z) mx = std::max(mx, x);
    double sum = 0;
    for (double x : z) sum += std::exp(x - mx);
    total += mx + std::log(sum) - z[y];
    std::vector<double> dh(D, 0.0);
    for (int v = 0; v < V; ++v) {
      double g = std::exp(z[v] - mx) / sum - (v == y ? 1.0 : 0.0);
      gb[v] += g;
      for (int d = 0; d < D; ++d) {
        gW[v * D + d] += g * h[t * D + d];
        dh[d] += g * W[v * D + d];
      }
    }
    for (int d = 0; d < D; ++d) gE[ids[t] * D + d] += dh[d];
  }
  for (int t = len; t < S; ++t)
    if (targets[t] != -100) return 1; // padding never carries a target
  *loss = poison ? std::numeric_limits<float>::quiet_NaN() : (float)total;
  for (int i = 0; i < V; ++i) gBias[i] = (float)gb[i];
  for (int i = 0; i < V * D; ++i) gHead[i] = (float)gW[i];
  if (infinite) gHead[0] = std::numeric_limits<float>::infinity();
  if (gEmbed)
    for (int i = 0; i < V * D; ++i) gEmbed[i] = (float)gE[i];
  return 0;
}

int trainStage1(void *const *params, void *const *args, void *const *results, void *) {
  return train(params, args, (float *)results[0], (float *)results[2], nullptr, (float *)results[1]);
}

int trainStage2(void *const *params, void *const *args, void *const *results, void *) {
  return train(params, args, (float *)results[0], (float *)results[1], (float *)results[2], (float *)results[3]);
}

} // namespace

extern "C" __attribute__((visibility("default"))) const mm_model_desc *mm_model_v1(void) {
  static const std::string manifest = makeManifest(), tokenizer = makeTokenizer();
  static const mm_entry_desc entries[] = {
      {"forward", forward, 0, 3, 1},
      {"train_stage1", trainStage1, 0, 4, 3},
      {"train_stage2", trainStage2, 0, 4, 4},
  };
  static const mm_model_desc desc = {MM_ABI_VERSION, sizeof(mm_model_desc), "cpu", manifest.c_str(),
                                     tokenizer.c_str(), 3, 3, entries, nullptr};
  return &desc;
}
