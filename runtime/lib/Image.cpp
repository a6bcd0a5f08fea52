//===- Image.cpp - image loading, saving and CLIP preprocessing -----------===//

#include "mm/Image.h"

#include "AtomicFile.h"
#include "mm/Error.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>

// stb is compiled into this file only, with internal linkage, so it cannot
// clash with another copy of stb linked into the same program.
#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#endif
#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>
#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace mm {

namespace {

/// Throws unless IMAGE is a well-formed RGB image. WHAT names it in errors.
void checkImage(const Image &image, const std::string &what) {
  if (image.width <= 0 || image.height <= 0)
    throw Error(what + ": invalid image size " + std::to_string(image.width) +
                "x" + std::to_string(image.height));
  uint64_t need = uint64_t(image.width) * uint64_t(image.height) * 3;
  if (image.rgb.size() != need)
    throw Error(what + ": image is " + std::to_string(image.width) + "x" +
                std::to_string(image.height) + " but holds " +
                std::to_string(image.rgb.size()) + " bytes, expected " +
                std::to_string(need));
}

} // namespace

//===----------------------------------------------------------------------===//
// Load / save
//===----------------------------------------------------------------------===//

Image loadImage(const std::string &path) {
  std::FILE *f = std::fopen(path.c_str(), "rb");
  if (!f)
    throw Error(path + ": cannot open image: " + std::strerror(errno));
  std::unique_ptr<std::FILE, int (*)(std::FILE *)> closer(f, &std::fclose);
  int w = 0, h = 0, channels = 0;
  stbi_uc *pixels = stbi_load_from_file(f, &w, &h, &channels, 3);
  if (!pixels) {
    const char *reason = stbi_failure_reason();
    throw Error(
        path + ": cannot decode image: " + (reason ? reason : "unknown error"));
  }
  std::unique_ptr<stbi_uc, void (*)(void *)> owner(pixels, &stbi_image_free);
  if (w <= 0 || h <= 0)
    throw Error(path + ": cannot decode image: invalid size " +
                std::to_string(w) + "x" + std::to_string(h));
  Image image;
  image.width = w;
  image.height = h;
  image.rgb.assign(pixels, pixels + size_t(w) * size_t(h) * 3);
  return image;
}

namespace {

void appendToString(void *context, void *data, int size) {
  auto *out = static_cast<std::string *>(context);
  if (size > 0)
    out->append(static_cast<const char *>(data), static_cast<size_t>(size));
}

} // namespace

void savePng(const std::string &path, const Image &image) {
  checkImage(image, path);
  if (image.width > std::numeric_limits<int>::max() / 3)
    throw Error(path + ": image is too wide to encode as PNG");
  std::string png;
  int ok =
      stbi_write_png_to_func(&appendToString, &png, image.width, image.height,
                             3, image.rgb.data(), image.width * 3);
  if (!ok || png.empty())
    throw Error(path + ": PNG encoding failed");
  detail::AtomicFile out(path);
  out.write(png.data(), png.size());
  out.commit();
}

//===----------------------------------------------------------------------===//
// Pillow-compatible BICUBIC resize
//===----------------------------------------------------------------------===//

