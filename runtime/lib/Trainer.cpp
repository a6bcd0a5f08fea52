//===- Trainer.cpp - `mmrun MODEL.so --train STAGE ...` ---------------------===//
#include "mm/Trainer.h"
#include "SplitMix64.h"
#include "mm/Checkpoint.h"
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Model.h"
#include "mm/Optimizer.h"
#include "mm/Parameters.h"
#include "mm/Safetensors.h"
#include "mm/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <sstream>
#include <omp.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

const char *const kTrainUsage =
    "       mmrun MODEL.so --train STAGE --data FILE.json [--image-dir DIR] [--steps N | --epochs E]\n"
    "                      [--batch B] [--grad-accum K] [--lr LR] [--max-grad-norm X] [--seed S]\n"
    "                      [--init CKPT | --resume CKPT] [--save CKPT] [--save-every N] [--stop-at K]\n"
    "                      [--log FILE.jsonl] [--dump-batches FILE.jsonl] [--dump-grads FILE]\n"
    "                      [--print-every N] [--skip-bad] [--sample-threads N]\n"
    "\n"
    "  --train STAGE     train the model's stage STAGE (see --info: stages) with its train entry\n"
    "  --data FILE       LLaVA conversation JSON: [{\"id\", \"image\", \"conversations\": [...]}, ...]\n"
    "  --image-dir DIR   where the records' images are (needed when they have images)\n"
    "  --steps N         the stage's length in optimizer steps (the LR schedule follows it)\n"
    "  --epochs E        or its length in passes over the data (default: the stage's)\n"
    "  --batch B         samples per micro-batch (default: the stage's)\n"
    "  --grad-accum K    micro-batches per optimizer step (default 1)\n"
    "  --lr LR           peak learning rate (default: the stage's)\n"
    "  --max-grad-norm X clip the global gradient norm to X (default 1; 0: no clipping)\n"
    "  --seed S          seed of the initialisation and the data order (default 0)\n"
    "  --init CKPT       start from these weights (a weights file or a checkpoint)\n"
    "  --resume CKPT     continue a stopped run from its checkpoint (same data and settings)\n"
    "  --save CKPT       write a resumable checkpoint at the end (and at --save-every / --stop-at)\n"
    "  --save-every N    also save every N steps\n"
    "  --stop-at K       stop after step K (saving to --save); --resume continues it\n"
    "  --log FILE        one JSON line per step: step, loss, lr, grad_norm, tokens_per_s\n"
    "  --dump-batches F  one JSON line per step: its samples' ids, image paths, input ids, targets\n"
    "  --dump-grads F    safetensors of the first step's gradients (divided by its target tokens,\n"
    "                    before clipping), under the trainable parameters' names\n"
    "  --print-every N   progress line every N steps when stderr is not a terminal (default 10)\n"
    "  --skip-bad        leave out records that are malformed, do not fit the template or whose image\n"
    "                    is missing or undecodable (counted) instead of stopping at the first\n"
    "  --sample-threads N  samples of a step computed at once, one per thread, each kernel on one\n"
    "                    thread (CPU models; 1: every kernel split over the threads instead; default:\n"
    "                    OMP_NUM_THREADS or the cores where the extra gradient copies take at most\n"
    "                    256 MiB, else 1)\n";

namespace {

// --- argument parsing -------------------------------------------------------

double parseReal(const std::string &flag, const std::string &v, double min, bool strictlyAbove) {
  try {
    size_t used = 0;
    double x = std::stod(v, &used);
    if (used == v.size() && std::isfinite(x) && (strictlyAbove ? x > min : x >= min)) return x;
  } catch (const std::exception &) {
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%g", min);
  throw Error(flag + ": '" + v + "' is not a number " + (strictlyAbove ? "> " : ">= ") + buf);
}

// --- small helpers ------------------------------------------------------------

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

/// ACC[i] += ADD[i] over N floats (gradient sums).
void addInto(float *acc, const float *add, size_t n) {
#pragma omp parallel for schedule(static) if (parallelElementwise(n))
  for (size_t e = 0; e < n; ++e) acc[e] += add[e];
}

/// The sample order of EPOCH: a Fisher-Yates shuffle from SEED and EPOCH.
std::vector<size_t> epochOrder(uint64_t seed, int64_t epoch, size_t n) {
  std::vector<size_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = i;
  uint64_t state = seed * 0xD1B54A32D192ED03ull ^ (uint64_t(epoch) + 1) * 0x9E3779B97F4A7C15ull;
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[splitmix64(state) % i]);
  return order;
}

/// Reorders ORDER (an epoch's permutation, whose first element sits at
/// global data position OFFSET) so that no micro-batch of BATCH positions
/// holds two records with the same KEY where that can be helped: a record
/// whose key is already in its batch swaps with the first later one whose key
/// is not. For in-batch negatives (BLIP-2's stage 1), where two records with
/// the same caption would be a "negative" pair identical to the positive, and
/// the ITM's hard-negative sampler, drawing by ITC similarity, would pick
/// exactly that duplicate. Deterministic: a function of the order and keys.
void spreadDuplicates(std::vector<size_t> &order, int64_t offset, int64_t batch, const std::vector<std::string> &keys) {
  const int64_t n = (int64_t)order.size();
  for (int64_t i = 0; i < n; ++i) {
    const int64_t start = std::max<int64_t>(0, (offset + i) / batch * batch - offset);
    auto inBatch = [&](const std::string &key) {
      for (int64_t j = start; j < i; ++j)
        if (keys[order[j]] == key) return true;
      return false;
    };
    if (!inBatch(keys[order[i]])) continue;
    for (int64_t j = i + 1; j < n; ++j)
      if (!inBatch(keys[order[j]])) {
        std::swap(order[i], order[j]);
        break;
      }
  }
}

/// A fingerprint of the records' content (ids, images, turns).
std::string dataFingerprint(const std::vector<ConversationRecord> &records) {
  uint64_t h = 1469598103934665603ull;
  auto mix = [&](const std::string &s) {
    for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xff) * 1099511628211ull;
  };
  for (const ConversationRecord &r : records) {
    mix(r.id);
    mix(r.image ? *r.image : std::string("\x01"));
    for (const ConversationTurn &t : r.turns) {
      mix(t.from);
      mix(t.value);
    }
    // Patch labels only where there are some, so conversation data keeps the
    // fingerprint older checkpoints recorded.
    for (const std::vector<int32_t> *perPatch : {&r.patchLabels, &r.patchCells}) {
      if (perPatch->empty()) continue;
      std::string text;
      for (int32_t v : *perPatch) text += std::to_string(v) + ",";
      mix(text);
    }
  }
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", (unsigned long long)h);
  return buf;
}

