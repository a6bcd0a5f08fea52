//===- Tokenizer.cpp - Hugging Face tokenizer.json (BPE) ------------------===//
//
// The pipeline of Hugging Face's `tokenizers` (see mm/Tokenizer.h): added
// tokens, normalizer, pre-tokenizer, BPE model, post-processor; and the
// decoder chain for decode().
//
//===----------------------------------------------------------------------===//

#include "JsonMessage.h"
#include "mm/Tokenizer.h"

#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <limits>
#include <queue>
#include <sstream>
#include <sys/stat.h>
#include <unordered_map>

namespace mm {

using json = nlohmann::json;

//===----------------------------------------------------------------------===//
// Unicode
//===----------------------------------------------------------------------===//

namespace tokenizer {
namespace {

struct CharRange {
  uint32_t first, last;
  uint8_t cls;
};
struct LowerRun {
  uint32_t first, last, stride;
  int32_t delta;
};

#include "TokenizerUnicode.inc"

} // namespace

CharClass charClass(uint32_t cp) {
  static const std::array<uint8_t, 128> ascii = [] {
    std::array<uint8_t, 128> t{};
    for (uint32_t c = 0; c < 128; ++c) {
      uint8_t k = 0;
      for (const CharRange &r : kCharRanges) {
        if (r.first > c)
          break;
        if (c <= r.last) {
          k = r.cls;
          break;
        }
      }
      t[c] = k;
    }
    return t;
  }();
  if (cp < 128)
    return CharClass(ascii[cp]);
  const CharRange *end = kCharRanges + sizeof(kCharRanges) / sizeof(kCharRanges[0]);
  const CharRange *it = std::upper_bound(
      kCharRanges, end, cp,
      [](uint32_t c, const CharRange &r) { return c < r.first; });
  if (it == kCharRanges)
    return CharClass::Other;
  --it;
  return cp <= it->last ? CharClass(it->cls) : CharClass::Other;
}

} // namespace tokenizer

using tokenizer::CharClass;
using tokenizer::charClass;

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

/// The character at S[I]: code point, length in bytes and class.
struct Char {
  uint32_t cp;
  size_t len;
  CharClass cls;
};
Char charAt(std::string_view s, size_t i) {
  Char c;
  c.cp = decodeUtf8(s, i, c.len);
  c.cls = c.cp == kInvalidCodePoint ? CharClass::Other : charClass(c.cp);
  return c;
}

bool isSpaceCp(uint32_t cp) {
  return cp != kInvalidCodePoint && charClass(cp) == CharClass::Space;
}

/// \w as Rust's regex crate defines it, near enough: letters, marks, numbers
/// and connector punctuation.
bool isWordCp(uint32_t cp) {
  if (cp == kInvalidCodePoint)
    return false;
  CharClass k = charClass(cp);
  if (k == CharClass::Letter || k == CharClass::Number || k == CharClass::Mark)
    return true;
  return cp == '_' || cp == 0x203F || cp == 0x2040 || cp == 0x2054 ||
         cp == 0xFE33 || cp == 0xFE34 || (cp >= 0xFE4D && cp <= 0xFE4F) ||
         cp == 0xFF3F;
}

/// Rust's char::to_lowercase for one code point, as UTF-8.
void appendLower(std::string &out, uint32_t cp) {
  using tokenizer::kLowerRuns;
  if (cp == 0x130) { // İ -> i + combining dot above
    appendUtf8(out, 'i');
    appendUtf8(out, 0x307);
    return;
  }
  if (cp >= 'A' && cp <= 'Z') {
    out.push_back(char(cp + 32));
    return;
  }
  if (cp >= 0x80) {
    const auto *end = kLowerRuns + sizeof(kLowerRuns) / sizeof(kLowerRuns[0]);
    const auto *it = std::upper_bound(
        kLowerRuns, end, cp,
        [](uint32_t c, const tokenizer::LowerRun &r) { return c < r.first; });
    if (it != kLowerRuns) {
      --it;
      if (cp <= it->last && (cp - it->first) % it->stride == 0)
        cp = uint32_t(int64_t(cp) + it->delta);
    }
  }
  appendUtf8(out, cp);
}

/// Start of the last character of the non-empty S[begin, end).
size_t lastCharStart(std::string_view s, size_t begin, size_t end) {
  size_t k = begin, last = begin, len;
  while (k < end) {
    decodeUtf8(s, k, len);
    last = k;
    k += len;
  }
  return last;
}

template <typename Pred>
size_t runEnd(std::string_view s, size_t i, Pred pred) {
  while (i < s.size()) {
    Char c = charAt(s, i);
    if (!pred(c))
      break;
    i += c.len;
  }
  return i;
}

bool isLetter(const Char &c) { return c.cls == CharClass::Letter; }
bool isNumber(const Char &c) { return c.cls == CharClass::Number; }
bool isSpace(const Char &c) { return c.cls == CharClass::Space; }
/// [^\s\p{L}\p{N}]
bool isOtherChar(const Char &c) {
  return c.cls != CharClass::Space && c.cls != CharClass::Letter &&
         c.cls != CharClass::Number;
}

/// The end of "\s+(?!\S)|\s+" matched at I (a white-space character).
size_t whitespaceMatchEnd(std::string_view t, size_t i) {
  size_t k = runEnd(t, i, isSpace);
  if (k == t.size())
    return k;
  size_t last = lastCharStart(t, i, k);
  return last > i ? last : k;
}

/// The end of GPT-2's pattern matched at I:
/// 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
size_t gpt2MatchEnd(std::string_view t, size_t i) {
  size_t n = t.size();
  if (t[i] == '\'' && i + 1 < n) {
    char c = t[i + 1];
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
      return i + 2;
    if (i + 2 < n && ((c == 'r' && t[i + 2] == 'e') ||
                      (c == 'v' && t[i + 2] == 'e') ||
                      (c == 'l' && t[i + 2] == 'l')))
      return i + 3;
  }
  size_t j = (t[i] == ' ' && i + 1 < n) ? i + 1 : i;
  Char c = charAt(t, j);
  if (c.cls == CharClass::Letter)
    return runEnd(t, j, isLetter);
  if (c.cls == CharClass::Number)
    return runEnd(t, j, isNumber);
  if (isOtherChar(c))
    return runEnd(t, j, isOtherChar);
  // t[i] is white space (a lone ' ' before white space, or other space).
  return whitespaceMatchEnd(t, i);
}

/// The end of the Llama-3 (MAXDIGITS 3) / Qwen2 (MAXDIGITS 1) pattern at I:
/// (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
///  ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
size_t llama3MatchEnd(std::string_view t, size_t i, int maxDigits) {
  size_t n = t.size();
  auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; };
  if (t[i] == '\'' && i + 1 < n) {
    char c = lower(t[i + 1]);
    if (c == 's' || c == 't' || c == 'm' || c == 'd')
      return i + 2;
    if (i + 2 < n) {
      char d = lower(t[i + 2]);
      if ((c == 'r' && d == 'e') || (c == 'v' && d == 'e') ||
          (c == 'l' && d == 'l'))
        return i + 3;
    }
  }
  Char c0 = charAt(t, i);
  if (c0.cls == CharClass::Letter)
    return runEnd(t, i, isLetter);
  if (c0.cp != '\r' && c0.cp != '\n' && c0.cls != CharClass::Number) {
    size_t j = i + c0.len;
    if (j < n && charAt(t, j).cls == CharClass::Letter)
      return runEnd(t, j, isLetter);
  }
  if (c0.cls == CharClass::Number) {
    size_t k = i;
    for (int d = 0; d < maxDigits && k < n; ++d) {
      Char c = charAt(t, k);
      if (c.cls != CharClass::Number)
        break;
      k += c.len;
    }
    return k;
  }
  size_t j = (t[i] == ' ' && i + 1 < n) ? i + 1 : i;
  Char cj = charAt(t, j);
  if (isOtherChar(cj)) {
    size_t k = runEnd(t, j, isOtherChar);
    while (k < n && (t[k] == '\r' || t[k] == '\n'))
      ++k;
    return k;
  }
  // White space.
  size_t k = runEnd(t, i, isSpace);
  for (size_t p = k; p > i; --p)
    if (t[p - 1] == '\r' || t[p - 1] == '\n')
      return p;
  return whitespaceMatchEnd(t, i);
}

} // namespace

