//===- TrainerTest.cpp - tests for mm/Trainer.h and mm/Checkpoint.h -------===//
//
// Training runs of the fake model library (fake_train_model.cpp): logs,
// checkpoints, the loss against the forward entry, stop + resume bit for bit
// against a run straight through, NaN stops, --init, resume errors, and the
// checkpoint format on its own.
//
//===----------------------------------------------------------------------===//
#include "mm/Checkpoint.h"
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Llava.h"
#include "mm/Model.h"
#include "mm/Parameters.h"
#include "mm/Safetensors.h"
#include "mm/Trainer.h"

#include "TrainTestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <sys/stat.h>

using namespace mmtest;
using nlohmann::json;

namespace {

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const mm::Error &e) {
    return e.what();
  }
  return "(no error)";
}

bool exists(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

/// Every tensor of a safetensors file, by name, as raw bytes.
std::map<std::string, std::vector<uint8_t>> tensorsOf(const std::string &path) {
  mm::SafetensorsFile f = mm::SafetensorsFile::open(path);
  std::map<std::string, std::vector<uint8_t>> out;
  for (const mm::TensorInfo &t : f.tensors()) {
    const uint8_t *p = f.data(t);
    out[t.name] = std::vector<uint8_t>(p, p + (t.end - t.begin));
  }
  return out;
}

std::vector<json> jsonLines(const std::string &path) {
  std::vector<json> out;
  for (const std::string &l : readLines(path)) out.push_back(json::parse(l));
  return out;
}

std::vector<double> losses(const std::string &logPath) {
  std::vector<double> out;
  for (const json &j : jsonLines(logPath)) out.push_back(j.at("loss").get<double>());
  return out;
}

/// Five images and the records of both data kinds.
struct Fixture {
  TempDir dir{"trainer"};
  std::string captions = dir / "captions.json", chats = dir / "chats.json", images = dir / "images";

  Fixture() {
    ::mkdir(images.c_str(), 0755);
    json cap = json::array(), conv = json::array();
    const char *words[] = {"red", "green", "blue", "gold", "teal"};
    for (int i = 0; i < 5; ++i) {
      std::string img = "img" + std::to_string(i) + ".png";
      writePng(images + "/" + img, 16 + 3 * i, 24 - i, i);
      cap.push_back({{"id", "cap" + std::to_string(i)},
                     {"image", img},
                     {"conversations", {{{"from", "human"}, {"value", "<image>\n"}},
                                        {{"from", "gpt"}, {"value", std::string("a ") + words[i] + " shape"}}}}});
      json turns = {{{"from", "human"}, {"value", "<image>\nWhat colour is it?"}},
                    {{"from", "gpt"}, {"value", words[i]}}};
      if (i % 2) {
        turns.push_back({{"from", "human"}, {"value", "Sure?"}});
        turns.push_back({{"from", "gpt"}, {"value", "Yes."}});
      }
      conv.push_back({{"id", i}, {"image", img}, {"conversations", turns}});
    }
    writeText(captions, cap.dump(1));
    writeText(chats, conv.dump(1));
  }

  mm::TrainOptions options(const std::string &stage) const {
    mm::TrainOptions o;
    o.model = fakeModelPath();
    o.stage = stage;
    o.data = stage == "stage1" ? captions : chats;
    o.imageDir = images;
    o.quiet = true;
    return o;
  }
};

} // namespace

TEST(TrainOptions, ParsesEveryFlag) {
  mm::TrainOptions o = mm::parseTrainOptions(
      {"m.so", "--train", "stage1", "--data", "d.json", "--image-dir", "imgs", "--steps", "12", "--batch", "3",
       "--grad-accum", "2", "--lr", "1e-4", "--seed", "7", "--init", "w.st", "--save", "c.st", "--save-every", "5",
       "--stop-at", "6", "--log", "l.jsonl", "--dump-batches", "b.jsonl", "--max-grad-norm", "0.5",
       "--print-every", "3"});
  EXPECT_EQ(o.model, "m.so");
  EXPECT_EQ(o.stage, "stage1");
  EXPECT_EQ(o.data, "d.json");
  EXPECT_EQ(o.imageDir, "imgs");
  EXPECT_EQ(*o.steps, 12);
  EXPECT_FALSE(o.epochs);
  EXPECT_EQ(*o.batch, 3);
  EXPECT_EQ(*o.gradAccum, 2);
  EXPECT_DOUBLE_EQ(*o.lr, 1e-4);
  EXPECT_EQ(*o.seed, 7u);
  EXPECT_EQ(o.init, "w.st");
  EXPECT_EQ(o.save, "c.st");
  EXPECT_EQ(o.saveEvery, 5);
  EXPECT_EQ(*o.stopAt, 6);
  EXPECT_EQ(o.log, "l.jsonl");
  EXPECT_EQ(o.dumpBatches, "b.jsonl");
  EXPECT_DOUBLE_EQ(*o.maxGradNorm, 0.5);
  EXPECT_EQ(o.printEvery, 3);
  mm::TrainOptions r = mm::parseTrainOptions({"--train", "s", "m.so", "--data", "d", "--epochs", "1.5", "--resume", "c"});
  EXPECT_DOUBLE_EQ(*r.epochs, 1.5);
  EXPECT_EQ(r.resume, "c");
  EXPECT_FALSE(r.batch);
}

