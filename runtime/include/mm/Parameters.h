//===- Parameters.h - host storage for a model's parameters -----*- C++ -*-===//
//
// One f32 buffer per parameter of a compiled model, in manifest order:
// initialised from a seed by each parameter's declared initialiser, or
// loaded from / saved to safetensors under the Hugging Face names.
//
//===----------------------------------------------------------------------===//
#ifndef MM_PARAMETERS_H
#define MM_PARAMETERS_H

#include "mm/Model.h"

#include <map>
#include <string>
#include <vector>

namespace mm {

class ParameterStore {
public:
  explicit ParameterStore(const std::vector<ParamSpec> &specs);

  /// Fills every parameter from its initialiser (zeros, ones, or normal with
  /// its std), deterministically from `seed` and the parameter's name.
  void initFromSeed(uint64_t seed);

  /// Loads every parameter from a safetensors file. Throws mm::Error naming
  /// the file for: a tensor the model does not have, a parameter the file
  /// lacks, a shape that differs, or a dtype that is not F32/F16/BF16.
  /// Tensors named "optimizer.*" (a training checkpoint's optimizer state)
  /// are ignored, so a checkpoint loads as weights.
  void loadSafetensors(const std::string &path);

  /// Writes all parameters (F32, manifest order) atomically.
  void saveSafetensors(const std::string &path,
                       const std::map<std::string, std::string> &metadata = {}) const;

  size_t size() const { return specs_.size(); }
  const ParamSpec &spec(size_t i) const { return specs_[i]; }
  float *data(size_t i) { return values_[i].data(); }
  const float *data(size_t i) const { return values_[i].data(); }
  std::vector<const float *> pointers() const;
  /// Index of parameter `name`, or -1.
  int64_t indexOf(const std::string &name) const;

private:
  std::vector<ParamSpec> specs_;
  std::vector<std::vector<float>> values_;
};

} // namespace mm

#endif // MM_PARAMETERS_H
