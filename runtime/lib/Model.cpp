//===- Model.cpp - loading and calling a compiled model library -------------===//
#include "mm/Model.h"
#include "mm/Error.h"

#include <cstdlib>
#include <dlfcn.h>
#include <sys/stat.h>

namespace mm {

int64_t TensorSpec::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

namespace {

TensorSpec tensorFromJson(const nlohmann::json &j, const std::string &where) {
  TensorSpec t;
  t.name = j.at("name").get<std::string>();
  t.shape = j.at("shape").get<std::vector<int64_t>>();
  std::string dtype = j.at("dtype").get<std::string>();
  if (dtype == "F32") t.type = ElemType::F32;
  else if (dtype == "I32") t.type = ElemType::I32;
  else if (dtype == "F64") t.type = ElemType::F64;
  else throw Error(where + ": tensor '" + t.name + "' has unsupported dtype " + dtype);
  for (int64_t d : t.shape)
    if (d < 0) throw Error(where + ": tensor '" + t.name + "' has a negative dimension");
  t.inout = j.value("inout", false);
  return t;
}

/// Owns device buffers for one call of a CUDA library.
struct DeviceBuffers {
  const mm_device_ops *ops;
  std::vector<void *> ptrs;
  ~DeviceBuffers() {
    for (void *p : ptrs) ops->free(p);
  }
  void *alloc(uint64_t bytes, const std::string &what) {
    void *p = ops->alloc(bytes);
    if (!p) throw Error("cannot allocate " + std::to_string(bytes) + " device bytes for " + what + ": " +
                        ops->last_error());
    ptrs.push_back(p);
    return p;
  }
};

} // namespace

CompiledModel CompiledModel::load(const std::string &path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    throw Error(path + ": no such model library (build one with `mmc compile MODEL.mlir -o " + path + "`)");
  // RTLD_LOCAL: two models in one process keep their symbols apart.
  void *handle = dlopen(path.find('/') == std::string::npos ? ("./" + path).c_str() : path.c_str(),
                        RTLD_NOW | RTLD_LOCAL);
  if (!handle)
    throw Error(path + ": not a loadable model library: " + dlerror());
  CompiledModel m;
  m.handle_ = handle;
  m.path_ = path;
  auto get = reinterpret_cast<mm_model_fn>(dlsym(handle, MM_MODEL_SYMBOL));
  if (!get)
    throw Error(path + ": not an mmc model library (it exports no " MM_MODEL_SYMBOL ")");
  m.desc_ = get();
  m.weightCache_ = reinterpret_cast<mm_weight_cache_fn>(dlsym(handle, MM_WEIGHT_CACHE_SYMBOL)); // optional
  if (!m.desc_)
    throw Error(path + ": the model library returned no description");
  if (m.desc_->abi_version != MM_ABI_VERSION)
    throw Error(path + ": built for model ABI " + std::to_string(m.desc_->abi_version) +
                "; this runtime reads ABI " + std::to_string(MM_ABI_VERSION) + " (recompile it with mmc)");
  if (m.desc_->struct_size < sizeof(mm_model_desc))
    throw Error(path + ": model description is truncated");
  m.target_ = m.desc_->target ? m.desc_->target : "";
  if (m.target_ == "cuda" && !m.desc_->device)
    throw Error(path + ": CUDA model library without device hooks");
  m.tokenizerJson_ = m.desc_->tokenizer_json ? m.desc_->tokenizer_json : "";
  try {
    m.manifest_ = nlohmann::json::parse(m.desc_->manifest_json ? m.desc_->manifest_json : "");
    m.name_ = m.manifest_.at("name").get<std::string>();
    for (const auto &p : m.manifest_.at("parameters")) {
      ParamSpec ps;
      static_cast<TensorSpec &>(ps) = tensorFromJson(p, path);
      ps.group = p.at("group").get<std::string>();
      ps.init = p.at("init").at("kind").get<std::string>();
      ps.std = p.at("init").value("std", 0.0);
      ps.value = p.at("init").value("value", 0.0);
      m.params_.push_back(std::move(ps));
    }
    for (const auto &e : m.manifest_.at("entries")) {
      EntrySpec es;
      es.name = e.at("name").get<std::string>();
      for (const auto &a : e.at("args")) es.args.push_back(tensorFromJson(a, path));
      for (const auto &r : e.at("results")) es.results.push_back(tensorFromJson(r, path));
      es.workspaceBytes = e.value("workspace_bytes", uint64_t(0));
      if (e.contains("reads"))
        for (const auto &i : e.at("reads")) {
          es.reads.push_back(i.get<int64_t>());
          if (es.reads.back() < 0 || es.reads.back() >= (int64_t)m.params_.size())
            throw Error(path + ": corrupt manifest: entry '" + es.name + "' reads parameter " +
                        std::to_string(es.reads.back()) + " of " + std::to_string(m.params_.size()));
        }
      m.entries_.push_back(std::move(es));
    }
  } catch (const nlohmann::json::exception &e) {
    throw Error(path + ": corrupt manifest: " + e.what());
  }
  if ((int64_t)m.params_.size() != m.desc_->num_params)
    throw Error(path + ": manifest lists " + std::to_string(m.params_.size()) + " parameters but the code takes " +
                std::to_string(m.desc_->num_params));
  for (EntrySpec &e : m.entries_) {
    for (int32_t i = 0; i < m.desc_->num_entries; ++i)
      if (e.name == m.desc_->entries[i].name) e.desc = &m.desc_->entries[i];
    if (!e.desc || e.desc->num_args != (int32_t)e.args.size() ||
        e.desc->num_results != (int32_t)e.results.size())
      throw Error(path + ": entry '" + e.name + "' in the manifest does not match the code");
  }
  return m;
}

CompiledModel::CompiledModel(CompiledModel &&o) noexcept
    : handle_(o.handle_), desc_(o.desc_), weightCache_(o.weightCache_), path_(std::move(o.path_)),
      target_(std::move(o.target_)), name_(std::move(o.name_)), tokenizerJson_(std::move(o.tokenizerJson_)),
      manifest_(std::move(o.manifest_)), params_(std::move(o.params_)), entries_(std::move(o.entries_)),
      workspaces_(std::move(o.workspaces_)) {
  o.handle_ = nullptr;
}

CompiledModel::~CompiledModel() {
  if (handle_) dlclose(handle_);
}

bool CompiledModel::hasEntry(const std::string &name) const {
  for (const EntrySpec &e : entries_)
    if (e.name == name) return true;
  return false;
}

const EntrySpec &CompiledModel::entry(const std::string &name) const {
  for (const EntrySpec &e : entries_)
    if (e.name == name) return e;
  throw Error(path_ + ": model has no entry point '" + name + "'");
}

std::vector<HostTensor> CompiledModel::run(const std::string &name, const std::vector<const float *> &params,
                                           const std::vector<HostTensor> &args) const {
  return run(name, std::vector<const void *>(params.begin(), params.end()), args);
}

std::vector<HostTensor> CompiledModel::run(const std::string &name, const std::vector<const void *> &params,
                                           const std::vector<HostTensor> &args) const {
  std::vector<HostTensor> results;
  runInto(name, params, args, results);
  return results;
}

bool CompiledModel::onHost() const { return !desc_->device; }

void CompiledModel::declareWeightsUnchanged(const std::vector<const void *> &params) const {
  if (weightCache_ && !params.empty()) weightCache_(params.data(), (int64_t)params.size());
}

void CompiledModel::releaseWeightCache() const {
  if (weightCache_) weightCache_(nullptr, 0);
}

WeightCacheScope::WeightCacheScope(const CompiledModel &model, std::vector<const void *> params, bool enabled)
    : model_(model), params_(std::move(params)) {
  const char *env = std::getenv("MM_WEIGHT_CACHE");
  active_ = enabled && model_.onHost() && !(env && std::string(env) == "0");
  declareAgain();
}

WeightCacheScope::~WeightCacheScope() {
  if (active_) model_.releaseWeightCache();
}

void WeightCacheScope::declareAgain() const {
  if (active_) model_.declareWeightsUnchanged(params_);
}

void CompiledModel::runInto(const std::string &name, const std::vector<const void *> &params,
                            const std::vector<HostTensor> &args, std::vector<HostTensor> &results,
                            std::vector<uint8_t> *workspace) const {
  const EntrySpec &e = entry(name);
  if (params.size() != params_.size())
    throw Error("entry '" + name + "' needs " + std::to_string(params_.size()) + " parameters, got " +
                std::to_string(params.size()));
  if (args.size() != e.args.size())
    throw Error("entry '" + name + "' takes " + std::to_string(e.args.size()) + " arguments, got " +
                std::to_string(args.size()));
  for (size_t i = 0; i < args.size(); ++i)
    if ((int64_t)args[i].bytes.size() != e.args[i].bytes())
      throw Error("entry '" + name + "': argument '" + e.args[i].name + "' has " +
                  std::to_string(args[i].bytes.size()) + " bytes, expected " + std::to_string(e.args[i].bytes()));
  results.resize(e.results.size());
  for (size_t i = 0; i < results.size(); ++i) results[i].bytes.resize(e.results[i].bytes());

  if (!desc_->device) {
    // Host memory: call straight in. 64-byte aligned workspace, kept for the
    // next call (kernels write every arena buffer before reading it).
    std::vector<uint8_t> &store = workspace ? *workspace : workspaces_[name];
    store.resize(e.workspaceBytes + 64);
    void *aligned = reinterpret_cast<void *>((reinterpret_cast<uintptr_t>(store.data()) + 63) & ~uintptr_t(63));
    std::vector<void *> p, a, r;
    for (const void *ptr : params) p.push_back(const_cast<void *>(ptr));
    for (auto &t : args) a.push_back(const_cast<uint8_t *>(t.bytes.data()));
    for (auto &t : results) r.push_back(t.bytes.data());
    if (e.desc->fn(p.data(), a.data(), r.data(), aligned) != 0)
      throw Error("entry '" + name + "' failed");
    return;
  }

  const mm_device_ops *ops = desc_->device;
  DeviceBuffers dev{ops, {}};
  std::vector<void *> p, a, r;
  for (size_t i = 0; i < params.size(); ++i) {
    void *d = dev.alloc(params_[i].bytes(), params_[i].name);
    if (ops->upload(d, params[i], params_[i].bytes())) throw Error(std::string("upload: ") + ops->last_error());
    p.push_back(d);
  }
  for (size_t i = 0; i < args.size(); ++i) {
    void *d = dev.alloc(args[i].bytes.size(), e.args[i].name);
    if (ops->upload(d, args[i].bytes.data(), args[i].bytes.size()))
      throw Error(std::string("upload: ") + ops->last_error());
    a.push_back(d);
  }
  for (size_t i = 0; i < results.size(); ++i) r.push_back(dev.alloc(results[i].bytes.size(), e.results[i].name));
  void *deviceWorkspace = dev.alloc(e.workspaceBytes, "workspace");
  if (e.desc->fn(p.data(), a.data(), r.data(), deviceWorkspace) != 0)
    throw Error("entry '" + name + "' failed on the device: " + ops->last_error());
  for (size_t i = 0; i < results.size(); ++i)
    if (ops->download(results[i].bytes.data(), r[i], results[i].bytes.size()))
      throw Error(std::string("download: ") + ops->last_error());
  // Arguments the entry updates in place come back to the caller's buffers.
  for (size_t i = 0; i < args.size(); ++i)
    if (e.args[i].inout &&
        ops->download(const_cast<uint8_t *>(args[i].bytes.data()), a[i], args[i].bytes.size()))
      throw Error(std::string("download: ") + ops->last_error());
}

} // namespace mm
