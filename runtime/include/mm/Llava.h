//===- Llava.h - preparing LLaVA inputs and reading its outputs -*- C++ -*-===//
//
// The model-family glue between user input (an image, a prompt or token ids)
// and a compiled LLaVA `forward` entry: CLIP preprocessing with the sizes of
// the model's vision_config, expansion of the image token to the image's
// feature positions, padding to the compiled sequence length.
//
//===----------------------------------------------------------------------===//
#ifndef MM_LLAVA_H
#define MM_LLAVA_H

#include "mm/Model.h"

#include <optional>
#include <string>
#include <vector>

namespace mm {

struct LlavaShape {
  int64_t imageSize = 0;     // vision_config.image_size
  int64_t imagePositions = 0; // features per image (patches, no CLS)
  int64_t maxSequence = 0;   // compiled sequence length
  int64_t vocab = 0;
  int32_t imageToken = 0;
  int32_t padToken = 0;
};

/// Reads the shape facts from a model's manifest and its forward entry.
LlavaShape llavaShape(const CompiledModel &model);

/// Replaces each image token by `positions` copies of it.
std::vector<int32_t> expandImageTokens(const std::vector<int32_t> &ids, int32_t imageToken, int64_t positions);

/// An image file, CLIP-preprocessed at the model's vision size: CHW floats,
/// 3 x imageSize x imageSize (what pixel_values holds). Throws mm::Error
/// naming IMAGEPATH if it is missing or cannot be decoded.
std::vector<float> llavaPixelValues(const LlavaShape &shape, const std::string &imagePath);

/// The frozen vision tower's output for an image file: the model's
/// `vision_embeds` entry over llavaPixelValues (training stages that freeze
/// the tower, and BLIP-2's retrieval, compute it once per image and keep it).
/// PARAMS: one pointer per parameter. WORKSPACE: the entry's host workspace
/// (concurrent calls need one each; null: the model's own).
std::vector<float> visionEmbeds(const CompiledModel &model, const std::vector<const void *> &params,
                                const LlavaShape &shape, const std::string &imagePath,
                                std::vector<uint8_t> *workspace = nullptr);

/// The forward entry's arguments: pixel values (zeros without an image),
/// expanded ids padded to the compiled length, and the real length. Throws
/// mm::Error if the ids do not fit or the image-token count is wrong.
std::vector<HostTensor> llavaForwardArgs(const CompiledModel &model, const std::vector<int32_t> &expandedIds,
                                         const std::optional<std::string> &imagePath);

} // namespace mm

#endif // MM_LLAVA_H