TEST(Flags, WholeNumbersInRangeOnly) {
  // COM: mmrun and mmdata share this parser; every bad value gets the same wording.
  EXPECT_EQ(mm::parseIntFlag("--n", "42", 1), 42);
  EXPECT_EQ(mm::parseIntFlag("--n", "-3", -5, 5), -3);
  EXPECT_EQ(errorOf([] { mm::parseIntFlag("--n", "", 1); }), "--n: '' is not a whole number >= 1");
  EXPECT_EQ(errorOf([] { mm::parseIntFlag("--n", "4x", 1); }), "--n: '4x' is not a whole number >= 1");
  EXPECT_EQ(errorOf([] { mm::parseIntFlag("--n", "2.5", 1); }), "--n: '2.5' is not a whole number >= 1");
  EXPECT_EQ(errorOf([] { mm::parseIntFlag("--n", "9", 1, 8); }), "--n: '9' is not a whole number from 1 to 8");
  EXPECT_EQ(errorOf([] { mm::parseIntFlag("--n", "99999999999999999999", 1); }),
            "--n: '99999999999999999999' is not a whole number >= 1");
}

TEST(TrainOptions, RejectsBadFlags) {
  auto err = [](std::vector<std::string> a) { return errorOf([&] { mm::parseTrainOptions(a); }); };
  EXPECT_NE(err({"m.so", "--train", "s", "--data", "d", "--steps", "0"}).find("--steps: '0' is not a whole number >= 1"),
            std::string::npos);
  EXPECT_NE(err({"m.so", "--train", "s", "--data", "d", "--lr", "fast"}).find("--lr: 'fast' is not a number"),
            std::string::npos);
  EXPECT_NE(err({"m.so", "--train", "s", "--data", "d", "--batch"}).find("--batch needs a value"), std::string::npos);
  EXPECT_NE(err({"m.so", "--train", "s", "--data", "d", "--bogus"}).find("unknown option '--bogus'"),
            std::string::npos);
  EXPECT_NE(err({"m.so", "--train", "s", "--data", "d", "--weights", "w"}).find("use --init"), std::string::npos);
  EXPECT_NE(err({"m.so", "--train", "s"}).find("--data"), std::string::npos);
  EXPECT_NE(err({"--train", "s", "--data", "d"}).find("no model library"), std::string::npos);
}