std::string duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "?";
  long s = (long)std::lround(seconds);
  char buf[32];
  if (s >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, (s / 60) % 60);
  else if (s >= 60) std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  else std::snprintf(buf, sizeof buf, "%lds", s);
  return buf;
}

/// Opens a JSON-lines file for appending: truncated on a fresh run; on a
/// resumed run from step START, the lines of steps after START (written by
/// the stopped run after its checkpoint) are dropped first.
std::ofstream openJsonl(const std::string &path, bool resumed, int64_t start) {
  std::vector<std::string> keep;
  if (resumed) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      try {
        nlohmann::json j = nlohmann::json::parse(line);
        if (j.at("step").get<int64_t>() <= start) keep.push_back(line);
      } catch (const std::exception &) { // a torn last line of a killed run
      }
    }
  }
  std::ofstream out(path, std::ios::trunc);
  for (const std::string &l : keep) out << l << "\n";
  out.flush();
  if (!out) throw Error(path + ": cannot write");
  return out;
}

void writeLine(std::ofstream &out, const std::string &path, const nlohmann::json &j) {
  out << j.dump() << "\n";
  out.flush();
  if (!out) throw Error(path + ": cannot write (disk full?)");
}

// --- the stage ------------------------------------------------------------------

struct StageInfo {
  std::string name, trainEntry, data, schedule;
  std::vector<std::string> trainable;
  double lr = 0, warmupRatio = 0, weightDecay = 0, epochs = 1;
  int64_t batch = 1;
};

StageInfo findStage(const CompiledModel &model, const std::string &name) {
  std::string names;
  const nlohmann::json &manifest = model.manifest();
  if (manifest.contains("stages"))
    for (const nlohmann::json &s : manifest["stages"]) {
      std::string n = s.value("name", "");
      names += (names.empty() ? "" : ", ") + n;
      if (n != name) continue;
      StageInfo st;
      st.name = n;
      try {
        if (!s.contains("train_entry"))
          throw Error(model.path() + ": stage '" + name +
                      "' has no training entry (the library was built by an mmc without training support; "
                      "recompile it)");
        st.trainEntry = s.at("train_entry").get<std::string>();
        st.trainable = s.at("trainable_parameters").get<std::vector<std::string>>();
        st.data = s.at("data").get<std::string>();
        st.schedule = s.at("schedule").get<std::string>();
        st.lr = s.at("lr").get<double>();
        st.warmupRatio = s.at("warmup_ratio").get<double>();
        st.weightDecay = s.at("weight_decay").get<double>();
        st.epochs = s.at("epochs").get<double>();
        st.batch = s.at("batch").get<int64_t>();
      } catch (const nlohmann::json::exception &e) {
        throw Error(model.path() + ": stage '" + name + "' in the manifest is incomplete: " + e.what());
      }
      if (st.batch < 1 || !(st.epochs > 0) || !(st.lr >= 0) || !(st.warmupRatio >= 0) || !(st.weightDecay >= 0))
        throw Error(model.path() + ": stage '" + name + "' has invalid hyper-parameters in the manifest");
      return st;
    }
  throw Error(model.path() + ": model has no stage '" + name + "' (its stages: " + (names.empty() ? "none" : names) +
              ")");
}

/// The settings a run follows; a checkpoint stores them so a resumed run
/// follows the same ones.
struct Settings {
  int64_t batch = 1, gradAccum = 1, totalSteps = 0;
  double lr = 0, maxGradNorm = 1.0, warmupRatio = 0, weightDecay = 0;
  std::string schedule;
  uint64_t seed = 0;
  std::string dataRecords, dataHash;

  std::map<std::string, std::string> toMap() const {
    return {{"batch", std::to_string(batch)},    {"grad_accum", std::to_string(gradAccum)},
            {"lr", num(lr)},                     {"max_grad_norm", num(maxGradNorm)},
            {"warmup_ratio", num(warmupRatio)},  {"weight_decay", num(weightDecay)},
            {"schedule", schedule},              {"data_records", dataRecords},
            {"data_hash", dataHash}};
  }
};

int64_t stepsForEpochs(double epochs, size_t samples, int64_t perStep) {
  return std::max<int64_t>(1, (int64_t)std::ceil(epochs * (double)samples / (double)perStep));
}

Settings resolveFresh(const TrainOptions &o, const StageInfo &st, size_t samples) {
  Settings s;
  s.batch = o.batch.value_or(st.batch);
  s.gradAccum = o.gradAccum.value_or(1);
  s.lr = o.lr.value_or(st.lr);
  s.maxGradNorm = o.maxGradNorm.value_or(1.0);
  s.warmupRatio = st.warmupRatio;
  s.weightDecay = st.weightDecay;
  s.schedule = st.schedule;
  s.seed = o.seed.value_or(0);
  s.totalSteps = o.steps ? *o.steps : stepsForEpochs(o.epochs.value_or(st.epochs), samples, s.batch * s.gradAccum);
  return s;
}

