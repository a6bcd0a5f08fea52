//===- Data.cpp - LLaVA training data: records, templates, samples ----------===//
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Image.h"

#include <nlohmann/json.hpp>

#include <array>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <ostream>
#include <sstream>

namespace mm {

const char *const kVicunaSystem =
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions.";

namespace {

const char *const kImageMarker = "<image>";

std::string recordWhere(const std::string &source, size_t index, const std::string &id) {
  std::string w = source + ": record " + std::to_string(index);
  if (!id.empty()) w += " (id '" + id + "')";
  return w;
}

size_t countMarkers(const std::string &text) {
  size_t n = 0;
  for (size_t p = text.find(kImageMarker); p != std::string::npos; p = text.find(kImageMarker, p + 1)) ++n;
  return n;
}

const char *jsonType(const nlohmann::json &j) { return j.type_name(); }

} // namespace

std::string ConversationRecord::where() const { return recordWhere(source, index, id); }

static ConversationRecord parseRecord(const nlohmann::json &r, const std::string &name, size_t i);

std::vector<ConversationRecord> parseConversations(const std::string &text, const std::string &name,
                                                   SkippedRecords *skipped) {
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    throw Error(name + ": not valid JSON: " + e.what());
  }
  if (!doc.is_array())
    throw Error(name + ": expected a JSON array of conversation records, found a " + jsonType(doc));
  if (doc.empty()) throw Error(name + ": holds no records");
  std::vector<ConversationRecord> out;
  out.reserve(doc.size());
  for (size_t i = 0; i < doc.size(); ++i) {
    if (skipped) {
      try {
        out.push_back(parseRecord(doc[i], name, i));
      } catch (const Error &e) {
        skipped->add(e.what());
      }
    } else {
      out.push_back(parseRecord(doc[i], name, i));
    }
  }
  if (out.empty()) throw Error(name + ": every record is bad (first: " + (skipped ? skipped->first : "") + ")");
  return out;
}

static ConversationRecord parseRecord(const nlohmann::json &r, const std::string &name, size_t i) {
  {
    ConversationRecord rec;
    rec.source = name;
    rec.index = i;
    if (!r.is_object())
      throw Error(recordWhere(name, i, "") + ": expected an object, found a " + jsonType(r));
    if (r.contains("id")) {
      const nlohmann::json &id = r["id"];
      if (id.is_string()) rec.id = id.get<std::string>();
      else if (id.is_number_integer()) rec.id = std::to_string(id.get<int64_t>());
      else throw Error(recordWhere(name, i, "") + ": 'id' must be a string or an integer, found a " + jsonType(id));
    } else {
      rec.id = std::to_string(i);
    }
    std::string where = rec.where();
    if (r.contains("image") && !r["image"].is_null()) {
      if (!r["image"].is_string() || r["image"].get<std::string>().empty())
        throw Error(where + ": 'image' must be a non-empty file name");
      rec.image = r["image"].get<std::string>();
    }
    auto optionalString = [&](const char *field) -> std::optional<std::string> {
      if (!r.contains(field)) return std::nullopt;
      if (!r[field].is_string()) throw Error(where + ": '" + field + "' must be a string");
      return r[field].get<std::string>();
    };
    rec.type = optionalString("type");
    rec.answer = optionalString("answer");
    if (r.contains("grid")) {
      const nlohmann::json &grid = r["grid"];
      if (!grid.is_array() || grid.size() != 9)
        throw Error(where + ": 'grid' must be an array of 9 strings (a 3 x 3 grid, row by row)");
      for (const nlohmann::json &cell : grid) {
        if (!cell.is_string()) throw Error(where + ": 'grid' must hold strings, found " + cell.dump());
        rec.grid.push_back(cell.get<std::string>());
      }
    }
    auto patchInts = [&](const char *key, std::vector<int32_t> &out) {
      const nlohmann::json &labels = r[key];
      if (!labels.is_array() || labels.empty())
        throw Error(where + ": '" + key + "' must be a non-empty array of integers");
      for (const nlohmann::json &l : labels) {
        if (!l.is_number_integer() || l.get<int64_t>() < 0 || l.get<int64_t>() > 1000000)
          throw Error(where + ": '" + key + "' must hold non-negative integers, found " + l.dump());
        out.push_back((int32_t)l.get<int64_t>());
      }
    };
    if (r.contains("patch_labels")) {
      patchInts("patch_labels", rec.patchLabels);
      if (r.contains("patch_cells")) {
        patchInts("patch_cells", rec.patchCells);
        if (rec.patchCells.size() != rec.patchLabels.size())
          throw Error(where + ": " + std::to_string(rec.patchCells.size()) + " 'patch_cells' for " +
                      std::to_string(rec.patchLabels.size()) + " 'patch_labels' (one per patch each)");
      }
      if (!r.contains("conversations")) return rec;
    }
    // An image-caption pair (BLIP-2's data) is a one-exchange conversation.
    if (!r.contains("conversations") && r.contains("caption")) {
      std::optional<std::string> caption = optionalString("caption");
      if (caption->empty()) throw Error(where + ": 'caption' is empty");
      rec.turns.push_back({"human", kImageMarker});
      rec.turns.push_back({"gpt", *caption});
      return rec;
    }
    if (!r.contains("conversations")) throw Error(where + ": missing 'conversations' (or 'caption')");
    const nlohmann::json &conv = r["conversations"];
    if (!conv.is_array()) throw Error(where + ": 'conversations' must be an array, found a " + jsonType(conv));
    if (conv.empty()) throw Error(where + ": 'conversations' is empty");
    for (size_t t = 0; t < conv.size(); ++t) {
      const nlohmann::json &turn = conv[t];
      std::string tw = where + ": turn " + std::to_string(t);
      if (!turn.is_object()) throw Error(tw + ": expected an object, found a " + jsonType(turn));
      if (!turn.contains("from")) throw Error(tw + ": missing 'from'");
      if (!turn.contains("value")) throw Error(tw + ": missing 'value'");
      if (!turn["from"].is_string()) throw Error(tw + ": 'from' must be a string");
      if (!turn["value"].is_string()) throw Error(tw + ": 'value' must be a string");
      ConversationTurn ct{turn["from"].get<std::string>(), turn["value"].get<std::string>()};
      if (ct.from != "human" && ct.from != "gpt")
        throw Error(tw + ": 'from' is '" + ct.from + "'; expected 'human' or 'gpt'");
      rec.turns.push_back(std::move(ct));
    }
    return rec;
  }
}

