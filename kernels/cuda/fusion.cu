// Fusion of K sources' aligned distributions on the GPU (fusion.cuh): reproduces
// kernels/kokkos/fusion.hpp (fuse, SequenceWeightsFunctor, FuseRowsFunctor).
//
// The math, with CE_j the scores and r_j = exp(-CE_j) (double):
//  - per sequence b (MinCE and AvgCE): choice[b] = the first j with the smallest CE_j[b] (fp32
//    compares); rmax = max_j r_j; weights[b, j] = float(exp(r_j - rmax) / sum_j' exp(r_j' - rmax)),
//    the sum in source order (double).
//  - MinCE: row i of sequence b is source choice[b]'s row i, padded with (-1, 0) to the output
//    width max_j k_j; tail = that source's tail, or 0.
//  - MinCE per position: j = the first source with the smallest CE_j[i]; choice[i] = j; the row as
//    MinCE.
//  - AvgCE: for j in order, for each slot of source j's row i with an id in [0, V): p = w_j * prob
//    (fp32, rounded), added to the entry of that id if the output row already holds it, else
//    appended; then an insertion sort (probability descending, ties by ascending id), empty slots
//    (-1, 0) after; tail = sum_j w_j * tail_j (fp32, source order).
// Products and sums are written with __fmul_rn / __fadd_rn, so that nvcc cannot fuse them into an
// FMA the CPU does not do: the rows' arithmetic is the CPU's, operation for operation. The weights
// use the device's double exp (1 ulp) where the CPU uses glibc's; after the rounding to float the
// weights agree to the last bit in all but rare cases (then within 1 ulp of float).
//
// Three kernels on the stream, one wait: a check kernel (offsets, scores, every source's rows), the
// weights kernel (one thread per sequence), the row kernel (one thread per position, the output row
// built in place in global memory as the CPU does); the latter two return at once when the check
// found anything, so an error leaves every output unwritten.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/fusion.cuh"
#include "cuda/fusion_row_math.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

struct FuseArgs {
  FusionSource src[kMaxFusionSources];
  int K;
  FusionMode mode;
  int64_t T, B, V;
  const float* scores;  // [K, cols]
  int64_t cols;
  const int64_t* off;   // [B + 1] (MinCE, AvgCE)
  FusionOutput out;
  bool any_tail;
};

struct FuseStatus {
  unsigned long long off_ends;      // 0 when offsets[0] != 0 or offsets[B] != T
  unsigned long long off_decrease;  // first sequence b with offsets[b + 1] < offsets[b]
  unsigned long long score_bad;     // first bad per-sequence score (error_code(b, j, kBadScore))
  unsigned long long row_bad;       // first bad row (error_code(i, j, kind))
};

__device__ __forceinline__ bool fuse_checks_failed(const FuseStatus* st) {
  return st->off_ends != row::kNoError || st->off_decrease != row::kNoError ||
         st->score_bad != row::kNoError || st->row_bad != row::kNoError;
}

// NaN and -Inf are not scores (SequenceWeightsFunctor, FuseRowsFunctor).
__device__ __forceinline__ bool bad_score(float ce) {
  return ce != ce || (!row::finite_bits(ce) && ce < 0.f);
}