Settings resolveResumed(const TrainOptions &o, const CheckpointState &ck, size_t samples) {
  const std::string &path = o.resume;
  auto get = [&](const std::string &key) -> const std::string & {
    auto it = ck.settings.find(key);
    if (it == ck.settings.end()) throw Error(path + ": checkpoint metadata lacks 'mm." + key + "'");
    return it->second;
  };
  auto conflict = [&](const std::string &flag, const std::string &given, const std::string &stored) {
    if (given != stored)
      throw Error(flag + " " + given + " differs from the checkpoint's " + stored + " (" + path +
                  "); a resumed run keeps the settings it was started with");
  };
  Settings s;
  try {
    s.batch = std::stoll(get("batch"));
    s.gradAccum = std::stoll(get("grad_accum"));
    s.lr = std::stod(get("lr"));
    s.maxGradNorm = std::stod(get("max_grad_norm"));
    s.warmupRatio = std::stod(get("warmup_ratio"));
    s.weightDecay = std::stod(get("weight_decay"));
  } catch (const std::logic_error &) {
    throw Error(path + ": checkpoint metadata holds a malformed setting");
  }
  s.schedule = get("schedule");
  s.dataRecords = get("data_records");
  s.dataHash = get("data_hash");
  s.seed = ck.seed;
  s.totalSteps = ck.totalSteps;
  if (s.batch < 1 || s.gradAccum < 1) throw Error(path + ": checkpoint metadata holds a batch size below 1");
  if (o.batch) conflict("--batch", std::to_string(*o.batch), std::to_string(s.batch));
  if (o.gradAccum) conflict("--grad-accum", std::to_string(*o.gradAccum), std::to_string(s.gradAccum));
  if (o.lr) conflict("--lr", num(*o.lr), num(s.lr));
  if (o.maxGradNorm) conflict("--max-grad-norm", num(*o.maxGradNorm), num(s.maxGradNorm));
  if (o.seed) conflict("--seed", std::to_string(*o.seed), std::to_string(s.seed));
  if (o.steps) conflict("--steps", std::to_string(*o.steps), std::to_string(s.totalSteps));
  if (o.epochs)
    conflict("--epochs (" + num(*o.epochs) + ") gives steps",
             std::to_string(stepsForEpochs(*o.epochs, samples, s.batch * s.gradAccum)), std::to_string(s.totalSteps));
  return s;
}

// --- progress -----------------------------------------------------------------

class Progress {
public:
  Progress(bool quiet, int64_t every, int64_t start, int64_t total)
      : quiet_(quiet), tty_(::isatty(fileno(stderr))), every_(every), start_(start), total_(total),
        begin_(std::chrono::steady_clock::now()) {}

  void update(int64_t done, double loss, double lr, double tokensPerS) {
    if (quiet_) return;
    double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - begin_).count();
    double eta = elapsed / double(done - start_) * double(total_ - done);
    char line[256];
    if (tty_) {
      const int width = 24;
      int filled = (int)(width * done / std::max<int64_t>(1, total_));
      std::string bar(filled, '#');
      bar.resize(width, '.');
      std::snprintf(line, sizeof line, "\r[%s] step %lld/%lld  loss %.4f  lr %.3e  %.0f tok/s  ETA %s\x1b[K",
                    bar.c_str(), (long long)done, (long long)total_, loss, lr, tokensPerS, duration(eta).c_str());
      std::fputs(line, stderr);
      std::fflush(stderr);
      dirty_ = true;
    } else if (done % every_ == 0 || done == total_ || done == start_ + 1) {
      std::snprintf(line, sizeof line, "mmrun: step %lld/%lld  loss %.4f  lr %.3e  %.0f tok/s  ETA %s\n",
                    (long long)done, (long long)total_, loss, lr, tokensPerS, duration(eta).c_str());
      std::fputs(line, stderr);
    }
  }
  /// Ends the progress-bar line before anything else is printed.
  void breakLine() {
    if (dirty_) std::fputc('\n', stderr);
    dirty_ = false;
  }

private:
  bool quiet_, tty_;
  int64_t every_, start_, total_;
  std::chrono::steady_clock::time_point begin_;
  bool dirty_ = false;
};

/// For an entry that takes the frozen vision tower's output (image_embeds)
/// instead of pixels: that output per image, from the model's vision_embeds
/// entry, computed once and kept for later steps and samples (the tower is
/// frozen, so it never changes during the run) up to kMaxBytes. `input` is
/// safe to call from the step's sample threads at once; empty when the entry
/// takes pixel values. MM_VISION_CACHE=0 in the environment keeps nothing.
struct FrozenVisionCache {
  static constexpr size_t kMaxBytes = size_t(2) << 30;
  struct State {
    std::mutex mu;
    std::map<std::string, std::vector<float>> byPath;
    size_t bytes = 0, limit = kMaxBytes;
    int64_t computed = 0, reused = 0;
  };
  ImageInput input;
  std::shared_ptr<State> state;

  /// "vision tower output: N images computed, M reads from the cache (X MiB)", or "".
  std::string summary() const {
    if (!state) return "";
    std::lock_guard<std::mutex> lock(state->mu);
    char line[160];
    std::snprintf(line, sizeof line, "vision tower output: %lld images computed, %lld reads from the cache (%.1f MiB)",
                  (long long)state->computed, (long long)state->reused, state->bytes / 1048576.0);
    return line;
  }
};

