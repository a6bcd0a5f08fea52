//===- Chat.cpp - generation with a KV cache, and a chat session ------------===//
#include "mm/Chat.h"
#include "mm/Error.h"
#include "mm/Flags.h"
#include "mm/Image.h"
#include "mm/Llava.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstring>
#include <memory>
#include <fstream>
#include <iostream>
#include <map>
#include <numeric>
#include <unistd.h>

namespace mm {

int32_t sampleToken(const float *logits, int64_t vocab, const SamplingOptions &o, std::mt19937_64 &rng) {
  if (o.temperature <= 0.0)
    return static_cast<int32_t>(std::max_element(logits, logits + vocab) - logits);
  std::vector<int32_t> order(vocab);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int64_t keep = o.topK > 0 ? std::min<int64_t>(o.topK, vocab) : vocab;
  std::vector<double> p(keep);
  double maxv = logits[order[0]], sum = 0;
  for (int64_t i = 0; i < keep; ++i) sum += p[i] = std::exp((logits[order[i]] - maxv) / o.temperature);
  // Nucleus: the smallest prefix whose probability reaches top-p.
  double mass = 0;
  int64_t n = 0;
  while (n < keep) {
    mass += p[n] / sum;
    ++n;
    if (mass >= o.topP) break;
  }
  std::uniform_real_distribution<double> u(0.0, 1.0);
  double total = std::accumulate(p.begin(), p.begin() + n, 0.0), r = u(rng) * total;
  for (int64_t i = 0; i < n; ++i) {
    r -= p[i];
    if (r <= 0) return order[i];
  }
  return order[n - 1];
}

ChatSession::ChatSession(const CompiledModel &model, const ParameterStore &params, const Tokenizer &tokenizer,
                         ChatTemplate chatTemplate, SamplingOptions options)
    : model_(model), params_(params), tokenizer_(tokenizer), template_(chatTemplate), options_(options),
      format_(sampleFormat(model, tokenizer)), rng_(options.seed) {
  encoderDecoder_ = model_.hasEntry("encode");
  if (encoderDecoder_) {
    const EntrySpec &dec = model_.entry("decoder_logits");
    if (dec.args.size() != 4 || dec.args[2].name != "decoder_input_ids")
      throw Error(model_.path() + ": decoder_logits entry does not take (encoder_hidden_states, length, "
                  "decoder_input_ids, decoder_length)");
    if (format_.decoderLength < 2)
      throw Error(model_.path() + ": an encoder-decoder model needs text_config.decoder_start_token_id and "
                  "max_decoder_length >= 2 in its configuration");
    if (template_ != ChatTemplate::Blip2T5)
      throw Error(model_.path() + ": an encoder-decoder model chats with the blip2_t5 template, not " +
                  chatTemplateName(template_));
    return;
  }
  if (template_ == ChatTemplate::Blip2T5)
    throw Error(model_.path() + ": the blip2_t5 template needs an encoder-decoder model (an 'encode' entry)");
  const EntrySpec &prefill = model_.entry("prefill");
  model_.entry("decode");
  if (prefill.args.size() != 5)
    throw Error(model_.path() + ": prefill entry does not take (pixel_values, input_ids, length, k_cache, v_cache)");
  for (int i = 3; i < 5; ++i) {
    HostTensor t;
    t.bytes.assign(prefill.args[i].bytes(), 0);
    cache_.push_back(std::move(t));
  }
}

void ChatSession::setImage(const std::string &path) {
  image_ = path;
  turns_.clear();
}

void ChatSession::reset() { turns_.clear(); }

std::optional<int32_t> ChatSession::endToken() const {
  // The encoder-decoder's targets end with its configuration's eos_token_id.
  return encoderDecoder_ ? std::optional<int32_t>(format_.eos) : tokenizer_.eosId();
}

std::vector<int32_t> ChatSession::promptIds(const std::string &userText) const {
  // The same pieces, tokenised piece by piece, as training's templates
  // (runtime/lib/Data.cpp), ending where the assistant's reply begins.
  std::vector<int32_t> ids;
  if (template_ == ChatTemplate::Blip2 || template_ == ChatTemplate::Blip2T5) {
    // Queries, then the prompt as is ("Question: ... Answer:", or none to
    // caption): after a BOS for the decoder-only LLM, closed by "</s>" for
    // the encoder (the decoder then writes the reply).
    if (image_) ids.insert(ids.end(), format_.shape.imagePositions, format_.shape.imageToken);
    if (template_ == ChatTemplate::Blip2) ids.push_back(format_.bos);
    // The image always comes first here: an "<image>" marker in the text (LLaVA
    // data) is dropped with the white space after it.
    std::string prompt = userText;
    for (size_t at = prompt.find("<image>"); at != std::string::npos; at = prompt.find("<image>")) {
      size_t end = at + 7;
      while (end < prompt.size() && std::isspace((unsigned char)prompt[end])) ++end;
      prompt.erase(at, end - at);
    }
    std::vector<int32_t> t = tokenizer_.encode(prompt, /*addSpecial=*/false);
    ids.insert(ids.end(), t.begin(), t.end());
    if (template_ == ChatTemplate::Blip2T5) ids.push_back(format_.eos);
    return ids;
  }
  ids.push_back(format_.bos);
  auto text = [&](const std::string &s) {
    std::vector<int32_t> t = tokenizer_.encode(s, /*addSpecial=*/false);
    ids.insert(ids.end(), t.begin(), t.end());
  };
  auto withImage = [&](std::string s, bool first) {
    size_t at = s.find("<image>");
    if (first && image_ && at == std::string::npos) s = "<image>\n" + s, at = 0;
    if (at == std::string::npos || !first || !image_) {
      text(s);
      return;
    }
    text(s.substr(0, at));
    ids.insert(ids.end(), format_.shape.imagePositions, format_.shape.imageToken);
    text(s.substr(at + 7));
  };
  if (template_ == ChatTemplate::Plain) {
    if (image_) ids.insert(ids.end(), format_.shape.imagePositions, format_.shape.imageToken);
    return ids;
  }
  for (size_t i = 0; i <= turns_.size(); ++i) {
    const std::string &user = i < turns_.size() ? turns_[i].first : userText;
    std::string human = (i == 0 ? std::string(kVicunaSystem) + " USER: " : std::string("USER: ")) + user + " ASSISTANT:";
    withImage(human, i == 0);
    if (i < turns_.size()) {
      text(" " + turns_[i].second);
      text("</s>");
    }
  }
  return ids;
}

ChatSession::Start ChatSession::start(const std::vector<int32_t> &ids) {
  const int64_t maxLen = format_.shape.maxSequence, vocab = format_.shape.vocab;
  std::vector<const float *> params = params_.pointers();
  std::vector<HostTensor> args = llavaForwardArgs(model_, ids, image_);
  Start st;
  if (encoderDecoder_) {
    // The encoder once; then the decoder over [start, generated...] for each new token.
    std::vector<HostTensor> encoded = model_.run("encode", params, args);
    auto decoderArgs = std::make_shared<std::vector<HostTensor>>(4);
    (*decoderArgs)[0] = std::move(encoded[0]);
    (*decoderArgs)[1] = std::move(args[2]);
    (*decoderArgs)[2].bytes.resize(format_.decoderLength * 4);
    (*decoderArgs)[3].bytes.resize(4);
    st.extend = [this, decoderArgs, vocab](const std::vector<int32_t> &generated, std::vector<HostTensor> &) {
      std::vector<HostTensor> &a = *decoderArgs;
      const int64_t n = 1 + (int64_t)generated.size();
      int32_t *dst = a[2].as<int32_t>();
      for (int64_t i = 0; i < format_.decoderLength; ++i)
        dst[i] = i == 0 ? format_.decoderStart : i < n ? generated[i - 1] : format_.shape.padToken;
      *a[3].as<int32_t>() = (int32_t)n;
      std::vector<HostTensor> logits = model_.run("decoder_logits", params_.pointers(), a);
      const float *row = logits[0].as<float>() + (n - 1) * vocab;
      return std::vector<float>(row, row + vocab);
    };
    st.first = st.extend({}, st.state);
    st.maxSteps = format_.decoderLength - 1;
    return st;
  }
  args.push_back(cache_[0]);
  args.push_back(cache_[1]);
  std::vector<HostTensor> out = model_.run("prefill", params, args);
  st.state = {std::move(args[3]), std::move(args[4])};
  const int64_t position = (int64_t)ids.size();
  const float *row = out[0].as<float>() + (position - 1) * vocab;
  st.first.assign(row, row + vocab);
  st.maxSteps = maxLen - position;
  // One decode step: the hypothesis's last token at its position against the caches in STATE.
  st.extend = [this, position](const std::vector<int32_t> &tokens, std::vector<HostTensor> &state) {
    std::vector<HostTensor> step(5);
    for (int i = 0; i < 3; ++i) step[i].bytes.resize(4);
    const int64_t pos = position + (int64_t)tokens.size() - 1;
    *step[0].as<int32_t>() = tokens.back();
    *step[1].as<int32_t>() = (int32_t)pos;
    *step[2].as<int32_t>() = (int32_t)pos + 1;
    step[3] = std::move(state[0]);
    step[4] = std::move(state[1]);
    std::vector<HostTensor> logits = model_.run("decode", params_.pointers(), step);
    state = {std::move(step[3]), std::move(step[4])};
    const float *l = logits[0].as<float>();
    return std::vector<float>(l, l + format_.shape.vocab);
  };
  return st;
}

std::string ChatSession::reply(const std::string &userText, const std::function<void(const std::string &)> &onText) {
  using Clock = std::chrono::steady_clock;
  std::vector<int32_t> ids = promptIds(userText);
  const int64_t maxLen = format_.shape.maxSequence, vocab = format_.shape.vocab;
  // Rows past the tokenizer's vocabulary are padding, never real tokens.
  const int64_t choices = std::min<int64_t>(vocab, tokenizer_.vocabSize());
  if (encoderDecoder_ ? (int64_t)ids.size() > maxLen : (int64_t)ids.size() >= maxLen)
    throw Error(encoderDecoder_
                    ? "the prompt is " + std::to_string(ids.size()) + " tokens (image positions and </s> included); " +
                          model_.path() + " was compiled for " + std::to_string(maxLen) + " encoder positions"
                    : "the conversation is " + std::to_string(ids.size()) + " tokens (image positions included); " +
                          model_.path() + " was compiled for " + std::to_string(maxLen) + " (start a new one)");
  promptTokens_ = (int)ids.size();
  // Captions end at a newline (plain and BLIP-2 with OPT train them so; the
  // encoder-decoder's targets end with "</s>").
  const bool stopsAtNewline = template_ == ChatTemplate::Plain || template_ == ChatTemplate::Blip2;

  auto begin = Clock::now();
  Start st = start(ids);
  if (options_.beams > 1) {
    prefillSeconds_ = std::chrono::duration<double>(Clock::now() - begin).count();
    begin = Clock::now();
    std::vector<int32_t> best = beamSearch(st, choices, stopsAtNewline);
    newTokens_ = (int)best.size();
    std::string final = tokenizer_.decode(best, /*skipSpecial=*/true);
    if (stopsAtNewline && final.find('\n') != std::string::npos) final = final.substr(0, final.find('\n'));
    onText(final);
    decodeSeconds_ = std::chrono::duration<double>(Clock::now() - begin).count();
    turns_.emplace_back(userText, final);
    return final;
  }
  int32_t next = sampleToken(st.first.data(), choices, options_, rng_);
  prefillSeconds_ = std::chrono::duration<double>(Clock::now() - begin).count();

  begin = Clock::now();
  const std::optional<int32_t> eos = endToken();
  std::vector<int32_t> generated;
  std::string shown;
  newTokens_ = 0;
  for (int64_t steps = 0;; ++steps) {
    if (eos && next == *eos) break;
    generated.push_back(next);
    ++newTokens_;
    // Stream whole characters: decode everything so far and print what is new.
    std::string text = tokenizer_.decode(generated, /*skipSpecial=*/true);
    if (stopsAtNewline && text.find('\n') != std::string::npos) {
      text = text.substr(0, text.find('\n'));
      if (text.size() > shown.size()) onText(text.substr(shown.size()));
      shown = text;
      break;
    }
    if (text.size() > shown.size() && (text.back() & 0xC0) != 0x80 && (unsigned char)text.back() < 0xC0) {
      onText(text.substr(shown.size()));
      shown = text;
    }
    if (newTokens_ >= options_.maxNewTokens || steps >= st.maxSteps) break;
    std::vector<float> logits = st.extend(generated, st.state);
    next = sampleToken(logits.data(), choices, options_, rng_);
  }
  if (!encoderDecoder_) cache_ = std::move(st.state); // reused as the next prefill's buffers
  std::string final = tokenizer_.decode(generated, /*skipSpecial=*/true);
  if (stopsAtNewline && final.find('\n') != std::string::npos) final = final.substr(0, final.find('\n'));
  if (final.size() > shown.size()) onText(final.substr(shown.size()));
  decodeSeconds_ = std::chrono::duration<double>(Clock::now() - begin).count();
  turns_.emplace_back(userText, final);
  return final;
}

std::vector<int32_t> ChatSession::beamSearch(const Start &st, int64_t choices, bool stopsAtNewline) {
  struct Beam {
    std::vector<int32_t> tokens; // generated; the last one is not in the state yet
    double logProb = 0;
    std::vector<HostTensor> state; // k_cache, v_cache (none for an encoder-decoder)
    bool done = false;
  };
  const int width = options_.beams;
  const std::optional<int32_t> eos = endToken();
  auto logSoftmax = [&](const float *row) {
    std::vector<double> lp(choices);
    double m = -INFINITY, sum = 0;
    for (int64_t j = 0; j < choices; ++j) m = std::max(m, (double)row[j]);
    for (int64_t j = 0; j < choices; ++j) sum += std::exp(row[j] - m);
    for (int64_t j = 0; j < choices; ++j) lp[j] = row[j] - m - std::log(sum);
    return lp;
  };
  auto ends = [&](int32_t t, size_t length) {
    if (eos && t == *eos) return true;
    if (stopsAtNewline && tokenizer_.decode({t}, /*skipSpecial=*/true).find('\n') != std::string::npos) return true;
    return (int)length >= options_.maxNewTokens;
  };
  struct Candidate {
    size_t parent;
    int32_t token;
    double logProb;
  };
  auto topCandidates = [&](std::vector<Candidate> all) {
    const size_t keep = std::min<size_t>(width, all.size());
    std::partial_sort(all.begin(), all.begin() + keep, all.end(),
                      [](const Candidate &a, const Candidate &b) { return a.logProb > b.logProb; });
    all.resize(keep);
    return all;
  };
  // The first tokens, from the prompt's last position.
  std::vector<Beam> beams;
  {
    std::vector<double> lp = logSoftmax(st.first.data());
    std::vector<Candidate> all;
    for (int64_t j = 0; j < choices; ++j) all.push_back({0, (int32_t)j, lp[j]});
    for (const Candidate &c : topCandidates(all)) {
      Beam b;
      b.tokens = {c.token};
      b.logProb = c.logProb;
      b.state = st.state;
      b.done = ends(c.token, 1);
      beams.push_back(std::move(b));
    }
  }
  for (int64_t k = 0; k < st.maxSteps; ++k) {
    if (std::all_of(beams.begin(), beams.end(), [](const Beam &b) { return b.done; })) break;
    // Extend every open hypothesis by one step; finished ones compete as they are.
    std::vector<Candidate> all;
    std::vector<std::vector<HostTensor>> after(beams.size());
    for (size_t i = 0; i < beams.size(); ++i) {
      Beam &b = beams[i];
      if (b.done) {
        all.push_back({i, -1, b.logProb});
        continue;
      }
      after[i] = b.state;
      std::vector<double> lp = logSoftmax(st.extend(b.tokens, after[i]).data());
      for (int64_t j = 0; j < choices; ++j) all.push_back({i, (int32_t)j, b.logProb + lp[j]});
    }
    std::vector<Beam> next;
    for (const Candidate &c : topCandidates(std::move(all))) {
      const Beam &parent = beams[c.parent];
      Beam b;
      b.tokens = parent.tokens;
      b.logProb = c.logProb;
      if (c.token < 0) {
        b.state = parent.state;
        b.done = true;
      } else {
        b.tokens.push_back(c.token);
        b.state = after[c.parent];
        b.done = ends(c.token, b.tokens.size()) || k + 1 >= st.maxSteps;
      }
      next.push_back(std::move(b));
    }
    beams = std::move(next);
  }
  // Log-probability per token (a length penalty of 1, as Hugging Face's default).
  const Beam *best = &beams[0];
  for (const Beam &b : beams)
    if (b.logProb / b.tokens.size() > best->logProb / best->tokens.size()) best = &b;
  std::vector<int32_t> out = best->tokens;
  if (!out.empty() && eos && out.back() == *eos) out.pop_back();
  return out;
}

} // namespace mm

