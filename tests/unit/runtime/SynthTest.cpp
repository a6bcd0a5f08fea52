//===- SynthTest.cpp - tests for mm/Synth.h (mmdata) ----------------------===//
//
// Scenes: determinism, layout rules, boxes and shapes against the rendered
// pixels. Text: captions and every question's answer re-derived from the
// symbolic scene by code independent of the generator. Datasets: same seed,
// same bytes; every record loads with mm::loadConversations and passes the
// chat templates' checks; eval scenes disjoint from training scenes. The
// HTTP client and the GPT-assisted path against fake_openai_server.py (a
// stdlib server on 127.0.0.1 that records what it receives), and their
// errors. MMDATA_PATH, when the build defines it, runs the mmdata binary.
//
//===----------------------------------------------------------------------===//
#include "mm/Data.h"
#include "mm/Error.h"
#include "mm/Image.h"
#include "mm/Synth.h"

#include "TrainTestUtil.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <functional>
#include <map>
#include <netinet/in.h>
#include <regex>
#include <set>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace mm::synth;
using mmtest::TempDir;

namespace {

std::string errorOf(const std::function<void()> &f) {
  try {
    f();
  } catch (const mm::Error &e) {
    return e.what();
  }
  return "(no error)";
}

bool fileExists(const std::string &p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0;
}

std::vector<std::string> listDir(const std::string &dir) {
  std::vector<std::string> out;
  if (DIR *d = ::opendir(dir.c_str())) {
    while (dirent *e = ::readdir(d))
      if (e->d_name[0] != '.') out.push_back(e->d_name);
    ::closedir(d);
  }
  std::sort(out.begin(), out.end());
  return out;
}

//===----------------------------------------------------------------------===//
// An independent reading of a scene (centres only, no library geometry).
//===----------------------------------------------------------------------===//

int col(const Scene &s, const SceneObject &o) { return (int)std::floor(o.cx * 3 / s.width); }
int row(const Scene &s, const SceneObject &o) { return (int)std::floor(o.cy * 3 / s.height); }

std::string phraseOf(const Scene &s, const SceneObject &o) {
  static const char *p[3][3] = {{"at the top left", "at the top", "at the top right"},
                                {"on the left", "in the centre", "on the right"},
                                {"at the bottom left", "at the bottom", "at the bottom right"}};
  return p[row(s, o)][col(s, o)];
}

const SceneObject *find(const Scene &s, const std::string &colour, const std::string &shape) {
  for (const SceneObject &o : s.objects)
    if (o.colour == colour && o.shape == shape) return &o;
  return nullptr;
}

int count(const Scene &s, const std::function<bool(const SceneObject &)> &f) {
  return (int)std::count_if(s.objects.begin(), s.objects.end(), f);
}

std::string singular(const std::string &plural) {
  if (plural == "crosses") return "cross";
  return plural.substr(0, plural.size() - 1);
}

int wordNumber(const std::string &answer) {
  static const std::map<std::string, int> m = {{"None.", 0}, {"Zero.", 0}, {"One.", 1}, {"Two.", 2},
                                               {"Three.", 3}, {"Four.", 4}, {"Five.", 5}};
  auto it = m.find(answer);
  return it == m.end() ? -1 : it->second;
}

std::string capFirst(std::string s) {
  if (!s.empty()) s[0] = (char)std::toupper((unsigned char)s[0]);
  return s;
}

/// "The red circle." for O.
std::string theAnswer(const SceneObject &o) { return "The " + o.colour + " " + o.shape + "."; }

std::vector<Scene> manyScenes(int n, const SceneOptions &opt = {}, const std::string &stream = "test") {
  std::vector<Scene> v;
  for (int i = 0; i < n; ++i) v.push_back(sampleScene(streamSeed(11, stream, (uint64_t)i), "s" + std::to_string(i), opt));
  return v;
}

} // namespace

//===----------------------------------------------------------------------===//
// Random numbers
//===----------------------------------------------------------------------===//

TEST(SynthRng, DeterministicAndInRange) {
  Rng a(42), b(42), c(43);
  std::vector<uint64_t> va, vb, vc;
  for (int i = 0; i < 100; ++i) {
    va.push_back(a.next());
    vb.push_back(b.next());
    vc.push_back(c.next());
  }
  EXPECT_EQ(va, vb);
  EXPECT_NE(va, vc);
  Rng r(7);
  std::vector<int> hits(5, 0);
  for (int i = 0; i < 5000; ++i) {
    int x = r.range(-2, 2);
    ASSERT_GE(x, -2);
    ASSERT_LE(x, 2);
    ++hits[x + 2];
    double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  for (int h : hits) EXPECT_GT(h, 800);
  EXPECT_NE(streamSeed(0, "train", 0), streamSeed(0, "eval", 0));
  EXPECT_NE(streamSeed(0, "train", 0), streamSeed(0, "train", 1));
  EXPECT_NE(streamSeed(0, "train", 0), streamSeed(1, "train", 0));
  EXPECT_EQ(streamSeed(5, "eval", 9), streamSeed(5, "eval", 9));
}

//===----------------------------------------------------------------------===//
// Scenes
//===----------------------------------------------------------------------===//

TEST(SynthScene, SameSeedSameSceneAndPixels) {
  for (uint64_t seed : {0ull, 1ull, 123456789ull}) {
    Scene a = sampleScene(seed, "a"), b = sampleScene(seed, "a");
    EXPECT_EQ(sceneToJson(a).dump(), sceneToJson(b).dump());
    EXPECT_EQ(renderScene(a).rgb, renderScene(b).rgb);
  }
  EXPECT_NE(sceneToJson(sampleScene(1, "a")).dump(), sceneToJson(sampleScene(2, "a")).dump());
}

TEST(SynthScene, JsonRoundTripRendersTheSameBytes) {
  for (const Scene &s : manyScenes(40)) {
    Scene back = sceneFromJson(nlohmann::json::parse(sceneToJson(s).dump()), "test");
    EXPECT_EQ(sceneToJson(back).dump(), sceneToJson(s).dump());
    EXPECT_EQ(renderScene(back).rgb, renderScene(s).rgb) << s.id;
  }
}

TEST(SynthScene, LayoutRules) {
  std::map<size_t, int> perCount;
  std::set<std::string> shapesSeen, coloursSeen, backgroundsSeen;
  int withNoise = 0, withStripes = 0;
  for (const Scene &s : manyScenes(400)) {
    ASSERT_EQ(s.width, 64);
    ASSERT_EQ(s.height, 64);
    ASSERT_GE(s.objects.size(), 1u);
    ASSERT_LE(s.objects.size(), 4u);
    ++perCount[s.objects.size()];
    backgroundsSeen.insert(s.background);
    withNoise += s.noise > 0;
    withStripes += !s.stripes.direction.empty();
    std::set<std::string> names;
    std::set<int> cells;
    for (const SceneObject &o : s.objects) {
      shapesSeen.insert(o.shape);
      coloursSeen.insert(o.colour);
      EXPECT_TRUE(names.insert(o.name()).second) << s.id << ": two " << o.name() << "s";
      EXPECT_TRUE(cells.insert(row(s, o) * 3 + col(s, o)).second) << s.id << ": two objects in one cell";
      EXPECT_GE(colourDistance(o.rgb, s.backgroundRgb), kMinBackgroundContrast) << s.id;
      EXPECT_GE(o.visible, o.shape == "cross" ? 0.9 : 0.8) << s.id << " " << o.name();
      // Inside the image, and the centre well inside its grid cell.
      EXPECT_GE(o.box[0], 0);
      EXPECT_GE(o.box[1], 0);
      EXPECT_LE(o.box[2], s.width);
      EXPECT_LE(o.box[3], s.height);
      double cell = s.width / 3.0;
      double fx = std::fmod(o.cx, cell), fy = std::fmod(o.cy, cell);
      EXPECT_GE(std::min(fx, cell - fx), 0.19 * cell) << s.id << " " << o.name();
      EXPECT_GE(std::min(fy, cell - fy), 0.19 * cell) << s.id << " " << o.name();
      EXPECT_EQ(positionPhrase(s, o), phraseOf(s, o));
      // Size classes do not overlap.
      if (o.size == "large") EXPECT_GE(o.extent, 0.28 * s.width);
      else EXPECT_LE(o.extent, 0.22 * s.width);
    }
    // Large objects are drawn first.
    for (size_t i = 1; i < s.objects.size(); ++i)
      EXPECT_FALSE(s.objects[i].size == "large" && s.objects[i - 1].size == "small") << s.id;
  }
  for (size_t n = 1; n <= 4; ++n) EXPECT_GT(perCount[n], 60) << n << " objects";
  EXPECT_EQ(shapesSeen.size(), shapeNames().size());
  EXPECT_EQ(coloursSeen.size(), objectColours().size());
  EXPECT_EQ(backgroundsSeen.size(), backgroundColours().size());
  EXPECT_GT(withNoise, 100);
  EXPECT_GT(withStripes, 60);
}

TEST(SynthScene, BoxesMatchRenderedPixels) {
  // Every pixel fully inside an object and not under a later one has the
  // object's colour (up to the noise).
  for (const Scene &s : manyScenes(200)) {
    mm::Image img = renderScene(s);
    for (size_t i = 0; i < s.objects.size(); ++i) {
      const SceneObject &o = s.objects[i];
      int full = 0;
      for (int y = o.box[1]; y < o.box[3]; ++y)
        for (int x = o.box[0]; x < o.box[2]; ++x) {
          if (pixelCoverage(o, x, y) < 1) continue;
          bool covered = false;
          for (size_t j = i + 1; j < s.objects.size(); ++j) covered |= pixelCoverage(s.objects[j], x, y) > 0;
          if (covered) continue;
          ++full;
          const uint8_t *p = &img.rgb[((size_t)y * s.width + x) * 3];
          for (int c = 0; c < 3; ++c)
            ASSERT_LE(std::abs((int)p[c] - (int)o.rgb[c]), s.noise + 1)
                << s.id << " " << o.name() << " at (" << x << ", " << y << ")";
        }
      int area = (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]);
      EXPECT_GE(full, area * 0.2) << s.id << " " << o.name();
    }
  }
}

