//===- DataTest.cpp - tests for mm/Data.h ---------------------------------===//
//
// Chat templates and label masks on hand-written records, checked id by id
// with the byte-level tokenizer (byte b -> id 5 + b; <s> 1, </s> 2,
// <pad> 3, <image> 4), truncation, padding, and every load error.
//
//===----------------------------------------------------------------------===//
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Llava.h"

#include "TrainTestUtil.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <functional>
#include <sstream>

using namespace mmtest;

namespace {

const int32_t IMG = 4, BOS = 1, EOS = 2, PAD = 3, IGN = -100;

mm::SampleFormat format(int64_t maxSequence = 400, int64_t imagePositions = 4) {
  mm::SampleFormat f;
  f.shape.imageSize = 16;
  f.shape.imagePositions = imagePositions;
  f.shape.maxSequence = maxSequence;
  f.shape.vocab = 272;
  f.shape.imageToken = IMG;
  f.shape.padToken = PAD;
  f.bos = BOS;
  return f;
}

const mm::Tokenizer &tokenizer() {
  static mm::Tokenizer t = mm::Tokenizer::fromFile(byteTokenizerPath());
  return t;
}

mm::ConversationRecord parseOne(const std::string &json) {
  return mm::parseConversations("[" + json + "]", "data.json").at(0);
}

/// targets[t] = ids[t + 1] where position t + 1 is the assistant's.
std::vector<int32_t> expectedTargets(const std::vector<int32_t> &ids, const std::vector<bool> &assistant) {
  std::vector<int32_t> t(ids.size(), IGN);
  for (size_t i = 0; i + 1 < ids.size(); ++i)
    if (assistant[i + 1]) t[i] = ids[i + 1];
  return t;
}

struct Builder {
  std::vector<int32_t> ids;
  std::vector<bool> assistant;
  Builder &add(const std::vector<int32_t> &piece, bool a) {
    append(ids, piece);
    assistant.insert(assistant.end(), piece.size(), a);
    return *this;
  }
};

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const mm::Error &e) {
    return e.what();
  }
  return "(no error)";
}

} // namespace

TEST(Data, PlainTemplateIdsAndTargets) {
  mm::ConversationRecord r = parseOne(R"({"id": "c1", "image": "x.png", "conversations": [
      {"from": "human", "value": "<image>\nignored for captions"}, {"from": "gpt", "value": "a cat"}]})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Plain, tokenizer(), format(), "/imgs");
  Builder b;
  b.add({BOS}, false).add({IMG, IMG, IMG, IMG}, false).add(bytes("a cat"), true).add(bytes("\n"), true);
  EXPECT_EQ(s.inputIds, b.ids);
  EXPECT_EQ(s.targets, expectedTargets(b.ids, b.assistant));
  // Spelled out: the last image position predicts 'a', "\n" predicts nothing.
  std::vector<int32_t> t = {IGN, IGN, IGN, IGN, 5 + 'a', 5 + ' ', 5 + 'c', 5 + 'a', 5 + 't', 5 + '\n', IGN};
  EXPECT_EQ(s.targets, t);
  EXPECT_EQ(s.targetCount(), 6);
  EXPECT_EQ(s.id, "c1");
  EXPECT_EQ(*s.imagePath, "/imgs/x.png");
  EXPECT_FALSE(s.truncated());
}

TEST(Data, Blip2TemplateIdsAndTargets) {
  // COM: BLIP-2's query positions come first, then BOS (HF's processor); loss on the caption and "\n".
  mm::ConversationRecord r = parseOne(R"({"id": "b1", "image": "x.png", "caption": "A red circle."})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Blip2, tokenizer(), format(), "/imgs");
  Builder b;
  b.add({IMG, IMG, IMG, IMG}, false).add({BOS}, false).add(bytes("A red circle."), true).add(bytes("\n"), true);
  EXPECT_EQ(s.inputIds, b.ids);
  EXPECT_EQ(s.targets, expectedTargets(b.ids, b.assistant));
  // Spelled out: the image positions predict nothing (not even the BOS), the BOS predicts 'A',
  // the last caption byte predicts "\n", and "\n" predicts nothing.
  std::vector<int32_t> t = {IGN, IGN, IGN, IGN};
  append(t, bytes("A red circle.\n"));
  t.push_back(IGN);
  EXPECT_EQ(s.targets, t);
  EXPECT_EQ(s.targetCount(), 14);
  EXPECT_EQ(std::count(s.targets.begin(), s.targets.end(), BOS), 0);
  EXPECT_EQ(std::count(s.targets.begin(), s.targets.end(), IMG), 0);
  EXPECT_EQ(s.id, "b1");
  EXPECT_EQ(*s.imagePath, "/imgs/x.png");
  // The same pair written as a conversation gives the same sample (the human turn's text is not used).
  mm::ConversationRecord c = parseOne(R"({"id": "b1", "image": "x.png", "conversations": [
      {"from": "human", "value": "<image>\nignored for captions"}, {"from": "gpt", "value": "A red circle."}]})");
  mm::TrainingSample sc = mm::buildSample(c, mm::ChatTemplate::Blip2, tokenizer(), format(), "/imgs");
  EXPECT_EQ(sc.inputIds, s.inputIds);
  EXPECT_EQ(sc.targets, s.targets);
}

