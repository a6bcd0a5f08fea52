//===- Assisted.cpp - GPT-assisted instruction data (`mmdata instruct`) ---===//
//
// LLaVA's data generation: a text-only model sees an image through its
// captions and object boxes, and, guided by a system prompt and a few
// hand-written examples, writes a conversation, a detailed description or a
// reasoning question about it. Here the captions and boxes come from our
// symbolic scenes and the model is any OpenAI-compatible chat-completions
// endpoint reached over plain HTTP.
//
//===----------------------------------------------------------------------===//
#include "mm/Synth.h"

#include "../AtomicFile.h"
#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ostream>

namespace mm {
namespace synth {

InstructKind parseInstructKind(const std::string &name) {
  if (name == "conversation") return InstructKind::Conversation;
  if (name == "detail") return InstructKind::Detail;
  if (name == "reasoning") return InstructKind::Reasoning;
  throw Error("unknown instruction kind '" + name + "' (expected conversation, detail or reasoning)");
}

const char *instructKindName(InstructKind k) {
  switch (k) {
  case InstructKind::Conversation: return "conversation";
  case InstructKind::Detail: return "detail";
  case InstructKind::Reasoning: return "reasoning";
  }
  return "?";
}

namespace {

const char *kSeeing =
    "You are an AI visual assistant looking at a single image. You do not see its pixels: the image is given to you "
    "as a few captions that describe it, followed by the list of objects in it, each with its colour, shape, size "
    "and bounding box [x0, y0, x1, y1] (coordinates normalised to 0-1, x to the right, y downwards, origin at the "
    "top left corner), and the background colour. Answer as if you were seeing the image yourself: never mention "
    "captions, boxes or coordinates.\n\n";

} // namespace

std::string systemPrompt(InstructKind kind) {
  switch (kind) {
  case InstructKind::Conversation:
    return std::string(kSeeing) +
           "Design a conversation between a person asking about this image and you, answering. Ask diverse "
           "questions: the colours and shapes of the objects, how many there are, where they are in the image "
           "(top left, centre, bottom right, ...), and where they are relative to each other. Only ask questions "
           "that have a definite answer: either one can see in the image what the question asks about and answer "
           "confidently, or one can tell confidently that it is not in the image (then answer \"There is none.\"). "
           "Never ask about anything uncertain. Keep every answer short and exact.\n\n"
           "Write 2 to 4 turns, each a line \"Question: ...\" followed by a line \"Answer: ...\", and nothing else.";
  case InstructKind::Detail:
    return std::string(kSeeing) +
           "Describe the image in detail: the background, then every object with its size, colour, shape and "
           "where it is in the image (top left, centre, bottom right, ...), and which objects are next to or partly "
           "in front of each other. Write one paragraph of plain sentences, and nothing else.";
  case InstructKind::Reasoning:
    return std::string(kSeeing) +
           "Ask one question about the image that needs reasoning to answer: comparing positions, counts or sizes "
           "of the objects, or what would change if an object were removed. The question must have a single "
           "definite answer that follows from the image. Give the answer first, in a few words, then the reasoning "
           "in one short sentence.\n\n"
           "Write a line \"Question: ...\" followed by a line \"Answer: ...\", and nothing else.";
  }
  return "";
}

namespace {

const char *kExampleOne = "Captions:\n"
                          "A red circle to the left of a blue square.\n"
                          "A large red circle and a small blue square.\n"
                          "A red circle and a blue square on a grey background.\n"
                          "\n"
                          "Objects (box [x0, y0, x1, y1], normalised to 0-1, origin at the top left):\n"
                          "red circle, large: [0.08, 0.36, 0.42, 0.70]\n"
                          "blue square, small: [0.66, 0.42, 0.86, 0.62]\n"
                          "\n"
                          "Background: grey";

const char *kExampleTwo = "Captions:\n"
                          "A yellow triangle, a white cross and a green triangle.\n"
                          "Two triangles and a cross.\n"
                          "Three shapes: a green triangle, a yellow triangle and a white cross.\n"
                          "\n"
                          "Objects (box [x0, y0, x1, y1], normalised to 0-1, origin at the top left):\n"
                          "white cross, large: [0.36, 0.38, 0.70, 0.72]\n"
                          "yellow triangle, small: [0.12, 0.10, 0.30, 0.28]\n"
                          "green triangle, small: [0.70, 0.72, 0.88, 0.90]\n"
                          "\n"
                          "Background: dark blue";

} // namespace

const std::vector<FewShotExample> &fewShotExamples(InstructKind kind) {
  static const std::vector<FewShotExample> conversation = {
      {kExampleOne, "Question: What colour is the circle?\nAnswer: Red.\n"
                    "Question: How many objects are there?\nAnswer: Two.\n"
                    "Question: Is the red circle left of the blue square?\nAnswer: Yes.\n"
                    "Question: Where is the blue square?\nAnswer: On the right."},
      {kExampleTwo, "Question: How many triangles are there?\nAnswer: Two.\n"
                    "Question: What shape is the white object?\nAnswer: A cross.\n"
                    "Question: Where is the yellow triangle?\nAnswer: At the top left.\n"
                    "Question: What colour is the circle?\nAnswer: There is none."},
  };
  static const std::vector<FewShotExample> detail = {
      {kExampleOne, "The image shows two shapes on a grey background. A large red circle is on the left. A small "
                    "blue square is on the right, level with the circle, with empty space between them."},
      {kExampleTwo, "The image shows three shapes on a dark blue background. A large white cross is in the centre. "
                    "A small yellow triangle is at the top left and a small green triangle is at the bottom right, "
                    "on opposite sides of the cross."},
  };
  static const std::vector<FewShotExample> reasoning = {
      {kExampleOne, "Question: If the red circle were removed, how many objects would remain?\n"
                    "Answer: One. Only the blue square on the right would be left."},
      {kExampleTwo, "Question: Which object is closest to the top of the image?\n"
                    "Answer: The yellow triangle. It is at the top left, while the cross is in the centre and the "
                    "green triangle is at the bottom right."},
  };
  switch (kind) {
  case InstructKind::Conversation: return conversation;
  case InstructKind::Detail: return detail;
  case InstructKind::Reasoning: return reasoning;
  }
  return conversation;
}

std::string symbolicContext(const Scene &s) {
  Rng rng(s.seed ^ 0x63617074696f6e73ULL);
  std::string out = "Captions:\n";
  for (const std::string &c : captions(s, 3, rng)) out += c + "\n";
  out += "\nObjects (box [x0, y0, x1, y1], normalised to 0-1, origin at the top left):\n";
  for (const SceneObject &o : s.objects) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s, %s: [%.2f, %.2f, %.2f, %.2f]\n", o.name().c_str(), o.size.c_str(),
                  (double)o.box[0] / s.width, (double)o.box[1] / s.height, (double)o.box[2] / s.width,
                  (double)o.box[3] / s.height);
    out += buf;
  }
  out += "\nBackground: " + s.background;
  return out;
}

