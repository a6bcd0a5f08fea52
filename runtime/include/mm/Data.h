//===- Data.h - LLaVA training data: records, templates, samples -*- C++ -*-===//
//
// Training data is a LLaVA conversation JSON file: an array of records
//
//   {"id": "004539375", "image": "00453/004539375.jpg",
//    "conversations": [{"from": "human", "value": "<image>\nDescribe it."},
//                      {"from": "gpt", "value": "A cat on a mat."}, ...]}
//
// ("id" may be a string or a number and defaults to the record's index;
// "image" is optional.) A record becomes one training sample through a chat
// template, built segment by segment so that which ids are the assistant's
// is known from the segment, never by re-tokenising:
//
//   plain     (stage data "caption"): BOS, image, caption of the first gpt
//             turn, "\n"; loss on the caption and the "\n".
//   blip2     (stage data "image_caption"): image (BLIP-2's query positions
//             come first), BOS, caption, "\n"; loss on the caption and the
//             "\n". Records may also be {"image": ..., "caption": ...}.
//   blip2_prefix (stage data "caption_prefix", the tiny OPT's pre-training):
//             blip2's layout with words where the queries will stand: the
//             caption's first tokens (as many as there are query positions,
//             padded), BOS, caption, "\n"; loss on the caption and "\n". The
//             LLM learns to read what stands before the BOS, as a pre-trained
//             LLM reads its context, not to ignore it.
//   qformer_text (stage data "image_text", BLIP-2's stage 1): the Q-Former's
//             text, [CLS] caption "\n" (no image positions: the queries are
//             the model's own), truncated to the Q-Former's text length with
//             a warning; targets the next token of each text position (ITG).
//             A batch of these is one call of the stage's entry
//             (stage1Args).
//   blip2_t5  (stage data "image_caption_split", the encoder-decoder BLIP-2's
//             stage 2: prefix language modelling): the caption is split at a
//             word boundary (captionSplit); the encoder reads image, prefix,
//             "</s>", the decoder reads the start token, suffix and predicts
//             suffix, "</s>" (decoderInputIds / targets).
//   t5_text   (stage data "caption_split", the tiny T5's pre-training):
//             blip2_t5 with the caption's own tokens where the queries will
//             stand (as blip2_prefix), so the decoder learns to read its
//             encoder.
//   vicuna_v1 (stage data "conversation"): BOS, SYSTEM + " USER: " + human +
//             " ASSISTANT:", then " " + gpt, "</s>"; later turns "USER: " +
//             human + " ASSISTANT:", " " + gpt, "</s>". Loss on each gpt
//             answer (with the space that separates it from "ASSISTANT:", as
//             LLaVA's masking does: with a BPE tokenizer that space belongs
//             to the answer's first token) and its "</s>".
//
// Every piece is encoded with addSpecial = false. An "<image>" marker in a
// human turn becomes the model's image token, expanded to the image's feature
// positions. targets[t] = ids[t + 1] where position t + 1 is an assistant id,
// else -100 (also at the last position); padding uses the pad id and -100.
//
// Errors throw mm::Error naming the data file and the record (0-based index
// in the file's array, and its id).
//
//===----------------------------------------------------------------------===//
#ifndef MM_DATA_H
#define MM_DATA_H

#include "mm/Llava.h"
#include "mm/Model.h"
#include "mm/Tokenizer.h"

#include <cstdint>
#include <functional>
#include <iosfwd>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace mm {

struct ConversationTurn {
  std::string from; // "human" or "gpt"
  std::string value;
};

struct ConversationRecord {
  std::string id;
  std::optional<std::string> image; // relative to the image directory
  std::vector<ConversationTurn> turns;   // may be empty in patch-label data
  std::vector<int32_t> patchLabels;      // "patch_labels": per-patch classes (vision pre-training)
  std::vector<int32_t> patchCells;       // "patch_cells": per patch, 1 + the grid cell of its object
                                         // (0: background), for a patch_loss that also reads them
  std::optional<std::string> type;       // "type": an evaluation record's question type
  std::optional<std::string> answer;     // "answer": an evaluation record's expected reply
  std::vector<std::string> grid;         // "grid": the object in each cell of a 3 x 3 grid, "" if none
  std::string source; // the data file
  size_t index = 0;   // 0-based position in the file's array
  /// "FILE: record INDEX (id 'ID')", the prefix of every error about it.
  std::string where() const;
};

