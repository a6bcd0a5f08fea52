//===- mmc.cpp - the mm model compiler --------------------------------------===//
//
//   mmc compile MODEL.mlir -o MODEL.so [--target cpu|cuda] [--emit=mlir|cpp|cuda] [--no-fuse] [--remat]
//   mmc inspect MODEL.mlir|MODEL.so [--json] [--remat]
//
//===----------------------------------------------------------------------===//
#include "mm/Compiler/Driver.h"

#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/raw_ostream.h"
#include <string>
#include <vector>

static int usage(int rc) {
  (rc ? llvm::errs() : llvm::outs())
      << "usage: mmc compile MODEL.mlir -o MODEL.so [--target cpu|cuda] [--emit=mlir|cpp|cuda]\n"
         "                  [--cuda-arch sm_90] [--no-fuse] [--remat] [--keep-source] [-v]\n"
         "       mmc inspect MODEL.mlir|MODEL.so [--json] [--remat]\n";
  return rc;
}

int main(int argc, char **argv) {
  llvm::InitLLVM init(argc, argv);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty())
    return usage(1);
  if (args[0] == "-h" || args[0] == "--help")
    return usage(0);
  std::string command = args[0], input;
  mm::CompileOptions opts;
  bool json = false;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string &a = args[i];
    auto value = [&](const char *flag) -> std::string {
      std::string f = flag;
      if (a.rfind(f + "=", 0) == 0) return a.substr(f.size() + 1);
      if (i + 1 >= args.size()) {
        llvm::errs() << "mmc: error: " << flag << " needs a value\n";
        exit(1);
      }
      return args[++i];
    };
    if (a == "-o" || a == "--output") opts.output = value(a.c_str());
    else if (a.rfind("--target", 0) == 0) opts.target = value("--target");
    else if (a.rfind("--emit", 0) == 0) opts.emit = value("--emit");
    else if (a.rfind("--cuda-arch", 0) == 0) opts.cudaArch = value("--cuda-arch");
    else if (a == "--keep-source") opts.keepSource = true;
    else if (a == "--no-fuse") opts.fuse = false;
    else if (a == "--remat") opts.remat = true;
    else if (a == "-v" || a == "--verbose") opts.verbose = true;
    else if (a == "--json") json = true;
    else if (!a.empty() && a[0] == '-') {
      llvm::errs() << "mmc: error: unknown option '" << a << "'\n";
      return usage(1);
    } else if (input.empty()) input = a;
    else {
      llvm::errs() << "mmc: error: more than one input file\n";
      return 1;
    }
  }
  if (input.empty()) {
    llvm::errs() << "mmc: error: no input file\n";
    return usage(1);
  }
  if (command == "compile")
    return mm::compileModel(input, opts);
  if (command == "inspect")
    return mm::inspectModel(input, json, llvm::outs(), opts.remat);
  llvm::errs() << "mmc: error: unknown command '" << command << "'\n";
  return usage(1);
}
