#pragma once
// The job's segments (DESIGN.md 2.0) with their target tokenizations, cut the one way every path
// cuts them: the Segmenter over every tokenizer of the job, the segment's text encoded by the
// target tokenizer (special tokens included, as the Teacher encodes it). `fusellm teach` and a
// CLM-only run stream them; every rank of the online job (teachers and students alike) cuts the
// same ones, so the sampler's step -> micro-batch -> segments schedule agrees across ranks
// without a message.
#include <cstdint>
#include <functional>
#include <vector>

#include "fusellm/data/segmenter.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"

namespace fusellm {

// Calls `each` for the first `limit` segments (all when limit < 0), in segment order, with the
// segment and its target token ids.
void for_each_segment(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                      const std::function<void(Segment&&, std::vector<int32_t>&&)>& each);

// Every segment's text and its number of target tokens (what the sampler needs). Holds the
// corpus's text in memory: the online job's ranks keep it to hand each micro-batch's segments
// to their Teacher (README, Status: a corpus larger than memory needs an index instead).
struct CorpusSegments {
  std::vector<Segment> segments;
  std::vector<int64_t> lengths;  // target tokens per segment
  static CorpusSegments cut(const JobConfig& job, const JobTokenizers& toks, int64_t limit);
};

}  // namespace fusellm