TEST(Data, QFormerTextIdsTargetsAndTruncation) {
  // COM: BLIP-2 stage 1's text: [CLS] caption "\n", no image positions; every text position
  // COM: predicts the next one (ITG; the entry swaps [CLS] for [DEC]).
  mm::SampleFormat f = format();
  f.textLength = 8;
  f.cls = BOS;
  f.queries = 4;
  mm::ConversationRecord r = parseOne(R"({"id": "q1", "image": "x.png", "caption": "A cat"})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::QFormerText, tokenizer(), f, "/imgs");
  std::vector<int32_t> ids = {BOS};
  append(ids, bytes("A cat\n"));
  EXPECT_EQ(s.inputIds, ids);
  std::vector<int32_t> t = bytes("A cat\n");
  t.push_back(IGN);
  EXPECT_EQ(s.targets, t);
  EXPECT_FALSE(s.truncated());
  EXPECT_EQ(mm::chatTemplateForData("image_text"), mm::ChatTemplate::QFormerText);
  // COM: A caption longer than the Q-Former's text length: truncated, with a warning naming the record.
  mm::ConversationRecord longer = parseOne(R"({"id": "q2", "image": "x.png", "caption": "A red circle."})");
  std::ostringstream warnings;
  mm::TrainingSample l = mm::buildSample(longer, mm::ChatTemplate::QFormerText, tokenizer(), f, "/imgs", &warnings);
  EXPECT_TRUE(l.truncated());
  EXPECT_EQ(l.inputIds.size(), 8u);
  EXPECT_EQ(l.targets.back(), IGN);
  EXPECT_NE(warnings.str().find("record 0 (id 'q2'): caption of 14 tokens (with the closing newline) is longer than "
                                "the Q-Former's text length 8"),
            std::string::npos)
      << warnings.str();
  // COM: A model without a Q-Former text side cannot take image-text data.
  std::string e = errorOf([&] { mm::buildSample(r, mm::ChatTemplate::QFormerText, tokenizer(), format(), "/imgs"); });
  EXPECT_NE(e.find("needs a model with a Q-Former text side"), std::string::npos) << e;
}

TEST(Data, ImageCaptionRecords) {
  // COM: {"image", "caption"} (BLIP-2's data) parses into a human turn holding the image and a gpt turn.
  mm::ConversationRecord r = parseOne(R"({"image": "x.png", "caption": "A red circle."})");
  EXPECT_EQ(r.id, "0");
  ASSERT_TRUE(r.image);
  EXPECT_EQ(*r.image, "x.png");
  ASSERT_EQ(r.turns.size(), 2u);
  EXPECT_EQ(r.turns[0].from, "human");
  EXPECT_EQ(r.turns[0].value, "<image>");
  EXPECT_EQ(r.turns[1].from, "gpt");
  EXPECT_EQ(r.turns[1].value, "A red circle.");
  mm::checkRecord(r, mm::ChatTemplate::Blip2);
  mm::checkRecord(r, mm::ChatTemplate::Plain);
  // Caption data still needs its image.
  std::string e = errorOf([] { mm::checkRecord(parseOne(R"({"id": "n", "caption": "A cat."})"), mm::ChatTemplate::Blip2); });
  EXPECT_NE(e.find("data.json: record 0 (id 'n'): caption data needs an 'image'"), std::string::npos) << e;
  // An empty or non-string caption names the record.
  e = errorOf([] { mm::parseConversations(R"([{"id": "e", "image": "x.png", "caption": ""}])", "c.json"); });
  EXPECT_NE(e.find("c.json: record 0 (id 'e'): 'caption' is empty"), std::string::npos) << e;
  e = errorOf([] { mm::parseConversations(R"([{"image": "a.png", "caption": "ok"}, {"image": "b.png", "caption": 3}])",
                                          "c.json"); });
  EXPECT_NE(e.find("c.json: record 1 (id '1'): 'caption' must be a string"), std::string::npos) << e;
  // Neither conversations nor a caption: the error names both.
  e = errorOf([] { mm::parseConversations(R"([{"id": "x", "image": "x.png"}])", "c.json"); });
  EXPECT_NE(e.find("c.json: record 0 (id 'x'): missing 'conversations' (or 'caption')"), std::string::npos) << e;
}

TEST(Data, VicunaOneTurnWithImage) {
  mm::ConversationRecord r = parseOne(R"({"id": 7, "image": "a/b.jpg", "conversations": [
      {"from": "human", "value": "<image>\nHi?"}, {"from": "gpt", "value": "Yo."}]})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::VicunaV1, tokenizer(), format(), "imgs/");
  Builder b;
  b.add({BOS}, false)
      .add(bytes(std::string(mm::kVicunaSystem) + " USER: "), false)
      .add({IMG, IMG, IMG, IMG}, false)
      .add(bytes("\nHi? ASSISTANT:"), false)
      .add(bytes(" Yo."), true)
      .add({EOS}, true);
  EXPECT_EQ(s.inputIds, b.ids);
  EXPECT_EQ(s.targets, expectedTargets(b.ids, b.assistant));
  EXPECT_EQ(s.targetCount(), 5); // " Yo." and </s>
  EXPECT_EQ(s.id, "7");
  EXPECT_EQ(*s.imagePath, "imgs/a/b.jpg");
  // The system prompt is LLaVA's vicuna_v1 one.
  EXPECT_EQ(std::string(mm::kVicunaSystem),
            "A chat between a curious human and an artificial intelligence assistant. The assistant gives "
            "helpful, detailed, and polite answers to the human's questions.");
}

TEST(Data, VicunaTwoTurnsTextOnlyMasksEveryHumanTurn) {
  mm::ConversationRecord r = parseOne(R"({"id": "t", "conversations": [
      {"from": "human", "value": "A"}, {"from": "gpt", "value": "B"},
      {"from": "human", "value": "C"}, {"from": "gpt", "value": "D"}]})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::VicunaV1, tokenizer(), format(), "");
  Builder b;
  b.add({BOS}, false)
      .add(bytes(std::string(mm::kVicunaSystem) + " USER: A ASSISTANT:"), false)
      .add(bytes(" B"), true)
      .add({EOS}, true)
      .add(bytes("USER: C ASSISTANT:"), false)
      .add(bytes(" D"), true)
      .add({EOS}, true);
  EXPECT_EQ(s.inputIds, b.ids);
  EXPECT_EQ(s.targets, expectedTargets(b.ids, b.assistant));
  EXPECT_EQ(s.targetCount(), 6);
  EXPECT_FALSE(s.imagePath);
  // The </s> of turn 1 predicts nothing ("USER" is not the assistant's).
  size_t firstEos = std::find(s.inputIds.begin(), s.inputIds.end(), EOS) - s.inputIds.begin();
  EXPECT_EQ(s.targets[firstEos], IGN);
  EXPECT_EQ(s.targets[firstEos - 1], EOS);
}

