#pragma once
// Top-k with temperature softmax: logits [T, V] fp32 -> SparseRows [T, k].
//
// What the original FuseLLM computes (forward_for_logits.py keeps torch.topk(logits, k); the
// collator, data_collator.py DataCollatorForDistill, then takes softmax(topk_logits / temperature)):
//
//     P[i, r] = exp((z_i,(r) - z_i,(1)) / tau) / sum_{r'<k} exp((z_i,(r') - z_i,(1)) / tau)
//
// for the k largest logits z_i,(1) >= ... >= z_i,(k) of row i: the distribution renormalized over
// the k kept entries (DESIGN.md section 1). With keep_tail (beyond the paper; sparse top-k is a
// biased estimate, Anshumann et al. 2025) the kept probabilities are those of the full-vocabulary
// softmax instead, and the row's tail holds the mass of everything else:
//
//     P[i, r] = exp((z_i,(r) - max_v z_iv) / tau) / sum_v exp((z_iv - max_v z_iv) / tau)
//     tail[i] = 1 - sum_r P[i, r]            (clamped at 0)
//
// Order and ties: entries sorted by logit descending, equal logits by ascending id, so the output
// is a pure function of the input on every backend (selection compares exact (value, id) keys, the
// k-entry softmax is done by one thread in a fixed order; with keep_tail the full-row sum is a
// team reduction, whose rounding may differ between team sizes, i.e. between CPU and GPU).
//
// Cost: one team per row. On the host a thread scans its contiguous part of the row in kLanes (32)
// lanes against the current k-th best value (one vector compare per 32 logits; a logit enters the
// small sorted array in registers only when it beats the k-th, which after the first few hundred
// logits is rare), so the scan runs near memory speed. On a GPU each thread scans a strided
// (coalesced) part, and the team merges its threads' sorted lists in k rounds of a
// Kokkos::Max<uint64_t> team reduction over (value, id) keys. k <= kHeap uses the register array;
// larger k (k = V in tests, say) falls back to k rounds of "largest key below the previous one",
// O(k V) but exact and still allocation-free.
//
// Errors (thrown as fusellm::Error naming the source and the row): k < 1, k > V, a temperature
// that is not a positive finite number, and any NaN or +-Inf logit in a row.
#include <Kokkos_Core.hpp>

#include <cstdint>
#include <string>

#include "fusellm/core/error.hpp"
#include "kokkos/fusion_row_math.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::kernels {

struct TopkParams {
  int k = 10;
  float temperature = 1.f;
  bool keep_tail = false;  // tail = mass outside the k ids under the full softmax
  int team_size = 0;       // 0: 1 on the host, 128 on a GPU
};

template <class ExecSpace>
struct TopkSoftmaxFunctor {
  using MemSpace = typename ExecSpace::memory_space;
  using member_type = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  static constexpr bool kHost = kOnHost<ExecSpace>;
  static constexpr int kHeap = 32;

  Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace> logits;
  Kokkos::View<int32_t**, Kokkos::LayoutRight, MemSpace> ids;
  Kokkos::View<float**, Kokkos::LayoutRight, MemSpace> probs;
  Kokkos::View<float*, MemSpace> tail;
  int k;
  float beta;  // 1 / temperature
  bool keep_tail;