TEST(SynthScene, BoxIsTheExtentOfTheObjectsPixels) {
  // Without noise or stripes, the pixels nearer the object's colour than the
  // background's span exactly the box, for objects nothing else touches.
  SceneOptions opt;
  opt.noise = false;
  opt.stripes = false;
  int checked = 0;
  for (const Scene &s : manyScenes(200, opt, "plain")) {
    mm::Image img = renderScene(s);
    for (const SceneObject &o : s.objects) {
      int x0 = std::max(0, o.box[0] - 3), y0 = std::max(0, o.box[1] - 3);
      int x1 = std::min(s.width, o.box[2] + 3), y1 = std::min(s.height, o.box[3] + 3);
      bool alone = true;
      for (const SceneObject &p : s.objects)
        if (&p != &o && p.box[0] - 1 < x1 && x0 < p.box[2] + 1 && p.box[1] - 1 < y1 && y0 < p.box[3] + 1) alone = false;
      if (!alone) continue;
      int bx0 = s.width, by0 = s.height, bx1 = 0, by1 = 0, inside = 0;
      for (int y = y0; y < y1; ++y)
        for (int x = x0; x < x1; ++x) {
          const uint8_t *px = &img.rgb[((size_t)y * s.width + x) * 3];
          Rgb c{px[0], px[1], px[2]};
          if (colourDistance(c, o.rgb) < colourDistance(c, s.backgroundRgb)) {
            bx0 = std::min(bx0, x);
            by0 = std::min(by0, y);
            bx1 = std::max(bx1, x + 1);
            by1 = std::max(by1, y + 1);
            ++inside;
          }
        }
      std::array<int, 4> seen{bx0, by0, bx1, by1};
      EXPECT_EQ(seen, o.box) << s.id << " " << o.name();
      // The shape fills the share of its box its geometry says.
      double fill = (double)inside / ((o.box[2] - o.box[0]) * (o.box[3] - o.box[1]));
      double expect = o.shape == "circle" ? M_PI / 4 : o.shape == "square" ? 1.0 : o.shape == "cross" ? 5.0 / 9 : 0.5;
      if (o.size == "large") EXPECT_NEAR(fill, expect, 0.1) << s.id << " " << o.name();
      // The box is as wide as the shape (the row of pixel centres nearest a
      // triangle's base or a diamond's waist may be one pixel narrower).
      EXPECT_GE(o.box[2] - o.box[0], o.extent - 2) << s.id << " " << o.name();
      EXPECT_LE(o.box[2] - o.box[0], o.extent + 1) << s.id << " " << o.name();
      EXPECT_LE(o.box[3] - o.box[1], o.extent + 1) << s.id << " " << o.name();
      ++checked;
    }
  }
  EXPECT_GT(checked, 200);
}

TEST(SynthScene, AntiAliasedEdges) {
  // A circle's outline holds pixels strictly between the two colours.
  SceneObject o;
  o.shape = "circle";
  o.colour = "red";
  o.rgb = {215, 35, 35};
  o.size = "large";
  o.extent = 20.3;
  o.cx = 31.7;
  o.cy = 30.2;
  int partial = 0, full = 0;
  for (int y = 0; y < 64; ++y)
    for (int x = 0; x < 64; ++x) {
      double c = pixelCoverage(o, x, y);
      partial += c > 0 && c < 1;
      full += c == 1;
    }
  EXPECT_GT(partial, 40);
  EXPECT_NEAR(full + partial * 0.5, M_PI * 10.15 * 10.15, 25);
  EXPECT_EQ(computeBox(o, 64, 64), (std::array<int, 4>{22, 20, 42, 40}));
}