/// Records left out by --skip-bad: how many, and the first one's error.
struct SkippedRecords {
  size_t count = 0;
  std::string first;
  void add(const std::string &message) {
    if (count++ == 0) first = message;
  }
};

/// Reads a conversation JSON file. Throws mm::Error naming PATH (and the
/// record) for unreadable files, bad JSON (with its line and column), a
/// non-array, missing or mistyped fields, or an empty array. With `skipped`,
/// a record with missing or mistyped fields is counted there and left out
/// instead (the file itself must still be a JSON array).
std::vector<ConversationRecord> loadConversations(const std::string &path, SkippedRecords *skipped = nullptr);
/// The same, from text in memory; NAME stands in for the file name.
std::vector<ConversationRecord> parseConversations(const std::string &jsonText, const std::string &name,
                                                   SkippedRecords *skipped = nullptr);

/// How a record becomes a sample. PatchLabels is no chat template: the image
/// alone, with the record's "patch_labels" as the targets (one per patch),
/// for an entry taking (pixel_values, patch_labels[, patch_cells]). Blip2Layout is blip2's
/// sample (the query positions, BOS, the caption) with the scene's layout in
/// place of an image: per query position k < 9, cell k's colour and shape ids
/// (TrainingSample::cellColourIds / cellShapeIds), for an entry that embeds
/// both and sums them where the queries will stand.
enum class ChatTemplate { Plain, VicunaV1, PatchLabels, Blip2, Blip2Prefix, Blip2Layout, QFormerText, Blip2T5, T5Text };
/// "caption" -> Plain, "conversation" -> VicunaV1, "patch_labels" ->
/// PatchLabels, "image_caption" -> Blip2, "caption_prefix" -> Blip2Prefix,
/// "caption_layout" -> Blip2Layout, "image_text" -> QFormerText,
/// "image_caption_split" -> Blip2T5, "caption_split" -> T5Text;
/// throws for anything else.
ChatTemplate chatTemplateForData(const std::string &dataKind);
const char *chatTemplateName(ChatTemplate t);
/// The chat template NAME ("vicuna_v1", "plain", "blip2", "blip2_t5") names;
/// an empty NAME means MODEL's own: blip2_t5 for a BLIP-2 model with an
/// encoder-decoder LLM, blip2 for another BLIP-2 model, else vicuna_v1.
ChatTemplate chatTemplateByName(const std::string &name, const CompiledModel &model);
/// vicuna_v1's system prompt.
extern const char *const kVicunaSystem;

/// What a sample needs from the model and its tokenizer.
struct SampleFormat {
  LlavaShape shape; // image size and positions, compiled length, image/pad ids
  int32_t bos = 1;
  // BLIP-2's Q-Former text side (qformer_config), where the model has one:
  int64_t textLength = 0; // max_position_embeddings: the compiled text length
  int32_t cls = 0;        // cls_token_id
  int64_t queries = 0;    // num_query_tokens
  // An encoder-decoder LLM (text_config.decoder_start_token_id), where the model has one:
  int64_t decoderLength = 0; // max_decoder_length: the compiled decoder length
  int32_t decoderStart = 0;  // decoder_start_token_id
  int32_t eos = 0;           // eos_token_id
};
/// Reads the shape from MODEL (llavaShape) and BOS from TOKENIZER. Throws if
/// the tokenizer has no BOS token, unless the model's LLM is an
/// encoder-decoder (whose templates use none).
SampleFormat sampleFormat(const CompiledModel &model, const Tokenizer &tokenizer);

/// Throws mm::Error (naming the record) if RECORD cannot be turned into a
/// sample with TEMPLATE: turns not alternating human/gpt from a human one, a
/// conversation ending on a human turn, no gpt turn, an "<image>" marker
/// count that does not match the record's image (exactly one with an image,
/// none without), captions without an image. Cheap: no tokenising.
void checkRecord(const ConversationRecord &record, ChatTemplate t);
/// The record's image path under `imageDir` (absolute paths stay), if any.
std::optional<std::string> recordImagePath(const ConversationRecord &record, const std::string &imageDir);
/// checkRecord, and that the record's image exists and decodes (each path is
/// decoded once per `decoded` set). Throws mm::Error naming the record.
void checkRecordAndImage(const ConversationRecord &record, ChatTemplate t, const std::string &imageDir,
                         std::set<std::string> &decoded);

