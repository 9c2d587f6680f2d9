#pragma once
// The decoder's Backend (model/backend.hpp) on an NVIDIA GPU: the same op list as the CPU
// backend (cpu_backend.cpp, the reference), each op a kernel of kernels/cuda or a cuBLAS call,
// fp32, or with the GEMMs on tensor cores in bf16 (GemmMath). llama.cpp's split: the graph stays
// in decoder.cpp, this file says how each op runs on the GPU.
//
// Memory contract: every MatView and every std::span of floats or int32s handed to an op points
// to DEVICE memory the caller owns, with these exceptions, which are host data the backend
// uploads into its own scratch buffers (grown, never shrunk, so a steady state does no
// cudaMalloc): the RopeTable's cos/sin and AttentionShape::alibi. Ops are queued in order on the
// backend's stream; sync() waits for them (and reports an asynchronous kernel error there).
//
// Members are defined in cuda_backend.cpp (construction, scratch, the forward ops and the GEMMs
// of the backward pass, through cuBLAS), cuda_backend_backward.cpp (the other backward ops) and
// cuda_backend_memory.cpp (the memory the decoder allocates through the Backend interface).
#include <cuda_runtime_api.h>

#include <cstdint>
#include <memory>
#include <span>

#include "fusellm/model/backend.hpp"

namespace fusellm::model {

// How the linear layers' GEMMs (linear and the two backward GEMMs) compute:
//   kFp32  cublasSgemm without TF32: OpenBLAS's results up to the summation order;
//   kBf16  tensor cores through cuBLASLt (kernels/cuda/gemm_lt.hpp): both operands rounded to
//          bf16 (round to nearest even, repacked with a leading dimension the tensor-core kernels
//          take), products accumulated in fp32, an fp32 result (written in place where cuBLASLt
//          can, else into scratch and added by kernels/cuda/matrix_add). What autocast's bf16
//          matmul computes with fp32 outputs; everything else (norms, attention, activations,
//          the residual stream) stays fp32.
enum class GemmMath { kFp32, kBf16 };

class CudaBackend final : public Backend {
 public:
  // Uses GPU `device`, a stream and a cuBLAS handle of its own (and a cuBLASLt one for kBf16).
  // Throws fusellm::Error naming the failed call when there is no such device.
  explicit CudaBackend(int device = 0, GemmMath math = GemmMath::kFp32);
  GemmMath gemm_math() const;
  ~CudaBackend() override;
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  const char* name() const override { return "cuda"; }
  std::unique_ptr<PassScope> begin_pass() const override;
  cudaStream_t stream() const;
  void sync() const;  // waits for every queued op; throws on an asynchronous error

  // ---- memory (cuda_backend_memory.cpp): device memory, copies on stream() ------------------------
  bool host_memory() const override { return false; }
  std::unique_ptr<Memory> allocate(size_t bytes) const override;
  void copy_in(void* dst, const void* src, size_t bytes) const override;
  void copy_out(void* dst, const void* src, size_t bytes) const override;
  void zero(void* dst, size_t bytes) const override;
  void add(std::span<const float> x, std::span<float> y) const override;

  // ---- forward (cuda_backend.cpp) ----------------------------------------------------------------
  void embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
             ConstMatView pos_table, MatView x) const override;
  void copy(ConstMatView src, MatView dst) const override;
  void rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y) const override;
  void layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps,
                 MatView y) const override;
  void linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate) const override;
  void clamp(MatView x, float c) const override;
  void apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim) const override;
  void causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s,
                        MatView out) const override;
  void activation(Activation a, MatView x) const override;
  void activation(Activation a, ConstMatView x, MatView out) const override;
  void gated_activation(Activation a, MatView gate_up) const override;
  void gated_activation(Activation a, ConstMatView gate_up, MatView out) const override;

  // ---- backward: the GEMMs (cuda_backend.cpp) -----------------------------------------------------
  void linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate) const override;
  void linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw) const override;
  void bias_backward(ConstMatView dy, std::span<float> db) const override;

  // ---- backward: the rest (cuda_backend_backward.cpp) ---------------------------------------------
  void rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                        std::span<float> dw, bool accumulate) const override;
  void layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                          std::span<float> dw, std::span<float> db, bool accumulate) const override;
  void activation_backward(Activation a, ConstMatView pre, MatView dh) const override;
  void clamp_backward(ConstMatView y, float c, MatView dy) const override;
  void apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads,
                           int64_t head_dim) const override;
  void swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up) const override;
  void causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                                 std::span<const int32_t> doc_start, const AttentionShape& s,
                                 MatView dqkv) const override;
  void embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable) const override;

  // ---- host tables uploaded to scratch (cuda_backend.cpp) ------------------------------------------
  // Valid until the next upload of the same kind; the copy is queued on stream(), so kernels
  // queued after it on that stream see it.
  struct DeviceRope {
    const float* cos = nullptr;  // [T, half]
    const float* sin = nullptr;  // [T, half]
    int64_t half = 0;
  };
  DeviceRope upload_rope(const RopeTable& t) const;
  const float* upload_alibi(std::span<const float> slopes) const;  // nullptr when empty

 private:
  struct Impl;  // the device, stream, cuBLAS handle and scratch buffers
  std::unique_ptr<Impl> impl_;
};

}  // namespace fusellm::model