TEST(Trainer, Stage1TrainsOnlyItsGroupAndLogsEveryStep) {
  Fixture fx;
  mm::TrainOptions o = fx.options("stage1");
  o.log = fx.dir / "log.jsonl";
  o.save = fx.dir / "ck.safetensors";
  ASSERT_EQ(mm::runTraining(o), 0);

  // Stage defaults: 2 epochs of 5 samples, batch 2: ceil(10 / 2) = 5 steps;
  // warm-up ceil(0.1 * 5) = 1 step, so step 1 runs at lr 0.
  std::vector<json> log = jsonLines(o.log);
  ASSERT_EQ(log.size(), 5u);
  for (size_t i = 0; i < log.size(); ++i) {
    EXPECT_EQ(log[i].at("step").get<int64_t>(), (int64_t)i + 1);
    for (const char *k : {"loss", "lr", "grad_norm", "tokens_per_s"}) EXPECT_TRUE(log[i].contains(k)) << k;
    EXPECT_TRUE(std::isfinite(log[i].at("loss").get<double>()));
  }
  EXPECT_EQ(log[0].at("lr").get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(log[1].at("lr").get<double>(), 0.05);
  EXPECT_DOUBLE_EQ(log[3].at("lr").get<double>(), 0.05 * 0.5 * (1 + std::cos(M_PI * 2.0 / 4.0)));

  mm::SafetensorsFile ck = mm::SafetensorsFile::open(o.save);
  EXPECT_EQ(ck.metadata().at("mm.model"), "fake_llava");
  EXPECT_EQ(ck.metadata().at("mm.stage"), "stage1");
  EXPECT_EQ(ck.metadata().at("mm.step"), "5");
  EXPECT_EQ(ck.metadata().at("mm.total_steps"), "5");
  EXPECT_EQ(ck.metadata().at("mm.data_position"), "10");
  EXPECT_EQ(ck.metadata().at("mm.seed"), "0");
  std::set<std::string> names;
  for (const auto &t : ck.tensors()) names.insert(t.name);
  EXPECT_EQ(names, (std::set<std::string>{"embed.weight", "head.weight", "head.bias", "optimizer.exp_avg.head.weight",
                                          "optimizer.exp_avg_sq.head.weight", "optimizer.exp_avg.head.bias",
                                          "optimizer.exp_avg_sq.head.bias"}));

  // The frozen group keeps its seeded values bit for bit; the trained one moved.
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::ParameterStore seeded(model.params()), trained(model.params());
  seeded.initFromSeed(0);
  trained.loadSafetensors(o.save); // a checkpoint loads as weights
  EXPECT_EQ(std::memcmp(seeded.data(0), trained.data(0), seeded.spec(0).bytes()), 0);
  EXPECT_NE(std::memcmp(seeded.data(1), trained.data(1), seeded.spec(1).bytes()), 0);
}

TEST(Trainer, LossIsTheTokenMeanOfTheForwardPass) {
  Fixture fx;
  mm::TrainOptions o = fx.options("stage2");
  o.steps = 1;
  o.batch = 3;
  o.log = fx.dir / "log.jsonl";
  o.dumpBatches = fx.dir / "batches.jsonl";
  ASSERT_EQ(mm::runTraining(o), 0);
  std::vector<json> dump = jsonLines(o.dumpBatches);
  ASSERT_EQ(dump.size(), 1u);
  EXPECT_EQ(dump[0].at("step").get<int64_t>(), 1);
  ASSERT_EQ(dump[0].at("samples").size(), 3u);

  // Recompute the step's loss from the forward entry on the seeded weights.
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::ParameterStore params(model.params());
  params.initFromSeed(0);
  double sum = 0;
  int64_t count = 0;
  const int64_t V = model.entry("forward").results[0].shape[2];
  for (const json &s : dump[0].at("samples")) {
    std::vector<int32_t> ids = s.at("input_ids").get<std::vector<int32_t>>();
    std::vector<int32_t> targets = s.at("targets").get<std::vector<int32_t>>();
    ASSERT_EQ(ids.size(), targets.size());
    std::string image = s.at("image").get<std::string>();
    EXPECT_EQ(image[0], '/'); // absolute
    std::vector<mm::HostTensor> out =
        model.run("forward", params.pointers(), mm::llavaForwardArgs(model, ids, image));
    const float *logits = out[0].as<float>();
    for (size_t t = 0; t < ids.size(); ++t) {
      if (targets[t] == -100) continue;
      const float *z = logits + t * V;
      double mx = z[0], se = 0;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, (double)z[v]);
      for (int64_t v = 0; v < V; ++v) se += std::exp(z[v] - mx);
      sum += mx + std::log(se) - z[targets[t]];
      ++count;
    }
  }
  std::vector<json> log = jsonLines(o.log);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_EQ(log[0].at("target_tokens").get<int64_t>(), count);
  EXPECT_NEAR(log[0].at("loss").get<double>(), sum / count, 1e-5 * sum / count);
}

namespace {

/// The token-mean cross-entropy of SAMPLES (dumped JSON) by the forward entry.
double meanLoss(const mm::CompiledModel &model, const mm::ParameterStore &params, const json &samples,
                int64_t *count = nullptr) {
  const int64_t V = model.entry("forward").results[0].shape[2];
  double sum = 0;
  int64_t n = 0;
  for (const json &s : samples) {
    std::vector<int32_t> ids = s.at("input_ids").get<std::vector<int32_t>>();
    std::vector<int32_t> targets = s.at("targets").get<std::vector<int32_t>>();
    std::optional<std::string> image;
    if (!s.at("image").is_null()) image = s.at("image").get<std::string>();
    std::vector<mm::HostTensor> out = model.run("forward", params.pointers(), mm::llavaForwardArgs(model, ids, image));
    const float *logits = out[0].as<float>();
    for (size_t t = 0; t < ids.size(); ++t) {
      if (targets[t] == -100) continue;
      const float *z = logits + t * V;
      double mx = z[0], se = 0;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, (double)z[v]);
      for (int64_t v = 0; v < V; ++v) se += std::exp(z[v] - mx);
      sum += mx + std::log(se) - z[targets[t]];
      ++n;
    }
  }
  if (count) *count = n;
  return sum / n;
}

} // namespace

