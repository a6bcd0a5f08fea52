//===- Tokenizer.cpp - Hugging Face tokenizer.json (byte-level BPE) -------===//

#include "mm/Tokenizer.h"

#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <sys/stat.h>

namespace mm {

using json = nlohmann::json;

//===----------------------------------------------------------------------===//
// UTF-8 and the byte-level alphabet
//===----------------------------------------------------------------------===//

namespace {

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

constexpr uint32_t kInvalidCodePoint = 0xFFFFFFFF;

/// Decodes the UTF-8 character at S[I]; sets LEN to its length in bytes.
/// Malformed input yields kInvalidCodePoint with LEN = 1.
uint32_t decodeUtf8(std::string_view s, size_t i, size_t &len) {
  auto byte = [&](size_t k) { return uint8_t(s[k]); };
  uint8_t b0 = byte(i);
  len = 1;
  if (b0 < 0x80)
    return b0;
  size_t n;
  uint32_t cp, min;
  if ((b0 & 0xE0) == 0xC0) {
    n = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    n = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    n = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return kInvalidCodePoint;
  }
  if (i + n > s.size())
    return kInvalidCodePoint;
  for (size_t k = 1; k < n; ++k) {
    uint8_t b = byte(i + k);
    if ((b & 0xC0) != 0x80)
      return kInvalidCodePoint;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
    return kInvalidCodePoint;
  len = n;
  return cp;
}

/// GPT-2's reversible byte -> unicode mapping: printable Latin-1 bytes map to
/// themselves, the other 68 bytes to U+0100.. in byte order.
struct ByteAlphabet {
  std::array<std::string, 256> byteToUtf8;
  std::unordered_map<uint32_t, uint8_t> codePointToByte;

  ByteAlphabet() {
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                       (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? uint32_t(b) : next++;
      appendUtf8(byteToUtf8[b], cp);
      codePointToByte[cp] = uint8_t(b);
    }
  }
};

const ByteAlphabet &byteAlphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

//===----------------------------------------------------------------------===//
// GPT-2-like word splitting
//===----------------------------------------------------------------------===//

enum class CharClass { Letter, Number, Space, Other };

CharClass classify(uint32_t cp) {
  if (cp < 0x80) {
    if ((cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z'))
      return CharClass::Letter;
    if (cp >= '0' && cp <= '9')
      return CharClass::Number;
    if (cp == ' ' || (cp >= '\t' && cp <= '\r'))
      return CharClass::Space;
    return CharClass::Other;
  }
  if (cp == kInvalidCodePoint)
    return CharClass::Other;
  // Unicode white space.
  if (cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
      (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
      cp == 0x202F || cp == 0x205F || cp == 0x3000)
    return CharClass::Space;
  // A few well-known punctuation / symbol blocks; everything else non-ASCII
  // counts as a letter (approximation, see Tokenizer.h).
  if ((cp >= 0x80 && cp <= 0xBF && cp != 0xAA && cp != 0xB5 && cp != 0xBA) ||
      cp == 0xD7 || cp == 0xF7 || (cp >= 0x2010 && cp <= 0x2027) ||
      (cp >= 0x2030 && cp <= 0x205E) || (cp >= 0x3001 && cp <= 0x3003) ||
      (cp >= 0x3008 && cp <= 0x3011) || (cp >= 0xFF01 && cp <= 0xFF0F) ||
      (cp >= 0xFF1A && cp <= 0xFF20))
    return CharClass::Other;
  return CharClass::Letter;
}

/// Splits TEXT into GPT-2-like words (see Tokenizer.h).
std::vector<std::string_view> splitWords(std::string_view text) {
  std::vector<std::string_view> words;
  size_t n = text.size();
  auto classAt = [&](size_t i, size_t &len) {
    return classify(decodeUtf8(text, i, len));
  };
  auto runEnd = [&](size_t i, CharClass cls) {
    while (i < n) {
      size_t len;
      if (classAt(i, len) != cls)
        break;
      i += len;
    }
    return i;
  };
  size_t i = 0;
  while (i < n) {
    // Contractions: 's 't 're 've 'm 'll 'd
    if (text[i] == '\'' && i + 1 < n) {
      size_t len = 0;
      char c = text[i + 1];
      if (c == 's' || c == 't' || c == 'm' || c == 'd')
        len = 2;
      else if (i + 2 < n && ((c == 'r' && text[i + 2] == 'e') ||
                             (c == 'v' && text[i + 2] == 'e') ||
                             (c == 'l' && text[i + 2] == 'l')))
        len = 3;
      if (len) {
        words.push_back(text.substr(i, len));
        i += len;
        continue;
      }
    }
    size_t len;
    CharClass cls = classAt(i, len);
    if (cls != CharClass::Space) {
      size_t end = runEnd(i, cls);
      words.push_back(text.substr(i, end - i));
      i = end;
      continue;
    }
    // " ?X+" where X is a letter/number/other run.
    if (text[i] == ' ' && i + 1 < n) {
      size_t nextLen;
      CharClass next = classAt(i + 1, nextLen);
      if (next != CharClass::Space) {
        size_t end = runEnd(i + 1, next);
        words.push_back(text.substr(i, end - i));
        i = end;
        continue;
      }
    }
    // Whitespace run: if more text follows, its last character is left for
    // the next word ("\s+(?!\S)"), unless the run is a single character.
    size_t end = runEnd(i, CharClass::Space);
    if (end < n) {
      size_t last = end, lastLen = 0;
      // Find the start of the run's last character.
      size_t k = i;
      while (k < end) {
        decodeUtf8(text, k, lastLen);
        last = k;
        k += lastLen;
      }
      if (last > i)
        end = last;
    }
    words.push_back(text.substr(i, end - i));
    i = end;
  }
  return words;
}

std::string jsonTypeName(const json &j) { return j.type_name(); }

/// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string jsonMessage(const nlohmann::json::exception &e) {
  std::string msg = e.what();
  if (!msg.empty() && msg[0] == '[') {
    size_t close = msg.find("] ");
    if (close != std::string::npos)
      msg.erase(0, close + 2);
  }
  return msg;
}

} // namespace

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

void Tokenizer::fail(const std::string &msg) const {
  throw Error(path_ + ": " + msg);
}

namespace {

std::string readFile(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    throw Error(path + ": cannot open: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode))
    throw Error(path + ": not a regular file");
  std::ifstream f(path, std::ios::binary);
  if (!f)
    throw Error(path + ": cannot open: " + std::strerror(errno));
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad())
    throw Error(path + ": read error");
  return ss.str();
}

bool optBool(const json &obj, const char *key) {
  auto it = obj.find(key);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

} // namespace

Tokenizer Tokenizer::fromFile(const std::string &path) {
  return fromJson(readFile(path), path);
}

Tokenizer Tokenizer::fromJson(const std::string &text,
                              const std::string &path) {
  Tokenizer tok;
  tok.path_ = path;

  json root;
  try {
    root = json::parse(text);
  } catch (const json::exception &e) {
    tok.fail("not valid JSON: " + jsonMessage(e));
  }
  if (!root.is_object())
    tok.fail("top level is a JSON " + jsonTypeName(root) +
             ", expected an object");

  try {
    // --- model --------------------------------------------------------------
    auto modelIt = root.find("model");
    if (modelIt == root.end() || modelIt->is_null())
      tok.fail("missing \"model\"");
    const json &model = *modelIt;
    if (!model.is_object())
      tok.fail("\"model\" is a JSON " + jsonTypeName(model) +
               ", expected an object");
    auto typeIt = model.find("type");
    std::string modelType;
    if (typeIt != model.end()) {
      if (!typeIt->is_string())
        tok.fail("\"model.type\" is not a string");
      modelType = typeIt->get<std::string>();
    } else if (model.contains("merges")) {
      modelType = "BPE"; // old files omit the type
    }
    if (modelType != "BPE")
      tok.fail("unsupported model type \"" + modelType +
               "\" (only \"BPE\" is supported)");
    for (const char *key :
         {"continuing_subword_prefix", "end_of_word_suffix"}) {
      auto it = model.find(key);
      if (it != model.end() && !it->is_null() &&
          !(it->is_string() && it->get<std::string>().empty()))
        tok.fail(std::string("unsupported BPE option \"") + key + "\"");
    }

    auto vocabIt = model.find("vocab");
    if (vocabIt == model.end() || !vocabIt->is_object())
      tok.fail("\"model.vocab\" is missing or not an object");
    const json &vocab = *vocabIt;

    const json emptyArray = json::array();
    auto addedIt = root.find("added_tokens");
    const json &added =
        (addedIt == root.end() || addedIt->is_null()) ? emptyArray : *addedIt;
    if (!added.is_array())
      tok.fail("\"added_tokens\" is not an array");

    // A dense vocabulary has every id below the number of entries.
    uint64_t limit = uint64_t(vocab.size()) + uint64_t(added.size());
    if (limit > uint64_t(std::numeric_limits<int32_t>::max()))
      tok.fail("vocabulary is too large");
    auto checkId = [&](const json &j, const std::string &what) -> int32_t {
      if (!j.is_number_integer())
        tok.fail(what + ": id is a JSON " + jsonTypeName(j) +
                 ", expected an integer");
      if (j.is_number_unsigned()
              ? j.get<uint64_t>() >= limit
              : j.get<int64_t>() < 0 || uint64_t(j.get<int64_t>()) >= limit)
        tok.fail(what + ": id " + j.dump() + " is out of range [0, " +
                 std::to_string(limit) + ")");
      return int32_t(j.get<int64_t>());
    };

    int32_t maxId = -1;
    std::vector<std::pair<int32_t, std::string>> entries;
    entries.reserve(vocab.size());
    for (auto it = vocab.begin(); it != vocab.end(); ++it) {
      int32_t id = checkId(it.value(), "vocab token \"" + it.key() + "\"");
      entries.emplace_back(id, it.key());
      maxId = std::max(maxId, id);
    }
    std::vector<AddedToken> addedTokens;
    for (size_t i = 0; i < added.size(); ++i) {
      const json &a = added[i];
      std::string what = "added_tokens[" + std::to_string(i) + "]";
      if (!a.is_object())
        tok.fail(what + " is not an object");
      auto content = a.find("content");
      if (content == a.end() || !content->is_string() ||
          content->get_ref<const std::string &>().empty())
        tok.fail(what + ": \"content\" is missing or not a non-empty string");
      auto idIt = a.find("id");
      if (idIt == a.end())
        tok.fail(what + ": missing \"id\"");
      AddedToken t;
      t.content = content->get<std::string>();
      t.id = checkId(*idIt, what + " \"" + t.content + "\"");
      t.special = optBool(a, "special");
      t.lstrip = optBool(a, "lstrip");
      t.rstrip = optBool(a, "rstrip");
      maxId = std::max(maxId, t.id);
      addedTokens.push_back(std::move(t));
    }

    tok.idToToken_.assign(size_t(maxId + 1), std::string());
    tok.isSpecial_.assign(size_t(maxId + 1), 0);
    std::vector<uint8_t> used(size_t(maxId + 1), 0);
    for (auto &[id, token] : entries) {
      if (used[id])
        tok.fail("vocab tokens \"" + tok.idToToken_[id] + "\" and \"" + token +
                 "\" share id " + std::to_string(id));
      used[id] = 1;
      tok.idToToken_[id] = token;
      tok.tokenToId_[token] = id;
    }
    for (const AddedToken &t : addedTokens) {
      tok.idToToken_[t.id] = t.content;
      tok.tokenToId_[t.content] = t.id;
      tok.isSpecial_[t.id] = t.special;
    }
    tok.added_ = addedTokens;
    // Longest first, so that matching picks the longest added token.
    std::sort(tok.added_.begin(), tok.added_.end(),
              [](const AddedToken &a, const AddedToken &b) {
                if (a.content.size() != b.content.size())
                  return a.content.size() > b.content.size();
                return a.id < b.id;
              });

    // --- merges
    // ---------------------------------------------------------------
    auto lookupVocab = [&](const std::string &token) -> std::optional<int32_t> {
      auto it = tok.tokenToId_.find(token);
      if (it == tok.tokenToId_.end())
        return std::nullopt;
      return it->second;
    };
    auto mergesIt = model.find("merges");
    if (mergesIt != model.end() && !mergesIt->is_null()) {
      if (!mergesIt->is_array())
        tok.fail("\"model.merges\" is not an array");
      const json &merges = *mergesIt;
      for (size_t rank = 0; rank < merges.size(); ++rank) {
        const json &m = merges[rank];
        std::string what = "merge #" + std::to_string(rank);
        std::string left, right;
        if (m.is_string()) {
          const std::string &s = m.get_ref<const std::string &>();
          size_t space = s.find(' ');
          if (space == std::string::npos || space == 0 ||
              space + 1 >= s.size() ||
              s.find(' ', space + 1) != std::string::npos)
            tok.fail(what + " \"" + s + "\" is not of the form \"a b\"");
          left = s.substr(0, space);
          right = s.substr(space + 1);
        } else if (m.is_array() && m.size() == 2 && m[0].is_string() &&
                   m[1].is_string()) {
          left = m[0].get<std::string>();
          right = m[1].get<std::string>();
        } else {
          tok.fail(what + " is " + m.dump() +
                   ", expected \"a b\" or [\"a\", \"b\"]");
        }
        std::string shown = what + " (\"" + left + "\", \"" + right + "\")";
        auto l = lookupVocab(left), r = lookupVocab(right);
        if (!l)
          tok.fail(shown + " names \"" + left +
                   "\", which is not in the vocabulary");
        if (!r)
          tok.fail(shown + " names \"" + right +
                   "\", which is not in the vocabulary");
        auto merged = lookupVocab(left + right);
        if (!merged)
          tok.fail(shown + " produces \"" + left + right +
                   "\", which is not in the vocabulary");
        uint64_t key = (uint64_t(uint32_t(*l)) << 32) | uint32_t(*r);
        tok.merges_.emplace(key, std::make_pair(int32_t(rank), *merged));
      }
    }

    // --- BPE options
    // ------------------------------------------------------------
    auto unkIt = model.find("unk_token");
    if (unkIt != model.end() && !unkIt->is_null()) {
      if (!unkIt->is_string())
        tok.fail("\"model.unk_token\" is not a string");
      auto id = lookupVocab(unkIt->get<std::string>());
      if (!id)
        tok.fail("unk_token \"" + unkIt->get<std::string>() +
                 "\" is not in the vocabulary");
      tok.unk_ = id;
    }
    tok.fuseUnk_ = optBool(model, "fuse_unk");
    tok.byteFallback_ = optBool(model, "byte_fallback");
    tok.ignoreMerges_ = optBool(model, "ignore_merges");

    // --- normalizer
    // -----------------------------------------------------------
    std::function<void(const json &)> checkNormalizer = [&](const json &n) {
      if (n.is_null())
        return;
      if (!n.is_object() || !n.contains("type") || !n["type"].is_string())
        tok.fail("\"normalizer\" has no type");
      std::string type = n["type"].get<std::string>();
      if (type == "Sequence") {
        auto list = n.find("normalizers");
        if (list == n.end() || !list->is_array())
          tok.fail("normalizer Sequence without a \"normalizers\" array");
        for (const json &child : *list)
          checkNormalizer(child);
        return;
      }
      if (type == "NFC" || type == "NFKC" || type == "NFD" || type == "NFKD")
        return; // accepted, not applied (see Tokenizer.h)
      tok.fail("unsupported normalizer type \"" + type + "\"");
    };
    if (root.contains("normalizer"))
      checkNormalizer(root["normalizer"]);

    // --- pre_tokenizer
    // --------------------------------------------------------
    std::function<void(const json &)> readPreTokenizer = [&](const json &p) {
      if (p.is_null())
        return;
      if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
        tok.fail("\"pre_tokenizer\" has no type");
      std::string type = p["type"].get<std::string>();
      if (type == "Sequence") {
        auto list = p.find("pretokenizers");
        if (list == p.end() || !list->is_array())
          tok.fail("pre_tokenizer Sequence without a \"pretokenizers\" array");
        for (const json &child : *list)
          readPreTokenizer(child);
      } else if (type == "ByteLevel") {
        tok.byteLevel_ = true;
        auto aps = p.find("add_prefix_space");
        tok.addPrefixSpace_ =
            aps == p.end() || !aps->is_boolean() || aps->get<bool>();
        auto regex = p.find("use_regex");
        if (regex == p.end() || !regex->is_boolean() || regex->get<bool>())
          tok.splitWords_ = true;
      } else if (type == "Split") {
        tok.splitWords_ = true; // GPT-2-like rule instead of its pattern
      } else {
        tok.fail("unsupported pre_tokenizer type \"" + type + "\"");
      }
    };
    if (root.contains("pre_tokenizer"))
      readPreTokenizer(root["pre_tokenizer"]);

    // --- decoder
    // --------------------------------------------------------------
    std::function<void(const json &)> readDecoder = [&](const json &d) {
      if (d.is_null())
        return;
      if (!d.is_object() || !d.contains("type") || !d["type"].is_string())
        tok.fail("\"decoder\" has no type");
      std::string type = d["type"].get<std::string>();
      if (type == "Sequence") {
        auto list = d.find("decoders");
        if (list == d.end() || !list->is_array())
          tok.fail("decoder Sequence without a \"decoders\" array");
        for (const json &child : *list)
          readDecoder(child);
      } else if (type == "ByteLevel") {
        tok.byteLevel_ = true;
      } else {
        tok.fail("unsupported decoder type \"" + type + "\"");
      }
    };
    if (root.contains("decoder"))
      readDecoder(root["decoder"]);

    // --- post_processor
    // -------------------------------------------------------
    auto specialIdsOf = [&](const json &pair, const std::string &what) {
      // RobertaProcessing / BertProcessing: ["<s>", 0]
      if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string())
        tok.fail("post_processor " + what + " is not [token, id]");
      return checkId(pair[1], "post_processor " + what);
    };
    std::function<void(const json &)> readPost = [&](const json &p) {
      if (p.is_null())
        return;
      if (!p.is_object() || !p.contains("type") || !p["type"].is_string())
        tok.fail("\"post_processor\" has no type");
      std::string type = p["type"].get<std::string>();
      if (type == "Sequence") {
        auto list = p.find("processors");
        if (list == p.end() || !list->is_array())
          tok.fail("post_processor Sequence without a \"processors\" array");
        for (const json &child : *list)
          readPost(child);
      } else if (type == "ByteLevel") {
        // Only adjusts offsets.
      } else if (type == "RobertaProcessing" || type == "BertProcessing") {
        if (!p.contains("cls") || !p.contains("sep"))
          tok.fail("post_processor " + type + " without cls/sep");
        tok.prefixIds_ = {specialIdsOf(p["cls"], "cls")};
        tok.suffixIds_ = {specialIdsOf(p["sep"], "sep")};
      } else if (type == "TemplateProcessing") {
        auto single = p.find("single");
        if (single == p.end() || !single->is_array())
          tok.fail("TemplateProcessing without a \"single\" array");
        const json emptyObject = json::object();
        auto specialsIt = p.find("special_tokens");
        const json &specials =
            (specialsIt == p.end() || !specialsIt->is_object()) ? emptyObject
                                                                : *specialsIt;
        std::vector<int32_t> prefix, suffix;
        bool seenA = false;
        for (const json &piece : *single) {
          if (piece.is_object() && piece.contains("SpecialToken")) {
            const json &st = piece["SpecialToken"];
            if (!st.is_object() || !st.contains("id") || !st["id"].is_string())
              tok.fail("TemplateProcessing SpecialToken without an id");
            std::string name = st["id"].get<std::string>();
            auto entry = specials.find(name);
            if (entry == specials.end() || !entry->is_object() ||
                !entry->contains("ids") || !(*entry)["ids"].is_array())
              tok.fail("TemplateProcessing special token \"" + name +
                       "\" is not listed in \"special_tokens\"");
            for (const json &id : (*entry)["ids"])
              (seenA ? suffix : prefix)
                  .push_back(
                      checkId(id, "TemplateProcessing \"" + name + "\""));
          } else if (piece.is_object() && piece.contains("Sequence")) {
            const json &seq = piece["Sequence"];
            std::string id =
                seq.is_object() && seq.contains("id") && seq["id"].is_string()
                    ? seq["id"].get<std::string>()
                    : "";
            if (id != "A")
              tok.fail("TemplateProcessing single template uses sequence \"" +
                       id + "\", expected \"A\"");
            if (seenA)
              tok.fail("TemplateProcessing single template uses $A twice");
            seenA = true;
          } else {
            tok.fail("TemplateProcessing single template piece " +
                     piece.dump() + " is not understood");
          }
        }
        if (!seenA)
          tok.fail("TemplateProcessing single template has no $A");
        tok.prefixIds_ = std::move(prefix);
        tok.suffixIds_ = std::move(suffix);
      } else {
        tok.fail("unsupported post_processor type \"" + type + "\"");
      }
    };
    if (root.contains("post_processor"))
      readPost(root["post_processor"]);
  } catch (const json::exception &e) {
    tok.fail("malformed tokenizer.json: " + jsonMessage(e));
  }

  // --- BOS / EOS
  // --------------------------------------------------------------
  auto byName =
      [&](std::initializer_list<const char *> names) -> std::optional<int32_t> {
    for (const char *n : names) {
      auto it = tok.tokenToId_.find(n);
      if (it != tok.tokenToId_.end())
        return it->second;
    }
    return std::nullopt;
  };
  tok.bos_ = !tok.prefixIds_.empty()
                 ? std::optional<int32_t>(tok.prefixIds_.front())
                 : byName({"<s>", "<|begin_of_text|>", "<|startoftext|>",
                           "<bos>", "<BOS>"});
  tok.eos_ = !tok.suffixIds_.empty()
                 ? std::optional<int32_t>(tok.suffixIds_.back())
                 : byName({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>",
                           "<EOS>"});
  return tok;
}

//===----------------------------------------------------------------------===//
// Encoding
//===----------------------------------------------------------------------===//

void Tokenizer::encodeWord(const std::string &word,
                           std::vector<int32_t> &out) const {
  if (word.empty())
    return;
  if (ignoreMerges_) {
    auto it = tokenToId_.find(word);
    if (it != tokenToId_.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Initial symbols: one per character.
  std::vector<int32_t> syms;
  bool lastWasUnk = false;
  for (size_t i = 0; i < word.size();) {
    size_t len;
    decodeUtf8(word, i, len);
    std::string ch = word.substr(i, len);
    i += len;
    auto it = tokenToId_.find(ch);
    if (it != tokenToId_.end()) {
      syms.push_back(it->second);
      lastWasUnk = false;
      continue;
    }
    if (byteFallback_) {
      std::vector<int32_t> bytes;
      for (unsigned char c : ch) {
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", c);
        auto b = tokenToId_.find(name);
        if (b == tokenToId_.end())
          break;
        bytes.push_back(b->second);
      }
      if (bytes.size() == ch.size()) {
        syms.insert(syms.end(), bytes.begin(), bytes.end());
        lastWasUnk = false;
        continue;
      }
    }
    if (!unk_) {
      std::string hex;
      for (unsigned char c : ch) {
        char buf[4];
        std::snprintf(buf, sizeof(buf), "%02X", c);
        hex += buf;
      }
      fail("cannot encode character (bytes " + hex +
           "): it is not in the vocabulary and there is no unk_token");
    }
    if (!(fuseUnk_ && lastWasUnk))
      syms.push_back(*unk_);
    lastWasUnk = true;
  }

  // Merge by rank (lowest first, leftmost on ties) with a heap over a linked
  // list of symbols, so long words stay O(n log n).
  size_t n = syms.size();
  if (n > 1 && !merges_.empty()) {
    std::vector<int32_t> prev(n), next(n);
    std::vector<uint8_t> alive(n, 1);
    for (size_t i = 0; i < n; ++i) {
      prev[i] = int32_t(i) - 1;
      next[i] = i + 1 < n ? int32_t(i + 1) : -1;
    }
    struct Candidate {
      int32_t rank, pos, left, right;
      bool operator>(const Candidate &o) const {
        return rank != o.rank ? rank > o.rank : pos > o.pos;
      }
    };
    std::priority_queue<Candidate, std::vector<Candidate>,
                        std::greater<Candidate>>
        heap;
    auto push = [&](int32_t pos) {
      if (pos < 0 || next[pos] < 0)
        return;
      int32_t l = syms[pos], r = syms[next[pos]];
      auto it = merges_.find((uint64_t(uint32_t(l)) << 32) | uint32_t(r));
      if (it != merges_.end())
        heap.push({it->second.first, pos, l, r});
    };
    for (size_t i = 0; i + 1 < n; ++i)
      push(int32_t(i));
    while (!heap.empty()) {
      Candidate c = heap.top();
      heap.pop();
      int32_t pos = c.pos;
      if (!alive[pos] || syms[pos] != c.left || next[pos] < 0 ||
          syms[next[pos]] != c.right)
        continue; // stale
      int32_t victim = next[pos];
      syms[pos] =
          merges_.at((uint64_t(uint32_t(c.left)) << 32) | uint32_t(c.right))
              .second;
      alive[victim] = 0;
      next[pos] = next[victim];
      if (next[pos] >= 0)
        prev[next[pos]] = pos;
      push(prev[pos]);
      push(pos);
    }
    for (size_t i = 0; i < n; ++i)
      if (alive[i])
        out.push_back(syms[i]);
    return;
  }
  out.insert(out.end(), syms.begin(), syms.end());
}

void Tokenizer::encodeText(std::string_view text,
                           std::vector<int32_t> &out) const {
  if (text.empty())
    return;
  std::string withPrefix;
  if (addPrefixSpace_ && text.front() != ' ') {
    withPrefix = " ";
    withPrefix.append(text);
    text = withPrefix;
  }
  std::vector<std::string_view> words;
  if (splitWords_)
    words = splitWords(text);
  else
    words.push_back(text);
  const ByteAlphabet &alphabet = byteAlphabet();
  std::string mapped;
  for (std::string_view w : words) {
    if (byteLevel_) {
      mapped.clear();
      for (unsigned char c : w)
        mapped += alphabet.byteToUtf8[c];
      encodeWord(mapped, out);
    } else {
      encodeWord(std::string(w), out);
    }
  }
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecial) const {
  std::vector<int32_t> out;
  if (addSpecial)
    out = prefixIds_;
  auto isSpace = [](char c) { return c == ' ' || (c >= '\t' && c <= '\r'); };
  size_t segStart = 0, i = 0;
  while (i < text.size()) {
    const AddedToken *match = nullptr;
    for (const AddedToken &t : added_)
      if (text.compare(i, t.content.size(), t.content) == 0) {
        match = &t; // longest first
        break;
      }
    if (!match) {
      ++i;
      continue;
    }
    size_t segEnd = i;
    if (match->lstrip)
      while (segEnd > segStart && isSpace(text[segEnd - 1]))
        --segEnd;
    encodeText(text.substr(segStart, segEnd - segStart), out);
    out.push_back(match->id);
    i += match->content.size();
    if (match->rstrip)
      while (i < text.size() && isSpace(text[i]))
        ++i;
    segStart = i;
  }
  encodeText(text.substr(segStart), out);
  if (addSpecial)
    out.insert(out.end(), suffixIds_.begin(), suffixIds_.end());
  return out;
}

//===----------------------------------------------------------------------===//
// Decoding and lookups
//===----------------------------------------------------------------------===//

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecial) const {
  const ByteAlphabet &alphabet = byteAlphabet();
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || id >= vocabSize())
      fail("cannot decode token id " + std::to_string(id) +
           ": out of range [0, " + std::to_string(vocabSize()) + ")");
    if (skipSpecial && isSpecial_[id])
      continue;
    const std::string &token = idToToken_[id];
    if (!byteLevel_) {
      out += token;
      continue;
    }
    // Map each character back to its byte; a token with characters outside
    // the byte alphabet (an added token such as "\n\n") is copied as is.
    std::string bytes;
    bool ok = true;
    for (size_t i = 0; i < token.size();) {
      size_t len;
      uint32_t cp = decodeUtf8(token, i, len);
      auto it = alphabet.codePointToByte.find(cp);
      if (it == alphabet.codePointToByte.end()) {
        ok = false;
        break;
      }
      bytes.push_back(char(it->second));
      i += len;
    }
    out += ok ? bytes : token;
  }
  return out;
}

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  auto it = tokenToId_.find(std::string(token));
  if (it == tokenToId_.end())
    return std::nullopt;
  return it->second;
}

std::string Tokenizer::idToToken(int32_t id) const {
  if (id < 0 || id >= vocabSize())
    fail("token id " + std::to_string(id) + " is out of range [0, " +
         std::to_string(vocabSize()) + ")");
  return idToToken_[id];
}

} // namespace mm
