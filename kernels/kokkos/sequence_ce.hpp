#pragma once
// Source scores: each source's cross-entropy on the gold next tokens of a text, under its own
// tokenization and from its own logits (DESIGN.md section 1, "Fusion"; the original's
// `metric_ce` in forward_for_logits.py):
//
//     ce_i = logsumexp(z_i) - z_i[g_i]                       (per position; g_i < 0: ignored)
//     CE_d = sum_{i in d, g_i >= 0} ce_i / n_d                (per document/segment d, n_d tokens)
//     r_d  = exp(-CE_d)                                       (the reward of paper sec. 3.3)
//
// The original computes metric_ce per padded sequence as sum(ce * mask) / sum(mask); here the rows
// are the source's tokens of several segments packed back to back, and `doc_offsets` [D + 1] cut
// them into segments (segment d = rows doc_offsets[d] .. doc_offsets[d+1]). A packed training
// sequence's CE is the token-weighted mean over its segments, sum_d(sum_i ce_i) / sum_d(n_d),
// which the caller forms from the per-segment sums and counts returned here (the host wrapper
// fusellm::fusion::score_sequences does it). Beyond the paper, the per-byte score divides the
// summed CE (nats) by the segment's UTF-8 byte count: nats per byte, and bits per byte =
// nats per byte / ln 2 (the Pythia experiment's metric, which does not favour tokenizers with
// short tokens).
//
// The per-position ce_i is kept: it is the original's per_step_metric_ce (metric_level != sequence),
// the input of the per-position MinCE option once carried through the token alignment.
//
// A segment with no scored token has n_d = 0, CE_d = +Inf and reward 0 (no evidence).
// Errors (fusellm::Error naming the source and the position): gold id >= V, NaN or +Inf logits in
// a scored row, a non-finite CE (gold logit -Inf), offsets that do not cover [0, N] monotonically.
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

#include "fusellm/core/error.hpp"
#include "kokkos/fusion_row_math.hpp"

namespace fusellm::kernels {

template <class ExecSpace>
struct SequenceCEFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  static constexpr bool kHost = kOnHost<ExecSpace>;

  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> logits;  // [N, V]
  Kokkos::View<const int32_t*, MemSpace> gold;                        // [N]
  Kokkos::View<float*, MemSpace> ce;                                  // [N] out

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team, int64_t& first_bad) const {
    const int64_t row = team.league_rank();
    const int64_t V = int64_t(logits.extent(1));
    const int32_t g = gold(row);
    if (g < 0) {
      Kokkos::single(Kokkos::PerTeam(team), [&]() { ce(row) = 0.f; });
      return;
    }
    const float* z = &logits(row, 0);
    float m, s;
    team_row_max_sumexp<kHost>(team, z, V, 1.f, m, s);
    const float lse = m + ::logf(s);
    int64_t code = kNoError;
    if (!is_finite(lse))
      code = error_code(row, 0, kNonFiniteLogit);
    else if (!is_finite(lse - z[g]))
      code = error_code(row, 0, kNonFiniteLoss);
    if (code < first_bad) first_bad = code;
    Kokkos::single(Kokkos::PerTeam(team), [&]() { ce(row) = lse - z[g]; });
  }
};

// Per segment: sum of ce over scored rows (double, in row order: deterministic) and the count.
template <class ExecSpace>
struct SegmentSumFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  Kokkos::View<const float*, MemSpace> ce;
  Kokkos::View<const int32_t*, MemSpace> gold;
  Kokkos::View<const int64_t*, MemSpace> offsets;  // [D + 1]
  Kokkos::View<double*, MemSpace> ce_sum;          // [D]
  Kokkos::View<int64_t*, MemSpace> count;          // [D]
  KOKKOS_INLINE_FUNCTION void operator()(const int64_t d) const {
    double acc = 0.0;
    int64_t n = 0;
    for (int64_t i = offsets(d); i < offsets(d + 1); ++i)
      if (gold(i) >= 0) {
        acc += double(ce(i));
        ++n;
      }
    ce_sum(d) = acc;
    count(d) = n;
  }
};