TEST(Data, ImageMarkerInTheMiddleOfALaterTurn) {
  mm::ConversationRecord r = parseOne(R"({"id": "m", "image": "i.png", "conversations": [
      {"from": "human", "value": "Hello"}, {"from": "gpt", "value": "Hi"},
      {"from": "human", "value": "Look: <image> ok?"}, {"from": "gpt", "value": "Nice"}]})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::VicunaV1, tokenizer(), format(), "d");
  Builder b;
  b.add({BOS}, false)
      .add(bytes(std::string(mm::kVicunaSystem) + " USER: Hello ASSISTANT:"), false)
      .add(bytes(" Hi"), true)
      .add({EOS}, true)
      .add(bytes("USER: Look: "), false)
      .add({IMG, IMG, IMG, IMG}, false)
      .add(bytes(" ok? ASSISTANT:"), false)
      .add(bytes(" Nice"), true)
      .add({EOS}, true);
  EXPECT_EQ(s.inputIds, b.ids);
  EXPECT_EQ(s.targets, expectedTargets(b.ids, b.assistant));
}

TEST(Data, TruncationWarnsOnceAndMasksTheLastPosition) {
  mm::ConversationRecord r = parseOne(R"({"id": "long1", "image": "x.png", "conversations": [
      {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "abcdefghijklmnopqrstuvwxyz"}]})");
  std::ostringstream warn;
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Plain, tokenizer(), format(12), "", &warn);
  ASSERT_EQ(s.inputIds.size(), 12u);
  EXPECT_EQ(s.fullLength, 1 + 4 + 26 + 1);
  EXPECT_TRUE(s.truncated());
  std::vector<int32_t> ids = {BOS, IMG, IMG, IMG, IMG};
  append(ids, bytes("abcdefg"));
  EXPECT_EQ(s.inputIds, ids);
  std::vector<int32_t> t = {IGN, IGN, IGN, IGN};
  append(t, bytes("abcdefg"));
  t.push_back(IGN); // the cut-off 'h' is not predicted
  EXPECT_EQ(s.targets, t);
  EXPECT_NE(warn.str().find("data.json: record 0 (id 'long1')"), std::string::npos) << warn.str();
  EXPECT_NE(warn.str().find("truncated to the compiled length 12"), std::string::npos) << warn.str();
  // Without a warnings stream nothing is written (the trainer warns once per sample).
  mm::TrainingSample again = mm::buildSample(r, mm::ChatTemplate::Plain, tokenizer(), format(12), "", nullptr);
  EXPECT_EQ(again.inputIds, s.inputIds);
}

TEST(Data, TruncationIntoTheImageIsAnError) {
  mm::ConversationRecord r = parseOne(R"({"id": "img", "image": "x.png", "conversations": [
      {"from": "human", "value": "Some words first <image>"}, {"from": "gpt", "value": "x"}]})");
  std::string e = errorOf(
      [&] { mm::buildSample(r, mm::ChatTemplate::VicunaV1, tokenizer(), format(200, 64), ""); });
  EXPECT_NE(e.find("data.json: record 0 (id 'img')"), std::string::npos) << e;
  EXPECT_NE(e.find("cut into the image positions"), std::string::npos) << e;
}

/// Record 0 (id 'p') of data.json: image p.png (written into DIR) and the
/// answer "ok", as the plain template builds it for format F.
static mm::TrainingSample imageSample(const TempDir &dir, const mm::SampleFormat &f) {
  writePng(dir / "p.png", 20, 18);
  mm::ConversationRecord r = parseOne(R"({"id": "p", "image": "p.png", "conversations": [
      {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "ok"}]})");
  return mm::buildSample(r, mm::ChatTemplate::Plain, tokenizer(), f, dir.path());
}

/// A one-sample train entry NAME of 16 positions whose image argument is FIRST.
static mm::EntrySpec trainEntry(const std::string &name, mm::TensorSpec first) {
  mm::EntrySpec e;
  e.name = name;
  e.args = {std::move(first), {"input_ids", {1, 16}, mm::ElemType::I32}, {"targets", {1, 16}, mm::ElemType::I32},
            {"length", {}, mm::ElemType::I32}};
  return e;
}

TEST(Data, TrainArgsPadAndCarryTheImage) {
  TempDir dir("data_args");
  mm::SampleFormat f = format(16);
  mm::TrainingSample s = imageSample(dir, f);
  mm::EntrySpec e = trainEntry("train_stage1", {"pixel_values", {1, 3, 16, 16}, mm::ElemType::F32});
  std::vector<mm::HostTensor> a = mm::trainArgs(e, s, f);
  ASSERT_EQ(a.size(), 4u);
  std::vector<float> pixels = mm::llavaPixelValues(f.shape, dir / "p.png");
  ASSERT_EQ(a[0].bytes.size(), pixels.size() * 4);
  EXPECT_EQ(std::memcmp(a[0].bytes.data(), pixels.data(), a[0].bytes.size()), 0);
  const int32_t *ids = a[1].as<int32_t>(), *tg = a[2].as<int32_t>();
  ASSERT_EQ(s.inputIds.size(), 8u); // BOS, 4 image, 'o', 'k', '\n'
  for (int i = 0; i < 16; ++i) {
    EXPECT_EQ(ids[i], i < 8 ? s.inputIds[i] : PAD) << i;
    EXPECT_EQ(tg[i], i < 8 ? s.targets[i] : IGN) << i;
  }
  EXPECT_EQ(*a[3].as<int32_t>(), 8);

  // A missing image names the data file, the record and the image.
  mm::TrainingSample missing = s;
  missing.imagePath = dir / "nope.png";
  std::string err = errorOf([&] { mm::trainArgs(e, missing, f); });
  EXPECT_NE(err.find("data.json: record 0 (id 'p')"), std::string::npos) << err;
  EXPECT_NE(err.find("nope.png"), std::string::npos) << err;
}