/// The cache for ENTRY of STAGE (see FrozenVisionCache). Throws, naming the
/// model file, if the model has no vision_embeds entry, if that entry does not
/// give what ENTRY takes per image, or if the stage trains a parameter it reads
/// (its output would go stale).
FrozenVisionCache frozenVisionCache(const CompiledModel &model, const std::string &stage, const EntrySpec &entry,
                                    const std::vector<size_t> &trained, const std::vector<const void *> &params,
                                    const SampleFormat &format) {
  if (entry.args.empty() || entry.args[0].name != "image_embeds") return {};
  const EntrySpec *vit = model.hasEntry("vision_embeds") ? &model.entry("vision_embeds") : nullptr;
  if (!vit || vit->results.size() != 1 || vit->args.size() != 1 || vit->args[0].name != "pixel_values")
    throw Error(model.path() + ": entry '" + entry.name +
                "' takes image_embeds, but the model has no entry 'vision_embeds' (pixel_values) -> (image_embeds)");
  const int64_t images = entryBatch(entry), perImage = vit->results[0].numel();
  if (images < 1 || perImage * images != entry.args[0].numel())
    throw Error(model.path() + ": entry '" + entry.name + "' takes " + std::to_string(entry.args[0].numel()) +
                " values of image_embeds for " + std::to_string(images) + " image(s), but vision_embeds gives " +
                std::to_string(perImage) + " per image");
  for (int64_t i : vit->reads)
    if (std::find(trained.begin(), trained.end(), (size_t)i) != trained.end())
      throw Error(model.path() + ": stage '" + stage + "' trains '" + model.params()[i].name +
                  "', which vision_embeds reads: the vision tower's output cannot be computed once per image (freeze "
                  "the tower in this stage, or give the stage a loss entry that takes pixel_values)");
  FrozenVisionCache cache;
  cache.state = std::make_shared<FrozenVisionCache::State>();
  if (const char *env = std::getenv("MM_VISION_CACHE"); env && std::string(env) == "0") cache.state->limit = 0;
  cache.input = [&model, params, format, state = cache.state](const std::string &path) {
    {
      std::lock_guard<std::mutex> lock(state->mu);
      if (auto it = state->byPath.find(path); it != state->byPath.end()) {
        ++state->reused;
        return it->second;
      }
    }
    // Outside the lock, so that the other sample threads go on (two may
    // compute one image at once: the same values). Concurrent entry calls
    // need a workspace each: this thread's own.
    thread_local std::vector<uint8_t> workspace;
    std::vector<float> embeds = visionEmbeds(model, params, format.shape, path, &workspace);
    const size_t bytes = embeds.size() * sizeof(float);
    std::lock_guard<std::mutex> lock(state->mu);
    ++state->computed;
    if (state->bytes + bytes <= state->limit && state->byPath.emplace(path, embeds).second) state->bytes += bytes;
    return embeds;
  };
  return cache;
}

} // namespace

// --- parsing ----------------------------------------------------------------------

TrainOptions parseTrainOptions(const std::vector<std::string> &a) {
  TrainOptions o;
  bool haveTrain = false;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string &f = a[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= a.size()) throw Error(f + " needs a value");
      return a[++i];
    };
    if (f == "--train") { o.stage = value(); haveTrain = true; }
    else if (f == "--data") o.data = value();
    else if (f == "--image-dir") o.imageDir = value();
    else if (f == "--steps") o.steps = parseIntFlag(f, value(), 1);
    else if (f == "--epochs") o.epochs = parseReal(f, value(), 0, true);
    else if (f == "--batch") o.batch = parseIntFlag(f, value(), 1);
    else if (f == "--grad-accum") o.gradAccum = parseIntFlag(f, value(), 1);
    else if (f == "--lr") o.lr = parseReal(f, value(), 0, false);
    else if (f == "--max-grad-norm") o.maxGradNorm = parseReal(f, value(), 0, false);
    else if (f == "--seed") o.seed = (uint64_t)parseIntFlag(f, value(), 0);
    else if (f == "--init") o.init = value();
    else if (f == "--save") o.save = value();
    else if (f == "--save-every") o.saveEvery = parseIntFlag(f, value(), 1);
    else if (f == "--stop-at") o.stopAt = parseIntFlag(f, value(), 1);
    else if (f == "--resume") o.resume = value();
    else if (f == "--log") o.log = value();
    else if (f == "--dump-batches") o.dumpBatches = value();
    else if (f == "--dump-grads") o.dumpGrads = value();
    else if (f == "--print-every") o.printEvery = parseIntFlag(f, value(), 1);
    else if (f == "--skip-bad") o.skipBad = true;
    else if (f == "--sample-threads") o.sampleThreads = parseIntFlag(f, value(), 1);
    else if (f == "--weights") throw Error("--weights does not apply to --train; use --init to start from weights");
    else if (!f.empty() && f[0] == '-') throw Error("unknown option '" + f + "' for --train\nusage:\n" + kTrainUsage);
    else if (o.model.empty()) o.model = f;
    else throw Error("more than one model file ('" + o.model + "', '" + f + "')");
  }
  if (o.model.empty()) throw Error(std::string("no model library given\nusage:\n") + kTrainUsage);
  if (!haveTrain || o.stage.empty()) throw Error("--train needs a stage name");
  if (o.data.empty()) throw Error("--train needs --data FILE.json");
  return o;
}

// --- the run ------------------------------------------------------------------------

