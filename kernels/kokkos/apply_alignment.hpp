#pragma once
// Applying an alignment to a source's top-k rows: aligned sparse rows over the target vocabulary,
// one per target position (the original FuseLLM `transform_step_logits`, second half, and the
// softmax over the kept entries in `DataCollatorForDistill`).
//
// For target position t with status st and aligned source position s (token_alignment.hpp,
// byte_span_alignment.hpp):
//  - kept (st < kFallbackMany): walk the source row s in order (probability descending); map each
//    id through `id_map` (EM: exact string matches only; MinED and byte spans: the full mapping);
//    drop unmapped ids (and padding ids past the map); a target id met twice keeps the higher
//    probability (the original keeps the first = highest logit). Then renormalize: p / sum(kept)
//    (the softmax of the kept logits is exactly that). With a tail bucket (SparseRows::tail) rows
//    are not renormalized: the dropped mass goes to the tail. Sorted by probability descending,
//    ties by ascending id (the SparseRows invariant). Nothing kept -> kFallbackEmpty.
//  - fallback: a one-hot. fusellm: of the NEXT gold target token t+1 (the distribution at t
//    predicts t+1; the original's issue #27), an empty row at the last position of a document.
//    `onehot_current` = the original's behaviour: the one-hot of the current token t.
//  - an empty kept row (kFallbackEmpty) falls back like any other; with `use_target` (the
//    original's empty-row "bad case", OriginalRules::empty_row) it takes the target model's own
//    row t from `target` instead.
// One team per document, its threads over the document's positions; k <= kApplyMaxK.
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "kokkos/align_common.hpp"
#include "kokkos/sparse_rows.hpp"

namespace fusellm::align {

inline constexpr int kApplyMaxK = 64;

template <class ExecSpace>
struct ApplyAlignment {
  using Mem = typename ExecSpace::memory_space;
  using Team = typename Kokkos::TeamPolicy<ExecSpace>::member_type;

  Kokkos::View<const int32_t*, Mem> tgt_ids;   // concatenated target ids
  Kokkos::View<const int64_t*, Mem> tgt_doc;   // [D + 1]
  Kokkos::View<const int32_t*, Mem> src_pos;   // per target position: aligned source row (global), or -1
  Kokkos::View<const uint8_t*, Mem> status_in;
  Kokkos::View<const int32_t*, Mem> id_map;    // source id -> target id, -1 unmapped
  SparseRows<Mem> src;                          // [source positions, k_in]
  SparseRows<Mem> out;                          // [target positions, k_out]
  Kokkos::View<uint8_t*, Mem> status_out;
  bool onehot_current = false;
  SparseRows<Mem> target;                       // [target positions, k_t]: the target's own rows (use_target)
  bool use_target = false;

  KOKKOS_INLINE_FUNCTION void row(const int64_t t, const int64_t doc_end) const {
    const int64_t kin = src.k(), kout = out.k();
    const bool with_tail = out.tail.extent(0) > 0 && src.tail.extent(0) > 0;
    uint8_t st = status_in(t);
    int n = 0;
    int32_t ids[kApplyMaxK];
    float probs[kApplyMaxK];
    double tail = 0.0;
    if (align_kept(st)) {
      const int64_t s = src_pos(t);
      double total = 0.0;
      const int64_t nmap = int64_t(id_map.extent(0));
      for (int64_t c = 0; c < kin; ++c) {
        const int32_t sid = src.ids(s, c);
        if (sid < 0) continue;
        const float p = src.probs(s, c);
        total += p;
        const int32_t mid = sid < nmap ? id_map(sid) : -1;
        if (mid < 0) continue;
        int dup = -1;
        for (int i = 0; i < n; ++i)
          if (ids[i] == mid) { dup = i; break; }
        if (dup >= 0) {
          if (p > probs[dup]) probs[dup] = p;
        } else if (n < kout) {
          ids[n] = mid;
          probs[n] = p;
          ++n;
        }
      }
      if (n == 0) {
        st = kFallbackEmpty;
      } else {
        double sum = 0.0;
        for (int i = 0; i < n; ++i) sum += probs[i];
        if (with_tail) {
          tail = double(src.tail(s)) + (total - sum);
        } else {
          for (int i = 0; i < n; ++i) probs[i] = float(double(probs[i]) / sum);
        }
        // Insertion sort: probability descending, ties by ascending id.
        for (int i = 1; i < n; ++i) {
          const int32_t id = ids[i];
          const float p = probs[i];
          int j = i - 1;
          while (j >= 0 && (probs[j] < p || (probs[j] == p && ids[j] > id))) {
            ids[j + 1] = ids[j];
            probs[j + 1] = probs[j];
            --j;
          }
          ids[j + 1] = id;
          probs[j + 1] = p;
        }
      }
    }
    if (st == kFallbackEmpty && use_target) {
      n = 0;
      tail = with_tail && target.tail.extent(0) > 0 ? double(target.tail(t)) : 0.0;
      for (int64_t c = 0; c < target.k() && n < kout; ++c) {
        if (target.ids(t, c) < 0) continue;
        ids[n] = target.ids(t, c);
        probs[n] = target.probs(t, c);
        ++n;
      }
    } else if (!align_kept(st)) {
      n = 0;
      tail = 0.0;
      if (onehot_current) {
        ids[0] = tgt_ids(t); probs[0] = 1.0f; n = 1;
      } else if (t + 1 < doc_end) {
        ids[0] = tgt_ids(t + 1); probs[0] = 1.0f; n = 1;
      }
    }
    for (int64_t c = 0; c < kout; ++c) {
      out.ids(t, c) = c < n ? ids[c] : -1;
      out.probs(t, c) = c < n ? probs[c] : 0.0f;
    }
    if (out.tail.extent(0) > 0) out.tail(t) = float(tail);
    status_out(t) = st;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const Team& team) const {
    const int64_t d = team.league_rank();
    const int64_t t0 = tgt_doc(d), t1 = tgt_doc(d + 1);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, t0, t1), [&](const int64_t t) { row(t, t1); });
  }
};

template <class ExecSpace>
void apply_alignment(const ApplyAlignment<ExecSpace>& f, int64_t n_docs) {
  Kokkos::parallel_for("fusellm::align::apply_alignment",
                       Kokkos::TeamPolicy<ExecSpace>(n_docs, Kokkos::AUTO), f);
}

}  // namespace fusellm::align
