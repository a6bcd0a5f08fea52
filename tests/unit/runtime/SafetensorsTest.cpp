//===- SafetensorsTest.cpp - tests for mm/Safetensors.h -------------------===//

#include "mm/Safetensors.h"
#include "mm/Error.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>

namespace {

std::string tempPath(const std::string &name) {
  std::string dir = ::testing::TempDir();
  if (!dir.empty() && dir.back() != '/')
    dir += '/';
  return dir + "mm_st_test_" + std::to_string(::getpid()) + "_" + name;
}

void writeBytes(const std::string &path, const std::string &bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), std::streamsize(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string readBytes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(f),
                     std::istreambuf_iterator<char>());
}

bool exists(const std::string &path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::string le64(uint64_t v) {
  std::string s;
  for (int i = 0; i < 8; ++i)
    s.push_back(char(uint8_t(v >> (8 * i))));
  return s;
}

/// A safetensors file assembled by hand: length prefix (the real one unless
/// LENOVERRIDE is given), header text, data bytes.
std::string rawFile(const std::string &header, const std::string &data,
                    std::optional<uint64_t> lenOverride = std::nullopt) {
  return le64(lenOverride ? *lenOverride : header.size()) + header + data;
}

/// Writes BYTES to a fresh file called NAME, expects open() to throw mm::Error
/// whose message mentions NAME and every string in NEEDLES.
void expectOpenError(const std::string &name, const std::string &bytes,
                     std::initializer_list<std::string> needles) {
  std::string path = tempPath(name);
  writeBytes(path, bytes);
  try {
    mm::SafetensorsFile::open(path);
    ADD_FAILURE() << name << ": expected mm::Error";
  } catch (const mm::Error &e) {
    std::string msg = e.what();
    EXPECT_NE(msg.find(name), std::string::npos)
        << "message '" << msg << "' does not name the file";
    for (const std::string &n : needles)
      EXPECT_NE(msg.find(n), std::string::npos)
          << "message '" << msg << "' does not mention '" << n << "'";
  }
  std::remove(path.c_str());
}

template <typename F>
void expectError(F &&f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected mm::Error";
  } catch (const mm::Error &e) {
    std::string msg = e.what();
    for (const std::string &n : needles)
      EXPECT_NE(msg.find(n), std::string::npos)
          << "message '" << msg << "' does not mention '" << n << "'";
  }
}

} // namespace

//===----------------------------------------------------------------------===//
// DType helpers
//===----------------------------------------------------------------------===//

TEST(Safetensors, DTypeNamesAndSizes) {
  struct {
    mm::DType dt;
    const char *name;
    size_t size;
  } cases[] = {{mm::DType::F32, "F32", 4}, {mm::DType::F64, "F64", 8},
               {mm::DType::F16, "F16", 2}, {mm::DType::BF16, "BF16", 2},
               {mm::DType::I64, "I64", 8}, {mm::DType::I32, "I32", 4},
               {mm::DType::I16, "I16", 2}, {mm::DType::I8, "I8", 1},
               {mm::DType::U8, "U8", 1},   {mm::DType::BOOL, "BOOL", 1}};
  for (const auto &c : cases) {
    EXPECT_STREQ(mm::dtypeName(c.dt), c.name);
    EXPECT_EQ(mm::dtypeSize(c.dt), c.size);
    ASSERT_TRUE(mm::parseDType(c.name).has_value());
    EXPECT_EQ(*mm::parseDType(c.name), c.dt);
  }
  EXPECT_FALSE(mm::parseDType("f32").has_value());
  EXPECT_FALSE(mm::parseDType("F8_E4M3").has_value());
  EXPECT_FALSE(mm::parseDType("").has_value());
}

TEST(Safetensors, NumEl) {
  mm::TensorInfo t;
  t.shape = {};
  EXPECT_EQ(t.numel(), 1);
  t.shape = {2, 3, 4};
  EXPECT_EQ(t.numel(), 24);
  t.shape = {5, 0, 7};
  EXPECT_EQ(t.numel(), 0);
}

