#pragma once
// A Teacher run in this process as a rows source (data/rows_source.hpp): the online job in one
// process (no mpirun, or -np 1), where the teachers and the student take turns. For each
// micro-batch the trainer announces, the Teacher computes the rows of its segments together (one
// alignment batch, as a teacher rank of the MPI job computes a micro-batch), and forgets them
// when the micro-batch is done; a segment asked for outside an announced micro-batch is computed
// alone. The rows are those `fusellm teach` writes to the cache, bit for bit.
#include <map>
#include <memory>

#include "fusellm/data/rows_source.hpp"
#include "fusellm/teach/corpus_segments.hpp"
#include "fusellm/teach/teacher.hpp"

namespace fusellm {

class TeacherRowsSource final : public RowsSource {
 public:
  // `segments`: the job's segments (CorpusSegments), not owned: they must outlive this source.
  TeacherRowsSource(std::unique_ptr<Teacher> teacher, const CorpusSegments& segments);
  TeacherRows rows(int64_t segment) override;
  std::string describe() const override;
  void begin_micro_batch(int64_t id, std::span<const int64_t> segments) override;
  void end_micro_batch(int64_t id) override;

 private:
  std::unique_ptr<Teacher> teacher_;
  const CorpusSegments* segments_;
  std::map<int64_t, TeacherRows> ready_;  // the current micro-batch's rows, by segment
};

}  // namespace fusellm