std::vector<ConversationRecord> loadConversations(const std::string &path, SkippedRecords *skipped) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open the training data file: " + std::strerror(errno));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": cannot read the training data file");
  return parseConversations(ss.str(), path, skipped);
}

ChatTemplate chatTemplateForData(const std::string &kind) {
  if (kind == "caption") return ChatTemplate::Plain;
  if (kind == "conversation") return ChatTemplate::VicunaV1;
  if (kind == "patch_labels") return ChatTemplate::PatchLabels;
  if (kind == "image_caption") return ChatTemplate::Blip2;
  if (kind == "image_text") return ChatTemplate::QFormerText;
  if (kind == "caption_prefix") return ChatTemplate::Blip2Prefix;
  if (kind == "caption_layout") return ChatTemplate::Blip2Layout;
  if (kind == "image_caption_split") return ChatTemplate::Blip2T5;
  if (kind == "caption_split") return ChatTemplate::T5Text;
  throw Error("unknown training data kind '" + kind +
              "' (expected 'caption', 'conversation', 'patch_labels', 'image_caption', 'caption_prefix', "
              "'caption_layout', 'image_text', 'image_caption_split' or 'caption_split')");
}

const char *chatTemplateName(ChatTemplate t) {
  switch (t) {
  case ChatTemplate::Plain: return "plain";
  case ChatTemplate::VicunaV1: return "vicuna_v1";
  case ChatTemplate::PatchLabels: return "patch_labels";
  case ChatTemplate::Blip2: return "blip2";
  case ChatTemplate::QFormerText: return "qformer_text";
  case ChatTemplate::Blip2Prefix: return "blip2_prefix";
  case ChatTemplate::Blip2Layout: return "blip2_layout";
  case ChatTemplate::Blip2T5: return "blip2_t5";
  case ChatTemplate::T5Text: return "t5_text";
  }
  return "?";
}

ChatTemplate chatTemplateByName(const std::string &name, const CompiledModel &model) {
  if (name.empty()) {
    const nlohmann::json &c = model.config();
    if (c.value("model_type", "") != "blip-2") return ChatTemplate::VicunaV1;
    return c.value("use_decoder_only_language_model", true) ? ChatTemplate::Blip2 : ChatTemplate::Blip2T5;
  }
  if (name == "vicuna_v1") return ChatTemplate::VicunaV1;
  if (name == "plain") return ChatTemplate::Plain;
  if (name == "blip2") return ChatTemplate::Blip2;
  if (name == "blip2_t5") return ChatTemplate::Blip2T5;
  throw Error("--template: '" + name + "'; expected vicuna_v1, plain, blip2 or blip2_t5");
}

SampleFormat sampleFormat(const CompiledModel &model, const Tokenizer &tokenizer) {
  SampleFormat f;
  f.shape = llavaShape(model);
  const nlohmann::json &config = model.config();
  if (config.contains("qformer_config") && config["qformer_config"].contains("cls_token_id")) {
    const nlohmann::json &q = config["qformer_config"];
    f.textLength = q.value("max_txt_len", (int64_t)0);
    f.cls = (int32_t)q.value("cls_token_id", (int64_t)0);
    f.queries = config.value("num_query_tokens", (int64_t)0);
  }
  if (config.contains("text_config") && config["text_config"].contains("decoder_start_token_id")) {
    const nlohmann::json &t = config["text_config"];
    f.decoderLength = config.value("max_decoder_length", (int64_t)0);
    f.decoderStart = (int32_t)t.value("decoder_start_token_id", (int64_t)0);
    f.eos = (int32_t)t.value("eos_token_id", (int64_t)0);
  }
  if (tokenizer.bosId()) f.bos = *tokenizer.bosId();
  else if (!f.decoderLength) // the encoder-decoder templates use no BOS
    throw Error(tokenizer.path() + ": the tokenizer has no beginning-of-sequence token; training samples need one");
  return f;
}

