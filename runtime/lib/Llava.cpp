//===- Llava.cpp - preparing LLaVA inputs -----------------------------------===//
#include "mm/Llava.h"
#include "mm/Error.h"
#include "mm/Image.h"

#include <cstring>

namespace mm {

/// The entry that takes an image and a token sequence: `forward`, or an
/// encoder-decoder's `encode` (the encoder's length is the sequence length).
static const EntrySpec &inputEntry(const CompiledModel &model) {
  return model.hasEntry("forward") || !model.hasEntry("encode") ? model.entry("forward") : model.entry("encode");
}

LlavaShape llavaShape(const CompiledModel &model) {
  LlavaShape s;
  try {
    const nlohmann::json &c = model.config();
    s.imageSize = c.at("vision_config").at("image_size").get<int64_t>();
    int64_t patch = c.at("vision_config").at("patch_size").get<int64_t>();
    // The image's positions in the token sequence: LLaVA's patches, BLIP-2's queries.
    s.imagePositions = c.contains("image_seq_length") ? c.at("image_seq_length").get<int64_t>()
                                                      : (s.imageSize / patch) * (s.imageSize / patch);
    s.vocab = c.at("text_config").at("vocab_size").get<int64_t>();
    s.imageToken = c.at("image_token_index").get<int32_t>();
    s.padToken = c.value("pad_token_id", 0);
  } catch (const nlohmann::json::exception &e) {
    throw Error(model.path() + ": not a LLaVA or BLIP-2 model (its configuration lacks " + e.what() + ")");
  }
  const EntrySpec &fwd = inputEntry(model);
  if (fwd.args.size() != 3 || fwd.args[1].shape.size() != 2)
    throw Error(model.path() + ": " + fwd.name + " entry does not take (pixel_values, input_ids, length)");
  s.maxSequence = fwd.args[1].shape[1];
  return s;
}

std::vector<int32_t> expandImageTokens(const std::vector<int32_t> &ids, int32_t imageToken, int64_t positions) {
  std::vector<int32_t> out;
  for (int32_t id : ids) {
    if (id == imageToken) out.insert(out.end(), positions, imageToken);
    else out.push_back(id);
  }
  return out;
}

std::vector<float> llavaPixelValues(const LlavaShape &s, const std::string &imagePath) {
  return preprocessClip(loadImage(imagePath), clipDefaults((int)s.imageSize));
}

std::vector<float> visionEmbeds(const CompiledModel &model, const std::vector<const void *> &params,
                                const LlavaShape &shape, const std::string &imagePath,
                                std::vector<uint8_t> *workspace) {
  const std::vector<float> pixels = llavaPixelValues(shape, imagePath);
  std::vector<HostTensor> in(1), out;
  in[0].bytes.resize(pixels.size() * sizeof(float));
  std::memcpy(in[0].bytes.data(), pixels.data(), in[0].bytes.size());
  model.runInto("vision_embeds", params, in, out, workspace);
  const float *v = out[0].as<float>();
  return std::vector<float>(v, v + out[0].bytes.size() / sizeof(float));
}

std::vector<HostTensor> llavaForwardArgs(const CompiledModel &model, const std::vector<int32_t> &ids,
                                         const std::optional<std::string> &imagePath) {
  LlavaShape s = llavaShape(model);
  const EntrySpec &fwd = inputEntry(model);
  if ((int64_t)ids.size() > s.maxSequence)
    throw Error("the input has " + std::to_string(ids.size()) + " tokens (image positions included) but " +
                model.path() + " was compiled for at most " + std::to_string(s.maxSequence));
  if (ids.empty())
    throw Error("the input has no tokens");
  int64_t imageTokens = 0;
  for (int32_t id : ids) {
    imageTokens += id == s.imageToken;
    if (id < 0 || id >= s.vocab)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary [0, " + std::to_string(s.vocab) + ")");
  }
  if (imagePath && imageTokens != s.imagePositions)
    throw Error("the input has " + std::to_string(imageTokens) + " image positions; one image needs exactly " +
                std::to_string(s.imagePositions) + " (one image token, expanded)");
  if (!imagePath && imageTokens)
    throw Error("the input has image tokens but no image was given");

  std::vector<HostTensor> args(3);
  args[0].bytes.assign(fwd.args[0].bytes(), 0);
  if (imagePath) {
    std::vector<float> pixels = llavaPixelValues(s, *imagePath);
    if ((int64_t)pixels.size() * 4 != fwd.args[0].bytes())
      throw Error("preprocessed image has " + std::to_string(pixels.size()) + " values; the model takes " +
                  std::to_string(fwd.args[0].numel()));
    std::memcpy(args[0].bytes.data(), pixels.data(), pixels.size() * 4);
  }
  args[1].bytes.resize(fwd.args[1].bytes());
  int32_t *dst = args[1].as<int32_t>();
  for (int64_t i = 0; i < s.maxSequence; ++i) dst[i] = i < (int64_t)ids.size() ? ids[i] : s.padToken;
  args[2].bytes.resize(4);
  *args[2].as<int32_t>() = static_cast<int32_t>(ids.size());
  return args;
}

} // namespace mm