namespace {

// Pillow's 8-bit resampler works in fixed point with this many fraction bits.
constexpr int kPrecisionBits = 32 - 8 - 2;

double cubicKernel(double x) {
  const double a = -0.5;
  if (x < 0)
    x = -x;
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
  if (x < 2.0)
    return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
  return 0.0;
}

/// Fixed-point filter taps for resampling one axis from IN to OUT samples.
struct AxisCoeffs {
  int ksize = 0;
  std::vector<int> first; // first input sample used by each output sample
  std::vector<int> count; // number of input samples used
  std::vector<int32_t> k; // OUT * ksize taps
};

AxisCoeffs computeCoeffs(int inSize, int outSize) {
  const double support0 = 2.0; // the cubic kernel's support
  double scale = double(inSize) / double(outSize);
  double filterScale = scale < 1.0 ? 1.0 : scale;
  double support = support0 * filterScale;
  AxisCoeffs c;
  c.ksize = int(std::ceil(support)) * 2 + 1;
  c.first.resize(outSize);
  c.count.resize(outSize);
  c.k.assign(size_t(outSize) * size_t(c.ksize), 0);
  std::vector<double> w(c.ksize);
  for (int xx = 0; xx < outSize; ++xx) {
    double center = (xx + 0.5) * scale;
    double invScale = 1.0 / filterScale;
    // Truncation toward zero, then clamping, as Pillow does.
    int xmin = int(center - support + 0.5);
    if (xmin < 0)
      xmin = 0;
    int xmax = int(center + support + 0.5);
    if (xmax > inSize)
      xmax = inSize;
    int n = xmax - xmin;
    if (n > c.ksize)
      n = c.ksize; // cannot happen; keeps the writes below in bounds
    if (n < 0)
      n = 0;
    double sum = 0.0;
    for (int x = 0; x < n; ++x) {
      w[x] = cubicKernel((x + xmin - center + 0.5) * invScale);
      sum += w[x];
    }
    for (int x = 0; x < n; ++x) {
      double v = sum != 0.0 ? w[x] / sum : w[x];
      double fixed = v * double(1 << kPrecisionBits);
      c.k[size_t(xx) * c.ksize + x] =
          int32_t(v < 0 ? -0.5 + fixed : 0.5 + fixed);
    }
    c.first[xx] = xmin;
    c.count[xx] = n;
  }
  return c;
}

inline uint8_t clip8(int64_t acc) {
  int64_t v = acc >> kPrecisionBits; // arithmetic shift: floor
  if (v < 0)
    return 0;
  if (v > 255)
    return 255;
  return uint8_t(v);
}

Image resizeHorizontal(const Image &in, int outWidth) {
  AxisCoeffs c = computeCoeffs(in.width, outWidth);
  Image out;
  out.width = outWidth;
  out.height = in.height;
  out.rgb.resize(size_t(outWidth) * size_t(in.height) * 3);
  for (int y = 0; y < in.height; ++y) {
    const uint8_t *row = &in.rgb[size_t(y) * in.width * 3];
    uint8_t *dst = &out.rgb[size_t(y) * outWidth * 3];
    for (int xx = 0; xx < outWidth; ++xx) {
      const int32_t *k = &c.k[size_t(xx) * c.ksize];
      const uint8_t *src = row + size_t(c.first[xx]) * 3;
      int64_t acc[3] = {1 << (kPrecisionBits - 1), 1 << (kPrecisionBits - 1),
                        1 << (kPrecisionBits - 1)};
      for (int x = 0; x < c.count[xx]; ++x)
        for (int ch = 0; ch < 3; ++ch)
          acc[ch] += int64_t(src[x * 3 + ch]) * k[x];
      for (int ch = 0; ch < 3; ++ch)
        dst[xx * 3 + ch] = clip8(acc[ch]);
    }
  }
  return out;
}

Image resizeVertical(const Image &in, int outHeight) {
  AxisCoeffs c = computeCoeffs(in.height, outHeight);
  Image out;
  out.width = in.width;
  out.height = outHeight;
  size_t rowBytes = size_t(in.width) * 3;
  out.rgb.resize(rowBytes * size_t(outHeight));
  std::vector<int64_t> acc(rowBytes);
  for (int yy = 0; yy < outHeight; ++yy) {
    const int32_t *k = &c.k[size_t(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), int64_t(1) << (kPrecisionBits - 1));
    for (int y = 0; y < c.count[yy]; ++y) {
      const uint8_t *src = &in.rgb[size_t(c.first[yy] + y) * rowBytes];
      int64_t w = k[y];
      for (size_t i = 0; i < rowBytes; ++i)
        acc[i] += int64_t(src[i]) * w;
    }
    uint8_t *dst = &out.rgb[size_t(yy) * rowBytes];
    for (size_t i = 0; i < rowBytes; ++i)
      dst[i] = clip8(acc[i]);
  }
  return out;
}

} // namespace

Image resizeBicubic(const Image &image, int newWidth, int newHeight) {
  checkImage(image, "resizeBicubic");
  if (newWidth <= 0 || newHeight <= 0)
    throw Error("resizeBicubic: invalid target size " +
                std::to_string(newWidth) + "x" + std::to_string(newHeight));
  if (uint64_t(newWidth) * uint64_t(newHeight) * 3 >
      uint64_t(std::numeric_limits<int32_t>::max()))
    throw Error("resizeBicubic: target size " + std::to_string(newWidth) + "x" +
                std::to_string(newHeight) + " is too large");
  // Horizontal first, then vertical; a pass that changes nothing is skipped.
  if (newWidth == image.width && newHeight == image.height)
    return image;
  if (newWidth == image.width)
    return resizeVertical(image, newHeight);
  Image tmp = resizeHorizontal(image, newWidth);
  if (newHeight == image.height)
    return tmp;
  return resizeVertical(tmp, newHeight);
}

