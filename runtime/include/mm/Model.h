//===- Model.h - a compiled model library, loaded ---------------*- C++ -*-===//
//
// `CompiledModel::load("llava-tiny.so")` opens a library built by `mmc
// compile`, checks its ABI version and reads its manifest: parameters,
// groups, stages, entries with their argument and result shapes, and the
// model's configuration. `run` calls an entry on host buffers, moving them
// to and from the device when the library is a CUDA one.
//
//===----------------------------------------------------------------------===//
#ifndef MM_MODEL_H
#define MM_MODEL_H

#include "mm/abi.h"
#include <nlohmann/json.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mm {

enum class ElemType { F32, I32, F64 };

struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
  ElemType type = ElemType::F32;
  bool inout = false; // an entry argument the entry updates in place (KV caches)
  int64_t numel() const;
  int64_t bytes() const { return numel() * (type == ElemType::F64 ? 8 : 4); }
};

struct ParamSpec : TensorSpec {
  std::string group;
  std::string init = "normal"; // zeros | ones | normal | constant
  double std = 0.0;            // normal
  double value = 0.0;          // constant
};

struct EntrySpec {
  std::string name;
  std::vector<TensorSpec> args, results;
  uint64_t workspaceBytes = 0;
  std::vector<int64_t> reads; // indices of the parameters the entry reads
  const mm_entry_desc *desc = nullptr;
};

/// A host buffer for one argument or result.
struct HostTensor {
  std::vector<uint8_t> bytes;
  template <typename T> T *as() { return reinterpret_cast<T *>(bytes.data()); }
  template <typename T> const T *as() const { return reinterpret_cast<const T *>(bytes.data()); }
};

class CompiledModel {
public:
  /// Loads a library; throws mm::Error naming the file if it is missing, not
  /// a model library, built for another ABI, or carries a corrupt manifest.
  static CompiledModel load(const std::string &path);
  CompiledModel(CompiledModel &&other) noexcept;
  CompiledModel &operator=(CompiledModel &&) = delete;
  ~CompiledModel();

  const std::string &path() const { return path_; }
  const std::string &target() const { return target_; }
  const std::string &name() const { return name_; }
  const nlohmann::json &manifest() const { return manifest_; }
  const nlohmann::json &config() const { return manifest_.at("config"); }
  const std::string &tokenizerJson() const { return tokenizerJson_; }
  const std::vector<ParamSpec> &params() const { return params_; }
  const EntrySpec &entry(const std::string &name) const; // throws if absent
  bool hasEntry(const std::string &name) const;

  /// Runs `entry` with one host pointer per parameter (manifest order; f32
  /// data, or f64 for f64 parameters) and host argument buffers; returns the
  /// results. Throws on failure.
  std::vector<HostTensor> run(const std::string &entry, const std::vector<const float *> &params,
                              const std::vector<HostTensor> &args) const;
  std::vector<HostTensor> run(const std::string &entry, const std::vector<const void *> &params,
                              const std::vector<HostTensor> &args) const;
  /// The same, writing into `results` (resized to the entry's results). Their
  /// storage is reused from call to call, as is the entry's host workspace,
  /// so a training loop allocates nothing per sample. Concurrent calls need
  /// their own `workspace` each (host models only; null: the model's own).
  void runInto(const std::string &entry, const std::vector<const void *> &params,
               const std::vector<HostTensor> &args, std::vector<HostTensor> &results,
               std::vector<uint8_t> *workspace = nullptr) const;
  /// True when entries run on the host (their kernels are the CPU build).
  bool onHost() const;
  /// Declares `params` (the pointers entries are called with) unchanged until
  /// the next call: a CPU library then packs each weight its products read
  /// once and reuses the copy (abi.h, MM_WEIGHT_CACHE_SYMBOL). Call again
  /// after changing any parameter. Nothing where the library has no cache.
  void declareWeightsUnchanged(const std::vector<const void *> &params) const;
  /// Frees the packed copies and stops caching.
  void releaseWeightCache() const;

private:
  CompiledModel() = default;
  void *handle_ = nullptr;
  const mm_model_desc *desc_ = nullptr;
  mm_weight_cache_fn weightCache_ = nullptr;
  std::string path_, target_, name_, tokenizerJson_;
  nlohmann::json manifest_;
  std::vector<ParamSpec> params_;
  std::vector<EntrySpec> entries_;
  mutable std::map<std::string, std::vector<uint8_t>> workspaces_; // host workspaces, kept per entry
};

/// While it lives, `params` are declared unchanged to `model`
/// (declareWeightsUnchanged: each weight packed once, not once per call);
/// declareAgain() after changing any of them; the copies are freed at its end.
/// Inactive when `enabled` is false, on a CUDA model, or with
/// MM_WEIGHT_CACHE=0 in the environment.
class WeightCacheScope {
public:
  WeightCacheScope(const CompiledModel &model, std::vector<const void *> params, bool enabled = true);
  ~WeightCacheScope();
  WeightCacheScope(const WeightCacheScope &) = delete;
  WeightCacheScope &operator=(const WeightCacheScope &) = delete;
  void declareAgain() const;

private:
  const CompiledModel &model_;
  std::vector<const void *> params_;
  bool active_;
};

} // namespace mm

#endif // MM_MODEL_H
