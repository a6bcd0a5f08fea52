//===- Safetensors.cpp - read and write .safetensors files ----------------===//

#include "JsonMessage.h"
#include "mm/Safetensors.h"

#include "AtomicFile.h"
#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <limits>
#include <set>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace mm {

//===----------------------------------------------------------------------===//
// DType
//===----------------------------------------------------------------------===//

namespace {

struct DTypeEntry {
  DType dtype;
  const char *name;
  size_t size;
};

constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},   {DType::F64, "F64", 8}, {DType::F16, "F16", 2},
    {DType::BF16, "BF16", 2}, {DType::I64, "I64", 8}, {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},   {DType::I8, "I8", 1},   {DType::U8, "U8", 1},
    {DType::BOOL, "BOOL", 1},
};

const DTypeEntry *lookup(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return &e;
  return nullptr;
}

} // namespace

const char *dtypeName(DType dtype) {
  const DTypeEntry *e = lookup(dtype);
  return e ? e->name : "<invalid dtype>";
}

size_t dtypeSize(DType dtype) {
  const DTypeEntry *e = lookup(dtype);
  if (!e)
    throw Error("invalid DType value " +
                std::to_string(static_cast<int>(dtype)));
  return e->size;
}

std::optional<DType> parseDType(std::string_view name) {
  for (const DTypeEntry &e : kDTypes)
    if (name == e.name)
      return e.dtype;
  return std::nullopt;
}

//===----------------------------------------------------------------------===//
// Helpers
//===----------------------------------------------------------------------===//

namespace {

std::string shapeString(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i)
      s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

/// Product of SHAPE, or nullopt if it does not fit in int64 (or a dim < 0).
std::optional<int64_t> checkedNumel(const std::vector<int64_t> &shape) {
  int64_t n = 1;
  bool zero = false;
  for (int64_t d : shape) {
    if (d < 0)
      return std::nullopt;
    if (d == 0)
      zero = true;
  }
  if (zero)
    return 0;
  for (int64_t d : shape) {
    if (n > std::numeric_limits<int64_t>::max() / d)
      return std::nullopt;
    n *= d;
  }
  return n;
}

/// numel * elementSize in bytes, or nullopt on overflow.
std::optional<uint64_t> checkedBytes(const std::vector<int64_t> &shape,
                                     DType dtype) {
  std::optional<int64_t> n = checkedNumel(shape);
  if (!n)
    return std::nullopt;
  uint64_t elems = static_cast<uint64_t>(*n);
  uint64_t size = dtypeSize(dtype);
  if (elems > std::numeric_limits<uint64_t>::max() / size)
    return std::nullopt;
  return elems * size;
}

std::string quoted(const std::string &s) { return "'" + s + "'"; }

using detail::jsonMessage;

} // namespace

int64_t TensorInfo::numel() const {
  std::optional<int64_t> n = checkedNumel(shape);
  if (!n)
    throw Error("tensor " + quoted(name) + ": shape " + shapeString(shape) +
                " is invalid or has too many elements");
  return *n;
}

//===----------------------------------------------------------------------===//
// SafetensorsFile
//===----------------------------------------------------------------------===//

struct SafetensorsFile::Mapping {
  void *addr = nullptr;
  size_t size = 0;
  Mapping() = default;
  Mapping(const Mapping &) = delete;
  Mapping &operator=(const Mapping &) = delete;
  ~Mapping() {
    if (addr)
      ::munmap(addr, size);
  }
};

namespace {

/// Closes a file descriptor on scope exit.
struct FdGuard {
  int fd;
  ~FdGuard() {
    if (fd >= 0)
      ::close(fd);
  }
};

} // namespace