TEST(Trainer, DumpedGradientsMatchFiniteDifferencesOfTheMeanLoss) {
  Fixture fx;
  mm::TrainOptions o = fx.options("stage2");
  o.steps = 1;
  o.batch = 2;
  o.dumpBatches = fx.dir / "b.jsonl";
  o.dumpGrads = fx.dir / "g.safetensors";
  ASSERT_EQ(mm::runTraining(o), 0);
  mm::SafetensorsFile g = mm::SafetensorsFile::open(o.dumpGrads);
  std::set<std::string> names;
  for (const auto &t : g.tensors()) names.insert(t.name);
  EXPECT_EQ(names, (std::set<std::string>{"head.bias", "embed.weight", "head.weight"}));
  EXPECT_EQ(g.metadata().at("mm.step"), "1");

  json samples = jsonLines(o.dumpBatches).at(0).at("samples");
  std::vector<int32_t> ids = samples[0].at("input_ids").get<std::vector<int32_t>>();
  std::vector<int32_t> targets = samples[0].at("targets").get<std::vector<int32_t>>();
  size_t t = 0;
  while (targets[t] == -100) ++t;
  const int64_t D = 8;
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::ParameterStore params(model.params());
  params.initFromSeed(0);
  struct Probe {
    std::string name;
    int64_t index;
  };
  std::vector<Probe> probes = {{"head.bias", targets[t]},           {"head.bias", 0},
                               {"head.weight", targets[t] * D + 3}, {"head.weight", 7 * D + 1},
                               {"embed.weight", ids[t] * D + 2},    {"embed.weight", ids[t] * D + 5}};
  for (const Probe &p : probes) {
    int64_t i = params.indexOf(p.name);
    float *x = params.data(i) + p.index, saved = *x;
    const float up = saved + 1e-2f, down = saved - 1e-2f;
    *x = up;
    double lu = meanLoss(model, params, samples);
    *x = down;
    double ld = meanLoss(model, params, samples);
    *x = saved;
    double fd = (lu - ld) / ((double)up - (double)down);
    float dumped;
    std::memcpy(&dumped, g.data(*g.find(p.name)) + 4 * p.index, 4);
    EXPECT_NEAR(dumped, fd, 1e-4 + 1e-3 * std::fabs(fd)) << p.name << "[" << p.index << "]";
    EXPECT_GT(std::fabs(fd), 1e-6) << p.name << "[" << p.index << "] does not move the loss";
  }
}

TEST(Trainer, DumpedBatchesAreAShufflePerEpochOfTheBuiltSamples) {
  Fixture fx;
  mm::TrainOptions o = fx.options("stage1");
  o.batch = 5; // one epoch per step
  o.steps = 3;
  o.dumpBatches = fx.dir / "b.jsonl";
  ASSERT_EQ(mm::runTraining(o), 0);
  std::vector<json> dump = jsonLines(o.dumpBatches);
  ASSERT_EQ(dump.size(), 3u);
  mm::CompiledModel model = mm::CompiledModel::load(o.model);
  mm::Tokenizer tok = mm::Tokenizer::fromJson(model.tokenizerJson(), "fake");
  mm::SampleFormat fmt = mm::sampleFormat(model, tok);
  std::vector<mm::ConversationRecord> records = mm::loadConversations(o.data);
  std::vector<std::vector<std::string>> orders;
  for (const json &step : dump) {
    std::vector<std::string> ids;
    for (const json &s : step.at("samples")) {
      std::string id = s.at("id").get<std::string>();
      ids.push_back(id);
      size_t index = std::stoul(id.substr(3));
      mm::TrainingSample built = mm::buildSample(records[index], mm::ChatTemplate::Plain, tok, fmt, o.imageDir);
      EXPECT_EQ(s.at("input_ids").get<std::vector<int32_t>>(), built.inputIds) << id;
      EXPECT_EQ(s.at("targets").get<std::vector<int32_t>>(), built.targets) << id;
    }
    EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()),
              (std::set<std::string>{"cap0", "cap1", "cap2", "cap3", "cap4"}));
    orders.push_back(ids);
  }
  EXPECT_TRUE(orders[0] != orders[1] || orders[1] != orders[2]) << "every epoch in the same order";
  // The same seed gives the same order; another seed another one.
  mm::TrainOptions again = o;
  again.dumpBatches = fx.dir / "b2.jsonl";
  ASSERT_EQ(mm::runTraining(again), 0);
  EXPECT_EQ(readText(again.dumpBatches), readText(o.dumpBatches));
  again.seed = 1;
  ASSERT_EQ(mm::runTraining(again), 0);
  EXPECT_NE(readText(again.dumpBatches), readText(o.dumpBatches));
}

