//===- Text.cpp - captions, questions and answers from a scene ------------===//
//
// Everything here reads the symbolic description only. Objects are named by
// colour and shape ("the red circle": a scene never holds two objects with
// the same colour and shape); shorter references ("the circle", "the red
// object", "the object at the top") are used only when they pick out exactly
// one object. Answers are short and exact: "Red.", "A circle.", "Two.",
// "At the top left.", "Yes.", "There is none.", "The red circle.".
//
//===----------------------------------------------------------------------===//
#include "mm/Synth.h"

#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <functional>
#include <set>
#include <tuple>

namespace mm {
namespace synth {

const std::vector<std::string> &briefInstructions() {
  // LLaVA's instructions for brief image descriptions (stage-1 data).
  static const std::vector<std::string> v = {
      "Describe the image concisely.",
      "Provide a brief description of the given image.",
      "Offer a succinct explanation of the picture presented.",
      "Summarize the visual content of the image.",
      "Give a short and clear explanation of the subsequent image.",
      "Share a concise interpretation of the image provided.",
      "Present a compact description of the photo's key features.",
      "Relay a brief, clear account of the picture shown.",
      "Render a clear and concise summary of the photo.",
      "Write a terse but informative summary of the picture.",
      "Create a compact narrative representing the image presented.",
  };
  return v;
}

const std::vector<std::string> &detailInstructions() {
  static const std::vector<std::string> v = {
      "Describe the following image in detail.",
      "Provide a detailed description of the given image.",
      "Give an elaborate explanation of the image you see.",
      "Share a comprehensive rundown of the presented image.",
      "Offer a thorough analysis of the image.",
      "Explain the various aspects of the image before you.",
      "Walk through the important details of the image.",
      "Examine the image closely and share its details.",
  };
  return v;
}

std::string numberWord(int n) {
  static const char *w[] = {"zero",    "one",     "two",       "three",    "four",     "five",    "six",
                            "seven",   "eight",   "nine",      "ten",      "eleven",   "twelve",  "thirteen",
                            "fourteen", "fifteen", "sixteen",  "seventeen", "eighteen", "nineteen", "twenty"};
  if (n >= 0 && n <= 20) return w[n];
  return std::to_string(n);
}

namespace {

using Objects = std::vector<SceneObject>;

std::string cap(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = (char)(s[0] - 'a' + 'A');
  return s;
}

/// "a" or "an" for WORD.
std::string article(const std::string &word) {
  return (!word.empty() && std::string("aeiou").find(word[0]) != std::string::npos) ? "an" : "a";
}
std::string withArticle(const std::string &phrase) { return article(phrase) + " " + phrase; }

std::string plural(const std::string &shape) { return shape == "cross" ? "crosses" : shape + "s"; }

/// "a, b and c".
std::string joinList(const std::vector<std::string> &items) {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += i + 1 == items.size() ? " and " : ", ";
    out += items[i];
  }
  return out;
}

size_t countIf(const Objects &objs, const std::function<bool(const SceneObject &)> &f) {
  return (size_t)std::count_if(objs.begin(), objs.end(), f);
}

size_t countShape(const Scene &s, const std::string &shape) {
  return countIf(s.objects, [&](const SceneObject &o) { return o.shape == shape; });
}
size_t countColour(const Scene &s, const std::string &colour) {
  return countIf(s.objects, [&](const SceneObject &o) { return o.colour == colour; });
}

/// The colours an object of SCENE could have had (far enough from the background).
std::vector<std::string> possibleColours(const Scene &s) {
  std::vector<std::string> out;
  for (const NamedColour &c : objectColours())
    if (colourDistance(c.rgb, s.backgroundRgb) >= kMinBackgroundContrast) out.push_back(c.name);
  return out;
}

/// Only object in its grid row and its grid column: "the object at the top"
/// then means it and nothing else.
bool positionUnique(const Scene &s, size_t i) {
  for (size_t j = 0; j < s.objects.size(); ++j)
    if (j != i && (gridRow(s, s.objects[j]) == gridRow(s, s.objects[i]) ||
                   gridColumn(s, s.objects[j]) == gridColumn(s, s.objects[i])))
      return false;
  return true;
}

std::string the(const SceneObject &o) { return "the " + o.name(); }

/// Objects in reading order: by row, then column.
std::vector<const SceneObject *> readingOrder(const Scene &s) {
  std::vector<const SceneObject *> v;
  for (const SceneObject &o : s.objects) v.push_back(&o);
  auto key = [&](const SceneObject *o) { return std::make_tuple(gridRow(s, *o), gridColumn(s, *o), o - s.objects.data()); };
  std::sort(v.begin(), v.end(), [&](const SceneObject *a, const SceneObject *b) { return key(a) < key(b); });
  return v;
}

/// How much of A a later object B hides (fraction of A's coverage).
double hiddenBy(const Scene &s, const SceneObject &a, const SceneObject &b) {
  double own = 0, hidden = 0;
  int x0 = std::max(a.box[0] - 1, 0), y0 = std::max(a.box[1] - 1, 0);
  int x1 = std::min(a.box[2] + 1, s.width), y1 = std::min(a.box[3] + 1, s.height);
  for (int y = y0; y < y1; ++y)
    for (int x = x0; x < x1; ++x) {
      double ca = pixelCoverage(a, x, y);
      if (ca <= 0) continue;
      own += ca;
      hidden += ca * pixelCoverage(b, x, y);
    }
  return own > 0 ? hidden / own : 0;
}

/// Valid relations of A to B for captions: "to the left of", "above", ...
std::vector<std::string> relations(const Scene &s, const SceneObject &a, const SceneObject &b) {
  std::vector<std::string> r;
  int ca = gridColumn(s, a), cb = gridColumn(s, b), ra = gridRow(s, a), rb = gridRow(s, b);
  if (ca < cb) r.push_back("to the left of");
  if (ca > cb) r.push_back("to the right of");
  if (ra < rb) r.push_back("above");
  if (ra > rb) r.push_back("below");
  return r;
}

/// Caption template T (0-3) for SCENE, or "" when T does not apply.
std::string captionTemplate(const Scene &s, int t, Rng &rng) {
  const Objects &objs = s.objects;
  std::vector<const SceneObject *> order;
  for (const SceneObject &o : objs) order.push_back(&o);
  rng.shuffle(order);
  std::vector<std::string> names;
  for (const SceneObject *o : order) names.push_back(withArticle(o->name()));
  if (objs.size() == 1) {
    const SceneObject &o = objs[0];
    switch (t) {
    case 0: return cap(withArticle(o.name())) + ".";
    case 1: return cap(withArticle(o.size + " " + o.name())) + ".";
    case 2: return cap(withArticle(o.name())) + " " + positionPhrase(s, o) + ".";
    default: return cap(withArticle(o.name())) + " on " + withArticle(s.background) + " background.";
    }
  }
  if (objs.size() == 2) {
    const SceneObject &a = *order[0], &b = *order[1];
    switch (t) {
    case 0: return cap(joinList(names)) + ".";
    case 1: {
      std::vector<std::string> r = relations(s, a, b);
      if (r.empty()) return "";
      return cap(withArticle(a.name())) + " " + rng.pick(r) + " " + withArticle(b.name()) + ".";
    }
    case 2:
      return cap(withArticle(a.size + " " + a.name())) + " and " + withArticle(b.size + " " + b.name()) + ".";
    default: return cap(joinList(names)) + " on " + withArticle(s.background) + " background.";
    }
  }
  switch (t) {
  case 0: return cap(joinList(names)) + ".";
  case 1: return cap(numberWord((int)objs.size())) + " shapes: " + joinList(names) + ".";
  case 2: {
    // Counts by shape, in order of first appearance: "Two circles and a square."
    std::vector<std::string> shapes, parts;
    for (const SceneObject *o : order)
      if (std::find(shapes.begin(), shapes.end(), o->shape) == shapes.end()) shapes.push_back(o->shape);
    for (const std::string &sh : shapes) {
      size_t n = countShape(s, sh);
      parts.push_back(n == 1 ? withArticle(sh) : numberWord((int)n) + " " + plural(sh));
    }
    return cap(joinList(parts)) + ".";
  }
  default: return cap(joinList(names)) + " on " + withArticle(s.background) + " background.";
  }
}

} // namespace

std::string caption(const Scene &s, Rng &rng) {
  if (s.objects.empty()) throw Error("scene " + s.id + " has no objects");
  for (;;) {
    std::string c = captionTemplate(s, (int)rng.below(4), rng);
    if (!c.empty()) return c;
  }
}

std::string objectListCaption(const Scene &s) {
  if (s.objects.empty()) throw Error("scene " + s.id + " has no objects");
  std::vector<std::string> names;
  for (const SceneObject *o : readingOrder(s)) names.push_back(withArticle(o->name()));
  return cap(joinList(names)) + ".";
}

std::vector<std::string> captions(const Scene &s, size_t count, Rng &rng) {
  if (s.objects.empty()) throw Error("scene " + s.id + " has no objects");
  std::vector<int> order = {0, 1, 2, 3};
  rng.shuffle(order);
  std::vector<std::string> out;
  for (int t : order) {
    if (out.size() >= count) break;
    std::string c = captionTemplate(s, t, rng);
    if (!c.empty() && std::find(out.begin(), out.end(), c) == out.end()) out.push_back(c);
  }
  return out;
}

std::string detailedDescription(const Scene &s) {
  size_t n = s.objects.size();
  std::string out = "The image shows " + numberWord((int)n) + (n == 1 ? " shape" : " shapes") + " on " +
                    withArticle(s.background) + " background";
  if (!s.stripes.direction.empty()) out += " with faint " + s.stripes.direction + " stripes";
  out += ".";
  for (const SceneObject *o : readingOrder(s))
    out += " " + cap(withArticle(o->size + " " + o->name())) + " is " + positionPhrase(s, *o) + ".";
  for (size_t i = 0; i < n; ++i)
    for (size_t j = i + 1; j < n; ++j)
      if (hiddenBy(s, s.objects[i], s.objects[j]) >= 0.05)
        out += " " + cap(the(s.objects[j])) + " partly covers " + the(s.objects[i]) + ".";
  return out;
}

std::vector<QA> questionPool(const Scene &s) {
  std::vector<QA> pool;
  int about = -1; // the object the next colour/shape/position question is about
  auto add = [&](const char *type, const std::string &q, const std::string &a) {
    pool.push_back({type, q, a, std::string(type) == "relative_position" ? -1 : about});
  };
  const Objects &objs = s.objects;
  const std::string none = "There is none.";

  for (size_t i = 0; i < objs.size(); ++i) {
    const SceneObject &o = objs[i];
    about = (int)i;
    bool shapeUnique = countShape(s, o.shape) == 1, colourUnique = countColour(s, o.colour) == 1;
    bool sizeShapeUnique = countIf(objs, [&](const SceneObject &p) { return p.shape == o.shape && p.size == o.size; }) == 1;
    std::string where = positionPhrase(s, o);
    // colour
    if (shapeUnique) add("colour", "What colour is the " + o.shape + "?", cap(o.colour) + ".");
    else if (sizeShapeUnique) add("colour", "What colour is the " + o.size + " " + o.shape + "?", cap(o.colour) + ".");
    if (positionUnique(s, i)) add("colour", "What colour is the object " + where + "?", cap(o.colour) + ".");
    // shape
    if (colourUnique) add("shape", "What shape is the " + o.colour + " object?", cap(withArticle(o.shape)) + ".");
    if (positionUnique(s, i)) add("shape", "What shape is the object " + where + "?", cap(withArticle(o.shape)) + ".");
    // position
    add("position", "Where is " + the(o) + "?", cap(where) + ".");
    if (shapeUnique) add("position", "Where is the " + o.shape + "?", cap(where) + ".");
    if (colourUnique) add("position", "Where is the " + o.colour + " object?", cap(where) + ".");
    // relative position
    for (size_t j = 0; j < objs.size(); ++j) {
      if (j == i) continue;
      const SceneObject &p = objs[j];
      int ci = gridColumn(s, o), cj = gridColumn(s, p), ri = gridRow(s, o), rj = gridRow(s, p);
      std::string b = the(p);
      if (ci != cj) {
        add("relative_position", "Is " + the(o) + " left of " + b + "?", ci < cj ? "Yes." : "No.");
        add("relative_position", "Is " + the(o) + " right of " + b + "?", ci > cj ? "Yes." : "No.");
      }
      if (ri != rj) {
        add("relative_position", "Is " + the(o) + " above " + b + "?", ri < rj ? "Yes." : "No.");
        add("relative_position", "Is " + the(o) + " below " + b + "?", ri > rj ? "Yes." : "No.");
      }
    }
  }
  about = -1;
  // count
  add("count", "How many objects are there?", cap(numberWord((int)objs.size())) + ".");
  std::set<std::string> shapes, colours, sizes;
  for (const SceneObject &o : objs) {
    shapes.insert(o.shape);
    colours.insert(o.colour);
    sizes.insert(o.size);
  }
  for (const std::string &sh : shapes)
    add("count", "How many " + plural(sh) + " are there?", cap(numberWord((int)countShape(s, sh))) + ".");
  for (const std::string &c : colours)
    add("count", "How many " + c + " objects are there?", cap(numberWord((int)countColour(s, c))) + ".");
  for (const std::string &z : sizes)
    add("count", "How many " + z + " objects are there?",
        cap(numberWord((int)countIf(objs, [&](const SceneObject &o) { return o.size == z; }))) + ".");
  // none: a shape, a colour, or a colour-and-shape the scene does not hold
  for (const std::string &sh : shapeNames())
    if (!shapes.count(sh)) {
      add("none", "What colour is the " + sh + "?", none);
      add("none", "Where is the " + sh + "?", none);
    }
  for (const std::string &c : possibleColours(s))
    if (!colours.count(c)) {
      add("none", "What shape is the " + c + " object?", none);
      add("none", "Where is the " + c + " object?", none);
    }
  // Distractors: colour and shape both present, but not together.
  for (const std::string &c : colours)
    for (const std::string &sh : shapes)
      if (!countIf(objs, [&](const SceneObject &o) { return o.colour == c && o.shape == sh; }))
        add("none", "Where is the " + c + " " + sh + "?", none);
  return pool;
}

std::vector<QA> followUps(const Scene &s, const QA &qa) {
  std::vector<QA> out;
  if (qa.object < 0 || qa.object >= (int)s.objects.size()) return out;
  const SceneObject &o = s.objects[qa.object];
  const int i = qa.object;
  if (qa.type != "colour") out.push_back({"followup", "What colour is it?", cap(o.colour) + ".", i});
  if (qa.type != "shape") out.push_back({"followup", "What shape is it?", cap(withArticle(o.shape)) + ".", i});
  if (qa.type != "position") out.push_back({"followup", "Where is it?", cap(positionPhrase(s, o)) + ".", i});
  return out;
}

namespace {

/// Reasoning questions in groups of one kind each (extremes, removal, size,
/// pairs, count comparisons, sameness), so a record can pick a kind first.
std::vector<std::vector<QA>> reasoningGroups(const Scene &s) {
  std::vector<std::vector<QA>> groups(6);
  size_t g = 0;
  auto add = [&](const std::string &q, const std::string &a) { groups[g].push_back({"reasoning", q, a}); };
  const Objects &objs = s.objects;
  const size_t n = objs.size();
  // Extremes: a unique object in the first/last row or column.
  struct Extreme {
    const char *question;
    std::function<int(const SceneObject &)> key;
  };
  const Extreme extremes[] = {
      {"Which object is closest to the top?", [&](const SceneObject &o) { return gridRow(s, o); }},
      {"Which object is closest to the bottom?", [&](const SceneObject &o) { return -gridRow(s, o); }},
      {"Which object is furthest to the left?", [&](const SceneObject &o) { return gridColumn(s, o); }},
      {"Which object is furthest to the right?", [&](const SceneObject &o) { return -gridColumn(s, o); }},
  };
  if (n >= 2)
    for (const Extreme &e : extremes) {
      int best = 1 << 20;
      for (const SceneObject &o : objs) best = std::min(best, e.key(o));
      const SceneObject *only = nullptr;
      size_t count = 0;
      for (const SceneObject &o : objs)
        if (e.key(o) == best) {
          only = &o;
          ++count;
        }
      if (count == 1) add(e.question, cap(the(*only)) + ".");
    }
  // Removal.
  g = 1;
  std::set<std::string> colours, shapes;
  for (const SceneObject &o : objs) {
    colours.insert(o.colour);
    shapes.insert(o.shape);
  }
  auto remaining = [&](size_t left) { return left == 0 ? std::string("None.") : cap(numberWord((int)left)) + "."; };
  for (const std::string &c : colours) {
    size_t k = countColour(s, c);
    add("If the " + c + (k == 1 ? " object were" : " objects were") + " removed, how many objects would remain?",
        remaining(n - k));
  }
  for (const std::string &sh : shapes) {
    size_t k = countShape(s, sh);
    add(std::string(k == 1 ? "If the " + sh + " were" : "If all the " + plural(sh) + " were") +
            " removed, how many objects would remain?",
        remaining(n - k));
  }
  // Largest / smallest by size class.
  g = 2;
  if (n >= 2) {
    size_t large = countIf(objs, [](const SceneObject &o) { return o.size == "large"; });
    for (const SceneObject &o : objs) {
      if (large == 1 && o.size == "large") add("Which object is the largest?", cap(the(o)) + ".");
      if (large == n - 1 && o.size == "small") add("Which object is the smallest?", cap(the(o)) + ".");
    }
  }
  // Pairs: further left, higher up.
  g = 3;
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < n; ++j) {
      if (i == j) continue;
      const SceneObject &a = objs[i], &b = objs[j];
      if (gridColumn(s, a) < gridColumn(s, b))
        add("Which is further left, " + the(a) + " or " + the(b) + "?", cap(the(a)) + ".");
      if (gridRow(s, a) < gridRow(s, b))
        add("Which is higher up, " + the(a) + " or " + the(b) + "?", cap(the(a)) + ".");
    }
  // Count comparisons between a present shape and any other shape.
  g = 4;
  for (const std::string &a : shapes)
    for (const std::string &b : shapeNames()) {
      if (a == b) continue;
      add("Are there more " + plural(a) + " than " + plural(b) + "?", countShape(s, a) > countShape(s, b) ? "Yes." : "No.");
      add("Are there more " + plural(b) + " than " + plural(a) + "?", countShape(s, b) > countShape(s, a) ? "Yes." : "No.");
    }
  g = 5;
  if (n >= 2) {
    add("Are all the objects the same colour?", colours.size() == 1 ? "Yes." : "No.");
    add("Are all the objects the same shape?", shapes.size() == 1 ? "Yes." : "No.");
  }
  groups.erase(std::remove_if(groups.begin(), groups.end(), [](const std::vector<QA> &v) { return v.empty(); }),
               groups.end());
  return groups;
}

} // namespace

