//===- TrainTestUtil.h - shared helpers of the training tests ---*- C++ -*-===//
//
// Temporary directories, text files, PNGs, and where the fixtures are: the
// byte-level tokenizer (MM_SOURCE_DIR) and the fake model library built from
// fake_train_model.cpp (MM_FAKE_TRAIN_MODEL, its path, set by the build).
//
//===----------------------------------------------------------------------===//
#ifndef MM_TESTS_TRAINTESTUTIL_H
#define MM_TESTS_TRAINTESTUTIL_H

#include "mm/Image.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

namespace mmtest {

/// A fresh directory under the test temp dir, removed at destruction.
class TempDir {
public:
  explicit TempDir(const std::string &tag) {
    std::string base = ::testing::TempDir();
    if (!base.empty() && base.back() != '/') base += '/';
    std::string templ = base + "mm_train_" + tag + "_XXXXXX";
    std::vector<char> buf(templ.begin(), templ.end());
    buf.push_back('\0');
    if (!::mkdtemp(buf.data())) ADD_FAILURE() << "mkdtemp " << templ;
    path_ = buf.data();
  }
  ~TempDir() {
    std::string cmd = "rm -rf '" + path_ + "'";
    if (std::system(cmd.c_str()) != 0) { /* best effort */
    }
  }
  std::string operator/(const std::string &name) const { return path_ + "/" + name; }
  const std::string &path() const { return path_; }

private:
  std::string path_;
};

inline void writeText(const std::string &path, const std::string &text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  ASSERT_TRUE(f.good()) << path;
}

inline std::string readText(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

inline std::vector<std::string> readLines(const std::string &path) {
  std::ifstream f(path);
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  return lines;
}

/// A W x H PNG with a horizontal gradient in RED, G = 100, B = 255 - RED.
inline void writePng(const std::string &path, int w, int h, int seed = 0) {
  mm::Image img;
  img.width = w;
  img.height = h;
  img.rgb.resize(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t *p = &img.rgb[(size_t(y) * w + x) * 3];
      p[0] = uint8_t((x * 255 / std::max(1, w - 1) + seed * 37) % 256);
      p[1] = uint8_t((100 + y * 7 + seed * 11) % 256);
      p[2] = uint8_t(255 - p[0]);
    }
  mm::savePng(path, img);
}

inline std::string sourceDir() {
#ifdef MM_SOURCE_DIR
  return MM_SOURCE_DIR;
#else
  return ".";
#endif
}

inline std::string byteTokenizerPath() { return sourceDir() + "/models/tokenizers/byte-level.tokenizer.json"; }

inline std::string fakeModelPath() {
#ifdef MM_FAKE_TRAIN_MODEL
  return MM_FAKE_TRAIN_MODEL;
#else
  const char *env = std::getenv("MM_FAKE_TRAIN_MODEL");
  return env ? env : "mm_fake_train_model.so";
#endif
}

/// The ids of TEXT under the byte-level tokenizer (byte b -> 5 + b).
inline std::vector<int32_t> bytes(const std::string &text) {
  std::vector<int32_t> ids;
  for (unsigned char c : text) ids.push_back(5 + int32_t(c));
  return ids;
}

inline void append(std::vector<int32_t> &to, const std::vector<int32_t> &more) {
  to.insert(to.end(), more.begin(), more.end());
}

/// Captures what is written to std::cerr while alive.
class CaptureCerr {
public:
  CaptureCerr() : old_(std::cerr.rdbuf(buf_.rdbuf())) {}
  ~CaptureCerr() { std::cerr.rdbuf(old_); }
  std::string text() const { return buf_.str(); }

private:
  std::ostringstream buf_;
  std::streambuf *old_;
};

} // namespace mmtest

#endif // MM_TESTS_TRAINTESTUTIL_H