// Output of sequence_ce, in MemSpace.
template <class MemSpace>
struct SequenceCE {
  Kokkos::View<float*, MemSpace> ce_position;  // [N] per-position CE (0 where gold < 0)
  Kokkos::View<double*, MemSpace> ce_sum;      // [D] sum of CE over the segment's scored tokens
  Kokkos::View<int64_t*, MemSpace> count;      // [D] number of scored tokens
};

// Scores one source: logits [N, V] over its own tokens, gold next-token ids [N] (< 0: not scored),
// segment offsets [D + 1] into the N rows. `source` names the source in error messages.
template <class ExecSpace, class MemSpace = typename ExecSpace::memory_space>
SequenceCE<MemSpace> sequence_ce(
    const ExecSpace& exec, const Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace>& logits,
    const Kokkos::View<const int32_t*, MemSpace>& gold,
    const Kokkos::View<const int64_t*, MemSpace>& doc_offsets, const std::string& source,
    int team_size = 0) {
  const int64_t N = int64_t(logits.extent(0)), V = int64_t(logits.extent(1));
  if (int64_t(gold.extent(0)) != N)
    fail("CE of source '{}': {} gold ids for {} logit rows", source, gold.extent(0), N);
  if (doc_offsets.extent(0) < 1)
    fail("CE of source '{}': segment offsets must have at least one entry (0)", source);
  const int64_t D = int64_t(doc_offsets.extent(0)) - 1;
  {
    auto off = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), doc_offsets);
    if (off(0) != 0 || off(D) != N)
      fail("CE of source '{}': segment offsets must run from 0 to N = {} (got {} .. {})", source,
           N, off(0), off(D));
    for (int64_t d = 0; d < D; ++d)
      if (off(d + 1) < off(d))
        fail("CE of source '{}': segment offsets decrease at segment {} ({} > {})", source, d,
             off(d), off(d + 1));
  }
  // Gold ids in range (cheap, before touching the logits).
  int64_t bad_gold = kNoError;
  Kokkos::parallel_reduce(
      "fusellm::sequence_ce::check_gold", Kokkos::RangePolicy<ExecSpace>(exec, 0, N),
      KOKKOS_LAMBDA(const int64_t i, int64_t& lmin) {
        if (gold(i) >= V && i < lmin) lmin = i;
      },
      Kokkos::Min<int64_t>(bad_gold));
  if (bad_gold != kNoError) {
    int32_t g;
    Kokkos::deep_copy(g, Kokkos::subview(gold, bad_gold));
    fail("CE of source '{}': gold id {} at position {} is outside the vocabulary [0, {})", source,
         g, bad_gold, V);
  }

  SequenceCE<MemSpace> out{Kokkos::View<float*, MemSpace>(source + ".ce_position", N),
                           Kokkos::View<double*, MemSpace>(source + ".ce_sum", D),
                           Kokkos::View<int64_t*, MemSpace>(source + ".ce_count", D)};
  if (N > 0) {
    int64_t first_bad = kNoError;
    SequenceCEFunctor<ExecSpace> f{logits, gold, out.ce_position};
    Kokkos::parallel_reduce("fusellm::sequence_ce",
                            Kokkos::TeamPolicy<ExecSpace>(exec, N, row_team_size<ExecSpace>(team_size)),
                            f, Kokkos::Min<int64_t>(first_bad));
    if (first_bad != kNoError) {
      const auto e = decode_error(first_bad);
      if (e.kind == kNonFiniteLogit)
        fail("CE of source '{}': non-finite logit at position {} ({})", source, e.row,
             describe_nonfinite_row(logits, e.row));
      fail("CE of source '{}': cross-entropy at position {} is not finite (the gold token's logit "
           "is -Inf)",
           source, e.row);
    }
  }
  if (D > 0)
    Kokkos::parallel_for(
        "fusellm::sequence_ce::segments", Kokkos::RangePolicy<ExecSpace>(exec, 0, D),
        SegmentSumFunctor<ExecSpace>{out.ce_position, gold, doc_offsets, out.ce_sum, out.count});
  exec.fence();
  return out;
}

}  // namespace fusellm::kernels