//===----------------------------------------------------------------------===//
// Round trip
//===----------------------------------------------------------------------===//

TEST(Safetensors, WriteReadRoundTrip) {
  std::string path = tempPath("roundtrip.safetensors");
  std::vector<float> a = {1.5f, -2.0f, 3.25f, 0.0f, 1e-3f, 42.0f};
  int64_t b = -123456789012345;
  std::vector<uint16_t> c = {0x3f80, 0xbf80, 0x0000}; // BF16 bits
  std::vector<uint8_t> flags = {1, 0, 1};
  std::vector<mm::TensorToWrite> tensors = {
      {"model.layers.0.weight", mm::DType::F32, {2, 3}, a.data()},
      {"scalar", mm::DType::I64, {}, &b},
      {"empty", mm::DType::F16, {0, 4}, nullptr},
      {"bf", mm::DType::BF16, {3}, c.data()},
      {"flags", mm::DType::BOOL, {3, 1}, flags.data()},
  };
  std::map<std::string, std::string> meta = {{"format", "pt"},
                                             {"note", "h\u00e9llo \"q\""}};
  mm::writeSafetensors(path, tensors, meta);
  EXPECT_FALSE(exists(path + ".tmp." + std::to_string(::getpid())));

  // Raw layout: 8-byte length, header padded with spaces to a multiple of 8,
  // tensors contiguous in the given order.
  std::string raw = readBytes(path);
  ASSERT_GE(raw.size(), 8u);
  uint64_t len = 0;
  for (int i = 7; i >= 0; --i)
    len = (len << 8) | uint8_t(raw[i]);
  EXPECT_EQ(len % 8, 0u);
  ASSERT_LE(8 + len, raw.size());
  EXPECT_EQ(raw.size() - 8 - len, 24u + 8 + 0 + 6 + 3);

  mm::SafetensorsFile f = mm::SafetensorsFile::open(path);
  EXPECT_EQ(f.path(), path);
  EXPECT_EQ(f.metadata(), meta);
  ASSERT_EQ(f.tensors().size(), tensors.size());
  // tensors() is in data-section order, which is the order written (the
  // empty tensor sits at the same offset as the next one; it sorts first).
  std::vector<std::string> order;
  for (const mm::TensorInfo &t : f.tensors())
    order.push_back(t.name);
  EXPECT_EQ(order, (std::vector<std::string>{"model.layers.0.weight", "scalar",
                                             "empty", "bf", "flags"}));
  uint64_t expectBegin = 0;
  for (const mm::TensorInfo &t : f.tensors()) {
    EXPECT_EQ(t.begin, expectBegin) << t.name;
    expectBegin = t.end;
  }

  const mm::TensorInfo *ta = f.find("model.layers.0.weight");
  ASSERT_NE(ta, nullptr);
  EXPECT_EQ(ta->dtype, mm::DType::F32);
  EXPECT_EQ(ta->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(ta->numel(), 6);
  EXPECT_EQ(std::memcmp(f.data(*ta), a.data(), 24), 0);

  const mm::TensorInfo *tb = f.find("scalar");
  ASSERT_NE(tb, nullptr);
  EXPECT_TRUE(tb->shape.empty());
  EXPECT_EQ(tb->numel(), 1);
  int64_t bBack;
  std::memcpy(&bBack, f.data(*tb), 8);
  EXPECT_EQ(bBack, b);

  const mm::TensorInfo *te = f.find("empty");
  ASSERT_NE(te, nullptr);
  EXPECT_EQ(te->numel(), 0);
  EXPECT_EQ(te->begin, te->end);

  const mm::TensorInfo *tc = f.find("bf");
  ASSERT_NE(tc, nullptr);
  EXPECT_EQ(std::memcmp(f.data(*tc), c.data(), 6), 0);
  const mm::TensorInfo *tf = f.find("flags");
  ASSERT_NE(tf, nullptr);
  EXPECT_EQ(std::memcmp(f.data(*tf), flags.data(), 3), 0);

  EXPECT_EQ(f.find("missing"), nullptr);

  // Copies share the mapping; data stays valid after the original is gone.
  std::optional<mm::SafetensorsFile> copy;
  {
    mm::SafetensorsFile g = mm::SafetensorsFile::open(path);
    copy = g;
  }
  EXPECT_EQ(std::memcmp(copy->data(*copy->find("bf")), c.data(), 6), 0);

  // data() refuses offsets outside the data section.
  mm::TensorInfo bogus = *ta;
  bogus.end = 1u << 20;
  expectError([&] { f.data(bogus); }, {"roundtrip.safetensors"});
  std::remove(path.c_str());
}

TEST(Safetensors, EmptyFileAndNoMetadata) {
  std::string path = tempPath("nothing.safetensors");
  mm::writeSafetensors(path, {});
  mm::SafetensorsFile f = mm::SafetensorsFile::open(path);
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_TRUE(f.metadata().empty());
  std::remove(path.c_str());
}

TEST(Safetensors, ReadsHandWrittenFileWithUnpaddedHeader) {
  // Another writer's file: no padding, tensors listed out of order.
  std::string header =
      R"({"b":{"dtype":"U8","shape":[2],"data_offsets":[4,6]},)"
      R"("a":{"dtype":"I16","shape":[2],"data_offsets":[0,4]}})";
  std::string path = tempPath("handmade.safetensors");
  writeBytes(path, rawFile(header, std::string("\x01\x00\x02\x00\x07\x08", 6)));
  mm::SafetensorsFile f = mm::SafetensorsFile::open(path);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[0].name, "a");
  EXPECT_EQ(f.tensors()[1].name, "b");
  EXPECT_EQ(f.data(*f.find("b"))[1], 8);
  std::remove(path.c_str());
}