void checkRecord(const ConversationRecord &rec, ChatTemplate t) {
  const std::string where = rec.where();
  if (t == ChatTemplate::PatchLabels) {
    if (rec.patchLabels.empty()) throw Error(where + ": patch-label data needs 'patch_labels'");
    if (!rec.image) throw Error(where + ": patch-label data needs an 'image'");
    return;
  }
  if (rec.turns.empty()) throw Error(where + ": missing 'conversations'");
  if (t == ChatTemplate::Plain || t == ChatTemplate::Blip2 || t == ChatTemplate::QFormerText ||
      t == ChatTemplate::Blip2Prefix || t == ChatTemplate::Blip2Layout || t == ChatTemplate::Blip2T5 ||
      t == ChatTemplate::T5Text) {
    if (rec.turns.size() < 2 || rec.turns[0].from != "human" || rec.turns[1].from != "gpt")
      throw Error(where + ": caption data needs a human turn followed by a gpt turn (the caption)");
    if (t == ChatTemplate::Blip2Layout && rec.grid.empty())
      throw Error(where + ": layout-context data (caption_layout) needs the scene's 'grid' (mmdata's image-caption "
                  "records carry it)");
    // The T5's text pre-training reads the caption alone.
    if (!rec.image && t != ChatTemplate::T5Text) throw Error(where + ": caption data needs an 'image'");
    return;
  }
  size_t markers = 0;
  for (size_t i = 0; i < rec.turns.size(); ++i) {
    const ConversationTurn &turn = rec.turns[i];
    const char *expected = i % 2 == 0 ? "human" : "gpt";
    if (turn.from != expected)
      throw Error(where + ": turn " + std::to_string(i) + " is from '" + turn.from + "'; turns must alternate human, gpt, starting with human");
    if (turn.from == "human") markers += countMarkers(turn.value);
    else if (countMarkers(turn.value))
      throw Error(where + ": turn " + std::to_string(i) + ": a gpt turn cannot hold <image>");
  }
  if (rec.turns.size() % 2 != 0)
    throw Error(where + ": the conversation ends with a human turn that has no gpt answer");
  if (rec.image && markers != 1)
    throw Error(where + ": has an image, so exactly one human turn must hold one <image> marker (found " +
                std::to_string(markers) + ")");
  if (!rec.image && markers)
    throw Error(where + ": has an <image> marker but no 'image'");
}

int64_t TrainingSample::targetCount() const {
  int64_t n = 0;
  for (int32_t t : targets) n += t != -100;
  return n;
}

namespace {

/// Appends segments, remembering which ids are the assistant's.
struct SampleWriter {
  const Tokenizer &tok;
  const SampleFormat &fmt;
  const std::string &where;
  std::vector<int32_t> ids;
  std::vector<uint8_t> assistant;

  void push(const std::vector<int32_t> &piece, bool isAssistant) {
    ids.insert(ids.end(), piece.begin(), piece.end());
    assistant.insert(assistant.end(), piece.size(), isAssistant ? 1 : 0);
  }
  void text(const std::string &s, bool isAssistant) {
    if (s.empty()) return;
    std::vector<int32_t> piece = tok.encode(s, /*addSpecial=*/false);
    for (int32_t id : piece)
      if (id == fmt.shape.imageToken)
        throw Error(where + ": the text '" + s.substr(0, 40) + (s.size() > 40 ? "..." : "") +
                    "' encodes to the image token " + std::to_string(id));
    push(piece, isAssistant);
  }
  void image() {
    push(expandImageTokens({fmt.shape.imageToken}, fmt.shape.imageToken, fmt.shape.imagePositions), false);
  }
  /// Text in which "<image>" markers become the (expanded) image token.
  void textWithImage(const std::string &s) {
    size_t start = 0;
    for (size_t p = s.find(kImageMarker); p != std::string::npos; p = s.find(kImageMarker, start)) {
      text(s.substr(start, p - start), false);
      image();
      start = p + std::strlen(kImageMarker);
    }
    text(s.substr(start), false);
  }
};

} // namespace

size_t captionSplit(const std::string &id, size_t words) {
  uint32_t h = 2166136261u;
  for (unsigned char ch : id) h = (h ^ ch) * 16777619u;
  // Half the records with an empty prefix: captioning from the image alone is
  // what chat asks of the model by default (an empty --prompt).
  // (The top bit: the multiplications mix every character into it.)
  if (words < 2 || (h >> 31) == 0) return 0;
  return 1 + h % (words / 2);
}