TEST(Trainer, StopAndResumeIsBitExact) {
  for (const char *stage : {"stage1", "stage2"}) {
    SCOPED_TRACE(stage);
    Fixture fx;
    mm::TrainOptions base = fx.options(stage);
    base.batch = 1;
    base.gradAccum = 2;
    base.epochs = 3; // ceil(15 / 2) = 8 steps; steps straddle the epoch boundaries
    // Straight through.
    mm::TrainOptions a = base;
    a.save = fx.dir / "a.safetensors";
    a.log = fx.dir / "a.jsonl";
    ASSERT_EQ(mm::runTraining(a), 0);
    // Stopped after step 3, then resumed (the flags other than --resume may
    // be repeated; they agree with the checkpoint).
    mm::TrainOptions b = base;
    b.save = fx.dir / "b.safetensors";
    b.log = fx.dir / "b.jsonl";
    b.stopAt = 3;
    ASSERT_EQ(mm::runTraining(b), 0);
    EXPECT_EQ(mm::readCheckpointState(b.save).step, 3);
    EXPECT_EQ(mm::readCheckpointState(b.save).dataPosition, 6);
    EXPECT_EQ(readLines(b.log).size(), 3u);
    mm::TrainOptions c;
    c.model = base.model;
    c.stage = stage;
    c.data = base.data;
    c.imageDir = base.imageDir;
    c.quiet = true;
    c.resume = b.save;
    c.save = b.save;
    c.log = b.log;
    ASSERT_EQ(mm::runTraining(c), 0);

    std::vector<double> la = losses(a.log), lb = losses(b.log);
    ASSERT_EQ(la.size(), 8u);
    ASSERT_EQ(lb.size(), 8u);
    for (size_t i = 0; i < la.size(); ++i) EXPECT_EQ(la[i], lb[i]) << "step " << i + 1;
    std::map<std::string, std::vector<uint8_t>> ta = tensorsOf(a.save), tb = tensorsOf(b.save);
    ASSERT_EQ(ta.size(), tb.size());
    for (const auto &kv : ta) EXPECT_TRUE(kv.second == tb.at(kv.first)) << kv.first << " differs";
    EXPECT_EQ(mm::SafetensorsFile::open(a.save).metadata(), mm::SafetensorsFile::open(b.save).metadata());
  }
}

TEST(Trainer, GradAccumulationEqualsALargerBatch) {
  Fixture fx;
  mm::TrainOptions a = fx.options("stage2");
  a.steps = 4;
  a.batch = 2;
  a.save = fx.dir / "a.safetensors";
  a.log = fx.dir / "a.jsonl";
  mm::TrainOptions b = a;
  b.batch = 1;
  b.gradAccum = 2;
  b.save = fx.dir / "b.safetensors";
  b.log = fx.dir / "b.jsonl";
  ASSERT_EQ(mm::runTraining(a), 0);
  ASSERT_EQ(mm::runTraining(b), 0);
  EXPECT_EQ(losses(a.log), losses(b.log));
  EXPECT_TRUE(tensorsOf(a.save) == tensorsOf(b.save));
}

TEST(Trainer, NonFiniteLossStopsWithoutOverwritingTheLastCheckpoint) {
  Fixture fx;
  // Record 2's caption holds the DEL byte, which the fake model answers with NaN.
  json data = json::parse(readText(fx.captions));
  data[2]["conversations"][1]["value"] = "poison \x7f here";
  writeText(fx.captions, data.dump());
  for (uint64_t seed = 0; seed < 20; ++seed) {
    mm::TrainOptions o = fx.options("stage1");
    o.batch = 1;
    o.seed = seed;
    o.saveEvery = 1;
    o.save = fx.dir / "ck.safetensors";
    o.log = fx.dir / "log.jsonl";
    o.dumpBatches = fx.dir / "b.jsonl";
    std::remove(o.save.c_str());
    std::string e = errorOf([&] { mm::runTraining(o); });
    std::vector<json> dump = jsonLines(o.dumpBatches);
    ASSERT_FALSE(dump.empty());
    int64_t bad = dump.back().at("step").get<int64_t>();
    EXPECT_EQ(dump.back().at("samples")[0].at("id").get<std::string>(), "cap2");
    EXPECT_NE(e.find("step " + std::to_string(bad) + " of 10: the loss is nan"), std::string::npos) << e;
    EXPECT_NE(e.find("record 2 (id 'cap2')"), std::string::npos) << e;
    EXPECT_EQ(readLines(o.log).size(), size_t(bad - 1));
    if (bad == 1) {
      EXPECT_FALSE(exists(o.save));
      continue; // try a seed that reaches the poisoned record later
    }
    EXPECT_NE(e.find("the last checkpoint, " + o.save + ", holds step " + std::to_string(bad - 1)), std::string::npos)
        << e;
    EXPECT_EQ(mm::readCheckpointState(o.save).step, bad - 1);
    return;
  }
  FAIL() << "no seed put the poisoned record after step 1";
}

