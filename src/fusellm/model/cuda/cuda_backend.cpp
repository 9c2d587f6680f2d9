// The CudaBackend's construction, its scratch uploads, the forward ops and the backward pass's
// GEMMs (cuda_backend.hpp states the memory contract). Each op checks its shapes as the CPU
// function it mirrors does (ops.hpp, train_ops.hpp) and queues one kernel of kernels/cuda or one
// cuBLAS call on the backend's stream; nothing here waits for the GPU except sync() and a
// scratch buffer's growth.
//
// GEMMs: cuBLAS is column-major. A row-major view A [r, c] with leading dimension ld is, read
// column-major, the matrix A^T [c, r] with the same ld. So a row-major product C = op(A) op(B)
// is computed as the column-major C^T = op(B)^T op(A)^T: the operands swap places and keep their
// own transposition flags, m and n swap, and every ld is passed as it is. fp32 throughout:
// cublasSgemm under CUBLAS_DEFAULT_MATH, which never uses TF32 for it, so the results differ from
// OpenBLAS's by the summation order only. GemmMath::kBf16 runs the same three products through
// cuBLASLt on bf16 copies of the operands (kernels/cuda/gemm_lt.hpp states its row-major API).
#include "fusellm/model/cuda/cuda_backend.hpp"

#include <cublas_v2.h>
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdint>
#include <mutex>
#include <optional>
#include <vector>

#include "cuda/activations.cuh"
#include "cuda/attention.cuh"
#include "cuda/bf16_convert.cuh"
#include "cuda/bias.cuh"
#include "cuda/cublas_check.hpp"
#include "cuda/cuda_check.hpp"
#include "cuda/device_buffer.hpp"
#include "cuda/embedding.cuh"
#include "cuda/gemm_lt.hpp"
#include "cuda/layernorm.cuh"
#include "cuda/matrix_add.cuh"
#include "cuda/rmsnorm.cuh"
#include "cuda/rope.cuh"
#include "fusellm/core/error.hpp"
#include "fusellm/model/cuda/act_kind.hpp"

namespace fusellm::model {

namespace {

struct StreamDestroy {
  void operator()(cudaStream_t s) const { cudaStreamDestroy(s); }
};
struct CublasDestroy {
  void operator()(cublasHandle_t h) const { cublasDestroy(h); }
};

// A device buffer grown to fit and never shrunk (a bf16 GEMM's repacked operand, its fp32 result,
// an upload): a steady state of passes allocates nothing. Growth waits for kernels that may read
// the old block.
template <class T>
struct Scratch {
  cuda::DevPtr<T> dev;
  size_t capacity = 0;
  T* get(size_t n, cudaStream_t stream) {
    if (capacity < n) {
      FUSELLM_CUDA_CHECK(cudaStreamSynchronize(stream));
      dev.reset();
      dev = cuda::dev_alloc<T>(n);
      capacity = n;
    }
    return dev.get();
  }
};

// A device copy of host floats in a Scratch. The last upload's host values are kept: the decoder
// hands every layer the same RoPE table and ALiBi slopes, which then cost a host comparison
// instead of a copy.
struct Upload {
  Scratch<float> buf;
  std::vector<float> last;
  bool valid = false;

  const float* put(std::span<const float> v, cudaStream_t stream) {
    if (valid && std::equal(v.begin(), v.end(), last.begin(), last.end())) return buf.dev.get();
    valid = false;
    float* d = buf.get(v.size(), stream);
    if (!v.empty()) FUSELLM_CUDA_CHECK(cudaMemcpyAsync(d, v.data(), v.size_bytes(), cudaMemcpyHostToDevice, stream));
    last.assign(v.begin(), v.end());
    valid = true;
    return d;
  }
};

// A row-major view's leading dimension as cuBLAS and cudaMemcpy2D want it: at least the row
// width (a one-row view may carry any ld) and at least 1.
int64_t pitch(int64_t rows, int64_t cols, int64_t ld) {
  return rows <= 1 ? std::max<int64_t>({ld, cols, 1}) : ld;
}
int64_t pitch(ConstMatView v) { return pitch(v.rows, v.cols, v.ld); }
int64_t pitch(MatView v) { return pitch(v.rows, v.cols, v.ld); }

struct SetDevice final : Backend::PassScope {
  explicit SetDevice(int device) { FUSELLM_CUDA_CHECK(cudaSetDevice(device)); }
};

}  // namespace

struct CudaBackend::Impl {
  int device = 0;
  std::unique_ptr<CUstream_st, StreamDestroy> stream;
  std::unique_ptr<cublasContext, CublasDestroy> cublas;  // destroyed before the stream it uses
  // The scratch uploads; the mutex makes an upload and the kernel reading it one step in the
  // stream's order when several threads queue ops.
  std::mutex scratch_mutex;
  Upload rope_cos, rope_sin, alibi;