TEST(Data, TrainArgsTakeTheTowersOutputFromTheCache) {
  // COM: an entry whose first argument is image_embeds gets the values the
  // COM: caller's ImageInput gives for the sample's image (mmrun: the frozen
  // COM: tower's output, cached), not pixels.
  TempDir dir("data_embeds");
  mm::SampleFormat f = format(16);
  mm::TrainingSample s = imageSample(dir, f);
  mm::EntrySpec e = trainEntry("train_stage2", {"image_embeds", {1, 4, 3}, mm::ElemType::F32});
  std::vector<std::string> asked;
  mm::ImageInput tower = [&](const std::string &path) {
    asked.push_back(path);
    std::vector<float> v(12);
    for (int i = 0; i < 12; ++i) v[i] = 0.5f * (float)i;
    return v;
  };
  std::vector<mm::HostTensor> a = mm::trainArgs(e, s, f, tower);
  ASSERT_EQ(asked.size(), 1u);
  EXPECT_EQ(std::filesystem::path(asked[0]), dir / "p.png");
  ASSERT_EQ(a[0].bytes.size(), 48u);
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a[0].as<float>()[i], 0.5f * (float)i) << i;
  EXPECT_EQ(*a[3].as<int32_t>(), 8);

  // Without the tower's output, or with values of the wrong count: one clear error.
  std::string err = errorOf([&] { mm::trainArgs(e, s, f); });
  EXPECT_NE(err.find("entry 'train_stage2' takes image_embeds"), std::string::npos) << err;
  mm::ImageInput short_ = [](const std::string &) { return std::vector<float>(5); };
  err = errorOf([&] { mm::trainArgs(e, s, f, short_); });
  EXPECT_NE(err.find("data.json: record 0 (id 'p')"), std::string::npos) << err;
  EXPECT_NE(err.find("the image gives 5 values (vision_embeds); entry 'train_stage2' takes 12"), std::string::npos)
      << err;
}

TEST(Data, PatchLabelRecords) {
  // COM: vision pre-training data: an image and one label per patch, no text.
  std::vector<mm::ConversationRecord> recs = mm::parseConversations(
      R"([{"id": "p", "image": "a.png", "patch_labels": [0, 3, 80, 0]}])", "p.json");
  ASSERT_EQ(recs.size(), 1u);
  EXPECT_EQ(recs[0].patchLabels, (std::vector<int32_t>{0, 3, 80, 0}));
  EXPECT_TRUE(recs[0].turns.empty());
  EXPECT_EQ(mm::chatTemplateForData("patch_labels"), mm::ChatTemplate::PatchLabels);
  mm::checkRecord(recs[0], mm::ChatTemplate::PatchLabels);
  // Not usable as conversation or caption data, and the reverse.
  EXPECT_NE(errorOf([&] { mm::checkRecord(recs[0], mm::ChatTemplate::VicunaV1); }).find("missing 'conversations'"),
            std::string::npos);
  std::vector<mm::ConversationRecord> conv = mm::parseConversations(
      R"([{"id": "c", "image": "a.png", "conversations": [{"from": "human", "value": "<image>\nQ"},
          {"from": "gpt", "value": "A"}]}])", "c.json");
  EXPECT_NE(errorOf([&] { mm::checkRecord(conv[0], mm::ChatTemplate::PatchLabels); }).find("needs 'patch_labels'"),
            std::string::npos);
  for (const char *bad : {R"([{"image": "a.png", "patch_labels": []}])", R"([{"image": "a.png", "patch_labels": [1, -2]}])",
                          R"([{"image": "a.png", "patch_labels": [1, "x"]}])"})
    EXPECT_NE(errorOf([&] { mm::parseConversations(bad, "b.json"); }).find("b.json: record 0 (id '0'): 'patch_labels'"),
              std::string::npos) << bad;
  // COM: patch_cells (each patch's object's grid cell) ride along, one per patch.
  std::vector<mm::ConversationRecord> cells = mm::parseConversations(
      R"([{"id": "p", "image": "a.png", "patch_labels": [0, 3, 80, 0], "patch_cells": [0, 5, 9, 0]}])", "p.json");
  EXPECT_EQ(cells[0].patchCells, (std::vector<int32_t>{0, 5, 9, 0}));
  EXPECT_NE(errorOf([&] {
              mm::parseConversations(R"([{"image": "a.png", "patch_labels": [0, 3], "patch_cells": [0]}])", "b.json");
            }).find("1 'patch_cells' for 2 'patch_labels'"),
            std::string::npos);
  EXPECT_NE(errorOf([&] {
              mm::parseConversations(R"([{"image": "a.png", "patch_labels": [0, 3], "patch_cells": [0, -1]}])", "b.json");
            }).find("'patch_cells' must hold non-negative integers"),
            std::string::npos);
  // COM: An entry that learns the cells needs them: one clear error before any image is read.
  mm::TrainingSample sample = mm::buildSample(recs[0], mm::ChatTemplate::PatchLabels, tokenizer(), format(), "/imgs");
  mm::EntrySpec e;
  e.name = "patch_loss";
  e.args = {{"pixel_values", {1, 3, 16, 16}, mm::ElemType::F32},
            {"patch_labels", {1, 4}, mm::ElemType::I32},
            {"patch_cells", {1, 4}, mm::ElemType::I32}};
  EXPECT_NE(errorOf([&] { mm::trainArgs(e, sample, format()); }).find("the record has 0 'patch_cells' for its 4 patches"),
            std::string::npos);
}

