//===- Chat.h - generation with a KV cache, and a chat session --*- C++ -*-===//
//
// A compiled LLaVA has `prefill` (the prompt, image included, fills the KV
// caches) and `decode` (one token against them). `ChatSession` keeps a
// conversation in the model's template, prefills it each turn and decodes the
// reply token by token, greedy, sampled or by beam search. An encoder-decoder
// BLIP-2 has `encode` (image and prompt through the encoder) and
// `decoder_logits` (the decoder over the reply so far) instead.
//
//===----------------------------------------------------------------------===//
#ifndef MM_CHAT_H
#define MM_CHAT_H

#include "mm/Data.h"
#include "mm/Model.h"
#include "mm/Parameters.h"
#include "mm/Tokenizer.h"

#include <functional>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace mm {

struct SamplingOptions {
  double temperature = 0.0; // 0: greedy
  double topP = 1.0;        // nucleus: smallest set with this much probability
  int topK = 0;             // 0: no limit
  uint64_t seed = 0;
  int maxNewTokens = 64;
  int beams = 1; // > 1: beam search (deterministic; temperature and top-k/p unused)
};

/// The next token from one row of logits: the argmax when temperature is 0,
/// else a draw from softmax(logits / temperature) restricted to the top-k
/// tokens and then to the top-p nucleus.
int32_t sampleToken(const float *logits, int64_t vocab, const SamplingOptions &options, std::mt19937_64 &rng);

class ChatSession {
public:
  ChatSession(const CompiledModel &model, const ParameterStore &params, const Tokenizer &tokenizer,
              ChatTemplate chatTemplate, SamplingOptions options);

  /// The image the next turn is about; starts a new conversation.
  void setImage(const std::string &path);
  /// Forgets the conversation (keeps the image).
  void reset();
  /// Runs one user turn: streams the reply's text through `onText` as it is
  /// decoded and returns it. Throws mm::Error if the conversation no longer
  /// fits the compiled sequence length.
  std::string reply(const std::string &userText, const std::function<void(const std::string &)> &onText);

  /// Timings of the last reply: prefill (image encode + prompt) and decode.
  double lastPrefillSeconds() const { return prefillSeconds_; }
  double lastDecodeSeconds() const { return decodeSeconds_; }
  int lastNewTokens() const { return newTokens_; }
  int lastPromptTokens() const { return promptTokens_; }

private:
  std::vector<int32_t> promptIds(const std::string &userText) const;
  /// The token that ends a reply: the tokenizer's EOS, or an encoder-decoder's eos_token_id.
  std::optional<int32_t> endToken() const;
  /// One hypothesis's next-token logits: TOKENS are the reply so far (the
  /// last one not yet run), STATE what the hypothesis carries (its copy of the
  /// KV caches; nothing for an encoder-decoder, whose decoder reruns over
  /// every token).
  using Extend = std::function<std::vector<float>(const std::vector<int32_t> &tokens, std::vector<HostTensor> &state)>;
  struct Start {
    std::vector<float> first;       // the first new token's logits
    std::vector<HostTensor> state;  // after the prompt
    int64_t maxSteps = 0;           // extensions the compiled lengths leave room for
    Extend extend;
  };
  /// Runs the prompt: prefill (decoder-only) or the encoder and the
  /// decoder's first step (encoder-decoder).
  Start start(const std::vector<int32_t> &ids);
  /// Beam search from the prompt's first logits: `options_.beams`
  /// hypotheses, each with its own state, extended by START's extend;
  /// a hypothesis ends at the end token (or a newline with STOPSATNEWLINE);
  /// the finished one with the best log-probability per token wins.
  std::vector<int32_t> beamSearch(const Start &start, int64_t choices, bool stopsAtNewline);

  const CompiledModel &model_;
  const ParameterStore &params_;
  const Tokenizer &tokenizer_;
  ChatTemplate template_;
  SamplingOptions options_;
  SampleFormat format_;
  std::mt19937_64 rng_;
  std::optional<std::string> image_;
  std::vector<std::pair<std::string, std::string>> turns_; // (user, assistant)
  std::vector<HostTensor> cache_;                          // k_cache, v_cache
  bool encoderDecoder_ = false;                            // encode + decoder_logits, no KV cache
  double prefillSeconds_ = 0, decodeSeconds_ = 0;
  int newTokens_ = 0, promptTokens_ = 0;
};

/// `mmrun MODEL.so --chat ...`: options, usage text and the REPL.
struct ChatOptions {
  std::string model, weights, image, prompt, templateName; // empty: the model's own
  uint64_t initSeed = 0;
  bool havePrompt = false;
  SamplingOptions sampling;
};
extern const char *const kChatUsage;
ChatOptions parseChatOptions(const std::vector<std::string> &args);
/// One turn with --prompt, else a REPL on standard input (`/image PATH`
/// loads another image, `/reset` forgets the conversation, `/quit`).
int runChat(const ChatOptions &options);

/// `mmrun MODEL.so --eval --data EVAL.json --image-dir DIR [--weights W]`:
/// answers each record's question greedily and prints exact-match accuracy
/// per question type (the record's "type" field) and overall. Answers match
/// after lower-casing and dropping surrounding spaces and final punctuation.
struct EvalOptions {
  std::string model, weights, data, imageDir, templateName /* empty: the model's own */, dumpAnswers;
  int maxNewTokens = 32;
  int beams = 1;        // --beams N: beam search instead of greedy decoding
  int64_t limit = 0;    // 0: all records
  bool skipBad = false; // --skip-bad: count and leave out records that cannot be evaluated
};
extern const char *const kEvalUsage;
EvalOptions parseEvalOptions(const std::vector<std::string> &args);
int runEval(const EvalOptions &options);
/// The normal form answers are compared in.
std::string normalizeAnswer(const std::string &text);
/// The objects a list caption names, articles and a background phrase dropped,
/// sorted: an evaluation record of type "caption" is correct when the reply
/// names exactly its reference caption's objects.
std::vector<std::string> captionObjects(const std::string &caption);

} // namespace mm

#endif // MM_CHAT_H
