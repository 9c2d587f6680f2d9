#pragma once
// Device-portable pieces shared by the fusion kernel family (topk_softmax, sequence_ce,
// fusion, fused_classifier): a vectorizable exp, a finiteness test that survives -O3, the
// total order on (logit, id) pairs that makes top-k deterministic, the per-row error code that
// kernels reduce with Kokkos::Min so the host can name the first bad position, and the
// one-team-per-row online max / sum-of-exp (llm.c's fused_classifier, "online softmax").
//
// Everything here is KOKKOS_INLINE_FUNCTION plain arithmetic: no host containers, no virtual
// calls, no exceptions, so a CUDA-enabled Kokkos compiles the same code for the GPU. Math
// functions are the C ones (::logf, ::expf), which CUDA also declares for the device, because
// Kokkos 3.4 keeps its math in Kokkos::Experimental and 4.x moved it to Kokkos::.
#include <Kokkos_Core.hpp>

#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>

#include "fusellm/core/error.hpp"  // fmt, for describe_nonfinite_row

namespace fusellm::kernels {

// ---- execution-space traits ---------------------------------------------------------------
// Host backends (Serial, OpenMP) get one thread per row and contiguous, lane-vectorized loops;
// device backends get a team per row with strided (coalesced) loops.
template <class ExecSpace>
inline constexpr bool kOnHost =
    Kokkos::SpaceAccessibility<ExecSpace, Kokkos::HostSpace>::accessible;

// Team size for "one team per row" kernels; `requested` > 0 overrides (tests use 2 on OpenMP to
// exercise the cross-thread merge).
template <class ExecSpace>
inline int row_team_size(int requested) {
  if (requested > 0) return requested;
  return kOnHost<ExecSpace> ? 1 : 128;
}

// ---- scalar helpers ---------------------------------------------------------------------------
KOKKOS_INLINE_FUNCTION uint32_t float_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
KOKKOS_INLINE_FUNCTION float bits_float(uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// c ? a : b on the bits. GCC (without -ffast-math, i.e. with -ftrapping-math) does not
// if-convert a float `?:` inside a loop, so such a loop stays scalar; an integer mask blend
// vectorizes (and is a plain select on a GPU).
KOKKOS_INLINE_FUNCTION float select(bool c, float a, float b) {
  const uint32_t m = 0u - uint32_t(c);
  return bits_float((float_bits(a) & m) | (float_bits(b) & ~m));
}

// True for finite x. (x - x) is 0 for finite x and NaN for +-Inf and NaN; the compiler may not
// fold it without -ffast-math (which this project never uses for kernels).
KOKKOS_INLINE_FUNCTION bool is_finite(float x) { return (x - x) == 0.f; }

// exp(x) for float, branch-free so the host loops vectorize (AVX2) and the GPU runs it as a
// handful of FMAs: Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, and Cephes' expf
// polynomial (relative error < 1e-7 on [-87, 0], tested). Domain: x <= 88 (every caller passes
// x - max <= 0). exp(x) = 0 for x < -87.33 (exactly 0 for -Inf, where glibc would give a denormal
// or 0). NaN propagates (the comparison is false on NaN, so NaN passes the clamp), which the
// kernels rely on to detect NaN logits through the sum. The clamp and the zeroing share one
// integer mask (see select()) so that loops over fast_exp vectorize.
KOKKOS_INLINE_FUNCTION float fast_exp(float x) {
  constexpr float kLo = -87.33f;
  constexpr float kLog2e = 1.44269504088896341f;
  constexpr float kMagic = 12582912.f;  // 1.5 * 2^23: adding it rounds to an integer
  constexpr float kC1 = 0.693359375f, kC2 = -2.12194440e-4f;  // ln2 = C1 + C2
  const uint32_t under = 0u - uint32_t(x < kLo);                // all ones where x < kLo
  const float xc = bits_float((float_bits(x) & ~under) | (float_bits(kLo) & under));
  const float t = xc * kLog2e + kMagic;
  const float n = t - kMagic;
  const uint32_t ni = float_bits(t) - float_bits(kMagic);  // n as an integer (two's complement)
  const float r = (xc - n * kC1) - n * kC2;
  const float r2 = r * r;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r2 + r + 1.f;
  const float y = p * bits_float((ni + 127u) << 23);
  return bits_float(float_bits(y) & ~under);
}

// ---- total order on (value, id): larger value first, ties to the smaller id -------------------
// key(v, i) > key(w, j)  <=>  v > w, or v == w and i < j. The key is an unsigned 64-bit integer,
// so top-k selection is an integer max (Kokkos::Max<uint64_t>), exact and identical on every
// backend. -0.0 is folded to +0.0 so that they tie as floats do. Key 0 is never a real key.
KOKKOS_INLINE_FUNCTION uint64_t order_key(float v, int32_t id) {
  uint32_t u = float_bits(v == 0.f ? 0.f : v);
  u = (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  return (uint64_t(u) << 32) | uint64_t(~uint32_t(id));
}
KOKKOS_INLINE_FUNCTION int32_t order_key_id(uint64_t key) {
  return int32_t(~uint32_t(key & 0xFFFFFFFFull));
}
KOKKOS_INLINE_FUNCTION float order_key_value(uint64_t key) {
  uint32_t u = uint32_t(key >> 32);
  u = (u & 0x80000000u) ? (u & 0x7FFFFFFFu) : ~u;
  return bits_float(u);
}

// ---- error codes --------------------------------------------------------------------------------
// A kernel that finds bad input reduces code = row * 2^24 + slot * 2^8 + kind with Kokkos::Min:
// the host gets the first bad row (then slot, then kind) and throws fusellm::Error naming it.
// kNoError is Min's identity.
inline constexpr int64_t kNoError = INT64_MAX;
enum ErrorKind : int64_t {
  kNonFiniteLogit = 1,   // NaN or +-Inf logit in a row (top-k), or NaN/+Inf (CE, classifier)
  kGoldOutOfRange = 2,   // gold id >= V
  kIdOutOfRange = 3,     // sparse id < -1 or >= V
  kBadProb = 4,          // sparse probability NaN, Inf or negative
  kNonFiniteLoss = 5,    // loss at a row is not finite (gold logit -Inf, all logits -Inf)
  kBadScore = 6,         // a source's CE score is NaN
};
KOKKOS_INLINE_FUNCTION int64_t error_code(int64_t row, int64_t slot, int64_t kind) {
  return row * (int64_t(1) << 24) + (slot & 0xFFFF) * 256 + kind;
}
struct DecodedError {
  int64_t row, slot, kind;
};
inline DecodedError decode_error(int64_t code) {
  return {code >> 24, (code >> 8) & 0xFFFF, code & 0xFF};
}

// ---- one team per row: max and sum of exp(beta * (z - max)) -------------------------------------
// The online softmax of llm.c's fused_classifier (Milakov & Gimelshein 2018), in blocks: for each
// block of kBlock logits (L1-resident) the block max is taken first, the running sum rescaled
// once if the max grew, then exp(beta*(z - max)) summed, so each logit costs one exp, and the
// row is read once from memory. kLanes independent accumulators let the compiler vectorize
// without -ffast-math (the lanes are combined in a fixed order, so the result is deterministic).
// NaN or +Inf logits make the sum NaN; callers test the result with is_finite.
inline constexpr int kLanes = 32;  // 4 AVX2 vectors: enough independent work to hide exp latency
inline constexpr int64_t kBlock = 1024;

// kStore (the fused classifier's gradient pass, host only): also overwrites each logit with
// exp(beta (z - m_b)), m_b being the running max when its block was summed, and records m_b in
// block_max[b]; the second pass then needs one multiply per logit instead of an exp
// (q = e exp(m_b - lse)). The arithmetic is the same with and without kStore, so the loss-only
// variant gives bit-identical losses. The row is left partly overwritten when it holds +-Inf or
// NaN (the caller reports an error then).
template <bool kStore = false>
KOKKOS_INLINE_FUNCTION void host_range_max_sumexp(const float* z, int64_t n, float beta,
                                                  float& m_io, float& s_io,
                                                  float* block_max = nullptr) {
  float m = m_io, s = s_io;
  for (int64_t b0 = 0; b0 < n; b0 += kBlock) {
    const int64_t nb = (n - b0) < kBlock ? (n - b0) : kBlock;
    const float* zb = z + b0;
    const int64_t nv = nb / kLanes * kLanes;
    float lm[kLanes];
    for (int l = 0; l < kLanes; ++l) lm[l] = -FLT_MAX;
    for (int64_t i = 0; i < nv; i += kLanes)
      for (int l = 0; l < kLanes; ++l) lm[l] = select(zb[i + l] > lm[l], zb[i + l], lm[l]);
    float bm = -FLT_MAX;
    for (int l = 0; l < kLanes; ++l) bm = lm[l] > bm ? lm[l] : bm;
    for (int64_t i = nv; i < nb; ++i) bm = zb[i] > bm ? zb[i] : bm;
    if constexpr (kStore) {
      // +Inf in this block: stop before overwriting it, so the caller's error message can still
      // point at it (NaN logits need no care: they stay NaN where they are).
      if (!is_finite(bm)) {
        m = bm;
        s = bm - bm;  // NaN
        break;
      }
    }
    if (bm > m) {
      s *= fast_exp(beta * (m - bm));
      m = bm;
    }
    float ls[kLanes];
    for (int l = 0; l < kLanes; ++l) ls[l] = 0.f;
    float bs = 0.f;
    if constexpr (kStore) {
      float* zw = const_cast<float*>(zb);
      block_max[b0 / kBlock] = m;
      for (int64_t i = 0; i < nv; i += kLanes)
        for (int l = 0; l < kLanes; ++l) {
          const float e = fast_exp(beta * (zb[i + l] - m));
          zw[i + l] = e;
          ls[l] += e;
        }
      for (int64_t i = nv; i < nb; ++i) {
        const float e = fast_exp(beta * (zb[i] - m));
        zw[i] = e;
        bs += e;
      }
    } else {
      for (int64_t i = 0; i < nv; i += kLanes)
        for (int l = 0; l < kLanes; ++l) ls[l] += fast_exp(beta * (zb[i + l] - m));
      for (int64_t i = nv; i < nb; ++i) bs += fast_exp(beta * (zb[i] - m));
    }
    for (int l = 0; l < kLanes; ++l) bs += ls[l];
    s += bs;
  }
  m_io = m;
  s_io = s;
}

// The part [begin, end) of a row of V values that team thread `rank` of `size` owns on the host
// (contiguous, ascending).
KOKKOS_INLINE_FUNCTION void host_thread_range(int64_t V, int rank, int size, int64_t& begin,
                                              int64_t& end) {
  const int64_t per = (V + size - 1) / size;
  begin = per * rank < V ? per * rank : V;
  end = begin + per < V ? begin + per : V;
}

// Max m and sum s of exp(beta * (z_v - m)) over the row z[0..V), computed by the whole team; every
// thread of the team returns the same (m, s). With kStore (host only) the thread's part of the row
// is overwritten as host_range_max_sumexp<true> describes, block_max holding its blocks' maxima.
inline constexpr int64_t kMaxStoredBlocks = 512;  // kStore handles up to 512 blocks per thread

template <bool kHost, class Member, bool kStore = false>
KOKKOS_INLINE_FUNCTION void team_row_max_sumexp(const Member& team, const float* z, int64_t V,
                                                float beta, float& m_out, float& s_out,
                                                float* block_max = nullptr) {
  if constexpr (kHost) {
    int64_t b, e;
    host_thread_range(V, team.team_rank(), team.team_size(), b, e);
    float m = -FLT_MAX, s = 0.f;
    host_range_max_sumexp<kStore>(z + b, e - b, beta, m, s, block_max);
    if (team.team_size() > 1) {
      float mt = m;
      team.team_reduce(Kokkos::Max<float>(mt));
      s *= fast_exp(beta * (m - mt));
      team.team_reduce(Kokkos::Sum<float>(s));
      m = mt;
    }
    m_out = m;
    s_out = s;
  } else {
    static_assert(!kStore, "kStore is a host-only variant");
    // Device: max, then sum of exp (the second read of the row hits L2), one exp per logit.
    float m = -FLT_MAX, s = 0.f;
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(team, V),
        [&](const int64_t v, float& lm) { lm = z[v] > lm ? z[v] : lm; }, Kokkos::Max<float>(m));
    Kokkos::parallel_reduce(
        Kokkos::TeamThreadRange(team, V),
        [&](const int64_t v, float& ls) { ls += fast_exp(beta * (z[v] - m)); }, s);
    m_out = m;
    s_out = s;
  }
}

// "row 3, logit[3, 17] = nan": finds the first non-finite logit of a row for the error message.
template <class MemSpace>
std::string describe_nonfinite_row(
    const Kokkos::View<const float**, Kokkos::LayoutRight, MemSpace>& logits, int64_t row) {
  auto r = Kokkos::subview(logits, row, Kokkos::ALL());
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), r);
  for (int64_t v = 0; v < int64_t(h.extent(0)); ++v)
    if (!is_finite(h(v))) return fmt::format("logit[{}, {}] = {}", row, v, h(v));
  return fmt::format("row {}", row);
}

}  // namespace fusellm::kernels