namespace {

/// TEXT's words, split at whitespace.
std::vector<std::string> whitespaceWords(const std::string &text) {
  std::vector<std::string> words;
  std::istringstream in(text);
  for (std::string word; in >> word;) words.push_back(word);
  return words;
}

/// A grid cell's colour and shape ids ("red circle" -> the ids of " red" and
/// " circle"; the pad id twice for an empty cell). Each word must be one
/// token: the layout contexts give a cell's words one position each.
std::array<int32_t, 2> gridCellIds(const std::string &cell, const Tokenizer &tokenizer, const SampleFormat &fmt,
                                   const std::string &where) {
  std::vector<std::string> words = whitespaceWords(cell);
  if (words.empty()) return {fmt.shape.padToken, fmt.shape.padToken};
  if (words.size() != 2) throw Error(where + ": grid cell '" + cell + "' is not two words (a colour and a shape)");
  std::array<int32_t, 2> out{};
  for (size_t i = 0; i < 2; ++i) {
    std::vector<int32_t> ids = tokenizer.encode(" " + words[i], /*addSpecial=*/false);
    if (ids.size() != 1)
      throw Error(where + ": grid word '" + words[i] + "' is " + std::to_string(ids.size()) +
                  " tokens; the layout context needs one token per word");
    if (ids[0] == fmt.shape.imageToken) throw Error(where + ": grid word '" + words[i] + "' encodes to the image token");
    out[i] = ids[0];
  }
  return out;
}

/// The encoder-decoder templates (blip2_t5, t5_text): the caption split into
/// an encoder prefix and a decoder suffix at captionSplit's word.
TrainingSample buildSplitSample(const ConversationRecord &rec, ChatTemplate t, SampleWriter &w, TrainingSample &s,
                                std::ostream *warnings) {
  const SampleFormat &fmt = w.fmt;
  if (fmt.decoderLength < 2)
    throw Error(s.where + ": " + chatTemplateName(t) +
                " data needs a model with an encoder-decoder LLM (text_config.decoder_start_token_id and "
                "max_decoder_length >= 2 in its configuration)");
  const std::string &caption = rec.turns[1].value;
  std::vector<std::string> words = whitespaceWords(caption);
  if (words.empty()) throw Error(s.where + ": the caption is empty");
  const size_t k = captionSplit(rec.id, words.size());
  std::string prefix, suffix;
  for (size_t i = 0; i < words.size(); ++i) (i < k ? prefix : suffix) += (i == 0 || i == k ? "" : " ") + words[i];
  if (t == ChatTemplate::Blip2T5) {
    w.image();
  } else {
    // The caption's own tokens where the queries will stand (padded or cut to their count).
    std::vector<int32_t> context = w.tok.encode(caption, /*addSpecial=*/false);
    context.resize(fmt.shape.imagePositions, fmt.shape.padToken);
    for (int32_t id : context)
      if (id == fmt.shape.imageToken) throw Error(s.where + ": the caption encodes to the image token");
    w.push(context, false);
  }
  w.text(prefix, false);
  w.push({fmt.eos}, false);
  SampleWriter labels{w.tok, fmt, s.where, {}, {}};
  labels.text(suffix, true);
  labels.push({fmt.eos}, true);
  s.fullLength = (int64_t)(w.ids.size() + labels.ids.size());
  const int64_t maxEnc = fmt.shape.maxSequence, maxDec = fmt.decoderLength;
  if ((int64_t)w.ids.size() > maxEnc) {
    // Only the prefix can be cut: the image positions come first and are fewer than the length.
    if (warnings)
      *warnings << "mmrun: warning: " << s.where << ": encoder input of " << w.ids.size()
                << " tokens (image positions and </s> included), truncated to the compiled length " << maxEnc << "\n";
    w.ids.resize(maxEnc - 1);
    w.ids.push_back(fmt.eos);
  }
  if ((int64_t)labels.ids.size() > maxDec) {
    if (warnings)
      *warnings << "mmrun: warning: " << s.where << ": caption suffix of " << labels.ids.size()
                << " tokens (</s> included) is longer than the compiled decoder length " << maxDec << "; truncated\n";
    labels.ids.resize(maxDec);
  }
  s.inputIds = std::move(w.ids);
  s.targets = labels.ids;
  s.decoderInputIds.assign(1, fmt.decoderStart);
  s.decoderInputIds.insert(s.decoderInputIds.end(), labels.ids.begin(), labels.ids.end() - 1);
  return s;
}

} // namespace

std::optional<std::string> recordImagePath(const ConversationRecord &rec, const std::string &imageDir) {
  if (!rec.image) return std::nullopt;
  const std::string &img = *rec.image;
  return (img[0] == '/' || imageDir.empty()) ? img
         : imageDir.back() == '/'            ? imageDir + img
                                             : imageDir + "/" + img;
}

void checkRecordAndImage(const ConversationRecord &rec, ChatTemplate t, const std::string &imageDir,
                         std::set<std::string> &decoded) {
  checkRecord(rec, t);
  std::optional<std::string> path = recordImagePath(rec, imageDir);
  if (!path) return;
  if (imageDir.empty() && (*path)[0] != '/')
    throw Error(rec.where() + ": has image '" + *path + "'; give --image-dir DIR");
  if (decoded.count(*path)) return;
  try {
    loadImage(*path);
  } catch (const Error &e) {
    throw Error(rec.where() + ": " + e.what());
  }
  decoded.insert(*path);
}