  // Inserts (x, id) into the sorted array (hv, hi) of n <= k entries; the caller has checked that
  // it belongs there (n < k, or x beats the k-th). Within one thread ids arrive ascending, so an
  // equal value never moves ahead of an earlier one: the order is (value desc, id asc).
  KOKKOS_INLINE_FUNCTION static void push(float* hv, int32_t* hi, int& n, int kk, float x,
                                          int32_t id) {
    int j = n < kk ? n++ : kk - 1;
    while (j > 0 && x > hv[j - 1]) {
      hv[j] = hv[j - 1];
      hi[j] = hi[j - 1];
      --j;
    }
    hv[j] = x;
    hi[j] = id;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const member_type& team, int64_t& first_bad) const {
    const int64_t row = team.league_rank();
    const int64_t V = int64_t(logits.extent(1));
    const float* z = &logits(row, 0);
    bool bad = false;
    float m;  // row max (= value of the first entry)
    if (k <= kHeap)
      m = select_heap(team, z, V, row, bad);
    else
      m = select_rounds(team, z, V, row, bad);
    if (bad) first_bad = first_bad < error_code(row, 0, kNonFiniteLogit)
                             ? first_bad
                             : error_code(row, 0, kNonFiniteLogit);

    // ids(row, .) and probs(row, .) now hold the k ids and their logits (written by rank 0).
    float denom = 0.f;
    if (keep_tail) {
      float s = 0.f;
      if constexpr (kHost) {
        int64_t b, e;
        host_thread_range(V, team.team_rank(), team.team_size(), b, e);
        float mm = m;
        host_range_max_sumexp(z + b, e - b, beta, mm, s);
        // mm == m unless the row had NaN/Inf (then the result is discarded anyway).
        s *= fast_exp(beta * (m - mm));
        if (team.team_size() > 1) team.team_reduce(Kokkos::Sum<float>(s));
      } else {
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, V),
            [&](const int64_t v, float& ls) { ls += fast_exp(beta * (z[v] - m)); }, s);
      }
      denom = s;
    }
    Kokkos::single(Kokkos::PerTeam(team), [&]() {
      float d = denom;
      if (!keep_tail)
        for (int r = 0; r < k; ++r) d += fast_exp(beta * (probs(row, r) - m));
      const float inv = 1.f / d;
      float kept = 0.f;
      for (int r = 0; r < k; ++r) {
        const float p = fast_exp(beta * (probs(row, r) - m)) * inv;
        probs(row, r) = p;
        kept += p;
      }
      if (keep_tail) tail(row) = kept < 1.f ? 1.f - kept : 0.f;
    });
  }

  // k <= kHeap: each thread keeps its best k in registers, then the team merges. Returns the row
  // max; rank 0 writes the k (id, logit) pairs into ids/probs.
  KOKKOS_INLINE_FUNCTION float select_heap(const member_type& team, const float* z, int64_t V,
                                           int64_t row, bool& bad) const {
    float hv[kHeap];
    int32_t hi[kHeap];
    int n = 0;
    if constexpr (kHost) {
      int64_t b, e;
      host_thread_range(V, team.team_rank(), team.team_size(), b, e);
      int64_t i = b;
      for (; i < e && n < k; ++i) {
        const float x = z[i];
        bad |= !is_finite(x);
        push(hv, hi, n, k, x, int32_t(i));
      }
      float thr = n == k ? hv[k - 1] : -FLT_MAX;
      for (; i + kLanes <= e; i += kLanes) {
        int hit = 0;
        for (int l = 0; l < kLanes; ++l) {
          const float x = z[i + l];
          hit |= int(x > thr) | int((x - x) != 0.f);
        }
        if (hit) {
          for (int l = 0; l < kLanes; ++l) {
            const float x = z[i + l];
            if (!is_finite(x))
              bad = true;
            else if (x > hv[k - 1])
              push(hv, hi, n, k, x, int32_t(i + l));
          }
          thr = hv[k - 1];
        }
      }
      for (; i < e; ++i) {
        const float x = z[i];
        if (!is_finite(x))
          bad = true;
        else if (x > hv[k - 1])
          push(hv, hi, n, k, x, int32_t(i));
      }
    } else {
      for (int64_t i = team.team_rank(); i < V; i += team.team_size()) {
        const float x = z[i];
        if (!is_finite(x))
          bad = true;
        else if (n < k || x > hv[k - 1])
          push(hv, hi, n, k, x, int32_t(i));
      }
    }

    if (team.team_size() == 1) {
      for (int r = 0; r < k; ++r) {
        ids(row, r) = hi[r];
        probs(row, r) = hv[r];
      }
      return hv[0];
    }
    // Merge the team's sorted lists: k rounds, each taking the largest head key.
    int ptr = 0;
    float m = 0.f;
    for (int r = 0; r < k; ++r) {
      uint64_t head = ptr < n ? order_key(hv[ptr], hi[ptr]) : 0;
      const uint64_t mine = head;
      team.team_reduce(Kokkos::Max<uint64_t>(head));
      if (mine == head && head != 0) ++ptr;
      if (r == 0) m = order_key_value(head);
      if (team.team_rank() == 0) {
        ids(row, r) = order_key_id(head);
        probs(row, r) = order_key_value(head);
      }
    }
    return m;
  }

  // k > kHeap: k rounds, each selecting the largest key below the previous round's.
  KOKKOS_INLINE_FUNCTION float select_rounds(const member_type& team, const float* z, int64_t V,
                                             int64_t row, bool& bad) const {
    uint64_t prev = ~uint64_t(0);
    float m = 0.f;
    int64_t b = 0, e = V, stride = 1;
    if constexpr (kHost) {
      host_thread_range(V, team.team_rank(), team.team_size(), b, e);
    } else {
      b = team.team_rank();
      stride = team.team_size();
    }
    for (int64_t i = b; i < e; i += stride) bad |= !is_finite(z[i]);
    for (int r = 0; r < k; ++r) {
      uint64_t best = 0;
      for (int64_t i = b; i < e; i += stride) {
        const uint64_t key = order_key(z[i], int32_t(i));
        if (key < prev && key > best) best = key;
      }
      if (team.team_size() > 1) team.team_reduce(Kokkos::Max<uint64_t>(best));
      prev = best;
      if (r == 0) m = order_key_value(best);
      if (team.team_rank() == 0) {
        ids(row, r) = order_key_id(best);
        probs(row, r) = order_key_value(best);
      }
    }
    return m;
  }
};

