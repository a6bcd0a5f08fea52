//===- RetrievalTest.cpp - recall@K with equal captions --------------------===//
#include "mm/Retrieval.h"

#include <gtest/gtest.h>

namespace {

// scores[query][candidate]; query i's own candidate is i.
const std::vector<std::vector<float>> kScores = {
    {0.9f, 0.1f, 0.2f}, // query 0: its own candidate first
    {0.8f, 0.5f, 0.1f}, // query 1: candidate 0 first, its own second
    {0.3f, 0.7f, 0.7f}, // query 2: tied with candidate 1
};

TEST(Retrieval, RecallCountsOwnCandidateAndTiesAgainst) {
  EXPECT_DOUBLE_EQ(mm::recallAtK(kScores, 1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(mm::recallAtK(kScores, 2), 1.0); // one better (or tied) candidate each
}

TEST(Retrieval, EqualCaptionsAreOneGroup) {
  const std::vector<int64_t> groups = mm::captionGroups({"A red circle.", "A blue square.", "A red circle."});
  EXPECT_EQ(groups, (std::vector<int64_t>{0, 1, 0}));
  // Records 0 and 2 share a caption: query 1 still misses (0 is not its
  // group); query 2's tie with candidate 1 still counts against it, and
  // candidate 0 (its group, 0.3) does not beat 1 either.
  EXPECT_DOUBLE_EQ(mm::recallAtK(kScores, 1, groups), 1.0 / 3);
  // With query 2 preferring record 0 (same caption), it becomes a hit.
  std::vector<std::vector<float>> s = kScores;
  s[2] = {0.9f, 0.7f, 0.1f};
  EXPECT_DOUBLE_EQ(mm::recallAtK(s, 1), 1.0 / 3);
  EXPECT_DOUBLE_EQ(mm::recallAtK(s, 1, groups), 2.0 / 3);
}

} // namespace