namespace tokenizer {

std::vector<std::string_view> splitGpt2(std::string_view text) {
  std::vector<std::string_view> out;
  for (size_t i = 0; i < text.size();) {
    size_t end = gpt2MatchEnd(text, i);
    out.push_back(text.substr(i, end - i));
    i = end;
  }
  return out;
}

const std::array<std::string, 256> &byteLevelAlphabet() {
  static const std::array<std::string, 256> table = [] {
    std::array<std::string, 256> t;
    uint32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                       (b >= 0xAE && b <= 0xFF);
      appendUtf8(t[b], printable ? uint32_t(b) : next++);
    }
    return t;
  }();
  return table;
}

} // namespace tokenizer

namespace {

/// Code point of a byte-level character -> its byte (-1 if none).
int byteOfCodePoint(uint32_t cp) {
  static const std::vector<int16_t> table = [] {
    std::vector<int16_t> t(512, -1);
    const auto &alphabet = tokenizer::byteLevelAlphabet();
    for (int b = 0; b < 256; ++b) {
      size_t len;
      t[decodeUtf8(alphabet[b], 0, len)] = int16_t(b);
    }
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

//===----------------------------------------------------------------------===//
// Splitting with a delimiter behavior
//===----------------------------------------------------------------------===//

enum class Behavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

/// Applies BEHAVIOR to MATCHES (sorted, disjoint [begin, end) ranges of
/// TEXT; INVERT swaps matches and the text between them) and returns the
/// non-empty pieces, as HF's NormalizedString::split does.
std::vector<std::pair<size_t, size_t>>
applyBehavior(size_t size, const std::vector<std::pair<size_t, size_t>> &matches,
              Behavior behavior, bool invert) {
  struct Span {
    size_t begin, end;
    bool match;
  };
  std::vector<Span> spans;
  size_t pos = 0;
  for (auto [b, e] : matches) {
    if (b > pos)
      spans.push_back({pos, b, invert});
    if (e > b)
      spans.push_back({b, e, !invert});
    pos = e;
  }
  if (pos < size)
    spans.push_back({pos, size, invert});

  std::vector<std::pair<size_t, size_t>> out;
  bool prevMatch = false, havePrev = false;
  for (const Span &s : spans) {
    switch (behavior) {
    case Behavior::Removed:
      if (!s.match)
        out.emplace_back(s.begin, s.end);
      break;
    case Behavior::Isolated:
      out.emplace_back(s.begin, s.end);
      break;
    case Behavior::MergedWithPrevious:
      if (s.match && havePrev && !prevMatch)
        out.back().second = s.end;
      else
        out.emplace_back(s.begin, s.end);
      break;
    case Behavior::MergedWithNext:
      if (!s.match && havePrev && prevMatch)
        out.back().second = s.end;
      else
        out.emplace_back(s.begin, s.end);
      break;
    case Behavior::Contiguous:
      if (s.match && havePrev && prevMatch)
        out.back().second = s.end;
      else
        out.emplace_back(s.begin, s.end);
      break;
    }
    havePrev = true;
    prevMatch = s.match;
  }
  return out;
}

/// Non-overlapping occurrences of PATTERN in TEXT, left to right.
std::vector<std::pair<size_t, size_t>> findAll(std::string_view text,
                                               std::string_view pattern) {
  std::vector<std::pair<size_t, size_t>> out;
  if (pattern.empty())
    return out;
  for (size_t p = text.find(pattern); p != std::string_view::npos;
       p = text.find(pattern, p + pattern.size()))
    out.emplace_back(p, p + pattern.size());
  return out;
}

/// Matches of a character predicate, one per character, or one per run when
/// RUNS.
template <typename Pred>
std::vector<std::pair<size_t, size_t>> charMatches(std::string_view text, Pred pred,
                                                   bool runs) {
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t i = 0; i < text.size();) {
    Char c = charAt(text, i);
    if (!pred(c)) {
      i += c.len;
      continue;
    }
    size_t end = runs ? runEnd(text, i, pred) : i + c.len;
    out.emplace_back(i, end);
    i = end;
  }
  return out;
}

std::string replaceAll(std::string_view text, std::string_view pattern,
                       std::string_view content) {
  std::string out;
  size_t pos = 0;
  for (auto [b, e] : findAll(text, pattern)) {
    out.append(text.substr(pos, b - pos));
    out.append(content);
    pos = e;
  }
  out.append(text.substr(pos));
  return out;
}

bool startsWith(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

std::string jsonTypeName(const json &j) { return j.type_name(); }

using detail::jsonMessage;

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

bool optBool(const json &obj, const char *key, bool dflt = false) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_boolean())
    return dflt;
  return it->get<bool>();
}

} // namespace