//===----------------------------------------------------------------------===//
// Atomic writes
//===----------------------------------------------------------------------===//

namespace {

void writeV1(const std::string &path) {
  float v = 1.0f;
  mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &v}}, {{"ver", "1"}});
}

void expectV1(const std::string &path) {
  mm::SafetensorsFile f = mm::SafetensorsFile::open(path);
  EXPECT_EQ(f.metadata().at("ver"), "1");
  ASSERT_NE(f.find("v"), nullptr);
  float v;
  std::memcpy(&v, f.data(*f.find("v")), 4);
  EXPECT_EQ(v, 1.0f);
}

} // namespace

TEST(Safetensors, FailedWriteLeavesOldFileIntact) {
  std::string path = tempPath("atomic.safetensors");
  std::string tmp = path + ".tmp." + std::to_string(::getpid());
  writeV1(path);
  expectV1(path);

  // The temporary file cannot be created (a directory sits in its place).
  ASSERT_EQ(::mkdir(tmp.c_str(), 0755), 0);
  float w = 2.0f;
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &w}},
                             {{"ver", "2"}});
      },
      {"atomic.safetensors"});
  ::rmdir(tmp.c_str());
  expectV1(path);

  // Invalid input is rejected before anything touches the disk.
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {-1}, &w}});
      },
      {"atomic.safetensors", "negative dimension -1"});
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &w},
                                    {"v", mm::DType::F32, {1}, &w}});
      },
      {"atomic.safetensors", "'v'", "twice"});
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {2}, nullptr}});
      },
      {"atomic.safetensors", "no data"});
  expectError(
      [&] {
        mm::writeSafetensors(path,
                             {{"__metadata__", mm::DType::U8, {0}, nullptr}});
      },
      {"atomic.safetensors", "__metadata__"});
  expectV1(path);
  EXPECT_FALSE(exists(tmp));

  // A successful write replaces it.
  mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &w}}, {{"ver", "2"}});
  EXPECT_EQ(mm::SafetensorsFile::open(path).metadata().at("ver"), "2");
  std::remove(path.c_str());
}

