#pragma once
// The linear layers' matmuls through cuBLASLt (issue 15): bf16 operands, fp32 accumulation
// (CUBLAS_COMPUTE_32F, fp32 alpha and beta), an fp32 or bf16 output, the bias fused into the
// GEMM's epilogue (CUBLASLT_EPILOGUE_BIAS) instead of a second pass over y. The fp32 twins are
// CudaBackend::linear, linear_backward_input and linear_backward_weight (model/cuda/cuda_backend.cpp,
// cublasSgemm) and the CPU ops they mirror (model/cpu); the shapes and names below are theirs.
//
// All matrices are row-major from the caller's side (LtMat: element (r, c) at p[r * ld + c]), the
// weights W [N, K] as torch.nn.Linear stores them (N outputs, K inputs), M the number of tokens:
//
//   forward          y  [M, N]  = x [M, K] W [N, K]^T (+ bias [N] on every row) (+ y if accumulate)
//   backward_input   dx [M, K]  = dy [M, N] W [N, K]                             (+ dx if accumulate)
//   backward_weight  dW [N, K] += dy [M, N]^T x [M, K]                           (always accumulates)
//
// x, W and dy are bf16; bias, dx and dW are fp32; y is fp32 (the residual stream) or bf16. With
// accumulate false the output is only written (beta = 0: cuBLAS does not read it, so whatever it
// held, NaN included, is gone). Each product's terms are exact in fp32 (8-bit significands), so
// an fp32 output differs from the exact sum of the bf16 inputs' products by the accumulation's
// rounding only; a bf16 output adds one rounding of the result to bf16.
//
// How it maps onto cuBLASLt (column-major, as cuda_backend.cpp maps cublasSgemm): a row-major
// A [r, c] with leading dimension ld is, read column-major, A^T [c, r] with the same ld, so each
// product is computed transposed, operands swapped and every ld passed as it is:
//   forward          y^T  [N, M] = op_T(W^T [K, N]) x^T [K, M]      (m N, n M, k K; A = W "T", B = x "N")
//   backward_input   dx^T [K, M] = W^T [K, N] dy^T [N, M]           (m K, n M, k N; A = W "N", B = dy "N")
//   backward_weight  dW^T [K, N] = x^T [K, M] op_T(dy^T [N, M])     (m K, n N, k M; A = x "N", B = dy "T")
// The bias is then a vector along D's rows (N of them), which is what the epilogue broadcasts.
//
// Alignment: REFUSED, never a slower path. cuBLASLt's bf16 tensor-core kernels load 16 bytes at a
// time, so every matrix pointer and the bias pointer must be 16-byte aligned, and every leading
// dimension a multiple of 16 bytes: 8 elements for bf16 (x, W, dy, a bf16 y), 4 for fp32 (y, dx,
// dW). A call that breaks a rule throws fusellm::Error naming the call, every operand's shape,
// leading dimension and type, and the rule, before anything is enqueued. M, N and K themselves may
// be anything >= 0 (1, odd, not multiples of 8): only the strides and pointers are constrained.
// Views with ld > cols are fine (the padding is neither read nor written). An empty output returns
// at once; a sum over no terms (K = 0 forward, N = 0 backward_input) is refused unless it would
// leave the output as it is (accumulate, no bias), and backward_weight with M = 0 does nothing.
//
// Plans: the first call of a shape (operation, m/n/k, leading dimensions, output type, bias or
// not, and the pointers' alignments: the heuristic's algorithm may rely on them) builds the matmul
// descriptor and the three layouts and asks cublasLtMatmulAlgoGetHeuristic for the best algorithm
// within the workspace; later calls of that shape reuse them (heuristic_queries() counts the
// queries). At most kMaxPlans shapes are kept; one more clears the cache.
//
// One handle and one workspace (allocated once, kWorkspaceBytes by default) serve every call, so
// calls must be ordered among themselves: one stream, or streams ordered with events. The methods
// are safe to call from several threads (a mutex guards the cache), but two calls that may run at
// the same time on unordered streams would share the workspace. Use the object on the device that
// was current when it was made, and destroy it after the GPU work it enqueued is done.
// Includable from C++17 (nvcc) and C++20; definitions in gemm_lt.cu.
#include <cuda_bf16.h>
#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace fusellm::cuda {

// A row-major matrix in device memory: element (r, c) at p[r * ld + c], ld >= cols.
template <class T>
struct LtMat {
  T* p = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
};
using LtIn = LtMat<const __nv_bfloat16>;

class LtGemm {
 public:
  static constexpr size_t kWorkspaceBytes = size_t(32) << 20;  // cuBLAS's advice for Hopper
  static constexpr size_t kMaxPlans = 128;

  explicit LtGemm(size_t workspace_bytes = kWorkspaceBytes);  // cublasLtCreate + one cudaMalloc
  ~LtGemm();
  LtGemm(LtGemm&&) noexcept;
  LtGemm& operator=(LtGemm&&) noexcept;
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // y [M, N] = x [M, K] W [N, K]^T (+ bias [N], fp32, when not null) (+ y when accumulate).
  void forward(LtIn x, LtIn w, const float* bias, LtMat<float> y, bool accumulate, cudaStream_t stream);
  void forward(LtIn x, LtIn w, const float* bias, LtMat<__nv_bfloat16> y, bool accumulate, cudaStream_t stream);
  // dx [M, K] = dy [M, N] W [N, K] (+ dx when accumulate).
  void backward_input(LtIn dy, LtIn w, LtMat<float> dx, bool accumulate, cudaStream_t stream);
  // dW [N, K] += dy [M, N]^T x [M, K].
  void backward_weight(LtIn dy, LtIn x, LtMat<float> dw, cudaStream_t stream);

  int64_t heuristic_queries() const;  // cublasLtMatmulAlgoGetHeuristic calls so far
  int64_t plans() const;              // shapes cached now

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace fusellm::cuda