TrainingSample buildSample(const ConversationRecord &rec, ChatTemplate t, const Tokenizer &tokenizer,
                           const SampleFormat &fmt, const std::string &imageDir, std::ostream *warnings) {
  checkRecord(rec, t);
  TrainingSample s;
  s.id = rec.id;
  s.where = rec.where();
  s.imagePath = recordImagePath(rec, imageDir);
  if (t == ChatTemplate::PatchLabels) {
    s.targets = rec.patchLabels;
    s.patchCells = rec.patchCells;
    return s;
  }
  SampleWriter w{tokenizer, fmt, s.where, {}, {}};
  if (t == ChatTemplate::QFormerText) {
    if (fmt.textLength < 2)
      throw Error(s.where + ": image-text data needs a model with a Q-Former text side (qformer_config.cls_token_id)");
    // [CLS] caption "\n": the entry puts [DEC] in place of [CLS] for ITG.
    const std::string &caption = rec.turns[1].value;
    std::vector<int32_t> ids = qformerTextIds(caption, tokenizer, fmt);
    for (size_t i = 1; i < ids.size(); ++i) // only the caption can hold it ("\n" cannot)
      if (ids[i] == fmt.shape.imageToken)
        throw Error(s.where + ": the text '" + caption.substr(0, 40) + (caption.size() > 40 ? "..." : "") +
                    "' encodes to the image token " + std::to_string(ids[i]));
    s.fullLength = (int64_t)ids.size();
    if (s.fullLength > fmt.textLength) {
      if (warnings)
        *warnings << "mmrun: warning: " << s.where << ": caption of " << s.fullLength - 1
                  << " tokens (with the closing newline) is longer than the Q-Former's text length "
                  << fmt.textLength << " ([CLS] included); truncated\n";
      ids.resize(fmt.textLength);
    }
    s.inputIds = std::move(ids);
    s.targets.assign(s.inputIds.size(), -100);
    for (size_t i = 0; i + 1 < s.inputIds.size(); ++i) s.targets[i] = s.inputIds[i + 1];
    return s;
  }
  if (t == ChatTemplate::Blip2T5 || t == ChatTemplate::T5Text) return buildSplitSample(rec, t, w, s, warnings);
  if (t == ChatTemplate::Blip2Prefix) {
    // Where the queries will stand: the scene's layout when the record has
    // one (cell k of the 3 x 3 grid at positions 2k and 2k + 1: its object's
    // colour and shape words, padding where the cell is empty), so that each
    // query has one place of the image to stand for; else the caption's own
    // first tokens.
    std::vector<int32_t> prefix;
    if (!rec.grid.empty()) {
      for (const std::string &cell : rec.grid) {
        std::array<int32_t, 2> ids = gridCellIds(cell, tokenizer, fmt, s.where);
        prefix.insert(prefix.end(), ids.begin(), ids.end());
      }
      if ((int64_t)prefix.size() > fmt.shape.imagePositions)
        throw Error(s.where + ": a 3 x 3 grid layout takes " + std::to_string(prefix.size()) +
                    " context positions; the model has " + std::to_string(fmt.shape.imagePositions) +
                    " query positions");
    } else {
      prefix = tokenizer.encode(rec.turns[1].value, /*addSpecial=*/false);
    }
    prefix.resize(fmt.shape.imagePositions, fmt.shape.padToken);
    for (int32_t id : prefix)
      if (id == fmt.shape.imageToken) throw Error(s.where + ": the caption encodes to the image token");
    w.push(prefix, false);
    w.push({fmt.bos}, false);
    w.text(rec.turns[1].value, true);
    w.text("\n", true);
  } else if (t == ChatTemplate::Blip2 || t == ChatTemplate::Blip2Layout) {
    // BLIP-2 puts the query positions before the BOS (HF's processor).
    if (t == ChatTemplate::Blip2Layout) {
      // The layout where the queries will stand: query k is cell k of the
      // 3 x 3 grid (its colour and shape, embedded and summed by the entry),
      // so that one query carries one object whole; queries past the cells,
      // and empty cells, get the pad id twice.
      if ((int64_t)rec.grid.size() > fmt.shape.imagePositions)
        throw Error(s.where + ": a layout of " + std::to_string(rec.grid.size()) + " cells needs as many query "
                    "positions; the model has " + std::to_string(fmt.shape.imagePositions));
      s.cellColourIds.assign(fmt.shape.imagePositions, fmt.shape.padToken);
      s.cellShapeIds.assign(fmt.shape.imagePositions, fmt.shape.padToken);
      for (size_t k = 0; k < rec.grid.size(); ++k) {
        std::array<int32_t, 2> ids = gridCellIds(rec.grid[k], tokenizer, fmt, s.where);
        s.cellColourIds[k] = ids[0];
        s.cellShapeIds[k] = ids[1];
      }
    }
    w.image();
    w.push({fmt.bos}, false);
    w.text(rec.turns[1].value, true);
    w.text("\n", true);
  } else if (t == ChatTemplate::Plain) {
    w.push({fmt.bos}, false);
    w.image();
    w.text(rec.turns[1].value, true);
    w.text("\n", true);
  } else {
    w.push({fmt.bos}, false);
    for (size_t i = 0; i + 1 < rec.turns.size(); i += 2) {
      std::string human = (i == 0 ? std::string(kVicunaSystem) + " USER: " : std::string("USER: ")) +
                          rec.turns[i].value + " ASSISTANT:";
      w.textWithImage(human);
      w.text(" " + rec.turns[i + 1].value, true);
      w.text("</s>", true);
    }
  }

  const int64_t maxLen = fmt.shape.maxSequence;
  s.fullLength = (int64_t)w.ids.size();
  if (s.fullLength > maxLen) {
    int64_t imageTotal = 0, imageKept = 0;
    for (int64_t i = 0; i < s.fullLength; ++i)
      if (w.ids[i] == fmt.shape.imageToken) {
        ++imageTotal;
        imageKept += i < maxLen;
      }
    if (imageKept != imageTotal)
      throw Error(s.where + ": " + std::to_string(s.fullLength) + " tokens; truncating to the compiled length " +
                  std::to_string(maxLen) + " would cut into the image positions");
    if (warnings)
      *warnings << "mmrun: warning: " << s.where << ": " << s.fullLength << " tokens (image positions included), "
                << "truncated to the compiled length " << maxLen << "\n";
    w.ids.resize(maxLen);
    w.assistant.resize(maxLen);
  }
  s.inputIds = std::move(w.ids);
  s.targets.assign(s.inputIds.size(), -100);
  for (size_t i = 0; i + 1 < s.inputIds.size(); ++i)
    if (w.assistant[i + 1]) s.targets[i] = s.inputIds[i + 1];
  return s;
}

