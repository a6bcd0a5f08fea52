//===- Safetensors.h - read and write .safetensors files --------*- C++ -*-===//
//
// A .safetensors file is:
//
//   u64 little-endian N | N bytes of JSON header | data section
//
// The header is a JSON object mapping each tensor name to
//   {"dtype": "F32", "shape": [d0, d1, ...], "data_offsets": [begin, end]}
// (offsets are byte offsets relative to the start of the data section), plus
// an optional "__metadata__" object mapping strings to strings.
//
// SafetensorsFile::open validates the whole header before returning, so every
// TensorInfo it hands out describes bytes that really exist in the file.
// Every failure throws mm::Error with a message naming the file (and the
// tensor, where there is one).
//
//===----------------------------------------------------------------------===//
#ifndef MM_SAFETENSORS_H
#define MM_SAFETENSORS_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace mm {

/// Element types a safetensors file can hold (the subset mmc supports).
enum class DType { F32, F64, F16, BF16, I64, I32, I16, I8, U8, BOOL };

/// The safetensors spelling of a dtype: "F32", "BF16", "BOOL", ...
const char *dtypeName(DType dtype);
/// Size of one element in bytes.
size_t dtypeSize(DType dtype);
/// Parses the safetensors spelling; std::nullopt for anything unknown.
std::optional<DType> parseDType(std::string_view name);

/// One tensor of a safetensors file.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  /// Byte offsets relative to the start of the data section; [begin, end).
  uint64_t begin = 0, end = 0;

  /// Product of the dims (1 for a scalar, shape == {}).
  int64_t numel() const;
};

/// A validated, read-only view of a .safetensors file. The file is mapped
/// into memory (private, read-only); copies of a SafetensorsFile share the
/// mapping, which lives until the last copy is destroyed. A truncated or
/// corrupt file is rejected by open(); as with any mmap, the file must not be
/// truncated by someone else while it is open (writeSafetensors never does:
/// it replaces files by rename, so open mappings keep the old contents).
class SafetensorsFile {
public:
  /// Opens and validates PATH. Throws mm::Error on any problem.
  static SafetensorsFile open(const std::string &path);

  /// All tensors, ordered by their position in the data section.
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  /// The tensor called NAME, or nullptr.
  const TensorInfo *find(std::string_view name) const;
  /// Pointer to the first byte of INFO's data (INFO should come from this
  /// file's tensors()/find(); offsets outside the data section throw
  /// mm::Error). The pointer
  /// is valid while any copy of this SafetensorsFile is alive. For a tensor
  /// with no bytes it may point one past the end of the data section.
  const uint8_t *data(const TensorInfo &info) const;
  /// The "__metadata__" entries (empty if the header had none).
  const std::map<std::string, std::string> &metadata() const {
    return metadata_;
  }
  /// The path the file was opened with.
  const std::string &path() const { return path_; }

  struct Mapping; // implementation detail (owns the mmap)

private:
  SafetensorsFile() = default;

  std::string path_;
  std::shared_ptr<const Mapping> mapping_;
  const uint8_t *dataSection_ = nullptr;
  uint64_t dataSize_ = 0;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
  std::map<std::string, std::string> metadata_;
};

/// One tensor to write. DATA points to numel * dtypeSize(dtype) bytes in
/// row-major order (it may be null only when there are no bytes).
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void *data = nullptr;
};

/// Writes TENSORS (in the given order, contiguous) and METADATA to PATH.
/// The file is written to PATH + ".tmp.<pid>", fsynced and renamed over PATH,
/// so a reader (or a writer that gets killed) never leaves a half-written
/// PATH behind. The header is padded with spaces so that the data section
/// starts at a multiple of 8 bytes. Throws mm::Error naming PATH on invalid
/// input (duplicate/reserved names, negative dims, null data) or I/O errors.
void writeSafetensors(const std::string &path,
                      const std::vector<TensorToWrite> &tensors,
                      const std::map<std::string, std::string> &metadata = {});

} // namespace mm

#endif // MM_SAFETENSORS_H
