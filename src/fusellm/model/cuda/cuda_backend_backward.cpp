// The CudaBackend's backward ops other than the GEMMs: shape checks as the CPU functions make
// them (train_ops.hpp; errors name the op and the shapes), then the kernels of kernels/cuda
// (*_backward.cuh, each stating its math and the CPU function it reproduces) on stream().
// Every operand is device memory except the RoPE table and the ALiBi slopes, uploaded here.
//
// Scratch (the norms' row statistics and partial sums, attention's softmax statistics) comes
// from the stream-ordered allocator (cudaMallocAsync / cudaFreeAsync on stream()): it is freed
// in stream order after the op's kernels, so nothing waits, and the device's memory pool hands
// the same block back on the next call.
#include <cuda_runtime_api.h>

#include <algorithm>

#include "cuda/activation_backward.cuh"
#include "cuda/attention_backward.cuh"
#include "cuda/clamp_backward.cuh"
#include "cuda/cuda_check.hpp"
#include "cuda/embedding_backward.cuh"
#include "cuda/norm_backward.cuh"
#include "cuda/rope_backward.cuh"
#include "cuda/swiglu_backward.cuh"
#include "fusellm/core/error.hpp"
#include "fusellm/model/cuda/act_kind.hpp"
#include "fusellm/model/cuda/cuda_backend.hpp"

namespace fusellm::model {

namespace {

// One op's device scratch, freed on its stream after the kernels queued before the destructor.
class StreamScratch {
 public:
  StreamScratch(size_t bytes, cudaStream_t stream) : stream_(stream) {
    FUSELLM_CUDA_CHECK(cudaMallocAsync(&p_, std::max<size_t>(bytes, 1), stream));
  }
  ~StreamScratch() { cudaFreeAsync(p_, stream_); }  // no throwing from a destructor
  StreamScratch(const StreamScratch&) = delete;
  StreamScratch& operator=(const StreamScratch&) = delete;
  void* get() const { return p_; }

 private:
  void* p_ = nullptr;
  cudaStream_t stream_;
};

// The norms' shared check: x, dy, dx [rows, n], w and dw n values (db n or none).
void check_norm(const char* op, ConstMatView x, size_t w, ConstMatView dy, MatView dx, size_t dw, size_t db) {
  const int64_t n = x.cols;
  if (dy.rows != x.rows || dy.cols != n || dx.rows != x.rows || dx.cols != n || int64_t(w) != n ||
      int64_t(dw) != n || (db != 0 && int64_t(db) != n))
    fail("{} (cuda): shapes do not agree: x [{}, {}], dy [{}, {}], dx [{}, {}], w {}, dw {}, db {}", op, x.rows,
         x.cols, dy.rows, dy.cols, dx.rows, dx.cols, w, dw, db);
}

}  // namespace

void CudaBackend::rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                                   std::span<float> dw, bool accumulate) const {
  check_norm("rmsnorm_backward", x, w.size(), dy, dx, dw.size(), 0);
  const StreamScratch scratch(cuda::norm_backward_workspace_bytes(x.rows, x.cols), stream());
  cuda::rmsnorm_backward(x.p, x.ld, w.data(), eps, dy.p, dy.ld, dx.p, dx.ld, dw.data(), x.rows, x.cols, accumulate,
                         scratch.get(), stream());
}

void CudaBackend::layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy,
                                     MatView dx, std::span<float> dw, std::span<float> db, bool accumulate) const {
  check_norm("layernorm_backward", x, w.size(), dy, dx, dw.size(), db.size());
  const StreamScratch scratch(cuda::norm_backward_workspace_bytes(x.rows, x.cols), stream());
  cuda::layernorm_backward(x.p, x.ld, w.data(), eps, dy.p, dy.ld, dx.p, dx.ld, dw.data(),
                           db.empty() ? nullptr : db.data(), x.rows, x.cols, accumulate, scratch.get(), stream());
}

void CudaBackend::activation_backward(Activation a, ConstMatView pre, MatView dh) const {
  if (pre.rows != dh.rows || pre.cols != dh.cols)
    fail("activation_backward (cuda): pre-activations [{}, {}] and gradient [{}, {}] do not agree", pre.rows,
         pre.cols, dh.rows, dh.cols);
  cuda::activation_backward(act_kind(a), pre.p, pre.ld, dh.p, dh.ld, pre.rows, pre.cols, stream());
}

