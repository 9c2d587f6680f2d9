// Fused classifier on the GPU (fused_classifier.cuh): reproduces kernels/kokkos/fused_classifier.hpp
// (FusedClassifierFunctor, FusedTargetsCheckFunctor, run_fused_classifier).
//
// The math, per position i with g_i >= 0 (g_i < 0: padding), q_i = softmax(z_i),
// lse_i = logsumexp(z_i), S_i = sum_j P_ij (the kept mass; empty slots, id -1, count nothing):
//
//     CLM_i    = lse_i - z_i[g_i]
//     Fusion_i = sum_j P_ij (lse_i - z_i[id_ij]) = S_i lse_i - sum_j P_ij z_i[id_ij]
//     L_i      = lambda CLM_i + (1 - lambda) Fusion_i
//     dL/dz_i  = scale [ (lambda + (1 - lambda) S_i) q_i - lambda onehot(g_i) - (1 - lambda) P_i ]
//
// scale = 1/N under kMean (N = #{i : g_i >= 0}; 0 when N = 0), 1 under kSum. Padding rows get
// loss 0 and a zero gradient row. Totals: sum_i CLM_i / div, sum_i Fusion_i / div (div = N under
// kMean, 1 under kSum), loss = lambda clm + (1 - lambda) fusion, in double.
//
// Kernels, in stream order:
//  1. check (one thread per row, as FusedTargetsCheckFunctor): gold id >= V, target id < -1 or
//     >= V, target probability NaN/Inf/negative -> the minimum error code (row, slot, kind) by
//     atomicMin; N by atomicAdd. The main kernel reads both from device memory (no host round trip).
//  2. main, one block per row (a grid-stride loop over rows; fused_classifier_kernels.cuh, in the
//     configuration chosen below). Skips everything when (1) found an error, so bad targets leave
//     the logits untouched.
//       gathers: z[g] and z[id_j] (k + 1 loads, kept in shared memory for the fix-ups), and
//                sum_j P_ij z[id_j], S_i in double;
//       pass 1:  the row is read once in 16-byte slots (fusion_row_math.cuh) into registers and
//                shared memory (chunks of kThreads * (kReg + kSm) slots): per thread the max m_t
//                and sum_t exp(z - m_t), then one block reduction of (m, s, pz, S) gives
//                lse = M + log(S_sum);
//       pass 2:  g_v = c exp(z_v - lse), c = scale (lambda + (1 - lambda) S_i), computed from the
//                slots held on chip when the row is one chunk (every V of the models here), so
//                the row moves 8 bytes per logit in fp32 (read once, written once) and 4 in bf16;
//                longer rows are read again (from L2, mostly) chunk by chunk;
//       fix-ups: for each distinct id among g and the target ids, one thread recomputes
//                c exp(z_v - lse) from the gathered logit, subtracts scale lambda (v = g) and then
//                scale (1 - lambda) P_ij for every slot j with id_j = v, in slot order (the CPU's
//                order of subtraction: exactly its fp32 arithmetic), and stores it once (so a bf16
//                gradient is rounded once, after the cancellation).
//     NaN/+Inf logits (lse not finite; also a row of only -Inf) and non-finite losses (the logit of
//     a target id is -Inf) set the row's error code; the block leaves that row as it is.
//  3. totals: one block sums CLM_i and Fusion_i in double in a fixed order (deterministic).
// The host copies the 40-byte status back (pinned) and finish() turns codes into messages.
//
// Exp: expf (accurate) for fp32 logits, __expf (ex2.approx) for bf16 (Elem<T>::exp).
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
#include "cuda/fused_classifier.cuh"
#include "cuda/fused_classifier_kernels.cuh"
#include "cuda/fusion_row_math.cuh"
#include "fusellm/core/error.hpp"

namespace fusellm::cuda {

namespace {

using fc_rows::RowArgs;
using fc_rows::Status;

// The row kernel's configurations (fused_classifier_kernels.cuh): threads per block, 16-byte slots
// per thread in registers and in shared memory, blocks per SM the registers are sized for. The
// first are the fastest of dev/cuda's variants on an H200 at T = 16,384, V = 32,000, k = 10
// (benchmarks/RESULTS.md, second H200 call: % of a device-to-device copy of the same bytes):
//   bf16 gradient  t128 r8 s24, 4/SM  69.6 %   (one 1024-thread block per row: 35.7 %)
//   bf16 loss      t128 r8 s24, 4/SM  85.3 %   (43.4 %)
//   fp32 gradient  t256 r8 s24, 2/SM  74.0 %   (59.3 %)
//   fp32 loss      t512 r8 s8,  2/SM  88.9 %   (74.0 %)
// The fallbacks keep the row in registers only, for devices that give a block less shared memory
// than the first need (96 KB of slots: more than sm_86/sm_89's 99 KB less the k floats, at large k).
template <class T, bool kWriteGrad>
bool launch_fastest(const RowArgs<T>& a, cudaStream_t s, const char* what) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return fc_rows::launch_rows<T, 128, 8, 24, 4, kWriteGrad>(a, s, what, false);
  else if constexpr (kWriteGrad)
    return fc_rows::launch_rows<T, 256, 8, 24, 2, kWriteGrad>(a, s, what, false);
  else
    return fc_rows::launch_rows<T, 512, 8, 8, 2, kWriteGrad>(a, s, what, false);
}
template <class T, bool kWriteGrad>
void launch_row_kernel(const RowArgs<T>& a, cudaStream_t s, const char* what) {
  if (launch_fastest<T, kWriteGrad>(a, s, what)) return;
  if constexpr (std::is_same_v<T, __nv_bfloat16>)
    fc_rows::launch_rows<T, 512, 8, 0, 2, kWriteGrad>(a, s, what, true);
  else
    fc_rows::launch_rows<T, 1024, 8, 0, 1, kWriteGrad>(a, s, what, true);
}

float host_float(float x) { return x; }
float host_float(__nv_bfloat16 x) { return __bfloat162float(x); }

}  // namespace