nlohmann::ordered_json chatRequest(const Scene &s, InstructKind kind, const std::string &model) {
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  messages.push_back({{"role", "system"}, {"content", systemPrompt(kind)}});
  for (const FewShotExample &e : fewShotExamples(kind)) {
    messages.push_back({{"role", "user"}, {"content", e.user}});
    messages.push_back({{"role", "assistant"}, {"content", e.assistant}});
  }
  messages.push_back({{"role", "user"}, {"content", symbolicContext(s)}});
  return {{"model", model}, {"messages", messages}};
}

std::string chatCompletionsUrl(const std::string &endpoint) {
  std::string e = endpoint;
  while (!e.empty() && e.back() == '/') e.pop_back();
  auto endsWith = [&](const std::string &t) { return e.size() >= t.size() && e.compare(e.size() - t.size(), t.size(), t) == 0; };
  if (endsWith("/chat/completions")) return e;
  if (endsWith("/v1")) return e + "/chat/completions";
  return e + "/v1/chat/completions";
}

namespace {

std::string snippet(const std::string &s, size_t max = 200) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c == '\n' || c == '\r' || c == '\t') ? ' ' : c;
  if (s.size() > max) out += "...";
  return out;
}

std::string trimmed(const std::string &s) {
  size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

} // namespace