TEST(Data, LoadErrorsNameTheFileAndRecord) {
  TempDir dir("data_errors");
  auto loadErr = [&](const std::string &text) {
    writeText(dir / "d.json", text);
    return errorOf([&] { mm::loadConversations(dir / "d.json"); });
  };
  std::string file = dir / "d.json";
  std::string e = loadErr("[{\"id\": 1,");
  EXPECT_NE(e.find(file + ": not valid JSON"), std::string::npos) << e;
  e = loadErr("{\"id\": 1}");
  EXPECT_NE(e.find(file + ": expected a JSON array"), std::string::npos) << e;
  e = loadErr("[]");
  EXPECT_NE(e.find(file + ": holds no records"), std::string::npos) << e;
  e = loadErr(R"([{"id": "a", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"}]},
                  {"id": "b"}])");
  EXPECT_NE(e.find(file + ": record 1 (id 'b'): missing 'conversations'"), std::string::npos) << e;
  e = loadErr(R"([{"id": "a", "conversations": [{"from": "human"}]}])");
  EXPECT_NE(e.find(file + ": record 0 (id 'a'): turn 0: missing 'value'"), std::string::npos) << e;
  e = loadErr(R"([{"conversations": [{"value": "x"}]}])");
  EXPECT_NE(e.find(file + ": record 0 (id '0'): turn 0: missing 'from'"), std::string::npos) << e;
  e = loadErr(R"([{"id": "a", "conversations": [{"from": "system", "value": "x"}]}])");
  EXPECT_NE(e.find("'from' is 'system'"), std::string::npos) << e;
  e = loadErr(R"([{"id": "a", "image": 3, "conversations": []}])");
  EXPECT_NE(e.find(file + ": record 0 (id 'a'): 'image' must be"), std::string::npos) << e;
  e = loadErr(R"([{"id": [1], "conversations": []}])");
  EXPECT_NE(e.find(file + ": record 0: 'id' must be"), std::string::npos) << e;
  e = loadErr(R"([{"id": "a", "conversations": "hi"}])");
  EXPECT_NE(e.find("'conversations' must be an array"), std::string::npos) << e;
  e = loadErr(R"([3])");
  EXPECT_NE(e.find(file + ": record 0: expected an object"), std::string::npos) << e;
  // COM: evaluation records' "type" and "answer" are checked on loading, once.
  e = loadErr(R"([{"id": "q", "type": 5, "conversations": [{"from": "human", "value": "x"}]}])");
  EXPECT_NE(e.find(file + ": record 0 (id 'q'): 'type' must be a string"), std::string::npos) << e;
  e = loadErr(R"([{"id": "q", "answer": ["Red."], "conversations": [{"from": "human", "value": "x"}]}])");
  EXPECT_NE(e.find(file + ": record 0 (id 'q'): 'answer' must be a string"), std::string::npos) << e;
  e = errorOf([&] { mm::loadConversations(dir / "missing.json"); });
  EXPECT_NE(e.find(dir / "missing.json"), std::string::npos) << e;
  EXPECT_NE(e.find("cannot open"), std::string::npos) << e;

  writeText(dir / "ok.json", R"([{"id": "a", "image": "i.png", "conversations": [
      {"from": "human", "value": "<image>"}, {"from": "gpt", "value": "y"}]}])");
  std::vector<mm::ConversationRecord> ok = mm::loadConversations(dir / "ok.json");
  ASSERT_EQ(ok.size(), 1u);
  EXPECT_EQ(ok[0].source, dir / "ok.json");
  EXPECT_EQ(*ok[0].image, "i.png");
  ASSERT_EQ(ok[0].turns.size(), 2u);
  EXPECT_EQ(ok[0].turns[1].value, "y");
}

TEST(Data, RecordsThatDoNotFitTheTemplate) {
  auto err = [&](const std::string &json, mm::ChatTemplate t) {
    return errorOf([&] { mm::checkRecord(parseOne(json), t); });
  };
  using T = mm::ChatTemplate;
  std::string e = err(R"({"id": "a", "conversations": [{"from": "human", "value": "<image>"},
                        {"from": "gpt", "value": "y"}]})", T::Plain);
  EXPECT_NE(e.find("data.json: record 0 (id 'a'): caption data needs an 'image'"), std::string::npos) << e;
  e = err(R"({"id": "a", "image": "i", "conversations": [{"from": "human", "value": "<image>"}]})", T::Plain);
  EXPECT_NE(e.find("needs a human turn followed by a gpt turn"), std::string::npos) << e;
  e = err(R"({"id": "a", "image": "i", "conversations": [{"from": "human", "value": "no marker"},
            {"from": "gpt", "value": "y"}]})", T::VicunaV1);
  EXPECT_NE(e.find("exactly one human turn must hold one <image> marker (found 0)"), std::string::npos) << e;
  e = err(R"({"id": "a", "conversations": [{"from": "human", "value": "<image>"},
            {"from": "gpt", "value": "y"}]})", T::VicunaV1);
  EXPECT_NE(e.find("has an <image> marker but no 'image'"), std::string::npos) << e;
  e = err(R"({"id": "a", "conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]})",
          T::VicunaV1);
  EXPECT_NE(e.find("turn 0 is from 'gpt'"), std::string::npos) << e;
  e = err(R"({"id": "a", "conversations": [{"from": "human", "value": "x"}, {"from": "gpt", "value": "y"},
            {"from": "human", "value": "z"}]})", T::VicunaV1);
  EXPECT_NE(e.find("ends with a human turn"), std::string::npos) << e;
  e = err(R"({"id": "a", "image": "i", "conversations": [{"from": "human", "value": "<image>"},
            {"from": "gpt", "value": "see <image>"}]})", T::VicunaV1);
  EXPECT_NE(e.find("a gpt turn cannot hold <image>"), std::string::npos) << e;
  // A caption that spells the image token is caught while building.
  e = errorOf([&] {
    mm::buildSample(parseOne(R"({"id": "a", "image": "i", "conversations": [{"from": "human", "value": "<image>"},
                       {"from": "gpt", "value": "a <image> b"}]})"),
                    T::Plain, tokenizer(), format(), "");
  });
  EXPECT_NE(e.find("encodes to the image token"), std::string::npos) << e;
}

TEST(Data, TemplateForDataKind) {
  EXPECT_EQ(mm::chatTemplateForData("caption"), mm::ChatTemplate::Plain);
  EXPECT_EQ(mm::chatTemplateForData("conversation"), mm::ChatTemplate::VicunaV1);
  EXPECT_STREQ(mm::chatTemplateName(mm::ChatTemplate::Plain), "plain");
  EXPECT_STREQ(mm::chatTemplateName(mm::ChatTemplate::VicunaV1), "vicuna_v1");
  EXPECT_EQ(mm::chatTemplateForData("image_caption"), mm::ChatTemplate::Blip2);
  EXPECT_STREQ(mm::chatTemplateName(mm::ChatTemplate::Blip2), "blip2");
  std::string e = errorOf([] { mm::chatTemplateForData("video"); });
  EXPECT_NE(e.find("'video'"), std::string::npos) << e;
  // The error lists every kind, image_caption included.
  for (const char *kind : {"'caption'", "'conversation'", "'patch_labels'", "'image_caption'"})
    EXPECT_NE(e.find(kind), std::string::npos) << kind << ": " << e;
}