// ---- host side ------------------------------------------------------------------------------------------------
struct FusedClassifier::Impl {
  cudaStream_t stream = nullptr;
  Status* d_status = nullptr;
  Status* h_status = nullptr;  // pinned
  float* scratch = nullptr;    // [2 * scratch_rows]: per-position terms when the caller wants none
  int64_t scratch_rows = 0;

  // The last enqueue, for finish() and its messages.
  bool pending = false;
  bool bf16 = false;
  const char* what = "fused classifier";
  const void* logits = nullptr;
  int64_t rows = 0, vocab = 0;
  FusedTargets targets;
  FusedClassifierParams params;

  ~Impl() {
    // No throwing from a destructor: errors here are ignored.
    if (scratch) cudaFree(scratch);
    if (d_status) cudaFree(d_status);
    if (h_status) cudaFreeHost(h_status);
  }

  template <class T, bool kWriteGrad>
  void launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg, const FusedClassifierParams& p);

  std::string describe_nonfinite_row(int64_t r) const;
  template <class T>
  std::string describe_row(int64_t r) const;
};

template <class T>
std::string FusedClassifier::Impl::describe_row(int64_t r) const {
  std::vector<T> h(static_cast<size_t>(vocab));
  FUSELLM_CUDA_CHECK(cudaMemcpy(h.data(), static_cast<const T*>(logits) + r * vocab, size_t(vocab) * sizeof(T),
                                cudaMemcpyDeviceToHost));
  for (int64_t v = 0; v < vocab; ++v) {
    const float x = host_float(h[size_t(v)]);
    if (!(x - x == 0.f)) return fmt::format("logit[{}, {}] = {}", r, v, x);
  }
  return fmt::format("row {}", r);
}

std::string FusedClassifier::Impl::describe_nonfinite_row(int64_t r) const {
  return bf16 ? describe_row<__nv_bfloat16>(r) : describe_row<float>(r);
}

template <class T, bool kWriteGrad>
void FusedClassifier::Impl::launch(T* z, int64_t T_, int64_t V_, const FusedTargets& tg,
                                   const FusedClassifierParams& p) {
  what = kWriteGrad ? "fused classifier" : "fused loss";
  pending = false;
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
  bf16 = sizeof(T) == 2;
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
  launch_row_kernel<T, kWriteGrad>(args, stream, what);

  fc_rows::fused_totals_kernel<<<1, fc_rows::kTotalsThreads, 0, stream>>>(clm, fus, T_, d_status);
  FUSELLM_CUDA_CHECK(cudaGetLastError());
  FUSELLM_CUDA_CHECK(cudaMemcpyAsync(h_status, d_status, sizeof(Status), cudaMemcpyDeviceToHost, stream));
  pending = true;  // only once everything is on the stream
}

FusedClassifier::FusedClassifier(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  FUSELLM_CUDA_CHECK(cudaMalloc(&impl_->d_status, sizeof(Status)));
  FUSELLM_CUDA_CHECK(cudaMallocHost(&impl_->h_status, sizeof(Status)));
}

FusedClassifier::~FusedClassifier() = default;

void FusedClassifier::enqueue(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                              const FusedClassifierParams& params) {
  impl_->launch<float, true>(logits, T, V, targets, params);
}
void FusedClassifier::enqueue(__nv_bfloat16* logits, int64_t T, int64_t V,
                              const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, true>(logits, T, V, targets, params);
}
void FusedClassifier::enqueue_loss(const float* logits, int64_t T, int64_t V,
                                   const FusedTargets& targets, const FusedClassifierParams& params) {
  // The loss-only kernel never writes the logits (kWriteGrad = false).
  impl_->launch<float, false>(const_cast<float*>(logits), T, V, targets, params);
}
void FusedClassifier::enqueue_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                                   const FusedTargets& targets, const FusedClassifierParams& params) {
  impl_->launch<__nv_bfloat16, false>(const_cast<__nv_bfloat16*>(logits), T, V, targets, params);
}

FusedLossTotals FusedClassifier::finish() {
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
      fail("{}: non-finite logit at position {} ({})", what, e.row, im.describe_nonfinite_row(e.row));
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

FusedLossTotals fused_classifier(float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                                 const FusedClassifierParams& params, cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_classifier(__nv_bfloat16* logits, int64_t T, int64_t V,
                                 const FusedTargets& targets, const FusedClassifierParams& params,
                                 cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_loss(const float* logits, int64_t T, int64_t V, const FusedTargets& targets,
                           const FusedClassifierParams& params, cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue_loss(logits, T, V, targets, params);
  return fc.finish();
}
FusedLossTotals fused_loss(const __nv_bfloat16* logits, int64_t T, int64_t V,
                           const FusedTargets& targets, const FusedClassifierParams& params,
                           cudaStream_t stream) {
  FusedClassifier fc(stream);
  fc.enqueue_loss(logits, T, V, targets, params);
  return fc.finish();
}

}  // namespace fusellm::cuda