/// The COUNT values of SAMPLE's image for SPEC, an entry argument: the
/// preprocessed pixels (pixel_values) or IMAGE's values (image_embeds: the
/// frozen tower's output). Throws mm::Error naming the record for a missing or
/// undecodable image or values of the wrong count, and naming the entry when it
/// takes image_embeds but IMAGE is empty.
static std::vector<float> imageValues(const TensorSpec &spec, const EntrySpec &entry, const TrainingSample &s,
                                      const SampleFormat &fmt, const ImageInput &image, int64_t count) {
  const bool embeds = spec.name == "image_embeds";
  if (embeds && !image)
    throw Error("entry '" + entry.name + "' takes image_embeds: its arguments need the vision tower's output");
  if (!s.imagePath) throw Error(s.where + ": entry '" + entry.name + "' needs an image");
  std::vector<float> values;
  try {
    values = embeds ? image(*s.imagePath) : llavaPixelValues(fmt.shape, *s.imagePath);
  } catch (const Error &e) {
    throw Error(s.where + ": image: " + e.what());
  }
  if ((int64_t)values.size() != count)
    throw Error(s.where + ": the image gives " + std::to_string(values.size()) + " values (" +
                (embeds ? "vision_embeds" : "preprocessed") + "); entry '" + entry.name + "' takes " +
                std::to_string(count) + " in '" + spec.name + "'");
  return values;
}

/// SAMPLE's image into T, all of SPEC (imageValues).
static void imageInto(HostTensor &t, const TensorSpec &spec, const EntrySpec &entry, const TrainingSample &s,
                      const SampleFormat &fmt, const ImageInput &image) {
  const std::vector<float> values = imageValues(spec, entry, s, fmt, image, spec.numel());
  std::memcpy(t.bytes.data(), values.data(), values.size() * 4);
}

/// (pixel_values, patch_labels): the image and one label per patch.
std::vector<HostTensor> patchLabelArgs(const EntrySpec &entry, const TrainingSample &s, const SampleFormat &fmt) {
  if ((int64_t)s.targets.size() != entry.args[1].numel())
    throw Error(s.where + ": " + std::to_string(s.targets.size()) + " patch labels; entry '" + entry.name +
                "' takes " + std::to_string(entry.args[1].numel()) + " (mmdata scenes --patch-grid sets how many)");
  if (!s.imagePath) throw Error(s.where + ": patch-label data needs an image");
  const bool cells = entry.args.size() == 3;
  if (cells && (int64_t)s.patchCells.size() != entry.args[2].numel())
    throw Error(s.where + ": entry '" + entry.name + "' also learns each patch's grid cell; the record has " +
                std::to_string(s.patchCells.size()) + " 'patch_cells' for its " +
                std::to_string(entry.args[2].numel()) + " patches (mmdata's patches.json carries them)");
  std::vector<HostTensor> args(cells ? 3 : 2);
  args[0].bytes.resize(entry.args[0].bytes());
  imageInto(args[0], entry.args[0], entry, s, fmt, {});
  args[1].bytes.resize(s.targets.size() * 4);
  std::memcpy(args[1].bytes.data(), s.targets.data(), s.targets.size() * 4);
  if (cells) {
    args[2].bytes.resize(s.patchCells.size() * 4);
    std::memcpy(args[2].bytes.data(), s.patchCells.data(), s.patchCells.size() * 4);
  }
  return args;
}

std::vector<int32_t> qformerTextIds(const std::string &text, const Tokenizer &tokenizer, const SampleFormat &fmt) {
  std::vector<int32_t> ids{fmt.cls};
  for (const std::string &piece : {text, std::string("\n")})
    for (int32_t id : tokenizer.encode(piece, /*addSpecial=*/false)) ids.push_back(id);
  return ids;
}

int64_t entryBatch(const EntrySpec &entry) {
  for (const TensorSpec &a : entry.args)
    if (a.name == "input_ids" && !a.shape.empty()) return a.shape[0];
  return 1;
}