//===----------------------------------------------------------------------===//
// CLIP preprocessing
//===----------------------------------------------------------------------===//

ClipPreprocess clipDefaults(int size) {
  ClipPreprocess p;
  p.shortestEdge = size;
  p.cropHeight = size;
  p.cropWidth = size;
  p.mean[0] = 0.48145466f;
  p.mean[1] = 0.4578275f;
  p.mean[2] = 0.40821073f;
  p.std[0] = 0.26862954f;
  p.std[1] = 0.26130258f;
  p.std[2] = 0.27577711f;
  return p;
}

void clipResizeSize(int width, int height, int shortestEdge, int &newWidth,
                    int &newHeight) {
  if (width <= 0 || height <= 0)
    throw Error("clipResizeSize: invalid image size " + std::to_string(width) +
                "x" + std::to_string(height));
  if (shortestEdge <= 0)
    throw Error("clipResizeSize: invalid shortest edge " +
                std::to_string(shortestEdge));
  // Hugging Face: int(requested_new_short * long / short), a true division
  // followed by truncation.
  bool wide = width > height; // HF: short side is the width when w <= h
  int shortSide = wide ? height : width;
  int longSide = wide ? width : height;
  double other =
      double(int64_t(shortestEdge) * int64_t(longSide)) / double(shortSide);
  if (other >= double(std::numeric_limits<int>::max()))
    throw Error("clipResizeSize: resizing " + std::to_string(width) + "x" +
                std::to_string(height) + " to shortest edge " +
                std::to_string(shortestEdge) + " is too large");
  int newLong = int(other);
  newWidth = wide ? newLong : shortestEdge;
  newHeight = wide ? shortestEdge : newLong;
}

std::vector<float> preprocessClip(const Image &image, const ClipPreprocess &p) {
  checkImage(image, "preprocessClip");
  if (p.cropHeight <= 0 || p.cropWidth <= 0)
    throw Error("preprocessClip: invalid crop size " +
                std::to_string(p.cropWidth) + "x" +
                std::to_string(p.cropHeight));
  for (int c = 0; c < 3; ++c)
    if (!(p.std[c] != 0.0f) || !std::isfinite(p.std[c]) ||
        !std::isfinite(p.mean[c]))
      throw Error("preprocessClip: invalid mean/std for channel " +
                  std::to_string(c));

  int newWidth = 0, newHeight = 0;
  clipResizeSize(image.width, image.height, p.shortestEdge, newWidth,
                 newHeight);
  Image resizedStorage;
  const Image *src = &image;
  if (newWidth != image.width || newHeight != image.height) {
    resizedStorage = resizeBicubic(image, newWidth, newHeight);
    src = &resizedStorage;
  }

  // Centre crop. Python's floor division also covers the zero-padded case
  // (crop larger than the image): output (y, x) reads source
  // (y + top, x + left) and pixels outside the source are 0.
  auto floorDiv2 = [](int64_t v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  int64_t top = floorDiv2(int64_t(src->height) - p.cropHeight);
  int64_t left = floorDiv2(int64_t(src->width) - p.cropWidth);

  // Rescale (as HF: float64 multiply, stored as float32) then normalise in
  // float32.
  float lut[3][256];
  for (int c = 0; c < 3; ++c)
    for (int v = 0; v < 256; ++v) {
      float x = float(double(v) * (1.0 / 255.0));
      lut[c][v] = (x - p.mean[c]) / p.std[c];
    }

  size_t plane = size_t(p.cropHeight) * size_t(p.cropWidth);
  std::vector<float> out(plane * 3);
  for (int y = 0; y < p.cropHeight; ++y) {
    int64_t sy = y + top;
    bool rowInside = sy >= 0 && sy < src->height;
    for (int x = 0; x < p.cropWidth; ++x) {
      int64_t sx = x + left;
      bool inside = rowInside && sx >= 0 && sx < src->width;
      size_t o = size_t(y) * p.cropWidth + x;
      for (int c = 0; c < 3; ++c) {
        uint8_t v =
            inside ? src->rgb[(size_t(sy) * src->width + size_t(sx)) * 3 + c]
                   : 0;
        out[size_t(c) * plane + o] = lut[c][v];
      }
    }
  }
  return out;
}

} // namespace mm
