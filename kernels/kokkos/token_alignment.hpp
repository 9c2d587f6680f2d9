#pragma once
// Batched token alignment by dynamic time warping (paper sec. 3.3 and appendix A; the original
// FuseLLM `dtw` in src/utils/others.py and the decision half of its `transform_step_logits`).
// One team per document. For each target position it produces the range of source positions the
// warping path puts on it and a status (align_common.hpp) saying whether the source's
// distribution there is kept (EM / MinED) or the position falls back to a one-hot.
//
// Per document (tests/reference/align_reference.py states the same in Python):
//  - Leading and trailing runs of special tokens (BOS/EOS) stay out of the DP; they are paired
//    from the content outwards (last leading special with last leading special, first trailing
//    with first trailing) -> kKeptSpecial; an unpaired one (BOS added by one tokenizer only)
//    aligns to nothing -> kFallbackUnaligned.
//  - The content tokens between them go through the original DTW with series_1 = source,
//    series_2 = target: cost(i, j) = byte Levenshtein distance of the two cost strings
//    (normalized token strings with the spaces, i.e. the word-boundary markers, removed);
//        M[i+1][j+1] = cost(i, j) + min(M[i][j+1], M[i+1][j], M[i][j]),  M[0][*] = M[*][0] = inf,
//        M[0][0] = 0;
//    backtrack from the last cell while i > 0 or j > 0, moving to the first minimum of
//    (diag M[i-1][j-1], up M[i-1][j], left M[i][j-1]) in that order, out-of-range options being
//    inf (so row 0 only moves left, column 0 only up), and finally visit (0, 0).
//    The backtrack's three options are exactly the three values the forward recurrence takes the
//    minimum of, so the forward pass records the backtrack move of every cell (one byte per cell,
//    in a preallocated workspace) and the backtrack itself is a walk that never compares costs.
//  - Decision for a target position whose path visits exactly one source position s:
//    equal normalized strings -> kKeptExact (also, at the first content position of both sides,
//    when one is the other with one more leading space: a dummy prefix only one tokenizer
//    inserted, the original's "special case for mpt"); for MinED, map_full[src_id] == tgt_id
//    -> kKeptMapped; else kFallbackMismatch. Several source positions -> kFallbackMany.
//
// Work per document, all exact:
//  1. Cost table: the cost depends only on the pair of token ids, and a document repeats its
//     tokens (" the", ",", ...): the host lists each document's distinct content ids, the team
//     computes the U_src x U_tgt distances once (Myers with the source string's pattern table in
//     team scratch), about 4x fewer than cells on real text.
//  2. Forward pass: with one thread per team (the CPU backends) row by row, two rows at a time
//     (their min-chains overlap), three rows of M in scratch; with more threads (GPUs) by
//     anti-diagonals, whose cells are independent, three diagonals of M in scratch. Same
//     recurrence, same values, same moves.
//  3. Backtrack: one thread per document (path length <= n + m).
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "kokkos/align_common.hpp"

namespace fusellm::align {

enum class DtwMethod : int { kEM = 0, kMinED = 1 };

// Backtrack moves stored per cell.
enum : uint8_t { kDtwDiag = 0, kDtwUp = 1, kDtwLeft = 2, kDtwStop = 3 };

template <class ExecSpace>
struct TokenAlignmentDTW {
  using Mem = typename ExecSpace::memory_space;
  using Team = typename Kokkos::TeamPolicy<ExecSpace>::member_type;
  using ScratchI = Kokkos::View<int32_t*, typename ExecSpace::scratch_memory_space,
                                Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  using ScratchU64 = Kokkos::View<uint64_t*, typename ExecSpace::scratch_memory_space,
                                  Kokkos::MemoryTraits<Kokkos::Unmanaged>>;
  static constexpr int32_t kInf = int32_t(1) << 29;