TEST(SynthScene, OtherSizes) {
  for (int size : {32, 128}) {
    SceneOptions opt;
    opt.size = size;
    for (int i = 0; i < 30; ++i) {
      Scene s = sampleScene(streamSeed(3, "size", (uint64_t)i), "x", opt);
      mm::Image img = renderScene(s);
      EXPECT_EQ(img.width, size);
      EXPECT_EQ(img.rgb.size(), (size_t)size * size * 3);
      for (const SceneObject &o : s.objects) EXPECT_LE(o.box[2], size);
    }
  }
  SceneOptions bad;
  bad.size = 8;
  EXPECT_NE(errorOf([&] { sampleScene(0, "x", bad); }).find("out of range"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// Text
//===----------------------------------------------------------------------===//

TEST(SynthScene, PatchLabelsNameTheObjectsThatShow) {
  // COM: the vision tower's pre-training targets: a labelled patch shows an
  // object of the scene (and its class), patches that no box reaches are
  // background, and every clearly visible object labels some patch; on a
  // coarse grid, whose cells a small object only partly covers, all but a
  // few (a small object split over cells that a larger one fills).
  for (const int grid : {8, 4}) {
    std::set<int> classes;
    int visible = 0, unlabelled = 0;
    for (const Scene &s : manyScenes(200)) {
      std::vector<int> labels = patchLabels(s, grid);
      ASSERT_EQ(labels.size(), size_t(grid * grid));
      const int pw = s.width / grid;
      for (int gy = 0; gy < grid; ++gy)
        for (int gx = 0; gx < grid; ++gx) {
          const int label = labels[gy * grid + gx];
          ASSERT_GE(label, 0);
          ASSERT_LT(label, patchClassCount());
          bool reached = false, named = false;
          for (const SceneObject &o : s.objects) {
            // box is [x0, y0, x1, y1) in pixels
            reached |= o.box[0] < (gx + 1) * pw && o.box[2] > gx * pw && o.box[1] < (gy + 1) * pw && o.box[3] > gy * pw;
            named |= patchClass(o) == label;
          }
          if (!reached) EXPECT_EQ(label, 0) << s.id << " patch " << gx << "," << gy;
          if (label) EXPECT_TRUE(named) << s.id << " patch " << gx << "," << gy;
          classes.insert(label);
        }
      for (const SceneObject &o : s.objects)
        if (o.extent >= 12 && o.visible >= 0.9) {
          ++visible;
          unlabelled += std::find(labels.begin(), labels.end(), patchClass(o)) == labels.end();
        }
    }
    if (grid == 8) EXPECT_EQ(unlabelled, 0);
    EXPECT_LE(unlabelled * 50, visible) << unlabelled << " of " << visible << " objects unlabelled, grid " << grid;
    EXPECT_GT(classes.size(), 40u); // colours, shapes and sizes all reach the labels
  }
  Scene s = manyScenes(1)[0];
  EXPECT_NE(errorOf([&] { patchLabels(s, 7); }).find("patch grid does not divide"), std::string::npos);
}

TEST(SynthScene, PatchCellsNameTheCellOfEachPatchsObject) {
  // COM: patch_cells: 0 exactly where patch_labels says background; elsewhere 1 + the
  // COM: 3 x 3 cell of the centre of an object with the patch's label, even where the
  // COM: patch itself lies in a neighbouring cell (objects straddle cells), and every
  // COM: cell occurs.
  std::set<int> seen;
  int straddling = 0;
  for (const Scene &s : manyScenes(200)) {
    const int grid = 8, pw = s.width / grid;
    std::vector<int> labels = patchLabels(s, grid), cells = patchCells(s, grid);
    ASSERT_EQ(cells.size(), labels.size());
    for (int p = 0; p < grid * grid; ++p) {
      ASSERT_EQ(cells[p] == 0, labels[p] == 0) << s.id << " patch " << p;
      if (!cells[p]) continue;
      bool found = false;
      for (const SceneObject &o : s.objects)
        found |= patchClass(o) == labels[p] && 1 + gridRow(s, o) * 3 + gridColumn(s, o) == cells[p];
      EXPECT_TRUE(found) << s.id << " patch " << p;
      const int patchCell = 1 + std::min(2, (p / grid * pw + pw / 2) * 3 / s.height) * 3 +
                            std::min(2, (p % grid * pw + pw / 2) * 3 / s.width);
      straddling += patchCell != cells[p];
      seen.insert(cells[p]);
    }
  }
  EXPECT_EQ(seen.size(), 9u);
  EXPECT_GT(straddling, 0);
}

TEST(SynthText, LlavaBriefInstructions) {
  const auto &v = briefInstructions();
  ASSERT_EQ(v.size(), 11u);
  EXPECT_EQ(v.front(), "Describe the image concisely.");
  EXPECT_EQ(v[1], "Provide a brief description of the given image.");
  EXPECT_EQ(v.back(), "Create a compact narrative representing the image presented.");
  EXPECT_EQ(std::set<std::string>(v.begin(), v.end()).size(), 11u);
}

TEST(SynthText, CaptionsAreFactual) {
  std::set<std::string> colourNames, shapeSet(shapeNames().begin(), shapeNames().end());
  for (const NamedColour &c : objectColours()) colourNames.insert(c.name);
  std::regex bgRe(" on an? ([a-z ]+) background\\.$"), relRe("^An? (\\w+) (\\w+) (to the left of|to the right of|above|below) an? (\\w+) (\\w+)\\.$"),
      wordRe("[a-z]+"), sizedRe("(small|large) (\\w+) (\\w+)"), countRe("(Two|two|Three|three|Four|four) (\\w+)"),
      shapesRe("^(Two|Three|Four) shapes: ");
  std::set<int> templatesSeen;
  Rng rng(5);
  for (const Scene &s : manyScenes(300)) {
    for (const std::string &c0 : captions(s, 4, rng)) {
      std::string c = c0;
      SCOPED_TRACE(s.id + ": " + c);
      ASSERT_FALSE(c.empty());
      EXPECT_EQ(c.back(), '.');
      std::smatch m;
      if (std::regex_search(c, m, bgRe)) {
        EXPECT_EQ(m[1].str(), s.background);
        c = c.substr(0, (size_t)m.position(0)) + ".";
        templatesSeen.insert(0);
      }
      std::set<std::string> words;
      for (auto it = std::sregex_iterator(c.begin(), c.end(), wordRe); it != std::sregex_iterator(); ++it)
        words.insert((*it).str());
      for (const std::string &w : words) {
        if (colourNames.count(w)) EXPECT_GT(count(s, [&](const SceneObject &o) { return o.colour == w; }), 0) << w;
        std::string sh = shapeSet.count(w) ? w : (shapeSet.count(singular(w)) ? singular(w) : "");
        if (!sh.empty()) EXPECT_GT(count(s, [&](const SceneObject &o) { return o.shape == sh; }), 0) << w;
      }
      // Every object's shape is named.
      for (const SceneObject &o : s.objects) {
        std::string pl = o.shape == "cross" ? "crosses" : o.shape + "s";
        EXPECT_TRUE(words.count(o.shape) || words.count(pl)) << o.shape;
      }
      for (auto it = std::sregex_iterator(c.begin(), c.end(), sizedRe); it != std::sregex_iterator(); ++it) {
        const SceneObject *o = find(s, (*it)[2].str(), (*it)[3].str());
        ASSERT_NE(o, nullptr);
        EXPECT_EQ(o->size, (*it)[1].str());
        templatesSeen.insert(1);
      }
      if (std::regex_match(c, m, relRe)) {
        const SceneObject *a = find(s, m[1], m[2]), *b = find(s, m[4], m[5]);
        ASSERT_TRUE(a && b);
        std::string rel = m[3];
        if (rel == "to the left of") EXPECT_LT(a->cx + s.width / 10.0, b->cx);
        if (rel == "to the right of") EXPECT_GT(a->cx, b->cx + s.width / 10.0);
        if (rel == "above") EXPECT_LT(a->cy + s.height / 10.0, b->cy);
        if (rel == "below") EXPECT_GT(a->cy, b->cy + s.height / 10.0);
        templatesSeen.insert(2);
      }
      for (auto it = std::sregex_iterator(c.begin(), c.end(), countRe); it != std::sregex_iterator(); ++it) {
        std::string w = (*it)[2];
        if (w == "shapes") continue;
        int n = wordNumber(capFirst((*it)[1].str()) + ".");
        EXPECT_EQ(count(s, [&](const SceneObject &o) { return o.shape == singular(w); }), n) << w;
        templatesSeen.insert(3);
      }
      if (std::regex_search(c, m, shapesRe)) {
        EXPECT_EQ(wordNumber(m[1].str() + "."), (int)s.objects.size());
        templatesSeen.insert(4);
      }
      if (s.objects.size() == 1 && c.find(" at the ") != std::string::npos)
        EXPECT_NE(c.find(phraseOf(s, s.objects[0])), std::string::npos);
    }
    std::string one = caption(s, rng);
    EXPECT_FALSE(one.empty());
  }
  EXPECT_EQ(templatesSeen.size(), 5u);
}

TEST(SynthText, AnswersFollowFromTheScene) {
  std::map<std::string, int> perType;
  std::regex howMany("^How many (\\w+) are there\\?$"), howManyAttr("^How many (\\w+) objects are there\\?$"),
      colourOfShape("^What colour is the (\\w+)\\?$"), colourOfSized("^What colour is the (small|large) (\\w+)\\?$"),
      colourAt("^What colour is the object (.+)\\?$"), shapeOfColour("^What shape is the (\\w+) object\\?$"),
      shapeAt("^What shape is the object (.+)\\?$"), whereBoth("^Where is the (\\w+) (\\w+)\\?$"),
      whereOne("^Where is the (\\w+)\\?$"), whereColour("^Where is the (\\w+) object\\?$"),
      relative("^Is the (\\w+) (\\w+) (left of|right of|above|below) the (\\w+) (\\w+)\\?$");
  std::set<std::string> shapeSet(shapeNames().begin(), shapeNames().end());
  for (const Scene &s : manyScenes(300)) {
    const int n = (int)s.objects.size();
    auto onlyAt = [&](const std::string &phrase) -> const SceneObject * {
      const SceneObject *hit = nullptr;
      for (const SceneObject &o : s.objects)
        if (phraseOf(s, o) == phrase) {
          EXPECT_EQ(hit, nullptr);
          hit = &o;
        }
      // Nothing else shares its row or column ("the object at the top" means it alone).
      if (hit)
        for (const SceneObject &o : s.objects)
          if (&o != hit) EXPECT_TRUE(row(s, o) != row(s, *hit) && col(s, o) != col(s, *hit));
      return hit;
    };
    for (const QA &qa : questionPool(s)) {
      SCOPED_TRACE(s.id + ": " + qa.question + " -> " + qa.answer);
      ++perType[qa.type];
      const std::string &q = qa.question, &a = qa.answer;
      std::smatch m;
      if (qa.type == "none") {
        EXPECT_EQ(a, "There is none.");
        if (std::regex_match(q, m, whereColour) || std::regex_match(q, m, shapeOfColour))
          EXPECT_EQ(count(s, [&](const SceneObject &o) { return o.colour == m[1].str(); }), 0);
        else if (std::regex_match(q, m, whereBoth)) EXPECT_EQ(find(s, m[1], m[2]), nullptr);
        else if (std::regex_match(q, m, colourOfShape) || std::regex_match(q, m, whereOne))
          EXPECT_EQ(count(s, [&](const SceneObject &o) { return o.shape == m[1].str(); }), 0);
        else ADD_FAILURE() << "unrecognised question";
        continue;
      }
      EXPECT_NE(a, "There is none.");
      if (qa.type == "count") {
        int expect = -1;
        if (q == "How many objects are there?") expect = n;
        else if (std::regex_match(q, m, howManyAttr)) {
          std::string w = m[1];
          expect = count(s, [&](const SceneObject &o) { return o.colour == w || o.size == w; });
        } else if (std::regex_match(q, m, howMany)) {
          std::string sh = singular(m[1]);
          ASSERT_TRUE(shapeSet.count(sh));
          expect = count(s, [&](const SceneObject &o) { return o.shape == sh; });
        }
        EXPECT_GT(expect, 0);
        EXPECT_EQ(wordNumber(a), expect);
      } else if (qa.type == "colour") {
        const SceneObject *o = nullptr;
        if (std::regex_match(q, m, colourOfSized)) {
          ASSERT_EQ(count(s, [&](const SceneObject &p) { return p.size == m[1].str() && p.shape == m[2].str(); }), 1);
          for (const SceneObject &p : s.objects)
            if (p.size == m[1].str() && p.shape == m[2].str()) o = &p;
        } else if (std::regex_match(q, m, colourAt)) {
          o = onlyAt(m[1]);
        } else if (std::regex_match(q, m, colourOfShape)) {
          ASSERT_EQ(count(s, [&](const SceneObject &p) { return p.shape == m[1].str(); }), 1);
          for (const SceneObject &p : s.objects)
            if (p.shape == m[1].str()) o = &p;
        }
        ASSERT_NE(o, nullptr);
        EXPECT_EQ(a, capFirst(o->colour) + ".");
      } else if (qa.type == "shape") {
        const SceneObject *o = nullptr;
        if (std::regex_match(q, m, shapeAt)) o = onlyAt(m[1]);
        else if (std::regex_match(q, m, shapeOfColour)) {
          ASSERT_EQ(count(s, [&](const SceneObject &p) { return p.colour == m[1].str(); }), 1);
          for (const SceneObject &p : s.objects)
            if (p.colour == m[1].str()) o = &p;
        }
        ASSERT_NE(o, nullptr);
        EXPECT_EQ(a, "A " + o->shape + ".");
      } else if (qa.type == "position") {
        const SceneObject *o = nullptr;
        if (std::regex_match(q, m, whereColour)) {
          ASSERT_EQ(count(s, [&](const SceneObject &p) { return p.colour == m[1].str(); }), 1);
          for (const SceneObject &p : s.objects)
            if (p.colour == m[1].str()) o = &p;
        } else if (std::regex_match(q, m, whereBoth)) {
          o = find(s, m[1], m[2]);
        } else if (std::regex_match(q, m, whereOne)) {
          ASSERT_EQ(count(s, [&](const SceneObject &p) { return p.shape == m[1].str(); }), 1);
          for (const SceneObject &p : s.objects)
            if (p.shape == m[1].str()) o = &p;
        }
        ASSERT_NE(o, nullptr);
        EXPECT_EQ(a, capFirst(phraseOf(s, *o)) + ".");
      } else if (qa.type == "relative_position") {
        ASSERT_TRUE(std::regex_match(q, m, relative));
        const SceneObject *x = find(s, m[1], m[2]), *y = find(s, m[4], m[5]);
        ASSERT_TRUE(x && y);
        std::string rel = m[3];
        // Only asked where the relation is clear.
        double d = (rel == "left of" || rel == "right of") ? x->cx - y->cx : x->cy - y->cy;
        EXPECT_GT(std::fabs(d), s.width / 10.0);
        bool yes = (rel == "left of" || rel == "above") ? d < 0 : d > 0;
        EXPECT_EQ(a, yes ? "Yes." : "No.");
      } else {
        ADD_FAILURE() << "unknown type " << qa.type;
      }
    }
  }
  for (const char *t : {"colour", "shape", "count", "position", "relative_position", "none"})
    EXPECT_GT(perType[t], 300) << t;
}

TEST(SynthText, ReasoningAnswersFollowFromTheScene) {
  std::regex removeColour("^If the (\\w+) objects? were removed, how many objects would remain\\?$"),
      removeShape("^If (?:the|all the) (\\w+) were removed, how many objects would remain\\?$"),
      further("^Which is (further left|higher up), the (\\w+) (\\w+) or the (\\w+) (\\w+)\\?$"),
      more("^Are there more (\\w+) than (\\w+)\\?$");
  std::set<std::string> shapeSet(shapeNames().begin(), shapeNames().end());
  std::set<std::string> kinds;
  for (const Scene &s : manyScenes(300)) {
    const int n = (int)s.objects.size();
    for (const QA &qa : reasoningPool(s)) {
      SCOPED_TRACE(s.id + ": " + qa.question + " -> " + qa.answer);
      const std::string &q = qa.question, &a = qa.answer;
      std::smatch m;
      auto extreme = [&](const std::function<double(const SceneObject &)> &key) {
        const SceneObject *best = &s.objects[0];
        for (const SceneObject &o : s.objects)
          if (key(o) < key(*best)) best = &o;
        for (const SceneObject &o : s.objects)
          if (&o != best) EXPECT_GT(key(o) - key(*best), s.width / 10.0); // clear winner
        EXPECT_EQ(a, theAnswer(*best));
      };
      if (q == "Which object is closest to the top?") extreme([](const SceneObject &o) { return o.cy; });
      else if (q == "Which object is closest to the bottom?") extreme([](const SceneObject &o) { return -o.cy; });
      else if (q == "Which object is furthest to the left?") extreme([](const SceneObject &o) { return o.cx; });
      else if (q == "Which object is furthest to the right?") extreme([](const SceneObject &o) { return -o.cx; });
      if (q.rfind("Which object is closest", 0) == 0 || q.rfind("Which object is furthest", 0) == 0) {
        kinds.insert("extreme");
      } else if (q == "Which object is the largest?" || q == "Which object is the smallest?") {
        double sign = q.find("largest") != std::string::npos ? -1 : 1;
        const SceneObject *best = &s.objects[0];
        for (const SceneObject &o : s.objects)
          if (sign * o.extent < sign * best->extent) best = &o;
        for (const SceneObject &o : s.objects)
          if (&o != best) EXPECT_GT(sign * (o.extent - best->extent), 0.05 * s.width);
        EXPECT_EQ(a, theAnswer(*best));
        kinds.insert("size");
      } else if (std::regex_match(q, m, removeColour)) {
        int k = count(s, [&](const SceneObject &o) { return o.colour == m[1].str(); });
        EXPECT_GT(k, 0);
        EXPECT_EQ(wordNumber(a), n - k);
        kinds.insert("remove colour");
      } else if (std::regex_match(q, m, removeShape)) {
        std::string sh = shapeSet.count(m[1].str()) ? m[1].str() : singular(m[1]);
        ASSERT_TRUE(shapeSet.count(sh));
        int k = count(s, [&](const SceneObject &o) { return o.shape == sh; });
        EXPECT_GT(k, 0);
        EXPECT_EQ(q.find("If all the") == 0, k > 1);
        EXPECT_EQ(wordNumber(a), n - k);
        kinds.insert("remove shape");
      } else if (std::regex_match(q, m, further)) {
        const SceneObject *x = find(s, m[2], m[3]), *y = find(s, m[4], m[5]);
        ASSERT_TRUE(x && y);
        double d = m[1] == "further left" ? x->cx - y->cx : x->cy - y->cy;
        EXPECT_GT(std::fabs(d), s.width / 10.0);
        EXPECT_EQ(a, theAnswer(d < 0 ? *x : *y));
        kinds.insert("pair");
      } else if (std::regex_match(q, m, more)) {
        std::string sa = singular(m[1]), sb = singular(m[2]);
        int ca = count(s, [&](const SceneObject &o) { return o.shape == sa; });
        int cb = count(s, [&](const SceneObject &o) { return o.shape == sb; });
        EXPECT_EQ(a, ca > cb ? "Yes." : "No.");
        kinds.insert("more");
      } else if (q == "Are all the objects the same colour?") {
        std::set<std::string> c;
        for (const SceneObject &o : s.objects) c.insert(o.colour);
        EXPECT_EQ(a, c.size() == 1 ? "Yes." : "No.");
        kinds.insert("same");
      } else if (q == "Are all the objects the same shape?") {
        std::set<std::string> c;
        for (const SceneObject &o : s.objects) c.insert(o.shape);
        EXPECT_EQ(a, c.size() == 1 ? "Yes." : "No.");
      } else {
        ADD_FAILURE() << "unrecognised reasoning question";
      }
    }
  }
  EXPECT_EQ(kinds.size(), 7u);
}

TEST(SynthText, DetailedDescriptionNamesEveryObject) {
  for (const Scene &s : manyScenes(100)) {
    std::string d = detailedDescription(s);
    SCOPED_TRACE(d);
    EXPECT_NE(d.find(" on a " + s.background + " background"), std::string::npos);
    for (const SceneObject &o : s.objects)
      EXPECT_NE(d.find(o.size + " " + o.name() + " is " + phraseOf(s, o) + "."), std::string::npos);
  }
}

TEST(SynthText, ObjectListCaptionNamesEveryObjectInReadingOrder) {
  // BLIP-2's caption: each object once, "a COLOUR SHAPE", ordered by grid
  // row, then grid column (ties: drawing order), with no randomness.
  for (const Scene &s : manyScenes(200)) {
    std::string c = objectListCaption(s);
    SCOPED_TRACE(c);
    EXPECT_EQ(c, objectListCaption(s));
    std::vector<size_t> idx(s.objects.size());
    for (size_t i = 0; i < idx.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) {
      const SceneObject &x = s.objects[a], &y = s.objects[b];
      return std::make_tuple(gridRow(s, x), gridColumn(s, x), a) < std::make_tuple(gridRow(s, y), gridColumn(s, y), b);
    });
    // Each name in reading order is found after the one before it (and the
    // count of ", " and " and " says there are no extra names).
    std::vector<std::string> expected;
    for (size_t i : idx) expected.push_back(s.objects[i].name());
    size_t from = 0;
    for (const std::string &name : expected) {
      size_t pos = c.find(name, from);
      ASSERT_NE(pos, std::string::npos) << name << " not after position " << from;
      from = pos + name.size();
    }
    size_t separators = 0;
    for (size_t p = c.find(", "); p != std::string::npos; p = c.find(", ", p + 1)) ++separators;
    for (size_t p = c.find(" and "); p != std::string::npos; p = c.find(" and ", p + 1)) ++separators;
    EXPECT_EQ(separators + 1, s.objects.size());
    EXPECT_EQ(c.back(), '.');
  }
}

TEST(SynthText, ImageCaptionRecordsCarryTheGridLayout) {
  // COM: blip2-tiny's OPT is pre-trained on the layout ("grid": 9 cells, row by row, the object
  // COM: whose centre lies in each, "" elsewhere): every object in its own cell, nothing else.
  for (const Scene &s : manyScenes(200)) {
    nlohmann::ordered_json r = imageCaptionRecord(s);
    ASSERT_TRUE(r.contains("grid"));
    ASSERT_EQ(r["grid"].size(), 9u);
    size_t filled = 0;
    for (const auto &cell : r["grid"]) filled += !cell.get<std::string>().empty();
    EXPECT_EQ(filled, s.objects.size()); // no two objects share a cell
    for (const SceneObject &o : s.objects)
      EXPECT_EQ(r["grid"][3 * gridRow(s, o) + gridColumn(s, o)].get<std::string>(), o.name());
  }
}

TEST(SynthText, RecordsHaveLlavaShape) {
  Rng rng(9);
  int before = 0, after = 0;
  for (const Scene &s0 : manyScenes(60)) {
    Scene s = s0;
    s.image = "images/" + s.id + ".png";
    std::vector<nlohmann::ordered_json> recs = {captionRecord(s, rng), conversationRecord(s, rng), detailRecord(s, rng),
                                                reasoningRecord(s, rng)};
    for (auto &r : evalRecords(s, rng)) recs.push_back(r);
    for (const auto &r : recs) {
      SCOPED_TRACE(r.dump());
      EXPECT_EQ(r["image"], s.image);
      const auto &conv = r["conversations"];
      ASSERT_GE(conv.size(), 2u);
      ASSERT_EQ(conv.size() % 2, 0u);
      for (size_t t = 0; t < conv.size(); ++t) {
        EXPECT_EQ(conv[t]["from"], t % 2 == 0 ? "human" : "gpt");
        std::string v = conv[t]["value"];
        bool marker = v.find("<image>") != std::string::npos;
        EXPECT_EQ(marker, t == 0);
        if (t == 0) {
          EXPECT_TRUE(v.rfind("<image>\n", 0) == 0 || (v.size() > 8 && v.compare(v.size() - 8, 8, "\n<image>") == 0));
          (v.rfind("<image>\n", 0) == 0 ? before : after)++;
        }
      }
    }
    // Stage 1: one of LLaVA's instructions, then the caption.
    std::string instr = recs[0]["conversations"][0]["value"];
    instr = instr.rfind("<image>\n", 0) == 0 ? instr.substr(8) : instr.substr(0, instr.size() - 8);
    const auto &b = briefInstructions();
    EXPECT_NE(std::find(b.begin(), b.end(), instr), b.end());
    EXPECT_EQ(recs[1]["kind"], "conversation");
    // COM: every scene has at least four question types, so a conversation
    // fills all of its pairs (follow-ups included) and no position is wasted.
    EXPECT_EQ(recs[1]["conversations"].size(), 2 * kConversationPairs);
    EXPECT_EQ(recs[2]["kind"], "detail");
    EXPECT_EQ(recs[3]["kind"], "reasoning");
    EXPECT_LE(recs[3]["conversations"].size(), 2 * kReasoningPairs);
    // Eval: one question per type, the answer in "answer" and in the gpt turn.
    std::set<std::string> types;
    for (size_t i = 4; i < recs.size(); ++i) {
      const std::string type = recs[i]["type"];
      const auto &conv = recs[i]["conversations"];
      EXPECT_TRUE(types.insert(type).second);
      EXPECT_EQ(recs[i]["answer"], conv[conv.size() - 1]["value"]);
      EXPECT_EQ(conv.size(), type == "followup" ? 4u : 2u);
    }
    EXPECT_GE(types.size(), 5u);
    EXPECT_EQ(types.count("relative_position"), s.objects.size() > 1 ? 1u : 0u);
  }
  EXPECT_GT(before, 50);
  EXPECT_GT(after, 50);
}

TEST(SynthText, FollowUpsReferToTheObjectTheTurnBeforeAskedAbout) {
  // COM: "What colour is it?" must be answerable from the previous turn alone:
  // that turn asked about exactly one object, and the answer is that object's.
  Rng rng(4);
  int followUpsSeen = 0;
  for (const Scene &s : manyScenes(200)) {
    nlohmann::ordered_json r = conversationRecord(s, rng);
    const auto &conv = r["conversations"];
    std::vector<QA> pool = questionPool(s);
    for (size_t t = 2; t + 1 < conv.size(); t += 2) {
      std::string q = conv[t]["value"];
      if (q.find(" it?") == std::string::npos) continue;
      ++followUpsSeen;
      std::string prev = conv[t - 2]["value"], prevAnswer = conv[t - 1]["value"];
      if (prev.rfind("<image>\n", 0) == 0) prev = prev.substr(8);
      else if (prev.size() > 8 && prev.compare(prev.size() - 8, 8, "\n<image>") == 0) prev.resize(prev.size() - 8);
      bool found = false;
      for (const QA &qa : pool) {
        if (qa.question != prev || qa.answer != prevAnswer) continue;
        EXPECT_GE(qa.object, 0) << prev;
        for (const QA &f : followUps(s, qa)) found |= f.question == q && f.answer == conv[t + 1]["value"];
      }
      EXPECT_TRUE(found) << s.id << ": " << prev << " / " << q;
    }
  }
  EXPECT_GT(followUpsSeen, 50);
}

//===----------------------------------------------------------------------===//
// Datasets
//===----------------------------------------------------------------------===//

namespace {

DatasetOptions smallDataset(const std::string &dir, uint64_t seed, int count = 24, int evalCount = 12) {
  DatasetOptions o;
  o.outDir = dir;
  o.seed = seed;
  o.count = count;
  o.evalCount = evalCount;
  return o;
}

} // namespace

TEST(SynthDataset, SameSeedSameBytes) {
  TempDir t("synth_det");
  writeDataset(smallDataset(t / "a", 3));
  writeDataset(smallDataset(t / "b", 3));
  writeDataset(smallDataset(t / "c", 4));
  std::vector<std::string> files = {"scenes.jsonl", "eval_scenes.jsonl", "captions.json", "instruct.json", "eval.json"};
  for (const std::string &img : listDir(t / "a/images")) files.push_back("images/" + img);
  EXPECT_EQ(listDir(t / "a/images").size(), 36u);
  EXPECT_EQ(listDir(t / "a/images"), listDir(t / "b/images"));
  int differ = 0;
  for (const std::string &f : files) {
    std::string a = mmtest::readText(t / ("a/" + f));
    ASSERT_FALSE(a.empty()) << f;
    EXPECT_EQ(a, mmtest::readText(t / ("b/" + f))) << f;
    differ += a != mmtest::readText(t / ("c/" + f));
  }
  EXPECT_EQ(differ, (int)files.size());
}

TEST(SynthDataset, RecordsLoadAndEvalIsHeldOut) {
  TempDir t("synth_ds");
  DatasetOptions o = smallDataset(t.path(), 17, 40, 25);
  DatasetSummary sum = writeDataset(o);
  EXPECT_EQ(sum.trainScenes, 40);
  EXPECT_EQ(sum.evalScenes, 25);
  EXPECT_NE(formatSummary(o, sum).find("eval.json"), std::string::npos);

  auto captions = mm::loadConversations(t / "captions.json");
  auto instruct = mm::loadConversations(t / "instruct.json");
  auto eval = mm::loadConversations(t / "eval.json");
  EXPECT_EQ(captions.size(), 40u);
  EXPECT_EQ(instruct.size(), 40u * (kConversationsPerScene + 2));
  EXPECT_EQ(eval.size(), sum.evalRecords);
  for (const auto &r : captions) mm::checkRecord(r, mm::ChatTemplate::Plain);
  for (const auto *set : {&instruct, &eval})
    for (const auto &r : *set) {
      mm::checkRecord(r, mm::ChatTemplate::VicunaV1);
      ASSERT_TRUE(r.image);
      EXPECT_TRUE(fileExists(t / *r.image)) << *r.image;
    }
  // Kinds and eval fields, straight from the JSON.
  nlohmann::json ij = nlohmann::json::parse(mmtest::readText(t / "instruct.json"));
  std::map<std::string, int> kinds;
  for (const auto &r : ij) ++kinds[r["kind"].get<std::string>()];
  EXPECT_EQ(kinds, (std::map<std::string, int>{{"conversation", 40 * kConversationsPerScene}, {"detail", 40}, {"reasoning", 40}}));

  std::vector<Scene> train = loadScenes(t / "scenes.jsonl"), held = loadScenes(t / "eval_scenes.jsonl");
  ASSERT_EQ(train.size(), 40u);
  ASSERT_EQ(held.size(), 25u);
  std::set<std::string> trainIds, trainImages, trainContent, trainPixels;
  auto content = [](const Scene &s) {
    nlohmann::ordered_json j = sceneToJson(s);
    j.erase("id");
    j.erase("image");
    j.erase("seed");
    return j.dump();
  };
  std::map<std::string, Scene> byId;
  for (const Scene &s : train) {
    trainIds.insert(s.id);
    trainImages.insert(s.image);
    trainContent.insert(content(s));
    mm::Image img = mm::loadImage(t / s.image);
    EXPECT_EQ(img.rgb, renderScene(s).rgb) << s.id; // PNG is lossless; JSON reproduces the image
    trainPixels.insert(std::string(img.rgb.begin(), img.rgb.end()));
  }
  for (const Scene &s : held) {
    EXPECT_FALSE(trainIds.count(s.id)) << s.id;
    EXPECT_FALSE(trainImages.count(s.image)) << s.image;
    EXPECT_FALSE(trainContent.count(content(s))) << s.id;
    mm::Image img = mm::loadImage(t / s.image);
    EXPECT_FALSE(trainPixels.count(std::string(img.rgb.begin(), img.rgb.end()))) << s.id;
    byId[s.id] = s;
  }
  // Training records point at training images only, eval records at eval images only.
  for (const auto &r : captions) EXPECT_TRUE(trainImages.count(*r.image));
  for (const auto &r : instruct) EXPECT_TRUE(trainImages.count(*r.image));
  nlohmann::json ej = nlohmann::json::parse(mmtest::readText(t / "eval.json"));
  std::set<std::string> types;
  for (const auto &r : ej) {
    std::string image = r["image"];
    EXPECT_FALSE(trainImages.count(image));
    std::string type = r["type"], answer = r["answer"];
    types.insert(type);
    const auto &conv = r["conversations"];
    // COM: a follow-up record is two turns, scored on the second, which says
    // "it" for the object the first asked about.
    ASSERT_EQ(conv.size(), type == "followup" ? 4u : 2u);
    EXPECT_EQ(conv[conv.size() - 1]["value"], answer);
    // The answer is the one the eval scene gives for this question.
    std::string id = r["id"];
    const Scene &s = byId.at(id.substr(0, id.find('_', 5)));
    std::string q = conv[0]["value"], firstAnswer = conv[1]["value"];
    q = q.rfind("<image>\n", 0) == 0 ? q.substr(8) : q.substr(0, q.size() - 8);
    bool found = false;
    for (const QA &qa : questionPool(s)) {
      if (qa.question != q || qa.answer != firstAnswer) continue;
      if (type != "followup") {
        found |= qa.type == type;
        continue;
      }
      for (const QA &f : followUps(s, qa)) found |= f.question == conv[2]["value"] && f.answer == answer;
    }
    EXPECT_TRUE(found) << id << ": " << q;
  }
  EXPECT_EQ(types, (std::set<std::string>{"colour", "shape", "count", "position", "relative_position", "none",
                                          "followup"}));
}

// COM: --conversations weights the stage-2 mix towards conversations; the
// extra records come after the default ones' draws, so every record of the
// default output is still there, byte for byte.
TEST(SynthDataset, MoreConversationsAddRecordsAndKeepTheDefaultOnes) {
  TempDir t("synth_conv");
  DatasetOptions a = smallDataset(t / "a", 5, 6, 0);
  DatasetOptions b = a;
  b.outDir = t / "b";
  b.conversations = 5;
  writeDataset(a);
  writeDataset(b);
  nlohmann::json da = nlohmann::json::parse(mmtest::readText(t / "a/instruct.json"));
  nlohmann::json db = nlohmann::json::parse(mmtest::readText(t / "b/instruct.json"));
  ASSERT_EQ(da.size(), 6u * (kConversationsPerScene + 2));
  ASSERT_EQ(db.size(), 6u * (5 + 2));
  std::map<std::string, std::string> byId;
  std::map<std::string, int> kinds;
  for (const auto &r : db) {
    byId[r["id"].get<std::string>()] = r.dump();
    ++kinds[r["kind"].get<std::string>()];
  }
  EXPECT_EQ(kinds, (std::map<std::string, int>{{"conversation", 30}, {"detail", 6}, {"reasoning", 6}}));
  EXPECT_EQ(byId.count("train_000000_conversation5"), 1u);
  for (const auto &r : da) EXPECT_EQ(byId[r["id"].get<std::string>()], r.dump()) << r["id"];
}

TEST(SynthDataset, Errors) {
  TempDir t("synth_err");
  mmtest::writeText(t / "file", "x");
  EXPECT_NE(errorOf([&] { writeDataset(smallDataset(t / "file", 0)); }).find("file: exists and is not a directory"),
            std::string::npos);
  EXPECT_NE(errorOf([&] { writeDataset(smallDataset(t / "d", 0, 0)); }).find("at least 1"), std::string::npos);
  DatasetOptions bad = smallDataset(t / "d", 0);
  bad.scene.size = 5;
  EXPECT_NE(errorOf([&] { writeDataset(bad); }).find("out of range"), std::string::npos);

  EXPECT_NE(errorOf([&] { loadScenes(t / "missing.jsonl"); }).find("missing.jsonl: cannot open"), std::string::npos);
  mmtest::writeText(t / "empty.jsonl", "\n\n");
  EXPECT_NE(errorOf([&] { loadScenes(t / "empty.jsonl"); }).find("holds no scenes"), std::string::npos);
  std::string good = sceneToJson(sampleScene(1, "ok")).dump();
  mmtest::writeText(t / "bad.jsonl", good + "\n{not json\n");
  EXPECT_NE(errorOf([&] { loadScenes(t / "bad.jsonl"); }).find("bad.jsonl: line 2: not valid JSON"), std::string::npos);
  nlohmann::json j = nlohmann::json::parse(good);
  j["objects"][0]["shape"] = "hexagon";
  mmtest::writeText(t / "shape.jsonl", j.dump() + "\n");
  EXPECT_NE(errorOf([&] { loadScenes(t / "shape.jsonl"); }).find("line 1 (scene 'ok'): object 0: unknown shape 'hexagon'"),
            std::string::npos);
  j = nlohmann::json::parse(good);
  j.erase("objects");
  mmtest::writeText(t / "noobj.jsonl", j.dump() + "\n");
  EXPECT_NE(errorOf([&] { loadScenes(t / "noobj.jsonl"); }).find("missing 'objects'"), std::string::npos);
}

//===----------------------------------------------------------------------===//
// HTTP and the GPT-assisted path
//===----------------------------------------------------------------------===//

TEST(SynthHttp, Urls) {
  Url u = parseHttpUrl("http://127.0.0.1:8080/v1/chat/completions");
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, 8080);
  EXPECT_EQ(u.target, "/v1/chat/completions");
  u = parseHttpUrl("http://localhost");
  EXPECT_EQ(u.port, 80);
  EXPECT_EQ(u.target, "/");
  u = parseHttpUrl("http://[::1]:9000/x?y=1");
  EXPECT_EQ(u.host, "::1");
  EXPECT_EQ(u.port, 9000);
  EXPECT_EQ(u.target, "/x?y=1");
  std::string tls = errorOf([] { parseHttpUrl("https://api.openai.com/v1"); });
  EXPECT_NE(tls.find("https:// is not supported"), std::string::npos) << tls;
  EXPECT_NE(tls.find("local proxy"), std::string::npos) << tls;
  EXPECT_NE(errorOf([] { parseHttpUrl("ftp://x"); }).find("not an http:// URL"), std::string::npos);
  EXPECT_NE(errorOf([] { parseHttpUrl("http://h:99999/"); }).find("invalid port"), std::string::npos);
  EXPECT_NE(errorOf([] { parseHttpUrl("http://:80/"); }).find("no host"), std::string::npos);

  EXPECT_EQ(chatCompletionsUrl("http://h:1"), "http://h:1/v1/chat/completions");
  EXPECT_EQ(chatCompletionsUrl("http://h:1/"), "http://h:1/v1/chat/completions");
  EXPECT_EQ(chatCompletionsUrl("http://h:1/v1"), "http://h:1/v1/chat/completions");
  EXPECT_EQ(chatCompletionsUrl("http://h:1/v1/chat/completions"), "http://h:1/v1/chat/completions");
}

TEST(SynthHttp, CompletionContentErrors) {
  HttpResponse r;
  r.status = 200;
  r.body = R"({"choices": [{"message": {"role": "assistant", "content": "hi"}}]})";
  EXPECT_EQ(completionContent(r, "W"), "hi");
  r.status = 429;
  r.reason = "Too Many Requests";
  r.body = R"({"error": {"message": "Rate limit reached", "type": "requests"}})";
  EXPECT_EQ(errorOf([&] { completionContent(r, "W"); }), "W: the endpoint answered HTTP 429 Too Many Requests: Rate limit reached");
  r.body = "<html>bad gateway</html>";
  r.status = 502;
  r.reason = "Bad Gateway";
  EXPECT_EQ(errorOf([&] { completionContent(r, "W"); }), "W: the endpoint answered HTTP 502 Bad Gateway: <html>bad gateway</html>");
  r.status = 200;
  r.body = "{oops";
  EXPECT_NE(errorOf([&] { completionContent(r, "W"); }).find("W: the response is not valid JSON"), std::string::npos);
  r.body = R"({"object": "chat.completion"})";
  EXPECT_NE(errorOf([&] { completionContent(r, "W"); }).find("W: the response has no choices"), std::string::npos);
  r.body = R"({"choices": [{"message": {"role": "assistant"}}]})";
  EXPECT_NE(errorOf([&] { completionContent(r, "W"); }).find("no choices[0].message.content"), std::string::npos);
}

TEST(SynthHttp, QuestionAnswerReplies) {
  auto qa = parseQuestionAnswers("Here you go:\n\nQuestion: What colour is it?\nAnswer: Red.\n===\n"
                                 "**Question:** How many?\n**Answer:** Two.\nBoth are small.\n");
  ASSERT_EQ(qa.size(), 2u);
  EXPECT_EQ(qa[0], (std::pair<std::string, std::string>{"What colour is it?", "Red."}));
  EXPECT_EQ(qa[1], (std::pair<std::string, std::string>{"How many?", "Two.\nBoth are small."}));
  qa = parseQuestionAnswers("question: Multi\nline?\nanswer:\nYes.");
  ASSERT_EQ(qa.size(), 1u);
  EXPECT_EQ(qa[0].first, "Multi\nline?");
  EXPECT_EQ(qa[0].second, "Yes.");
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Just text."); }).find("no \"Question:\" line"), std::string::npos);
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Question: A?\nQuestion: B?\nAnswer: b"); }).find("'A?' has no answer"),
            std::string::npos);
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Question: A?"); }).find("has no answer"), std::string::npos);
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Answer: x\nQuestion: A?\nAnswer: y"); }).find("before any question"),
            std::string::npos);
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Question: A?\nAnswer: x\nAnswer: y"); }).find("two answers"), std::string::npos);
  EXPECT_NE(errorOf([] { parseQuestionAnswers("Question: A?\nAnswer:"); }).find("empty answer"), std::string::npos);
}

