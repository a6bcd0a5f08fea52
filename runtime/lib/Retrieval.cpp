//===- Retrieval.cpp - `mmrun --rank` and `--eval-retrieval` (BLIP-2) -------===//
#include "mm/Retrieval.h"
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Llava.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <numeric>
#include <unistd.h>

namespace mm {

const char *const kRetrievalUsage =
    "       mmrun MODEL.so --rank --image IMG --texts FILE [--weights W] [--rerank K]\n"
    "       mmrun MODEL.so --eval-retrieval --data FILE.json --image-dir DIR [--weights W] [--rerank K]\n"
    "                      [--limit N]\n"
    "\n"
    "  --rank            score every line of --texts against --image by ITC (BLIP-2's stage-1\n"
    "                    features) and re-rank the top K by ITC + ITM match logit (as LAVIS)\n"
    "  --eval-retrieval  recall@1/@5 image->text and text->image over image-caption records\n"
    "                    (each record's caption belongs to its image; records with the same\n"
    "                    caption match each other, strict recall@1 beside), by ITC and after\n"
    "                    ITM re-ranking of the top K\n"
    "  --rerank K        how many ITC candidates ITM re-scores (default 5; 0: none); they are\n"
    "                    ordered by ITC score + the ITM head's match logit\n";

namespace {

const EntrySpec &needEntry(const CompiledModel &model, const char *name) {
  try {
    return model.entry(name);
  } catch (const Error &) {
    throw Error(model.path() + ": has no '" + name +
                "' entry; retrieval needs a BLIP-2 compiled with its stage-1 Q-Former text side");
  }
}

HostTensor tensorOf(const void *data, size_t bytes) {
  HostTensor t;
  t.bytes.resize(bytes);
  std::memcpy(t.bytes.data(), data, bytes);
  return t;
}

} // namespace

Retriever::Retriever(const CompiledModel &model, const ParameterStore &params, const Tokenizer &tokenizer)
    : model_(model), params_(params), tokenizer_(tokenizer), format_(sampleFormat(model, tokenizer)) {
  const EntrySpec &img = needEntry(model, "image_features");
  needEntry(model, "text_features");
  needEntry(model, "itm_scores");
  needEntry(model, "vision_embeds");
  if (format_.textLength < 2)
    throw Error(model.path() + ": no Q-Former text side (qformer_config.cls_token_id) in its configuration");
  if (img.results.size() != 1 || img.results[0].shape.size() != 3)
    throw Error(model.path() + ": entry 'image_features' does not return [1, queries, embed]");
  queries_ = img.results[0].shape[1];
  embed_ = img.results[0].shape[2];
}

std::vector<int32_t> Retriever::textIds(const std::string &text) const {
  std::vector<int32_t> ids = qformerTextIds(text, tokenizer_, format_);
  if ((int64_t)ids.size() > format_.textLength) ids.resize(format_.textLength);
  return ids;
}

const std::vector<float> &Retriever::visionEmbeds(const std::string &imagePath) const {
  if (auto it = visionEmbeds_.find(imagePath); it != visionEmbeds_.end()) return it->second;
  const std::vector<const float *> ptrs = params_.pointers();
  return visionEmbeds_
      .emplace(imagePath, mm::visionEmbeds(model_, {ptrs.begin(), ptrs.end()}, format_.shape, imagePath))
      .first->second;
}

std::vector<float> Retriever::imageFeatures(const std::string &imagePath) const {
  const std::vector<float> &embeds = visionEmbeds(imagePath);
  std::vector<HostTensor> out =
      model_.run("image_features", params_.pointers(), {tensorOf(embeds.data(), embeds.size() * 4)});
  const float *f = out[0].as<float>();
  return std::vector<float>(f, f + queries_ * embed_);
}

std::vector<float> Retriever::textFeatures(const std::string &text) const {
  std::vector<int32_t> ids = textIds(text);
  const int32_t length = (int32_t)ids.size();
  ids.resize(format_.textLength, format_.shape.padToken);
  std::vector<HostTensor> out = model_.run("text_features", params_.pointers(),
                                           {tensorOf(ids.data(), ids.size() * 4), tensorOf(&length, 4)});
  const float *f = out[0].as<float>();
  return std::vector<float>(f, f + embed_);
}

float Retriever::itcScore(const std::vector<float> &image, const std::vector<float> &text) const {
  float best = -INFINITY;
  for (int64_t q = 0; q < queries_; ++q) {
    float dot = 0;
    for (int64_t e = 0; e < embed_; ++e) dot += image[q * embed_ + e] * text[e];
    best = std::max(best, dot);
  }
  return best;
}

std::array<float, 2> Retriever::itmLogits(const std::string &imagePath, const std::string &text) const {
  const std::vector<float> &embeds = visionEmbeds(imagePath);
  std::vector<int32_t> ids = textIds(text);
  const int32_t length = (int32_t)(format_.queries + (int64_t)ids.size());
  ids.resize(format_.textLength, format_.shape.padToken);
  std::vector<HostTensor> out =
      model_.run("itm_scores", params_.pointers(),
                 {tensorOf(embeds.data(), embeds.size() * 4), tensorOf(ids.data(), ids.size() * 4), tensorOf(&length, 4)});
  const float *l = out[0].as<float>();
  return {l[0], l[1]};
}

float Retriever::itmProbability(const std::array<float, 2> &l) {
  const float m = std::max(l[0], l[1]);
  return std::exp(l[1] - m) / (std::exp(l[0] - m) + std::exp(l[1] - m));
}

double recallAtK(const std::vector<std::vector<float>> &scores, int k, const std::vector<int64_t> &groups) {
  if (scores.empty()) return 0;
  auto correct = [&](size_t q, size_t c) { return groups.empty() ? c == q : groups[c] == groups[q]; };
  int64_t hits = 0;
  for (size_t q = 0; q < scores.size(); ++q) {
    float best = scores[q][q];
    for (size_t c = 0; c < scores[q].size(); ++c)
      if (correct(q, c)) best = std::max(best, scores[q][c]);
    int64_t better = 0; // wrong candidates scoring at least as high (ties count against)
    for (size_t c = 0; c < scores[q].size(); ++c) better += !correct(q, c) && !(scores[q][c] < best);
    hits += better < k;
  }
  return (double)hits / (double)scores.size();
}

std::vector<int64_t> captionGroups(const std::vector<std::string> &captions) {
  std::map<std::string, int64_t> first;
  std::vector<int64_t> groups;
  for (size_t i = 0; i < captions.size(); ++i) groups.push_back(first.emplace(captions[i], (int64_t)i).first->second);
  return groups;
}

RetrievalOptions parseRetrievalOptions(const std::vector<std::string> &a) {
  RetrievalOptions o;
  for (size_t i = 0; i < a.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= a.size()) throw Error(a[i] + " needs a value");
      return a[++i];
    };
    const std::string &f = a[i];
    if (f == "--rank") o.evaluate = false;
    else if (f == "--eval-retrieval") o.evaluate = true;
    else if (f == "--weights") o.weights = value();
    else if (f == "--image") o.image = value();
    else if (f == "--texts") o.texts = value();
    else if (f == "--data") o.data = value();
    else if (f == "--image-dir") o.imageDir = value();
    else if (f == "--rerank") o.rerank = (int)parseIntFlag(f, value(), 0);
    else if (f == "--limit") o.limit = parseIntFlag(f, value(), 1);
    else if (!f.empty() && f[0] == '-') throw Error("unknown retrieval option '" + f + "'\nusage:\n" + kRetrievalUsage);
    else if (o.model.empty()) o.model = f;
    else throw Error("more than one model file ('" + o.model + "', '" + f + "')");
  }
  if (o.model.empty()) throw Error(std::string("no model library given\nusage:\n") + kRetrievalUsage);
  if (!o.evaluate && (o.image.empty() || o.texts.empty()))
    throw Error(std::string("--rank needs --image IMG and --texts FILE\nusage:\n") + kRetrievalUsage);
  if (o.evaluate && o.data.empty())
    throw Error(std::string("--eval-retrieval needs --data FILE.json\nusage:\n") + kRetrievalUsage);
  return o;
}

