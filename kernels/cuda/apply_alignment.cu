// Applying an alignment to a source's top-k rows on the GPU (apply_alignment.cuh): reproduces
// kernels/kokkos/apply_alignment.hpp (ApplyAlignment::row, apply_alignment).
//
// The math, for target position t of document [t0, t1), status st, aligned source row s:
//  - st kept (< kFallbackMany): for each slot c of source row s in order, id = src.ids[s, c] >= 0,
//    p = src.probs[s, c]: total += p (double); mid = id_map[id] (-1 when id >= n_map); mid < 0 is
//    dropped; a mid already kept keeps max(p, kept p); a new mid is appended while fewer than
//    k_out are kept. sum = the double sum of the kept p in kept order; with a tail bucket (source
//    and output both have one) tail = double(src.tail[s]) + (total - sum), else every kept p
//    becomes float(double(p) / sum). Then an insertion sort: probability descending, ties by
//    ascending id. Nothing kept: st = kFallbackEmpty.
//  - kFallbackEmpty with use_target: the first k_out non-empty entries of target row t (and its
//    tail when both tails exist).
//  - any other fallback: the one-hot of tgt_ids[t] (onehot_current) or of tgt_ids[t + 1] when
//    t + 1 < t1, else an empty row; tail 0.
// The same operations in the same order as the CPU (double sums and divisions, float compares; no
// multiply-add the compiler could fuse), so ids, probabilities, tails and statuses are bit-equal.
//
// Two kernels on the stream, one wait: a check kernel (offsets, aligned source rows in range), then
// the row kernel, one thread per target position (its document found by binary search, as the
// CPU's team per document knows it), which returns at once when the check found anything, so an
// error leaves every output unwritten.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "cuda/apply_alignment.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/fusion_row_math.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

struct ApplyStatus {
  unsigned long long off_ends;      // 0 when tgt_doc[0] != 0 or tgt_doc[D] != T
  unsigned long long off_decrease;  // first document d with tgt_doc[d + 1] < tgt_doc[d]
  unsigned long long pos_bad;       // first kept position whose source row is out of range
};

__device__ __forceinline__ bool apply_checks_failed(const ApplyStatus* st) {
  return st->off_ends != row::kNoError || st->off_decrease != row::kNoError ||
         st->pos_bad != row::kNoError;
}

__global__ void apply_check_kernel(ApplyAlignmentArgs a, ApplyStatus* st) {
  const int64_t T = a.out.rows, D = a.docs;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (first == 0 && (a.tgt_doc[0] != 0 || a.tgt_doc[D] != T)) atomicMin(&st->off_ends, 0ull);
  for (int64_t d = first; d < D; d += stride)
    if (a.tgt_doc[d + 1] < a.tgt_doc[d])
      atomicMin(&st->off_decrease, static_cast<unsigned long long>(d));
  for (int64_t t = first; t < T; t += stride)
    if (a.status_in[t] < kAlignFallbackMany && (a.src_pos[t] < 0 || a.src_pos[t] >= a.src.rows))
      atomicMin(&st->pos_bad, static_cast<unsigned long long>(t));
}