TEST(Data, Blip2PrefixTemplate) {
  // COM: The tiny OPT's pre-training: the caption's first words where the queries will stand
  // COM: (padded to the query positions), then blip2's BOS, caption, "\n"; loss as in blip2.
  mm::ConversationRecord r = parseOne(R"({"id": "p1", "image": "x.png", "caption": "A cat"})");
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Blip2Prefix, tokenizer(), format(400, 8), "/imgs");
  std::vector<int32_t> ids = bytes("A cat");
  ids.resize(8, PAD);
  ids.push_back(BOS);
  append(ids, bytes("A cat\n"));
  EXPECT_EQ(s.inputIds, ids);
  std::vector<int32_t> t(8, IGN);
  append(t, bytes("A cat\n"));
  t.push_back(IGN);
  EXPECT_EQ(s.targets, t);
  EXPECT_EQ(std::count(s.inputIds.begin(), s.inputIds.end(), IMG), 0);
  // A longer caption fills the prefix with its first tokens.
  mm::ConversationRecord l = parseOne(R"({"id": "p2", "image": "x.png", "caption": "A red circle."})");
  mm::TrainingSample sl = mm::buildSample(l, mm::ChatTemplate::Blip2Prefix, tokenizer(), format(400, 8), "/imgs");
  EXPECT_EQ(std::vector<int32_t>(sl.inputIds.begin(), sl.inputIds.begin() + 8), bytes("A red ci"));
  EXPECT_EQ(mm::chatTemplateForData("caption_prefix"), mm::ChatTemplate::Blip2Prefix);
}

TEST(Data, Blip2PrefixReadsTheGridLayout) {
  // COM: With a "grid" (mmdata's image-caption records), the context is the scene's layout:
  // COM: cell k's colour and shape words at positions 2k, 2k+1, padding for an empty cell, so
  // COM: each query position stands for one place of the image; the caption follows as before.
  static mm::Tokenizer words = mm::Tokenizer::fromFile(sourceDir() + "/models/tokenizers/llava-tiny.tokenizer.json");
  const int32_t pad = 3, red = words.encode(" red", false).at(0), circle = words.encode(" circle", false).at(0);
  mm::ConversationRecord r = parseOne(
      R"({"id": "g1", "image": "x.png", "caption": "A red circle.", "grid": ["", "red circle", "", "", "", "", "", "", ""]})");
  ASSERT_EQ(r.grid.size(), 9u);
  mm::SampleFormat f = format(400, 20);
  f.shape.padToken = pad;
  f.shape.vocab = 800;
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Blip2Prefix, words, f, "/imgs");
  std::vector<int32_t> context(20, pad);
  context[2] = red;
  context[3] = circle;
  EXPECT_EQ(std::vector<int32_t>(s.inputIds.begin(), s.inputIds.begin() + 20), context);
  EXPECT_EQ(s.inputIds[20], BOS);
  std::vector<int32_t> caption = words.encode("A red circle.", false);
  append(caption, words.encode("\n", false));
  EXPECT_EQ(std::vector<int32_t>(s.inputIds.begin() + 21, s.inputIds.begin() + 21 + caption.size()), caption);
  // COM: Too few query positions for 9 cells, a word of several tokens, a malformed grid: errors.
  EXPECT_NE(errorOf([&] { mm::buildSample(r, mm::ChatTemplate::Blip2Prefix, words, format(400, 16), "/imgs"); })
                .find("takes 18 context positions; the model has 16"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { mm::buildSample(r, mm::ChatTemplate::Blip2Prefix, tokenizer(), f, "/imgs"); })
                .find("grid word 'red' is 4 tokens"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { parseOne(R"({"id": "g2", "image": "x.png", "caption": "A", "grid": ["", ""]})"); })
                .find("'grid' must be an array of 9 strings"),
            std::string::npos);
}

