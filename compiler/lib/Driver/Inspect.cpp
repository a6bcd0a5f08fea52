//===- Inspect.cpp - mmc inspect: a model's parameters, stages, entries ----===//
#include "mm/Compiler/Driver.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/SourceMgr.h"

#include "mm/abi.h"
#include <dlfcn.h>

using namespace mlir;
namespace json = llvm::json;

namespace mm {
namespace {

/// Reads the manifest out of a compiled library.
std::optional<json::Object> manifestFromLibrary(const std::string &path) {
  // A bare file name is the file in the working directory (dlopen would
  // search the library path for it instead), as for mmrun.
  const std::string file = path.find('/') == std::string::npos ? "./" + path : path;
  void *handle = dlopen(file.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    llvm::errs() << "mmc: error: cannot load '" << path << "': " << dlerror() << "\n";
    return std::nullopt;
  }
  auto get = reinterpret_cast<mm_model_fn>(dlsym(handle, MM_MODEL_SYMBOL));
  const mm_model_desc *desc = get ? get() : nullptr;
  if (!desc) {
    llvm::errs() << "mmc: error: '" << path << "' is not an mmc model library (no " MM_MODEL_SYMBOL ")\n";
    return std::nullopt;
  }
  if (desc->abi_version != MM_ABI_VERSION) {
    llvm::errs() << "mmc: error: '" << path << "' was built for model ABI " << desc->abi_version
                 << "; this mmc reads ABI " << MM_ABI_VERSION << "\n";
    return std::nullopt;
  }
  auto parsed = json::parse(desc->manifest_json);
  if (!parsed || !parsed->getAsObject()) {
    llvm::errs() << "mmc: error: '" << path << "' has a corrupt manifest\n";
    if (!parsed) llvm::consumeError(parsed.takeError());
    return std::nullopt;
  }
  return *parsed->getAsObject();
}

std::optional<json::Object> manifestFromSource(const std::string &path, bool remat) {
  DialectRegistry registry;
  registerMMDialects(registry);
  MLIRContext ctx(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagHandler(sourceMgr, &ctx);
  ModelOp model;
  OwningOpRef<ModuleOp> module = parseModelFile(path, ctx, model);
  if (!module)
    return std::nullopt;
  PassManager pm(&ctx);
  buildCompilePipeline(pm, /*fuse=*/true, remat);
  if (failed(pm.run(*module)))
    return std::nullopt;
  return buildManifest(model, "source", /*fuse=*/true, remat);
}

std::string shapeStr(const json::Value *shape) {
  std::string s = "[";
  if (auto *a = shape ? shape->getAsArray() : nullptr)
    for (size_t i = 0; i < a->size(); ++i)
      s += (i ? ", " : "") + std::to_string((*a)[i].getAsInteger().value_or(-1));
  return s + "]";
}

std::string withCommas(int64_t n) {
  std::string s = std::to_string(n);
  for (int i = (int)s.size() - 3; i > 0; i -= 3) s.insert(i, ",");
  return s;
}

void printHuman(const json::Object &m, llvm::raw_ostream &os) {
  os << "model " << m.getString("name").value_or("?") << " (" << m.getString("target").value_or("?");
  // The pipeline's options, where they are not the defaults.
  if (const json::Object *o = m.getObject("compile_options")) {
    if (!o->getBoolean("fuse").value_or(true)) os << ", --no-fuse";
    if (o->getBoolean("remat").value_or(false)) os << ", --remat";
  }
  os << ")\n\nconfiguration (Hugging Face config.json):\n";
  if (const json::Value *config = m.get("config"))
    os << llvm::formatv("{0:2}", *config) << "\n";

  os << "\ngroups:\n";
  if (auto *groups = m.getArray("groups"))
    for (const json::Value &g : *groups) {
      auto *o = g.getAsObject();
      os << llvm::format("  %-28s %16s parameters in %lld tensors\n",
                         o->getString("name").value_or("").str().c_str(),
                         withCommas(o->getInteger("parameters").value_or(0)).c_str(),
                         (long long)o->getInteger("tensors").value_or(0));
    }

  os << "\nparameters:\n";
  if (auto *params = m.getArray("parameters"))
    for (const json::Value &p : *params) {
      auto *o = p.getAsObject();
      os << llvm::format("  %-72s %-18s %s  %s\n", o->getString("name").value_or("").str().c_str(),
                         shapeStr(o->get("shape")).c_str(), o->getString("dtype").value_or("").str().c_str(),
                         o->getString("group").value_or("").str().c_str());
    }

  os << "\nstages:\n";
  if (auto *stages = m.getArray("stages"))
    for (const json::Value &s : *stages) {
      auto *o = s.getAsObject();
      std::string trainable;
      if (auto *t = o->getArray("trainable"))
        for (auto &g : *t) trainable += (trainable.empty() ? "" : ", ") + g.getAsString().value_or("").str();
      os << "  " << o->getString("name").value_or("") << ": trains [" << trainable << "], loss "
         << o->getString("loss").value_or("") << ", data " << o->getString("data").value_or("")
         << ", lr " << o->getNumber("lr").value_or(0) << " (" << o->getString("schedule").value_or("")
         << ", warmup " << o->getNumber("warmup_ratio").value_or(0) << "), weight decay "
         << o->getNumber("weight_decay").value_or(0) << ", batch " << o->getInteger("batch").value_or(0)
         << ", epochs " << o->getInteger("epochs").value_or(0) << "\n";
      if (auto flops = o->getInteger("flops_per_sample")) {
        os << "    training step (" << o->getString("train_entry").value_or("") << "): "
           << llvm::format("%.3f", *flops / 1e9) << " GFLOP per sample";
        if (auto *b = o->getObject("bytes"))
          os << "; bytes: parameters " << withCommas(b->getInteger("parameters").value_or(0)) << ", gradients "
             << withCommas(b->getInteger("gradients").value_or(0)) << ", optimizer state "
             << withCommas(b->getInteger("optimizer_state").value_or(0)) << ", activations "
             << withCommas(b->getInteger("activations").value_or(0)) << " (arena "
             << withCommas(b->getInteger("workspace").value_or(0)) << ")";
        os << "\n";
      }
    }

  os << "\nentry points:\n";
  if (auto *entries = m.getArray("entries"))
    for (const json::Value &e : *entries) {
      auto *o = e.getAsObject();
      auto list = [](const json::Array *a) {
        std::string s;
        if (a && a->size() > 6) {
          // Training steps return one gradient per trainable parameter.
          auto *first = (*a)[0].getAsObject();
          return first->getString("name").value_or("").str() + ": " + first->getString("dtype").value_or("").str() +
                 shapeStr(first->get("shape")) + ", ... " + std::to_string(a->size() - 1) + " more";
        }
        if (a)
          for (auto &t : *a) {
            auto *to = t.getAsObject();
            s += (s.empty() ? "" : ", ") + to->getString("name").value_or("").str() + ": " +
                 to->getString("dtype").value_or("").str() + shapeStr(to->get("shape"));
          }
        return s;
      };
      os << "  " << o->getString("name").value_or("") << "(" << list(o->getArray("args")) << ") -> ("
         << list(o->getArray("results")) << ")";
      if (auto ws = o->getInteger("workspace_bytes"))
        os << ", workspace " << withCommas(*ws) << " bytes";
      if (auto flops = o->getInteger("flops"))
        os << ", " << llvm::format("%.3f", *flops / 1e9) << " GFLOP";
      os << "\n";
    }
  int64_t total = m.getInteger("total_parameters").value_or(0);
  os << "\ntotal parameters: " << withCommas(total) << " (" << total << ")\n";
  if (auto forward = m.getInteger("forward_parameters"); forward && *forward != total)
    os << "read by the forward entry: " << withCommas(*forward) << " (" << *forward << "); the other "
       << withCommas(total - *forward) << " only train (see the groups)\n";
}

} // namespace

int inspectModel(const std::string &path, bool asJson, llvm::raw_ostream &os, bool remat) {
  llvm::StringRef p(path);
  if (remat && p.ends_with(".so")) {
    llvm::errs() << "mmc: error: --remat plans a model file's memory; " << path
                 << " is a compiled library (its plan is fixed: compile it with --remat)\n";
    return 1;
  }
  std::optional<json::Object> manifest =
      p.ends_with(".so") ? manifestFromLibrary(path) : manifestFromSource(path, remat);
  if (!manifest)
    return 1;
  if (asJson)
    os << llvm::formatv("{0:2}", json::Value(std::move(*manifest))) << "\n";
  else
    printHuman(*manifest, os);
  return 0;
}

} // namespace mm
