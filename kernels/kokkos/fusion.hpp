#pragma once
// Fusion of K sources' aligned distributions into one target distribution per position
// (FuseLLM paper eq. 3 and sec. 3.3; the original's DistillTrainer.compute_loss in trainer.py,
// branches distill_greater_as_gt (MinCE) and distill_weighted_as_gt (AvgCE)).
//
// Input: for each source j = 0..K-1 its rows P_j aligned to the target tokens, SparseRows [T, k_j]
// over the target vocabulary (a position where alignment fell back to one-hot is a row with one id
// and probability 1), and its score per sequence, CE_j[b] (sequence_ce.hpp; lower is better).
// The T rows are cut into B sequences by seq_offsets [B + 1]. Reward r_j = exp(-CE_j).
//
//  MinCE (paper):  for each sequence b, j* = argmax_j r_j[b] (the first source on ties, as
//                  torch.argmax); P[i, :] = P_j*[i, :] for every row i of b. Output width max_j k_j.
//  AvgCE (paper):  w_j[b] = softmax_j(r_j[b]) = exp(r_j - max r) / sum_j' exp(r_j' - max r)
//                  (a softmax of the rewards, as the original does); P[i, v] = sum_j w_j P_j[i, v].
//                  The output row holds the union of the sources' ids (up to sum_j k_j), each id
//                  once, sorted by probability descending, ties by ascending id (the SparseRows
//                  order); unused slots are id -1, probability 0. Tails (if any source has one)
//                  combine with the same weights.
//  MinCE per position (beyond the paper; the original's metric_level != "sequence" in its
//                  token-alignment script): the scores are per position, CE_j[i] [K, T] (the
//                  per-position CE of sequence_ce carried through the alignment), and each row
//                  takes the row of the source with the lowest CE at that position (first on ties).
//                  Use +Inf for positions with no score; a position where all are +Inf takes the
//                  first source.
//
// Differences from the original, on purpose: rewards are compared in fp32/fp64, not bf16 (the
// original rounds exp(-CE) to bf16, which ties sources whose CE differ by < 0.4%); MinCE compares
// the CEs directly, which orders exactly as the rewards exp(-CE) except where exp underflows.
//
// Errors (fusellm::Error naming the source and the position): more than kMaxSources sources, a
// source whose row count differs, ids < -1 or >= V, probabilities NaN/Inf/negative, scores NaN
// or -Inf, sequence offsets that do not cover [0, T] monotonically.
#include <Kokkos_Core.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "fusellm/core/error.hpp"
#include "kokkos/fusion_row_math.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::kernels {

inline constexpr int kMaxSources = 8;

enum class FusionMode { kMinCE, kAvgCE, kMinCEPerPosition };

inline const char* fusion_mode_name(FusionMode m) {
  switch (m) {
    case FusionMode::kMinCE: return "MinCE";
    case FusionMode::kAvgCE: return "AvgCE";
    case FusionMode::kMinCEPerPosition: return "MinCE per position";
  }
  return "?";
}

// The K sources' rows, by value (Views are cheap handles), so the functor carries them to the
// device without a host container.
template <class MemSpace>
struct SourceSet {
  SparseRows<MemSpace> src[kMaxSources];
  int n = 0;
  bool any_tail = false;
};

// Per sequence: the MinCE choice and the AvgCE weights.
template <class ExecSpace>
struct SequenceWeightsFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> scores;  // [K, B]
  Kokkos::View<int32_t*, MemSpace> choice;                           // [B]
  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace> weights;       // [B, K]
  int K;
  KOKKOS_INLINE_FUNCTION void operator()(const int64_t b, int64_t& first_bad) const {
    int best = 0;
    double rmax = -1.0;
    for (int j = 0; j < K; ++j) {
      const float ce = scores(j, b);
      if (ce != ce || (!is_finite(ce) && ce < 0.f)) {
        const int64_t code = error_code(b, j, kBadScore);
        if (code < first_bad) first_bad = code;
      }
      if (scores(j, b) < scores(best, b)) best = j;
      const double r = ::exp(-double(ce));
      if (r > rmax) rmax = r;
    }
    choice(b) = best;
    double sum = 0.0;
    for (int j = 0; j < K; ++j) sum += ::exp(::exp(-double(scores(j, b))) - rmax);
    for (int j = 0; j < K; ++j)
      weights(b, j) = float(::exp(::exp(-double(scores(j, b))) - rmax) / sum);
  }
};

