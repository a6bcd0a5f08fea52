//===- AtomicFile.h - write a file via tmp + fsync + rename -----*- C++ -*-===//
//
// Internal to the runtime library (not installed). AtomicFile writes to
// PATH.tmp.<pid>; commit() fsyncs it and renames it over PATH. If commit() is
// never reached (an exception, a killed process), PATH is left untouched and
// the destructor removes the temporary file.
//
//===----------------------------------------------------------------------===//
#ifndef MM_RUNTIME_ATOMICFILE_H
#define MM_RUNTIME_ATOMICFILE_H

#include <cstddef>
#include <string>

namespace mm {
namespace detail {

class AtomicFile {
public:
  /// Creates PATH.tmp.<pid>. Throws mm::Error naming PATH on failure.
  explicit AtomicFile(const std::string &path);
  ~AtomicFile();
  AtomicFile(const AtomicFile &) = delete;
  AtomicFile &operator=(const AtomicFile &) = delete;

  /// Appends SIZE bytes. Throws mm::Error naming PATH (e.g. disk full).
  void write(const void *data, size_t size);
  /// fsync + close + rename over PATH (+ best-effort fsync of the directory).
  void commit();

  const std::string &path() const { return path_; }
  const std::string &tmpPath() const { return tmpPath_; }

private:
  [[noreturn]] void fail(const std::string &what, int err);

  std::string path_;
  std::string tmpPath_;
  int fd_ = -1;
  bool committed_ = false;
};

} // namespace detail
} // namespace mm

#endif // MM_RUNTIME_ATOMICFILE_H