struct TrainingSample {
  std::string id;
  std::string where;                    // ConversationRecord::where()
  std::optional<std::string> imagePath; // image directory + record.image
  std::vector<int32_t> inputIds;        // image expanded, unpadded, <= maxSequence
  std::vector<int32_t> targets;         // same length (as decoderInputIds where there are
                                        // some); -100 where no loss
  std::vector<int32_t> decoderInputIds; // encoder-decoder templates: the decoder's input
  std::vector<int32_t> patchCells;      // PatchLabels: the record's patch_cells, if any
  std::vector<int32_t> cellColourIds;   // Blip2Layout: one id per query position (pad where
  std::vector<int32_t> cellShapeIds;    // no cell or an empty one): the cell's colour / shape word
  int64_t fullLength = 0;               // length before truncation
  bool truncated() const { return fullLength > (int64_t)(inputIds.size() + decoderInputIds.size()); }
  int64_t targetCount() const; // targets != -100
};

/// Builds RECORD's sample (see the top of this file). A sample longer than
/// the compiled length is truncated to it, with a warning naming the record
/// written to WARNINGS when that is not null. Throws mm::Error naming the
/// record for everything checkRecord rejects, text that encodes to the image
/// token, or a truncation that cuts into the image positions.
TrainingSample buildSample(const ConversationRecord &record, ChatTemplate t, const Tokenizer &tokenizer,
                           const SampleFormat &format, const std::string &imageDir,
                           std::ostream *warnings = nullptr);

/// Where a caption of WORDS words splits into prefix and suffix for the
/// encoder-decoder templates: 0 for half the ids (an empty prefix: plain
/// captioning, what chat does without a prompt), otherwise a number of words
/// in [1, WORDS / 2]; fixed by the record's id (FNV-1a), so every record
/// keeps its split across epochs and runs.
size_t captionSplit(const std::string &id, size_t words);

/// The values of one image for an entry's first argument, from its path: its
/// preprocessed pixels (pixel_values) or the frozen vision tower's output for
/// it (image_embeds, which mmrun computes once per image and caches).
using ImageInput = std::function<std::vector<float>(const std::string &imagePath)>;

/// A train entry's arguments for SAMPLE: pixel_values (the CLIP-preprocessed
/// image) or image_embeds (IMAGE's values for it; zeros without an image),
/// input_ids and targets padded to the compiled length (pad id / -100), and
/// the real length. An encoder-decoder entry (one taking decoder_input_ids)
/// takes its arguments by name from [pixel_values or image_embeds,]
/// input_ids, length, decoder_input_ids, targets and decoder_length. A layout
/// entry (one taking cell_colour_ids) takes input_ids, cell_colour_ids,
/// cell_shape_ids, targets and length, and no image. Throws mm::Error naming
/// the record and the image file if the image is missing or undecodable.
std::vector<HostTensor> trainArgs(const EntrySpec &entry, const TrainingSample &sample, const SampleFormat &format,
                                  const ImageInput &image = {});

/// The Q-Former's text for TEXT: [CLS] text "\n", not yet truncated to
/// FORMAT.textLength (training samples and retrieval both cut it there).
std::vector<int32_t> qformerTextIds(const std::string &text, const Tokenizer &tokenizer, const SampleFormat &format);

/// A batched stage-1 entry's arguments for SAMPLES (exactly the entry's
/// batch): pixel_values (each sample's preprocessed image) or image_embeds
/// (IMAGE's values for it), input_ids and targets padded
/// to the text length, length = queries + text length, and the two rows of
/// uniform numbers that draw the ITM hard negatives. Throws mm::Error naming
/// the record for a missing or undecodable image, and naming the entry if its
/// arguments are not these.
std::vector<HostTensor> stage1Args(const EntrySpec &entry, const std::vector<const TrainingSample *> &samples,
                                   const SampleFormat &format, const std::vector<float> &negativeTextUniform,
                                   const std::vector<float> &negativeImageUniform, const ImageInput &image = {});
/// The batch a stage-1 entry was compiled for (its input_ids' first axis).
int64_t entryBatch(const EntrySpec &entry);

} // namespace mm

#endif // MM_DATA_H
