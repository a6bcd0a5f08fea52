//===- AtomicFile.cpp - write a file via tmp + fsync + rename -------------===//

#include "AtomicFile.h"

#include "mm/Error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {
namespace detail {

namespace {

std::string parentDir(const std::string &path) {
  size_t slash = path.find_last_of('/');
  if (slash == std::string::npos)
    return ".";
  if (slash == 0)
    return "/";
  return path.substr(0, slash);
}

} // namespace

AtomicFile::AtomicFile(const std::string &path)
    : path_(path),
      tmpPath_(path + ".tmp." + std::to_string(static_cast<long>(::getpid()))) {
  if (path.empty())
    throw Error("cannot write a file with an empty path");
  fd_ = ::open(tmpPath_.c_str(),
               O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd_ < 0) {
    int err = errno;
    throw Error(path_ + ": cannot create temporary file '" + tmpPath_ +
                "': " + std::strerror(err));
  }
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0)
    ::close(fd_);
  if (!committed_)
    ::unlink(tmpPath_.c_str());
}

void AtomicFile::fail(const std::string &what, int err) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  ::unlink(tmpPath_.c_str());
  committed_ = true; // nothing left for the destructor to clean up
  throw Error(path_ + ": " + what + ": " + std::strerror(err));
}

void AtomicFile::write(const void *data, size_t size) {
  if (fd_ < 0)
    throw Error(path_ + ": write after the file was closed");
  const char *p = static_cast<const char *>(data);
  while (size > 0) {
    // Some kernels cap a single write at ~2 GiB; stay below that.
    size_t chunk = size < (size_t(1) << 30) ? size : (size_t(1) << 30);
    ssize_t n = ::write(fd_, p, chunk);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      fail("write failed", errno);
    }
    if (n == 0)
      fail("write failed", ENOSPC);
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0)
    throw Error(path_ + ": commit after the file was closed");
  if (::fsync(fd_) != 0)
    fail("fsync failed", errno);
  int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0)
    fail("close failed", errno);
  if (::rename(tmpPath_.c_str(), path_.c_str()) != 0) {
    int err = errno;
    ::unlink(tmpPath_.c_str());
    committed_ = true;
    throw Error(path_ + ": cannot rename '" + tmpPath_ +
                "' over it: " + std::strerror(err));
  }
  committed_ = true;
  // Make the rename itself durable. Best effort: some filesystems refuse
  // fsync on directories, and the data is already safely in place.
  int dirFd =
      ::open(parentDir(path_).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dirFd >= 0) {
    (void)::fsync(dirFd);
    ::close(dirFd);
  }
}

} // namespace detail
} // namespace mm