// The CPU's checks: fuse's offsets (host), SequenceWeightsFunctor's scores, FuseRowsFunctor's rows
// and per-position scores, each reduced to its first code.
__global__ void fuse_check_kernel(FuseArgs a, FuseStatus* st) {
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const bool per_position = a.mode == FusionMode::kMinCEPerPosition;
  if (!per_position) {
    if (first == 0 && (a.off[0] != 0 || a.off[a.B] != a.T)) atomicMin(&st->off_ends, 0ull);
    for (int64_t b = first; b < a.B; b += stride) {
      if (a.off[b + 1] < a.off[b]) atomicMin(&st->off_decrease, static_cast<unsigned long long>(b));
      for (int j = 0; j < a.K; ++j)
        if (bad_score(a.scores[j * a.cols + b])) {
          atomicMin(&st->score_bad, row::error_code(b, j, row::kBadScore));
          break;  // later sources of b have larger codes
        }
    }
  }
  for (int64_t i = first; i < a.T; i += stride) {
    unsigned long long code = row::kNoError;
    for (int j = 0; j < a.K; ++j) {
      const FusionSource& r = a.src[j];
      for (int64_t s = 0; s < r.k; ++s) {
        const int32_t id = r.ids[i * r.k + s];
        const float p = r.probs[i * r.k + s];
        int64_t kind = 0;
        if (id < -1 || id >= a.V)
          kind = row::kIdOutOfRange;
        else if (id >= 0 && (!row::finite_bits(p) || p < 0.f))
          kind = row::kBadProb;
        if (kind) code = min(code, row::error_code(i, j, kind));
      }
      if (per_position && bad_score(a.scores[j * a.cols + i]))
        code = min(code, row::error_code(i, j, row::kBadScore));
    }
    if (code != row::kNoError) atomicMin(&st->row_bad, code);
  }
}

// SequenceWeightsFunctor: the MinCE choice and the AvgCE weights of sequence b.
__global__ void fuse_weights_kernel(FuseArgs a, const FuseStatus* st) {
  if (fuse_checks_failed(st)) return;
  for (int64_t b = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; b < a.B;
       b += int64_t(gridDim.x) * blockDim.x) {
    const float* sc = a.scores + b;  // sc[j * cols]: source j's score
    int best = 0;
    double rmax = -1.0;
    for (int j = 0; j < a.K; ++j) {
      if (sc[j * a.cols] < sc[best * a.cols]) best = j;
      const double r = exp(-double(sc[j * a.cols]));
      if (r > rmax) rmax = r;
    }
    a.out.choice[b] = best;
    double sum = 0.0;
    for (int j = 0; j < a.K; ++j) sum += exp(exp(-double(sc[j * a.cols])) - rmax);
    for (int j = 0; j < a.K; ++j)
      a.out.weights[b * a.K + j] = float(exp(exp(-double(sc[j * a.cols])) - rmax) / sum);
  }
}

// AvgCE's merge of row i (FuseRowsFunctor, kAvgCE branch), in the output row itself.
__device__ void avg_row(const FuseArgs& a, int64_t i) {
  const int64_t kout = a.out.k;
  int32_t* oid = a.out.ids + i * kout;
  float* opr = a.out.probs + i * kout;
  const int64_t b = row::segment_of(a.off, a.B, i);
  int64_t n = 0;
  float tl = 0.f;
  for (int j = 0; j < a.K; ++j) {
    const FusionSource& r = a.src[j];
    const float w = a.out.weights[b * a.K + j];
    for (int64_t s = 0; s < r.k; ++s) {
      const int32_t id = r.ids[i * r.k + s];
      if (id < 0 || id >= a.V) continue;
      const float p = __fmul_rn(w, r.probs[i * r.k + s]);
      int64_t t = 0;
      while (t < n && oid[t] != id) ++t;
      if (t < n) {
        opr[t] = __fadd_rn(opr[t], p);
      } else {
        oid[n] = id;
        opr[n] = p;
        ++n;
      }
    }
    if (r.tail != nullptr) tl = __fadd_rn(tl, __fmul_rn(w, r.tail[i]));
  }
  for (int64_t c = 1; c < n; ++c) {  // probability descending, ties by ascending id
    const int32_t id = oid[c];
    const float p = opr[c];
    int64_t e = c;
    while (e > 0 && (opr[e - 1] < p || (opr[e - 1] == p && oid[e - 1] > id))) {
      oid[e] = oid[e - 1];
      opr[e] = opr[e - 1];
      --e;
    }
    oid[e] = id;
    opr[e] = p;
  }
  for (int64_t t = n; t < kout; ++t) {
    oid[t] = -1;
    opr[t] = 0.f;
  }
  if (a.any_tail) a.out.tail[i] = tl;
}