namespace {

/// Ranks candidates by their ITC SCORES (best first), then re-scores the
/// first K by ITC score + ITM match logit (ITM(candidate)) and orders them by
/// that. ITM_PROBS, if given: each re-scored candidate's ITM match
/// probability (NaN for the others).
std::vector<size_t> rankWithRerank(const std::vector<float> &scores, int k,
                                   const std::function<std::array<float, 2>(size_t)> &itm,
                                   std::vector<float> *itmProbs = nullptr) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] > scores[b]; });
  const size_t top = std::min<size_t>(k, order.size());
  std::vector<float> combined(scores.size(), NAN), probs(scores.size(), NAN);
  for (size_t r = 0; r < top; ++r) {
    const std::array<float, 2> l = itm(order[r]);
    combined[order[r]] = scores[order[r]] + l[1];
    probs[order[r]] = Retriever::itmProbability(l);
  }
  std::stable_sort(order.begin(), order.begin() + top, [&](size_t a, size_t b) { return combined[a] > combined[b]; });
  if (itmProbs) *itmProbs = probs;
  return order;
}

int rank(const RetrievalOptions &o, const Retriever &r) {
  std::ifstream in(o.texts);
  if (!in) throw Error(o.texts + ": cannot open");
  std::vector<std::string> texts;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) texts.push_back(line);
  if (texts.empty()) throw Error(o.texts + ": holds no text (one per line)");
  const std::vector<float> image = r.imageFeatures(o.image);
  std::vector<float> itc;
  for (const std::string &t : texts) itc.push_back(r.itcScore(image, r.textFeatures(t)));
  std::vector<float> itm;
  std::vector<size_t> order = rankWithRerank(itc, o.rerank, [&](size_t i) { return r.itmLogits(o.image, texts[i]); }, &itm);
  std::printf("%-5s %8s %8s  %s\n", "rank", "ITC", "ITM", "text");
  for (size_t k = 0; k < order.size(); ++k) {
    size_t i = order[k];
    char itmText[16] = "-";
    if (!std::isnan(itm[i])) std::snprintf(itmText, sizeof itmText, "%.4f", itm[i]);
    std::printf("%-5zu %8.4f %8s  %s\n", k + 1, itc[i], itmText, texts[i].c_str());
  }
  return 0;
}