void CudaBackend::clamp_backward(ConstMatView y, float c, MatView dy) const {
  if (y.rows != dy.rows || y.cols != dy.cols)
    fail("clamp_backward (cuda): output [{}, {}] and gradient [{}, {}] do not agree", y.rows, y.cols, dy.rows,
         dy.cols);
  cuda::clamp_backward(y.p, y.ld, c, dy.p, dy.ld, y.rows, y.cols, stream());
}

void CudaBackend::apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads,
                                      int64_t head_dim) const {
  if (col0 < 0 || heads < 0 || 2 * t.half > head_dim || col0 + heads * head_dim > dx.cols ||
      int64_t(t.cos.size()) != dx.rows * t.half || t.sin.size() != t.cos.size())
    fail("apply_rope_backward (cuda): {} heads of {} dims from column {} of [{}, {}] with a table of {} x {} "
         "pairs do not agree",
         heads, head_dim, col0, dx.rows, dx.cols, t.cos.size() / size_t(std::max<int64_t>(t.half, 1)), t.half);
  const DeviceRope r = upload_rope(t);
  cuda::rope_backward(r.cos, r.sin, r.half, dx.p, dx.ld, dx.rows, col0, heads, head_dim, stream());
}

void CudaBackend::swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up) const {
  const int64_t n = gate_up.cols / 2;
  if (gate_up.cols % 2 || dh.cols != n || dh.rows != gate_up.rows || dgate_up.cols != 2 * n ||
      dgate_up.rows != gate_up.rows)
    fail("swiglu_backward (cuda): shapes do not agree: [gate | up] [{}, {}], dh [{}, {}], d[gate | up] [{}, {}]",
         gate_up.rows, gate_up.cols, dh.rows, dh.cols, dgate_up.rows, dgate_up.cols);
  cuda::swiglu_backward(gate_up.p, gate_up.ld, dh.p, dh.ld, dgate_up.p, dgate_up.ld, gate_up.rows, n, stream());
}

void CudaBackend::causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                                            std::span<const int32_t> doc_start, const AttentionShape& s,
                                            MatView dqkv) const {
  const int64_t T = qkv.rows, H = s.heads, KV = s.kv_heads, D = s.head_dim;
  if (H <= 0 || KV <= 0 || H % KV)
    fail("causal_attention_backward (cuda): {} heads are not a multiple of {} KV heads", H, KV);
  if (qkv.cols != (H + 2 * KV) * D || out.cols != H * D || out.rows != T || dout.cols != H * D ||
      dout.rows != T || dqkv.rows != T || dqkv.cols != qkv.cols || int64_t(doc_start.size()) != T ||
      (!s.alibi.empty() && int64_t(s.alibi.size()) != H))
    fail("causal_attention_backward (cuda): shapes do not agree: qkv [{}, {}], out [{}, {}], dout [{}, {}], "
         "dqkv [{}, {}], {} document starts, {} ALiBi slopes, for {} heads / {} KV heads of {} dims",
         qkv.rows, qkv.cols, out.rows, out.cols, dout.rows, dout.cols, dqkv.rows, dqkv.cols, doc_start.size(),
         s.alibi.size(), H, KV, D);
  if (T == 0) return;
  cuda::AttentionBackwardArgs a;
  a.qkv = qkv.p, a.ld_qkv = qkv.ld, a.out = out.p, a.ld_out = out.ld, a.dout = dout.p, a.ld_dout = dout.ld;
  a.doc_start = doc_start.data(), a.dqkv = dqkv.p, a.ld_dqkv = dqkv.ld;
  a.T = T, a.heads = H, a.kv_heads = KV, a.head_dim = D, a.scale = s.scale, a.sliding_window = s.sliding_window;
  a.alibi = upload_alibi(s.alibi);
  const StreamScratch scratch(cuda::attention_backward_workspace_bytes(T, H), stream());
  cuda::attention_backward(a, scratch.get(), stream());
}

void CudaBackend::embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable) const {
  const int64_t T = int64_t(ids.size()), Hd = dx.cols;
  if (dx.rows != T || dtable.cols != Hd)
    fail("embedding_backward (cuda): shapes do not agree: {} ids, dx [{}, {}], dtable [{}, {}]", T, dx.rows,
         dx.cols, dtable.rows, dtable.cols);
  cuda::embedding_backward(ids.data(), dx.p, dx.ld, dtable.p, dtable.ld, dtable.rows, T, Hd, stream());
}

}  // namespace fusellm::model
