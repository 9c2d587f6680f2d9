#pragma once
// Where the trainer's segments come from (DESIGN.md 2.0 and 5), one at a time.
//
// Fusion: one RowsSource per source (data/rows_source.hpp). Offline, the teachers' distribution
// caches: opening reads only their indexes (row offsets, segment ids, CE), so a corpus of any size
// starts at once and memory stays bounded; a segment's target tokens and every source's aligned
// rows are read when a packed sequence needs them (get()), and the last `keep` segments are kept
// because a segment cut across two sequences is asked for twice. Every source must give the same
// segments with the same target tokenization: the caches' lengths are checked on open, the tokens
// on each read. Online, the same over the transport's rows sources (from_rows).
//
// CLM only (fusion = "none" or lambda = 1): no cache exists; the corpus is cut into segments
// exactly as `fusellm teach` cuts it (the Segmenter over every tokenizer of the job), kept as the
// job's segment index (teach/segment_index.hpp: 40 bytes per segment, written when asked, loaded
// when valid), and a segment is read back from the corpus and encoded by the target tokenizer when
// a packed sequence needs it (the last `keep` kept, as for fusion).
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "fusellm/data/packer.hpp"
#include "fusellm/data/rows_source.hpp"
#include "fusellm/job/job_config.hpp"

namespace fusellm {

struct JobTokenizers;
class CorpusSegments;

class SegmentSource {
 public:
  // limit >= 0: only the first `limit` segments. vocab: the target's vocabulary size (every
  // target id is checked against it).
  static SegmentSource from_caches(const JobConfig& job, int64_t limit, int64_t vocab);
  // In one process: the segment index is written when the corpus was cut here.
  static SegmentSource from_corpus(const JobConfig& job, int64_t limit, int64_t vocab);
  // The same over segments and tokenizers already at hand (a student of the MPI job cut or
  // loaded them at start).
  static SegmentSource from_segments(const JobConfig& job, std::shared_ptr<const JobTokenizers> toks,
                                     std::shared_ptr<const CorpusSegments> segments, int64_t vocab);
  // Online in one process: each source's Teacher run here, on the segments cut from the corpus
  // (teach/teacher_rows_source.hpp).
  static SegmentSource from_teachers(const JobConfig& job, int64_t limit, int64_t vocab);
  // Segments 0 .. lengths.size() - 1 of `lengths` target tokens each, their rows read from
  // `sources` (named `names`, in job order).
  static SegmentSource from_rows(std::vector<int64_t> lengths, std::vector<std::string> names,
                                 std::vector<std::unique_ptr<RowsSource>> sources, int64_t vocab);

  int64_t segments() const { return int64_t(lengths_.size()); }
  const std::vector<int64_t>& lengths() const { return lengths_; }  // target tokens per segment
  const std::vector<std::string>& source_names() const { return names_; }  // empty for CLM
  // Segment i (0 <= i < segments()); the reference stays valid for the next `keep - 1` calls.
  const PackInput& get(int64_t i);
  int64_t reads() const { return reads_; }  // segments read from the caches so far
  // Passed on to every rows source (RowsSource::begin_micro_batch / end_micro_batch).
  void begin_micro_batch(int64_t id, std::span<const int64_t> segments);
  void end_micro_batch(int64_t id);

  static constexpr size_t keep = 64;

 private:
  std::shared_ptr<const void> keep_alive_;  // what the rows sources read (from_teachers: the segments)
  std::vector<std::unique_ptr<RowsSource>> sources_;
  std::vector<std::string> names_;
  std::vector<int64_t> lengths_;
  int64_t vocab_ = 0;
  struct Corpus;
  std::shared_ptr<const Corpus> corpus_;           // CLM: the segments, encoded when read
  std::unordered_map<int64_t, PackInput> recent_;  // the last `keep` segments read
  std::deque<int64_t> order_;
  int64_t reads_ = 0;
};

}  // namespace fusellm
