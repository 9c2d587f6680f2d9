// The CPU backend: each operation of the Backend interface is the CPU function of the same name
// (ops.hpp, train_ops.hpp; one file per op, with its math). Nothing is computed here.
#include <cstddef>
#include <cstring>
#include <vector>

#include "fusellm/core/error.hpp"
#include "fusellm/model/backend.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

namespace {

struct BlasOneThread final : Backend::PassScope {
  BlasThreadsGuard guard;
};

struct HostMemory final : Backend::Memory {
  explicit HostMemory(size_t n) : block(n) {
    data = block.data();
    bytes = n;
  }
  std::vector<std::byte> block;  // zeroed: a fresh block is touched once here, as a resized vector was
};

class CpuBackend final : public Backend {
 public:
  const char* name() const override { return "cpu"; }
  std::unique_ptr<PassScope> begin_pass() const override { return std::make_unique<BlasOneThread>(); }
  bool host_memory() const override { return true; }
  std::unique_ptr<Memory> allocate(size_t bytes) const override { return std::make_unique<HostMemory>(bytes); }
  void copy_in(void* dst, const void* src, size_t bytes) const override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void copy_out(void* dst, const void* src, size_t bytes) const override {
    if (bytes) std::memcpy(dst, src, bytes);
  }
  void zero(void* dst, size_t bytes) const override {
    if (bytes) std::memset(dst, 0, bytes);
  }
  void add(std::span<const float> x, std::span<float> y) const override {
    if (x.size() != y.size()) fail("add: {} values into {}", x.size(), y.size());
    const int64_t n = int64_t(y.size());
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; ++i) y[size_t(i)] = x[size_t(i)] + y[size_t(i)];
  }

  void embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
             ConstMatView pos_table, MatView x) const override {
    model::embed(ids, table, positions, pos_table, x);
  }
  void copy(ConstMatView src, MatView dst) const override {
    if (src.rows != dst.rows || src.cols != dst.cols)
      fail("copy: [{}, {}] into [{}, {}]", src.rows, src.cols, dst.rows, dst.cols);
    for (int64_t r = 0; r < src.rows; ++r) std::memcpy(dst.row(r), src.row(r), sizeof(float) * size_t(src.cols));
  }
  void rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y) const override {
    model::rmsnorm(x, w, eps, y);
  }
  void layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps,
                 MatView y) const override {
    model::layernorm(x, w, b, eps, y);
  }
  void linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate) const override {
    model::linear(x, w, b, y, accumulate);
  }
  void clamp(MatView x, float c) const override { model::clamp(x, c); }
  void apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim) const override {
    model::apply_rope(t, x, col0, heads, head_dim);
  }
  void causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s,
                        MatView out) const override {
    model::causal_attention(qkv, doc_start, s, out);
  }
  void activation(Activation a, MatView x) const override { model::activation(a, x); }
  void activation(Activation a, ConstMatView x, MatView out) const override { model::activation(a, x, out); }
  void gated_activation(Activation a, MatView gate_up) const override { model::gated_activation(a, gate_up); }
  void gated_activation(Activation a, ConstMatView gate_up, MatView out) const override {
    model::gated_activation(a, gate_up, out);
  }

  void linear_backward_input(ConstMatView dy, ConstMatView w, MatView dx, bool accumulate) const override {
    model::linear_backward_input(dy, w, dx, accumulate);
  }
  void linear_backward_weight(ConstMatView dy, ConstMatView x, MatView dw) const override {
    model::linear_backward_weight(dy, x, dw);
  }
  void bias_backward(ConstMatView dy, std::span<float> db) const override { model::bias_backward(dy, db); }
  void rmsnorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                        std::span<float> dw, bool accumulate) const override {
    model::rmsnorm_backward(x, w, eps, dy, dx, dw, accumulate);
  }
  void layernorm_backward(ConstMatView x, std::span<const float> w, float eps, ConstMatView dy, MatView dx,
                          std::span<float> dw, std::span<float> db, bool accumulate) const override {
    model::layernorm_backward(x, w, eps, dy, dx, dw, db, accumulate);
  }
  void activation_backward(Activation a, ConstMatView pre, MatView dh) const override {
    model::activation_backward(a, pre, dh);
  }
  void clamp_backward(ConstMatView y, float c, MatView dy) const override { model::clamp_backward(y, c, dy); }
  void apply_rope_backward(const RopeTable& t, MatView dx, int64_t col0, int64_t heads,
                           int64_t head_dim) const override {
    model::apply_rope_backward(t, dx, col0, heads, head_dim);
  }
  void swiglu_backward(ConstMatView gate_up, ConstMatView dh, MatView dgate_up) const override {
    model::swiglu_backward(gate_up, dh, dgate_up);
  }
  void causal_attention_backward(ConstMatView qkv, ConstMatView out, ConstMatView dout,
                                 std::span<const int32_t> doc_start, const AttentionShape& s,
                                 MatView dqkv) const override {
    model::causal_attention_backward(qkv, out, dout, doc_start, s, dqkv);
  }
  void embedding_backward(std::span<const int32_t> ids, ConstMatView dx, MatView dtable) const override {
    model::embedding_backward(ids, dx, dtable);
  }
};

}  // namespace

const Backend& cpu_backend() {
  static const CpuBackend backend;
  return backend;
}

}  // namespace fusellm::model