TEST(Trainer, InfiniteGradientNormStops) {
  Fixture fx;
  // Record 4's caption holds the SOH byte: the fake model returns an infinite gradient.
  json data = json::parse(readText(fx.captions));
  data[4]["conversations"][1]["value"] = "odd \x01 byte";
  writeText(fx.captions, data.dump());
  mm::TrainOptions o = fx.options("stage1");
  o.batch = 5; // the first step holds every record
  o.save = fx.dir / "ck.safetensors";
  o.log = fx.dir / "log.jsonl";
  std::string e = errorOf([&] { mm::runTraining(o); });
  EXPECT_NE(e.find("step 1 of 2: the gradient norm is inf; stopping without saving"), std::string::npos) << e;
  EXPECT_FALSE(exists(o.save));
  EXPECT_TRUE(readLines(o.log).empty());
}

TEST(Trainer, InitTakesWeightsButNotTheOptimizer) {
  Fixture fx;
  mm::TrainOptions two = fx.options("stage2");
  two.steps = 2;
  two.save = fx.dir / "stage2.safetensors";
  ASSERT_EQ(mm::runTraining(two), 0);
  mm::TrainOptions one = fx.options("stage1");
  one.steps = 1;
  one.init = two.save;
  one.save = fx.dir / "stage1.safetensors";
  ASSERT_EQ(mm::runTraining(one), 0);
  auto t2 = tensorsOf(two.save), t1 = tensorsOf(one.save);
  EXPECT_TRUE(t1.at("embed.weight") == t2.at("embed.weight")); // frozen in stage1, taken from --init
  EXPECT_FALSE(t1.count("optimizer.exp_avg.embed.weight"));
  EXPECT_EQ(mm::readCheckpointState(one.save).step, 1);
  EXPECT_EQ(mm::readCheckpointState(one.save).stage, "stage1");

  // A plain weights file works as --init too.
  mm::CompiledModel model = mm::CompiledModel::load(one.model);
  mm::ParameterStore w(model.params());
  w.initFromSeed(42);
  w.saveSafetensors(fx.dir / "w.safetensors");
  one.init = fx.dir / "w.safetensors";
  ASSERT_EQ(mm::runTraining(one), 0);
  mm::ParameterStore after(model.params());
  after.loadSafetensors(one.save);
  EXPECT_EQ(std::memcmp(after.data(0), w.data(0), w.spec(0).bytes()), 0);
}

TEST(Trainer, ResumeErrors) {
  Fixture fx;
  mm::TrainOptions o = fx.options("stage2");
  o.steps = 4;
  o.stopAt = 2;
  o.save = fx.dir / "ck.safetensors";
  ASSERT_EQ(mm::runTraining(o), 0);
  mm::TrainOptions r = fx.options("stage2");
  r.resume = o.save;

  mm::TrainOptions x = r;
  x.lr = 0.5;
  std::string e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("--lr 0.5"), std::string::npos) << e;
  EXPECT_NE(e.find("differs from the checkpoint's 0.02"), std::string::npos) << e;
  x = r;
  x.steps = 9;
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("--steps 9 differs from the checkpoint's 4"), std::string::npos) << e;

  x = r;
  x.stage = "stage1";
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find(o.save + ": a checkpoint of stage 'stage2'; it cannot resume stage 'stage1'"), std::string::npos)
      << e;

  x = r;
  json data = json::parse(readText(fx.chats));
  data[0]["conversations"][1]["value"] = "changed";
  writeText(fx.dir / "other.json", data.dump());
  x.data = fx.dir / "other.json";
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("resume with the same data"), std::string::npos) << e;

  x = r;
  mm::CompiledModel model = mm::CompiledModel::load(r.model);
  mm::ParameterStore w(model.params());
  w.saveSafetensors(fx.dir / "weights.safetensors");
  x.resume = fx.dir / "weights.safetensors";
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("weights.safetensors: not a training checkpoint"), std::string::npos) << e;

  x = r;
  x.init = o.save;
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("give --init or --resume, not both"), std::string::npos) << e;

  x = r;
  x.stopAt = 2;
  x.save = fx.dir / "again.safetensors";
  e = errorOf([&] { mm::runTraining(x); });
  EXPECT_NE(e.find("--stop-at 2 is not after the checkpoint's step 2"), std::string::npos) << e;

  mm::TrainOptions y = fx.options("stage2");
  y.stopAt = 1;
  e = errorOf([&] { mm::runTraining(y); });
  EXPECT_NE(e.find("--stop-at needs --save"), std::string::npos) << e;
}

