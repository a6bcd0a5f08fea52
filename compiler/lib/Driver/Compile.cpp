//===- Compile.cpp - mmc compile: model file to shared library ---------------===//
#include "mm/Compiler/Codegen.h"
#include "mm/Compiler/Driver.h"

#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/MemoryBuffer.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/SourceMgr.h"
#include "llvm/Support/ToolOutputFile.h"

#include <chrono>

using namespace mlir;

namespace mm {
namespace {

std::string envOr(const char *name, const std::string &fallback) {
  const char *v = getenv(name);
  return v && *v ? v : fallback;
}

/// Reads the tokenizer the model file names, relative to the model file.
FailureOr<std::string> readTokenizer(ModelOp model, const std::string &modelPath) {
  if (!model.getTokenizer())
    return std::string();
  llvm::SmallString<256> path(llvm::sys::path::parent_path(modelPath));
  llvm::sys::path::append(path, *model.getTokenizer());
  auto buf = llvm::MemoryBuffer::getFile(path);
  if (!buf) {
    model.emitError("cannot read tokenizer '") << path << "': " << buf.getError().message();
    return failure();
  }
  return (*buf)->getBuffer().str();
}

int writeFile(const std::string &path, llvm::StringRef text) {
  if (path == "-") {
    llvm::outs() << text;
    return 0;
  }
  std::error_code ec;
  llvm::ToolOutputFile out(path, ec, llvm::sys::fs::OF_None);
  if (ec) {
    llvm::errs() << "mmc: error: cannot write '" << path << "': " << ec.message() << "\n";
    return 1;
  }
  out.os() << text;
  out.keep();
  return 0;
}

int runTool(const std::string &program, std::vector<std::string> args, bool verbose) {
  std::vector<llvm::StringRef> refs;
  for (auto &a : args) refs.push_back(a);
  if (verbose) {
    for (auto &a : args) llvm::errs() << a << " ";
    llvm::errs() << "\n";
  }
  std::string err;
  int rc = llvm::sys::ExecuteAndWait(program, refs, std::nullopt, {}, 0, 0, &err);
  if (rc != 0)
    llvm::errs() << "mmc: error: " << program << " failed (exit " << rc << ")"
                 << (err.empty() ? "" : ": " + err) << "\n";
  return rc;
}

} // namespace

int compileModel(const std::string &modelPath, const CompileOptions &opts) {
  auto start = std::chrono::steady_clock::now();
  DialectRegistry registry;
  registerMMDialects(registry);
  MLIRContext ctx(registry);
  llvm::SourceMgr sourceMgr;
  SourceMgrDiagnosticHandler diagHandler(sourceMgr, &ctx);
  ModelOp model;
  OwningOpRef<ModuleOp> module = parseModelFile(modelPath, ctx, model);
  if (!module)
    return 1;
  if (opts.target != "cpu" && opts.target != "cuda") {
    llvm::errs() << "mmc: error: unknown target '" << opts.target << "'; expected cpu or cuda\n";
    return 1;
  }
  FailureOr<std::string> tokenizer = readTokenizer(model, modelPath);
  if (failed(tokenizer))
    return 1;

  PassManager pm(&ctx);
  buildCompilePipeline(pm, opts.fuse, opts.remat);
  if (failed(pm.run(*module)))
    return 1;
  if (opts.emit == "mlir")
    return writeFile(opts.output.empty() ? "-" : opts.output, [&] {
      std::string s;
      llvm::raw_string_ostream os(s);
      module->print(os);
      return s;
    }());

  FailureOr<Program> program = buildProgram(model);
  if (failed(program))
    return 1;
  std::string manifest;
  llvm::raw_string_ostream(manifest) << llvm::json::Value(buildManifest(model, opts.target, opts.fuse, opts.remat));
  EmbeddedData data{manifest, *tokenizer};
  bool cuda = opts.target == "cuda";
  std::string source = cuda ? emitCuda(*program, data) : emitCpp(*program, data);
  if (opts.emit == "cpp" || opts.emit == "cuda") {
    if ((opts.emit == "cuda") != cuda) {
      llvm::errs() << "mmc: error: --emit=" << opts.emit << " needs --target "
                   << (cuda ? "cpu" : "cuda") << "\n";
      return 1;
    }
    return writeFile(opts.output.empty() ? "-" : opts.output, source);
  }
  if (!opts.emit.empty()) {
    llvm::errs() << "mmc: error: unknown --emit level '" << opts.emit << "'; expected mlir, cpp or cuda\n";
    return 1;
  }
  if (opts.output.empty()) {
    llvm::errs() << "mmc: error: no output file; use -o MODEL.so\n";
    return 1;
  }

  // Write the source next to the output, build into a temporary file, and
  // rename: a failed build never leaves a half-written library behind.
  std::string srcPath = opts.output + (cuda ? ".cu" : ".cpp");
  if (writeFile(srcPath, source))
    return 1;
  std::string tmpOut = opts.output + ".tmp";
  std::string include = envOr("MMC_INCLUDE_DIR", MM_ABI_INCLUDE_DIR);
  int rc;
  if (cuda) {
    std::string nvcc = envOr("MMC_NVCC", MM_NVCC_PATH);
    if (nvcc.empty() || !llvm::sys::fs::can_execute(nvcc)) {
      auto found = llvm::sys::findProgramByName("nvcc");
      nvcc = found ? *found : "";
    }
    if (nvcc.empty()) {
      llvm::errs() << "mmc: error: the CUDA toolkit (nvcc) is not installed; wrote the CUDA source to "
                   << srcPath << " (set MMC_NVCC to point at nvcc)\n";
      return 1;
    }
    rc = runTool(nvcc, {nvcc, "-std=c++17", "-O2", "-shared", "-Xcompiler", "-fPIC", "-cudart",
                        "static", "-arch=" + opts.cudaArch, "-diag-suppress=177,550", "-I" + include, srcPath, "-o", tmpOut},
                 opts.verbose);
  } else {
    std::string cxx = envOr("MMC_CXX", MM_HOST_CXX_PATH);
    rc = runTool(cxx, {cxx, "-std=c++17", "-O3", "-march=native", "-fPIC", "-shared",
                       "-fopenmp", "-fno-math-errno", "-fveclib=libmvec", "-w", "-I" + include, srcPath,
                       "-o", tmpOut, "-lmvec"},
                 opts.verbose);
  }
  if (rc != 0) {
    llvm::sys::fs::remove(tmpOut);
    return 1;
  }
  if (std::error_code ec = llvm::sys::fs::rename(tmpOut, opts.output)) {
    llvm::errs() << "mmc: error: cannot move the library to '" << opts.output << "': " << ec.message() << "\n";
    return 1;
  }
  if (!opts.keepSource)
    llvm::sys::fs::remove(srcPath);
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  size_t kernels = program->kernels.size(), calls = 0;
  for (auto &e : program->entries) calls += e.calls.size();
  llvm::errs() << "mmc: wrote " << opts.output << " (" << opts.target << ", " << kernels
               << " kernels, " << calls << " kernel calls, " << llvm::format("%.1f", secs) << " s)\n";
  return 0;
}

} // namespace mm
