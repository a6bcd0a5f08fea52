//===- CompiledTestModel.h - compile a test model once per build ---*- C++ -*-===//
//
// ctest runs every GoogleTest case in its own process, so a fixture that
// compiled its model in SetUpTestSuite compiled it once per case. This
// compiles tests/unit/compiler/<name>.mlir for a target into the build tree
// under a name keyed by the source's contents, the mmc binary (size and
// modification time) and the runtime headers the generated C++ includes
// (mm/abi.h, mm/cpu/*.h: their contents), and later processes load that
// library. mmc writes to a
// temporary file and renames it, so two processes compiling at once are safe.
//
//===----------------------------------------------------------------------===//
#ifndef MM_TESTS_COMPILEDTESTMODEL_H
#define MM_TESTS_COMPILEDTESTMODEL_H

#include <gtest/gtest.h>
#include <dirent.h>
#include <sys/stat.h>

#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>
#include <algorithm>

namespace mmtest {

/// The contents of the runtime headers that `mmc compile` puts into every
/// library (a change to the GEMM or the convolution must recompile).
inline std::string runtimeHeaders() {
  const std::string include = std::string(MM_SOURCE_DIR) + "/runtime/include/mm/";
  std::string all;
  auto add = [&](const std::string &path) {
    std::ifstream in(path, std::ios::binary);
    std::stringstream text;
    text << in.rdbuf();
    all += path + "\n" + text.str();
  };
  add(include + "abi.h");
  if (DIR *dir = opendir((include + "cpu").c_str())) {
    std::vector<std::string> names;
    while (dirent *e = readdir(dir))
      if (std::string name = e->d_name; name.size() > 2 && name.substr(name.size() - 2) == ".h") names.push_back(name);
    closedir(dir);
    std::sort(names.begin(), names.end());
    for (const std::string &name : names) add(include + "cpu/" + name);
  }
  return all;
}

/// The library of tests/unit/compiler/NAME.mlir for TARGET (with mmc's
/// FLAGS, e.g. "--no-fuse"); compiles it if this build has not yet. Fails the
/// calling test (and returns "") if mmc fails.
inline std::string compiledTestModel(const std::string &name, const std::string &target,
                                     const std::string &flags = "") {
  const std::string source = std::string(MM_SOURCE_DIR) + "/tests/unit/compiler/" + name + ".mlir";
  std::ifstream in(source, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  struct stat mmc {};
  stat(MMC_PATH, &mmc);
  std::string key = text.str() + "\n" + target + " " + flags + "\n" + std::to_string(mmc.st_size) + "\n" +
                    std::to_string(mmc.st_mtim.tv_sec) + "." + std::to_string(mmc.st_mtim.tv_nsec) + "\n" +
                    runtimeHeaders();
  const std::string dir = std::string(MM_TEST_BUILD_DIR) + "/compiled-test-models";
  const std::string so = dir + "/" + name + "-" + target + "-" + std::to_string(std::hash<std::string>{}(key)) + ".so";
  struct stat st {};
  if (stat(so.c_str(), &st) == 0) return so;
  const std::string cmd = "mkdir -p '" + dir + "' && " + std::string(MMC_PATH) + " compile '" + source +
                          "' --target " + target + " " + flags + " -o '" + so + "'";
  if (std::system(cmd.c_str()) != 0) {
    ADD_FAILURE() << "failed: " << cmd;
    return "";
  }
  return so;
}

} // namespace mmtest

#endif // MM_TESTS_COMPILEDTESTMODEL_H