  DeviceRope rope(const RopeTable& t) {
    if (t.cos.size() != t.sin.size())
      fail("cuda backend: RoPE table with {} cos and {} sin values", t.cos.size(), t.sin.size());
    DeviceRope r;
    r.cos = rope_cos.put(t.cos, stream.get());
    r.sin = rope_sin.put(t.sin, stream.get());
    r.half = t.half;
    return r;
  }
  const float* slopes(std::span<const float> s) { return s.empty() ? nullptr : alibi.put(s, stream.get()); }

  // C [m, n] = alpha op(A) op(B) + beta C, all column-major (see the top of this file).
  void gemm(bool ta, bool tb, int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
            int64_t ldb, float beta, float* c, int64_t ldc) {
    const float alpha = 1.f;
    FUSELLM_CUBLAS_CHECK(cublasSgemm(cublas.get(), ta ? CUBLAS_OP_T : CUBLAS_OP_N, tb ? CUBLAS_OP_T : CUBLAS_OP_N,
                                     int(m), int(n), int(k), &alpha, a, int(lda), b, int(ldb), &beta, c, int(ldc)));
  }
  // ---- GemmMath::kBf16 -------------------------------------------------------------------------------
  GemmMath math = GemmMath::kFp32;
  std::optional<cuda::LtGemm> lt;
  // One product at a time: its operands' and result's scratch are shared, and the ops of several
  // threads on one backend would otherwise interleave between the repacking and the GEMM.
  std::mutex gemm_mutex;
  Scratch<__nv_bfloat16> a16, b16;
  Scratch<float> out32;

  // v rounded to bf16 in `s`, with a leading dimension of a multiple of 8 elements (16 bytes).
  cuda::LtIn bf16(ConstMatView v, Scratch<__nv_bfloat16>& s) {
    const int64_t ld = (std::max<int64_t>(v.cols, 1) + 7) / 8 * 8;
    __nv_bfloat16* p = s.get(size_t(std::max<int64_t>(v.rows, 1) * ld), stream.get());
    cuda::f32_to_bf16_2d(p, ld, v.p, pitch(v), v.rows, v.cols, stream.get());
    return {p, v.rows, v.cols, ld};
  }
  // run(out, accumulate) computes the product into `out` (+ out when accumulate): y itself when
  // cuBLASLt can write it (16-byte aligned, ld a multiple of 4 floats), else a zeroed scratch that
  // matrix_add then stores into (or adds to) y.
  template <class Run>
  void into(MatView y, bool accumulate, Run&& run) {
    const int64_t ld = pitch(y);
    if (reinterpret_cast<uintptr_t>(y.p) % 16 == 0 && ld % 4 == 0) {
      run(cuda::LtMat<float>{y.p, y.rows, y.cols, ld}, accumulate);
      return;
    }
    const int64_t sld = (y.cols + 3) / 4 * 4;
    float* s = out32.get(size_t(y.rows * sld), stream.get());
    FUSELLM_CUDA_CHECK(cudaMemsetAsync(s, 0, size_t(y.rows * sld) * sizeof(float), stream.get()));
    run(cuda::LtMat<float>{s, y.rows, y.cols, sld}, true);
    cuda::matrix_add(y.p, ld, s, sld, y.rows, y.cols, accumulate, stream.get());
  }

