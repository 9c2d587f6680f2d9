// Variants of the CUDA fused classifier (fused_classifier_dev.cuh). The math, the check and totals
// kernels, the status protocol and the host side are those of kernels/cuda/fused_classifier.cu
// (which reproduces kernels/kokkos/fused_classifier.hpp: FusedClassifierFunctor,
// FusedTargetsCheckFunctor, run_fused_classifier); per position i with g_i >= 0:
//
//     lse_i = logsumexp(z_i),  CLM_i = lse_i - z_i[g_i],  Fusion_i = S_i lse_i - sum_j P_ij z_i[id_ij]
//     dL/dz_i = scale [ (lambda + (1 - lambda) S_i) softmax(z_i) - lambda onehot(g_i) - (1 - lambda) P_i ]
//
// What changes is the row kernel's configuration (kernels/cuda/fused_classifier_kernels.cuh states
// the kernel): threads per block, 16-byte slots per thread in registers (kReg) and in shared memory
// (kSm), blocks per SM. kernels/cuda/fused_classifier.cu launches the winners of the list below
// (since 2026-12-04; until then a 1024-thread block per row with the row in registers).
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <cfloat>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "cuda/cuda_check.hpp"
#include "cuda/fused_classifier_kernels.cuh"
#include "cuda/fusion_row_math.cuh"
#include "fused_classifier_dev.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda::dev {

namespace {

using fc_rows::RowArgs;
using fc_rows::Status;

float host_float(float x) { return x; }
float host_float(__nv_bfloat16 x) { return __bfloat162float(x); }

// ---- configurations -----------------------------------------------------------------------------------

template <class T>
struct Variant {
  const char* name;
  void (*grad)(const RowArgs<T>&, cudaStream_t, const char*);
  void (*loss)(const RowArgs<T>&, cudaStream_t, const char*);
};

template <class T, int kThreads, int kReg, int kSm, int kMinBlocks, bool kWriteGrad>
void launch(const RowArgs<T>& args, cudaStream_t stream, const char* what) {
  fc_rows::launch_rows<T, kThreads, kReg, kSm, kMinBlocks, kWriteGrad>(args, stream, what, true);
}

#define FC_DEV_VARIANT(T, NAME, TH, REG, SM, MINB) \
  Variant<T> { NAME, &launch<T, TH, REG, SM, MINB, true>, &launch<T, TH, REG, SM, MINB, false> }

// fp32 rows of V = 32000 are 8000 slots (128 KB); bf16 rows 4000 slots (64 KB).
const Variant<float> kF32Variants[] = {
    // the current layout (1024 x 8 register slots, 1 block/SM), with one exp per logit
    FC_DEV_VARIANT(float, "t1024 r8 s0 (1/SM, exp once)", 1024, 8, 0, 1),
    // 512 x (8 register + 8 shared) slots: 64 KB of shared memory per block, 2 blocks/SM
    FC_DEV_VARIANT(float, "t512 r8 s8 (2/SM)", 512, 8, 8, 2),
    // 384 x (12 + 10) slots = 8448: 60 KB of shared memory, 2 blocks/SM, more registers
    FC_DEV_VARIANT(float, "t384 r12 s10 (2/SM)", 384, 12, 10, 2),
    // 256 x (8 + 24) slots: 96 KB of shared memory, 2 blocks/SM, 16 warps
    FC_DEV_VARIANT(float, "t256 r8 s24 (2/SM)", 256, 8, 24, 2),
};
const Variant<__nv_bfloat16> kBf16Variants[] = {
    // 512 x 8 register slots = 32768 logits, 2 blocks/SM
    FC_DEV_VARIANT(__nv_bfloat16, "t512 r8 s0 (2/SM)", 512, 8, 0, 2),
    // 256 x (8 + 8) slots: 32 KB of shared memory per block, 4 blocks/SM
    FC_DEV_VARIANT(__nv_bfloat16, "t256 r8 s8 (4/SM)", 256, 8, 8, 4),
    // 256 x (4 + 12) slots: 48 KB of shared memory per block, 4 blocks/SM, fewer registers
    FC_DEV_VARIANT(__nv_bfloat16, "t256 r4 s12 (4/SM)", 256, 4, 12, 4),
    // 128 x (8 + 24) slots: 48 KB of shared memory per block, 4 blocks/SM, 16 warps
    FC_DEV_VARIANT(__nv_bfloat16, "t128 r8 s24 (4/SM)", 128, 8, 24, 4),
};
#undef FC_DEV_VARIANT

constexpr int kNumF32 = int(sizeof(kF32Variants) / sizeof(kF32Variants[0]));
constexpr int kNumBf16 = int(sizeof(kBf16Variants) / sizeof(kBf16Variants[0]));

template <class T>
const Variant<T>& variant_of(int v);
template <>
const Variant<float>& variant_of<float>(int v) {
  return kF32Variants[v];
}
template <>
const Variant<__nv_bfloat16>& variant_of<__nv_bfloat16>(int v) {
  return kBf16Variants[v];
}

}  // namespace