template <class ExecSpace>
struct FuseRowsFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  SourceSet<MemSpace> S;
  FusionMode mode;
  int64_t V;
  Kokkos::View<const int64_t*, MemSpace> seq_offsets;                 // [B + 1]
  Kokkos::View<const int32_t*, MemSpace> seq_choice;                  // [B] (MinCE)
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> weights; // [B, K] (AvgCE)
  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> pos_ce;  // [K, T] (per position)
  Kokkos::View<int32_t*, MemSpace> pos_choice;                        // [T] (per position) out
  SparseRows<MemSpace> out;

  KOKKOS_INLINE_FUNCTION int64_t sequence_of(int64_t i) const {
    int64_t lo = 0, hi = int64_t(seq_offsets.extent(0)) - 2;
    while (lo < hi) {
      const int64_t mid = (lo + hi + 1) / 2;
      if (seq_offsets(mid) <= i)
        lo = mid;
      else
        hi = mid - 1;
    }
    return lo;
  }

  // long: one target position: validate every source's row, then merge the chosen (MinCE) or
  // weighted (AvgCE) rows into the output row; the two share the position's row pointers.
  KOKKOS_INLINE_FUNCTION void operator()(const int64_t i, int64_t& first_bad) const {
    // Validate every source's row (all of them, not only the chosen one: bad input is a bug
    // upstream whichever source it comes from).
    for (int j = 0; j < S.n; ++j) {
      const auto& r = S.src[j];
      for (int64_t s = 0; s < r.k(); ++s) {
        const int32_t id = r.ids(i, s);
        const float p = r.probs(i, s);
        int64_t kind = 0;
        if (id < -1 || id >= V)
          kind = kIdOutOfRange;
        else if (id >= 0 && (!is_finite(p) || p < 0.f))
          kind = kBadProb;
        if (kind) {
          const int64_t code = error_code(i, j, kind);
          if (code < first_bad) first_bad = code;
        }
      }
    }
    const int64_t kout = out.k();
    if (mode == FusionMode::kAvgCE) {
      const int64_t b = sequence_of(i);
      int64_t n = 0;
      float tl = 0.f;
      for (int j = 0; j < S.n; ++j) {
        const auto& r = S.src[j];
        const float w = weights(b, j);
        for (int64_t s = 0; s < r.k(); ++s) {
          const int32_t id = r.ids(i, s);
          if (id < 0 || id >= V) continue;
          const float p = w * r.probs(i, s);
          int64_t t = 0;
          while (t < n && out.ids(i, t) != id) ++t;
          if (t < n) {
            out.probs(i, t) += p;
          } else {
            out.ids(i, n) = id;
            out.probs(i, n) = p;
            ++n;
          }
        }
        if (r.tail.extent(0) > 0) tl += w * r.tail(i);
      }
      // Insertion sort: probability descending, ties by ascending id.
      for (int64_t a = 1; a < n; ++a) {
        const int32_t id = out.ids(i, a);
        const float p = out.probs(i, a);
        int64_t c = a;
        while (c > 0 && (out.probs(i, c - 1) < p ||
                         (out.probs(i, c - 1) == p && out.ids(i, c - 1) > id))) {
          out.ids(i, c) = out.ids(i, c - 1);
          out.probs(i, c) = out.probs(i, c - 1);
          --c;
        }
        out.ids(i, c) = id;
        out.probs(i, c) = p;
      }
      for (int64_t t = n; t < kout; ++t) {
        out.ids(i, t) = -1;
        out.probs(i, t) = 0.f;
      }
      if (out.tail.extent(0) > 0) out.tail(i) = tl;
      return;
    }
    int j = 0;
    if (mode == FusionMode::kMinCE) {
      j = seq_choice(sequence_of(i));
    } else {
      for (int c = 1; c < S.n; ++c)
        if (pos_ce(c, i) < pos_ce(j, i)) j = c;
      for (int c = 0; c < S.n; ++c)
        if (pos_ce(c, i) != pos_ce(c, i) ||
            (!is_finite(pos_ce(c, i)) && pos_ce(c, i) < 0.f)) {
          const int64_t code = error_code(i, c, kBadScore);
          if (code < first_bad) first_bad = code;
        }
      pos_choice(i) = j;
    }
    const auto& r = S.src[j];
    const int64_t kj = r.k();
    for (int64_t t = 0; t < kout; ++t) {
      out.ids(i, t) = t < kj ? r.ids(i, t) : -1;
      out.probs(i, t) = t < kj ? r.probs(i, t) : 0.f;
    }
    if (out.tail.extent(0) > 0) out.tail(i) = r.tail.extent(0) > 0 ? r.tail(i) : 0.f;
  }
};