  void zero(MatView v) {
    if (v.rows && v.cols)
      FUSELLM_CUDA_CHECK(cudaMemset2DAsync(v.p, size_t(pitch(v)) * sizeof(float), 0, size_t(v.cols) * sizeof(float),
                                           size_t(v.rows), stream.get()));
  }
};

CudaBackend::CudaBackend(int device, GemmMath math) : impl_(std::make_unique<Impl>()) {
  const int n = cuda::device_count();
  if (n == 0) fail("CudaBackend: no usable CUDA device: {}", cuda::device_description());
  if (device < 0 || device >= n) fail("CudaBackend: device {} does not exist ({} CUDA devices)", device, n);
  impl_->device = device;
  FUSELLM_CUDA_CHECK(cudaSetDevice(device));
  cudaStream_t s = nullptr;
  // A blocking stream: it synchronizes with the legacy default stream, so callers' plain
  // cudaMemcpy calls are ordered with the backend's ops.
  FUSELLM_CUDA_CHECK(cudaStreamCreate(&s));
  impl_->stream.reset(s);
  cublasHandle_t h = nullptr;
  FUSELLM_CUBLAS_CHECK(cublasCreate(&h));
  impl_->cublas.reset(h);
  impl_->math = math;
  if (math == GemmMath::kBf16) impl_->lt.emplace();
  FUSELLM_CUBLAS_CHECK(cublasSetStream(h, s));
  FUSELLM_CUBLAS_CHECK(cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
}

CudaBackend::~CudaBackend() {
  if (impl_ && impl_->stream) cudaStreamSynchronize(impl_->stream.get());  // no throw from a destructor
}

std::unique_ptr<Backend::PassScope> CudaBackend::begin_pass() const {
  return std::make_unique<SetDevice>(impl_->device);
}

cudaStream_t CudaBackend::stream() const { return impl_->stream.get(); }

GemmMath CudaBackend::gemm_math() const { return impl_->math; }

void CudaBackend::sync() const { FUSELLM_CUDA_CHECK(cudaStreamSynchronize(stream())); }

CudaBackend::DeviceRope CudaBackend::upload_rope(const RopeTable& t) const {
  std::lock_guard lock(impl_->scratch_mutex);
  return impl_->rope(t);
}

const float* CudaBackend::upload_alibi(std::span<const float> slopes) const {
  std::lock_guard lock(impl_->scratch_mutex);
  return impl_->slopes(slopes);
}

// ---- forward ------------------------------------------------------------------------------------

void CudaBackend::embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
                        ConstMatView pos_table, MatView x) const {
  const int64_t T = int64_t(ids.size()), Hd = x.cols;
  const bool learned = pos_table.rows > 0;
  if (x.rows != T || table.cols != Hd || (learned && (pos_table.cols != Hd || int64_t(positions.size()) != T)))
    fail("embed: shapes do not agree: {} ids, table [{}, {}], positions table [{}, {}], x [{}, {}]", T, table.rows,
         table.cols, pos_table.rows, pos_table.cols, x.rows, x.cols);
  cuda::embed_forward(ids.data(), table.p, table.ld, learned ? positions.data() : nullptr,
                      learned ? pos_table.p : nullptr, pos_table.ld, x.p, x.ld, T, Hd, stream());
}

void CudaBackend::copy(ConstMatView src, MatView dst) const {
  if (src.rows != dst.rows || src.cols != dst.cols)
    fail("copy: [{}, {}] into [{}, {}]", src.rows, src.cols, dst.rows, dst.cols);
  if (src.rows == 0 || src.cols == 0) return;
  // Contiguous on both sides: one linear copy (cudaMemcpy2D's pitches are limited to
  // cudaDevAttrMaxPitch, about 2 GiB, which a 1 x P view of a 1B-parameter buffer exceeds).
  if ((src.rows == 1 || src.ld == src.cols) && (dst.rows == 1 || dst.ld == dst.cols)) {
    FUSELLM_CUDA_CHECK(cudaMemcpyAsync(dst.p, src.p, size_t(src.rows * src.cols) * sizeof(float),
                                       cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  FUSELLM_CUDA_CHECK(cudaMemcpy2DAsync(dst.p, size_t(pitch(dst)) * sizeof(float), src.p,
                                       size_t(pitch(src)) * sizeof(float), size_t(src.cols) * sizeof(float),
                                       size_t(src.rows), cudaMemcpyDeviceToDevice, stream()));
}

void CudaBackend::rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y) const {
  if (int64_t(w.size()) != x.cols || y.rows != x.rows || y.cols != x.cols)
    fail("rmsnorm: shapes do not agree: x [{}, {}], w [{}], y [{}, {}]", x.rows, x.cols, w.size(), y.rows, y.cols);
  cuda::rmsnorm_forward_strided(x.p, x.ld, w.data(), eps, y.p, y.ld, x.rows, x.cols, stream());
}

void CudaBackend::layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps,
                            MatView y) const {
  if (int64_t(w.size()) != x.cols || (!b.empty() && int64_t(b.size()) != x.cols) || y.rows != x.rows ||
      y.cols != x.cols)
    fail("layernorm: shapes do not agree: x [{}, {}], w [{}], b [{}], y [{}, {}]", x.rows, x.cols, w.size(), b.size(),
         y.rows, y.cols);
  cuda::layernorm_forward(x.p, x.ld, w.data(), b.empty() ? nullptr : b.data(), eps, y.p, y.ld, x.rows, x.cols,
                          stream());
}

// y [M, N] = x [M, K] W [N, K]^T (+ y) (+ b): column-major y^T [N, M] = op_T(W^T [K, N]) x^T [K, M].
void CudaBackend::linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate) const {
  if (x.cols != w.cols || y.rows != x.rows || y.cols != w.rows || (!b.empty() && int64_t(b.size()) != w.rows))
    fail("linear: shapes do not agree: x [{}, {}], W [{}, {}], b [{}], y [{}, {}]", x.rows, x.cols, w.rows, w.cols,
         b.size(), y.rows, y.cols);
  const int64_t M = x.rows, N = w.rows, K = x.cols;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!accumulate) impl_->zero(y);
  } else if (impl_->lt) {
    std::lock_guard lock(impl_->gemm_mutex);
    const cuda::LtIn xb = impl_->bf16(x, impl_->a16), wb = impl_->bf16(w, impl_->b16);
    impl_->into(y, accumulate,
                [&](cuda::LtMat<float> out, bool acc) { impl_->lt->forward(xb, wb, nullptr, out, acc, stream()); });
  } else {
    impl_->gemm(true, false, N, M, K, w.p, pitch(w), x.p, pitch(x), accumulate ? 1.f : 0.f, y.p, pitch(y));
  }
  if (!b.empty()) cuda::bias_add(y.p, y.ld, b.data(), M, N, stream());
}