std::string completionContent(const HttpResponse &r, const std::string &where) {
  if (r.status != 200) {
    std::string message;
    try {
      nlohmann::json j = nlohmann::json::parse(r.body);
      if (j.is_object() && j.contains("error")) {
        const nlohmann::json &e = j["error"];
        if (e.is_object() && e.contains("message") && e["message"].is_string()) message = e["message"].get<std::string>();
        else if (e.is_string()) message = e.get<std::string>();
      } else if (j.is_object() && j.contains("message") && j["message"].is_string()) {
        message = j["message"].get<std::string>();
      }
    } catch (const nlohmann::json::exception &) {
    }
    if (message.empty()) message = r.body.empty() ? "(empty body)" : snippet(r.body);
    throw Error(where + ": the endpoint answered HTTP " + std::to_string(r.status) +
                (r.reason.empty() ? "" : " " + r.reason) + ": " + message);
  }
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(r.body);
  } catch (const nlohmann::json::parse_error &e) {
    throw Error(where + ": the response is not valid JSON (" + std::string(e.what()) + "); it starts '" +
                snippet(r.body, 80) + "'");
  }
  if (!j.is_object() || !j.contains("choices") || !j["choices"].is_array() || j["choices"].empty())
    throw Error(where + ": the response has no choices (expected choices[0].message.content): '" + snippet(j.dump(), 160) + "'");
  const nlohmann::json &c = j["choices"][0];
  if (!c.is_object() || !c.contains("message") || !c["message"].is_object() || !c["message"].contains("content") ||
      !c["message"]["content"].is_string())
    throw Error(where + ": the response has no choices[0].message.content string: '" + snippet(c.dump(), 160) + "'");
  return c["message"]["content"].get<std::string>();
}

std::vector<std::pair<std::string, std::string>> parseQuestionAnswers(const std::string &content) {
  std::vector<std::pair<std::string, std::string>> out;
  enum { Preamble, InQuestion, InAnswer } state = Preamble;
  std::string q, a;
  auto flush = [&]() {
    if (state == InAnswer) {
      if (trimmed(q).empty()) throw Error("empty question in the reply");
      if (trimmed(a).empty()) throw Error("empty answer to '" + snippet(trimmed(q), 80) + "' in the reply");
      out.emplace_back(trimmed(q), trimmed(a));
    }
  };
  /// Returns the text after LABEL if LINE starts with it (case-insensitive,
  /// after list markers and markdown bold).
  auto labelled = [](const std::string &line, const char *label, std::string &rest) {
    size_t p = line.find_first_not_of(" \t*-#>");
    if (p == std::string::npos) return false;
    size_t n = std::char_traits<char>::length(label);
    if (line.size() < p + n) return false;
    for (size_t i = 0; i < n; ++i)
      if (std::tolower((unsigned char)line[p + i]) != label[i]) return false;
    rest = line.substr(p + n);
    size_t b = rest.find_first_not_of(" \t*");
    rest = b == std::string::npos ? "" : rest.substr(b);
    return true;
  };
  size_t pos = 0;
  while (pos <= content.size()) {
    size_t nl = content.find('\n', pos);
    if (nl == std::string::npos) nl = content.size();
    std::string line = content.substr(pos, nl - pos);
    pos = nl + 1;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    std::string t = trimmed(line), rest;
    if (t.empty() || t.find_first_not_of("=-") == std::string::npos) continue;
    if (labelled(line, "question:", rest)) {
      if (state == InQuestion) throw Error("the question '" + snippet(trimmed(q), 80) + "' has no answer in the reply");
      flush();
      q = rest;
      a.clear();
      state = InQuestion;
    } else if (labelled(line, "answer:", rest)) {
      if (state == Preamble) throw Error("an answer comes before any question in the reply");
      if (state == InAnswer) throw Error("two answers follow the question '" + snippet(trimmed(q), 80) + "' in the reply");
      a = rest;
      state = InAnswer;
    } else if (state == InQuestion) {
      q += (q.empty() ? "" : "\n") + t;
    } else if (state == InAnswer) {
      a += (a.empty() ? "" : "\n") + t;
    }
  }
  if (state == InQuestion) throw Error("the question '" + snippet(trimmed(q), 80) + "' has no answer in the reply");
  flush();
  if (out.empty()) throw Error("the reply holds no \"Question:\" line");
  return out;
}