template <class MemSpace>
struct FusionResult {
  SparseRows<MemSpace> rows;                                  // [T, k_out]
  Kokkos::View<int32_t*, MemSpace> choice;                    // MinCE: [B]; per position: [T]
  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace> weights;  // AvgCE: [B, K]
};

// Fuses `sources` (each [T, k_j] over the target vocabulary of size V). `scores` is [K, B] of
// per-sequence CE for MinCE/AvgCE (B = seq_offsets.extent(0) - 1), or [K, T] of per-position CE
// for kMinCEPerPosition (seq_offsets then unused, may be empty). `names[j]` names source j in
// error messages.
// long: the host side: every shape and score check named in the error, then the score
// reduction and the merge launch.
template <class ExecSpace, class MemSpace = typename ExecSpace::memory_space>
FusionResult<MemSpace> fuse(const ExecSpace& exec, FusionMode mode,
                            const std::vector<SparseRows<MemSpace>>& sources,
                            const std::vector<std::string>& names,
                            const Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace>& scores,
                            const Kokkos::View<const int64_t*, MemSpace>& seq_offsets, int64_t V) {
  const char* what = fusion_mode_name(mode);
  const int K = int(sources.size());
  auto name = [&](int j) { return j < int(names.size()) ? names[j] : fmt::format("#{}", j); };
  if (K < 1) fail("{} fusion: no sources", what);
  if (K > kMaxSources) fail("{} fusion: {} sources, at most {} supported", what, K, kMaxSources);
  const int64_t T = sources[0].rows();
  SourceSet<MemSpace> S;
  S.n = K;
  int64_t k_max = 0, k_sum = 0;
  for (int j = 0; j < K; ++j) {
    if (sources[j].rows() != T)
      fail("{} fusion: source '{}' has {} rows, source '{}' has {}", what, name(j),
           sources[j].rows(), name(0), T);
    if (sources[j].tail.extent(0) != 0 && int64_t(sources[j].tail.extent(0)) != T)
      fail("{} fusion: source '{}' has a tail of {} rows for {} rows", what, name(j),
           sources[j].tail.extent(0), T);
    S.src[j] = sources[j];
    S.any_tail |= sources[j].tail.extent(0) != 0;
    k_max = std::max(k_max, sources[j].k());
    k_sum += sources[j].k();
  }
  if (int64_t(scores.extent(0)) != K)
    fail("{} fusion: scores for {} sources, {} sources given", what, scores.extent(0), K);
  int64_t B = 0;
  if (mode == FusionMode::kMinCEPerPosition) {
    if (int64_t(scores.extent(1)) != T)
      fail("{} fusion: per-position scores cover {} positions, the sources {}", what,
           scores.extent(1), T);
  } else {
    if (seq_offsets.extent(0) < 1) fail("{} fusion: sequence offsets must start with 0", what);
    B = int64_t(seq_offsets.extent(0)) - 1;
    auto off = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), seq_offsets);
    if (off(0) != 0 || off(B) != T)
      fail("{} fusion: sequence offsets must run from 0 to T = {} (got {} .. {})", what, T, off(0),
           off(B));
    for (int64_t b = 0; b < B; ++b)
      if (off(b + 1) < off(b))
        fail("{} fusion: sequence offsets decrease at sequence {}", what, b);
    if (int64_t(scores.extent(1)) != B)
      fail("{} fusion: scores for {} sequences, the offsets define {}", what, scores.extent(1), B);
  }

  FusionResult<MemSpace> res;
  const int64_t kout = mode == FusionMode::kAvgCE ? k_sum : k_max;
  res.rows = SparseRows<MemSpace>(std::string("fused.") + what, T, kout, S.any_tail);
  auto fail_score = [&](int64_t code, const char* unit) {
    const auto e = decode_error(code);
    float v;
    Kokkos::deep_copy(v, Kokkos::subview(scores, e.slot, e.row));
    fail("{} fusion: source '{}' has score {} at {} {} (NaN and -Inf are not scores)", what,
         name(int(e.slot)), v, unit, e.row);
  };
  if (mode != FusionMode::kMinCEPerPosition) {
    res.choice = Kokkos::View<int32_t*, MemSpace>("fused.choice", B);
    res.weights = Kokkos::View<float**, Kokkos::LayoutRight, MemSpace>("fused.weights", B, K);
    if (B > 0) {
      int64_t bad = kNoError;
      Kokkos::parallel_reduce("fusellm::fusion::weights", Kokkos::RangePolicy<ExecSpace>(exec, 0, B),
                              SequenceWeightsFunctor<ExecSpace>{scores, res.choice, res.weights, K},
                              Kokkos::Min<int64_t>(bad));
      if (bad != kNoError) fail_score(bad, "sequence");
    }
  } else {
    res.choice = Kokkos::View<int32_t*, MemSpace>("fused.choice", T);
  }
  if (T == 0) return res;
  FuseRowsFunctor<ExecSpace> f{S,          mode,        V,          seq_offsets, res.choice,
                               res.weights, scores,     res.choice, res.rows};
  int64_t bad = kNoError;
  Kokkos::parallel_reduce("fusellm::fusion::rows", Kokkos::RangePolicy<ExecSpace>(exec, 0, T), f,
                          Kokkos::Min<int64_t>(bad));
  if (bad != kNoError) {
    const auto e = decode_error(bad);
    if (e.kind == kBadScore) fail_score(bad, "position");
    const auto& r = sources[e.slot];
    auto ids = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                   Kokkos::subview(r.ids, e.row, Kokkos::ALL()));
    auto pr = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(),
                                                  Kokkos::subview(r.probs, e.row, Kokkos::ALL()));
    for (int64_t s = 0; s < int64_t(ids.extent(0)); ++s) {
      if (e.kind == kIdOutOfRange && (ids(s) < -1 || ids(s) >= V))
        fail("{} fusion: source '{}' has id {} at position {} (slot {}), outside the target "
             "vocabulary [0, {})",
             what, name(int(e.slot)), ids(s), e.row, s, V);
      if (e.kind == kBadProb && ids(s) >= 0 && (!is_finite(pr(s)) || pr(s) < 0.f))
        fail("{} fusion: source '{}' has probability {} at position {} (slot {})", what,
             name(int(e.slot)), pr(s), e.row, s);
    }
    fail("{} fusion: source '{}' has a bad row at position {}", what, name(int(e.slot)), e.row);
  }
  return res;
}

}  // namespace fusellm::kernels