void CudaBackend::clamp(MatView x, float c) const { cuda::clamp_forward(x.p, x.ld, x.rows, x.cols, c, stream()); }

void CudaBackend::apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim) const {
  if (t.half < 0 || 2 * t.half > head_dim || col0 < 0 || heads < 0 || col0 + heads * head_dim > x.cols ||
      int64_t(t.cos.size()) < x.rows * t.half)
    fail("apply_rope: shapes do not agree: table [{} values, half {}], x [{}, {}], col0 {}, {} heads of {}",
         t.cos.size(), t.half, x.rows, x.cols, col0, heads, head_dim);
  if (x.rows == 0 || heads == 0 || t.half == 0) return;
  std::lock_guard lock(impl_->scratch_mutex);
  const DeviceRope r = impl_->rope(t);
  cuda::rope_forward(x.p, x.ld, x.rows, col0, heads, head_dim, r.cos, r.sin, r.half, stream());
}

void CudaBackend::causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s,
                                   MatView out) const {
  const int64_t T = qkv.rows, H = s.heads, KV = s.kv_heads, D = s.head_dim;
  if (KV <= 0 || H % KV) fail("attention: {} heads are not a multiple of {} KV heads", H, KV);
  if (qkv.cols != (H + 2 * KV) * D || out.cols != H * D || out.rows != T || int64_t(doc_start.size()) != T ||
      (!s.alibi.empty() && int64_t(s.alibi.size()) != H))
    fail("attention: shapes do not agree: qkv [{}, {}], {} heads, {} KV heads of {}, out [{}, {}], {} document starts, "
         "{} ALiBi slopes",
         qkv.rows, qkv.cols, H, KV, D, out.rows, out.cols, doc_start.size(), s.alibi.size());
  if (D > cuda::kAttentionMaxHeadDim)
    fail("attention: head_dim {} is above the CUDA kernel's {}", D, cuda::kAttentionMaxHeadDim);
  if (T == 0) return;
  std::lock_guard lock(impl_->scratch_mutex);
  const float* slopes = impl_->slopes(s.alibi);
  cuda::attention_forward(qkv.p, qkv.ld, doc_start.data(), T, H, KV, D, s.scale, s.sliding_window, slopes, out.p,
                          out.ld, stream());
}

void CudaBackend::activation(Activation a, MatView x) const {
  cuda::activation_forward(act_kind(a), x.p, x.ld, x.p, x.ld, x.rows, x.cols, stream());
}

