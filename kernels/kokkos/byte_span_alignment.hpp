#pragma once
// Exact byte-span alignment (beyond the paper; as tokenkit's ALM and TRL's GOLD do it): a source
// position and a target position align where the byte offsets at which their prefixes end
// coincide. Both models have then read exactly the same bytes, so the source's next-token
// distribution there predicts the same continuation and carries over through the vocabulary
// mapping (apply_alignment.hpp). No DP; characters split across tokens (byte fallback, byte-level
// pieces of one UTF-8 character) are handled because offsets are in bytes.
//
// Input per position: the byte end of the token, computed on the host (TokenVocab::byte_ends in
// src/fusellm/align/token_normalize.hpp: cumulative length of the normalized token strings, BOS/EOS
// runs at the edges zero-width, the dummy-prefix space not counted). Per document, with e ranging
// over the end offsets reached by both sides:
//  - non-special tokens: the last target position ending at e <-> the last source position
//    ending at e (kKeptSpan). (Several non-special tokens can end at one offset only when some are
//    zero-width, e.g. a lone dummy-prefix "▁"; the last one has read everything.)
//  - special tokens: the r-th special ending at e on the target side <-> the r-th special ending
//    at e on the source side (kKeptSpecial): BOS with BOS, EOS with EOS.
//  - every other target position: kFallbackUnaligned (its span does not align one to one).
// Both are merge joins over non-decreasing keys: one thread per document, O(n + m).
#include <Kokkos_Core.hpp>
#include <cstdint>

#include "kokkos/align_common.hpp"

namespace fusellm::align {

template <class ExecSpace>
struct ByteSpanAlignment {
  using Mem = typename ExecSpace::memory_space;
  Kokkos::View<const int32_t*, Mem> src_ids, tgt_ids;
  Kokkos::View<const int64_t*, Mem> src_doc, tgt_doc;    // [D + 1]
  Kokkos::View<const int64_t*, Mem> src_ends, tgt_ends;  // byte end per position (doc-relative)
  Kokkos::View<const uint8_t*, Mem> src_flags, tgt_flags;  // by id
  Kokkos::View<int32_t*, Mem> lo, hi;
  Kokkos::View<uint8_t*, Mem> status;

  KOKKOS_INLINE_FUNCTION bool src_special(int64_t p) const { return src_flags(src_ids(p)) & kTokenSpecial; }
  KOKKOS_INLINE_FUNCTION bool tgt_special(int64_t p) const { return tgt_flags(tgt_ids(p)) & kTokenSpecial; }

  // Next non-special position after p that is the last non-special one with its end, or `end`.
  template <class IsSpecial, class Ends>
  KOKKOS_INLINE_FUNCTION static int64_t next_content(const IsSpecial& special, const Ends& ends,
                                                     int64_t p, int64_t end) {
    for (++p; p < end; ++p) {
      if (special(p)) continue;
      int64_t q = p + 1;
      while (q < end && special(q)) ++q;
      if (q == end || ends(q) != ends(p)) return p;
    }
    return end;
  }
  template <class IsSpecial>
  KOKKOS_INLINE_FUNCTION static int64_t next_special(const IsSpecial& special, int64_t p, int64_t end) {
    for (++p; p < end; ++p)
      if (special(p)) return p;
    return end;
  }

  KOKKOS_INLINE_FUNCTION void operator()(const int64_t d) const {
    const int64_t s0 = src_doc(d), s1 = src_doc(d + 1), t0 = tgt_doc(d), t1 = tgt_doc(d + 1);
    for (int64_t t = t0; t < t1; ++t) {
      lo(t) = -1;
      hi(t) = -1;
      status(t) = kFallbackUnaligned;
    }
    auto ss = [&](int64_t p) { return src_special(p); };
    auto ts = [&](int64_t p) { return tgt_special(p); };
    auto se = [&](int64_t p) { return src_ends(p); };
    auto te = [&](int64_t p) { return tgt_ends(p); };
    // Non-special tokens: merge join on the end offset over "last with its end" positions.
    int64_t s = next_content(ss, se, s0 - 1, s1);
    int64_t t = next_content(ts, te, t0 - 1, t1);
    while (s < s1 && t < t1) {
      const int64_t es = src_ends(s), et = tgt_ends(t);
      if (es < et) {
        s = next_content(ss, se, s, s1);
      } else if (et < es) {
        t = next_content(ts, te, t, t1);
      } else {
        lo(t) = hi(t) = int32_t(s);
        status(t) = kKeptSpan;
        s = next_content(ss, se, s, s1);
        t = next_content(ts, te, t, t1);
      }
    }
    // Special tokens: merge join on (end, rank among specials with that end).
    s = next_special(ss, s0 - 1, s1);
    t = next_special(ts, t0 - 1, t1);
    int64_t rs = 0, rt = 0;  // ranks of s and t within their end offset
    while (s < s1 && t < t1) {
      const int64_t es = src_ends(s), et = tgt_ends(t);
      if (es < et || (es == et && rs < rt)) {
        const int64_t n = next_special(ss, s, s1);
        rs = (n < s1 && src_ends(n) == es) ? rs + 1 : 0;
        s = n;
      } else if (et < es || rt < rs) {
        const int64_t n = next_special(ts, t, t1);
        rt = (n < t1 && tgt_ends(n) == et) ? rt + 1 : 0;
        t = n;
      } else {
        lo(t) = hi(t) = int32_t(s);
        status(t) = kKeptSpecial;
        const int64_t ns = next_special(ss, s, s1), nt = next_special(ts, t, t1);
        rs = (ns < s1 && src_ends(ns) == es) ? rs + 1 : 0;
        rt = (nt < t1 && tgt_ends(nt) == et) ? rt + 1 : 0;
        s = ns;
        t = nt;
      }
    }
  }
};

template <class ExecSpace>
void byte_span_alignment(const ByteSpanAlignment<ExecSpace>& f, int64_t n_docs) {
  Kokkos::parallel_for("fusellm::align::byte_span_alignment",
                       Kokkos::RangePolicy<ExecSpace>(0, n_docs), f);
}

}  // namespace fusellm::align