TEST(Data, Blip2LayoutPutsOneCellAtEachQueryPosition) {
  // COM: caption_layout: blip2's sample (query positions, BOS, caption) with, per query
  // COM: position k, cell k's colour and shape ids for the entry to embed and sum (one
  // COM: query stands for one object whole); the pad id twice for an empty cell or a
  // COM: query past the 9 cells. The layout entry takes them by name, and no image.
  static mm::Tokenizer words = mm::Tokenizer::fromFile(sourceDir() + "/models/tokenizers/llava-tiny.tokenizer.json");
  const int32_t pad = 3, red = words.encode(" red", false).at(0), circle = words.encode(" circle", false).at(0);
  const int32_t blue = words.encode(" blue", false).at(0), square = words.encode(" square", false).at(0);
  mm::ConversationRecord r = parseOne(R"({"id": "l1", "image": "x.png", "caption": "A red circle.",)"
                                      R"( "grid": ["", "red circle", "", "", "", "", "", "", "blue square"]})");
  mm::SampleFormat f = format(40, 10);
  f.shape.padToken = pad;
  f.shape.vocab = 800;
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Blip2Layout, words, f, "/imgs");
  std::vector<int32_t> colours(10, pad), shapes(10, pad);
  colours[1] = red, shapes[1] = circle, colours[8] = blue, shapes[8] = square;
  EXPECT_EQ(s.cellColourIds, colours);
  EXPECT_EQ(s.cellShapeIds, shapes);
  EXPECT_EQ(std::vector<int32_t>(s.inputIds.begin(), s.inputIds.begin() + 10), std::vector<int32_t>(10, IMG));
  EXPECT_EQ(s.inputIds[10], BOS);
  std::vector<int32_t> caption = words.encode("A red circle.", false);
  append(caption, words.encode("\n", false));
  ASSERT_EQ(s.inputIds.size(), 11 + caption.size());
  EXPECT_EQ(std::vector<int32_t>(s.inputIds.begin() + 11, s.inputIds.end()), caption);
  for (size_t i = 0; i + 1 < s.inputIds.size(); ++i) EXPECT_EQ(s.targets[i], i < 10 ? IGN : s.inputIds[i + 1]) << i;

  mm::EntrySpec e;
  e.name = "layout_lm_loss";
  e.args = {{"input_ids", {1, 40}, mm::ElemType::I32},
            {"cell_colour_ids", {1, 10}, mm::ElemType::I32},
            {"cell_shape_ids", {1, 10}, mm::ElemType::I32},
            {"targets", {1, 40}, mm::ElemType::I32},
            {"length", {}, mm::ElemType::I32}};
  std::vector<mm::HostTensor> a = mm::trainArgs(e, s, f); // no image read: x.png does not exist
  ASSERT_EQ(a.size(), 5u);
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(a[0].as<int32_t>()[i], i < (int)s.inputIds.size() ? s.inputIds[i] : pad) << i;
    EXPECT_EQ(a[3].as<int32_t>()[i], i < (int)s.inputIds.size() ? s.targets[i] : IGN) << i;
  }
  for (int k = 0; k < 10; ++k) {
    EXPECT_EQ(a[1].as<int32_t>()[k], colours[k]) << k;
    EXPECT_EQ(a[2].as<int32_t>()[k], shapes[k]) << k;
  }
  EXPECT_EQ(*a[4].as<int32_t>(), (int32_t)s.inputIds.size());
  // COM: A record without a grid, too few query positions, a blip2 sample for the layout
  // COM: entry, a layout sample for an image entry: one clear error each.
  mm::ConversationRecord plain = parseOne(R"({"id": "l2", "image": "x.png", "caption": "A red circle."})");
  EXPECT_NE(errorOf([&] { mm::buildSample(plain, mm::ChatTemplate::Blip2Layout, words, f, "/imgs"); })
                .find("needs the scene's 'grid'"),
            std::string::npos);
  mm::SampleFormat few = f;
  few.shape.imagePositions = 8;
  EXPECT_NE(errorOf([&] { mm::buildSample(r, mm::ChatTemplate::Blip2Layout, words, few, "/imgs"); })
                .find("a layout of 9 cells needs as many query positions; the model has 8"),
            std::string::npos);
  mm::TrainingSample image = mm::buildSample(r, mm::ChatTemplate::Blip2, words, f, "/imgs");
  EXPECT_NE(errorOf([&] { mm::trainArgs(e, image, f); }).find("'caption_layout'"), std::string::npos);
  mm::EntrySpec lm;
  lm.name = "lm_loss";
  lm.args = {{"pixel_values", {1, 3, 16, 16}, mm::ElemType::F32},
             {"input_ids", {1, 40}, mm::ElemType::I32},
             {"targets", {1, 40}, mm::ElemType::I32},
             {"length", {}, mm::ElemType::I32}};
  EXPECT_NE(errorOf([&] { mm::trainArgs(lm, s, f); }).find("takes no cell_colour_ids"), std::string::npos);
}

namespace {
mm::SampleFormat encoderDecoderFormat(int64_t encoder, int64_t decoder, int64_t imagePositions = 4) {
  mm::SampleFormat f = format(encoder, imagePositions);
  f.decoderLength = decoder;
  f.decoderStart = PAD;
  f.eos = EOS;
  return f;
}

/// The id whose caption of WORDS words splits after K words.
std::string idSplittingAt(size_t words, size_t k) {
  for (int i = 0;; ++i)
    if (mm::captionSplit("r" + std::to_string(i), words) == k) return "r" + std::to_string(i);
}
} // namespace

TEST(Data, CaptionSplitIsFixedByTheIdAndCoversEveryPrefix) {
  // COM: 0 to half the words, the same for an id every time; every split
  // COM: occurs, and half the records have no prefix (plain captioning).
  std::vector<int> seen(4, 0);
  for (int i = 0; i < 400; ++i) {
    size_t k = mm::captionSplit("train_" + std::to_string(i), 7);
    ASSERT_LE(k, 3u);
    EXPECT_EQ(k, mm::captionSplit("train_" + std::to_string(i), 7));
    ++seen[k];
  }
  EXPECT_GT(seen[0], 160);
  EXPECT_LT(seen[0], 240);
  for (int k = 1; k < 4; ++k) EXPECT_GT(seen[k], 40) << k;
  EXPECT_EQ(mm::captionSplit("x", 1), 0u); // one word: never a prefix
}

