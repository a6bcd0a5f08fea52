//===- Dataset.cpp - `mmdata scenes`: images, scenes, LLaVA JSON ----------===//
//
// Training scene i is sampled from streamSeed(seed, "train", i) and its text
// from streamSeed(seed, "train-text", i); eval scenes use the "eval" and
// "eval-text" streams. Changing the text templates therefore never changes
// an image. An eval scene whose pixels or symbolic description equal a
// training scene's is drawn again from the "eval-retry-K" stream.
//
//===----------------------------------------------------------------------===//
#include "mm/Synth.h"

#include "../AtomicFile.h"
#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ostream>
#include <sstream>
#include <sys/stat.h>
#include <unordered_set>

namespace mm {
namespace synth {

namespace {

void makeDir(const std::string &path) {
  if (path.empty()) return;
  struct stat st;
  if (::stat(path.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) throw Error(path + ": exists and is not a directory");
    return;
  }
  size_t slash = path.find_last_of('/');
  if (slash != std::string::npos && slash > 0) makeDir(path.substr(0, slash));
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    throw Error(path + ": cannot create the directory: " + std::strerror(errno));
}

void writeFile(const std::string &path, const std::string &text) {
  detail::AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

std::string padded(int i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%06d", i);
  return buf;
}

uint64_t hashBytes(const std::vector<uint8_t> &bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ULL;
  }
  return h;
}

/// The scene's description without its id, image and seed.
std::string contentKey(const Scene &s) {
  nlohmann::ordered_json j = sceneToJson(s);
  j.erase("id");
  j.erase("image");
  j.erase("seed");
  return j.dump();
}

std::string arrayText(const std::vector<nlohmann::ordered_json> &records) {
  return nlohmann::ordered_json(records).dump(1) + "\n";
}

class Progress {
public:
  Progress(std::ostream *out, int total, const char *what)
      : out_(out && total >= 1000 ? out : nullptr), total_(total), what_(what),
        step_(std::max(1, total / 10)), start_(std::chrono::steady_clock::now()) {}
  void done(int n) {
    if (!out_ || (n % step_ != 0 && n != total_)) return;
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    char buf[128];
    std::snprintf(buf, sizeof buf, "mmdata: %d/%d %s (%.1f s)\n", n, total_, what_, s);
    *out_ << buf << std::flush;
  }

private:
  std::ostream *out_;
  int total_;
  const char *what_;
  int step_;
  std::chrono::steady_clock::time_point start_;
};

} // namespace

DatasetSummary writeDataset(const DatasetOptions &o, std::ostream *progress) {
  if (o.outDir.empty()) throw Error("no output directory given");
  if (o.count < 1) throw Error("the number of training scenes must be at least 1 (got " + std::to_string(o.count) + ")");
  if (o.evalCount < 0) throw Error("the number of eval scenes must not be negative");
  if ((int64_t)o.count + o.evalCount > 1000000) throw Error("at most 1,000,000 scenes in all");
  // Fails early on bad options.
  patchLabels(sampleScene(0, "check", o.scene), o.patchGrid);

  const std::string dir = o.outDir.back() == '/' ? o.outDir.substr(0, o.outDir.size() - 1) : o.outDir;
  makeDir(dir + "/images");
  DatasetSummary sum;
  std::ostringstream scenesOut, evalScenesOut;
  std::vector<nlohmann::ordered_json> captionsJson, instructJson, evalJson, patchesJson, pairsJson, evalPairsJson;
  std::unordered_set<uint64_t> trainPixels;
  std::unordered_set<std::string> trainContent;

  Progress trainProgress(progress, o.count, "training scenes");
  for (int i = 0; i < o.count; ++i) {
    std::string id = "train_" + padded(i);
    Scene s = sampleScene(streamSeed(o.seed, "train", (uint64_t)i), id, o.scene);
    s.image = "images/" + id + ".png";
    Image img = renderScene(s);
    savePng(dir + "/" + s.image, img);
    trainPixels.insert(hashBytes(img.rgb));
    trainContent.insert(contentKey(s));
    scenesOut << sceneToJson(s).dump() << "\n";

    Rng text(streamSeed(o.seed, "train-text", (uint64_t)i));
    captionsJson.push_back(captionRecord(s, text));
    pairsJson.push_back(imageCaptionRecord(s));
    nlohmann::ordered_json patches;
    patches["id"] = id + "_patches";
    patches["image"] = s.image;
    patches["patch_labels"] = patchLabels(s, o.patchGrid);
    patches["patch_cells"] = patchCells(s, o.patchGrid);
    patchesJson.push_back(std::move(patches));
    std::vector<nlohmann::ordered_json> stage2;
    for (int c = 0; c < std::min(o.conversations, kConversationsPerScene); ++c)
      stage2.push_back(conversationRecord(s, text, c));
    stage2.push_back(detailRecord(s, text));
    stage2.push_back(reasoningRecord(s, text));
    for (int c = kConversationsPerScene; c < o.conversations; ++c) stage2.push_back(conversationRecord(s, text, c));
    for (nlohmann::ordered_json &r : stage2) {
      ++sum.instructKinds[r["kind"].get<std::string>()];
      instructJson.push_back(std::move(r));
    }
    ++sum.objectsPerScene[(int)s.objects.size()];
    for (const SceneObject &ob : s.objects) {
      ++sum.shapes[ob.shape];
      ++sum.colours[ob.colour];
    }
    ++sum.trainScenes;
    trainProgress.done(i + 1);
  }

  Progress evalProgress(progress, o.evalCount, "eval scenes");
  for (int j = 0; j < o.evalCount; ++j) {
    std::string id = "eval_" + padded(j);
    Scene s;
    Image img;
    for (int retry = 0;; ++retry) {
      if (retry > 100) throw Error("cannot draw eval scene " + id + " unlike every training scene");
      uint64_t seed = retry == 0 ? streamSeed(o.seed, "eval", (uint64_t)j)
                                 : streamSeed(o.seed, "eval-retry-" + std::to_string(retry), (uint64_t)j);
      s = sampleScene(seed, id, o.scene);
      s.image = "images/" + id + ".png";
      img = renderScene(s);
      if (!trainPixels.count(hashBytes(img.rgb)) && !trainContent.count(contentKey(s))) break;
      ++sum.evalResampled;
    }
    savePng(dir + "/" + s.image, img);
    evalScenesOut << sceneToJson(s).dump() << "\n";
    Rng text(streamSeed(o.seed, "eval-text", (uint64_t)j));
    evalPairsJson.push_back(imageCaptionRecord(s, "caption"));
    for (nlohmann::ordered_json &r : evalRecords(s, text)) {
      ++sum.evalTypes[r["type"].get<std::string>()];
      evalJson.push_back(std::move(r));
    }
    ++sum.evalScenes;
    evalProgress.done(j + 1);
  }

  writeFile(dir + "/scenes.jsonl", scenesOut.str());
  writeFile(dir + "/captions.json", arrayText(captionsJson));
  writeFile(dir + "/instruct.json", arrayText(instructJson));
  writeFile(dir + "/patches.json", arrayText(patchesJson));
  writeFile(dir + "/image_captions.json", arrayText(pairsJson));
  sum.files = {"images/", "scenes.jsonl", "captions.json", "instruct.json", "patches.json", "image_captions.json"};
  if (o.evalCount > 0) {
    writeFile(dir + "/eval_scenes.jsonl", evalScenesOut.str());
    writeFile(dir + "/eval.json", arrayText(evalJson));
    writeFile(dir + "/eval_captions.json", arrayText(evalPairsJson));
    sum.files.push_back("eval_scenes.jsonl");
    sum.files.push_back("eval.json");
    sum.files.push_back("eval_captions.json");
  }
  sum.captionRecords = captionsJson.size();
  sum.instructRecords = instructJson.size();
  sum.patchRecords = patchesJson.size();
  sum.evalRecords = evalJson.size();
  return sum;
}

std::string formatSummary(const DatasetOptions &o, const DatasetSummary &s) {
  std::ostringstream out;
  auto counts = [&](const auto &m) {
    std::string t;
    for (const auto &kv : m) {
      std::ostringstream item;
      item << kv.first << " " << kv.second;
      t += (t.empty() ? "" : ", ") + item.str();
    }
    return t;
  };
  out << "mmdata: wrote " << o.outDir << " (seed " << o.seed << ", " << o.scene.size << "x" << o.scene.size << ")\n";
  out << "  images/          " << s.trainScenes << " training + " << s.evalScenes << " eval PNGs\n";
  out << "  scenes.jsonl     " << s.trainScenes << " training scenes; objects per scene: " << counts(s.objectsPerScene)
      << "\n";
  out << "                   shapes: " << counts(s.shapes) << "\n";
  out << "                   colours: " << counts(s.colours) << "\n";
  out << "  captions.json    " << s.captionRecords << " stage-1 records (caption data)\n";
  out << "  image_captions.json " << s.trainScenes << " image-caption pairs (BLIP-2; every object's colour and shape, in reading order)\n";
  out << "  instruct.json    " << s.instructRecords << " stage-2 records (" << counts(s.instructKinds) << ")\n";
  out << "  patches.json     " << s.patchRecords << " records of " << o.patchGrid << "x" << o.patchGrid
      << " patch labels (vision pre-training)\n";
  if (s.evalScenes > 0) {
    out << "  eval_scenes.jsonl " << s.evalScenes << " held-out scenes (" << s.evalResampled
        << " redrawn for equalling a training scene)\n";
    out << "  eval.json        " << s.evalRecords << " questions (" << counts(s.evalTypes) << ")\n";
    out << "  eval_captions.json " << s.evalScenes << " reference captions (BLIP-2's caption evaluation)\n";
  }
  out << "Train with --image-dir " << o.outDir << " (image paths are relative to it).\n";
  return out.str();
}

} // namespace synth
} // namespace mm