SafetensorsFile SafetensorsFile::open(const std::string &path) {
  SafetensorsFile file;
  file.path_ = path;
  auto fail = [&](const std::string &msg) -> Error {
    return Error(path + ": " + msg);
  };
  auto tensorFail = [&](const std::string &name,
                        const std::string &msg) -> Error {
    return Error(path + ": tensor " + quoted(name) + ": " + msg);
  };

  // --- Map the file. ------------------------------------------------------
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    throw fail(std::string("cannot open: ") + std::strerror(errno));
  FdGuard guard{fd};
  struct stat st;
  if (::fstat(fd, &st) != 0)
    throw fail(std::string("cannot stat: ") + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw fail("not a regular file");
  uint64_t fileSize = static_cast<uint64_t>(st.st_size);
  if (fileSize < 8)
    throw fail("file is " + std::to_string(fileSize) +
               " bytes, too short to hold the 8-byte header length");
  if (fileSize > std::numeric_limits<size_t>::max())
    throw fail("file is too large to map");

  auto mapping = std::make_shared<Mapping>();
  void *addr = ::mmap(nullptr, static_cast<size_t>(fileSize), PROT_READ,
                      MAP_PRIVATE, fd, 0);
  if (addr == MAP_FAILED)
    throw fail(std::string("cannot map into memory: ") + std::strerror(errno));
  mapping->addr = addr;
  mapping->size = static_cast<size_t>(fileSize);
  const uint8_t *bytes = static_cast<const uint8_t *>(addr);

  // --- Header length. -----------------------------------------------------
  uint64_t headerLen = 0;
  for (int i = 7; i >= 0; --i)
    headerLen = (headerLen << 8) | bytes[i];
  if (headerLen > fileSize - 8)
    throw fail("header length " + std::to_string(headerLen) +
               " runs past the end of the file (" + std::to_string(fileSize) +
               " bytes)");
  const char *headerBegin = reinterpret_cast<const char *>(bytes + 8);
  const char *headerEnd = headerBegin + headerLen;

  // --- Parse the JSON. ----------------------------------------------------
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(headerBegin, headerEnd);
  } catch (const nlohmann::json::exception &e) {
    throw fail("header is not valid JSON: " + jsonMessage(e));
  }
  if (!header.is_object())
    throw fail(std::string("header is a JSON ") + header.type_name() +
               ", expected an object");

  file.dataSection_ = bytes + 8 + headerLen;
  file.dataSize_ = fileSize - 8 - headerLen;

  // --- Entries. -----------------------------------------------------------
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const nlohmann::json &entry = it.value();

    if (name == "__metadata__") {
      if (!entry.is_object())
        throw fail(std::string("\"__metadata__\" is a JSON ") +
                   entry.type_name() + ", expected an object of strings");
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          throw fail("\"__metadata__\" entry " + quoted(m.key()) +
                     " is a JSON " + m.value().type_name() +
                     ", expected a string");
        file.metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }

    if (!entry.is_object())
      throw tensorFail(name, std::string("entry is a JSON ") +
                                 entry.type_name() + ", expected an object");
    TensorInfo info;
    info.name = name;

    // dtype
    auto dt = entry.find("dtype");
    if (dt == entry.end())
      throw tensorFail(name, "missing \"dtype\"");
    if (!dt->is_string())
      throw tensorFail(name, std::string("\"dtype\" is a JSON ") +
                                 dt->type_name() + ", expected a string");
    const std::string &dtypeStr = dt->get_ref<const std::string &>();
    std::optional<DType> dtype = parseDType(dtypeStr);
    if (!dtype)
      throw tensorFail(name, "unknown dtype \"" + dtypeStr + "\"");
    info.dtype = *dtype;

    // shape
    auto sh = entry.find("shape");
    if (sh == entry.end())
      throw tensorFail(name, "missing \"shape\"");
    if (!sh->is_array())
      throw tensorFail(name, std::string("\"shape\" is a JSON ") +
                                 sh->type_name() +
                                 ", expected an array of integers");
    for (const nlohmann::json &d : *sh) {
      if (!d.is_number_integer())
        throw tensorFail(name, std::string("\"shape\" holds a JSON ") +
                                   d.type_name() + " value, expected integers");
      if (d.is_number_unsigned()) {
        uint64_t u = d.get<uint64_t>();
        if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
          throw tensorFail(name, "dimension " + std::to_string(u) +
                                     " in \"shape\" is too large");
        info.shape.push_back(static_cast<int64_t>(u));
      } else {
        int64_t v = d.get<int64_t>();
        if (v < 0) {
          std::vector<int64_t> dims;
          for (const nlohmann::json &e : *sh)
            dims.push_back(e.is_number_integer() ? e.get<int64_t>() : 0);
          throw tensorFail(name, "negative dimension " + std::to_string(v) +
                                     " in shape " + shapeString(dims));
        }
        info.shape.push_back(v);
      }
    }

    // data_offsets
    auto off = entry.find("data_offsets");
    if (off == entry.end())
      throw tensorFail(name, "missing \"data_offsets\"");
    if (!off->is_array() || off->size() != 2 ||
        !(*off)[0].is_number_integer() || !(*off)[1].is_number_integer())
      throw tensorFail(name, "\"data_offsets\" is " + off->dump() +
                                 ", expected an array of two integers");
    if (!(*off)[0].is_number_unsigned() || !(*off)[1].is_number_unsigned())
      throw tensorFail(name, "\"data_offsets\" " + off->dump() +
                                 " holds a negative offset");
    info.begin = (*off)[0].get<uint64_t>();
    info.end = (*off)[1].get<uint64_t>();
    std::string offStr = "[" + std::to_string(info.begin) + ", " +
                         std::to_string(info.end) + "]";
    if (info.end < info.begin)
      throw tensorFail(name,
                       "data_offsets " + offStr + " end before they begin");
    if (info.end > file.dataSize_)
      throw tensorFail(name, "data_offsets " + offStr +
                                 " run past the end of the data section (" +
                                 std::to_string(file.dataSize_) + " bytes)");

    std::optional<uint64_t> need = checkedBytes(info.shape, info.dtype);
    if (!need)
      throw tensorFail(name, "shape " + shapeString(info.shape) +
                                 " has too many elements");
    if (info.end - info.begin != *need)
      throw tensorFail(name, "data_offsets " + offStr + " hold " +
                                 std::to_string(info.end - info.begin) +
                                 " bytes, but shape " +
                                 shapeString(info.shape) + " of " +
                                 dtypeName(info.dtype) + " needs " +
                                 std::to_string(*need) + " bytes");
    file.tensors_.push_back(std::move(info));
  }

  // --- Order by position; reject overlaps. --------------------------------
  std::sort(file.tensors_.begin(), file.tensors_.end(),
            [](const TensorInfo &a, const TensorInfo &b) {
              if (a.begin != b.begin)
                return a.begin < b.begin;
              if (a.end != b.end)
                return a.end < b.end;
              return a.name < b.name; // names are unique: a total order
            });
  const TensorInfo *last = nullptr; // non-empty tensor reaching furthest
  for (const TensorInfo &t : file.tensors_) {
    if (t.begin == t.end)
      continue; // an empty range overlaps nothing
    if (last && t.begin < last->end)
      throw fail("tensors " + quoted(last->name) + " (bytes [" +
                 std::to_string(last->begin) + ", " +
                 std::to_string(last->end) + ")) and " + quoted(t.name) +
                 " (bytes [" + std::to_string(t.begin) + ", " +
                 std::to_string(t.end) + ")) overlap");
    if (!last || t.end > last->end)
      last = &t;
  }
  for (size_t i = 0; i < file.tensors_.size(); ++i)
    file.index_.emplace(file.tensors_[i].name, i);

  file.mapping_ = std::move(mapping);
  return file;
}