// FuseRowsFunctor: row i of the fused rows (and, per position, its choice).
__global__ void fuse_rows_kernel(FuseArgs a, const FuseStatus* st) {
  if (fuse_checks_failed(st)) return;
  const int64_t kout = a.out.k;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.T;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (a.mode == FusionMode::kAvgCE) {
      avg_row(a, i);
      continue;
    }
    int j = 0;
    if (a.mode == FusionMode::kMinCE) {
      j = a.out.choice[row::segment_of(a.off, a.B, i)];
    } else {
      for (int c = 1; c < a.K; ++c)
        if (a.scores[c * a.cols + i] < a.scores[j * a.cols + i]) j = c;
      a.out.choice[i] = j;
    }
    const FusionSource& r = a.src[j];
    for (int64_t t = 0; t < kout; ++t) {
      a.out.ids[i * kout + t] = t < r.k ? r.ids[i * r.k + t] : -1;
      a.out.probs[i * kout + t] = t < r.k ? r.probs[i * r.k + t] : 0.f;
    }
    if (a.any_tail) a.out.tail[i] = r.tail != nullptr ? r.tail[i] : 0.f;
  }
}

template <class T>
T fetch(const T* d, int64_t i) {
  T v{};
  FUSELLM_CUDA_CHECK(cudaMemcpy(&v, d + i, sizeof v, cudaMemcpyDeviceToHost));
  return v;
}

unsigned grid_for(int64_t n, int threads) {
  return unsigned(std::max<int64_t>(1, std::min<int64_t>((n + threads - 1) / threads, 4096)));
}

// fuse's messages for the first error the device found, in the CPU's order.
void throw_first_error(const FuseStatus& st, const FuseArgs& a, const char* what,
                       const std::vector<std::string>& names) {
  auto name = [&](int64_t j) { return j < int64_t(names.size()) ? names[size_t(j)] : fmt::format("#{}", j); };
  auto fail_score = [&](unsigned long long code, const char* unit) {
    const auto e = row::decode_error(code);
    const float v = fetch(a.scores, e.slot * a.cols + e.row);
    fail("{} fusion: source '{}' has score {} at {} {} (NaN and -Inf are not scores)", what,
         name(e.slot), v, unit, e.row);
  };
  if (st.off_ends != row::kNoError)
    fail("{} fusion: sequence offsets must run from 0 to T = {} (got {} .. {})", what, a.T,
         fetch(a.off, 0), fetch(a.off, a.B));
  if (st.off_decrease != row::kNoError)
    fail("{} fusion: sequence offsets decrease at sequence {}", what, int64_t(st.off_decrease));
  if (st.score_bad != row::kNoError) fail_score(st.score_bad, "sequence");
  if (st.row_bad == row::kNoError) return;
  const auto e = row::decode_error(st.row_bad);
  if (e.kind == row::kBadScore) fail_score(st.row_bad, "position");
  const FusionSource& r = a.src[e.slot];
  const auto ids = to_host(r.ids + e.row * r.k, size_t(r.k));
  const auto pr = to_host(r.probs + e.row * r.k, size_t(r.k));
  for (int64_t s = 0; s < r.k; ++s) {
    const int32_t id = ids[size_t(s)];
    const float p = pr[size_t(s)];
    if (e.kind == row::kIdOutOfRange && (id < -1 || id >= a.V))
      fail("{} fusion: source '{}' has id {} at position {} (slot {}), outside the target "
           "vocabulary [0, {})",
           what, name(e.slot), id, e.row, s, a.V);
    if (e.kind == row::kBadProb && id >= 0 && (!std::isfinite(p) || p < 0.f))
      fail("{} fusion: source '{}' has probability {} at position {} (slot {})", what,
           name(e.slot), p, e.row, s);
  }
  fail("{} fusion: source '{}' has a bad row at position {}", what, name(e.slot), e.row);
}

