#pragma once
// Shared pieces of the token-alignment kernels (token_alignment, byte_span_alignment,
// vocab_mapping, apply_alignment): the per-position status codes, a vocabulary's strings as two
// Views (flattened bytes + offsets by id), and byte-level Levenshtein distance on the device.
//
// Levenshtein: Myers' bit-parallel algorithm (Myers 1999, in Hyyrö's formulation for the global
// edit distance: the top row grows by one per text byte, so a 1 is shifted into Ph) when the
// shorter string has at most 64 bytes; otherwise the textbook DP with one row of the shorter
// string held in a local array of kAlignMaxLongBytes + 1 entries. The host checks that one of any
// two compared vocabularies has no token longer than that (src/fusellm/align), so the bound is
// never hit. No exceptions, no heap, no std containers: callable from any Kokkos backend.
#include <Kokkos_Core.hpp>
#include <cstdint>

namespace fusellm::align {

// Per target position, why it keeps the source's distribution or falls back (a one-hot).
// tests/reference/align_reference.py uses the same numbers.
enum AlignStatus : uint8_t {
  kKeptExact = 0,        // one-to-one, normalized strings equal (EM and MinED)
  kKeptMapped = 1,       // one-to-one, the vocabulary mapping maps source -> target (MinED)
  kKeptSpan = 2,         // byte spans end at the same offset (exact byte-span alignment)
  kKeptSpecial = 3,      // paired special tokens (BOS with BOS, EOS with EOS)
  kFallbackMany = 10,    // the DTW put several source positions on this target position
  kFallbackMismatch = 11,  // one-to-one, but strings differ (and, for MinED, not mapped)
  kFallbackUnaligned = 12,  // no source position (BOS on one side only, span inside a merge...)
  kFallbackEmpty = 13,   // kept, but no top-k id survived the vocabulary mapping
};
KOKKOS_INLINE_FUNCTION constexpr bool align_kept(uint8_t status) { return status < kFallbackMany; }

// Token flags by id (tokenizer.json "added_tokens").
inline constexpr uint8_t kTokenAdded = 1;
inline constexpr uint8_t kTokenSpecial = 2;

inline constexpr int kAlignMaxLongBytes = 256;

// A vocabulary's byte strings: token `id` is chars[offsets[id], offsets[id + 1]).
template <class MemorySpace>
struct AlignStrings {
  Kokkos::View<const uint8_t*, MemorySpace> chars;
  Kokkos::View<const int64_t*, MemorySpace> offsets;  // [n + 1]
  KOKKOS_INLINE_FUNCTION int64_t size() const { return int64_t(offsets.extent(0)) - 1; }
  KOKKOS_INLINE_FUNCTION const uint8_t* data(int64_t id) const { return chars.data() + offsets(id); }
  KOKKOS_INLINE_FUNCTION int len(int64_t id) const { return int(offsets(id + 1) - offsets(id)); }
};

KOKKOS_INLINE_FUNCTION bool align_bytes_equal(const uint8_t* a, int la, const uint8_t* b, int lb) {
  if (la != lb) return false;
  for (int i = 0; i < la; ++i)
    if (a[i] != b[i]) return false;
  return true;
}

// Myers/Hyyrö: distance between pattern p (1 <= m <= 64 bytes) and text t (n bytes). `eq(c)` gives
// the bit mask of the positions of byte c in p.
template <class EqFn>
KOKKOS_INLINE_FUNCTION int align_myers(const EqFn& eq, int m, const uint8_t* t, int n) {
  uint64_t pv = ~uint64_t(0), mv = 0;
  const int top = m - 1;
  int score = m;
  for (int j = 0; j < n; ++j) {
    const uint64_t e = eq(t[j]);
    const uint64_t xv = e | mv;
    const uint64_t xh = (((e & pv) + pv) ^ pv) | e;
    uint64_t ph = mv | ~(xh | pv);
    uint64_t mh = pv & xh;
    // ph and mh never share a bit: branch-free score update (the branches mispredict).
    score += int((ph >> top) & 1) - int((mh >> top) & 1);
    ph = (ph << 1) | 1;  // the top row of the DP is 0, 1, 2, ...: a +1 enters at row 0
    mh <<= 1;
    pv = mh | ~(xv | ph);
    mv = ph & xv;
  }
  return score;
}

// Pattern bits found by scanning the (short) pattern: no table, for one-off pairs (DTW cells).
struct AlignScanEq {
  const uint8_t* p;
  int m;
  KOKKOS_INLINE_FUNCTION uint64_t operator()(uint8_t c) const {
    uint64_t e = 0;
    for (int i = 0; i < m; ++i) e |= uint64_t(p[i] == c) << i;
    return e;
  }
};

// Pattern bits from a 256-entry table (vocab mapping: one pattern against many texts).
struct AlignTableEq {
  const uint64_t* peq;
  KOKKOS_INLINE_FUNCTION uint64_t operator()(uint8_t c) const { return peq[c]; }
};

// Textbook DP, one row over the shorter string b (lb <= kAlignMaxLongBytes).
KOKKOS_INLINE_FUNCTION int align_levenshtein_dp(const uint8_t* a, int la, const uint8_t* b, int lb) {
  uint16_t row[kAlignMaxLongBytes + 1];
  if (lb > kAlignMaxLongBytes) lb = kAlignMaxLongBytes;  // unreachable: the host checks lengths
  for (int j = 0; j <= lb; ++j) row[j] = uint16_t(j);
  for (int i = 1; i <= la; ++i) {
    uint16_t diag = row[0];
    row[0] = uint16_t(i);
    for (int j = 1; j <= lb; ++j) {
      const uint16_t up = row[j];
      uint16_t v = uint16_t(diag + (a[i - 1] != b[j - 1]));
      if (up + 1 < v) v = uint16_t(up + 1);
      if (row[j - 1] + 1 < v) v = uint16_t(row[j - 1] + 1);
      row[j] = v;
      diag = up;
    }
  }
  return row[lb];
}

// Byte Levenshtein distance of two strings, any lengths (see the bound above).
KOKKOS_INLINE_FUNCTION int align_levenshtein(const uint8_t* a, int la, const uint8_t* b, int lb) {
  if (la < lb) {
    const uint8_t* t = a; a = b; b = t;
    const int l = la; la = lb; lb = l;
  }
  if (lb == 0) return la;
  if (lb <= 64) return align_myers(AlignScanEq{b, lb}, lb, a, la);
  return align_levenshtein_dp(a, la, b, lb);
}

}  // namespace fusellm::align