TEST(SynthHttp, RequestCarriesPromptExamplesCaptionsAndBoxes) {
  Scene s = sampleScene(21, "train_000021");
  for (InstructKind k : {InstructKind::Conversation, InstructKind::Detail, InstructKind::Reasoning}) {
    nlohmann::ordered_json r = chatRequest(s, k, "m");
    EXPECT_EQ(r["model"], "m");
    const auto &msgs = r["messages"];
    ASSERT_EQ(msgs.size(), 2 + 2 * fewShotExamples(k).size());
    EXPECT_EQ(msgs[0]["role"], "system");
    EXPECT_EQ(msgs[0]["content"], systemPrompt(k));
    for (size_t i = 1; i + 1 < msgs.size(); ++i) EXPECT_EQ(msgs[i]["role"], i % 2 ? "user" : "assistant");
    EXPECT_EQ(msgs.back()["role"], "user");
    EXPECT_EQ(msgs.back()["content"], symbolicContext(s));
  }
  std::string ctx = symbolicContext(s);
  EXPECT_EQ(ctx.rfind("Captions:\n", 0), 0u);
  for (const SceneObject &o : s.objects) {
    char box[96];
    std::snprintf(box, sizeof box, "%s, %s: [%.2f, %.2f, %.2f, %.2f]", o.name().c_str(), o.size.c_str(), o.box[0] / 64.0,
                  o.box[1] / 64.0, o.box[2] / 64.0, o.box[3] / 64.0);
    EXPECT_NE(ctx.find(box), std::string::npos) << ctx;
  }
  EXPECT_NE(ctx.find("Background: " + s.background), std::string::npos);
  EXPECT_NE(systemPrompt(InstructKind::Conversation).find("AI visual assistant"), std::string::npos);
  EXPECT_EQ(parseInstructKind("detail"), InstructKind::Detail);
  EXPECT_NE(errorOf([] { parseInstructKind("chat"); }).find("unknown instruction kind 'chat'"), std::string::npos);
}