// fuse's host checks that need no device data, and the kernel arguments.
FuseArgs make_args(FusionMode mode, const std::vector<FusionSource>& sources, int64_t T,
                   const float* scores, const int64_t* seq_offsets, int64_t B, int64_t V,
                   const FusionOutput& out, const char* what) {
  const int K = int(sources.size());
  if (K < 1) fail("{} fusion: no sources", what);
  if (K > kMaxFusionSources)
    fail("{} fusion: {} sources, at most {} supported", what, K, kMaxFusionSources);
  const bool per_position = mode == FusionMode::kMinCEPerPosition;
  if (!per_position && B < 0) fail("{} fusion: sequence offsets must start with 0", what);
  if (T < 0 || V < 0) fail("{} fusion: negative size (T = {}, V = {})", what, T, V);
  FuseArgs a{};
  a.K = K;
  a.mode = mode;
  a.T = T;
  a.B = per_position ? 0 : B;
  a.V = V;
  a.scores = scores;
  a.cols = per_position ? T : B;
  a.off = seq_offsets;
  a.out = out;
  bool null_in = scores == nullptr && a.cols > 0;
  for (int j = 0; j < K; ++j) {
    if (sources[size_t(j)].k < 0) fail("{} fusion: source #{} has k = {} < 0", what, j, sources[size_t(j)].k);
    a.src[j] = sources[size_t(j)];
    a.any_tail |= sources[size_t(j)].tail != nullptr;
    null_in |= T > 0 && sources[size_t(j)].k > 0 &&
               (sources[size_t(j)].ids == nullptr || sources[size_t(j)].probs == nullptr);
  }
  if (out.k != fused_width(mode, sources))
    fail("{} fusion: output rows of width {}, the sources need {}", what, out.k,
         fused_width(mode, sources));
  null_in |= (!per_position && seq_offsets == nullptr) ||
             (T > 0 && out.k > 0 && (out.ids == nullptr || out.probs == nullptr)) ||
             (T > 0 && a.any_tail && out.tail == nullptr) ||
             (a.cols > 0 && out.choice == nullptr) ||
             (!per_position && B > 0 && out.weights == nullptr);
  if (null_in) fail("{} fusion: null device pointer among the sources, scores, offsets and outputs", what);
  return a;
}

}  // namespace

int64_t fused_width(FusionMode mode, const std::vector<FusionSource>& sources) {
  int64_t k_max = 0, k_sum = 0;
  for (const auto& s : sources) {
    k_max = std::max(k_max, s.k);
    k_sum += s.k;
  }
  return mode == FusionMode::kAvgCE ? k_sum : k_max;
}

void fuse(FusionMode mode, const std::vector<FusionSource>& sources,
          const std::vector<std::string>& names, int64_t T, const float* scores,
          const int64_t* seq_offsets, int64_t B, int64_t V, const FusionOutput& out,
          cudaStream_t stream) {
  const char* what = kernels::fusion_mode_name(mode);
  const FuseArgs a = make_args(mode, sources, T, scores, seq_offsets, B, V, out, what);
  auto d_st = dev_alloc<FuseStatus>(1);
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_st.get(), 0xff, sizeof(FuseStatus), stream));
  fuse_check_kernel<<<grid_for(std::max(a.T, a.B), 128), 128, 0, stream>>>(a, d_st.get());
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  if (a.B > 0) {
    fuse_weights_kernel<<<grid_for(a.B, 128), 128, 0, stream>>>(a, d_st.get());
    FUSELLM_CUDA_CHECK(cudaGetLastError());
  }
  if (a.T > 0) {
    fuse_rows_kernel<<<grid_for(a.T, 128), 128, 0, stream>>>(a, d_st.get());
    FUSELLM_CUDA_CHECK(cudaGetLastError());
  }
  FuseStatus st{};
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(&st, d_st.get(), sizeof st, cudaMemcpyDeviceToHost, stream));
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  throw_first_error(st, a, what, names);
}

}  // namespace fusellm::cuda