//===----------------------------------------------------------------------===//
// The pipeline's components
//===----------------------------------------------------------------------===//

namespace {

struct NormalizerStep {
  enum Kind { Prepend, Replace, Strip, Lowercase } kind;
  std::string a, b; // Prepend: a; Replace: a -> b
  bool left = false, right = false;
};

enum class RegexKind { Gpt2, Llama3, Qwen2 };

struct PreTokenizerStep {
  enum Kind {
    ByteLevel,
    Metaspace,
    SplitString,
    SplitRegex,
    Whitespace,
    WhitespaceSplit,
    Digits,
    Punctuation,
    Bert,
    CharDelimiter,
  } kind;
  bool addPrefixSpace = false, useRegex = true; // ByteLevel
  std::string replacement;                      // Metaspace
  enum Prepend { Always, First, Never } prepend = Always;
  bool split = true;  // Metaspace
  std::string pattern; // SplitString, CharDelimiter
  RegexKind regex = RegexKind::Gpt2;
  Behavior behavior = Behavior::Isolated;
  bool invert = false;
  bool individualDigits = false;
};

struct DecoderStep {
  enum Kind { ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace } kind;
  std::string a, b; // Replace: a -> b; Strip: a = content; Metaspace: a
  size_t start = 0, stop = 0;
  bool stripFirst = true; // Metaspace: prepend_scheme != never
};

struct Added {
  std::string content; // as matched (normalized when NORMALIZED)
  int32_t id = 0;
  bool special = false, lstrip = false, rstrip = false, singleWord = false,
       normalized = false;
};

/// Leftmost-longest matching of a set of added tokens.
struct AddedMatcher {
  std::vector<Added> tokens; // longest first
  std::array<std::vector<uint32_t>, 256> byFirstByte;

  void build() {
    std::sort(tokens.begin(), tokens.end(), [](const Added &a, const Added &b) {
      if (a.content.size() != b.content.size())
        return a.content.size() > b.content.size();
      return a.id < b.id;
    });
    for (auto &v : byFirstByte)
      v.clear();
    for (uint32_t k = 0; k < tokens.size(); ++k)
      if (!tokens[k].content.empty())
        byFirstByte[uint8_t(tokens[k].content[0])].push_back(k);
  }
  bool empty() const { return tokens.empty(); }

  /// The longest token matching TEXT at I, or null.
  const Added *matchAt(std::string_view text, size_t i) const {
    for (uint32_t k : byFirstByte[uint8_t(text[i])]) {
      const std::string &c = tokens[k].content;
      if (text.compare(i, c.size(), c) == 0)
        return &tokens[k];
    }
    return nullptr;
  }
};

/// A piece of the text on its way through the pipeline: either text still to
/// tokenize or an added token already matched (ID >= 0).
struct Piece {
  std::string text;
  bool atStart = false; // starts at offset 0 of the input
  int32_t id = -1;
};

} // namespace

struct Tokenizer::Impl {
  std::string name;
  // Model vocabulary (BPE lookups use only this) and all tokens by id.
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<std::string, int32_t> addedByContent;
  std::vector<std::string> idToToken;
  std::vector<uint8_t> isSpecial;
  // Merge (left id, right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  std::optional<int32_t> unk;
  bool fuseUnk = false, byteFallback = false, ignoreMerges = false;
  std::array<int32_t, 256> byteTokens{}; // <0xNN> ids, -1 if missing

  AddedMatcher rawAdded, normalizedAdded;
  std::vector<NormalizerStep> normalizer;
  std::vector<PreTokenizerStep> preTokenizer;
  bool hasDecoder = false;
  std::vector<DecoderStep> decoder;
  std::vector<int32_t> prefixIds, suffixIds;
  std::optional<int32_t> bos, eos;

  [[noreturn]] void fail(const std::string &msg) const {
    throw Error(name + ": " + msg);
  }

  std::string normalize(std::string text) const;
  void splitAdded(const AddedMatcher &m, const Piece &in,
                  std::vector<Piece> &out) const;
  void preTokenize(std::vector<Piece> &pieces) const;
  void applyPreTokenizer(const PreTokenizerStep &step, const Piece &in,
                         std::vector<Piece> &out) const;
  void bpe(const std::string &word, std::vector<int32_t> &out) const;
  std::vector<Piece> split(std::string_view text) const;
  std::vector<int32_t> encode(std::string_view text, bool addSpecial) const;
  std::string decode(const std::vector<int32_t> &ids, bool skipSpecial) const;
};

//===----------------------------------------------------------------------===//
// Encoding
//===----------------------------------------------------------------------===//

std::string Tokenizer::Impl::normalize(std::string text) const {
  for (const NormalizerStep &s : normalizer) {
    switch (s.kind) {
    case NormalizerStep::Prepend:
      if (!text.empty())
        text.insert(0, s.a);
      break;
    case NormalizerStep::Replace:
      text = replaceAll(text, s.a, s.b);
      break;
    case NormalizerStep::Strip: {
      size_t b = 0, e = text.size();
      if (s.left)
        while (b < e) {
          Char c = charAt(text, b);
          if (c.cls != CharClass::Space)
            break;
          b += c.len;
        }
      if (s.right)
        while (e > b) {
          size_t last = lastCharStart(text, b, e);
          if (charAt(text, last).cls != CharClass::Space)
            break;
          e = last;
        }
      text = text.substr(b, e - b);
      break;
    }
    case NormalizerStep::Lowercase: {
      std::string out;
      out.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        size_t len;
        uint32_t cp = decodeUtf8(text, i, len);
        if (cp == kInvalidCodePoint)
          out.push_back(text[i]);
        else
          appendLower(out, cp);
        i += len;
      }
      text = std::move(out);
      break;
    }
    }
  }
  return text;
}