TEST(Safetensors, WriteIntoUnwritableDirectoryLeavesOldFile) {
  if (::geteuid() == 0)
    GTEST_SKIP() << "running as root: directory permissions are not enforced";
  std::string dir = tempPath("ro_dir");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::string path = dir + "/model.safetensors";
  writeV1(path);
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  float w = 2.0f;
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &w}});
      },
      {"model.safetensors"});
  ::chmod(dir.c_str(), 0755);
  expectV1(path);
  std::remove(path.c_str());
  ::rmdir(dir.c_str());
}

TEST(Safetensors, WriteIntoMissingDirectoryNamesPath) {
  std::string path = tempPath("no_such_dir") + "/x.safetensors";
  float w = 2.0f;
  expectError(
      [&] {
        mm::writeSafetensors(path, {{"v", mm::DType::F32, {1}, &w}});
      },
      {"x.safetensors", "No such file"});
}

//===----------------------------------------------------------------------===//
// Corrupt files
//===----------------------------------------------------------------------===//

TEST(Safetensors, OpenMissingFile) {
  std::string path = tempPath("absent.safetensors");
  expectError([&] { mm::SafetensorsFile::open(path); },
              {"absent.safetensors", "No such file"});
}

TEST(Safetensors, OpenDirectory) {
  std::string path = tempPath("adir.safetensors");
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0);
  expectError([&] { mm::SafetensorsFile::open(path); },
              {"adir.safetensors", "not a regular file"});
  ::rmdir(path.c_str());
}

TEST(Safetensors, TooShort) {
  expectOpenError("short0.safetensors", "", {"0 bytes", "too short"});
  expectOpenError("short5.safetensors", std::string("\x02\0\0\0\0", 5),
                  {"5 bytes", "too short"});
}

TEST(Safetensors, HeaderLengthPastEnd) {
  expectOpenError("hugelen.safetensors", rawFile("{}", "", 999999),
                  {"header length 999999", "past the end", "(10 bytes)"});
  expectOpenError("maxlen.safetensors", rawFile("{}", "", ~uint64_t(0)),
                  {"header length 18446744073709551615", "past the end"});
}

TEST(Safetensors, HeaderNotJson) {
  expectOpenError("notjson.safetensors", rawFile("{\"a\": ", ""),
                  {"not valid JSON"});
  expectOpenError("emptyheader.safetensors", rawFile("", ""),
                  {"not valid JSON"});
  expectOpenError("binheader.safetensors",
                  rawFile(std::string("\xff\xfe\0\x01", 4), ""),
                  {"not valid JSON"});
}

TEST(Safetensors, HeaderNotObject) {
  expectOpenError("array.safetensors", rawFile("[1, 2]", ""),
                  {"array", "expected an object"});
  expectOpenError("number.safetensors", rawFile("42      ", ""),
                  {"expected an object"});
}

TEST(Safetensors, EntryNotObject) {
  expectOpenError("entrynum.safetensors", rawFile(R"({"w": 5})", ""),
                  {"tensor 'w'", "expected an object"});
}

TEST(Safetensors, MissingFields) {
  expectOpenError("nodtype.safetensors",
                  rawFile(R"({"w":{"shape":[1],"data_offsets":[0,4]}})",
                          std::string(4, '\0')),
                  {"tensor 'w'", "missing \"dtype\""});
  expectOpenError("noshape.safetensors",
                  rawFile(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})",
                          std::string(4, '\0')),
                  {"tensor 'w'", "missing \"shape\""});
  expectOpenError(
      "nooffsets.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[1]}})", std::string(4, '\0')),
      {"tensor 'w'", "missing \"data_offsets\""});
}

TEST(Safetensors, WrongJsonTypes) {
  std::string d4(4, '\0');
  expectOpenError(
      "dtypenum.safetensors",
      rawFile(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})", d4),
      {"tensor 'w'", "\"dtype\"", "expected a string"});
  expectOpenError(
      "shapestr.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":"1","data_offsets":[0,4]}})", d4),
      {"tensor 'w'", "\"shape\"", "expected an array"});
  expectOpenError(
      "shapefloat.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})",
              d4),
      {"tensor 'w'", "\"shape\"", "expected integers"});
  expectOpenError(
      "offsone.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4]}})", d4),
      {"tensor 'w'", "\"data_offsets\"", "two integers"});
  expectOpenError(
      "offsstr.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":"0,4"}})", d4),
      {"tensor 'w'", "\"data_offsets\"", "two integers"});
  expectOpenError(
      "offsneg.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", d4),
      {"tensor 'w'", "negative offset"});
}

