#pragma once
// Where a student reads one source's rows from (DESIGN.md section 2, "rows reach the student
// through a rows source"): offline, that source's distribution cache (DistributionCacheReader,
// distribution_cache.hpp); online, a transport receiving them from the source's teacher ranks.
// The trainer's data path (train/segment_source.hpp) reads every source through this interface
// only, so a run fed online and one fed from caches assemble the same packed sequences.
//
// An implementation hands out the rows of segments by id, in the order the trainer's plan asks for
// them (increasing, each segment once or twice: a segment cut across two packed sequences). A
// transport may block until the rows arrive and may drop what it has handed out; the segment source
// keeps its own window of recent segments.
#include <cstdint>
#include <span>
#include <string>

#include "fusellm/data/teacher_rows.hpp"

namespace fusellm {

class RowsSource {
 public:
  virtual ~RowsSource() = default;
  // The rows of segment `segment`; fusellm::Error naming describe() and the segment when this
  // source cannot supply them or they are not what a Teacher writes.
  virtual TeacherRows rows(int64_t segment) = 0;
  // Where the rows come from, for error messages ("<cache path>", "source 'neox' (rank 3)").
  virtual std::string describe() const = 0;

  // The trainer announces each micro-batch (its id in this run, and the segments its sequences
  // are built from, in the order of first use) before it asks for their rows, and says when it
  // is done with it: a transport receives the micro-batch's message at begin and returns a
  // credit at end; a Teacher in process computes the segments together. A cache ignores both.
  virtual void begin_micro_batch(int64_t /*id*/, std::span<const int64_t> /*segments*/) {}
  virtual void end_micro_batch(int64_t /*id*/) {}
};

}  // namespace fusellm