/// HF's AddedVocabulary::find_matches: splits IN at the added tokens M
/// finds (leftmost, longest), honouring single_word, lstrip and rstrip.
void Tokenizer::Impl::splitAdded(const AddedMatcher &m, const Piece &in,
                                 std::vector<Piece> &out) const {
  const std::string &t = in.text;
  if (m.empty() || t.empty()) {
    if (!t.empty())
      out.push_back(in);
    return;
  }
  size_t startOffset = 0;
  auto pushText = [&](size_t b, size_t e) {
    if (e > b)
      out.push_back({t.substr(b, e - b), in.atStart && b == 0, -1});
  };
  for (size_t i = 0; i < t.size();) {
    const Added *a = m.matchAt(t, i);
    if (!a) {
      ++i;
      continue;
    }
    size_t start = i, stop = i + a->content.size();
    i = stop; // the search goes on after the match, whatever happens to it
    if (a->singleWord) {
      bool wordBefore = false, wordAfter = false;
      if (start > 0) {
        size_t prev = lastCharStart(t, 0, start);
        size_t len;
        wordBefore = isWordCp(decodeUtf8(t, prev, len));
      }
      if (stop < t.size()) {
        size_t len;
        wordAfter = isWordCp(decodeUtf8(t, stop, len));
      }
      if (wordBefore || wordAfter)
        continue;
    }
    if (a->lstrip) {
      size_t s = start;
      while (s > startOffset) {
        size_t prev = lastCharStart(t, startOffset, s);
        size_t len;
        if (!isSpaceCp(decodeUtf8(t, prev, len)))
          break;
        s = prev;
      }
      start = s;
    }
    if (a->rstrip)
      stop = runEnd(t, stop, isSpace);
    if (start < startOffset)
      continue;
    pushText(startOffset, start);
    out.push_back({t.substr(start, stop - start), false, a->id});
    startOffset = stop;
    i = std::max(i, stop);
  }
  pushText(startOffset, t.size());
}

void Tokenizer::Impl::applyPreTokenizer(const PreTokenizerStep &s,
                                        const Piece &in,
                                        std::vector<Piece> &out) const {
  std::string text = in.text;
  std::vector<std::pair<size_t, size_t>> spans;
  auto emit = [&](const std::vector<std::pair<size_t, size_t>> &pieces,
                  const std::string &src, bool byteLevel) {
    const auto &alphabet = tokenizer::byteLevelAlphabet();
    for (auto [b, e] : pieces) {
      if (e <= b)
        continue;
      Piece p;
      p.atStart = in.atStart && b == 0;
      if (byteLevel) {
        for (size_t k = b; k < e; ++k)
          p.text += alphabet[uint8_t(src[k])];
      } else {
        p.text = src.substr(b, e - b);
      }
      out.push_back(std::move(p));
    }
  };
  switch (s.kind) {
  case PreTokenizerStep::ByteLevel: {
    if (s.addPrefixSpace && !text.empty() && text[0] != ' ')
      text.insert(0, " ");
    if (s.useRegex) {
      for (size_t i = 0; i < text.size();) {
        size_t e = gpt2MatchEnd(text, i);
        spans.emplace_back(i, e);
        i = e;
      }
    } else {
      spans.emplace_back(0, text.size());
    }
    emit(spans, text, true);
    return;
  }
  case PreTokenizerStep::Metaspace: {
    text = replaceAll(text, " ", s.replacement);
    bool prepend = s.prepend == PreTokenizerStep::Always ||
                   (s.prepend == PreTokenizerStep::First && in.atStart);
    if (prepend && !text.empty() && !startsWith(text, s.replacement))
      text.insert(0, s.replacement);
    if (s.split)
      spans = applyBehavior(text.size(), findAll(text, s.replacement),
                            Behavior::MergedWithNext, false);
    else
      spans.emplace_back(0, text.size());
    emit(spans, text, false);
    return;
  }
  case PreTokenizerStep::SplitString:
    spans = applyBehavior(text.size(), findAll(text, s.pattern), s.behavior,
                          s.invert);
    break;
  case PreTokenizerStep::SplitRegex: {
    std::vector<std::pair<size_t, size_t>> matches;
    for (size_t i = 0; i < text.size();) {
      size_t e = s.regex == RegexKind::Gpt2 ? gpt2MatchEnd(text, i)
                 : s.regex == RegexKind::Llama3 ? llama3MatchEnd(text, i, 3)
                                                : llama3MatchEnd(text, i, 1);
      matches.emplace_back(i, e);
      i = e;
    }
    spans = applyBehavior(text.size(), matches, s.behavior, s.invert);
    break;
  }
  case PreTokenizerStep::Whitespace: {
    // \w+|[^\w\s]+, keeping only the matches.
    std::vector<std::pair<size_t, size_t>> matches;
    for (size_t i = 0; i < text.size();) {
      Char c = charAt(text, i);
      if (c.cls == CharClass::Space) {
        i += c.len;
        continue;
      }
      bool word = isWordCp(c.cp);
      size_t e = runEnd(text, i, [&](const Char &d) {
        return d.cls != CharClass::Space && isWordCp(d.cp) == word;
      });
      matches.emplace_back(i, e);
      i = e;
    }
    spans = applyBehavior(text.size(), matches, Behavior::Removed, true);
    break;
  }
  case PreTokenizerStep::WhitespaceSplit:
    spans = applyBehavior(text.size(), charMatches(text, isSpace, true),
                          Behavior::Removed, false);
    break;
  case PreTokenizerStep::CharDelimiter:
    spans = applyBehavior(text.size(), findAll(text, s.pattern),
                          Behavior::Removed, false);
    break;
  case PreTokenizerStep::Digits:
    spans = applyBehavior(text.size(),
                          charMatches(text, isNumber, !s.individualDigits),
                          s.individualDigits ? Behavior::Isolated
                                             : Behavior::Contiguous,
                          false);
    break;
  case PreTokenizerStep::Punctuation:
  case PreTokenizerStep::Bert: {
    auto isPunct = [](const Char &c) {
      return c.cls == CharClass::Punct || (c.cp < 128 && std::ispunct(int(c.cp)));
    };
    if (s.kind == PreTokenizerStep::Punctuation) {
      spans = applyBehavior(text.size(), charMatches(text, isPunct, false),
                            s.behavior, false);
      break;
    }
    // BertPreTokenizer: split on white space (removed), then isolate each
    // punctuation character.
    for (auto [b, e] :
         applyBehavior(text.size(), charMatches(text, isSpace, true),
                       Behavior::Removed, false)) {
      std::string_view word(text.data() + b, e - b);
      for (auto [pb, pe] : applyBehavior(word.size(),
                                         charMatches(word, isPunct, false),
                                         Behavior::Isolated, false))
        spans.emplace_back(b + pb, b + pe);
    }
    break;
  }
  }
  emit(spans, text, false);
}

void Tokenizer::Impl::preTokenize(std::vector<Piece> &pieces) const {
  for (const PreTokenizerStep &step : preTokenizer) {
    std::vector<Piece> next;
    next.reserve(pieces.size());
    for (const Piece &p : pieces) {
      if (p.id >= 0)
        next.push_back(p);
      else
        applyPreTokenizer(step, p, next);
    }
    pieces = std::move(next);
  }
}