std::vector<QA> reasoningPool(const Scene &s) {
  std::vector<QA> pool;
  for (const std::vector<QA> &g : reasoningGroups(s)) pool.insert(pool.end(), g.begin(), g.end());
  return pool;
}

std::string withImage(const std::string &instruction, Rng &rng) {
  return rng.chance(0.5) ? "<image>\n" + instruction : instruction + "\n<image>";
}

namespace {

nlohmann::ordered_json turn(const char *from, const std::string &value) { return {{"from", from}, {"value", value}}; }

nlohmann::ordered_json record(const std::string &id, const Scene &s) {
  nlohmann::ordered_json r;
  r["id"] = id;
  r["image"] = s.image;
  return r;
}

/// The pool grouped by type, types in a fixed order.
std::vector<std::pair<std::string, std::vector<QA>>> byType(const std::vector<QA> &pool) {
  static const char *types[] = {"colour", "shape", "count", "position", "relative_position", "none"};
  std::vector<std::pair<std::string, std::vector<QA>>> out;
  for (const char *t : types) {
    std::vector<QA> v;
    for (const QA &qa : pool)
      if (qa.type == t) v.push_back(qa);
    if (!v.empty()) out.emplace_back(t, std::move(v));
  }
  return out;
}

} // namespace

nlohmann::ordered_json captionRecord(const Scene &s, Rng &rng) {
  nlohmann::ordered_json r = record(s.id, s);
  r["conversations"] = {turn("human", withImage(rng.pick(briefInstructions()), rng)), turn("gpt", caption(s, rng))};
  return r;
}

