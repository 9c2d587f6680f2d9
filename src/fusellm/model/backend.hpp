#pragma once
// The seam between the decoder (decoder.hpp: WHAT a layer computes, in which order, on which
// views of the flat parameter buffer) and a backend (HOW and WHERE each operation runs):
// llama.cpp's split of the graph from ggml-cpu / ggml-cuda, as an interface. The decoder calls
// nothing else, so a CUDA backend sits beside the CPU one by implementing this interface over
// device pointers (the same MatView, pointing into device memory) and being passed to the
// decoder's constructor; the rest of the model (parameter table, loading, the order of the pass)
// stays as it is.
//
// The CPU backend (cpu_backend.cpp) is the reference: each operation is one of the functions of
// ops.hpp / train_ops.hpp, whose files state their math and the transformers function they
// reproduce, and which the op tests check.
//
// Not yet behind the seam (a GPU backend brings them with it): where the activations and the
// flat buffers live (host std::vector today), and the host-side preparation of a sequence
// (document starts, positions, the RoPE cos/sin table), which a device backend uploads.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "fusellm/model/ops.hpp"

namespace fusellm::model {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual const char* name() const = 0;

  // What a backend holds for the duration of one forward or backward pass (the CPU backend:
  // OpenBLAS at one thread, since its ops call sgemm from inside OpenMP).
  struct PassScope {
    virtual ~PassScope() = default;
  };
  virtual std::unique_ptr<PassScope> begin_pass() const = 0;

  // ---- memory: the ops' operands live in the backend's memory ----------------------------------
  // Host memory for the CPU backend (the decoder's vectors are used in place), the device's for a
  // GPU backend, where the decoder keeps its weights and buffers and copies the tokens in and the
  // logits out. A block is freed with its object; its contents start undefined.
  struct Memory {
    virtual ~Memory() = default;
    void* data = nullptr;
    size_t bytes = 0;
  };
  virtual bool host_memory() const = 0;
  virtual std::unique_ptr<Memory> allocate(size_t bytes) const = 0;
  // host -> backend memory, in order with the ops queued so far and after.
  virtual void copy_in(void* dst, const void* src, size_t bytes) const = 0;
  // backend memory -> host, after every op queued so far; returns when the bytes are there.
  virtual void copy_out(void* dst, const void* src, size_t bytes) const = 0;
  // dst[0, bytes) = 0, in order with the ops queued so far.
  virtual void zero(void* dst, size_t bytes) const = 0;
  // y[i] = x[i] + y[i], one fp32 add per element (a gradient summed over micro-batches); both in
  // the backend's memory, not overlapping.
  virtual void add(std::span<const float> x, std::span<float> y) const = 0;

  // ---- forward (ops.hpp has the math of each) ----------------------------------------------------
  virtual void embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
                     ConstMatView pos_table, MatView x) const = 0;
  virtual void copy(ConstMatView src, MatView dst) const = 0;
  virtual void rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y) const = 0;
  virtual void layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps,
                         MatView y) const = 0;
  virtual void linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate) const = 0;
  virtual void clamp(MatView x, float c) const = 0;
  virtual void apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim) const = 0;
  virtual void causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s,
                                MatView out) const = 0;
  virtual void activation(Activation a, MatView x) const = 0;                     // in place
  virtual void activation(Activation a, ConstMatView x, MatView out) const = 0;  // into out
  virtual void gated_activation(Activation a, MatView gate_up) const = 0;                     // in place
  virtual void gated_activation(Activation a, ConstMatView gate_up, MatView out) const = 0;  // into out

  // ---- backward (train_ops.hpp) ---------------------------------------------------------------------
  virtual void linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate) const = 0;
  virtual void linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw) const = 0;
  virtual void bias_backward(ConstMatView dy, std::span<float> db) const = 0;
  virtual void rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                                std::span<float> dw, bool accumulate) const = 0;
  virtual void layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                                  std::span<float> dw, std::span<float> db, bool accumulate) const = 0;
  virtual void activation_backward(Activation a, ConstMatView pre, MatView dh) const = 0;
  virtual void clamp_backward(ConstMatView y, float c, MatView dy) const = 0;
  virtual void apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads,
                                   int64_t head_dim) const = 0;
  virtual void swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up) const = 0;
  virtual void causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                                         std::span<const int32_t> doc_start, const AttentionShape& s,
                                         MatView dqkv) const = 0;
  virtual void embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable) const = 0;
};

// The reference backend: the CPU ops (OpenMP + OpenBLAS), fp32.
const Backend& cpu_backend();

// A block of a backend's memory grown to fit and never shrunk, so that a steady state of passes
// allocates nothing (no page faults on the CPU, no cudaMalloc on a GPU).
class GrowingBuffer {
 public:
  template <class T>
  T* get(const Backend& be, size_t n) {
    if (!m_ || m_->bytes < n * sizeof(T)) {
      m_.reset();  // the old block goes first: the peak is the new one alone
      m_ = be.allocate((n ? n : 1) * sizeof(T));
    }
    return static_cast<T*>(m_->data);
  }
  template <class T>
  const T* data() const {
    return m_ ? static_cast<const T*>(m_->data) : nullptr;
  }

 private:
  std::unique_ptr<Backend::Memory> m_;
};

// `v` where the backend's ops read it: in place on the host, else copied into `g`.
template <class T>
std::span<const T> in_backend_memory(std::span<const T> v, GrowingBuffer& g, const Backend& be) {
  if (be.host_memory()) return v;
  T* d = g.get<T>(be, v.size());
  be.copy_in(d, v.data(), v.size_bytes());
  return {d, v.size()};
}
inline std::span<const int32_t> in_backend_memory(const std::vector<int32_t>& v, GrowingBuffer& g, const Backend& be) {
  return in_backend_memory(std::span<const int32_t>(v), g, be);
}

}  // namespace fusellm::model