/// HF's BPE::merge_word followed by Word::merge_all (without dropout).
void Tokenizer::Impl::bpe(const std::string &word,
                          std::vector<int32_t> &out) const {
  if (word.empty())
    return;
  if (ignoreMerges) {
    auto it = vocab.find(word);
    if (it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }

  // Initial symbols: one per character, else its <0xNN> bytes, else unk.
  std::vector<int32_t> syms;
  std::optional<int32_t> pendingUnk;
  for (size_t i = 0; i < word.size();) {
    size_t len;
    decodeUtf8(word, i, len);
    std::string ch = word.substr(i, len);
    i += len;
    auto it = vocab.find(ch);
    if (it != vocab.end()) {
      if (pendingUnk) {
        syms.push_back(*pendingUnk);
        pendingUnk.reset();
      }
      syms.push_back(it->second);
      continue;
    }
    if (byteFallback) {
      bool all = true;
      for (unsigned char c : ch)
        all = all && byteTokens[c] >= 0;
      if (all) {
        for (unsigned char c : ch)
          syms.push_back(byteTokens[c]);
        continue; // (HF leaves a pending unk pending here too)
      }
    }
    if (unk) {
      if (pendingUnk && !fuseUnk)
        syms.push_back(*pendingUnk);
      pendingUnk = *unk;
    }
    // Without unk_token the character is dropped, as in HF.
  }
  if (pendingUnk)
    syms.push_back(*pendingUnk);

  // Merge by rank (lowest first, leftmost on ties) with a heap over a linked
  // list of symbols, so long words stay O(n log n).
  size_t n = syms.size();
  if (n < 2 || merges.empty()) {
    out.insert(out.end(), syms.begin(), syms.end());
    return;
  }
  std::vector<int32_t> prev(n), next(n);
  std::vector<uint8_t> alive(n, 1);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  struct Candidate {
    int32_t rank, pos, left, right, merged;
    bool operator>(const Candidate &o) const {
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<Candidate>>
      heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0)
      return;
    int32_t l = syms[pos], r = syms[next[pos]];
    auto it = merges.find((uint64_t(uint32_t(l)) << 32) | uint32_t(r));
    if (it != merges.end())
      heap.push({it->second.first, pos, l, r, it->second.second});
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
    syms[pos] = c.merged;
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
}

std::vector<Piece> Tokenizer::Impl::split(std::string_view text) const {
  // 1. Added tokens matched in the raw text; 2. the rest normalized, then
  // the added tokens matched in normalized text; 3. pre-tokenization.
  std::vector<Piece> raw, pieces;
  splitAdded(rawAdded, Piece{std::string(text), true, -1}, raw);
  for (Piece &p : raw) {
    if (p.id >= 0) {
      pieces.push_back(std::move(p));
      continue;
    }
    p.text = normalize(std::move(p.text));
    splitAdded(normalizedAdded, p, pieces);
  }
  preTokenize(pieces);
  return pieces;
}

std::vector<int32_t> Tokenizer::Impl::encode(std::string_view text,
                                             bool addSpecial) const {
  std::vector<int32_t> out;
  if (addSpecial)
    out = prefixIds;
  // 4. The model.
  for (const Piece &p : split(text)) {
    if (p.id >= 0)
      out.push_back(p.id);
    else
      bpe(p.text, out);
  }
  if (addSpecial)
    out.insert(out.end(), suffixIds.begin(), suffixIds.end());
  return out;
}

//===----------------------------------------------------------------------===//
// Decoding
//===----------------------------------------------------------------------===//

namespace {

/// "<0xNN>" -> NN, else -1.
int byteToken(const std::string &t) {
  if (t.size() != 6 || t[0] != '<' || t[1] != '0' || t[2] != 'x' || t[5] != '>')
    return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    return -1;
  };
  int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

} // namespace

std::string Tokenizer::Impl::decode(const std::vector<int32_t> &ids,
                                    bool skipSpecial) const {
  std::vector<std::string> tokens;
  tokens.reserve(ids.size());
  for (int32_t id : ids) {
    if (id < 0 || id >= int32_t(idToToken.size()))
      fail("cannot decode token id " + std::to_string(id) +
           ": out of range [0, " + std::to_string(idToToken.size()) + ")");
    if (skipSpecial && isSpecial[id])
      continue;
    if (!idToToken[id].empty())
      tokens.push_back(idToToken[id]);
  }
  if (!hasDecoder) {
    std::string out;
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (i)
        out += ' ';
      out += tokens[i];
    }
    return out;
  }
  for (const DecoderStep &s : decoder) {
    switch (s.kind) {
    case DecoderStep::ByteLevel: {
      // Each token's characters back to bytes; a token with a character
      // outside the byte alphabet (an added token such as "\n\n") is copied.
      std::string all;
      for (const std::string &t : tokens) {
        std::string bytes;
        bool ok = true;
        for (size_t i = 0; i < t.size() && ok;) {
          size_t len;
          uint32_t cp = decodeUtf8(t, i, len);
          int b = cp == kInvalidCodePoint ? -1 : byteOfCodePoint(cp);
          if (b < 0)
            ok = false;
          else
            bytes.push_back(char(b));
          i += len;
        }
        all += ok ? bytes : t;
      }
      tokens.assign(1, std::move(all));
      break;
    }
    case DecoderStep::Replace:
      for (std::string &t : tokens)
        t = replaceAll(t, s.a, s.b);
      break;
    case DecoderStep::ByteFallback: {
      std::vector<std::string> next;
      std::string bytes;
      bool inBytes = false;
      for (std::string &t : tokens) {
        int b = byteToken(t);
        if (b >= 0) {
          bytes.push_back(char(b));
          inBytes = true;
          continue;
        }
        if (inBytes) {
          next.push_back(std::move(bytes));
          bytes.clear();
          inBytes = false;
        }
        next.push_back(std::move(t));
      }
      if (inBytes)
        next.push_back(std::move(bytes));
      tokens = std::move(next);
      break;
    }
    case DecoderStep::Fuse: {
      std::string all;
      for (const std::string &t : tokens)
        all += t;
      tokens.assign(1, std::move(all));
      break;
    }
    case DecoderStep::Strip:
      for (std::string &t : tokens) {
        size_t b = 0, e = t.size();
        for (size_t k = 0; k < s.start && startsWith(t.substr(b), s.a) &&
                           b + s.a.size() <= e;
             ++k)
          b += s.a.size();
        for (size_t k = 0; k < s.stop && e >= b + s.a.size() &&
                           t.compare(e - s.a.size(), s.a.size(), s.a) == 0;
             ++k)
          e -= s.a.size();
        t = t.substr(b, e - b);
      }
      break;
    case DecoderStep::Metaspace:
      for (size_t i = 0; i < tokens.size(); ++i)
        tokens[i] = replaceAll(tokens[i], s.a,
                               i == 0 && s.stripFirst ? "" : " ");
      break;
    }
  }
  std::string out;
  for (const std::string &t : tokens)
    out += t;
  return out;
}

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

namespace {

const char *kGpt2Regex =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|"
    "\\s+";
const char *kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char *kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

} // namespace

Tokenizer Tokenizer::fromFile(const std::string &path) {
  return fromJson(readFile(path), path);
}

Tokenizer Tokenizer::fromJson(const std::string &text,
                              const std::string &path) {
  auto impl = std::make_shared<Impl>();
  Impl &tok = *impl;
  tok.name = path;
  tok.byteTokens.fill(-1);

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
    auto dropout = model.find("dropout");
    if (dropout != model.end() && dropout->is_number() &&
        dropout->get<double>() > 0)
      tok.fail("unsupported BPE option \"dropout\" (only null or 0)");

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
    std::vector<Added> addedTokens;
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
      Added t;
      t.content = content->get<std::string>();
      t.id = checkId(*idIt, what + " \"" + t.content + "\"");
      t.special = optBool(a, "special");
      t.lstrip = optBool(a, "lstrip");
      t.rstrip = optBool(a, "rstrip");
      t.singleWord = optBool(a, "single_word");
      t.normalized = optBool(a, "normalized", !t.special);
      maxId = std::max(maxId, t.id);
      addedTokens.push_back(std::move(t));
    }

    tok.idToToken.assign(size_t(maxId + 1), std::string());
    tok.isSpecial.assign(size_t(maxId + 1), 0);
    std::vector<uint8_t> used(size_t(maxId + 1), 0);
    tok.vocab.reserve(entries.size());
    for (auto &[id, token] : entries) {
      if (used[id])
        tok.fail("vocab tokens \"" + tok.idToToken[id] + "\" and \"" + token +
                 "\" share id " + std::to_string(id));
      used[id] = 1;
      tok.idToToken[id] = token;
      tok.vocab[token] = id;
    }
    for (const Added &t : addedTokens) {
      tok.idToToken[t.id] = t.content;
      tok.addedByContent[t.content] = t.id;
      tok.isSpecial[t.id] = t.special;
    }
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof(name), "<0x%02X>", b);
      auto it = tok.vocab.find(name);
      tok.byteTokens[b] = it == tok.vocab.end() ? -1 : it->second;
    }

    // --- merges
    // ---------------------------------------------------------------
    auto lookupVocab = [&](const std::string &token) -> std::optional<int32_t> {
      auto it = tok.vocab.find(token);
      if (it == tok.vocab.end())
        return std::nullopt;
      return it->second;
    };
    auto mergesIt = model.find("merges");
    if (mergesIt != model.end() && !mergesIt->is_null()) {
      if (!mergesIt->is_array())
        tok.fail("\"model.merges\" is not an array");
      const json &merges = *mergesIt;
      tok.merges.reserve(merges.size());
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
        tok.merges.emplace(key, std::make_pair(int32_t(rank), *merged));
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
      tok.unk = id;
    }
    tok.fuseUnk = optBool(model, "fuse_unk");
    tok.byteFallback = optBool(model, "byte_fallback");
    tok.ignoreMerges = optBool(model, "ignore_merges");

    // --- helpers for the components
    // -----------------------------------------
    auto typeOf = [&](const json &j, const std::string &what) -> std::string {
      if (!j.is_object() || !j.contains("type") || !j["type"].is_string())
        tok.fail("\"" + what + "\" has no type");
      return j["type"].get<std::string>();
    };
    auto stringField = [&](const json &j, const char *key,
                           const std::string &what) -> std::string {
      auto it = j.find(key);
      if (it == j.end() || !it->is_string())
        tok.fail(what + " without a string \"" + key + "\"");
      return it->get<std::string>();
    };
    // {"String": "x"} -> "x"; a Regex pattern is an error unless ALLOWREGEX.
    auto stringPattern = [&](const json &j, const std::string &what,
                             std::string *regex) -> std::string {
      auto p = j.find("pattern");
      if (p == j.end() || !p->is_object())
        tok.fail(what + " without a \"pattern\" object");
      if (p->contains("String") && (*p)["String"].is_string()) {
        std::string s = (*p)["String"].get<std::string>();
        if (s.empty())
          tok.fail(what + " has an empty pattern");
        return s;
      }
      if (p->contains("Regex") && (*p)["Regex"].is_string()) {
        if (regex) {
          *regex = (*p)["Regex"].get<std::string>();
          return "";
        }
        tok.fail(what + " with a Regex pattern is not supported (only "
                        "{\"String\": ...} patterns)");
      }
      tok.fail(what + " has a pattern that is neither String nor Regex");
    };
    auto behaviorOf = [&](const json &j, const std::string &what,
                          Behavior dflt) -> Behavior {
      auto it = j.find("behavior");
      if (it == j.end() || it->is_null())
        return dflt;
      std::string b = it->is_string() ? it->get<std::string>() : "";
      if (b == "Removed")
        return Behavior::Removed;
      if (b == "Isolated")
        return Behavior::Isolated;
      if (b == "MergedWithPrevious")
        return Behavior::MergedWithPrevious;
      if (b == "MergedWithNext")
        return Behavior::MergedWithNext;
      if (b == "Contiguous")
        return Behavior::Contiguous;
      tok.fail(what + " has an unknown behavior " + it->dump());
    };

    // --- normalizer
    // -----------------------------------------------------------
    std::function<void(const json &)> readNormalizer = [&](const json &n) {
      if (n.is_null())
        return;
      std::string type = typeOf(n, "normalizer");
      if (type == "Sequence") {
        auto list = n.find("normalizers");
        if (list == n.end() || !list->is_array())
          tok.fail("normalizer Sequence without a \"normalizers\" array");
        for (const json &child : *list)
          readNormalizer(child);
      } else if (type == "NFC" || type == "NFKC" || type == "NFD" ||
                 type == "NFKD") {
        // Accepted, not applied (see Tokenizer.h).
      } else if (type == "Prepend") {
        tok.normalizer.push_back(
            {NormalizerStep::Prepend, stringField(n, "prepend", "Prepend"), ""});
      } else if (type == "Replace") {
        std::string p = stringPattern(n, "normalizer Replace", nullptr);
        tok.normalizer.push_back({NormalizerStep::Replace, p,
                                  stringField(n, "content", "Replace")});
      } else if (type == "Strip") {
        NormalizerStep s{NormalizerStep::Strip, "", ""};
        s.left = optBool(n, "strip_left", true);
        s.right = optBool(n, "strip_right", true);
        tok.normalizer.push_back(s);
      } else if (type == "Lowercase") {
        tok.normalizer.push_back({NormalizerStep::Lowercase, "", ""});
      } else {
        tok.fail("unsupported normalizer type \"" + type + "\"");
      }
    };
    if (root.contains("normalizer"))
      readNormalizer(root["normalizer"]);

    // --- pre_tokenizer
    // --------------------------------------------------------
    auto readPrependScheme = [&](const json &p, const std::string &what) {
      auto it = p.find("prepend_scheme");
      PreTokenizerStep::Prepend scheme = PreTokenizerStep::Always;
      if (it != p.end() && !it->is_null()) {
        std::string s = it->is_string() ? it->get<std::string>() : "";
        if (s == "always")
          scheme = PreTokenizerStep::Always;
        else if (s == "first")
          scheme = PreTokenizerStep::First;
        else if (s == "never")
          scheme = PreTokenizerStep::Never;
        else
          tok.fail(what + " has an unknown prepend_scheme " + it->dump());
      }
      auto aps = p.find("add_prefix_space");
      if (aps != p.end() && aps->is_boolean() && !aps->get<bool>())
        scheme = PreTokenizerStep::Never;
      return scheme;
    };
    std::function<void(const json &)> readPreTokenizer = [&](const json &p) {
      if (p.is_null())
        return;
      std::string type = typeOf(p, "pre_tokenizer");
      PreTokenizerStep s{};
      if (type == "Sequence") {
        auto list = p.find("pretokenizers");
        if (list == p.end() || !list->is_array())
          tok.fail("pre_tokenizer Sequence without a \"pretokenizers\" array");
        for (const json &child : *list)
          readPreTokenizer(child);
        return;
      } else if (type == "ByteLevel") {
        s.kind = PreTokenizerStep::ByteLevel;
        s.addPrefixSpace = optBool(p, "add_prefix_space", true);
        s.useRegex = optBool(p, "use_regex", true);
      } else if (type == "Metaspace") {
        s.kind = PreTokenizerStep::Metaspace;
        s.replacement = stringField(p, "replacement", "pre_tokenizer Metaspace");
        if (s.replacement.empty())
          tok.fail("pre_tokenizer Metaspace has an empty replacement");
        s.prepend = readPrependScheme(p, "pre_tokenizer Metaspace");
        s.split = optBool(p, "split", true);
      } else if (type == "Split") {
        std::string regex;
        s.pattern = stringPattern(p, "pre_tokenizer Split", &regex);
        s.kind = regex.empty() ? PreTokenizerStep::SplitString
                               : PreTokenizerStep::SplitRegex;
        if (!regex.empty()) {
          if (regex == kGpt2Regex)
            s.regex = RegexKind::Gpt2;
          else if (regex == kLlama3Regex)
            s.regex = RegexKind::Llama3;
          else if (regex == kQwen2Regex)
            s.regex = RegexKind::Qwen2;
          else
            tok.fail("unsupported Split regex \"" + regex +
                     "\" (only the GPT-2, Llama-3 and Qwen2 patterns are "
                     "implemented)");
        }
        s.behavior = behaviorOf(p, "pre_tokenizer Split", Behavior::Isolated);
        s.invert = optBool(p, "invert");
      } else if (type == "Whitespace") {
        s.kind = PreTokenizerStep::Whitespace;
      } else if (type == "WhitespaceSplit") {
        s.kind = PreTokenizerStep::WhitespaceSplit;
      } else if (type == "Digits") {
        s.kind = PreTokenizerStep::Digits;
        s.individualDigits = optBool(p, "individual_digits");
      } else if (type == "Punctuation") {
        s.kind = PreTokenizerStep::Punctuation;
        s.behavior =
            behaviorOf(p, "pre_tokenizer Punctuation", Behavior::Isolated);
      } else if (type == "BertPreTokenizer") {
        s.kind = PreTokenizerStep::Bert;
      } else if (type == "CharDelimiterSplit") {
        s.kind = PreTokenizerStep::CharDelimiter;
        s.pattern = stringField(p, "delimiter", "pre_tokenizer CharDelimiterSplit");
        if (s.pattern.empty())
          tok.fail("pre_tokenizer CharDelimiterSplit has an empty delimiter");
      } else {
        tok.fail("unsupported pre_tokenizer type \"" + type + "\"");
      }
      tok.preTokenizer.push_back(std::move(s));
    };
    if (root.contains("pre_tokenizer"))
      readPreTokenizer(root["pre_tokenizer"]);

    // --- decoder
    // --------------------------------------------------------------
    std::function<void(const json &)> readDecoder = [&](const json &d) {
      if (d.is_null())
        return;
      tok.hasDecoder = true;
      std::string type = typeOf(d, "decoder");
      DecoderStep s{};
      if (type == "Sequence") {
        auto list = d.find("decoders");
        if (list == d.end() || !list->is_array())
          tok.fail("decoder Sequence without a \"decoders\" array");
        for (const json &child : *list)
          readDecoder(child);
        return;
      } else if (type == "ByteLevel") {
        s.kind = DecoderStep::ByteLevel;
      } else if (type == "Replace") {
        s.kind = DecoderStep::Replace;
        s.a = stringPattern(d, "decoder Replace", nullptr);
        s.b = stringField(d, "content", "decoder Replace");
      } else if (type == "ByteFallback") {
        s.kind = DecoderStep::ByteFallback;
      } else if (type == "Fuse") {
        s.kind = DecoderStep::Fuse;
      } else if (type == "Strip") {
        s.kind = DecoderStep::Strip;
        s.a = stringField(d, "content", "decoder Strip");
        if (s.a.empty())
          tok.fail("decoder Strip has an empty content");
        auto count = [&](const char *key) -> size_t {
          auto it = d.find(key);
          if (it == d.end() || it->is_null())
            return 0;
          if (!it->is_number_unsigned() && !(it->is_number_integer() && it->get<int64_t>() >= 0))
            tok.fail(std::string("decoder Strip \"") + key +
                     "\" is not a non-negative integer");
          return size_t(it->get<uint64_t>());
        };
        s.start = count("start");
        s.stop = count("stop");
      } else if (type == "Metaspace") {
        s.kind = DecoderStep::Metaspace;
        s.a = stringField(d, "replacement", "decoder Metaspace");
        if (s.a.empty())
          tok.fail("decoder Metaspace has an empty replacement");
        s.stripFirst =
            readPrependScheme(d, "decoder Metaspace") != PreTokenizerStep::Never;
      } else {
        tok.fail("unsupported decoder type \"" + type + "\"");
      }
      tok.decoder.push_back(std::move(s));
    };
    if (root.contains("decoder"))
      readDecoder(root["decoder"]);

    // --- added tokens: raw / normalized matchers
    // ------------------------------
    for (Added t : addedTokens) {
      if (t.normalized) {
        t.content = tok.normalize(t.content);
        if (t.content.empty())
          continue;
        tok.normalizedAdded.tokens.push_back(std::move(t));
      } else {
        tok.rawAdded.tokens.push_back(std::move(t));
      }
    }
    tok.rawAdded.build();
    tok.normalizedAdded.build();

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
      std::string type = typeOf(p, "post_processor");
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
        tok.prefixIds = {specialIdsOf(p["cls"], "cls")};
        tok.suffixIds = {specialIdsOf(p["sep"], "sep")};
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
        tok.prefixIds = std::move(prefix);
        tok.suffixIds = std::move(suffix);
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
      auto a = tok.addedByContent.find(n);
      if (a != tok.addedByContent.end())
        return a->second;
      auto it = tok.vocab.find(n);
      if (it != tok.vocab.end())
        return it->second;
    }
    return std::nullopt;
  };
  tok.bos = !tok.prefixIds.empty()
                ? std::optional<int32_t>(tok.prefixIds.front())
                : byName({"<s>", "<|begin_of_text|>", "<|startoftext|>",
                          "<bos>", "<BOS>"});
  tok.eos = !tok.suffixIds.empty()
                ? std::optional<int32_t>(tok.suffixIds.back())
                : byName({"</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>",
                          "<EOS>"});

  Tokenizer out;
  out.path_ = path;
  out.impl_ = std::move(impl);
  return out;
}