// The kept branch of ApplyAlignment::row: maps, merges and normalizes source row s into
// ids/probs[0, n); returns n (0: nothing survived).
__device__ int map_source_row(const ApplyAlignmentArgs& a, int64_t s, bool with_tail,
                              int32_t* ids, float* probs, double& tail) {
  const int64_t kin = a.src.k, kout = a.out.k;
  int n = 0;
  double total = 0.0;
  for (int64_t c = 0; c < kin; ++c) {
    const int32_t sid = a.src.ids[s * kin + c];
    if (sid < 0) continue;
    const float p = a.src.probs[s * kin + c];
    total += p;
    const int32_t mid = sid < a.n_map ? a.id_map[sid] : -1;
    if (mid < 0) continue;
    int dup = -1;
    for (int i = 0; i < n; ++i)
      if (ids[i] == mid) {
        dup = i;
        break;
      }
    if (dup >= 0) {
      if (p > probs[dup]) probs[dup] = p;
    } else if (n < kout) {
      ids[n] = mid;
      probs[n] = p;
      ++n;
    }
  }
  if (n == 0) return 0;
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += probs[i];
  if (with_tail) {
    tail = double(a.src.tail[s]) + (total - sum);
  } else {
    for (int i = 0; i < n; ++i) probs[i] = float(double(probs[i]) / sum);
  }
  for (int i = 1; i < n; ++i) {  // probability descending, ties by ascending id
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
  return n;
}

// ApplyAlignment::row for one target position t of the document ending at doc_end.
__device__ void apply_row(const ApplyAlignmentArgs& a, int64_t t, int64_t doc_end) {
  const int64_t kout = a.out.k;
  const bool with_tail = a.out.tail != nullptr && a.src.tail != nullptr;
  uint8_t st = a.status_in[t];
  int n = 0;
  int32_t ids[kAlignApplyMaxK];
  float probs[kAlignApplyMaxK];
  double tail = 0.0;
  if (st < kAlignFallbackMany) {
    n = map_source_row(a, a.src_pos[t], with_tail, ids, probs, tail);
    if (n == 0) st = kAlignFallbackEmpty;
  }
  if (st == kAlignFallbackEmpty && a.use_target) {
    n = 0;
    tail = with_tail && a.target.tail != nullptr ? double(a.target.tail[t]) : 0.0;
    const int64_t kt = a.target.k;
    for (int64_t c = 0; c < kt && n < kout; ++c) {
      const int32_t id = a.target.ids[t * kt + c];
      if (id < 0) continue;
      ids[n] = id;
      probs[n] = a.target.probs[t * kt + c];
      ++n;
    }
  } else if (st >= kAlignFallbackMany) {
    n = 0;
    tail = 0.0;
    if (a.onehot_current) {
      ids[0] = a.tgt_ids[t];
      probs[0] = 1.f;
      n = 1;
    } else if (t + 1 < doc_end) {
      ids[0] = a.tgt_ids[t + 1];
      probs[0] = 1.f;
      n = 1;
    }
  }
  for (int64_t c = 0; c < kout; ++c) {
    a.out.ids[t * kout + c] = c < n ? ids[c] : -1;
    a.out.probs[t * kout + c] = c < n ? probs[c] : 0.f;
  }
  if (a.out.tail != nullptr) a.out.tail[t] = float(tail);
  a.status_out[t] = st;
}

__global__ void apply_row_kernel(ApplyAlignmentArgs a, const ApplyStatus* st) {
  if (apply_checks_failed(st)) return;
  const int64_t T = a.out.rows;
  for (int64_t t = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; t < T;
       t += int64_t(gridDim.x) * blockDim.x) {
    const int64_t d = row::segment_of(a.tgt_doc, a.docs, t);
    apply_row(a, t, a.tgt_doc[d + 1]);
  }
}

template <class T>
T fetch(const T* d, int64_t i) {
  T v{};
  FUSELLM_CUDA_CHECK(cudaMemcpy(&v, d + i, sizeof v, cudaMemcpyDeviceToHost));
  return v;
}

void check_shapes(const ApplyAlignmentArgs& a) {
  const int64_t T = a.out.rows;
  if (a.src.k < 0 || a.src.k > kAlignApplyMaxK)
    fail("align: top-k of {} exceeds the supported {}", a.src.k, kAlignApplyMaxK);
  if (a.out.k < 0 || a.out.k > kAlignApplyMaxK)
    fail("align: aligned rows of {} slots exceed the supported {}", a.out.k, kAlignApplyMaxK);
  if (T < 0 || a.docs < 0 || a.src.rows < 0 || a.n_map < 0 || a.target.k < 0)
    fail("align: negative size (T = {}, documents = {}, source rows = {}, map = {}, target k = {})",
         T, a.docs, a.src.rows, a.n_map, a.target.k);
  if (a.use_target && a.target.rows != T)
    fail("align: the target rows have {} positions, the target batch {}", a.target.rows, T);
  const bool null_in = a.tgt_doc == nullptr ||
                       (T > 0 && (a.tgt_ids == nullptr || a.src_pos == nullptr ||
                                  a.status_in == nullptr || a.status_out == nullptr ||
                                  (a.out.k > 0 && (a.out.ids == nullptr || a.out.probs == nullptr)))) ||
                       (a.n_map > 0 && a.id_map == nullptr) ||
                       (a.src.rows > 0 && a.src.k > 0 && (a.src.ids == nullptr || a.src.probs == nullptr)) ||
                       (a.use_target && T > 0 && a.target.k > 0 &&
                        (a.target.ids == nullptr || a.target.probs == nullptr));
  if (null_in) fail("align: null device pointer among the alignment, the rows and the outputs");
}

}  // namespace

void apply_alignment(const ApplyAlignmentArgs& a, cudaStream_t stream) {
  check_shapes(a);
  const int64_t T = a.out.rows;
  auto d_st = dev_alloc<ApplyStatus>(1);
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_st.get(), 0xff, sizeof(ApplyStatus), stream));
  const int64_t n_check = std::max<int64_t>(std::max(T, a.docs), 1);
  apply_check_kernel<<<unsigned(std::min<int64_t>((n_check + 255) / 256, 1024)), 256, 0, stream>>>(
      a, d_st.get());
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  if (T > 0) {
    apply_row_kernel<<<unsigned(std::min<int64_t>((T + 127) / 128, int64_t(1) << 30)), 128, 0,
                       stream>>>(a, d_st.get());
    FUSELLM_CUDA_CHECK(cudaGetLastError());
  }
  ApplyStatus st{};
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(&st, d_st.get(), sizeof st, cudaMemcpyDeviceToHost, stream));
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
  if (st.off_ends != row::kNoError)
    fail("align: the target batch's offsets do not cover its {} tokens (they run from {} to {})", T,
         fetch(a.tgt_doc, 0), fetch(a.tgt_doc, a.docs));
  if (st.off_decrease != row::kNoError)
    fail("align: the target batch's offsets decrease at document {}", int64_t(st.off_decrease));
  if (st.pos_bad != row::kNoError) {
    const int64_t t = int64_t(st.pos_bad);
    fail("align: target position {} is kept (status {}) but its aligned source position {} is "
         "outside the {} source rows",
         t, int(fetch(a.status_in, t)), fetch(a.src_pos, t), a.src.rows);
  }
}

}  // namespace fusellm::cuda
