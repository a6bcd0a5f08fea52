//===- Synth.h - synthetic LLaVA data: scenes, captions, QA, GPT-assisted -*- C++ -*-===//
//
// `mmdata` builds LLaVA-style training data from synthetic scenes:
//
//   * a scene is 1-4 coloured shapes on a background, sampled from a seed and
//     kept as a symbolic description (shapes, colours, sizes, exact pixel
//     boxes, centres) next to the RGB image rendered from it;
//   * stage-1 data pairs each image with a short caption and one of LLaVA's
//     eleven "describe the image briefly" instructions;
//   * stage-2 data holds LLaVA's three kinds (multi-turn conversation,
//     detailed description, complex reasoning), generated from the symbolic
//     description with short exact answers;
//   * a held-out evaluation set (one question per record, with its type and
//     exact answer) comes from a different seed stream, checked disjoint from
//     the training scenes;
//   * the paper's GPT-assisted path sends the captions and boxes of a scene to
//     an OpenAI-compatible chat-completions endpoint, with a system prompt
//     and few-shot examples, and turns the replies into LLaVA JSON.
//
// Everything is deterministic from the seed (a private xoshiro256** and our
// own sampling; no std:: distributions, whose output differs between standard
// libraries). Every failure throws mm::Error naming the file, scene or URL.
//
// Geometry: pixel (x, y) covers [x, x+1) x [y, y+1), its centre is
// (x + 0.5, y + 0.5); x grows to the right, y downwards. An object's box is
// [x0, y0, x1, y1] with x1, y1 exclusive: the smallest rectangle holding
// every pixel whose centre lies inside the shape (drawn at coverage >= 0.5),
// whether or not a later object covers it. Shapes are anti-aliased with
// coverage = clamp(0.5 - d, 0, 1), d the signed distance (pixels, negative
// inside) from the pixel centre to the shape's outline.
//
// Positions use a 3 x 3 grid: column left / centre / right, row top /
// middle / bottom of the object's centre. Objects are placed one per cell,
// their centres kept away from the cell borders, so every position, "left
// of" and "above" in the data is unambiguous.
//
//===----------------------------------------------------------------------===//
#ifndef MM_SYNTH_H
#define MM_SYNTH_H

#include "mm/Image.h"

#include <nlohmann/json_fwd.hpp>

