#pragma once
// Vocabulary mapping by minimum edit distance (MinED; the original FuseLLM `vocab_mapping.py`,
// "default" type): for a source token whose normalized string is not in the target vocabulary,
// the target token of minimum byte Levenshtein distance, ties to the lowest target id.
// The exact-match half is a hash lookup on the host (src/fusellm/align/vocab_mapping.cpp); this
// kernel runs only for the source tokens left over.
//
// Brute force, as the original, but pruned without changing the result: |len(a) - len(b)| is a
// lower bound of the distance, so candidates are visited by length group in order of that bound
// (delta = 0, 1, 2, ...: groups len(x) - delta and len(x) + delta) and the search stops once delta
// exceeds the best distance found. Within the groups the minimum of (distance, target id), packed
// into one int64 (distance << 32 | id), is a plain Min reduction, so the tie rule holds on every
// backend whatever the order of the reduction.
//
// One team per source token; its threads reduce over the candidates of a length group. The
// source string's Myers pattern table (256 x 64 bits) lives in team scratch; patterns longer than
// 64 bytes use the DP (align_common.hpp).
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "kokkos/align_common.hpp"

namespace fusellm::align {

template <class ExecSpace>
struct VocabMappingMinED {
  using Mem = typename ExecSpace::memory_space;
  using Team = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using Peq = Kokkos::View<uint64_t*, typename ExecSpace::scratch_memory_space,
                           Kokkos::MemoryTraits<Kokkos::Unmanaged>>;

  AlignStrings<Mem> src, tgt;                      // normalized strings by id
  Kokkos::View<const int32_t*, Mem> queries;       // source ids to map
  Kokkos::View<const int32_t*, Mem> cand_ids;      // candidate target ids sorted by (length, id)
  Kokkos::View<const int64_t*, Mem> len_begin;     // [max_len + 2]: group L = cand_ids[len_begin[L], len_begin[L+1])
  Kokkos::View<int32_t*, Mem> out_id, out_dist;    // per query: target id (-1: no candidates), distance

  KOKKOS_INLINE_FUNCTION void operator()(const Team& team) const {
    const int64_t q = team.league_rank();
    const int32_t sid = queries(q);
    const uint8_t* x = src.data(sid);
    const int lx = src.len(sid);
    const int64_t max_len = int64_t(len_begin.extent(0)) - 2;

    Peq peq(team.team_scratch(0), 256);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, 256), [&](const int c) {
      uint64_t e = 0;
      const int m = lx < 64 ? lx : 64;
      for (int i = 0; i < m; ++i) e |= uint64_t(x[i] == uint8_t(c)) << i;
      peq(c) = e;
    });
    team.team_barrier();
    const AlignTableEq eq{peq.data()};

    int64_t best = INT64_MAX;  // (distance << 32) | id
    for (int64_t delta = 0;; ++delta) {
      if (best != INT64_MAX && delta > (best >> 32)) break;
      if (delta > lx && lx + delta > max_len) break;
      for (int side = 0; side < 2; ++side) {
        if (side == 1 && delta == 0) break;
        const int64_t L = side == 0 ? lx - delta : lx + delta;
        if (L < 0 || L > max_len) continue;
        const int64_t b = len_begin(L), e = len_begin(L + 1);
        if (b == e) continue;
        int64_t group_best = INT64_MAX;
        Kokkos::parallel_reduce(
            Kokkos::TeamThreadRange(team, b, e),
            [&](const int64_t c, int64_t& acc) {
              const int32_t tid = cand_ids(c);
              const uint8_t* y = tgt.data(tid);
              const int ly = int(L);
              int dist;
              if (lx == 0) dist = ly;
              else if (ly == 0) dist = lx;
              else if (lx <= 64) dist = align_myers(eq, lx, y, ly);
              else dist = align_levenshtein(x, lx, y, ly);
              const int64_t key = (int64_t(dist) << 32) | int64_t(tid);
              if (key < acc) acc = key;
            },
            Kokkos::Min<int64_t>(group_best));
        if (group_best < best) best = group_best;
      }
    }
    Kokkos::single(Kokkos::PerTeam(team), [&]() {
      out_id(q) = best == INT64_MAX ? -1 : int32_t(best & 0xffffffff);
      out_dist(q) = best == INT64_MAX ? -1 : int32_t(best >> 32);
    });
  }
};

template <class ExecSpace>
void vocab_mapping_mined(const VocabMappingMinED<ExecSpace>& f, int64_t n_queries) {
  // Queries differ in cost (the length groups they scan): dynamic scheduling.
  using Policy = Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>>;
  Policy policy(n_queries, Kokkos::AUTO);
  policy = policy.set_scratch_size(0, Kokkos::PerTeam(VocabMappingMinED<ExecSpace>::Peq::shmem_size(256)));
  Kokkos::parallel_for("fusellm::align::vocab_mapping_mined", policy, f);
}

}  // namespace fusellm::align
