#include "fusellm/fusion/sequence_ce.hpp"

#include <limits>

namespace fusellm::fusion {

double SegmentScores::ce(int64_t d) const {
  return tokens.at(d) > 0 ? ce_sum.at(d) / double(tokens[d])
                          : std::numeric_limits<double>::infinity();
}

double SegmentScores::nats_per_byte(int64_t d) const {
  if (bytes.empty()) fail("per-byte score asked for, but no segment byte counts were given");
  return bytes.at(d) > 0 ? ce_sum.at(d) / double(bytes[d]) : std::numeric_limits<double>::infinity();
}

double SegmentScores::packed_score(int64_t first, int64_t last, ScoreUnit u) const {
  if (first < 0 || last > segments() || first > last)
    fail("packed score: segments [{}, {}) outside [0, {})", first, last, segments());
  if (u == ScoreUnit::kNatsPerByte && bytes.empty())
    fail("per-byte score asked for, but no segment byte counts were given");
  double sum = 0.0, den = 0.0;
  for (int64_t d = first; d < last; ++d) {
    sum += ce_sum[d];
    den += double(u == ScoreUnit::kNatsPerToken ? tokens[d] : bytes[d]);
  }
  return den > 0 ? sum / den : std::numeric_limits<double>::infinity();
}

SegmentScores score_segments(const DeviceView2<const float>& logits,
                             const DeviceView1<const int32_t>& gold,
                             const DeviceView1<const int64_t>& doc_offsets,
                             const std::string& source, std::span<const int64_t> doc_bytes) {
  auto r = kernels::sequence_ce(ExecSpace(), logits, gold, doc_offsets, source);
  SegmentScores s;
  s.ce_sum = to_std_vector(r.ce_sum);
  s.tokens = to_std_vector(r.count);
  s.ce_position = to_std_vector(r.ce_position);
  if (!doc_bytes.empty()) {
    if (doc_bytes.size() != s.ce_sum.size())
      fail("CE of source '{}': {} byte counts for {} segments", source, doc_bytes.size(),
           s.ce_sum.size());
    s.bytes.assign(doc_bytes.begin(), doc_bytes.end());
  }
  return s;
}

SegmentScores score_segments(std::span<const float> logits, int64_t N, int64_t V,
                             std::span<const int32_t> gold, std::span<const int64_t> doc_offsets,
                             const std::string& source, std::span<const int64_t> doc_bytes) {
  const std::string what = "CE of source '" + source + "'";
  return score_segments(to_device(logits, N, V, what + " logits"), to_device(gold, what + " gold"),
                        to_device(doc_offsets, what + " offsets"), source, doc_bytes);
}

}  // namespace fusellm::fusion