  // Inputs: documents as concatenated token ids with offsets [D + 1].
  Kokkos::View<const int32_t*, Mem> src_ids, tgt_ids;
  Kokkos::View<const int64_t*, Mem> src_doc, tgt_doc;
  // Distinct content ids per document: position -> index into the document's list (content
  // positions only), and the lists (vocabulary ids) with offsets [D + 1].
  Kokkos::View<const int32_t*, Mem> src_u, tgt_u;
  Kokkos::View<const int32_t*, Mem> src_uid, tgt_uid;
  Kokkos::View<const int64_t*, Mem> src_uid_off, tgt_uid_off;
  // Per vocabulary, by id: normalized strings, cost strings, flags.
  AlignStrings<Mem> src_norm, tgt_norm, src_cost, tgt_cost;
  Kokkos::View<const uint8_t*, Mem> src_flags, tgt_flags;
  Kokkos::View<const int32_t*, Mem> map_full;  // source id -> target id (MinED); may be empty for EM
  int method = 0;
  // Workspace per document d: its cost table at cost_off[d] (U_src x U_tgt) and one move byte per
  // DP cell at dir_off[d] ((n_content + m_content - 1) x n_content bytes: room for both layouts).
  Kokkos::View<int32_t*, Mem> costs;
  Kokkos::View<const int64_t*, Mem> cost_off;
  Kokkos::View<uint8_t*, Mem> dirs;
  Kokkos::View<const int64_t*, Mem> dir_off;
  // Outputs per target position: aligned source range (global positions, -1 if none), status.
  Kokkos::View<int32_t*, Mem> lo, hi;
  Kokkos::View<uint8_t*, Mem> status;

  int scratch_level = 0;
  bool force_wavefront = false;  // take the GPU traversal on any team size (tests)

  KOKKOS_INLINE_FUNCTION bool src_special(int64_t p) const { return src_flags(src_ids(p)) & kTokenSpecial; }
  KOKKOS_INLINE_FUNCTION bool tgt_special(int64_t p) const { return tgt_flags(tgt_ids(p)) & kTokenSpecial; }

  KOKKOS_INLINE_FUNCTION bool strings_equal(int64_t s, int64_t t, bool first_content) const {
    const int32_t a = src_ids(s), b = tgt_ids(t);
    const uint8_t* pa = src_norm.data(a);
    const uint8_t* pb = tgt_norm.data(b);
    int la = src_norm.len(a), lb = tgt_norm.len(b);
    if (align_bytes_equal(pa, la, pb, lb)) return true;
    if (!first_content) return false;
    // One extra leading space on one side: a dummy prefix only one tokenizer inserted.
    return (la > 0 && pa[0] == ' ' && align_bytes_equal(pa + 1, la - 1, pb, lb)) ||
           (lb > 0 && pb[0] == ' ' && align_bytes_equal(pa, la, pb + 1, lb - 1));
  }

  // long: one team aligns one document in three numbered phases (cost table, DP forward pass,
  // backtrack) separated by team barriers over the same document ranges and scratch.
  KOKKOS_INLINE_FUNCTION void operator()(const Team& team) const {
    const int64_t d = team.league_rank();
    const int64_t s0 = src_doc(d), s1 = src_doc(d + 1);
    const int64_t t0 = tgt_doc(d), t1 = tgt_doc(d + 1);
    const int64_t n = s1 - s0, m = t1 - t0;
    // Edge runs of special tokens (every thread computes them; they are short).
    int64_t ls = 0, ts = 0, lt = 0, tt = 0;
    while (ls < n && src_special(s0 + ls)) ++ls;
    while (ts < n - ls && src_special(s1 - 1 - ts)) ++ts;
    while (lt < m && tgt_special(t0 + lt)) ++lt;
    while (tt < m - lt && tgt_special(t1 - 1 - tt)) ++tt;
    const int64_t nc = n - ls - ts, mc = m - lt - tt;  // content lengths
    const int64_t cs0 = s0 + ls, ct0 = t0 + lt;         // first content positions

    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, m), [&](const int64_t j) {
      const int64_t t = t0 + j;
      int32_t s = -1;
      if (j < lt && lt - j <= ls) s = int32_t(s0 + ls - (lt - j));                 // leading pair
      if (j >= m - tt && j - (m - tt) < ts) s = int32_t(s1 - ts + (j - (m - tt)));  // trailing
      lo(t) = s;
      hi(t) = s;
      status(t) = s >= 0 ? uint8_t(kKeptSpecial) : uint8_t(kFallbackUnaligned);
    });
    if (nc == 0 || mc == 0) return;