AssistedSummary runAssisted(const AssistedOptions &o, std::ostream *log) {
  if (o.scenesPath.empty()) throw Error("no scenes file given (--scenes DIR/scenes.jsonl)");
  if (o.endpoint.empty()) throw Error("no endpoint given (--endpoint http://HOST:PORT)");
  if (o.kinds.empty()) throw Error("no instruction kind given");
  if (o.model.empty()) throw Error("the model name is empty");
  const std::string url = chatCompletionsUrl(o.endpoint);
  parseHttpUrl(url); // https:// and malformed URLs fail before any work
  std::vector<std::pair<std::string, std::string>> headers;
  if (!o.apiKeyEnv.empty()) {
    const char *key = std::getenv(o.apiKeyEnv.c_str());
    if (!key || !*key) throw Error("--api-key-env " + o.apiKeyEnv + ": the environment variable " + o.apiKeyEnv + " is not set");
    headers.emplace_back("Authorization", std::string("Bearer ") + key);
  }
  std::vector<Scene> scenes = loadScenes(o.scenesPath);
  if (o.limit >= 0 && (size_t)o.limit < scenes.size()) scenes.resize((size_t)o.limit);

  AssistedSummary sum;
  sum.out = o.out;
  if (sum.out.empty()) {
    size_t slash = o.scenesPath.find_last_of('/');
    sum.out = (slash == std::string::npos ? std::string() : o.scenesPath.substr(0, slash + 1)) + "instruct_gpt.json";
  }
  nlohmann::ordered_json records = nlohmann::ordered_json::array();
  for (const Scene &s : scenes) {
    ++sum.scenes;
    for (InstructKind kind : o.kinds) {
      const std::string kindName = instructKindName(kind);
      const std::string where = o.scenesPath + ": scene " + s.id + " (" + kindName + ")";
      std::string content;
      try {
        ++sum.requests;
        HttpResponse r = httpPost(url, chatRequest(s, kind, o.model).dump(), headers, o.timeoutSeconds);
        content = completionContent(r, "POST " + url);
      } catch (const Error &e) {
        throw Error(where + ": " + e.what());
      }
      Rng rng(s.seed ^ (0x696e737472756374ULL + (uint64_t)kind));
      nlohmann::ordered_json conv = nlohmann::ordered_json::array();
      try {
        if (kind == InstructKind::Detail) {
          std::string text = trimmed(content);
          if (text.empty()) throw Error("the reply is empty");
          conv.push_back({{"from", "human"}, {"value", withImage(rng.pick(detailInstructions()), rng)}});
          conv.push_back({{"from", "gpt"}, {"value", text}});
        } else {
          auto pairs = parseQuestionAnswers(content);
          for (size_t i = 0; i < pairs.size(); ++i) {
            conv.push_back({{"from", "human"}, {"value", i == 0 ? withImage(pairs[i].first, rng) : pairs[i].first}});
            conv.push_back({{"from", "gpt"}, {"value", pairs[i].second}});
          }
        }
      } catch (const Error &e) {
        sum.skipped.push_back(s.id + " " + kindName + ": " + e.what());
        if (log) *log << "mmdata: warning: " << where << ": skipped: " << e.what() << "\n";
        continue;
      }
      records.push_back({{"id", s.id + "_gpt_" + kindName},
                         {"image", s.image},
                         {"kind", kindName},
                         {"conversations", conv}});
      ++sum.records;
    }
    if (log && sum.scenes % 50 == 0) *log << "mmdata: " << sum.scenes << "/" << scenes.size() << " scenes\n" << std::flush;
  }
  if (records.empty()) throw Error(o.scenesPath + ": no usable replies in " + std::to_string(sum.requests) + " requests; nothing written");
  std::string text = records.dump(1) + "\n";
  detail::AtomicFile f(sum.out);
  f.write(text.data(), text.size());
  f.commit();
  return sum;
}

} // namespace synth
} // namespace mm
