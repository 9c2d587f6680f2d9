// Variants of the CUDA top-k softmax (topk_softmax_dev.cuh). The math, the outputs and the host
// side are those of kernels/cuda/topk_softmax.cu (which reproduces kernels/kokkos/topk_softmax.hpp:
// TopkSoftmaxFunctor, topk_softmax): for row i, beta = 1 / temperature, the k largest logits in the
// order of the keys order_key(z_v, v) (value descending, ties by ascending id), m = z_(1):
//
//     e_r = exp(beta (z_(r) - m)),  d = sum_{r < k} e_r  (keep_tail: sum_v exp(beta (z_v - m)))
//     P[i, r] = e_r * (1 / d),      tail[i] = max(0, 1 - sum_r P[i, r])
//
// The kernels are kernels/cuda/topk_softmax_kernels.cuh's (it states them and why the shared
// threshold tau pays); what changes here is the configuration: 1 or 4 warps per block, 4 or 8
// 16-byte loads in flight per lane, staged insertions, a register cap. kernels/cuda/topk_softmax.cu
// launches the winner (since 2026-12-04; until then one warp per block without tau: each lane
// inserted any logit not below its own K-th best, nearly every logit of its first few hundred).
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
#include "cuda/topk_softmax_kernels.cuh"
#include "fusellm/core/error.hpp"
#include "topk_softmax_dev.cuh"

namespace fusellm::cuda::dev {

namespace {

using topk_rows::TopkArgs;

struct Variant {
  const char* name;
  void (*launch)(const TopkArgs&, bool, cudaStream_t);
};
const Variant kVariants[] = {
    {"tau, 1 warp/block, 4 x 16 B/lane", &topk_rows::launch_topk<1, 4, 1, false>},
    {"tau, 4 warps/block, 4 x 16 B/lane", &topk_rows::launch_topk<4, 4, 1, false>},
    {"tau, 4 warps/block, 8 x 16 B/lane", &topk_rows::launch_topk<4, 8, 1, false>},
    // staged insertions (fewer registers: more warps per SM)
    {"tau staged, 4 warps/block, 4 x 16 B/lane", &topk_rows::launch_topk<4, 4, 1, true>},
    {"tau staged, 4 warps/block, 4 x 16 B/lane, 6 blocks/SM", &topk_rows::launch_topk<4, 4, 6, true>},
};
constexpr int kNumVariants = int(sizeof(kVariants) / sizeof(kVariants[0]));

}  // namespace

int topk_softmax_variant_count() { return kNumVariants; }
const char* topk_softmax_variant_name(int variant) {
  if (variant < 0 || variant >= kNumVariants) fail("top-k (dev): no variant {}", variant);
  return kVariants[variant].name;
}

// ---- host side (kernels/cuda/topk_softmax.cu's, with the kernel chosen by `variant`) -----------------
struct TopkSoftmaxDev::Impl {
  int variant = 0;
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

TopkSoftmaxDev::TopkSoftmaxDev(int variant, cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  if (variant < 0 || variant >= kNumVariants) fail("top-k (dev): no variant {}", variant);
  impl_->variant = variant;
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_bad, sizeof(unsigned long long)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_bad, sizeof(unsigned long long)));
}

TopkSoftmaxDev::~TopkSoftmaxDev() = default;

void TopkSoftmaxDev::enqueue(const float* logits, int64_t T, int64_t V, const TopkParams& params,
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
  kVariants[im.variant].launch(a, params.keep_tail, im.stream);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(im.h_bad, im.d_bad, sizeof(unsigned long long),
                                     cudaMemcpyDeviceToHost, im.stream));
  im.pending = true;
}

void TopkSoftmaxDev::finish() {
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

}  // namespace fusellm::cuda::dev
