#pragma once
// Source scores (kernels/kokkos/sequence_ce.hpp): each source's cross-entropy on the gold next
// tokens of each segment, under its own tokenization; the reward exp(-CE) of FuseLLM's MinCE/AvgCE;
// the packed-sequence score as the token-weighted mean over its segments (DESIGN.md 2.0); and,
// beyond the paper, the per-byte score (nats or bits per UTF-8 byte).
#include <cmath>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/fusion/kokkos_glue.hpp"
#include "fusellm/fusion/score_unit.hpp"
#include "kokkos/sequence_ce.hpp"

namespace fusellm::fusion {

struct SegmentScores {
  std::vector<double> ce_sum;       // [D] summed CE (nats) over the segment's scored tokens
  std::vector<int64_t> tokens;      // [D] number of scored tokens
  std::vector<int64_t> bytes;       // [D] UTF-8 bytes of the segment's text (empty: not given)
  std::vector<float> ce_position;   // [N] per-position CE (0 where gold < 0)

  int64_t segments() const { return int64_t(ce_sum.size()); }
  // Mean CE per token (nats); +Inf for a segment with no scored token (reward 0).
  double ce(int64_t d) const;
  double nats_per_byte(int64_t d) const;
  double bits_per_byte(int64_t d) const { return nats_per_byte(d) / std::log(2.0); }
  double score(int64_t d, ScoreUnit u) const {
    return u == ScoreUnit::kNatsPerToken ? ce(d) : nats_per_byte(d);
  }
  double reward(int64_t d, ScoreUnit u = ScoreUnit::kNatsPerToken) const {
    return std::exp(-score(d, u));
  }
  // A packed training sequence made of segments [first, last): the token-weighted mean of their CE
  // (sum of summed CE / sum of tokens), as the original computes it; per byte: sum / sum of bytes.
  double packed_score(int64_t first, int64_t last, ScoreUnit u = ScoreUnit::kNatsPerToken) const;
};

// logits [N, V] of one source over its own tokens (row-major host span), gold next-token ids [N]
// (< 0: not scored), segment offsets [D + 1] into the rows, optional UTF-8 byte counts [D].
SegmentScores score_segments(std::span<const float> logits, int64_t N, int64_t V,
                             std::span<const int32_t> gold, std::span<const int64_t> doc_offsets,
                             const std::string& source, std::span<const int64_t> doc_bytes = {});

// Same on Views of the default memory space; per-position CE and per-segment sums come back to
// the host (they are small).
SegmentScores score_segments(const DeviceView2<const float>& logits,
                             const DeviceView1<const int32_t>& gold,
                             const DeviceView1<const int64_t>& doc_offsets,
                             const std::string& source, std::span<const int64_t> doc_bytes = {});

}  // namespace fusellm::fusion
