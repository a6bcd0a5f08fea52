//===- Image.h - image loading, saving and CLIP preprocessing ---*- C++ -*-===//
//
// Images are 8-bit RGB, row-major, channels interleaved (HWC). Decoding and
// PNG encoding use stb_image / stb_image_write; the CLIP preprocessing
// reproduces Hugging Face's CLIPImageProcessor (with Pillow's BICUBIC resize)
// so that mmc feeds a vision tower the same pixels the reference does.
//
//===----------------------------------------------------------------------===//
#ifndef MM_IMAGE_H
#define MM_IMAGE_H

#include <cstdint>
#include <string>
#include <vector>

namespace mm {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb; // HWC, 3 channels: size == width * height * 3
};

/// Decodes PNG/JPEG/BMP/GIF/... (anything stb_image reads) into RGB; alpha is
/// dropped and grey is expanded. Throws mm::Error naming PATH if the file is
/// missing or cannot be decoded (with stb_image's reason).
Image loadImage(const std::string &path);

/// Writes IMAGE as a PNG (tmp file + rename, so PATH is never half-written).
/// Throws mm::Error naming PATH on an invalid image or I/O failure.
void savePng(const std::string &path, const Image &image);

/// Resizes IMAGE to NEWWIDTH x NEWHEIGHT exactly as Pillow's
/// Image.resize(..., resample=BICUBIC) does for 8-bit RGB images: separable
/// convolution with the a = -0.5 cubic kernel, its support widened by the
/// downscale factor (antialiasing), horizontal pass then vertical pass, each
/// in 22-bit fixed point, rounded and clipped to uint8. A pass whose
/// dimension does not change is skipped, as in Pillow.
Image resizeBicubic(const Image &image, int newWidth, int newHeight);

/// CLIP-style preprocessing parameters (Hugging Face CLIPImageProcessor).
struct ClipPreprocess {
  int shortestEdge;          // resize so the shorter side equals this
  int cropHeight, cropWidth; // centre crop size
  float mean[3];             // per-channel mean, in [0, 1] units
  float std[3];              // per-channel std, in [0, 1] units
};

/// shortestEdge = SIZE, crop SIZE x SIZE, OpenAI CLIP's mean/std.
ClipPreprocess clipDefaults(int size);

/// The output size (width, height) of the shortest-edge resize: the shorter
/// side becomes SHORTESTEDGE, the other int(other * shortestEdge / shorter)
/// (truncated, as Hugging Face's get_resize_output_image_size does).
void clipResizeSize(int width, int height, int shortestEdge, int &newWidth,
                    int &newHeight);

/// Hugging Face CLIPImageProcessor: shortest-edge BICUBIC resize (skipped if
/// the size does not change), centre crop (top = (h - cropH) // 2,
/// left = (w - cropW) // 2; zero-padded where the image is smaller than the
/// crop), rescale by 1/255, normalise (x - mean) / std per channel.
/// Returns CHW floats, 3 x cropHeight x cropWidth.
std::vector<float> preprocessClip(const Image &image, const ClipPreprocess &p);

} // namespace mm

#endif // MM_IMAGE_H