Tokenizer Tokenizer::fromVocabMerges(const std::string &vocabPath,
                                     const std::string &mergesPath) {
  json vocab;
  try {
    vocab = json::parse(readFile(vocabPath));
  } catch (const json::exception &e) {
    throw Error(vocabPath + ": not valid JSON: " + jsonMessage(e));
  }
  if (!vocab.is_object())
    throw Error(vocabPath + ": top level is a JSON " + jsonTypeName(vocab) +
                ", expected an object of token -> id");
  for (auto it = vocab.begin(); it != vocab.end(); ++it)
    if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
      throw Error(vocabPath + ": token \"" + it.key() + "\" has id " +
                  it.value().dump() + ", expected a non-negative integer");

  std::string text = readFile(mergesPath);
  json merges = json::array();
  size_t lineNo = 0;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string::npos)
      eol = text.size();
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    ++lineNo;
    if (!line.empty() && line.back() == '\r')
      line.pop_back();
    if (line.empty() || startsWith(line, "#version"))
      continue;
    size_t space = line.find(' ');
    if (space == std::string::npos || space == 0 || space + 1 >= line.size() ||
        line.find(' ', space + 1) != std::string::npos)
      throw Error(mergesPath + ":" + std::to_string(lineNo) + ": \"" + line +
                  "\" is not a merge of the form \"a b\"");
    for (const std::string &part :
         {line.substr(0, space), line.substr(space + 1), line.substr(0, space) + line.substr(space + 1)})
      if (!vocab.contains(part))
        throw Error(mergesPath + ":" + std::to_string(lineNo) + ": merge \"" +
                    line + "\" needs \"" + part + "\", which is not in " +
                    vocabPath);
    merges.push_back(std::move(line));
  }

  json addedTokens = json::array();
  if (vocab.contains("<|endoftext|>"))
    addedTokens.push_back({{"id", vocab["<|endoftext|>"]},
                           {"content", "<|endoftext|>"},
                           {"single_word", false},
                           {"lstrip", false},
                           {"rstrip", false},
                           {"normalized", true},
                           {"special", true}});
  json byteLevel = {{"type", "ByteLevel"},
                    {"add_prefix_space", false},
                    {"trim_offsets", true},
                    {"use_regex", true}};
  json doc = {{"version", "1.0"},
              {"added_tokens", addedTokens},
              {"normalizer", nullptr},
              {"pre_tokenizer", byteLevel},
              {"post_processor", byteLevel},
              {"decoder", byteLevel},
              {"model",
               {{"type", "BPE"},
                {"unk_token", nullptr},
                {"vocab", std::move(vocab)},
                {"merges", std::move(merges)}}}};
  Tokenizer tok = fromJson(doc.dump(), vocabPath + " + " + mergesPath);
  return tok;
}

