#include "fusellm/data/packer.hpp"

#include <limits>

#include "fusellm/core/error.hpp"

namespace fusellm {

Packer::Packer(std::span<const int64_t> segment_tokens, int64_t max_len) {
  if (max_len < 1) fail("packer: max_len {} < 1", max_len);
  std::vector<PackedPiece> cur;
  int64_t fill = 0;
  for (size_t s = 0; s < segment_tokens.size(); ++s) {
    int64_t b = 0;
    const int64_t n = segment_tokens[s];
    while (b < n) {
      const int64_t take = std::min(n - b, max_len - fill);
      cur.push_back({int64_t(s), b, b + take});
      b += take;
      fill += take;
      if (fill == max_len) {
        plan_.push_back(std::move(cur));
        cur.clear();
        fill = 0;
      }
    }
  }
  if (fill > 0) plan_.push_back(std::move(cur));
}

PackedSequence Packer::build(int64_t seq, std::span<const PackInput> inputs, bool document_mask) const {
  return build(
      seq,
      [&](int64_t s) -> const PackInput& {
        if (s < 0 || s >= int64_t(inputs.size())) fail("packer: segment {} of {} inputs", s, inputs.size());
        return inputs[size_t(s)];
      },
      document_mask);
}

PackedSequence Packer::build(int64_t seq, const SegmentGetter& get, bool document_mask) const {
  const auto& pcs = pieces(seq);
  PackedSequence out;
  out.pieces = pcs;
  int64_t T = 0;
  for (const auto& p : pcs) T += p.end - p.begin;
  size_t K = 0;
  {
    const PackInput& first = get(pcs.front().segment);
    K = first.rows.size();
    for (size_t j = 0; j < K; ++j) out.rows.emplace_back("packed", T, first.rows[j].k);
  }
  out.ids.reserve(size_t(T));
  if (document_mask) out.doc_ids.reserve(size_t(T));
  out.ce.assign(K, 0.0);
  std::vector<double> nats(K, 0.0), bytes(K, 0.0);
  // Per-position CE travels with the rows only for per-position fusion (teacher.hpp).
  const PackInput& first_in = get(pcs.front().segment);
  const bool per_position = K > 0 && !first_in.rows[0].position_ce.empty();
  if (per_position) out.position_ce.assign(K * size_t(T), 0.0f);
  int64_t t = 0;
  for (size_t pi = 0; pi < pcs.size(); ++pi) {
    const auto& p = pcs[pi];
    const PackInput& in = get(p.segment);
    if (int64_t(in.target_ids.size()) < p.end)
      fail("packer: segment {} has {} tokens, the plan wants {}", in.id, in.target_ids.size(), p.end);
    if (in.rows.size() != K)
      fail("packer: segment {} has {} sources' rows, expected {}", in.id, in.rows.size(), K);
    for (int64_t i = p.begin; i < p.end; ++i, ++t) {
      out.ids.push_back(in.target_ids[size_t(i)]);
      if (document_mask) out.doc_ids.push_back(int32_t(pi));
      for (size_t j = 0; j < K; ++j) {
        const TeacherRows& src = in.rows[j];
        auto& dst = out.rows[j];
        if (src.k != dst.k() || src.rows() < p.end)
          fail("packer: segment {}: source {} has {} rows of k = {}, expected {} of k = {}", in.id, j, src.rows(),
               src.k, p.end, dst.k());
        for (int64_t c = 0; c < src.k; ++c) {
          dst.ids(t, c) = src.id(i, c);
          dst.probs(t, c) = src.prob(i, c);
        }
        if (per_position) {
          if (src.position_ce.size() != size_t(src.rows()))
            fail("packer: segment {}: source {} has {} per-position CE values for {} rows", in.id, j,
                 src.position_ce.size(), src.rows());
          out.position_ce[j * size_t(T) + size_t(t)] = src.position_ce[size_t(i)];
        }
      }
    }
    for (size_t j = 0; j < K; ++j) {
      const TeacherRows& src = in.rows[j];
      const double share = double(p.end - p.begin) / double(src.rows());
      out.ce[j] += src.ce * double(p.end - p.begin);
      if (src.ce_tokens > 0) nats[j] += share * src.ce * double(src.ce_tokens);
      bytes[j] += share * double(src.bytes);
    }
  }
  out.nats_per_byte.assign(K, std::numeric_limits<double>::infinity());
  for (size_t j = 0; j < K; ++j) {
    out.ce[j] /= double(T);
    if (bytes[j] > 0) out.nats_per_byte[j] = nats[j] / bytes[j];
  }
  out.gold.assign(size_t(T), -1);
  for (int64_t i = 0; i + 1 < T; ++i)
    if (!document_mask || out.doc_ids[size_t(i)] == out.doc_ids[size_t(i + 1)]) out.gold[size_t(i)] = out.ids[size_t(i + 1)];
  return out;
}

}  // namespace fusellm