int fused_classifier_variant_count(bool bf16) { return bf16 ? kNumBf16 : kNumF32; }
const char* fused_classifier_variant_name(bool bf16, int variant) {
  if (variant < 0 || variant >= fused_classifier_variant_count(bf16))
    fail("fused classifier (dev): no variant {} for {}", variant, bf16 ? "bf16" : "fp32");
  return bf16 ? kBf16Variants[variant].name : kF32Variants[variant].name;
}

// ---- host side (kernels/cuda/fused_classifier.cu's, with the row kernel chosen by `variant`) ----------
struct FusedClassifierDev::Impl {
  int variant = 0;
  cudaStream_t stream = nullptr;
  Status* d_status = nullptr;
  Status* h_status = nullptr;  // pinned
  float* scratch = nullptr;    // [2 * scratch_rows]
  int64_t scratch_rows = 0;

  bool pending = false;
  bool bf16 = false;
  const char* what = "fused classifier";
  const void* logits = nullptr;
  int64_t rows = 0, vocab = 0;
  FusedTargets targets;
  FusedClassifierParams params;

  ~Impl() {
    if (scratch) cudaFree(scratch);
    if (d_status) cudaFree(d_status);
    if (h_status) cudaFreeHost(h_status);
  }

  template <class T, bool kWriteGrad>
  void launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg, const FusedClassifierParams& p);

  template <class T>
  std::string describe_row(int64_t r) const {
    std::vector<T> h(static_cast<size_t>(vocab));
    FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), static_cast<const T*>(logits) + r * vocab,
                                  size_t(vocab) * sizeof(T), cudaMemcpyDeviceToHost));
    for (int64_t v = 0; v < vocab; ++v) {
      const float x = host_float(h[size_t(v)]);
      if (!(x - x == 0.f)) return fmt::format("logit[{}, {}] = {}", r, v, x);
    }
    return fmt::format("row {}", r);
  }
};

template <class T, bool kWriteGrad>
void FusedClassifierDev::Impl::launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg,
                                      const FusedClassifierParams& p) {
  what = kWriteGrad ? "fused classifier" : "fused loss";
  pending = false;
  constexpr bool kBf16 = sizeof(T) == 2;
  if (variant < 0 || variant >= fused_classifier_variant_count(kBf16))
    fail("{} (dev): no variant {} for {}", what, variant, kBf16 ? "bf16" : "fp32");
  if (T_ < 0) fail("{}: negative number of positions T = {}", what, T_);
  if (V_ < 1) fail("{}: empty vocabulary", what);
  if (V_ > INT32_MAX) fail("{}: vocabulary size {} exceeds int32 ids", what, V_);
  if (tg.k < 0) fail("{}: negative number of target slots k = {}", what, tg.k);
  if (!(p.lambda >= 0.f && p.lambda <= 1.f))
    fail("{}: lambda = {} must lie in [0, 1]", what, p.lambda);
  if (T_ > 0 && (z == nullptr || tg.gold == nullptr ||
                 (tg.k > 0 && (tg.target_ids == nullptr || tg.target_probs == nullptr))))
    fail("{}: null device pointer among the logits, gold ids and targets", what);
  if (reinterpret_cast<uintptr_t>(z) % sizeof(T) != 0)
    fail("{}: logits pointer is not aligned to its element size", what);
  bf16 = kBf16;
  logits = z;
  rows = T_;
  vocab = V_;
  targets = tg;
  params = p;
  if (T_ == 0) {
    pending = true;
    return;
  }

  float* clm = tg.clm_position;
  float* fus = tg.fusion_position;
  if (clm == nullptr || fus == nullptr) {
    if (scratch_rows < T_) {
      if (scratch) FUSELLM_CUDA_CHECK(cudaFree(scratch));
      scratch = nullptr;
      scratch_rows = 0;
      FUSELLM_CUDA_CHECK(cudaMalloc(&scratch, size_t(2 * T_) * sizeof(float)));
      scratch_rows = T_;
    }
    if (clm == nullptr) clm = scratch;
    if (fus == nullptr) fus = scratch + T_;
  }

  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_status, 0, sizeof(Status), stream));
  FUSELLM_CUDA_CHECK(cudaMemsetAsync(d_status, 0xff, 2 * sizeof(unsigned long long), stream));

  const int64_t check_blocks = std::min<int64_t>((T_ + 255) / 256, 4096);
  fc_rows::fused_check_kernel<<<unsigned(check_blocks), 256, 0, stream>>>(tg.gold, tg.target_ids,
                                                                 tg.target_probs, T_, V_, tg.k,
                                                                 d_status);
  FUSELLM_CUDA_CHECK(cudaGetLastError());

  const RowArgs<T> args{z,  tg.gold, tg.target_ids, tg.target_probs, T_, V_, tg.k, p.lambda,
                        p.reduction == LossReduction::kMean, clm, fus, d_status};
  const Variant<T>& var = variant_of<T>(variant);
  (kWriteGrad ? var.grad : var.loss)(args, stream, what);

  fc_rows::fused_totals_kernel<<<1, fc_rows::kTotalsThreads, 0, stream>>>(clm, fus, T_, d_status);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(h_status, d_status, sizeof(Status), cudaMemcpyDeviceToHost, stream));
  pending = true;
}

