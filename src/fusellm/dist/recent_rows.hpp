#pragma once
// The rows a teacher replica computed for its most recent segments. The packer cuts segments
// across packed sequences, so consecutive micro-batches share a segment (on the tiny job the
// teacher would run 1.73x the positions trained: benchmarks/RESULTS.md); the rows of a segment do
// not depend on the micro-batch it is computed with (one segment's forward, top-k, CE, alignment),
// so a replica runs a segment once while it is recent and sends the kept rows again. Every stage
// of a replica sees the same micro-batches and makes the same decisions (the earlier stages keep
// the ids only), so the stages stay in step.
#include <cstdint>
#include <deque>
#include <unordered_map>

#include "fusellm/data/teacher_rows.hpp"

namespace fusellm::dist {

class RecentRows {
 public:
  explicit RecentRows(size_t keep) : keep_(keep) {}
  const TeacherRows* find(int64_t segment) const {
    const auto it = rows_.find(segment);
    return it == rows_.end() ? nullptr : &it->second;
  }
  // Keeps `rows` for `segment`, forgetting the oldest beyond `keep`.
  void add(int64_t segment, TeacherRows rows) {
    if (!rows_.insert_or_assign(segment, std::move(rows)).second) return;
    order_.push_back(segment);
    while (order_.size() > keep_) {
      rows_.erase(order_.front());
      order_.pop_front();
    }
  }

 private:
  size_t keep_;
  std::unordered_map<int64_t, TeacherRows> rows_;
  std::deque<int64_t> order_;
};

}  // namespace fusellm::dist