#include <array>
#include <cstdint>
#include <iosfwd>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace mm {
namespace synth {

//===----------------------------------------------------------------------===//
// Random numbers
//===----------------------------------------------------------------------===//

/// xoshiro256** seeded through splitmix64: the same seed gives the same
/// sequence on every platform.
class Rng {
public:
  explicit Rng(uint64_t seed);
  uint64_t next();
  /// Uniform in [0, n); n > 0.
  uint64_t below(uint64_t n);
  /// Uniform integer in [lo, hi] (inclusive).
  int range(int lo, int hi);
  /// Uniform in [0, 1).
  double uniform();
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  bool chance(double p) { return uniform() < p; }
  template <class T> const T &pick(const std::vector<T> &v) { return v[below(v.size())]; }
  template <class T> void shuffle(std::vector<T> &v) {
    for (size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[below(i)]);
  }

private:
  uint64_t s_[4];
};

/// The seed of item INDEX of the named stream (e.g. "train", "eval") under
/// SEED. Different streams give unrelated seeds.
uint64_t streamSeed(uint64_t seed, const std::string &stream, uint64_t index);

//===----------------------------------------------------------------------===//
// Vocabulary
//===----------------------------------------------------------------------===//

using Rgb = std::array<uint8_t, 3>;

struct NamedColour {
  std::string name;
  Rgb rgb;
};

/// red, green, blue, yellow, purple, orange, white, black.
const std::vector<NamedColour> &objectColours();
/// grey, beige, light blue, dark grey, pale green, dark blue.
const std::vector<NamedColour> &backgroundColours();
/// circle, square, triangle, diamond, cross.
const std::vector<std::string> &shapeNames();
/// Euclidean distance of two colours in RGB.
double colourDistance(const Rgb &a, const Rgb &b);
/// An object colour is drawn on a background only this far from it.
constexpr double kMinBackgroundContrast = 110.0;

//===----------------------------------------------------------------------===//
// Scenes
//===----------------------------------------------------------------------===//

struct SceneObject {
  std::string shape;  // shapeNames()
  std::string colour; // objectColours() name
  Rgb rgb{};
  std::string size;   // "small" or "large"
  double extent = 0;  // width of the shape's bounding square, pixels
  double cx = 0, cy = 0;     // geometric centre (centre of the bounding square)
  std::array<int, 4> box{};  // [x0, y0, x1, y1), see the top of this file
  double visible = 1;        // fraction of its coverage not hidden by later objects
  /// "red circle"
  std::string name() const { return colour + " " + shape; }
};

struct Stripes {
  std::string direction; // "" (none), "horizontal", "vertical", "diagonal"
  int width = 0;         // pixels per stripe
  int phase = 0;
  int amplitude = 0;     // added to / subtracted from the background, per channel
};

struct Scene {
  std::string id;    // "train_000012", "eval_000003"
  std::string image; // relative to the dataset directory: "images/train_000012.png"
  int width = 0, height = 0;
  uint64_t seed = 0; // the scene's own seed; it also drives the pixel noise
  std::string background;
  Rgb backgroundRgb{};
  int noise = 0;     // per-pixel, per-channel uniform noise in [-noise, noise]
  Stripes stripes;
  std::vector<SceneObject> objects; // drawing order: later objects on top
};

struct SceneOptions {
  int size = 64; // width = height
  int minObjects = 1, maxObjects = 4;
  bool noise = true;   // allow pixel noise
  bool stripes = true; // allow faint background stripes
  double minVisible = 0.8; // every object keeps at least this much of its area (a cross 0.9)
};

/// Samples a scene from SEED. Objects: distinct grid cells, no two with the
/// same colour and shape, colours far enough from the background, similar
/// colours never touching, each at least MINVISIBLE visible. Throws mm::Error
/// for invalid options.
Scene sampleScene(uint64_t seed, const std::string &id, const SceneOptions &options = {});

/// Signed distance (pixels, negative inside) from (X, Y) to OBJECT's outline.
double signedDistance(const SceneObject &object, double x, double y);
/// Anti-aliased coverage of pixel (X, Y) by OBJECT, in [0, 1].
double pixelCoverage(const SceneObject &object, int x, int y);
/// [x0, y0, x1, y1) of the pixels whose centres are inside OBJECT, clipped to
/// the image.
std::array<int, 4> computeBox(const SceneObject &object, int width, int height);
/// Renders SCENE (background, stripes, objects in order, noise). A function
/// of the Scene alone: a scene read back from its JSON renders the same bytes.
Image renderScene(const Scene &scene);

/// Dense labels for pre-training a vision tower: the image cut into GRID x
/// GRID patches (row-major, as a ViT numbers them), each labelled with the
/// object that shows in most of its pixels (the top-most object at a pixel of
/// coverage >= 0.5) when that is at least a quarter of the patch, else 0
/// (background). An object's label is patchClass(object). Throws mm::Error if
/// GRID does not divide the image size.
std::vector<int> patchLabels(const Scene &scene, int grid);
/// 1 + (colour x shape x size), in [1, patchClassCount()).
int patchClass(const SceneObject &object);
/// Background, and every colour, shape and size: 1 + 8 * 5 * 2 = 81.
int patchClassCount();
/// Per patch, where the object of its label (patchLabels) sits: 1 + the
/// 3 x 3 grid cell of the object's centre (row by row; gridRow, gridColumn),
/// 0 for background. A patch that straddles two cells names its object's
/// cell, so a model trained on these learns which place each object stands
/// for (BLIP-2's queries stand for the cells).
std::vector<int> patchCells(const Scene &scene, int grid);

/// Grid column (0 left, 1 centre, 2 right) and row (0 top, 1 middle, 2 bottom).
int gridColumn(const Scene &scene, const SceneObject &object);
int gridRow(const Scene &scene, const SceneObject &object);
/// "top left", "top", "top right", "left", "centre", "right", "bottom left", ...
std::string positionName(const Scene &scene, const SceneObject &object);
/// "at the top left", "at the top", "on the left", "in the centre", ...
std::string positionPhrase(const Scene &scene, const SceneObject &object);

/// The scene as one JSON object (scenes.jsonl): id, image, width, height,
/// seed, background, background_rgb, noise, stripes, objects [{shape,
/// colour, rgb, size, extent, box, centre, position, visible}].
nlohmann::ordered_json sceneToJson(const Scene &scene);
/// Reads a scene back; WHERE prefixes every error ("scenes.jsonl: line 3").
Scene sceneFromJson(const nlohmann::json &json, const std::string &where);
/// Reads a JSON-lines file of scenes. Throws mm::Error naming PATH and the
/// line for unreadable files, bad JSON or bad fields, or no scenes at all.
std::vector<Scene> loadScenes(const std::string &path);

//===----------------------------------------------------------------------===//
// Language: captions, questions and answers from the symbolic description
//===----------------------------------------------------------------------===//

/// LLaVA's eleven instructions for brief image descriptions (stage 1).
const std::vector<std::string> &briefInstructions();
/// Instructions for a detailed description (stage 2, "detail").
const std::vector<std::string> &detailInstructions();

/// "one" ... "twenty"; otherwise the digits.
std::string numberWord(int n);

/// A short factual caption ("A red circle to the left of a blue square.").
std::string caption(const Scene &scene, Rng &rng);
/// Every object by colour and shape, in reading order (top to bottom, then
/// left to right, by grid cell: "A red circle, a blue square and a green
/// cross."): BLIP-2's captions, which its evaluation scores object by object
/// in any order. One fixed order lets a small decoder enumerate the objects
/// without naming one twice.
std::string objectListCaption(const Scene &scene);
/// Up to COUNT distinct captions of SCENE (different templates).
std::vector<std::string> captions(const Scene &scene, size_t count, Rng &rng);
/// A paragraph naming every object with its size, colour and position, and
/// which objects partly cover which.
std::string detailedDescription(const Scene &scene);

/// One question with its exact short answer. TYPE is one of the evaluation
/// types "colour", "shape", "count", "position", "relative_position",
/// "none", or "reasoning".
struct QA {
  std::string type, question, answer;
  int object = -1; // the scene object a colour, shape or position question is about
};
/// Follow-up questions about QA's object that refer to it as "it" ("Where is
/// it?", "What colour is it?"), asking for an attribute QA did not; type
/// "followup". Empty when QA is about no single object.
std::vector<QA> followUps(const Scene &scene, const QA &qa);
/// Every question of the six evaluation types SCENE supports (each answer
/// follows from the symbolic description; "none" questions ask about a shape,
/// colour or colour-and-shape the scene does not hold).
std::vector<QA> questionPool(const Scene &scene);
/// Reasoning questions: extremes ("Which object is closest to the top?"),
/// removal counts, largest/smallest, comparisons of counts and positions.
std::vector<QA> reasoningPool(const Scene &scene);

/// INSTRUCTION with the image marker before ("<image>\n...") or after
/// ("...\n<image>") it, at random.
std::string withImage(const std::string &instruction, Rng &rng);

/// LLaVA JSON records for SCENE ({"id", "image", "conversations"}):
/// stage 1 (a brief instruction, the caption)...
nlohmann::ordered_json captionRecord(const Scene &scene, Rng &rng);
/// An image-caption pair {"id", "image", "caption"} (objectListCaption);
/// with TYPE (evaluation records) also {"type": TYPE}.
nlohmann::ordered_json imageCaptionRecord(const Scene &scene, const std::string &type = "");
/// ...and stage 2, with "kind": up to kConversationPairs question/answer
/// pairs of different types, follow-ups included (INDEX > 0 tells a scene's
/// further conversations apart in the id: "_conversation2", ...),
constexpr size_t kConversationPairs = 4;
nlohmann::ordered_json conversationRecord(const Scene &scene, Rng &rng, int index = 0);
/// a detailed description,
nlohmann::ordered_json detailRecord(const Scene &scene, Rng &rng);
/// up to kReasoningPairs reasoning questions of different kinds.
constexpr size_t kReasoningPairs = 2;
nlohmann::ordered_json reasoningRecord(const Scene &scene, Rng &rng);
/// Stage-2 records written per training scene by default: kConversationsPerScene
/// conversations (the kind that asks what the evaluation asks), one detailed
/// description, one reasoning record (DatasetOptions::conversations sets the first).
constexpr int kConversationsPerScene = 2;
/// Evaluation records: one per evaluation type SCENE supports, each one
/// question, with "type" and "answer" (the gpt turn holds the answer too).
std::vector<nlohmann::ordered_json> evalRecords(const Scene &scene, Rng &rng);

//===----------------------------------------------------------------------===//
// Datasets (`mmdata scenes`)
//===----------------------------------------------------------------------===//

struct DatasetOptions {
  std::string outDir;
  int count = 1000;    // training scenes
  int evalCount = 200; // held-out scenes
  uint64_t seed = 0;
  int patchGrid = 8; // patches.json: GRID x GRID labels per image (llava-tiny: 64 px / 8 px patches)
  // Conversation records per scene in instruct.json. Those past the default
  // count are drawn after the detail and reasoning records, so a larger
  // count adds records and changes none of the default ones.
  int conversations = kConversationsPerScene;
  SceneOptions scene;
};

struct DatasetSummary {
  int trainScenes = 0, evalScenes = 0;
  int evalResampled = 0; // eval scenes drawn again because they equalled a training scene
  size_t captionRecords = 0, instructRecords = 0, evalRecords = 0, patchRecords = 0;
  std::map<std::string, size_t> instructKinds; // kind -> records
  std::map<std::string, size_t> evalTypes;     // type -> records
  std::map<int, size_t> objectsPerScene;       // training scenes by object count
  std::map<std::string, size_t> shapes, colours; // training objects
  std::vector<std::string> files; // written, relative to outDir
};

/// Writes OUTDIR/images/{train,eval}_NNNNNN.png, scenes.jsonl (training
/// scenes), eval_scenes.jsonl, captions.json (stage 1), instruct.json
/// (stage 2, "kind" per record), eval.json (held out). Training scene i uses
/// streamSeed(seed, "train", i), eval scene j streamSeed(seed, "eval", j);
/// an eval scene whose pixels or description equal a training scene's is
/// drawn again. Progress lines go to PROGRESS when it is not null.
DatasetSummary writeDataset(const DatasetOptions &options, std::ostream *progress = nullptr);
/// A human-readable summary of what writeDataset wrote.
std::string formatSummary(const DatasetOptions &options, const DatasetSummary &summary);

//===----------------------------------------------------------------------===//
// HTTP (plain http:// over POSIX sockets)
//===----------------------------------------------------------------------===//

struct Url {
  std::string host; // without brackets for IPv6
  int port = 80;
  std::string target; // path and query, starting with '/'
};
/// Parses http://HOST[:PORT][/PATH]. Throws mm::Error for https:// (no TLS:
/// use a local proxy), other schemes, or a malformed URL.
Url parseHttpUrl(const std::string &url);

struct HttpResponse {
  int status = 0;
  std::string reason;
  std::map<std::string, std::string> headers; // names lower-cased
  std::string body; // de-chunked
};

/// POSTs BODY to URL (HTTP/1.1, Connection: close) and reads the whole
/// response (Content-Length, chunked, or until the server closes). The
/// connection and the whole exchange are bounded by TIMEOUTSECONDS. Throws
/// mm::Error starting "POST URL: " (connection refused, timeout, malformed
/// response, ...). Any status is returned; the caller judges it.
HttpResponse httpPost(const std::string &url, const std::string &body,
                      const std::vector<std::pair<std::string, std::string>> &headers,
                      double timeoutSeconds);

//===----------------------------------------------------------------------===//
// GPT-assisted instruction data (`mmdata instruct`)
//===----------------------------------------------------------------------===//

enum class InstructKind { Conversation, Detail, Reasoning };
/// "conversation", "detail", "reasoning"; throws for anything else.
InstructKind parseInstructKind(const std::string &name);
const char *instructKindName(InstructKind kind);

/// The system prompt: an AI visual assistant that sees the image only through
/// its captions and object boxes, and what to write for KIND.
std::string systemPrompt(InstructKind kind);
struct FewShotExample {
  std::string user, assistant;
};
/// Hand-written user (captions + boxes) / assistant pairs for KIND.
const std::vector<FewShotExample> &fewShotExamples(InstructKind kind);
/// The symbolic input of a scene: a few captions, then one line per object
/// "colour shape (size): [x0, y0, x1, y1]" with the box normalised to [0, 1]
/// (two decimals), then the background.
std::string symbolicContext(const Scene &scene);
/// {"model", "messages": [system, few-shot user/assistant pairs, user]}.
nlohmann::ordered_json chatRequest(const Scene &scene, InstructKind kind, const std::string &model);
/// ENDPOINT + "/v1/chat/completions" (or + "/chat/completions" when ENDPOINT
/// ends with "/v1"; unchanged when it already ends with "/chat/completions").
std::string chatCompletionsUrl(const std::string &endpoint);
/// choices[0].message.content of a chat-completions response. Throws
/// mm::Error starting with WHERE for a non-200 status (with the body's error
/// message), a body that is not JSON, or no choices[0].message.content.
std::string completionContent(const HttpResponse &response, const std::string &where);
/// "Question: ..." / "Answer: ..." pairs (labels case-insensitive, markdown
/// bold and list markers around them allowed; continuation lines join the
/// open question or answer; "===" separators, blank lines and any preamble
/// before the first "Question:" are skipped). Throws mm::Error if there is no
/// "Question:", a question without an answer, an answer without a question,
/// or an empty question or answer.
std::vector<std::pair<std::string, std::string>> parseQuestionAnswers(const std::string &content);

struct AssistedOptions {
  std::string scenesPath; // scenes.jsonl
  std::string endpoint;   // http://host:port
  std::string model = "gpt-3.5-turbo";
  std::string apiKeyEnv;  // name of the environment variable holding the key; "" for none
  std::string out;        // default: instruct_gpt.json next to scenesPath
  std::vector<InstructKind> kinds{InstructKind::Conversation};
  int limit = -1;         // first N scenes; -1 for all
  double timeoutSeconds = 120;
};

struct AssistedSummary {
  size_t scenes = 0, requests = 0, records = 0;
  std::vector<std::string> skipped; // "scene kind: why" for unusable replies
  std::string out;
};

/// For each scene and kind, sends chatRequest to the endpoint, parses the
/// reply and writes LLaVA JSON records ({"id": "<scene>_gpt_<kind>", "image",
/// "kind", "conversations"}) to OUT. Transport and protocol errors (connection
/// refused, non-200, bad JSON, no choices) throw mm::Error naming the scene;
/// a reply whose content cannot be parsed is skipped with a line on LOG.
AssistedSummary runAssisted(const AssistedOptions &options, std::ostream *log = nullptr);

} // namespace synth
} // namespace mm

#endif // MM_SYNTH_H
