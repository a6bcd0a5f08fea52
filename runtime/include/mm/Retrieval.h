//===- Retrieval.h - BLIP-2 image-text retrieval: ITC scores, ITM re-ranking -*- C++ -*-===//
//
// A BLIP-2 model with a stage-1 Q-Former text side has three retrieval
// entries: `image_features` (an image's normalised ITC features, one per
// query), `text_features` (a text's, from the [CLS] output of the text-only
// pass) and `itm_scores` (the ITM head's logits for an image-text pair). The
// ITC score of a pair is the best match over the queries,
// max_q <image_q, text>; the ITM probability of a match is softmax(logits)[1].
// Re-ranking orders the ITC top K by ITC score + ITM match logit, as BLIP-2's
// reference (LAVIS, compute_sim_matrix) does: ITM refines ITC's order rather
// than replacing it.
//
//   mmrun MODEL.so --rank --image IMG --texts FILE [--weights W] [--rerank K]
//       every line of FILE scored by ITC, the top K re-ranked by ITM;
//   mmrun MODEL.so --eval-retrieval --data FILE.json --image-dir DIR [--weights W] [--rerank K]
//       recall@1 and @5 image->text and text->image over a set of
//       image-caption records (each record's caption is its image's match).
//
//===----------------------------------------------------------------------===//
#ifndef MM_RETRIEVAL_H
#define MM_RETRIEVAL_H

#include "mm/Data.h"
#include "mm/Model.h"
#include "mm/Parameters.h"
#include "mm/Tokenizer.h"

#include <array>
#include <map>
#include <string>
#include <vector>

namespace mm {

/// The retrieval entries of a compiled BLIP-2 with its weights.
class Retriever {
public:
  /// Throws mm::Error naming the library if it lacks the retrieval entries
  /// or a Q-Former text side.
  Retriever(const CompiledModel &model, const ParameterStore &params, const Tokenizer &tokenizer);
  /// [queries x embed] normalised features of an image file.
  std::vector<float> imageFeatures(const std::string &imagePath) const;
  /// [embed] normalised features of TEXT ([CLS] text "\n", truncated to the
  /// Q-Former's text length).
  std::vector<float> textFeatures(const std::string &text) const;
  /// max over queries of <image_q, text>.
  float itcScore(const std::vector<float> &image, const std::vector<float> &text) const;
  /// The ITM head's logits (no match, match) for the image and TEXT, averaged
  /// over the queries.
  std::array<float, 2> itmLogits(const std::string &imagePath, const std::string &text) const;
  /// The ITM probability that TEXT describes the image: softmax(itmLogits)[1].
  static float itmProbability(const std::array<float, 2> &logits);
  int64_t queries() const { return queries_; }
  int64_t embed() const { return embed_; }

private:
  std::vector<int32_t> textIds(const std::string &text) const;
  /// The frozen ViT's output for an image (the vision_embeds entry), computed
  /// once per path: ITM re-ranking scores each image against several texts.
  const std::vector<float> &visionEmbeds(const std::string &imagePath) const;
  const CompiledModel &model_;
  const ParameterStore &params_;
  const Tokenizer &tokenizer_;
  SampleFormat format_;
  int64_t queries_ = 0, embed_ = 0;
  mutable std::map<std::string, std::vector<float>> visionEmbeds_;
};

struct RetrievalOptions {
  std::string model, weights, image, texts, data, imageDir;
  bool evaluate = false; // --eval-retrieval (else --rank)
  int rerank = 5;        // how many of the ITC ranking ITM re-scores
  int64_t limit = 0;     // --limit N records (evaluation)
};
extern const char *const kRetrievalUsage;
RetrievalOptions parseRetrievalOptions(const std::vector<std::string> &args);
int runRetrieval(const RetrievalOptions &options);

/// Recall@K of a score matrix SCORES[query][candidate] (square: query i's
/// own candidate is i): the fraction of queries with a correct candidate among
/// the K highest, ties counting against it. Candidate c is correct for query
/// q when GROUPS[c] == GROUPS[q] (records whose captions are the same text
/// cannot be told apart by it); empty GROUPS: only c == q is correct.
double recallAtK(const std::vector<std::vector<float>> &scores, int k, const std::vector<int64_t> &groups = {});

/// One group id per caption: equal texts share the id of their first record.
std::vector<int64_t> captionGroups(const std::vector<std::string> &captions);

} // namespace mm

#endif // MM_RETRIEVAL_H
