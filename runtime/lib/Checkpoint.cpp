//===- Checkpoint.cpp - resumable training checkpoints ----------------------===//
#include "mm/Checkpoint.h"
#include "mm/Error.h"
#include "mm/Safetensors.h"

#include <cstring>
#include <unordered_map>

namespace mm {
namespace {

const char *const kFormat = "mm-train-checkpoint/1";
const std::string kExpAvg = "optimizer.exp_avg.", kExpAvgSq = "optimizer.exp_avg_sq.";

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

int64_t metaInt(const std::string &path, const std::map<std::string, std::string> &meta, const std::string &key) {
  auto it = meta.find(key);
  if (it == meta.end()) throw Error(path + ": checkpoint metadata lacks '" + key + "'");
  try {
    size_t used = 0;
    long long v = std::stoll(it->second, &used);
    if (used == it->second.size()) return v;
  } catch (const std::exception &) {
  }
  throw Error(path + ": checkpoint metadata '" + key + "' is '" + it->second + "', not a whole number");
}

CheckpointState stateFrom(const SafetensorsFile &file) {
  const std::string &path = file.path();
  const auto &meta = file.metadata();
  if (!meta.count("mm.step") || !meta.count("mm.format"))
    throw Error(path + ": not a training checkpoint (it has no optimizer step metadata; to start from its "
                       "weights, use --init)");
  if (meta.at("mm.format") != kFormat)
    throw Error(path + ": checkpoint format '" + meta.at("mm.format") + "'; this runtime reads '" + kFormat + "'");
  CheckpointState s;
  for (const auto &kv : meta) {
    if (kv.first.rfind("mm.", 0) != 0) continue;
    std::string key = kv.first.substr(3);
    if (key == "model") s.model = kv.second;
    else if (key == "stage") s.stage = kv.second;
    else if (key != "format" && key != "step" && key != "total_steps" && key != "data_position" && key != "seed")
      s.settings[key] = kv.second;
  }
  s.step = metaInt(path, meta, "mm.step");
  s.totalSteps = metaInt(path, meta, "mm.total_steps");
  s.dataPosition = metaInt(path, meta, "mm.data_position");
  s.seed = (uint64_t)metaInt(path, meta, "mm.seed");
  if (s.step < 0 || s.totalSteps < 0 || s.dataPosition < 0)
    throw Error(path + ": checkpoint metadata holds a negative step count or data position");
  return s;
}

} // namespace

void saveCheckpoint(const std::string &path, const ParameterStore &params, const AdamW &opt,
                    const CheckpointState &state) {
  std::vector<TensorToWrite> out;
  for (size_t i = 0; i < params.size(); ++i)
    out.push_back({params.spec(i).name, DType::F32, params.spec(i).shape, params.data(i)});
  for (size_t i = 0; i < opt.size(); ++i) {
    out.push_back({kExpAvg + opt.spec(i).name, DType::F32, opt.spec(i).shape, opt.expAvg(i).data()});
    out.push_back({kExpAvgSq + opt.spec(i).name, DType::F32, opt.spec(i).shape, opt.expAvgSq(i).data()});
  }
  std::map<std::string, std::string> meta;
  for (const auto &kv : state.settings) meta["mm." + kv.first] = kv.second;
  meta["format"] = "pt";
  meta["mm.format"] = kFormat;
  meta["mm.model"] = state.model;
  meta["mm.stage"] = state.stage;
  meta["mm.step"] = std::to_string(state.step);
  meta["mm.total_steps"] = std::to_string(state.totalSteps);
  meta["mm.data_position"] = std::to_string(state.dataPosition);
  meta["mm.seed"] = std::to_string(state.seed);
  writeSafetensors(path, out, meta);
}

CheckpointState readCheckpointState(const std::string &path) { return stateFrom(SafetensorsFile::open(path)); }

CheckpointState loadCheckpoint(const std::string &path, const std::string &modelName, const std::string &stage,
                               ParameterStore &params, AdamW &opt) {
  SafetensorsFile file = SafetensorsFile::open(path);
  CheckpointState s = stateFrom(file);
  if (s.model != modelName)
    throw Error(path + ": a checkpoint of model '" + s.model + "'; this model is '" + modelName + "'");
  if (s.stage != stage)
    throw Error(path + ": a checkpoint of stage '" + s.stage + "'; it cannot resume stage '" + stage +
                "' (to start " + stage + " from its weights, use --init)");

  std::unordered_map<std::string, size_t> slot;
  for (size_t i = 0; i < opt.size(); ++i) slot[opt.spec(i).name] = i;
  std::vector<const TensorInfo *> avg(opt.size(), nullptr), avgSq(opt.size(), nullptr);
  for (const TensorInfo &t : file.tensors()) {
    bool isAvg = t.name.rfind(kExpAvg, 0) == 0, isAvgSq = t.name.rfind(kExpAvgSq, 0) == 0;
    if (!isAvg && !isAvgSq) {
      if (t.name.rfind("optimizer.", 0) == 0)
        throw Error(path + ": unknown optimizer state '" + t.name + "' (expected " + kExpAvg + "NAME or " +
                    kExpAvgSq + "NAME)");
      if (params.indexOf(t.name) < 0)
        throw Error(path + ": tensor '" + t.name +
                    "' is not a parameter of this model (is it a checkpoint of another model?)");
      continue;
    }
    std::string name = t.name.substr((isAvg ? kExpAvg : kExpAvgSq).size());
    int64_t p = params.indexOf(name);
    if (p < 0)
      throw Error(path + ": optimizer state '" + t.name + "' is for '" + name +
                  "', which is not a parameter of this model (is it a checkpoint of another model?)");
    auto it = slot.find(name);
    if (it == slot.end())
      throw Error(path + ": holds optimizer state for '" + name + "', which stage '" + stage + "' does not train");
    if (t.dtype != DType::F32)
      throw Error(path + ": optimizer state '" + t.name + "' is " + dtypeName(t.dtype) + "; it must be F32");
    if (t.shape != opt.spec(it->second).shape)
      throw Error(path + ": optimizer state '" + t.name + "' has shape " + shapeStr(t.shape) + " but '" + name +
                  "' is " + shapeStr(opt.spec(it->second).shape));
    (isAvg ? avg : avgSq)[it->second] = &t;
  }
  for (size_t i = 0; i < opt.size(); ++i)
    if (!avg[i] || !avgSq[i])
      throw Error(path + ": no optimizer state '" + (avg[i] ? kExpAvgSq : kExpAvg) + opt.spec(i).name +
                  "' for trainable parameter '" + opt.spec(i).name + "'");

  for (size_t i = 0; i < params.size(); ++i) {
    const TensorInfo *t = file.find(params.spec(i).name);
    if (!t) throw Error(path + ": lacks parameter '" + params.spec(i).name + "' of this model");
    if (t->shape != params.spec(i).shape)
      throw Error(path + ": tensor '" + t->name + "' has shape " + shapeStr(t->shape) + " but the model declares " +
                  shapeStr(params.spec(i).shape));
  }
  params.loadSafetensors(path); // also converts F16/BF16 and checks dtypes
  for (size_t i = 0; i < opt.size(); ++i) {
    std::memcpy(opt.expAvg(i).data(), file.data(*avg[i]), opt.expAvg(i).size() * 4);
    std::memcpy(opt.expAvgSq(i).data(), file.data(*avgSq[i]), opt.expAvgSq(i).size() * 4);
  }
  opt.setStepCount(s.step);
  return s;
}

} // namespace mm