    // 1. Cost table of the document's distinct (source, target) content ids.
    const int64_t us0 = src_uid_off(d), nus = src_uid_off(d + 1) - us0;
    const int64_t ut0 = tgt_uid_off(d), nut = tgt_uid_off(d + 1) - ut0;
    int32_t* table = costs.data() + cost_off(d);
    ScratchU64 peq(team.team_scratch(scratch_level), 256);
    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, 256), [&](const int c) { peq(c) = 0; });
    team.team_barrier();
    for (int64_t a = 0; a < nus; ++a) {
      const int32_t sid = src_uid(us0 + a);
      const uint8_t* x = src_cost.data(sid);
      const int lx = src_cost.len(sid);
      const bool table_eq = lx > 0 && lx <= 64;
      if (table_eq) {
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          for (int i = 0; i < lx; ++i) peq(x[i]) |= uint64_t(1) << i;
        });
        team.team_barrier();
      }
      Kokkos::parallel_for(Kokkos::TeamThreadRange(team, nut), [&](const int64_t b) {
        const int32_t tid = tgt_uid(ut0 + b);
        const uint8_t* y = tgt_cost.data(tid);
        const int ly = tgt_cost.len(tid);
        int32_t c;
        if (table_eq && ly > 0) c = align_myers(AlignTableEq{peq.data()}, lx, y, ly);
        else c = align_levenshtein(x, lx, y, ly);
        table[a * nut + b] = c;
      });
      team.team_barrier();
      if (table_eq) {
        Kokkos::single(Kokkos::PerTeam(team), [&]() {
          for (int i = 0; i < lx; ++i) peq(x[i]) = 0;
        });
        team.team_barrier();
      }
    }

    // 2. Forward pass. Moves: row-major dir[i * mc + j] (rows) or diag-major dir[k * nc + i]
    //    (anti-diagonals, k = i + j), so that each traversal writes contiguously.
    uint8_t* dir = dirs.data() + dir_off(d);
    const bool rows = team.team_size() == 1 && !force_wavefront;
    ScratchI buf(team.team_scratch(scratch_level), rows ? 3 * mc : 3 * nc);
    if (rows) {
      // Row by row, two rows at a time: the cells (i, j) and (i + 1, j - 1) do not depend on each
      // other, so their two min-chains overlap in the pipeline. The first row and column have one
      // predecessor each; inner cells take the first minimum of (diag, up, left). Raw pointers
      // so that the byte stores of the moves do not make the compiler reload the Views' data.
      int32_t* prev = buf.data();       // row i - 1
      int32_t* cur = buf.data() + mc;   // row i
      int32_t* next = buf.data() + 2 * mc;  // row i + 1
      const int32_t* tu = tgt_u.data() + ct0;
      const int32_t* su = src_u.data() + cs0;
      // First minimum of (diag, up, left), as np.argmin, without branches (they mispredict):
      // values are < 2^29, so a difference's sign bit is the comparison.
      auto cell = [&](const int32_t* up_row, int32_t left, int64_t j, uint8_t& move) {
        const int32_t vd = up_row[j - 1], vu = up_row[j];
        const int32_t d1 = vu - vd, m1 = d1 >> 31;        // -1 where up < diag
        const int32_t best = vd + (d1 & m1);
        const int32_t d2 = left - best, m2 = d2 >> 31;    // -1 where left < best
        move = uint8_t(((m1 & kDtwUp) & ~m2) | (m2 & kDtwLeft));
        return best + (d2 & m2);
      };
      {  // row 0: only moves left
        const int32_t* crow = table + int64_t(su[0]) * nut;
        int32_t left = crow[tu[0]];
        dir[0] = kDtwStop;
        prev[0] = left;
        for (int64_t j = 1; j < mc; ++j) {
          left += crow[tu[j]];
          prev[j] = left;
          dir[j] = kDtwLeft;
        }
      }
      int64_t i = 1;
      for (; i + 1 < nc; i += 2) {
        const int32_t* ca = table + int64_t(su[i]) * nut;
        const int32_t* cb = table + int64_t(su[i + 1]) * nut;
        uint8_t* da = dir + i * mc;
        uint8_t* db = da + mc;
        int32_t la = prev[0] + ca[tu[0]];
        cur[0] = la;
        da[0] = kDtwUp;
        int32_t lb = la + cb[tu[0]];
        next[0] = lb;
        db[0] = kDtwUp;
        for (int64_t j = 1; j < mc; ++j) {
          uint8_t ma, mb;
          la = cell(prev, la, j, ma) + ca[tu[j]];
          cur[j] = la;
          da[j] = ma;
          if (j >= 2) {  // row i + 1 runs one cell behind
            lb = cell(cur, lb, j - 1, mb) + cb[tu[j - 1]];
            next[j - 1] = lb;
            db[j - 1] = mb;
          }
        }
        if (mc >= 2) {
          uint8_t mb;
          lb = cell(cur, lb, mc - 1, mb) + cb[tu[mc - 1]];
          next[mc - 1] = lb;
          db[mc - 1] = mb;
        }
        int32_t* t = prev; prev = next; next = t;
      }
      for (; i < nc; ++i) {  // a last odd row
        const int32_t* crow = table + int64_t(su[i]) * nut;
        uint8_t* drow = dir + i * mc;
        int32_t left = prev[0] + crow[tu[0]];
        cur[0] = left;
        drow[0] = kDtwUp;
        for (int64_t j = 1; j < mc; ++j) {
          uint8_t move;
          left = cell(prev, left, j, move) + crow[tu[j]];
          cur[j] = left;
          drow[j] = move;
        }
        int32_t* t = prev; prev = cur; cur = t;
      }
    } else {
      for (int64_t k = 0; k <= nc + mc - 2; ++k) {
        int32_t* cur = buf.data() + (k % 3) * nc;
        const int32_t* prev1 = buf.data() + ((k + 2) % 3) * nc;
        const int32_t* prev2 = buf.data() + ((k + 1) % 3) * nc;
        const int64_t ilo = k - (mc - 1) > 0 ? k - (mc - 1) : 0;
        const int64_t ihi = k < nc - 1 ? k : nc - 1;
        Kokkos::parallel_for(Kokkos::TeamThreadRange(team, ilo, ihi + 1), [&](const int64_t i) {
          const int64_t j = k - i;
          const int32_t c = table[int64_t(src_u(cs0 + i)) * nut + tgt_u(ct0 + j)];
          int32_t best = 0;
          uint8_t move = kDtwStop;
          if (i > 0 || j > 0) {
            const int32_t vd = (i > 0 && j > 0) ? prev2[i - 1] : kInf;
            const int32_t vu = i > 0 ? prev1[i - 1] : kInf;
            const int32_t vl = j > 0 ? prev1[i] : kInf;
            best = vd; move = kDtwDiag;
            if (vu < best) { best = vu; move = kDtwUp; }
            if (vl < best) { best = vl; move = kDtwLeft; }
          }
          cur[i] = c + best;
          dir[k * nc + i] = move;
        });
        team.team_barrier();
      }
    }

    // 3. Backtrack (one thread): the path visits target j with a contiguous run of i's.
    Kokkos::single(Kokkos::PerTeam(team), [&]() {
      int64_t i = nc - 1, j = mc - 1;
      int64_t cur_j = -1;
      while (true) {
        if (j != cur_j) { hi(ct0 + j) = int32_t(cs0 + i); cur_j = j; }
        lo(ct0 + j) = int32_t(cs0 + i);
        const uint8_t move = rows ? dir[i * mc + j] : dir[(i + j) * nc + i];
        if (move == kDtwStop) break;
        if (move == kDtwDiag) { --i; --j; }
        else if (move == kDtwUp) { --i; }
        else { --j; }
      }
    });
    team.team_barrier();

    Kokkos::parallel_for(Kokkos::TeamThreadRange(team, mc), [&](const int64_t j) {
      const int64_t t = ct0 + j;
      const int32_t s = lo(t);
      uint8_t st;
      if (s != hi(t)) {
        st = kFallbackMany;
      } else if (strings_equal(s, t, j == 0 && s == cs0)) {
        st = kKeptExact;
      } else if (method == int(DtwMethod::kMinED) && src_ids(s) < int32_t(map_full.extent(0)) &&
                 map_full(src_ids(s)) == tgt_ids(t)) {
        st = kKeptMapped;
      } else {
        st = kFallbackMismatch;
      }
      status(t) = st;
    });
  }
};