namespace mm {

const char *const kChatUsage =
    "       mmrun MODEL.so --chat [--weights W] [--image IMG] [--prompt TEXT] [--template vicuna_v1|plain|blip2|blip2_t5]\n"
    "                      [--temperature T] [--top-p P] [--top-k K] [--seed S] [--max-new-tokens N]\n"
    "                      [--beams N]   (beam search over N hypotheses instead of greedy or sampled decoding)\n";

ChatOptions parseChatOptions(const std::vector<std::string> &a) {
  ChatOptions o;
  for (size_t i = 0; i < a.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= a.size()) throw Error(a[i] + " needs a value");
      return a[++i];
    };
    const std::string &f = a[i];
    auto number = [&](const std::string &v) {
      char *end = nullptr;
      double d = std::strtod(v.c_str(), &end);
      if (v.empty() || *end) throw Error(f + ": '" + v + "' is not a number");
      return d;
    };
    if (f == "--chat") continue;
    if (f == "--weights") o.weights = value();
    else if (f == "--image") o.image = value();
    else if (f == "--prompt") { o.prompt = value(); o.havePrompt = true; }
    else if (f == "--template") o.templateName = value();
    else if (f == "--temperature") o.sampling.temperature = number(value());
    else if (f == "--top-p") o.sampling.topP = number(value());
    else if (f == "--top-k") o.sampling.topK = (int)number(value());
    else if (f == "--seed") o.sampling.seed = o.initSeed = (uint64_t)number(value());
    else if (f == "--max-new-tokens") o.sampling.maxNewTokens = (int)number(value());
    else if (f == "--beams") o.sampling.beams = (int)number(value());
    else if (!f.empty() && f[0] == '-') throw Error("unknown chat option '" + f + "'\n" + kChatUsage);
    else if (o.model.empty()) o.model = f;
    else throw Error("more than one model file ('" + o.model + "', '" + f + "')");
  }
  if (o.model.empty()) throw Error(std::string("no model library given\n") + kChatUsage);
  if (o.sampling.temperature < 0 || o.sampling.topP <= 0 || o.sampling.topP > 1 || o.sampling.topK < 0 ||
      o.sampling.maxNewTokens <= 0 || o.sampling.beams < 1 || o.sampling.beams > 64)
    throw Error("sampling options out of range (temperature >= 0, 0 < top-p <= 1, top-k >= 0, max-new-tokens > 0, "
                "1 <= beams <= 64)");
  return o;
}