namespace {

/// fake_openai_server.py in a child process; bounded by its --deadline and,
/// should that fail, killed here.
class FakeServer {
public:
  FakeServer(const TempDir &dir, const std::string &mode, int requests, double deadline = 20)
      : portFile_(dir / ("port_" + mode)), log_(dir / ("requests_" + mode + ".jsonl")) {
    std::string script = mmtest::sourceDir() + "/tests/unit/runtime/fake_openai_server.py";
    std::vector<std::string> args = {"/usr/bin/python3", script, "--port-file", portFile_, "--log", log_,
                                     "--requests", std::to_string(requests), "--mode", mode,
                                     "--deadline", std::to_string(deadline)};
    pid_ = ::fork();
    if (pid_ == 0) {
      std::vector<char *> argv;
      for (std::string &a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < until) {
      std::string p = mmtest::readText(portFile_);
      if (!p.empty()) {
        port_ = std::stoi(p);
        break;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  ~FakeServer() { finish(); }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  /// Waits (at most 15 s) for the server to exit.
  void finish() {
    if (pid_ <= 0) return;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > until) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    pid_ = -1;
  }
  std::vector<nlohmann::json> requests() const {
    std::vector<nlohmann::json> out;
    for (const std::string &l : mmtest::readLines(log_)) out.push_back(nlohmann::json::parse(l));
    return out;
  }

private:
  std::string portFile_, log_;
  pid_t pid_ = -1;
  int port_ = 0;
};

bool havePython() { return ::access("/usr/bin/python3", X_OK) == 0; }

/// A loopback port nothing listens on (bound, then closed).
int closedPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  ::bind(fd, (sockaddr *)&a, sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, (sockaddr *)&a, &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// Three training scenes in DIR (scenes.jsonl, images/).
void threeScenes(const std::string &dir) { writeDataset(smallDataset(dir, 8, 3, 0)); }

AssistedOptions assisted(const std::string &dir, const std::string &endpoint) {
  AssistedOptions o;
  o.scenesPath = dir + "/scenes.jsonl";
  o.endpoint = endpoint;
  o.model = "fake-model";
  o.timeoutSeconds = 10;
  return o;
}

} // namespace

#define REQUIRE_PYTHON()                                                                                               \
  if (!havePython()) GTEST_SKIP() << "no /usr/bin/python3 for the fake server"

TEST(SynthAssisted, AllKindsAgainstFakeServer) {
  REQUIRE_PYTHON();
  TempDir t("synth_gpt");
  threeScenes(t.path());
  FakeServer server(t, "ok", 6);
  ASSERT_GT(server.port(), 0);
  ::setenv("MM_SYNTH_TEST_KEY", "sk-test-123", 1);
  AssistedOptions o = assisted(t.path(), server.url());
  o.kinds = {InstructKind::Conversation, InstructKind::Detail, InstructKind::Reasoning};
  o.limit = 2;
  o.apiKeyEnv = "MM_SYNTH_TEST_KEY";
  AssistedSummary sum = runAssisted(o);
  server.finish();
  EXPECT_EQ(sum.scenes, 2u);
  EXPECT_EQ(sum.requests, 6u);
  EXPECT_EQ(sum.records, 6u);
  EXPECT_TRUE(sum.skipped.empty());
  EXPECT_EQ(sum.out, t / "instruct_gpt.json");

  std::vector<Scene> scenes = loadScenes(t / "scenes.jsonl");
  auto reqs = server.requests();
  ASSERT_EQ(reqs.size(), 6u);
  const InstructKind kinds[] = {InstructKind::Conversation, InstructKind::Detail, InstructKind::Reasoning};
  for (size_t i = 0; i < reqs.size(); ++i) {
    const nlohmann::json &r = reqs[i];
    SCOPED_TRACE(r.dump());
    EXPECT_EQ(r["method"], "POST");
    EXPECT_EQ(r["path"], "/v1/chat/completions");
    EXPECT_EQ(r["headers"]["content-type"], "application/json");
    EXPECT_EQ(r["headers"]["authorization"], "Bearer sk-test-123");
    EXPECT_EQ(r["headers"]["host"], "127.0.0.1:" + std::to_string(server.port()));
    const nlohmann::json &body = r["body"];
    EXPECT_EQ(body["model"], "fake-model");
    const Scene &s = scenes[i / 3];
    InstructKind k = kinds[i % 3];
    const nlohmann::json &msgs = body["messages"];
    ASSERT_EQ(msgs.size(), 6u); // system, two few-shot pairs, the scene
    EXPECT_EQ(msgs[0]["role"], "system");
    EXPECT_EQ(msgs[0]["content"], systemPrompt(k));
    for (size_t e = 0; e < 2; ++e) {
      EXPECT_EQ(msgs[1 + 2 * e]["role"], "user");
      EXPECT_EQ(msgs[1 + 2 * e]["content"], fewShotExamples(k)[e].user);
      EXPECT_EQ(msgs[2 + 2 * e]["role"], "assistant");
      EXPECT_EQ(msgs[2 + 2 * e]["content"], fewShotExamples(k)[e].assistant);
    }
    std::string user = msgs[5]["content"];
    EXPECT_EQ(user, symbolicContext(s));
    EXPECT_NE(user.find("Captions:"), std::string::npos);
    for (const SceneObject &o : s.objects) EXPECT_NE(user.find(o.name() + ", " + o.size + ": ["), std::string::npos);
  }
  // The written file: LLaVA JSON the trainer reads.
  auto recs = mm::loadConversations(sum.out);
  ASSERT_EQ(recs.size(), 6u);
  for (const auto &r : recs) mm::checkRecord(r, mm::ChatTemplate::VicunaV1);
  EXPECT_EQ(recs[0].id, scenes[0].id + "_gpt_conversation");
  EXPECT_EQ(*recs[0].image, scenes[0].image);
  ASSERT_EQ(recs[0].turns.size(), 4u);
  std::string q0 = recs[0].turns[0].value;
  EXPECT_TRUE(q0 == "<image>\nWhat colour is the circle?" || q0 == "What colour is the circle?\n<image>") << q0;
  EXPECT_EQ(recs[0].turns[1].value, "Red.");
  EXPECT_EQ(recs[0].turns[2].value, "How many objects are there?");
  EXPECT_EQ(recs[0].turns[3].value, "Two.\nThe second object is a square.");
  EXPECT_EQ(recs[1].id, scenes[0].id + "_gpt_detail");
  EXPECT_EQ(recs[1].turns[1].value.rfind("The image shows two shapes", 0), 0u);
  EXPECT_EQ(recs[2].id, scenes[0].id + "_gpt_reasoning");
  EXPECT_EQ(recs[2].turns[1].value, "The red circle. It is higher than the square.");
  nlohmann::json written = nlohmann::json::parse(mmtest::readText(sum.out));
  EXPECT_EQ(written[1]["kind"], "detail");
}

TEST(SynthAssisted, ChunkedAndLargeResponses) {
  REQUIRE_PYTHON();
  TempDir t("synth_chunk");
  threeScenes(t.path());
  {
    FakeServer server(t, "chunked", 1);
    AssistedOptions o = assisted(t.path(), server.url() + "/v1");
    o.limit = 1;
    o.out = t / "chunked.json";
    AssistedSummary sum = runAssisted(o);
    EXPECT_EQ(sum.records, 1u);
    auto recs = mm::loadConversations(o.out);
    EXPECT_EQ(recs[0].turns[3].value, "Two.\nThe second object is a square.");
  }
  {
    FakeServer server(t, "big", 1);
    HttpResponse r = httpPost(chatCompletionsUrl(server.url()), chatRequest(loadScenes(t / "scenes.jsonl")[0],
                                                                             InstructKind::Detail, "m").dump(),
                              {}, 10);
    std::string content = completionContent(r, "big");
    EXPECT_GT(content.size(), 150000u);
    EXPECT_EQ(content.substr(content.size() - 19), " The circle is red.");
  }
}

TEST(SynthAssisted, TransportAndProtocolErrors) {
  REQUIRE_PYTHON();
  TempDir t("synth_gpterr");
  threeScenes(t.path());
  auto run = [&](const std::string &endpoint, double timeout = 10) {
    AssistedOptions o = assisted(t.path(), endpoint);
    o.timeoutSeconds = timeout;
    o.out = t / "out.json";
    return errorOf([&] { runAssisted(o); });
  };
  const std::string scene0 = t / "scenes.jsonl: scene train_000000 (conversation): POST ";

  int port = closedPort();
  std::string e = run("http://127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(e.rfind(scene0, 0), 0u) << e;
  EXPECT_NE(e.find("cannot connect to 127.0.0.1:" + std::to_string(port) + ": connection refused"), std::string::npos) << e;

  {
    FakeServer server(t, "error", 1);
    e = run(server.url());
    EXPECT_NE(e.find("the endpoint answered HTTP 500 Internal Server Error: The server is overloaded"), std::string::npos) << e;
  }
  {
    FakeServer server(t, "badjson", 1);
    e = run(server.url());
    EXPECT_NE(e.find("the response is not valid JSON"), std::string::npos) << e;
    EXPECT_NE(e.find("{this is not json"), std::string::npos) << e;
  }
  {
    FakeServer server(t, "nochoices", 1);
    e = run(server.url());
    EXPECT_NE(e.find("the response has no choices"), std::string::npos) << e;
  }
  {
    FakeServer server(t, "hang", 1, 2.5);
    auto start = std::chrono::steady_clock::now();
    e = run(server.url(), 1);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    EXPECT_NE(e.find("timed out after 1 s waiting for the response"), std::string::npos) << e;
    EXPECT_LT(took, 3.0);
  }
  {
    // Replies without "Question:" lines are skipped; with none usable, nothing is written.
    FakeServer server(t, "unparsable", 3);
    AssistedOptions o = assisted(t.path(), server.url());
    o.out = t / "none.json";
    std::ostringstream log;
    e = errorOf([&] { runAssisted(o, &log); });
    EXPECT_NE(e.find("no usable replies in 3 requests; nothing written"), std::string::npos) << e;
    EXPECT_NE(log.str().find("skipped: the reply holds no \"Question:\" line"), std::string::npos) << log.str();
    EXPECT_FALSE(fileExists(t / "none.json"));
  }
  e = run("https://api.example.com");
  EXPECT_NE(e.find("https:// is not supported"), std::string::npos) << e;
  AssistedOptions o = assisted(t.path(), "http://127.0.0.1:1");
  o.apiKeyEnv = "MM_SYNTH_TEST_UNSET_KEY";
  ::unsetenv("MM_SYNTH_TEST_UNSET_KEY");
  EXPECT_NE(errorOf([&] { runAssisted(o); }).find("the environment variable MM_SYNTH_TEST_UNSET_KEY is not set"),
            std::string::npos);
}

//===----------------------------------------------------------------------===//
// The mmdata binary
//===----------------------------------------------------------------------===//

TEST(SynthCli, ScenesAndInstruct) {
#ifndef MMDATA_PATH
  GTEST_SKIP() << "MMDATA_PATH is not defined by this build";
#else
  REQUIRE_PYTHON();
  const std::string mmdata = MMDATA_PATH;
  if (!fileExists(mmdata)) GTEST_SKIP() << mmdata << " is not built";
  TempDir t("synth_cli");
  auto sh = [&](const std::string &cmd) {
    int rc = std::system((cmd + " >" + (t / "out.txt") + " 2>" + (t / "err.txt")).c_str());
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  };
  ASSERT_EQ(sh(mmdata + " scenes --out " + (t / "ds") + " --count 5 --eval-count 3 --seed 2 --size 48"), 0)
      << mmtest::readText(t / "err.txt");
  EXPECT_NE(mmtest::readText(t / "out.txt").find("instruct.json    " + std::to_string(5 * (kConversationsPerScene + 2)) + " stage-2 records"), std::string::npos)
      << mmtest::readText(t / "out.txt");
  EXPECT_EQ(mm::loadImage(t / "ds/images/train_000004.png").width, 48);
  EXPECT_EQ(mm::loadConversations(t / "ds/captions.json").size(), 5u);
  {
    FakeServer server(t, "ok", 2);
    ASSERT_EQ(sh(mmdata + " instruct --scenes " + (t / "ds/scenes.jsonl") + " --endpoint " + server.url() +
                 " --kind reasoning --limit 2 --model tiny --out " + (t / "gpt.json")),
              0)
        << mmtest::readText(t / "err.txt");
    EXPECT_NE(mmtest::readText(t / "out.txt").find("wrote 2 records"), std::string::npos);
    server.finish();
    EXPECT_EQ(server.requests().size(), 2u);
    EXPECT_EQ(mm::loadConversations(t / "gpt.json").size(), 2u);
  }
  EXPECT_EQ(sh(mmdata + " instruct --scenes " + (t / "ds/scenes.jsonl") + " --endpoint https://api.example.com"), 1);
  EXPECT_NE(mmtest::readText(t / "err.txt").find("mmdata: error: https://api.example.com/v1/chat/completions: https:// is not supported"),
            std::string::npos)
      << mmtest::readText(t / "err.txt");
  EXPECT_EQ(sh(mmdata + " scenes --out " + (t / "x") + " --count abc"), 1);
  EXPECT_NE(mmtest::readText(t / "err.txt").find("--count: 'abc' is not a whole number from 1 to 1000000"), std::string::npos);
  EXPECT_EQ(sh(mmdata + " frobnicate"), 1);
  EXPECT_NE(mmtest::readText(t / "err.txt").find("unknown subcommand 'frobnicate'"), std::string::npos);
#endif
}