TEST(Data, Blip2T5TemplateSplitsTheCaptionBetweenEncoderAndDecoder) {
  // COM: Encoder: image positions, the prefix's words, </s>; decoder input: the
  // COM: start token, then the suffix; targets: the suffix and </s>.
  const std::string id = idSplittingAt(4, 2);
  mm::ConversationRecord r = parseOne(R"({"id": ")" + id + R"(", "image": "x.png", "caption": "A red circle here."})");
  mm::TrainingSample s =
      mm::buildSample(r, mm::ChatTemplate::Blip2T5, tokenizer(), encoderDecoderFormat(40, 24), "/imgs");
  std::vector<int32_t> enc(4, IMG);
  append(enc, bytes("A red"));
  enc.push_back(EOS);
  EXPECT_EQ(s.inputIds, enc);
  std::vector<int32_t> tg = bytes("circle here.");
  tg.push_back(EOS);
  EXPECT_EQ(s.targets, tg);
  std::vector<int32_t> dec{PAD};
  append(dec, bytes("circle here."));
  EXPECT_EQ(s.decoderInputIds, dec);
  EXPECT_FALSE(s.truncated());
  EXPECT_EQ(s.targetCount(), (int64_t)tg.size());

  // COM: An empty prefix (split 0): the encoder holds the image and </s> only.
  mm::ConversationRecord r0 = parseOne(R"({"id": ")" + idSplittingAt(4, 0) + R"(", "image": "x.png", "caption": "A red circle here."})");
  mm::TrainingSample s0 =
      mm::buildSample(r0, mm::ChatTemplate::Blip2T5, tokenizer(), encoderDecoderFormat(40, 24), "/imgs");
  std::vector<int32_t> enc0(4, IMG);
  enc0.push_back(EOS);
  EXPECT_EQ(s0.inputIds, enc0);
  std::vector<int32_t> tg0 = bytes("A red circle here.");
  tg0.push_back(EOS);
  EXPECT_EQ(s0.targets, tg0);

  // COM: The T5's text pre-training: the caption's own tokens where the queries will stand.
  mm::TrainingSample t = mm::buildSample(r, mm::ChatTemplate::T5Text, tokenizer(), encoderDecoderFormat(40, 24), "/imgs");
  // COM: (4 query positions: the caption's first 4 tokens, "A re")
  std::vector<int32_t> want = bytes("A re");
  append(want, bytes("A red"));
  want.push_back(EOS);
  EXPECT_EQ(t.inputIds, want);
  EXPECT_EQ(t.targets, tg);
  // COM: The text pre-training reads no image, so its records need none; stage 2's do.
  mm::ConversationRecord noImage = parseOne(R"({"id": "n", "caption": "A red circle."})");
  EXPECT_NO_THROW(mm::checkRecord(noImage, mm::ChatTemplate::T5Text));
  std::string e = errorOf([&] { mm::checkRecord(noImage, mm::ChatTemplate::Blip2T5); });
  EXPECT_NE(e.find("needs an 'image'"), std::string::npos) << e;
  EXPECT_EQ(mm::chatTemplateForData("image_caption_split"), mm::ChatTemplate::Blip2T5);
  EXPECT_EQ(mm::chatTemplateForData("caption_split"), mm::ChatTemplate::T5Text);
  EXPECT_STREQ(mm::chatTemplateName(mm::ChatTemplate::Blip2T5), "blip2_t5");
}

TEST(Data, Blip2T5TruncationWarnsAndKeepsTheEndToken) {
  // COM: A suffix longer than the decoder is cut (with a warning naming the
  // COM: record); an encoder input longer than the encoder keeps its </s>.
  mm::ConversationRecord r = parseOne(R"({"id": ")" + idSplittingAt(2, 1) + R"(", "image": "x.png", "caption": "Abcdefgh ijklmnopqrstuvwxyz"})");
  std::ostringstream warnings;
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::Blip2T5, tokenizer(), encoderDecoderFormat(8, 10), "/imgs",
                                         &warnings);
  EXPECT_TRUE(s.truncated());
  ASSERT_EQ(s.inputIds.size(), 8u);
  EXPECT_EQ(s.inputIds.back(), EOS);
  EXPECT_EQ(std::vector<int32_t>(s.inputIds.begin() + 4, s.inputIds.end() - 1), bytes("Abc"));
  ASSERT_EQ(s.targets.size(), 10u);
  EXPECT_EQ(s.targets, bytes("ijklmnopqr"));
  EXPECT_EQ(s.decoderInputIds.size(), 10u);
  EXPECT_NE(warnings.str().find("data.json: record 0"), std::string::npos) << warnings.str();
  EXPECT_NE(warnings.str().find("decoder length 10"), std::string::npos) << warnings.str();
  EXPECT_NE(warnings.str().find("compiled length 8"), std::string::npos) << warnings.str();
  // COM: A model without an encoder-decoder LLM cannot take this data.
  std::string e = errorOf([&] { mm::buildSample(r, mm::ChatTemplate::Blip2T5, tokenizer(), format(40), "/imgs"); });
  EXPECT_NE(e.find("encoder-decoder"), std::string::npos) << e;
}

TEST(Data, EncoderDecoderTrainArgsByName) {
  // COM: An encoder-decoder entry takes its arguments by name; ids padded with
  // COM: the pad id, targets with -100, both lengths the real counts.
  const std::string id = idSplittingAt(2, 1);
  mm::ConversationRecord r = parseOne(R"({"id": ")" + id + R"(", "image": "x.png", "caption": "ab cd"})");
  mm::SampleFormat f = encoderDecoderFormat(12, 6);
  mm::TrainingSample s = mm::buildSample(r, mm::ChatTemplate::T5Text, tokenizer(), f, "/imgs");
  mm::EntrySpec e;
  e.name = "train_pretrain_llm";
  e.args = {{"input_ids", {1, 12}, mm::ElemType::I32},
            {"length", {}, mm::ElemType::I32},
            {"decoder_input_ids", {1, 6}, mm::ElemType::I32},
            {"targets", {1, 6}, mm::ElemType::I32},
            {"decoder_length", {}, mm::ElemType::I32}};
  std::vector<mm::HostTensor> a = mm::trainArgs(e, s, f);
  ASSERT_EQ(a.size(), 5u);
  ASSERT_EQ(s.inputIds.size(), 7u); // "ab c" (4 query positions), "ab", </s>
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a[0].as<int32_t>()[i], i < 7 ? s.inputIds[i] : PAD) << i;
  EXPECT_EQ(*a[1].as<int32_t>(), 7);
  std::vector<int32_t> dec{PAD, 'c' + 5, 'd' + 5}, tg{'c' + 5, 'd' + 5, EOS};
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(a[2].as<int32_t>()[i], i < 3 ? dec[i] : PAD) << i;
    EXPECT_EQ(a[3].as<int32_t>()[i], i < 3 ? tg[i] : IGN) << i;
  }
  EXPECT_EQ(*a[4].as<int32_t>(), 3);
  // COM: A decoder-only sample for this entry, or an argument it does not know, is an error.
  mm::TrainingSample plain = mm::buildSample(r, mm::ChatTemplate::Plain, tokenizer(), f, "/imgs");
  std::string err = errorOf([&] { mm::trainArgs(e, plain, f); });
  EXPECT_NE(err.find("caption_split"), std::string::npos) << err;
  e.args.push_back({"k_cache", {1}, mm::ElemType::F32});
  err = errorOf([&] { mm::trainArgs(e, s, f); });
  EXPECT_NE(err.find("'k_cache'"), std::string::npos) << err;
}