const TensorInfo *SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const uint8_t *SafetensorsFile::data(const TensorInfo &info) const {
  if (info.end < info.begin || info.end > dataSize_)
    throw Error(path_ + ": tensor " + quoted(info.name) + ": bytes [" +
                std::to_string(info.begin) + ", " + std::to_string(info.end) +
                ") are outside the data section (" + std::to_string(dataSize_) +
                " bytes)");
  return dataSection_ + info.begin;
}

//===----------------------------------------------------------------------===//
// Writer
//===----------------------------------------------------------------------===//

void writeSafetensors(const std::string &path,
                      const std::vector<TensorToWrite> &tensors,
                      const std::map<std::string, std::string> &metadata) {
  auto fail = [&](const std::string &msg) -> Error {
    return Error(path + ": " + msg);
  };

  // Validate and lay out everything before touching the disk.
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) {
    nlohmann::ordered_json meta = nlohmann::ordered_json::object();
    for (const auto &[k, v] : metadata)
      meta[k] = v;
    header["__metadata__"] = std::move(meta);
  }
  std::vector<uint64_t> sizes;
  sizes.reserve(tensors.size());
  std::set<std::string> seen;
  uint64_t offset = 0;
  for (const TensorToWrite &t : tensors) {
    if (t.name == "__metadata__")
      throw fail("a tensor cannot be called \"__metadata__\"");
    if (!seen.insert(t.name).second)
      throw fail("tensor " + quoted(t.name) + " is given twice");
    if (!lookup(t.dtype))
      throw fail("tensor " + quoted(t.name) + " has an invalid dtype");
    for (int64_t d : t.shape)
      if (d < 0)
        throw fail("tensor " + quoted(t.name) + ": negative dimension " +
                   std::to_string(d) + " in shape " + shapeString(t.shape));
    std::optional<uint64_t> bytes = checkedBytes(t.shape, t.dtype);
    if (!bytes || offset > std::numeric_limits<uint64_t>::max() - *bytes)
      throw fail("tensor " + quoted(t.name) + ": shape " +
                 shapeString(t.shape) + " has too many elements");
    if (*bytes > 0 && !t.data)
      throw fail("tensor " + quoted(t.name) + " has no data pointer");
    nlohmann::ordered_json entry = nlohmann::ordered_json::object();
    entry["dtype"] = dtypeName(t.dtype);
    entry["shape"] = t.shape;
    entry["data_offsets"] = {offset, offset + *bytes};
    header[t.name] = std::move(entry);
    sizes.push_back(*bytes);
    offset += *bytes;
  }

  std::string json;
  try {
    json = header.dump();
  } catch (const nlohmann::json::exception &e) {
    // dump() throws on invalid UTF-8 in names or metadata.
    throw fail("cannot encode the header: " + jsonMessage(e));
  }
  json.append((8 - json.size() % 8) % 8, ' ');
  uint8_t lenBytes[8];
  uint64_t len = json.size();
  for (int i = 0; i < 8; ++i)
    lenBytes[i] = static_cast<uint8_t>(len >> (8 * i));

  detail::AtomicFile out(path);
  out.write(lenBytes, sizeof(lenBytes));
  out.write(json.data(), json.size());
  for (size_t i = 0; i < tensors.size(); ++i)
    if (sizes[i] > 0) {
      if (sizes[i] > std::numeric_limits<size_t>::max())
        throw fail("tensor " + quoted(tensors[i].name) + " is too large");
      out.write(tensors[i].data, static_cast<size_t>(sizes[i]));
    }
  out.commit();
}

} // namespace mm