TEST(Safetensors, UnknownDType) {
  expectOpenError(
      "fp8.safetensors",
      rawFile(R"({"w":{"dtype":"F8_E4M3","shape":[1],"data_offsets":[0,1]}})",
              std::string(1, '\0')),
      {"tensor 'w'", "unknown dtype \"F8_E4M3\""});
}

TEST(Safetensors, NegativeDim) {
  expectOpenError(
      "negdim.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[2,-3],"data_offsets":[0,0]}})",
              ""),
      {"tensor 'w'", "negative dimension -3", "[2, -3]"});
}

TEST(Safetensors, HugeShapeOverflows) {
  expectOpenError(
      "overflow.safetensors",
      rawFile(R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],)"
              R"("data_offsets":[0,8]}})",
              std::string(8, '\0')),
      {"tensor 'w'", "too many elements"});
}

TEST(Safetensors, EndBeforeBegin) {
  expectOpenError(
      "backwards.safetensors",
      rawFile(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[4,0]}})",
              std::string(8, '\0')),
      {"tensor 'w'", "[4, 0]", "end before"});
}

TEST(Safetensors, OffsetsPastDataSection) {
  expectOpenError(
      "pastend.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
              std::string(12, '\0')),
      {"tensor 'w'", "[0, 16]", "past the end of the data section (12 bytes)"});
}

TEST(Safetensors, SizeMismatch) {
  expectOpenError(
      "mismatch.safetensors",
      rawFile(R"({"w":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})",
              std::string(16, '\0')),
      {"tensor 'w'", "hold 12 bytes", "[2, 2]", "F32", "needs 16 bytes"});
}

TEST(Safetensors, OverlappingTensors) {
  expectOpenError(
      "overlap.safetensors",
      rawFile(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
              R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
              std::string(12, '\0')),
      {"'a'", "'b'", "overlap"});
  // A tensor nested inside a bigger one.
  expectOpenError(
      "nested.safetensors",
      rawFile(R"({"big":{"dtype":"U8","shape":[10],"data_offsets":[0,10]},)"
              R"("small":{"dtype":"U8","shape":[2],"data_offsets":[8,10]},)"
              R"("tiny":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}})",
              std::string(10, '\0')),
      {"'big'", "overlap"});
  // Identical ranges.
  expectOpenError(
      "same.safetensors",
      rawFile(R"({"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},)"
              R"("y":{"dtype":"I8","shape":[2],"data_offsets":[0,2]}})",
              std::string(2, '\0')),
      {"'x'", "'y'", "overlap"});
}

TEST(Safetensors, BadMetadata) {
  expectOpenError("metaarr.safetensors",
                  rawFile(R"({"__metadata__":["a"]})", ""),
                  {"\"__metadata__\"", "expected an object"});
  expectOpenError("metanum.safetensors",
                  rawFile(R"({"__metadata__":{"format":"pt","n":3}})", ""),
                  {"\"__metadata__\"", "'n'", "expected a string"});
}

TEST(Safetensors, EveryTruncationOfAValidFileIsRejectedCleanly) {
  std::string path = tempPath("full.safetensors");
  std::vector<float> a(7, 1.0f);
  mm::writeSafetensors(path, {{"a", mm::DType::F32, {7}, a.data()}},
                       {{"k", "v"}});
  std::string full = readBytes(path);
  for (size_t n = 0; n < full.size(); ++n) {
    std::string cut = tempPath("cut.safetensors");
    writeBytes(cut, full.substr(0, n));
    EXPECT_THROW(mm::SafetensorsFile::open(cut), mm::Error) << n << " bytes";
    std::remove(cut.c_str());
  }
  std::remove(path.c_str());
}