nlohmann::ordered_json imageCaptionRecord(const Scene &s, const std::string &type) {
  nlohmann::ordered_json r;
  r["id"] = s.id + "_caption";
  r["image"] = s.image;
  if (!type.empty()) r["type"] = type;
  r["caption"] = objectListCaption(s);
  // What stands in each cell of the 3 x 3 grid, row by row ("" where nothing
  // does): the layout BLIP-2's tiny OPT reads as its pre-training context.
  nlohmann::ordered_json grid = nlohmann::ordered_json::array();
  for (int cell = 0; cell < 9; ++cell) grid.push_back("");
  for (const SceneObject &o : s.objects) grid[3 * gridRow(s, o) + gridColumn(s, o)] = o.name();
  r["grid"] = grid;
  return r;
}

nlohmann::ordered_json conversationRecord(const Scene &s, Rng &rng, int index) {
  auto groups = byType(questionPool(s));
  rng.shuffle(groups);
  // Four question-answer pairs, as many as llava-tiny's 176 positions hold
  // after the system prompt and the 64 image tokens; each new question is of a
  // type not asked yet, and half the questions about one object are followed
  // by one that says "it".
  const size_t maxTurns = 2 * kConversationPairs;
  nlohmann::ordered_json conv = nlohmann::ordered_json::array();
  for (size_t t = 0; t < groups.size() && conv.size() < maxTurns; ++t) {
    const QA &qa = rng.pick(groups[t].second);
    conv.push_back(turn("human", t == 0 ? withImage(qa.question, rng) : qa.question));
    conv.push_back(turn("gpt", qa.answer));
    std::vector<QA> more = followUps(s, qa);
    if (!more.empty() && conv.size() < maxTurns && rng.range(0, 1) == 1) {
      const QA &f = rng.pick(more);
      conv.push_back(turn("human", f.question));
      conv.push_back(turn("gpt", f.answer));
    }
  }
  nlohmann::ordered_json r = record(s.id + "_conversation" + (index > 0 ? std::to_string(index + 1) : ""), s);
  r["kind"] = "conversation";
  r["conversations"] = conv;
  return r;
}