// Runs the top-k softmax of `logits` [T, V] into `out` (allocated here as [T, k], with a tail
// when params.keep_tail). `source` names the source model in error messages.
template <class ExecSpace, class MemSpace = typename ExecSpace::memory_space>
void topk_softmax(const ExecSpace& exec,
                  const Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace>& logits,
                  const TopkParams& params, SparseRows<MemSpace>& out, const std::string& source) {
  static_assert(std::is_same_v<MemSpace, typename ExecSpace::memory_space> ||
                    Kokkos::SpaceAccessibility<ExecSpace, MemSpace>::accessible,
                "logits must be accessible from the execution space");
  const int64_t T = int64_t(logits.extent(0)), V = int64_t(logits.extent(1));
  if (params.k < 1) fail("top-k of source '{}': k = {} must be at least 1", source, params.k);
  if (params.k > V)
    fail("top-k of source '{}': k = {} exceeds the vocabulary size V = {}", source, params.k, V);
  if (V > INT32_MAX) fail("top-k of source '{}': vocabulary size {} exceeds int32 ids", source, V);
  if (!(params.temperature > 0.f) || !is_finite(params.temperature) ||
      !is_finite(1.f / params.temperature))
    fail("top-k of source '{}': temperature {} must be a positive finite number", source,
         params.temperature);
  out = SparseRows<MemSpace>(source + ".topk", T, params.k, params.keep_tail);
  if (T == 0) return;

  TopkSoftmaxFunctor<ExecSpace> f{logits,   out.ids,
                                  out.probs, out.tail,
                                  params.k, 1.f / params.temperature,
                                  params.keep_tail};
  const int ts = row_team_size<ExecSpace>(params.team_size);
  int64_t first_bad = kNoError;
  Kokkos::parallel_reduce("fusellm::topk_softmax", Kokkos::TeamPolicy<ExecSpace>(exec, T, ts), f,
                          Kokkos::Min<int64_t>(first_bad));
  if (first_bad != kNoError) {
    const auto e = decode_error(first_bad);
    fail("top-k of source '{}': non-finite logit at position {} ({})", source, e.row,
         describe_nonfinite_row(logits, e.row));
  }
}

}  // namespace fusellm::kernels
