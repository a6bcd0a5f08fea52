//===- Scene.cpp - synthetic scenes: sampling, rasterising, JSON ----------===//
//
// See mm/Synth.h for the geometry conventions. Shapes are signed distance
// functions; a pixel's coverage is clamp(0.5 - d, 0, 1) at its centre, a
// one-pixel-wide linear ramp across the outline (anti-aliasing), and exactly
// the pixels with d <= 0 make up the object's box.
//
//===----------------------------------------------------------------------===//
#include "mm/Synth.h"
#include "../SplitMix64.h"

#include "mm/Error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

namespace mm {
namespace synth {

//===----------------------------------------------------------------------===//
// Random numbers
//===----------------------------------------------------------------------===//

namespace {

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t fnv1a(const std::string &s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

} // namespace

Rng::Rng(uint64_t seed) {
  uint64_t st = seed;
  for (uint64_t &s : s_) s = splitmix64(st);
}

uint64_t Rng::next() {
  uint64_t result = rotl(s_[1] * 5, 7) * 9;
  uint64_t t = s_[1] << 17;
  s_[2] ^= s_[0];
  s_[3] ^= s_[1];
  s_[1] ^= s_[2];
  s_[0] ^= s_[3];
  s_[2] ^= t;
  s_[3] = rotl(s_[3], 45);
  return result;
}

uint64_t Rng::below(uint64_t n) {
  if (n == 0) throw Error("Rng::below(0)");
  // Rejection of the top partial block: unbiased.
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = next();
  while (x >= limit);
  return x % n;
}

int Rng::range(int lo, int hi) {
  if (hi < lo) throw Error("Rng::range: empty range");
  return lo + (int)below((uint64_t)((int64_t)hi - lo + 1));
}

double Rng::uniform() { return (double)(next() >> 11) * (1.0 / 9007199254740992.0); }

uint64_t streamSeed(uint64_t seed, const std::string &stream, uint64_t index) {
  uint64_t st = seed ^ fnv1a(stream);
  uint64_t a = splitmix64(st);
  st = a ^ (index * 0xd1b54a32d192ed03ULL);
  splitmix64(st);
  return splitmix64(st);
}

//===----------------------------------------------------------------------===//
// Vocabulary
//===----------------------------------------------------------------------===//

const std::vector<NamedColour> &objectColours() {
  static const std::vector<NamedColour> c = {
      {"red", {215, 35, 35}},    {"green", {30, 155, 55}},  {"blue", {40, 85, 225}},
      {"yellow", {240, 215, 40}}, {"purple", {135, 55, 185}}, {"orange", {245, 130, 20}},
      {"white", {245, 245, 245}}, {"black", {25, 25, 25}},
  };
  return c;
}

const std::vector<NamedColour> &backgroundColours() {
  static const std::vector<NamedColour> c = {
      {"grey", {128, 128, 128}},      {"beige", {225, 210, 175}},     {"light blue", {170, 200, 235}},
      {"dark grey", {64, 64, 64}},    {"pale green", {190, 225, 185}}, {"dark blue", {30, 40, 90}},
  };
  return c;
}

const std::vector<std::string> &shapeNames() {
  static const std::vector<std::string> s = {"circle", "square", "triangle", "diamond", "cross"};
  return s;
}

double colourDistance(const Rgb &a, const Rgb &b) {
  double s = 0;
  for (int c = 0; c < 3; ++c) s += ((double)a[c] - b[c]) * ((double)a[c] - b[c]);
  return std::sqrt(s);
}

namespace {

// Colours closer than this may not touch (orange/yellow, red/orange, blue/purple).
constexpr double kSimilarColours = 120.0;

bool isShape(const std::string &s) {
  const auto &v = shapeNames();
  return std::find(v.begin(), v.end(), s) != v.end();
}

double round3(double v) { return std::round(v * 1000.0) / 1000.0; }

//===----------------------------------------------------------------------===//
// Signed distance functions
//===----------------------------------------------------------------------===//

/// Axis-aligned box with half-sizes HX, HY centred at the origin (exact).
double sdBox(double px, double py, double hx, double hy) {
  double qx = std::fabs(px) - hx, qy = std::fabs(py) - hy;
  double ox = std::max(qx, 0.0), oy = std::max(qy, 0.0);
  return std::sqrt(ox * ox + oy * oy) + std::min(std::max(qx, qy), 0.0);
}

double sdSegment(double px, double py, double ax, double ay, double bx, double by) {
  double vx = bx - ax, vy = by - ay, wx = px - ax, wy = py - ay;
  double t = std::clamp((wx * vx + wy * vy) / (vx * vx + vy * vy), 0.0, 1.0);
  double dx = wx - t * vx, dy = wy - t * vy;
  return std::sqrt(dx * dx + dy * dy);
}

/// Convex polygon, vertices in order (either orientation): exact distance.
double sdConvex(double px, double py, const double (*v)[2], int n) {
  double d = 1e30;
  int sign = 0;
  bool inside = true;
  for (int i = 0; i < n; ++i) {
    const double *a = v[i], *b = v[(i + 1) % n];
    d = std::min(d, sdSegment(px, py, a[0], a[1], b[0], b[1]));
    double cross = (b[0] - a[0]) * (py - a[1]) - (b[1] - a[1]) * (px - a[0]);
    int s = cross > 0 ? 1 : (cross < 0 ? -1 : 0);
    if (s != 0) {
      if (sign == 0) sign = s;
      else if (s != sign) inside = false;
    }
  }
  return inside ? -d : d;
}

} // namespace

double signedDistance(const SceneObject &o, double x, double y) {
  double dx = x - o.cx, dy = y - o.cy, h = o.extent / 2;
  if (o.shape == "circle") return std::sqrt(dx * dx + dy * dy) - h;
  if (o.shape == "square") return sdBox(dx, dy, h, h);
  if (o.shape == "diamond") {
    const double v[4][2] = {{0, -h}, {h, 0}, {0, h}, {-h, 0}};
    return sdConvex(dx, dy, v, 4);
  }
  if (o.shape == "triangle") {
    // Isosceles, pointing up, filling its bounding square.
    const double v[3][2] = {{0, -h}, {h, h}, {-h, h}};
    return sdConvex(dx, dy, v, 3);
  }
  if (o.shape == "cross") {
    double w = o.extent / 6; // arms a third of the extent thick
    return std::min(sdBox(dx, dy, h, w), sdBox(dx, dy, w, h));
  }
  throw Error("unknown shape '" + o.shape + "'");
}

double pixelCoverage(const SceneObject &o, int x, int y) {
  return std::clamp(0.5 - signedDistance(o, x + 0.5, y + 0.5), 0.0, 1.0);
}

namespace {

/// Pixels that can have non-zero coverage: [x0, x1) x [y0, y1), clipped.
std::array<int, 4> reach(const SceneObject &o, int width, int height) {
  double h = o.extent / 2 + 1.0;
  return {std::max(0, (int)std::floor(o.cx - h)), std::max(0, (int)std::floor(o.cy - h)),
          std::min(width, (int)std::ceil(o.cx + h) + 1), std::min(height, (int)std::ceil(o.cy + h) + 1)};
}

} // namespace

std::array<int, 4> computeBox(const SceneObject &o, int width, int height) {
  std::array<int, 4> r = reach(o, width, height);
  int x0 = width, y0 = height, x1 = 0, y1 = 0;
  for (int y = r[1]; y < r[3]; ++y)
    for (int x = r[0]; x < r[2]; ++x)
      if (signedDistance(o, x + 0.5, y + 0.5) <= 0) {
        x0 = std::min(x0, x);
        y0 = std::min(y0, y);
        x1 = std::max(x1, x + 1);
        y1 = std::max(y1, y + 1);
      }
  if (x1 <= x0) return {0, 0, 0, 0};
  return {x0, y0, x1, y1};
}

//===----------------------------------------------------------------------===//
// Grid positions
//===----------------------------------------------------------------------===//

int gridColumn(const Scene &s, const SceneObject &o) {
  double t = s.width / 3.0;
  return o.cx < t ? 0 : (o.cx < 2 * t ? 1 : 2);
}

int gridRow(const Scene &s, const SceneObject &o) {
  double t = s.height / 3.0;
  return o.cy < t ? 0 : (o.cy < 2 * t ? 1 : 2);
}

std::string positionName(const Scene &s, const SceneObject &o) {
  static const char *names[3][3] = {{"top left", "top", "top right"},
                                    {"left", "centre", "right"},
                                    {"bottom left", "bottom", "bottom right"}};
  return names[gridRow(s, o)][gridColumn(s, o)];
}

std::string positionPhrase(const Scene &s, const SceneObject &o) {
  int r = gridRow(s, o), c = gridColumn(s, o);
  if (r == 1) return c == 1 ? "in the centre" : "on the " + positionName(s, o);
  return "at the " + positionName(s, o);
}

//===----------------------------------------------------------------------===//
// Sampling
//===----------------------------------------------------------------------===//

namespace {

/// Coverage of every object over the image, one float plane per object.
std::vector<std::vector<float>> coverageMaps(const Scene &s) {
  std::vector<std::vector<float>> maps;
  for (const SceneObject &o : s.objects) {
    std::vector<float> m((size_t)s.width * s.height, 0.0f);
    std::array<int, 4> r = reach(o, s.width, s.height);
    for (int y = r[1]; y < r[3]; ++y)
      for (int x = r[0]; x < r[2]; ++x) m[(size_t)y * s.width + x] = (float)pixelCoverage(o, x, y);
    maps.push_back(std::move(m));
  }
  return maps;
}

/// Fills box and visible; returns false if the layout breaks a rule.
bool finishLayout(Scene &s, double minVisible) {
  auto maps = coverageMaps(s);
  size_t n = s.objects.size(), px = (size_t)s.width * s.height;
  for (size_t i = 0; i < n; ++i) {
    SceneObject &o = s.objects[i];
    o.box = computeBox(o, s.width, s.height);
    if (o.box[2] <= o.box[0]) return false;
    double own = 0, vis = 0;
    for (size_t p = 0; p < px; ++p) {
      double c = maps[i][p];
      if (c == 0) continue;
      own += c;
      for (size_t j = i + 1; j < n; ++j) c *= 1.0 - maps[j][p];
      vis += c;
    }
    o.visible = own > 0 ? round3(vis / own) : 0;
    // A cross loses its shape quickly when an arm is hidden.
    double need = o.shape == "cross" ? std::max(minVisible, 0.9) : minVisible;
    if (own <= 0 || vis / own < need) return false;
    for (size_t j = i + 1; j < n; ++j) {
      if (colourDistance(o.rgb, s.objects[j].rgb) >= kSimilarColours) continue;
      for (size_t p = 0; p < px; ++p)
        if (maps[i][p] > 0 && maps[j][p] > 0) return false; // similar colours touching
    }
  }
  return true;
}

} // namespace

Scene sampleScene(uint64_t seed, const std::string &id, const SceneOptions &opt) {
  if (opt.size < 16 || opt.size > 4096)
    throw Error("scene size " + std::to_string(opt.size) + " is out of range (16 to 4096 pixels)");
  if (opt.minObjects < 1 || opt.maxObjects > 4 || opt.minObjects > opt.maxObjects)
    throw Error("objects per scene must lie within 1 to 4 (got " + std::to_string(opt.minObjects) + " to " +
                std::to_string(opt.maxObjects) + ")");
  Rng rng(seed);
  const int S = opt.size;
  const double cell = S / 3.0;
  for (int attempt = 0; attempt < 1000; ++attempt) {
    Scene s;
    s.id = id;
    s.width = s.height = S;
    s.seed = seed;
    const NamedColour &bg = rng.pick(backgroundColours());
    s.background = bg.name;
    s.backgroundRgb = bg.rgb;
    if (opt.noise) s.noise = rng.pick(std::vector<int>{0, 0, 3, 6});
    if (opt.stripes && rng.chance(0.3)) {
      s.stripes.direction = rng.pick(std::vector<std::string>{"horizontal", "vertical", "diagonal"});
      s.stripes.width = rng.range(std::max(2, S / 32), std::max(3, S / 12));
      s.stripes.phase = rng.range(0, 2 * s.stripes.width - 1);
      s.stripes.amplitude = rng.range(4, 9);
    }
    std::vector<const NamedColour *> allowed;
    for (const NamedColour &c : objectColours())
      if (colourDistance(c.rgb, bg.rgb) >= kMinBackgroundContrast) allowed.push_back(&c);

    int n = rng.range(opt.minObjects, opt.maxObjects);
    std::vector<int> cells = {0, 1, 2, 3, 4, 5, 6, 7, 8};
    rng.shuffle(cells);
    std::set<std::string> used;
    int large = 0;
    bool ok = true;
    for (int k = 0; k < n && ok; ++k) {
      SceneObject o;
      for (int tries = 0;; ++tries) {
        o.shape = rng.pick(shapeNames());
        const NamedColour *c = rng.pick(allowed);
        o.colour = c->name;
        o.rgb = c->rgb;
        if (!used.count(o.name())) break;
        if (tries > 100) throw Error("cannot find distinct objects for scene " + id);
      }
      used.insert(o.name());
      bool big = rng.chance(0.5) && !(n >= 3 && large >= 2);
      large += big;
      o.size = big ? "large" : "small";
      o.extent = round3(S * (big ? rng.uniform(0.29, 0.36) : rng.uniform(0.16, 0.21)));
      int col = cells[k] % 3, row = cells[k] / 3;
      double r = o.extent / 2;
      auto place = [&](int index, double &out) {
        double lo = std::max(index * cell + 0.2 * cell, r + 1), hi = std::min((index + 1) * cell - 0.2 * cell, S - r - 1);
        if (lo > hi) return false;
        out = round3(rng.uniform(lo, hi));
        return true;
      };
      ok = place(col, o.cx) && place(row, o.cy);
      s.objects.push_back(o);
    }
    if (!ok) continue;
    // Large objects first, so small ones are drawn over them.
    rng.shuffle(s.objects);
    std::vector<SceneObject> ordered;
    for (int pass = 0; pass < 2; ++pass)
      for (const SceneObject &ob : s.objects)
        if ((ob.size == "large") == (pass == 0)) ordered.push_back(ob);
    s.objects = std::move(ordered);
    if (finishLayout(s, opt.minVisible)) return s;
  }
  throw Error("could not lay out scene " + id + " in 1000 attempts (size " + std::to_string(S) + ")");
}

//===----------------------------------------------------------------------===//
// Rendering
//===----------------------------------------------------------------------===//

int patchClassCount() { return 1 + (int)(objectColours().size() * shapeNames().size()) * 2; }

int patchClass(const SceneObject &o) {
  int colour = 0, shape = 0;
  for (size_t i = 0; i < objectColours().size(); ++i)
    if (objectColours()[i].name == o.colour) colour = (int)i;
  for (size_t i = 0; i < shapeNames().size(); ++i)
    if (shapeNames()[i] == o.shape) shape = (int)i;
  return 1 + (colour * (int)shapeNames().size() + shape) * 2 + (o.size == "large");
}

/// The object each patch is labelled with (patchLabels' rule), -1 for background.
static std::vector<int> patchObjects(const Scene &s, int grid) {
  if (grid < 1 || s.width % grid || s.height % grid)
    throw Error("a " + std::to_string(grid) + " x " + std::to_string(grid) + " patch grid does not divide the " +
                std::to_string(s.width) + " x " + std::to_string(s.height) + " image");
  const int pw = s.width / grid, ph = s.height / grid;
  std::vector<int> labels((size_t)grid * grid, -1);
  // The object drawn on top at each pixel (-1: background), and each
  // object's visible pixels: a cell also names an object that shows a
  // quarter of itself there, so a small object split over four large cells
  // is still labelled somewhere.
  std::vector<int> top((size_t)s.width * s.height, -1), total(s.objects.size(), 0);
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      int &t = top[(size_t)y * s.width + x];
      for (size_t k = 0; k < s.objects.size(); ++k)
        if (pixelCoverage(s.objects[k], x, y) >= 0.5) t = (int)k;
      if (t >= 0) ++total[t];
    }
  std::vector<int> shown(s.objects.size());
  for (int gy = 0; gy < grid; ++gy)
    for (int gx = 0; gx < grid; ++gx) {
      std::fill(shown.begin(), shown.end(), 0);
      for (int y = gy * ph; y < (gy + 1) * ph; ++y)
        for (int x = gx * pw; x < (gx + 1) * pw; ++x)
          if (int t = top[(size_t)y * s.width + x]; t >= 0) ++shown[t];
      int best = -1;
      for (size_t k = 0; k < shown.size(); ++k)
        if (shown[k] > 0 && (best < 0 || shown[k] > shown[best])) best = (int)k;
      if (best >= 0 && (shown[best] * 4 >= pw * ph || shown[best] * 4 >= total[best]))
        labels[(size_t)gy * grid + gx] = best;
    }
  return labels;
}

std::vector<int> patchLabels(const Scene &s, int grid) {
  std::vector<int> labels = patchObjects(s, grid);
  for (int &l : labels) l = l < 0 ? 0 : patchClass(s.objects[l]);
  return labels;
}

std::vector<int> patchCells(const Scene &s, int grid) {
  std::vector<int> cells = patchObjects(s, grid);
  for (int &c : cells) c = c < 0 ? 0 : 1 + gridRow(s, s.objects[c]) * 3 + gridColumn(s, s.objects[c]);
  return cells;
}

Image renderScene(const Scene &s) {
  if (s.width <= 0 || s.height <= 0) throw Error("scene " + s.id + ": invalid size");
  const size_t px = (size_t)s.width * s.height;
  std::vector<double> buf(px * 3);
  for (int y = 0; y < s.height; ++y)
    for (int x = 0; x < s.width; ++x) {
      int delta = 0;
      if (!s.stripes.direction.empty() && s.stripes.width > 0) {
        int t = s.stripes.direction == "horizontal" ? y : s.stripes.direction == "vertical" ? x : x + y;
        delta = ((t + s.stripes.phase) / s.stripes.width) % 2 == 0 ? s.stripes.amplitude : -s.stripes.amplitude;
      }
      for (int c = 0; c < 3; ++c)
        buf[((size_t)y * s.width + x) * 3 + c] = std::clamp((int)s.backgroundRgb[c] + delta, 0, 255);
    }
  for (const SceneObject &o : s.objects) {
    std::array<int, 4> r = reach(o, s.width, s.height);
    for (int y = r[1]; y < r[3]; ++y)
      for (int x = r[0]; x < r[2]; ++x) {
        double a = pixelCoverage(o, x, y);
        if (a <= 0) continue;
        double *p = &buf[((size_t)y * s.width + x) * 3];
        for (int c = 0; c < 3; ++c) p[c] = p[c] * (1.0 - a) + o.rgb[c] * a;
      }
  }
  Image img;
  img.width = s.width;
  img.height = s.height;
  img.rgb.resize(px * 3);
  Rng noise(s.seed ^ 0x6e6f6973652d7267ULL);
  for (size_t i = 0; i < px * 3; ++i) {
    double v = buf[i];
    if (s.noise > 0) v += noise.range(-s.noise, s.noise);
    img.rgb[i] = (uint8_t)std::clamp((int)std::lround(v), 0, 255);
  }
  return img;
}

//===----------------------------------------------------------------------===//
// JSON
//===----------------------------------------------------------------------===//

nlohmann::ordered_json sceneToJson(const Scene &s) {
  nlohmann::ordered_json objects = nlohmann::ordered_json::array();
  for (const SceneObject &o : s.objects)
    objects.push_back({{"shape", o.shape},
                       {"colour", o.colour},
                       {"rgb", o.rgb},
                       {"size", o.size},
                       {"extent", o.extent},
                       {"box", o.box},
                       {"centre", {o.cx, o.cy}},
                       {"position", positionName(s, o)},
                       {"visible", o.visible}});
  nlohmann::ordered_json stripes = nullptr;
  if (!s.stripes.direction.empty())
    stripes = {{"direction", s.stripes.direction},
               {"width", s.stripes.width},
               {"phase", s.stripes.phase},
               {"amplitude", s.stripes.amplitude}};
  return {{"id", s.id},
          {"image", s.image},
          {"width", s.width},
          {"height", s.height},
          {"seed", s.seed},
          {"background", s.background},
          {"background_rgb", s.backgroundRgb},
          {"noise", s.noise},
          {"stripes", stripes},
          {"objects", objects}};
}

namespace {

const nlohmann::json &field(const nlohmann::json &j, const char *name, const std::string &where) {
  if (!j.is_object()) throw Error(where + ": expected a JSON object");
  auto it = j.find(name);
  if (it == j.end()) throw Error(where + ": missing '" + name + "'");
  return *it;
}

std::string stringField(const nlohmann::json &j, const char *name, const std::string &where) {
  const nlohmann::json &v = field(j, name, where);
  if (!v.is_string()) throw Error(where + ": '" + name + "' must be a string");
  return v.get<std::string>();
}

double numberField(const nlohmann::json &j, const char *name, const std::string &where) {
  const nlohmann::json &v = field(j, name, where);
  if (!v.is_number()) throw Error(where + ": '" + name + "' must be a number");
  return v.get<double>();
}

int intField(const nlohmann::json &j, const char *name, const std::string &where) {
  const nlohmann::json &v = field(j, name, where);
  if (!v.is_number_integer()) throw Error(where + ": '" + name + "' must be an integer");
  return v.get<int>();
}

template <size_t N> std::array<int, N> intArray(const nlohmann::json &j, const char *name, const std::string &where) {
  const nlohmann::json &v = field(j, name, where);
  if (!v.is_array() || v.size() != N) throw Error(where + ": '" + name + "' must be an array of " + std::to_string(N) + " integers");
  std::array<int, N> out{};
  for (size_t i = 0; i < N; ++i) {
    if (!v[i].is_number_integer()) throw Error(where + ": '" + name + "' must be an array of " + std::to_string(N) + " integers");
    out[i] = v[i].get<int>();
  }
  return out;
}

Rgb rgbField(const nlohmann::json &j, const char *name, const std::string &where) {
  std::array<int, 3> v = intArray<3>(j, name, where);
  Rgb out{};
  for (int c = 0; c < 3; ++c) {
    if (v[c] < 0 || v[c] > 255) throw Error(where + ": '" + name + "' values must lie within 0 to 255");
    out[c] = (uint8_t)v[c];
  }
  return out;
}

} // namespace

Scene sceneFromJson(const nlohmann::json &j, const std::string &where) {
  Scene s;
  s.id = stringField(j, "id", where);
  std::string w = where + " (scene '" + s.id + "')";
  s.image = stringField(j, "image", w);
  s.width = intField(j, "width", w);
  s.height = intField(j, "height", w);
  if (s.width <= 0 || s.height <= 0 || s.width > 16384 || s.height > 16384) throw Error(w + ": invalid width/height");
  const nlohmann::json &seed = field(j, "seed", w);
  if (!seed.is_number_unsigned() && !(seed.is_number_integer() && seed.get<int64_t>() >= 0))
    throw Error(w + ": 'seed' must be a non-negative integer");
  s.seed = seed.get<uint64_t>();
  s.background = stringField(j, "background", w);
  s.backgroundRgb = rgbField(j, "background_rgb", w);
  s.noise = intField(j, "noise", w);
  if (s.noise < 0 || s.noise > 64) throw Error(w + ": 'noise' must lie within 0 to 64");
  const nlohmann::json &st = field(j, "stripes", w);
  if (!st.is_null()) {
    s.stripes.direction = stringField(st, "direction", w + ": stripes");
    if (s.stripes.direction != "horizontal" && s.stripes.direction != "vertical" && s.stripes.direction != "diagonal")
      throw Error(w + ": stripes: unknown direction '" + s.stripes.direction + "'");
    s.stripes.width = intField(st, "width", w + ": stripes");
    s.stripes.phase = intField(st, "phase", w + ": stripes");
    s.stripes.amplitude = intField(st, "amplitude", w + ": stripes");
    if (s.stripes.width <= 0 || s.stripes.phase < 0) throw Error(w + ": stripes: invalid width or phase");
  }
  const nlohmann::json &objs = field(j, "objects", w);
  if (!objs.is_array() || objs.empty()) throw Error(w + ": 'objects' must be a non-empty array");
  for (size_t i = 0; i < objs.size(); ++i) {
    std::string ow = w + ": object " + std::to_string(i);
    const nlohmann::json &oj = objs[i];
    SceneObject o;
    o.shape = stringField(oj, "shape", ow);
    if (!isShape(o.shape)) throw Error(ow + ": unknown shape '" + o.shape + "'");
    o.colour = stringField(oj, "colour", ow);
    o.rgb = rgbField(oj, "rgb", ow);
    o.size = stringField(oj, "size", ow);
    if (o.size != "small" && o.size != "large") throw Error(ow + ": 'size' must be \"small\" or \"large\"");
    o.extent = numberField(oj, "extent", ow);
    if (!(o.extent > 0)) throw Error(ow + ": 'extent' must be positive");
    o.box = intArray<4>(oj, "box", ow);
    const nlohmann::json &c = field(oj, "centre", ow);
    if (!c.is_array() || c.size() != 2 || !c[0].is_number() || !c[1].is_number())
      throw Error(ow + ": 'centre' must be an array of two numbers");
    o.cx = c[0].get<double>();
    o.cy = c[1].get<double>();
    o.visible = numberField(oj, "visible", ow);
    s.objects.push_back(o);
  }
  return s;
}

std::vector<Scene> loadScenes(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open the scenes file: " + std::strerror(errno));
  std::vector<Scene> out;
  std::string line;
  size_t lineNo = 0;
  while (std::getline(f, line)) {
    ++lineNo;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    std::string where = path + ": line " + std::to_string(lineNo);
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error &e) {
      throw Error(where + ": not valid JSON: " + e.what());
    }
    out.push_back(sceneFromJson(j, where));
  }
  if (f.bad()) throw Error(path + ": cannot read the scenes file");
  if (out.empty()) throw Error(path + ": holds no scenes");
  return out;
}

} // namespace synth
} // namespace mm