int runChat(const ChatOptions &o) {
  CompiledModel model = CompiledModel::load(o.model);
  ParameterStore params(model.params());
  if (!o.weights.empty()) params.loadSafetensors(o.weights);
  else params.initFromSeed(o.initSeed);
  if (model.tokenizerJson().empty()) throw Error(o.model + " carries no tokenizer; chat needs one");
  Tokenizer tokenizer = Tokenizer::fromJson(model.tokenizerJson(), o.model + " (embedded tokenizer.json)");
  ChatSession chat(model, params, tokenizer, chatTemplateByName(o.templateName, model), o.sampling);
  if (!o.image.empty()) {
    loadImage(o.image); // fail early, naming the file
    chat.setImage(o.image);
  }
  auto turn = [&](const std::string &text) {
    chat.reply(text, [](const std::string &piece) {
      std::cout << piece << std::flush;
    });
    std::cout << "\n";
    double decodeRate = chat.lastDecodeSeconds() > 0 ? chat.lastNewTokens() / chat.lastDecodeSeconds() : 0;
    std::fprintf(stderr, "[prefill %d tokens %.1f ms; %d new tokens, %.1f tok/s]\n", chat.lastPromptTokens(),
                 chat.lastPrefillSeconds() * 1e3, chat.lastNewTokens(), decodeRate);
  };
  if (o.havePrompt) {
    turn(o.prompt);
    return 0;
  }
  bool tty = isatty(0);
  if (tty)
    std::cerr << "chat with " << model.name() << (o.image.empty() ? "" : " about " + o.image)
              << " (/image PATH, /reset, /quit)\n";
  std::string line;
  while (true) {
    if (tty) std::cout << "USER> " << std::flush;
    if (!std::getline(std::cin, line)) break;
    if (line == "/quit" || line == "/exit") break;
    if (line == "/reset") { chat.reset(); continue; }
    if (line.rfind("/image ", 0) == 0) {
      std::string path = line.substr(7);
      try {
        loadImage(path);
        chat.setImage(path);
        std::cerr << "(new conversation about " << path << ")\n";
      } catch (const Error &e) {
        std::cerr << "mmrun: error: " << e.what() << "\n";
      }
      continue;
    }
    if (line.empty()) continue;
    if (tty) std::cout << "ASSISTANT> " << std::flush;
    try {
      turn(line);
    } catch (const Error &e) {
      std::cerr << "mmrun: error: " << e.what() << "\n";
    }
  }
  return 0;
}

} // namespace mm