int evaluate(const RetrievalOptions &o, const Retriever &r) {
  std::vector<ConversationRecord> records = loadConversations(o.data);
  if (o.limit > 0 && (int64_t)records.size() > o.limit) records.resize(o.limit);
  std::vector<std::string> images, captions;
  for (const ConversationRecord &rec : records) {
    checkRecord(rec, ChatTemplate::QFormerText);
    std::optional<std::string> path = recordImagePath(rec, o.imageDir);
    images.push_back(*path);
    captions.push_back(rec.answer ? *rec.answer : rec.turns[1].value);
  }
  const size_t n = records.size();
  if (n < 2) throw Error(o.data + ": retrieval needs at least two records");
  std::vector<std::vector<float>> imageFeats, textFeats;
  for (size_t i = 0; i < n; ++i) {
    try {
      imageFeats.push_back(r.imageFeatures(images[i]));
    } catch (const Error &e) {
      throw Error(records[i].where() + ": " + e.what());
    }
    textFeats.push_back(r.textFeatures(captions[i]));
    if (isatty(2)) std::fprintf(stderr, "\rfeatures %zu/%zu", i + 1, n);
  }
  std::vector<std::vector<float>> i2t(n, std::vector<float>(n)), t2i(n, std::vector<float>(n));
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) t2i[j][i] = i2t[i][j] = r.itcScore(imageFeats[i], textFeats[j]);
  // ITM re-ranking of each query's top K: a query's candidates rescored by
  // ITC + ITM match logit, placed first in that order; recall then reads the
  // new order.
  auto reranked = [&](const std::vector<std::vector<float>> &s, bool imageQuery) {
    std::vector<std::vector<float>> out(n, std::vector<float>(n));
    for (size_t q = 0; q < n; ++q) {
      std::vector<size_t> order = rankWithRerank(s[q], o.rerank, [&](size_t c) {
        return imageQuery ? r.itmLogits(images[q], captions[c]) : r.itmLogits(images[c], captions[q]);
      });
      for (size_t k = 0; k < n; ++k) out[q][order[k]] = (float)(n - k); // rank as a score
      if (isatty(2)) std::fprintf(stderr, "\rITM re-ranking %s %zu/%zu", imageQuery ? "i2t" : "t2i", q + 1, n);
    }
    return out;
  };
  if (isatty(2)) std::fprintf(stderr, "\n");
  // Records whose captions are the same text: the text cannot tell their
  // images apart, so a retrieval of any of them is correct (as with COCO's
  // several captions per image); the strict figures count the own item only.
  const std::vector<int64_t> groups = captionGroups(captions);
  int64_t shared = 0;
  for (size_t i = 0; i < n; ++i)
    shared += std::count(groups.begin(), groups.end(), groups[i]) > 1;
  std::printf("%zu image-caption pairs (%s)", n, o.data.c_str());
  if (shared) std::printf("; %lld share their caption with another record", (long long)shared);
  std::printf("\n%-24s %9s %9s %16s\n", "", "recall@1", "recall@5", "strict recall@1");
  auto row = [&](const char *label, const std::vector<std::vector<float>> &s) {
    std::printf("%-24s %8.1f%% %8.1f%% %15.1f%%\n", label, 100 * recallAtK(s, 1, groups),
                100 * recallAtK(s, 5, groups), 100 * recallAtK(s, 1));
  };
  row("image->text ITC", i2t);
  row("text->image ITC", t2i);
  if (o.rerank > 0) {
    auto i2tR = reranked(i2t, true), t2iR = reranked(t2i, false);
    if (isatty(2)) std::fprintf(stderr, "\n");
    char label[64];
    std::snprintf(label, sizeof label, "image->text ITM top-%d", o.rerank);
    row(label, i2tR);
    std::snprintf(label, sizeof label, "text->image ITM top-%d", o.rerank);
    row(label, t2iR);
  }
  return 0;
}

} // namespace

int runRetrieval(const RetrievalOptions &o) {
  CompiledModel model = CompiledModel::load(o.model);
  ParameterStore params(model.params());
  if (!o.weights.empty()) params.loadSafetensors(o.weights);
  else params.initFromSeed(0);
  if (model.tokenizerJson().empty()) throw Error(o.model + " carries no tokenizer; retrieval needs one");
  Tokenizer tokenizer = Tokenizer::fromJson(model.tokenizerJson(), o.model + " (embedded tokenizer.json)");
  Retriever r(model, params, tokenizer);
  return o.evaluate ? evaluate(o, r) : rank(o, r);
}

} // namespace mm
