#pragma once
// The job's segments (DESIGN.md 2.0) with their target tokenizations, cut the one way every path
// cuts them: the Segmenter over every tokenizer of the job, the segment's text encoded by the
// target tokenizer (special tokens included, as the Teacher encodes it; `fusellm teach` streams
// the same ones through SegmentStream). Every rank of the online job (teachers and students alike)
// and a CLM-only run cut the same ones, or load them from the segment index, so the sampler's
// step -> micro-batch -> segments schedule agrees across ranks without a message.
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "fusellm/data/segmenter.hpp"
#include "fusellm/job/job_config.hpp"
#include "fusellm/teach/job_tokenizers.hpp"
#include "fusellm/teach/segment_index.hpp"

namespace fusellm {

// Calls `each` for the first `limit` segments (all when limit < 0), in segment order, with the
// segment and its target token ids: SegmentStream's segments, the documents read 64 at a time and
// cut and encoded on the OpenMP threads.
void for_each_segment(const JobConfig& job, const JobTokenizers& toks, int64_t limit,
                      const std::function<void(Segment&&, std::vector<int32_t>&&)>& each);

// Every segment's number of target tokens (what the sampler needs) and its text (what a Teacher
// needs), for the online job: described by a segment index (segment_index.hpp), 40 bytes per
// segment, the texts read back from the corpus files when asked for.
class CorpusSegments {
 public:
  std::vector<int64_t> lengths;  // target tokens per segment

  int64_t count() const { return int64_t(lengths.size()); }
  Segment segment(int64_t id) const;  // Error when id is not one

  // Through the job's segment index: the one on disk when it is valid for the job
  // (segment_index.hpp), else one made by cutting the corpus here (keeping no text) and, when
  // `write_index`, written for the next start.
  static CorpusSegments load_or_cut(const JobConfig& job, const JobTokenizers& toks, int64_t limit, bool write_index);
  bool loaded_index() const { return loaded_; }  // load_or_cut found a valid index on disk

 private:
  std::shared_ptr<const SegmentIndex> index_;  // and the corpus it describes
  CorpusConfig corpus_;
  // The last documents read through the index: a document's segments are often asked for
  // together (a micro-batch packs consecutive segments), and a long one is read whole each time.
  struct RecentDocuments;
  std::shared_ptr<RecentDocuments> recent_;
  bool loaded_ = false;
};

}  // namespace fusellm