namespace mm {

const char *const kEvalUsage =
    "       mmrun MODEL.so --eval --data EVAL.json --image-dir DIR [--weights W] [--template vicuna_v1|plain|blip2|blip2_t5]\n"
    "                      [--max-new-tokens N] [--beams N] [--limit N] [--dump-answers FILE.jsonl] [--skip-bad]\n"
    "  Each record's human turns are asked in order (the model's replies kept as the history);\n"
    "  the last reply is scored against \"answer\" (or the last gpt turn), exact match per \"type\".\n";

EvalOptions parseEvalOptions(const std::vector<std::string> &a) {
  EvalOptions o;
  for (size_t i = 0; i < a.size(); ++i) {
    auto value = [&]() -> std::string {
      if (i + 1 >= a.size()) throw Error(a[i] + " needs a value");
      return a[++i];
    };
    const std::string &f = a[i];
    if (f == "--eval") continue;
    if (f == "--weights") o.weights = value();
    else if (f == "--data") o.data = value();
    else if (f == "--image-dir") o.imageDir = value();
    else if (f == "--template") o.templateName = value();
    else if (f == "--max-new-tokens") o.maxNewTokens = std::stoi(value());
    else if (f == "--beams") o.beams = (int)parseIntFlag(f, value(), 1);
    else if (f == "--limit") o.limit = std::stoll(value());
    else if (f == "--dump-answers") o.dumpAnswers = value();
    else if (f == "--skip-bad") o.skipBad = true;
    else if (!f.empty() && f[0] == '-') throw Error("unknown eval option '" + f + "'\n" + kEvalUsage);
    else if (o.model.empty()) o.model = f;
    else throw Error("more than one model file ('" + o.model + "', '" + f + "')");
  }
  if (o.model.empty() || o.data.empty()) throw Error(std::string("--eval needs a model and --data\n") + kEvalUsage);
  return o;
}

std::vector<std::string> captionObjects(const std::string &caption) {
  // "A red circle, a blue square and a green cross on a grey background."
  //   -> {"blue square", "green cross", "red circle"}
  std::string s = normalizeAnswer(caption);
  if (size_t bg = s.find(" on a"); bg != std::string::npos && s.find("background") != std::string::npos) s.resize(bg);
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= s.size()) {
    size_t comma = s.find(", ", start), andAt = s.find(" and ", start);
    size_t end = std::min(comma, andAt);
    std::string item = s.substr(start, end == std::string::npos ? std::string::npos : end - start);
    for (const char *article : {"a ", "an ", "the "})
      if (item.rfind(article, 0) == 0) item = item.substr(std::strlen(article));
    if (!item.empty()) out.push_back(item);
    if (end == std::string::npos) break;
    start = end + (end == comma ? 2 : 5);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string normalizeAnswer(const std::string &text) {
  std::string s;
  for (char c : text) s += (char)std::tolower((unsigned char)c);
  auto strip = [](char c) { return std::isspace((unsigned char)c) || c == '.' || c == '!' || c == ','; };
  while (!s.empty() && strip(s.back())) s.pop_back();
  size_t start = 0;
  while (start < s.size() && std::isspace((unsigned char)s[start])) ++start;
  return s.substr(start);
}

int runEval(const EvalOptions &o) {
  CompiledModel model = CompiledModel::load(o.model);
  ParameterStore params(model.params());
  if (!o.weights.empty()) params.loadSafetensors(o.weights);
  else params.initFromSeed(0);
  if (model.tokenizerJson().empty()) throw Error(o.model + " carries no tokenizer; evaluation needs one");
  Tokenizer tokenizer = Tokenizer::fromJson(model.tokenizerJson(), o.model + " (embedded tokenizer.json)");
  // Records: LLaVA conversation JSON (checked as training data is), plus
  // "type" and "answer" (default: the last gpt turn).
  SkippedRecords skipped;
  const std::vector<ConversationRecord> records = loadConversations(o.data, o.skipBad ? &skipped : nullptr);
  SamplingOptions greedy;
  greedy.maxNewTokens = o.maxNewTokens;
  greedy.beams = o.beams;
  ChatTemplate tmpl = chatTemplateByName(o.templateName, model);
  std::map<std::string, std::pair<int, int>> byType; // type -> (correct, total)
  std::ofstream dump;
  if (!o.dumpAnswers.empty()) {
    dump.open(o.dumpAnswers);
    if (!dump) throw Error(o.dumpAnswers + ": cannot write");
  }
  int64_t n = 0;
  for (size_t i = 0; i < records.size() && (o.limit == 0 || n < o.limit); ++i) {
    const ConversationRecord &rec = records[i];
    // A record is one conversation: every human turn is asked in order, the
    // model's own replies kept as the history (as in a chat), and the last
    // reply is scored against "answer" (or the last gpt turn): a follow-up
    // question is answered from what the first turn established.
    std::vector<std::string> questions, replies;
    std::string answer, type, got;
    try {
      checkRecord(rec, tmpl);
      type = rec.type.value_or("all");
      for (const ConversationTurn &t : rec.turns) (t.from == "human" ? questions : replies).push_back(t.value);
      answer = rec.answer ? *rec.answer : replies.back();
      replies.clear();
      ChatSession chat(model, params, tokenizer, tmpl, greedy);
      if (std::optional<std::string> path = recordImagePath(rec, o.imageDir)) {
        try {
          loadImage(*path); // missing or undecodable: this record's error
        } catch (const Error &e) {
          throw Error(rec.where() + ": " + e.what());
        }
        chat.setImage(*path);
      }
      for (const std::string &q : questions) replies.push_back(got = chat.reply(q, [](const std::string &) {}));
    } catch (const Error &e) {
      if (!o.skipBad) throw;
      skipped.add(e.what());
      continue;
    }
    const size_t index = rec.index;
    ++n;
    // Captions are scored object by object (any order); answers exactly.
    bool ok = type == "caption" ? captionObjects(got) == captionObjects(answer)
                                : normalizeAnswer(got) == normalizeAnswer(answer);
    auto &[correct, total] = byType[type];
    correct += ok;
    ++total;
    if (dump)
      dump << nlohmann::json{{"index", index}, {"type", type}, {"question", questions.back()}, {"answer", answer},
                             {"reply", got}, {"turns", questions.size()}, {"replies", replies}, {"correct", ok}}
                  .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)
           << "\n";
    if (isatty(2) && n % 10 == 9) std::fprintf(stderr, "\r%lld/%zu evaluated", (long long)n + 1, records.size());
  }
  if (skipped.count)
    std::fprintf(stderr, "mmrun: --skip-bad: left out %zu bad record%s (first: %s)\n", skipped.count,
                 skipped.count == 1 ? "" : "s", skipped.first.c_str());
  if (byType.empty()) throw Error(o.data + ": no record could be evaluated");
  if (isatty(2)) std::fprintf(stderr, "\n");
  int correct = 0, total = 0;
  std::printf("%-20s %8s %8s %9s\n", "question type", "correct", "total", "accuracy");
  for (const auto &[type, ct] : byType) {
    std::printf("%-20s %8d %8d %8.1f%%\n", type.c_str(), ct.first, ct.second, 100.0 * ct.first / ct.second);
    correct += ct.first;
    total += ct.second;
  }
  std::printf("%-20s %8d %8d %8.1f%%\n", "all", correct, total, 100.0 * correct / std::max(total, 1));
  return 0;
}

} // namespace mm
