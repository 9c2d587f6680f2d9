// Top-k with temperature softmax on the GPU (topk_softmax.cuh): reproduces
// kernels/kokkos/topk_softmax.hpp (TopkSoftmaxFunctor, topk_softmax).
//
// The math, for row i with logits z_v, beta = 1 / temperature, the k largest logits
// z_(1) >= ... >= z_(k) (equal logits: ascending id, i.e. the order of the 64-bit keys
// order_key(z_v, v), fusion_row_math.cuh, which is the CPU's order exactly), m = z_(1):
//
//     e_r = exp(beta (z_(r) - m))
//     d   = sum_{r < k} e_r                      (without tail)
//         = sum_v exp(beta (z_v - m))            (keep_tail: the full softmax's denominator)
//     P[i, r] = e_r * (1 / d)
//     tail[i] = 1 - sum_r P[i, r], clamped at 0  (keep_tail)
//
// Cost (topk_softmax_kernels.cuh): one warp per row, 4 rows per block. Each lane scans its 16-byte
// slots of the row (coalesced across the warp, 4 loads in flight per lane; the row's unaligned head
// and tail, at most 3 logits each, element by element) and keeps its best K keys in registers,
// sorted, K a compile-time capacity >= k (1, 2, 4, 8, 12, 16, 24, 32). A logit is inserted (an
// unrolled compare-and-swap pass) only when it is not below the lane's K-th best value nor below
// the warp's shared threshold tau (a lower bound of the row's k-th largest). With keep_tail each
// lane also keeps an online max and sum of exp(beta (z - max)) (one exp per logit), so the row is
// read once. Non-finite logits are detected as the max of |bits| >= the bits of +Inf. The warp then
// merges its 32 sorted lists in k rounds of a shuffle max over the lanes' heads; lane r keeps the
// r-th entry and computes e_r, and d is a warp sum (or the warp-combined online sum).
// k > 32 falls back, as the CPU does for k > 32, to k rounds of "the largest key below the previous
// round's" over the row (O(k V), exact).
//
// The CPU sums d (and the tail's kept mass) in a fixed sequential order and uses its own exp
// polynomial; here d is a warp tree sum with expf: probabilities agree to ~1e-7 relative, ids
// exactly.
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/fusion_row_math.cuh"
#include "cuda/topk_softmax.cuh"
#include "cuda/topk_softmax_kernels.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

using topk_rows::TopkArgs;

// The configuration (topk_softmax_kernels.cuh) that was the fastest of dev/cuda's variants on an
// H200 at T = 16,384, V = 32,000, k = 10 (benchmarks/RESULTS.md, second H200 call; % of a
// device-to-device copy of the same bytes): 4 warps per block, 4 16-byte loads in flight per lane,
// staged insertions, registers capped for 6 blocks per SM: 63.0 % (51.7 % with keep_tail), where
// one warp per block without the shared threshold reached 21.9 % (16.3 %).
void launch_fastest(const TopkArgs& a, bool keep_tail, cudaStream_t stream) {
  topk_rows::launch_topk<4, 4, 6, true>(a, keep_tail, stream);
}

}  // namespace

struct TopkSoftmax::Impl {
  cudaStream_t stream = nullptr;
  unsigned long long* d_bad = nullptr;
  unsigned long long* h_bad = nullptr;  // pinned
  bool pending = false;
  const float* logits = nullptr;
  int64_t rows = 0, vocab = 0;
  std::string source;

  ~Impl() {
    if (d_bad) cudaFree(d_bad);
    if (h_bad) cudaFreeHost(h_bad);
  }
};

TopkSoftmax::TopkSoftmax(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_bad, sizeof(unsigned long long)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_bad, sizeof(unsigned long long)));
}

TopkSoftmax::~TopkSoftmax() = default;

void TopkSoftmax::enqueue(const float* logits, int64_t T, int64_t V, const TopkParams& params,
                          int32_t* ids, float* probs, float* tail, const std::string& source) {
  Impl& im = *impl_;
  im.pending = false;
  if (params.k < 1) fail("top-k of source '{}': k = {} must be at least 1", source, params.k);
  if (params.k > V)
    fail("top-k of source '{}': k = {} exceeds the vocabulary size V = {}", source, params.k, V);
  if (V > INT32_MAX) fail("top-k of source '{}': vocabulary size {} exceeds int32 ids", source, V);
  if (!(params.temperature > 0.f) || !std::isfinite(params.temperature) ||
      !std::isfinite(1.f / params.temperature))
    fail("top-k of source '{}': temperature {} must be a positive finite number", source,
         params.temperature);
  if (T < 0) fail("top-k of source '{}': negative number of positions T = {}", source, T);
  if (T > 0 && (logits == nullptr || ids == nullptr || probs == nullptr ||
                (params.keep_tail && tail == nullptr)))
    fail("top-k of source '{}': null device pointer among the logits and outputs", source);
  if (reinterpret_cast<uintptr_t>(logits) % sizeof(float) != 0)
    fail("top-k of source '{}': logits pointer is not aligned to 4 bytes", source);
  im.logits = logits;
  im.rows = T;
  im.vocab = V;
  im.source = source;
  if (T == 0) {
    im.pending = true;
    return;
  }

  FUSELLM_CUDA_CHECK(cudaMemsetAsync(im.d_bad, 0xff, sizeof(unsigned long long), im.stream));
  const TopkArgs a{logits, T, V, params.k, 1.f / params.temperature, ids, probs, tail, im.d_bad};
  launch_fastest(a, params.keep_tail, im.stream);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(im.h_bad, im.d_bad, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, im.stream));
  im.pending = true;  // only once everything is on the stream
}

void TopkSoftmax::finish() {
  Impl& im = *impl_;
  if (!im.pending) fail("top-k: finish() without a pending enqueue()");
  im.pending = false;
  if (im.rows == 0) return;
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(im.stream));
  const unsigned long long bad = *im.h_bad;
  if (bad == row::kNoError) return;
  const int64_t r = int64_t(bad);
  std::vector<float> h(static_cast<size_t>(im.vocab));
  FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), im.logits + r * im.vocab, h.size() * sizeof(float),
                                cudaMemcpyDeviceToHost));
  std::string where = fmt::format("row {}", r);
  for (int64_t v = 0; v < im.vocab; ++v)
    if (!std::isfinite(h[size_t(v)])) {
      where = fmt::format("logit[{}, {}] = {}", r, v, h[size_t(v)]);
      break;
    }
  fail("top-k of source '{}': non-finite logit at position {} ({})", im.source, r, where);
}

void topk_softmax(const float* logits, int64_t T, int64_t V, const TopkParams& params, int32_t* ids,
                  float* probs, float* tail, const std::string& source, cudaStream_t stream) {
  TopkSoftmax t(stream);
  t.enqueue(logits, T, V, params, ids, probs, tail, source);
  t.finish();
}

}  // namespace fusellm::cuda