TEST(Trainer, DataProblemsStopBeforeTheFirstStep) {
  Fixture fx;
  json data = json::parse(readText(fx.captions));
  data[3]["image"] = "missing.png";
  writeText(fx.dir / "bad.json", data.dump());
  mm::TrainOptions o = fx.options("stage1");
  o.data = fx.dir / "bad.json";
  o.log = fx.dir / "log.jsonl";
  std::string e = errorOf([&] { mm::runTraining(o); });
  EXPECT_NE(e.find(o.data + ": record 3 (id 'cap3'): " + fx.images + "/missing.png: cannot open image"),
            std::string::npos)
      << e;
  EXPECT_FALSE(exists(o.log));

  o = fx.options("stage1");
  o.imageDir.clear();
  e = errorOf([&] { mm::runTraining(o); });
  EXPECT_NE(e.find("give --image-dir"), std::string::npos) << e;

  o = fx.options("stage9");
  e = errorOf([&] { mm::runTraining(o); });
  EXPECT_NE(e.find("model has no stage 'stage9' (its stages: stage1, stage2)"), std::string::npos) << e;

  // Conversation records through the caption template, and vice versa, are
  // checked up front too.
  o = fx.options("stage1");
  json chats = json::parse(readText(fx.chats));
  chats[1]["image"] = nullptr;
  writeText(fx.dir / "noimg.json", chats.dump());
  o.data = fx.dir / "noimg.json";
  e = errorOf([&] { mm::runTraining(o); });
  EXPECT_NE(e.find("record 1 (id '1'): caption data needs an 'image'"), std::string::npos) << e;
}

TEST(Trainer, TruncationWarnsOncePerSample) {
  Fixture fx;
  json data = json::parse(readText(fx.captions));
  data[1]["conversations"][1]["value"] = std::string(300, 'x'); // > 256 compiled positions
  writeText(fx.captions, data.dump());
  mm::TrainOptions o = fx.options("stage1");
  o.batch = 5;
  o.steps = 3; // three epochs
  std::string err;
  {
    CaptureCerr capture;
    ASSERT_EQ(mm::runTraining(o), 0);
    err = capture.text();
  }
  size_t first = err.find("record 1 (id 'cap1')");
  ASSERT_NE(first, std::string::npos) << err;
  EXPECT_EQ(err.find("record 1 (id 'cap1')", first + 1), std::string::npos) << err;
  EXPECT_NE(err.find("truncated to the compiled length 256"), std::string::npos) << err;
}

// --- the checkpoint format on its own -------------------------------------------

namespace {

std::vector<mm::ParamSpec> specs() {
  std::vector<mm::ParamSpec> s(3);
  s[0].name = "a.weight";
  s[0].shape = {2, 3};
  s[1].name = "a.bias";
  s[1].shape = {3};
  s[2].name = "frozen";
  s[2].shape = {2};
  for (auto &p : s) p.std = 1.0;
  return s;
}

struct Trained {
  mm::ParameterStore params{specs()};
  mm::AdamW opt{{specs()[1], specs()[0]}, mm::AdamWOptions{}};
  Trained() {
    params.initFromSeed(3);
    for (size_t i = 0; i < opt.size(); ++i)
      for (size_t j = 0; j < opt.expAvg(i).size(); ++j) {
        opt.expAvg(i)[j] = 0.1f * float(j + 1) + float(i);
        opt.expAvgSq(i)[j] = 0.01f * float(j + 1);
      }
    opt.setStepCount(7);
  }
  mm::CheckpointState state() const {
    mm::CheckpointState s;
    s.model = "m";
    s.stage = "s1";
    s.step = 7;
    s.totalSteps = 10;
    s.dataPosition = 56;
    s.seed = 5;
    s.settings = {{"batch", "8"}, {"lr", "0.001"}};
    return s;
  }
};

} // namespace

TEST(Checkpoint, RoundTrip) {
  TempDir dir("ckpt");
  Trained t;
  mm::saveCheckpoint(dir / "c.safetensors", t.params, t.opt, t.state());
  mm::ParameterStore params(specs());
  mm::AdamW opt({specs()[1], specs()[0]}, mm::AdamWOptions{});
  mm::CheckpointState s = mm::loadCheckpoint(dir / "c.safetensors", "m", "s1", params, opt);
  EXPECT_EQ(s.step, 7);
  EXPECT_EQ(s.totalSteps, 10);
  EXPECT_EQ(s.dataPosition, 56);
  EXPECT_EQ(s.seed, 5u);
  EXPECT_EQ(s.settings.at("batch"), "8");
  EXPECT_EQ(s.settings.at("lr"), "0.001");
  EXPECT_EQ(opt.stepCount(), 7);
  for (size_t i = 0; i < params.size(); ++i)
    EXPECT_EQ(std::memcmp(params.data(i), t.params.data(i), params.spec(i).bytes()), 0) << i;
  for (size_t i = 0; i < opt.size(); ++i) {
    EXPECT_EQ(opt.expAvg(i), t.opt.expAvg(i));
    EXPECT_EQ(opt.expAvgSq(i), t.opt.expAvgSq(i));
  }
  // As weights, the optimizer state is skipped.
  mm::ParameterStore weights(specs());
  weights.loadSafetensors(dir / "c.safetensors");
  EXPECT_EQ(std::memcmp(weights.data(0), t.params.data(0), 24), 0);
}