FusedClassifierDev::FusedClassifierDev(int variant, cudaStream_t stream)
    : impl_(std::make_unique<Impl>()) {
  impl_->variant = variant;
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_status, sizeof(Status)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_status, sizeof(Status)));
}

FusedClassifierDev::~FusedClassifierDev() = default;

void FusedClassifierDev::enqueue(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                                 const FusedClassifierParams& params) {
  impl_->launch<float, true>(logits, T, V, targets, params);
}
void FusedClassifierDev::enqueue(__nv_bfloat16* logits, int64_t T, int64_t V,
                                 const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, true>(logits, T, V, targets, params);
}
void FusedClassifierDev::enqueue_loss(const float* logits, int64_t T, int64_t V,
                                      const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<float, false>(const_cast<float*>(logits), T, V, targets, params);
}
void FusedClassifierDev::enqueue_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                                      const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, false>(const_cast<__nv_bfloat16*>(logits), T, V, targets, params);
}

FusedLossTotals FusedClassifierDev::finish() {
  Impl& im = *impl_;
  if (!im.pending) fail("fused classifier: finish() without a pending enqueue()");
  im.pending = false;
  FusedLossTotals out;
  if (im.rows == 0) return out;
  FUSELLM_CUDA_CHECK(cudaStreamSynchronize(im.stream));
  const Status st = *im.h_status;
  const char* what = im.what;
  const int64_t V = im.vocab, k = im.targets.k;
  if (st.check_bad != row::kNoError) {
    const auto e = row::decode_error(st.check_bad);
    if (e.kind == row::kGoldOutOfRange) {
      int32_t g = 0;
      FUSELLM_CUDA_CHECK(cudaMemcpy(&g, im.targets.gold + e.row, sizeof g, cudaMemcpyDeviceToHost));
      fail("{}: gold id {} at position {} is outside the vocabulary [0, {})", what, g, e.row, V);
    }
    int32_t id = 0;
    float p = 0.f;
    FUSELLM_CUDA_CHECK(cudaMemcpy(&id, im.targets.target_ids + e.row * k + e.slot, sizeof id,
                                  cudaMemcpyDeviceToHost));
    FUSELLM_CUDA_CHECK(cudaMemcpy(&p, im.targets.target_probs + e.row * k + e.slot, sizeof p,
                                  cudaMemcpyDeviceToHost));
    if (e.kind == row::kIdOutOfRange)
      fail("{}: fused target id {} at position {} (slot {}) is outside the vocabulary [0, {})", what,
           id, e.row, e.slot, V);
    fail("{}: fused target probability {} at position {} (slot {}) is not a finite non-negative "
         "number",
         what, p, e.row, e.slot);
  }
  if (st.run_bad != row::kNoError) {
    const auto e = row::decode_error(st.run_bad);
    if (e.kind == row::kNonFiniteLogit)
      fail("{}: non-finite logit at position {} ({})", what, e.row,
           im.bf16 ? im.describe_row<__nv_bfloat16>(e.row) : im.describe_row<float>(e.row));
    fail("{}: loss at position {} is not finite (the logit of a target id is -Inf)", what, e.row);
  }
  out.tokens = int64_t(st.tokens);
  const bool mean = im.params.reduction == LossReduction::kMean;
  const double div = mean ? (out.tokens > 0 ? double(out.tokens) : 1.0) : 1.0;
  out.clm = st.sum_clm / div;
  out.fusion = st.sum_fusion / div;
  out.loss = double(im.params.lambda) * out.clm + (1.0 - double(im.params.lambda)) * out.fusion;
  return out;
}

}  // namespace fusellm::cuda::dev