//===----------------------------------------------------------------------===//
// Public wrappers
//===----------------------------------------------------------------------===//

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addSpecial) const {
  return impl_->encode(text, addSpecial);
}

std::vector<std::string> Tokenizer::pieces(std::string_view text) const {
  std::vector<std::string> out;
  for (Piece &p : impl_->split(text))
    out.push_back(std::move(p.text));
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecial) const {
  return impl_->decode(ids, skipSpecial);
}

std::optional<int32_t> Tokenizer::tokenToId(std::string_view token) const {
  std::string key(token);
  auto a = impl_->addedByContent.find(key);
  if (a != impl_->addedByContent.end())
    return a->second;
  auto it = impl_->vocab.find(key);
  if (it == impl_->vocab.end())
    return std::nullopt;
  return it->second;
}

std::string Tokenizer::idToToken(int32_t id) const {
  if (id < 0 || id >= vocabSize())
    impl_->fail("token id " + std::to_string(id) + " is out of range [0, " +
                std::to_string(vocabSize()) + ")");
  return impl_->idToToken[id];
}

int32_t Tokenizer::vocabSize() const {
  return int32_t(impl_->idToToken.size());
}

std::optional<int32_t> Tokenizer::bosId() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eosId() const { return impl_->eos; }

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && id < vocabSize() && impl_->isSpecial[id];
}

} // namespace mm