// Host-side driver: sizes the scratch, launches one team per document. Views live in
// ExecSpace's memory space; `max_src_len` / `max_tgt_len` bound the documents' content lengths.
template <class ExecSpace>
void token_alignment_dtw(TokenAlignmentDTW<ExecSpace> f, int64_t n_docs, int64_t max_src_len, int64_t max_tgt_len) {
  using Policy = TokenAlignmentDTW<ExecSpace>;
  const int64_t rows = 3 * (max_tgt_len > 0 ? max_tgt_len : 1), diags = 3 * (max_src_len > 0 ? max_src_len : 1);
  const size_t bytes = Policy::ScratchI::shmem_size(rows > diags ? rows : diags) + Policy::ScratchU64::shmem_size(256) + 64;
  f.scratch_level = bytes <= 32 * 1024 ? 0 : 1;
  // Documents differ in cost (n x m): dynamic scheduling balances the CPU threads.
  Kokkos::TeamPolicy<ExecSpace, Kokkos::Schedule<Kokkos::Dynamic>> policy(n_docs, Kokkos::AUTO);
  policy = policy.set_scratch_size(f.scratch_level, Kokkos::PerTeam(bytes));
  Kokkos::parallel_for("fusellm::align::token_alignment_dtw", policy, f);
}

}  // namespace fusellm::align