void CudaBackend::activation(Activation a, ConstMatView x, MatView out) const {
  if (out.rows != x.rows || out.cols != x.cols)
    fail("activation: input [{}, {}] and output [{}, {}] do not agree", x.rows, x.cols, out.rows, out.cols);
  cuda::activation_forward(act_kind(a), x.p, x.ld, out.p, out.ld, x.rows, x.cols, stream());
}

void CudaBackend::gated_activation(Activation a, MatView gate_up) const {
  if (gate_up.cols % 2) fail("gated_activation: odd width {}", gate_up.cols);
  cuda::gated_activation_forward(act_kind(a), gate_up.p, gate_up.ld, gate_up.p, gate_up.ld, gate_up.rows,
                                 gate_up.cols / 2, stream());
}

void CudaBackend::gated_activation(Activation a, ConstMatView gate_up, MatView out) const {
  if (gate_up.cols % 2 || out.cols != gate_up.cols / 2 || out.rows != gate_up.rows)
    fail("gated_activation: [gate | up] [{}, {}] and output [{}, {}] do not agree", gate_up.rows, gate_up.cols,
         out.rows, out.cols);
  cuda::gated_activation_forward(act_kind(a), gate_up.p, gate_up.ld, out.p, out.ld, gate_up.rows, out.cols,
                                 stream());
}

// ---- backward: the GEMMs ------------------------------------------------------------------------

// dx [M, K] = dy [M, N] W [N, K] (+ dx): column-major dx^T [K, M] = W^T [K, N] dy^T [N, M].
void CudaBackend::linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate) const {
  if (dy.rows != dx.rows || dy.cols != w.rows || w.cols != dx.cols)
    fail("linear_backward_input: shapes dy [{}, {}], W [{}, {}], dx [{}, {}] do not agree", dy.rows, dy.cols,
         w.rows, w.cols, dx.rows, dx.cols);
  if (dx.rows == 0 || dx.cols == 0) return;
  if (dy.cols == 0) {
    if (!accumulate) impl_->zero(dx);
    return;
  }
  if (impl_->lt) {
    std::lock_guard lock(impl_->gemm_mutex);
    const cuda::LtIn dyb = impl_->bf16(dy, impl_->a16), wb = impl_->bf16(w, impl_->b16);
    impl_->into(dx, accumulate,
                [&](cuda::LtMat<float> out, bool acc) { impl_->lt->backward_input(dyb, wb, out, acc, stream()); });
    return;
  }
  impl_->gemm(false, false, dx.cols, dx.rows, dy.cols, w.p, pitch(w), dy.p, pitch(dy), accumulate ? 1.f : 0.f,
              dx.p, pitch(dx));
}

// dW [N, K] += dy [M, N]^T x [M, K]: column-major dW^T [K, N] += x^T [K, M] op_T(dy^T [N, M]).
void CudaBackend::linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw) const {
  if (dy.rows != x.rows || dw.rows != dy.cols || dw.cols != x.cols)
    fail("linear_backward_weight: shapes dy [{}, {}], x [{}, {}], dW [{}, {}] do not agree", dy.rows, dy.cols,
         x.rows, x.cols, dw.rows, dw.cols);
  if (dy.rows == 0 || dw.rows == 0 || dw.cols == 0) return;
  if (impl_->lt) {  // dW += ...: cuBLASLt's backward_weight always accumulates
    std::lock_guard lock(impl_->gemm_mutex);
    const cuda::LtIn dyb = impl_->bf16(dy, impl_->a16), xb = impl_->bf16(x, impl_->b16);
    impl_->into(dw, true, [&](cuda::LtMat<float> out, bool) { impl_->lt->backward_weight(dyb, xb, out, stream()); });
    return;
  }
  impl_->gemm(false, true, dw.cols, dw.rows, dy.rows, x.p, pitch(x), dy.p, pitch(dy), 1.f, dw.p, pitch(dw));
}

void CudaBackend::bias_backward(ConstMatView dy, std::span<float> db) const {
  if (int64_t(db.size()) != dy.cols) fail("bias_backward: {} biases for {} columns", db.size(), dy.cols);
  cuda::bias_column_sums(dy.p, dy.ld, dy.rows, dy.cols, db.data(), stream());
}

}  // namespace fusellm::model