TEST(Checkpoint, ResumeErrorsNameTheProblem) {
  TempDir dir("ckpt_err");
  Trained t;
  const std::string good = dir / "good.safetensors";
  mm::saveCheckpoint(good, t.params, t.opt, t.state());
  auto load = [&](const std::string &path, const std::string &model = "m", const std::string &stage = "s1",
                  std::vector<mm::TensorSpec> trainable = {specs()[1], specs()[0]}) {
    mm::ParameterStore p(specs());
    mm::AdamW o(trainable, mm::AdamWOptions{});
    return errorOf([&] { mm::loadCheckpoint(path, model, stage, p, o); });
  };
  EXPECT_NE(load(good, "other").find(good + ": a checkpoint of model 'm'; this model is 'other'"), std::string::npos);
  EXPECT_NE(load(good, "m", "s2").find(good + ": a checkpoint of stage 's1'; it cannot resume stage 's2'"),
            std::string::npos);
  std::string e = load(good, "m", "s1", {specs()[0]});
  EXPECT_NE(e.find("optimizer state for 'a.bias', which stage 's1' does not train"), std::string::npos) << e;
  e = load(good, "m", "s1", {specs()[1], specs()[0], specs()[2]});
  EXPECT_NE(e.find("no optimizer state 'optimizer.exp_avg.frozen' for trainable parameter 'frozen'"),
            std::string::npos)
      << e;

  // Hand-made files: drop a moment, change a shape, rename a tensor.
  mm::SafetensorsFile f = mm::SafetensorsFile::open(good);
  auto rewrite = [&](const std::string &path, const std::function<void(std::vector<mm::TensorToWrite> &)> &edit) {
    std::vector<mm::TensorToWrite> out;
    for (const mm::TensorInfo &ti : f.tensors()) out.push_back({ti.name, ti.dtype, ti.shape, f.data(ti)});
    edit(out);
    mm::writeSafetensors(path, out, f.metadata());
  };
  rewrite(dir / "nosq.safetensors", [](std::vector<mm::TensorToWrite> &v) {
    v.erase(std::remove_if(v.begin(), v.end(),
                           [](const mm::TensorToWrite &x) { return x.name == "optimizer.exp_avg_sq.a.bias"; }),
            v.end());
  });
  e = load(dir / "nosq.safetensors");
  EXPECT_NE(e.find("no optimizer state 'optimizer.exp_avg_sq.a.bias' for trainable parameter 'a.bias'"),
            std::string::npos)
      << e;
  rewrite(dir / "shape.safetensors", [](std::vector<mm::TensorToWrite> &v) {
    for (auto &x : v)
      if (x.name == "optimizer.exp_avg.a.weight") x.shape = {3, 2};
  });
  e = load(dir / "shape.safetensors");
  EXPECT_NE(e.find("optimizer state 'optimizer.exp_avg.a.weight' has shape [3, 2] but 'a.weight' is [2, 3]"),
            std::string::npos)
      << e;
  rewrite(dir / "names.safetensors", [](std::vector<mm::TensorToWrite> &v) {
    for (auto &x : v)
      if (x.name == "frozen") x.name = "model.other.weight";
  });
  e = load(dir / "names.safetensors");
  EXPECT_NE(e.find("tensor 'model.other.weight' is not a parameter of this model"), std::string::npos) << e;
  rewrite(dir / "optnames.safetensors", [](std::vector<mm::TensorToWrite> &v) {
    for (auto &x : v)
      if (x.name == "optimizer.exp_avg.a.bias") x.name = "optimizer.exp_avg.b.bias";
  });
  e = load(dir / "optnames.safetensors");
  EXPECT_NE(e.find("is for 'b.bias', which is not a parameter of this model"), std::string::npos) << e;

  // A weights file is not a checkpoint.
  t.params.saveSafetensors(dir / "w.safetensors");
  e = load(dir / "w.safetensors");
  EXPECT_NE(e.find("w.safetensors: not a training checkpoint"), std::string::npos) << e;
  // A failed load changes nothing.
  mm::ParameterStore p(specs()), before(specs());
  p.initFromSeed(9);
  before.initFromSeed(9);
  mm::AdamW o({specs()[1], specs()[0]}, mm::AdamWOptions{});
  EXPECT_THROW(mm::loadCheckpoint(dir / "shape.safetensors", "m", "s1", p, o), mm::Error);
  for (size_t i = 0; i < p.size(); ++i) EXPECT_EQ(std::memcmp(p.data(i), before.data(i), p.spec(i).bytes()), 0);
  EXPECT_EQ(o.stepCount(), 0);
  EXPECT_EQ(o.expAvg(0), std::vector<float>(3, 0.0f));
}