std::vector<HostTensor> stage1Args(const EntrySpec &entry, const std::vector<const TrainingSample *> &samples,
                                   const SampleFormat &fmt, const std::vector<float> &negText,
                                   const std::vector<float> &negImage, const ImageInput &image) {
  const int64_t b = (int64_t)samples.size(), tl = fmt.textLength;
  const char *names[] = {"pixel_values", "input_ids", "targets", "length", "negative_text_uniform",
                         "negative_image_uniform"};
  bool ok = entry.args.size() == 6;
  for (size_t i = 1; ok && i < 6; ++i) ok = entry.args[i].name == names[i];
  ok = ok && (entry.args[0].name == "image_embeds" || entry.args[0].name == names[0]);
  if (!ok || entry.args[1].numel() != b * tl || entry.args[3].numel() != b || entry.args[0].numel() % b)
    throw Error("entry '" + entry.name + "' does not take (pixel_values or image_embeds, input_ids[" + std::to_string(b) + "," +
                std::to_string(tl) + "], targets, length[" + std::to_string(b) +
                "], negative_text_uniform, negative_image_uniform)");
  if ((int64_t)negText.size() != b || (int64_t)negImage.size() != b)
    throw Error("stage1Args: need one uniform number per sample");
  std::vector<HostTensor> args(6);
  for (size_t i = 0; i < 6; ++i) args[i].bytes.assign(entry.args[i].bytes(), 0);
  const int64_t perImage = entry.args[0].numel() / b;
  int32_t *ids = args[1].as<int32_t>(), *tg = args[2].as<int32_t>(), *len = args[3].as<int32_t>();
  for (int64_t k = 0; k < b; ++k) {
    const TrainingSample &s = *samples[k];
    const std::vector<float> values = imageValues(entry.args[0], entry, s, fmt, image, perImage);
    std::memcpy(args[0].as<float>() + k * perImage, values.data(), values.size() * 4);
    if ((int64_t)s.inputIds.size() > tl || s.inputIds.empty())
      throw Error(s.where + ": text of " + std::to_string(s.inputIds.size()) + " tokens does not fit the Q-Former's " +
                  std::to_string(tl));
    for (int64_t i = 0; i < tl; ++i) {
      const bool real = i < (int64_t)s.inputIds.size();
      const int32_t id = real ? s.inputIds[i] : fmt.shape.padToken;
      if (id < 0 || id >= fmt.shape.vocab)
        throw Error(s.where + ": token id " + std::to_string(id) + " is outside the vocabulary [0, " +
                    std::to_string(fmt.shape.vocab) + ")");
      ids[k * tl + i] = id;
      tg[k * tl + i] = real ? s.targets[i] : -100;
    }
    len[k] = (int32_t)(fmt.queries + (int64_t)s.inputIds.size());
  }
  std::memcpy(args[4].bytes.data(), negText.data(), b * 4);
  std::memcpy(args[5].bytes.data(), negImage.data(), b * 4);
  return args;
}

/// Throws mm::Error naming WHERE for an id outside the model's vocabulary.
static void checkTokenIds(const std::vector<int32_t> &ids, const SampleFormat &fmt, const std::string &where) {
  for (int32_t id : ids)
    if (id < 0 || id >= fmt.shape.vocab)
      throw Error(where + ": token id " + std::to_string(id) + " is outside the model's vocabulary [0, " +
                  std::to_string(fmt.shape.vocab) + ")");
}

/// T as N int32 values: V, then PAD.
static void padInto(HostTensor &t, const std::vector<int32_t> &v, int64_t n, int32_t pad) {
  t.bytes.resize((size_t)n * 4);
  int32_t *dst = t.as<int32_t>();
  for (int64_t i = 0; i < n; ++i) dst[i] = i < (int64_t)v.size() ? v[i] : pad;
}

/// An encoder-decoder entry's arguments, by name: [pixel_values or image_embeds,] input_ids,
/// length, decoder_input_ids, targets, decoder_length.
static std::vector<HostTensor> encoderDecoderArgs(const EntrySpec &entry, const TrainingSample &s,
                                                  const SampleFormat &fmt, const ImageInput &image) {
  if (s.decoderInputIds.empty())
    throw Error(s.where + ": entry '" + entry.name + "' is an encoder-decoder's; its stage needs the data kind "
                "'image_caption_split' or 'caption_split'");
  auto checkIds = [&](const std::vector<int32_t> &ids, int64_t max, const char *what) {
    if ((int64_t)ids.size() > max || ids.empty())
      throw Error(s.where + ": " + what + " of " + std::to_string(ids.size()) +
                  " tokens does not fit the compiled length " + std::to_string(max));
    checkTokenIds(ids, fmt, s.where);
  };
  std::vector<HostTensor> args(entry.args.size());
  for (size_t a = 0; a < entry.args.size(); ++a) {
    const TensorSpec &spec = entry.args[a];
    HostTensor &t = args[a];
    t.bytes.assign(spec.bytes(), 0);
    auto fill = [&](const std::vector<int32_t> &ids, int32_t pad, const char *what) {
      checkIds(ids, spec.numel(), what);
      padInto(t, ids, spec.numel(), pad);
    };
    if (spec.name == "pixel_values" || spec.name == "image_embeds") {
      imageInto(t, spec, entry, s, fmt, image);
    } else if (spec.name == "input_ids") {
      fill(s.inputIds, fmt.shape.padToken, "encoder input");
    } else if (spec.name == "decoder_input_ids") {
      fill(s.decoderInputIds, fmt.shape.padToken, "decoder input");
    } else if (spec.name == "targets") {
      fill(s.targets, -100, "decoder targets");
    } else if (spec.name == "length" && spec.numel() == 1) {
      *t.as<int32_t>() = (int32_t)s.inputIds.size();
    } else if (spec.name == "decoder_length" && spec.numel() == 1) {
      *t.as<int32_t>() = (int32_t)s.decoderInputIds.size();
    } else {
      throw Error("entry '" + entry.name + "' takes '" + spec.name + "'; an encoder-decoder training entry takes "
                  "[pixel_values or image_embeds,] input_ids, length, decoder_input_ids, targets and decoder_length");
    }
  }
  return args;
}

