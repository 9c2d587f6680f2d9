#pragma once
// The optimizer step on the GPU: AdamW over a flat fp32 parameter range in one fused kernel, the
// global gradient norm by a deterministic two-stage reduction, and the clipping coefficient,
// reproducing the CPU optimizer (src/fusellm/optim: adamw.cpp AdamW::step, grad_clip.cpp
// grad_sq_sum / clip_coef / clip_to_norm) element for element.
//
// A training step with no host round trip:
//   grad_sq_sum(sq, grads + begin, end - begin, ws, s)   sum of squares of the range, in double
//   (data parallel: all-reduce sq over the ranks, as dist/zero1.cpp does)
//   clip_coef(coef, norm, sq, max_norm, s)               the norm and min(max_norm/(norm+1e-6), 1)
//   adamw_step(range, adamw_scalars(opt, lr, t), coef, s)
// Gradients are scaled by the coefficient inside the AdamW kernel, in a register: unlike the CPU's
// scale_grads the gradient buffer is left unscaled (it is zeroed for the next step anyway).
//
// Exactness (tests/backend/test_adamw_cuda.cpp checks it against AdamW::step): every fp32
// operation of the CPU update is spelled out with a round-to-nearest intrinsic (__fmul_rn,
// __fadd_rn, __fdiv_rn, __fsqrt_rn) or an explicit fmaf where the CPU calls std::fma, so nvcc
// contracts nothing: given the same gradients and coefficient, m, v and the weights are the CPU's
// bits (a host emulation of this kernel's operations matched AdamW::step of the x86-64-v3 build
// bit for bit over 20 steps). The weight update p * decay + step is two roundings, as in torch
// (param.mul_ then addcdiv_); a CPU build that contracted it into one fma would differ there by
// at most an ulp of the weight per step. The coefficient from clip_coef may differ from the CPU's
// by an ulp when the two norms' different summation orders round to different floats.
//
// Host declarations only (includable from C++20 and C++17); kernels in adamw.cu.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstdint>

namespace fusellm::cuda {

// AdamW's hyperparameters (fusellm::AdamWOptions, repeated here because optim/adamw.hpp needs
// C++20).
struct AdamWHyper {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// The fp32 scalars of one step, rounded from doubles where and as AdamW::step rounds them.
struct AdamWScalars {
  float lerp_w = 0;           // 1 - beta1
  float beta2 = 0;
  float one_minus_beta2 = 0;
  float bc2_sqrt = 0;         // (1 - beta2^t) ** 0.5
  float eps = 0;
  float neg_step_size = 0;    // -lr / (1 - beta1^t)
  float decay = 1;            // 1 - lr * weight_decay, for the parameters that decay
};
// t is the step count after this step's increment (AdamW::steps() once it has stepped): 1 first.
AdamWScalars adamw_scalars(const AdamWHyper& h, double lr, int64_t t);

// One range [offset, offset + n) of flat buffers laid out by a ParamTable (a ZeRO-1 shard, or the
// whole buffer). Device pointers.
struct AdamWRange {
  float* params = nullptr;             // fp32 master weights, the WHOLE buffer: element offset + i
  const float* grads = nullptr;        // gradients, the whole buffer (read, never written)
  float* m = nullptr;                  // exp_avg of the range: n floats, element i
  float* v = nullptr;                  // exp_avg_sq of the range: n floats, element i
  __nv_bfloat16* params_bf16 = nullptr;  // optional: the whole buffer in bf16, element offset + i
                                         // written with the updated weight (round to nearest even)
  int64_t offset = 0;
  int64_t n = 0;
  // The parameters exempt from weight decay, as sorted absolute flat offsets b0 <= e0 <= b1 <= e1
  // ...: element j is exempt when b_k <= j < e_k for some k (cuda/adamw.hpp builds them from a
  // ParamTable with hf_trainer_decays, as flat_param_grads decides). nullptr/0: all decay.
  const int64_t* no_decay_bounds = nullptr;
  int64_t n_bounds = 0;
  // Optional: set to the smallest absolute flat index whose updated weight, m or v is Inf or NaN
  // (atomicMin; the caller initializes it to UINT64_MAX). AdamW::step reports the first tensor
  // with one; ParamTable maps the index to that tensor.
  unsigned long long* first_nonfinite = nullptr;
};

// The AdamW step on the range. The gradients are multiplied by the clipping coefficient first:
// *grad_scale (device, from clip_coef) when grad_scale is not null, else host_grad_scale (1: no
// clipping). Launches one thread per element on `stream`; throws fusellm::Error on bad arguments
// or a CUDA error at launch.
void adamw_step(const AdamWRange& r, const AdamWScalars& k, const float* grad_scale, float host_grad_scale,
                cudaStream_t stream);

// The workspace grad_sq_sum needs: this many doubles of device memory.
constexpr int64_t kGradSqSumWorkspace = 1024;

// *sum = sum of grads[i]^2 over i < n, each square exact in double and summed in double in a fixed
// order that depends on n only (a partition of n into at most kGradSqSumWorkspace blocks, then a
// tree in each block, then one block over the partial sums), so the same gradients give the same
// bits on every run. The CPU's grad_sq_sum sums the same exact squares in another order
// (grad_clip.cpp: lane-wise partial sums of omp simd, thread chunks): both are within
// (n - 1) * 2^-53 * sum of the exact sum, so they differ by at most 2 (n - 1) 2^-53 relative.
void grad_sq_sum(double* sum, const float* grads, int64_t n, double* workspace, cudaStream_t stream);

// From a sum of squares (all-reduced over ranks where data-parallel): *norm = sqrt(sq) (double; may
// be null) and *coef = the factor clip_to_norm scales the gradients by: 1 when max_norm <= 0 or
// clip_coef(norm, max_norm) >= 1, else clip_coef (grad_clip.cpp, in fp32 as it computes it; NaN
// stays NaN, an infinite norm gives 0). One thread.
void clip_coef(float* coef, double* norm, const double* sq_sum, double max_norm, cudaStream_t stream);

}  // namespace fusellm::cuda