int runTraining(const TrainOptions &o) {
  using Clock = std::chrono::steady_clock;
  const auto runBegin = Clock::now();
  if (o.steps && o.epochs) throw Error("give --steps or --epochs, not both");
  if (!o.init.empty() && !o.resume.empty()) throw Error("give --init or --resume, not both");
  if ((o.stopAt || o.saveEvery) && o.save.empty())
    throw Error(std::string(o.stopAt ? "--stop-at" : "--save-every") + " needs --save CKPT to write its checkpoint to");
  if (o.printEvery < 1) throw Error("--print-every must be at least 1");

  CompiledModel model = CompiledModel::load(o.model);
  const StageInfo stage = findStage(model, o.stage);
  const EntrySpec &entry = model.entry(stage.trainEntry);
  const ChatTemplate tmpl = chatTemplateForData(stage.data);
  parseSchedule(stage.schedule); // reject an unknown one before any work

  // Trainable parameters, in the order of the entry's gradient results.
  ParameterStore params(model.params());
  std::vector<size_t> trainIdx;
  std::vector<TensorSpec> trainSpecs;
  int64_t trainNumel = 0;
  for (const std::string &name : stage.trainable) {
    int64_t i = params.indexOf(name);
    if (i < 0)
      throw Error(model.path() + ": stage '" + stage.name + "' trains '" + name + "', which is not a parameter");
    if (std::find(trainIdx.begin(), trainIdx.end(), (size_t)i) != trainIdx.end())
      throw Error(model.path() + ": stage '" + stage.name + "' lists '" + name + "' twice");
    trainIdx.push_back((size_t)i);
    trainSpecs.push_back(params.spec(i));
    trainNumel += params.spec(i).numel();
  }
  if (trainIdx.empty()) throw Error(model.path() + ": stage '" + stage.name + "' has no trainable parameters");
  if (entry.results.size() != trainIdx.size() + 1 || entry.results[0].numel() != 1)
    throw Error(model.path() + ": entry '" + entry.name + "' returns " + std::to_string(entry.results.size()) +
                " results; expected the loss and " + std::to_string(trainIdx.size()) + " gradients");
  for (size_t i = 0; i < params.size(); ++i)
    if (params.spec(i).type != ElemType::F32)
      throw Error(model.path() + ": parameter '" + params.spec(i).name + "' is not F32; training needs F32 parameters");
  for (size_t j = 0; j < entry.results.size(); ++j)
    if (entry.results[j].type != ElemType::F32)
      throw Error(model.path() + ": entry '" + entry.name + "' result " + std::to_string(j) + " is not F32");
  for (size_t j = 0; j < trainIdx.size(); ++j)
    if (entry.results[j + 1].shape != trainSpecs[j].shape)
      throw Error(model.path() + ": entry '" + entry.name + "' result " + std::to_string(j + 1) +
                  " does not have the shape of '" + trainSpecs[j].name + "'");

  if (model.tokenizerJson().empty())
    throw Error(model.path() + ": carries no tokenizer; training samples need one");
  const Tokenizer tokenizer = Tokenizer::fromJson(model.tokenizerJson(), model.path() + " (embedded tokenizer.json)");
  const SampleFormat format = sampleFormat(model, tokenizer);

  // The data, checked whole before any step (no surprise hours into a run).
  // Every record must fit the template and, where the entry reads images,
  // have an image that decodes; with --skip-bad the ones that do not are
  // counted and left out.
  SkippedRecords skipped;
  std::vector<ConversationRecord> records;
  {
    std::vector<ConversationRecord> all = loadConversations(o.data, o.skipBad ? &skipped : nullptr);
    const bool readsImages = std::any_of(entry.args.begin(), entry.args.end(), [](const TensorSpec &a) {
      return a.name == "pixel_values" || a.name == "image_embeds";
    });
    std::set<std::string> decoded;
    for (ConversationRecord &r : all) {
      try {
        if (readsImages) checkRecordAndImage(r, tmpl, o.imageDir, decoded);
        else checkRecord(r, tmpl);
      } catch (const Error &e) {
        if (!o.skipBad) throw;
        skipped.add(e.what());
        continue;
      }
      records.push_back(std::move(r));
    }
  }
  if (records.empty()) throw Error(o.data + ": every record is bad (first: " + skipped.first + ")");
  if (skipped.count && !o.quiet)
    std::cerr << "mmrun: --skip-bad: left out " << skipped.count << " bad record" << (skipped.count == 1 ? "" : "s")
              << " of " << skipped.count + records.size() << " (first: " << skipped.first << ")\n";
  const size_t n = records.size();

  // Settings: the stage's defaults and flags, or the checkpoint's.
  Settings set;
  CheckpointState ck;
  if (!o.resume.empty()) {
    ck = readCheckpointState(o.resume);
    if (ck.model != model.name())
      throw Error(o.resume + ": a checkpoint of model '" + ck.model + "'; this model is '" + model.name() + "'");
    if (ck.stage != stage.name)
      throw Error(o.resume + ": a checkpoint of stage '" + ck.stage + "'; it cannot resume stage '" + stage.name +
                  "' (to start " + stage.name + " from its weights, use --init)");
    set = resolveResumed(o, ck, n);
  } else {
    set = resolveFresh(o, stage, n);
  }
  const std::string recordCount = std::to_string(n), hash = dataFingerprint(records);
  if (!o.resume.empty() && (set.dataRecords != recordCount || set.dataHash != hash))
    throw Error(o.data + ": " + recordCount + " records (fingerprint " + hash + ") but " + o.resume + " was trained on " +
                set.dataRecords + " records (fingerprint " + set.dataHash + "); resume with the same data");
  set.dataRecords = recordCount;
  set.dataHash = hash;
  // A batched entry (BLIP-2's stage 1: in-batch negatives) takes a whole
  // micro-batch per call, compiled for one batch size; its loss is already a
  // mean, so a step divides by its micro-batches instead of its target tokens.
  const bool batched = tmpl == ChatTemplate::QFormerText;
  if (batched && set.batch != entryBatch(entry))
    throw Error("stage '" + stage.name + "' of " + model.path() + " takes its batch of " +
                std::to_string(entryBatch(entry)) + " in one call (in-batch negatives), so --batch must be " +
                std::to_string(entryBatch(entry)) + " (got " + std::to_string(set.batch) +
                "); use --grad-accum for larger steps");
  const int64_t perStep = set.batch * set.gradAccum, total = set.totalSteps;
  const LrSchedule schedule{set.lr, parseSchedule(set.schedule), total, warmupSteps(set.warmupRatio, total)};

  AdamWOptions adamOpts;
  adamOpts.weightDecay = set.weightDecay;
  AdamW opt(trainSpecs, adamOpts);
  int64_t start = 0;
  if (!o.resume.empty()) {
    const CheckpointState loaded = loadCheckpoint(o.resume, model.name(), stage.name, params, opt);
    start = loaded.step;
    if (start > total || loaded.dataPosition != start * perStep)
      throw Error(o.resume + ": inconsistent checkpoint: step " + std::to_string(start) + " of " +
                  std::to_string(total) + " at data position " + std::to_string(loaded.dataPosition) + " (" +
                  std::to_string(perStep) + " samples per step)");
  } else if (!o.init.empty()) {
    params.loadSafetensors(o.init);
  } else {
    params.initFromSeed(set.seed);
  }
  const int64_t end = o.stopAt ? std::min(*o.stopAt, total) : total;
  if (o.stopAt && *o.stopAt <= start)
    throw Error("--stop-at " + std::to_string(*o.stopAt) + " is not after the checkpoint's step " +
                std::to_string(start));

  if (!o.quiet && start >= end)
    std::fprintf(stderr, "mmrun: %s already holds all %lld steps of %s; nothing to train\n", o.resume.c_str(),
                 (long long)total, stage.name.c_str());
  else if (!o.quiet)
    std::fprintf(stderr,
                 "mmrun: training %s of %s: %zu tensors (%lld parameters) trainable; %zu records (%s); steps "
                 "%lld..%lld of %lld, %lld samples each (batch %lld x grad-accum %lld); lr %g %s, %lld warm-up "
                 "steps; weight decay %g; max grad norm %g; seed %llu%s\n",
                 stage.name.c_str(), model.name().c_str(), trainIdx.size(), (long long)trainNumel, n,
                 chatTemplateName(tmpl), (long long)start + 1, (long long)end, (long long)total, (long long)perStep,
                 (long long)set.batch, (long long)set.gradAccum, set.lr, set.schedule.c_str(),
                 (long long)schedule.warmup, set.weightDecay, set.maxGradNorm, (unsigned long long)set.seed,
                 o.resume.empty() ? (o.init.empty() ? " (seeded initial weights)" : (", from " + o.init).c_str())
                                  : (", resumed from " + o.resume).c_str());

  const bool resumed = !o.resume.empty();
  std::ofstream logFile, dumpFile;
  if (!o.log.empty()) logFile = openJsonl(o.log, resumed, start);
  if (!o.dumpBatches.empty()) dumpFile = openJsonl(o.dumpBatches, resumed, start);

  const std::vector<const float *> paramPtrs = params.pointers();
  const std::vector<const void *> paramVoid(paramPtrs.begin(), paramPtrs.end());
  std::vector<float *> trainPtrs;
  for (size_t i : trainIdx) trainPtrs.push_back(params.data(i));
  std::vector<std::vector<float>> grads;
  for (const TensorSpec &s : trainSpecs) grads.emplace_back(s.numel(), 0.0f);
  std::vector<const float *> gradPtrs;
  for (const auto &g : grads) gradPtrs.push_back(g.data());
  const FrozenVisionCache vision = frozenVisionCache(model, stage.name, entry, trainIdx, paramVoid, format);
  const ImageInput &vitOutput = vision.input;

  // The samples of a step run at once on a CPU model, one per thread, every
  // kernel inside on that one thread: the tiny models' kernels are too short
  // to split over the cores well. Each worker sums a contiguous share of the
  // step's samples in order and the shares are added in worker order, so a
  // run is reproducible for a given thread count.
  // By default only where the extra gradient buffers (a sample's results and
  // a share's sum, per extra thread) are small: on the larger models the
  // kernels themselves split well, and the copies would cost memory.
  const int64_t trainBytes = (int64_t)trainNumel * (int64_t)sizeof(float);
  const int64_t cores = omp_get_max_threads();
  const int64_t defaultThreads = 2 * trainBytes * (cores - 1) <= (int64_t(256) << 20) ? cores : 1;
  const int64_t workers =
      batched ? 1 : std::min<int64_t>(perStep, model.onHost() ? o.sampleThreads.value_or(defaultThreads) : 1);
  struct Worker {
    std::vector<HostTensor> results; // the loss and gradients of one sample, storage reused
    std::vector<uint8_t> workspace;
    std::vector<std::vector<float>> grads; // the share's gradient sum (worker 0 uses `grads`)
    double lossSum = 0;
    std::string firstBad;
    std::exception_ptr error;
  };
  if (!o.quiet && workers > 1 && start < end)
    std::fprintf(stderr, "mmrun: %lld samples at a time, one thread each (--sample-threads)\n", (long long)workers);
  std::vector<Worker> pool((size_t)workers);
  for (int64_t w = 1; w < workers; ++w)
    for (const TensorSpec &s : trainSpecs) pool[w].grads.emplace_back(s.numel(), 0.0f);
  std::vector<TrainingSample> samples;

  // Patch-label records carry each patch's object's grid cell; only an entry that reads them learns them.
  const bool entryReadsCells = std::any_of(entry.args.begin(), entry.args.end(),
                                           [](const TensorSpec &a) { return a.name == "patch_cells"; });
  // Stage 1's in-batch negatives: no two records with the same caption in a batch.
  std::vector<std::string> captionKeys;
  if (batched)
    for (const ConversationRecord &r : records) captionKeys.push_back(r.turns.at(1).value); // as QFormerText reads it
  std::vector<size_t> order;
  int64_t orderEpoch = -1;
  std::vector<uint8_t> warned(n, 0);
  auto checkpointState = [&](int64_t done) {
    CheckpointState s;
    s.model = model.name();
    s.stage = stage.name;
    s.step = done;
    s.totalSteps = total;
    s.dataPosition = done * perStep;
    s.seed = set.seed;
    s.settings = set.toMap();
    return s;
  };
  int64_t lastSaved = -1, samplesRun = 0, targetTokens = 0, seqTokens = 0;
  double firstLoss = NAN, lastLoss = NAN;
  Progress progress(o.quiet, o.printEvery, start, total);

  // The samples of a step share their weights: a CPU library packs each
  // weight its products read once per step instead of once per sample
  // (abi.h, MM_WEIGHT_CACHE_SYMBOL; the same bits).
  const WeightCacheScope weightCache(model, paramVoid, perStep > 1);

  for (int64_t step = start; step < end; ++step) {
    const auto stepBegin = Clock::now();
    double lossSum = 0;
    int64_t count = 0, stepSeq = 0, divisor = 0; // target tokens; what the sums are divided by
    std::string firstBad;
    nlohmann::json dumped = nlohmann::json::array();
    samples.clear();
    for (int64_t k = 0; k < perStep; ++k) {
      const int64_t pos = step * perStep + k, epoch = pos / (int64_t)n;
      if (epoch != orderEpoch) {
        order = epochOrder(set.seed, epoch, n);
        if (batched) spreadDuplicates(order, epoch * (int64_t)n, set.batch, captionKeys);
        orderEpoch = epoch;
      }
      const size_t idx = order[pos % (int64_t)n];
      std::ostringstream warning; // once per sample, not once per epoch
      TrainingSample s = buildSample(records[idx], tmpl, tokenizer, format, o.imageDir,
                                     warned[idx] ? nullptr : &warning);
      if (s.truncated()) warned[idx] = 1;
      if (!warning.str().empty()) {
        progress.breakLine();
        std::cerr << warning.str() << std::flush;
      }
      count += s.targetCount();
      // Positions the step computed: text positions, or patches for patch-label data.
      stepSeq += (int64_t)(s.inputIds.empty() ? s.targets.size() : s.inputIds.size() + s.decoderInputIds.size());
      if (dumpFile.is_open()) {
        nlohmann::json js = {{"id", s.id},
                             {"image", s.imagePath ? nlohmann::json(std::filesystem::absolute(*s.imagePath)
                                                                        .lexically_normal()
                                                                        .string())
                                                   : nlohmann::json(nullptr)},
                             {"input_ids", s.inputIds},
                             {"targets", s.targets}};
        if (!s.decoderInputIds.empty()) js["decoder_input_ids"] = s.decoderInputIds;
        if (!s.patchCells.empty() && entryReadsCells) js["patch_cells"] = s.patchCells;
        if (!s.cellColourIds.empty()) {
          js["cell_colour_ids"] = s.cellColourIds;
          js["cell_shape_ids"] = s.cellShapeIds;
        }
        dumped.push_back(std::move(js));
      }
      samples.push_back(std::move(s));
    }
    // BLIP-2 stage 1: one call per micro-batch; the ITM hard negatives are
    // drawn in the entry from uniform numbers that depend on the seed, the
    // step and the micro-batch only (a resumed run draws the same ones).
    nlohmann::json uniformsDumped = nlohmann::json::array();
    auto runBatched = [&] {
      for (auto &g : grads) std::fill(g.begin(), g.end(), 0.0f);
      Worker &me = pool[0];
      for (int64_t m = 0; m < set.gradAccum; ++m) {
        std::vector<const TrainingSample *> batch;
        for (int64_t k = m * set.batch; k < (m + 1) * set.batch; ++k) batch.push_back(&samples[k]);
        uint64_t state = set.seed * 0xA24BAED4963EE407ull ^ (uint64_t(step) * 0x9FB21C651E98DF25ull + uint64_t(m) + 1);
        std::vector<float> negText(set.batch), negImage(set.batch);
        for (float &u : negText) u = (float)((splitmix64(state) >> 40) * 0x1.0p-24);
        for (float &u : negImage) u = (float)((splitmix64(state) >> 40) * 0x1.0p-24);
        if (dumpFile.is_open()) uniformsDumped.push_back({{"negative_text_uniform", negText}, {"negative_image_uniform", negImage}});
        model.runInto(entry.name, paramVoid, stage1Args(entry, batch, format, negText, negImage, vitOutput),
                      me.results, &me.workspace);
        const float loss = me.results[0].as<float>()[0];
        if (!std::isfinite(loss) && firstBad.empty()) firstBad = batch.front()->where + " (its micro-batch)";
        lossSum += loss;
        for (size_t j = 0; j < grads.size(); ++j) addInto(grads[j].data(), me.results[j + 1].as<float>(), grads[j].size());
      }
    };
    auto runShare = [&](int64_t w) {
      Worker &me = pool[w];
      std::vector<std::vector<float>> &acc = w == 0 ? grads : me.grads;
      for (auto &g : acc) std::fill(g.begin(), g.end(), 0.0f);
      me.lossSum = 0;
      me.firstBad.clear();
      me.error = nullptr;
      try {
        for (int64_t k = perStep * w / workers, end = perStep * (w + 1) / workers; k < end; ++k) {
          model.runInto(entry.name, paramVoid, trainArgs(entry, samples[k], format, vitOutput), me.results, &me.workspace);
          const float loss = me.results[0].as<float>()[0];
          if (!std::isfinite(loss) && me.firstBad.empty()) me.firstBad = samples[k].where;
          me.lossSum += loss;
          for (size_t j = 0; j < acc.size(); ++j) addInto(acc[j].data(), me.results[j + 1].as<float>(), acc[j].size());
        }
      } catch (...) {
        me.error = std::current_exception();
      }
    };
    weightCache.declareAgain(); // the optimizer changed them
    if (batched) {
      runBatched();
      divisor = set.gradAccum; // the entry's loss is a mean per micro-batch
    } else if (workers == 1) {
      runShare(0);
    } else {
#pragma omp parallel num_threads(workers)
      {
        omp_set_num_threads(1); // the kernels' own parallel regions run on this thread
        // Every share runs even where the runtime grants fewer threads
        // (OMP_THREAD_LIMIT, nesting): a thread then takes several in turn.
        for (int64_t w = omp_get_thread_num(); w < workers; w += omp_get_num_threads()) runShare(w);
      }
    }
    for (int64_t w = 0; w < workers; ++w) {
      Worker &me = pool[w];
      if (me.error) std::rethrow_exception(me.error);
      if (batched) break;
      lossSum += me.lossSum;
      if (firstBad.empty()) firstBad = me.firstBad;
      if (w > 0)
        for (size_t j = 0; j < grads.size(); ++j) addInto(grads[j].data(), me.grads[j].data(), grads[j].size());
    }
    const int64_t done = step + 1;
    if (dumpFile.is_open()) {
      nlohmann::json line = {{"step", done}, {"samples", dumped}};
      if (batched) line["micro_batches"] = uniformsDumped;
      writeLine(dumpFile, o.dumpBatches, line);
    }
    const std::string stopNote =
        "; stopping without saving" +
        (lastSaved >= 0 ? " (the last checkpoint, " + o.save + ", holds step " + std::to_string(lastSaved) + ")"
                        : std::string(""));
    if (!batched) divisor = count;
    if (divisor == 0) {
      progress.breakLine();
      throw Error("step " + std::to_string(done) + " of " + std::to_string(total) + ": none of its " +
                  std::to_string(perStep) + " samples has a target token (truncated away?)" + stopNote);
    }
    const double loss = lossSum / (double)divisor;
    if (!std::isfinite(loss)) {
      progress.breakLine();
      throw Error("step " + std::to_string(done) + " of " + std::to_string(total) + ": the loss is " + num(loss) +
                  (firstBad.empty() ? std::string("") : " (first non-finite at " + firstBad + ")") + stopNote);
    }
    const float countF = (float)divisor;
    for (auto &g : grads) {
      float *x = g.data();
      const size_t n = g.size();
#pragma omp parallel for schedule(static) if (parallelElementwise(n))
      for (size_t e = 0; e < n; ++e) x[e] /= countF;
    }
    if (!o.dumpGrads.empty() && step == start) {
      std::vector<TensorToWrite> out;
      for (size_t j = 0; j < grads.size(); ++j)
        out.push_back({trainSpecs[j].name, DType::F32, trainSpecs[j].shape, grads[j].data()});
      writeSafetensors(o.dumpGrads, out,
                       {{"mm.model", model.name()}, {"mm.stage", stage.name}, {"mm.step", std::to_string(done)},
                        {"content", "gradients of step " + std::to_string(done) +
                                        " (divided by its target tokens, before clipping)"}});
    }
    const double gradNorm = clipGradNorm(grads, set.maxGradNorm);
    if (!std::isfinite(gradNorm)) {
      progress.breakLine();
      throw Error("step " + std::to_string(done) + " of " + std::to_string(total) + ": the gradient norm is " +
                  num(gradNorm) + stopNote);
    }
    const double lr = schedule.at(step);
    opt.step(trainPtrs, gradPtrs, lr);

    const double seconds = std::chrono::duration<double>(Clock::now() - stepBegin).count();
    const double tokensPerS = seconds > 0 ? (double)stepSeq / seconds : 0.0;
    samplesRun += perStep;
    targetTokens += count;
    seqTokens += stepSeq;
    if (std::isnan(firstLoss)) firstLoss = loss;
    lastLoss = loss;
    if (logFile.is_open())
      writeLine(logFile, o.log,
                {{"step", done}, {"loss", loss}, {"lr", lr}, {"grad_norm", gradNorm}, {"tokens_per_s", tokensPerS},
                 {"target_tokens", count}});
    progress.update(done, loss, lr, tokensPerS);
    if (!o.save.empty() && ((o.saveEvery && done % o.saveEvery == 0) || done == end)) {
      saveCheckpoint(o.save, params, opt, checkpointState(done));
      lastSaved = done;
    }
  }
  progress.breakLine();

  if (!o.quiet) {
    const double seconds = std::chrono::duration<double>(Clock::now() - runBegin).count();
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    if (end > start)
      std::printf("mmrun: %s of %s: steps %lld..%lld of %lld in %s (%lld samples, %lld tokens, %lld target tokens); "
                  "loss %.4f -> %.4f\n",
                  stage.name.c_str(), model.name().c_str(), (long long)start + 1, (long long)end, (long long)total,
                  duration(seconds).c_str(), (long long)samplesRun, (long long)seqTokens, (long long)targetTokens,
                  firstLoss, lastLoss);
    else
      std::printf("mmrun: %s of %s: all %lld steps were already done\n", stage.name.c_str(), model.name().c_str(),
                  (long long)total);
    if (std::string line = vision.summary(); !line.empty()) std::printf("mmrun: %s\n", line.c_str());
    if (lastSaved >= 0)
      std::printf("mmrun: saved %s (step %lld)%s\n", o.save.c_str(), (long long)lastSaved,
                  end < total ? ("; continue with --resume " + o.save).c_str() : "");
    std::printf("mmrun: peak resident memory %.1f MiB\n", ru.ru_maxrss / 1024.0);
    std::fflush(stdout);
  }
  return 0;
}

} // namespace mm
