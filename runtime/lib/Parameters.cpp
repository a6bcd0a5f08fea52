//===- Parameters.cpp - host storage for a model's parameters ---------------===//
#include "mm/Parameters.h"
#include "SplitMix64.h"
#include "mm/Error.h"
#include "mm/Safetensors.h"

#include <cmath>
#include <cstring>
#include <unordered_map>

namespace mm {
namespace {

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

/// Uniform in (0, 1), never 0 so log() stays finite.
double uniform(uint64_t &state) { return ((splitmix64(state) >> 11) + 0.5) * (1.0 / 9007199254740992.0); }

float halfToFloat(uint16_t h) {
  uint32_t sign = (h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ff, bits;
  if (exp == 0) {
    if (mant == 0) bits = sign;
    else { // subnormal: renormalise
      exp = 127 - 15 + 1;
      while (!(mant & 0x400)) { mant <<= 1; --exp; }
      bits = sign | (exp << 23) | ((mant & 0x3ff) << 13);
    }
  } else if (exp == 31) bits = sign | 0x7f800000u | (mant << 13);
  else bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

std::string shapeStr(const std::vector<int64_t> &s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

} // namespace

ParameterStore::ParameterStore(const std::vector<ParamSpec> &specs) : specs_(specs) {
  values_.resize(specs_.size());
  for (size_t i = 0; i < specs_.size(); ++i) values_[i].assign(specs_[i].numel(), 0.0f);
}

void ParameterStore::initFromSeed(uint64_t seed) {
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParamSpec &p = specs_[i];
    std::vector<float> &v = values_[i];
    if (p.init == "zeros") std::fill(v.begin(), v.end(), 0.0f);
    else if (p.init == "ones") std::fill(v.begin(), v.end(), 1.0f);
    else if (p.init == "constant") std::fill(v.begin(), v.end(), static_cast<float>(p.value));
    else if (p.init == "normal") {
      uint64_t state = seed * 0x9E3779B97F4A7C15ull ^ fnv1a(p.name);
      for (size_t j = 0; j < v.size(); j += 2) { // Box-Muller, two at a time
        double r = std::sqrt(-2.0 * std::log(uniform(state))), a = 6.283185307179586 * uniform(state);
        v[j] = static_cast<float>(p.std * r * std::cos(a));
        if (j + 1 < v.size()) v[j + 1] = static_cast<float>(p.std * r * std::sin(a));
      }
    } else {
      throw Error("parameter '" + p.name + "' has unknown initialiser '" + p.init + "'");
    }
  }
}

void ParameterStore::loadSafetensors(const std::string &path) {
  SafetensorsFile file = SafetensorsFile::open(path);
  std::unordered_map<std::string, size_t> byName;
  for (size_t i = 0; i < specs_.size(); ++i) byName[specs_[i].name] = i;
  // Training checkpoints (Checkpoint.h) also hold optimizer state under
  // "optimizer.*"; it is not a weight, so loading weights skips it.
  for (const TensorInfo &t : file.tensors())
    if (t.name.rfind("optimizer.", 0) != 0 && !byName.count(t.name))
      throw Error(path + ": tensor '" + t.name + "' is not a parameter of this model (is it a checkpoint of another model?)");
  std::vector<std::string> missing;
  for (const ParamSpec &p : specs_)
    if (!file.find(p.name)) missing.push_back(p.name);
  if (!missing.empty())
    throw Error(path + ": missing " + std::to_string(missing.size()) + " parameter(s) of this model, first '" +
                missing.front() + "'");
  for (size_t i = 0; i < specs_.size(); ++i) {
    const ParamSpec &p = specs_[i];
    const TensorInfo &t = *file.find(p.name);
    if (t.shape != p.shape)
      throw Error(path + ": tensor '" + p.name + "' has shape " + shapeStr(t.shape) + " but the model declares " +
                  shapeStr(p.shape));
    const uint8_t *src = file.data(t);
    float *dst = values_[i].data();
    int64_t n = p.numel();
    switch (t.dtype) {
    case DType::F32: std::memcpy(dst, src, n * 4); break;
    case DType::F16:
      for (int64_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, src + 2 * j, 2);
        dst[j] = halfToFloat(h);
      }
      break;
    case DType::BF16:
      for (int64_t j = 0; j < n; ++j) {
        uint16_t h;
        std::memcpy(&h, src + 2 * j, 2);
        uint32_t bits = uint32_t(h) << 16;
        std::memcpy(dst + j, &bits, 4);
      }
      break;
    default:
      throw Error(path + ": tensor '" + p.name + "' has dtype " + dtypeName(t.dtype) +
                  "; parameters must be F32, F16 or BF16");
    }
  }
}

void ParameterStore::saveSafetensors(const std::string &path,
                                     const std::map<std::string, std::string> &metadata) const {
  std::vector<TensorToWrite> out;
  for (size_t i = 0; i < specs_.size(); ++i)
    out.push_back({specs_[i].name, DType::F32, specs_[i].shape, values_[i].data()});
  writeSafetensors(path, out, metadata);
}

std::vector<const float *> ParameterStore::pointers() const {
  std::vector<const float *> p;
  for (const auto &v : values_) p.push_back(v.data());
  return p;
}

int64_t ParameterStore::indexOf(const std::string &name) const {
  for (size_t i = 0; i < specs_.size(); ++i)
    if (specs_[i].name == name) return static_cast<int64_t>(i);
  return -1;
}

} // namespace mm