nlohmann::ordered_json detailRecord(const Scene &s, Rng &rng) {
  nlohmann::ordered_json r = record(s.id + "_detail", s);
  r["kind"] = "detail";
  r["conversations"] = {turn("human", withImage(rng.pick(detailInstructions()), rng)),
                        turn("gpt", detailedDescription(s))};
  return r;
}

nlohmann::ordered_json reasoningRecord(const Scene &s, Rng &rng) {
  std::vector<std::vector<QA>> groups = reasoningGroups(s);
  if (groups.empty()) throw Error("scene " + s.id + ": no reasoning question applies");
  rng.shuffle(groups);
  // Two questions of different kinds where the scene has them (a single
  // question would leave most of the 176 positions as padding).
  nlohmann::ordered_json conv = nlohmann::ordered_json::array();
  for (size_t g = 0; g < groups.size() && g < kReasoningPairs; ++g) {
    const QA &qa = rng.pick(groups[g]);
    conv.push_back(turn("human", g == 0 ? withImage(qa.question, rng) : qa.question));
    conv.push_back(turn("gpt", qa.answer));
  }
  nlohmann::ordered_json r = record(s.id + "_reasoning", s);
  r["kind"] = "reasoning";
  r["conversations"] = conv;
  return r;
}

std::vector<nlohmann::ordered_json> evalRecords(const Scene &s, Rng &rng) {
  std::vector<nlohmann::ordered_json> out;
  for (const auto &group : byType(questionPool(s))) {
    const QA &qa = rng.pick(group.second);
    nlohmann::ordered_json r = record(s.id + "_" + group.first, s);
    r["type"] = qa.type;
    r["answer"] = qa.answer;
    r["conversations"] = {turn("human", withImage(qa.question, rng)), turn("gpt", qa.answer)};
    out.push_back(std::move(r));
  }
  // A second turn that refers to the first: scored on the follow-up.
  std::vector<QA> firsts;
  for (const QA &qa : questionPool(s))
    if (!followUps(s, qa).empty()) firsts.push_back(qa);
  if (!firsts.empty()) {
    const QA &first = rng.pick(firsts);
    const std::vector<QA> more = followUps(s, first);
    const QA &f = rng.pick(more);
    nlohmann::ordered_json r = record(s.id + "_followup", s);
    r["type"] = f.type;
    r["answer"] = f.answer;
    r["conversations"] = {turn("human", withImage(first.question, rng)), turn("gpt", first.answer),
                          turn("human", f.question), turn("gpt", f.answer)};
    out.push_back(std::move(r));
  }
  return out;
}

} // namespace synth
} // namespace mm