/// A layout entry's arguments (blip2_layout samples): input_ids,
/// cell_colour_ids, cell_shape_ids, targets, length; no image.
static std::vector<HostTensor> layoutArgs(const EntrySpec &entry, const TrainingSample &s, const SampleFormat &fmt) {
  const char *names[] = {"input_ids", "cell_colour_ids", "cell_shape_ids", "targets", "length"};
  const int64_t maxLen = fmt.shape.maxSequence, q = fmt.shape.imagePositions;
  const int64_t numel[] = {maxLen, q, q, maxLen, 1};
  bool ok = entry.args.size() == 5;
  for (size_t i = 0; ok && i < 5; ++i) ok = entry.args[i].name == names[i] && entry.args[i].numel() == numel[i];
  if (!ok)
    throw Error("entry '" + entry.name + "' does not take (input_ids[1," + std::to_string(maxLen) + "], cell_colour_ids[1," +
                std::to_string(q) + "], cell_shape_ids[1," + std::to_string(q) + "], targets[1," +
                std::to_string(maxLen) + "], length)");
  if ((int64_t)s.cellColourIds.size() != q || (int64_t)s.cellShapeIds.size() != q)
    throw Error(s.where + ": entry '" + entry.name + "' reads the scene's layout; its stage needs the data kind "
                "'caption_layout'");
  if ((int64_t)s.inputIds.size() > maxLen || s.targets.size() != s.inputIds.size() || s.inputIds.empty())
    throw Error(s.where + ": sample of " + std::to_string(s.inputIds.size()) + " tokens does not fit the compiled length " +
                std::to_string(maxLen));
  for (const std::vector<int32_t> *ids : {&s.inputIds, &s.cellColourIds, &s.cellShapeIds})
    checkTokenIds(*ids, fmt, s.where);
  std::vector<HostTensor> args(5);
  padInto(args[0], s.inputIds, maxLen, fmt.shape.padToken);
  padInto(args[1], s.cellColourIds, q, fmt.shape.padToken);
  padInto(args[2], s.cellShapeIds, q, fmt.shape.padToken);
  padInto(args[3], s.targets, maxLen, -100);
  padInto(args[4], {(int32_t)s.inputIds.size()}, 1, 0);
  return args;
}

std::vector<HostTensor> trainArgs(const EntrySpec &entry, const TrainingSample &s, const SampleFormat &fmt,
                                  const ImageInput &image) {
  if ((entry.args.size() == 2 || (entry.args.size() == 3 && entry.args[2].name == "patch_cells")) &&
      entry.args[1].name == "patch_labels")
    return patchLabelArgs(entry, s, fmt);
  for (const TensorSpec &a : entry.args) {
    if (a.name == "decoder_input_ids") return encoderDecoderArgs(entry, s, fmt, image);
    if (a.name == "cell_colour_ids") return layoutArgs(entry, s, fmt);
  }
  if (!s.cellColourIds.empty())
    throw Error(s.where + ": a layout-context sample (caption_layout), but entry '" + entry.name +
                "' takes no cell_colour_ids");
  if (!s.decoderInputIds.empty())
    throw Error(s.where + ": an encoder-decoder sample, but entry '" + entry.name + "' takes no decoder_input_ids");
  const int64_t maxLen = fmt.shape.maxSequence;
  if (entry.args.size() != 4 || entry.args[1].numel() != maxLen || entry.args[2].numel() != maxLen ||
      entry.args[3].numel() != 1)
    throw Error("entry '" + entry.name + "' does not take (pixel_values or image_embeds, input_ids[1," + std::to_string(maxLen) +
                "], targets[1," + std::to_string(maxLen) + "], length)");
  if ((int64_t)s.inputIds.size() > maxLen || s.targets.size() != s.inputIds.size() || s.inputIds.empty())
    throw Error(s.where + ": sample of " + std::to_string(s.inputIds.size()) + " tokens does not fit the compiled length " +
                std::to_string(maxLen));
  checkTokenIds(s.inputIds, fmt, s.where);
  std::vector<HostTensor> args(4);
  args[0].bytes.assign(entry.args[0].bytes(), 0);
  if (s.imagePath) imageInto(args[0], entry.args[0], entry, s, fmt, image);
  padInto(args[1], s.inputIds, maxLen, fmt.shape.padToken);
  padInto(args[2], s.targets, maxLen, -100);
  padInto(args[3], {(int32_t)s.inputIds.size()}, 1, 0);
  return args;
}

} // namespace mm
