#include "fusellm/teach/teacher_rows_source.hpp"

#include <array>

#include "fusellm/core/error.hpp"

namespace fusellm {

TeacherRowsSource::TeacherRowsSource(std::unique_ptr<Teacher> teacher, const CorpusSegments& segments)
    : teacher_(std::move(teacher)), segments_(&segments) {}

std::string TeacherRowsSource::describe() const { return fmt::format("source '{}' (in process)", teacher_->source()); }

void TeacherRowsSource::begin_micro_batch(int64_t /*id*/, std::span<const int64_t> segments) {
  std::vector<Segment> segs;
  for (const int64_t s : segments) {
    if (s < 0 || s >= segments_->count())
      fail("{}: segment {} requested, the corpus has {}", describe(), s, segments_->count());
    segs.push_back(segments_->segment(s));
  }
  std::vector<TeacherRows> rows = teacher_->rows(segs);
  for (auto& r : rows) ready_[r.segment] = std::move(r);
}

void TeacherRowsSource::end_micro_batch(int64_t /*id*/) { ready_.clear(); }

TeacherRows TeacherRowsSource::rows(int64_t segment) {
  if (auto it = ready_.find(segment); it != ready_.end()) return it->second;
  const std::array<int64_t, 1> one{segment};
  begin_micro_batch(-1, one);
  TeacherRows r = std::move(ready_.at(segment));
  ready_.erase(segment);
  return r;
}

}  // namespace fusellm
