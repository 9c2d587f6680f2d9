#pragma once
// The CPU operations of the fp32 forward pass, one per file in model/ (llm.c's layout): each .cpp
// opens with the math it computes and the transformers function it reproduces. Matrices are
// row-major strided views; OpenMP parallelizes over rows/heads, OpenBLAS does the GEMMs
// single-threaded inside OpenMP (see matmul.cpp for why). They are the reference backend: the
// decoder reaches them only through backend.hpp's interface (cpu_backend.cpp), which a device
// backend implements beside them; the view types and shapes below are that interface's too.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace fusellm::model {

// A row-major matrix view: element (r, c) at p[r * ld + c].
struct MatView {
  float* p = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  float* row(int64_t r) const { return p + r * ld; }
};
struct ConstMatView {
  const float* p = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  ConstMatView() = default;
  ConstMatView(const float* p_, int64_t r, int64_t c, int64_t l) : p(p_), rows(r), cols(c), ld(l) {}
  ConstMatView(const MatView& m) : p(m.p), rows(m.rows), cols(m.cols), ld(m.ld) {}  // NOLINT
  const float* row(int64_t r) const { return p + r * ld; }
};

// ---- fast_math.cpp ------------------------------------------------------------------------------
// exp(x) as softmax and the activations compute it (fast_math.hpp: relative error < 2e-7, 0 below
// -87.3).
float fast_exp(float x);

// ---- matmul.cpp ---------------------------------------------------------------------------------
// y = x W^T + b   (or y += x W^T + b when `accumulate`); x [M, K], W [N, K] (nn.Linear layout),
// b [N] or empty, y [M, N].
void linear(ConstMatView x, ConstMatView w, std::span<const float> b, MatView y, bool accumulate = false);
// The general product C[M, N] = op(A) op(B) + beta C (row-major; op(A) = A [M, K], or A^T for A
// [K, M] when ta; op(B) = B [K, N], or B^T for B [N, K] when tb), split as linear() splits its
// output: a grid of blocks, one per OpenMP thread, each a single-threaded sgemm (OpenBLAS held at
// one thread meanwhile). Each element is computed by one thread in one fixed order: the result
// depends on the thread count only. The backward pass's products go through it.
struct Gemm {
  bool ta = false, tb = false;
  int64_t k = 0;
  const float* a = nullptr;
  int64_t lda = 0;
  const float* b = nullptr;
  int64_t ldb = 0;
  float beta = 0.f;
  float* c = nullptr;
  int64_t ldc = 0;
};
void parallel_gemm(const Gemm& g, int64_t M, int64_t N);
// Number of threads the ops use (omp_get_max_threads()).
int num_threads();
// Holds OpenBLAS at one thread for its lifetime (restoring the previous count): the ops call
// sgemm from inside OpenMP regions, and Debian's OpenBLAS is the pthread build, whose own pool
// would otherwise oversubscribe the cores.
class BlasThreadsGuard {
 public:
  BlasThreadsGuard();
  ~BlasThreadsGuard();
  BlasThreadsGuard(const BlasThreadsGuard&) = delete;
  BlasThreadsGuard& operator=(const BlasThreadsGuard&) = delete;

 private:
  int previous_;
};

// ---- rmsnorm.cpp / layernorm.cpp ------------------------------------------------------------------
void rmsnorm(ConstMatView x, std::span<const float> w, float eps, MatView y);
void layernorm(ConstMatView x, std::span<const float> w, std::span<const float> b, float eps, MatView y);

// ---- activations.cpp ----------------------------------------------------------------------------
enum class Activation { SiLU, GeluErf, GeluTanh, GeluFast, QuickGelu, ReLU };
// transformers' ACT2FN name -> Activation; Error listing the supported names otherwise.
Activation activation_from_name(const std::string& name, const std::string& where);
// x = act(x), in place.
void activation(Activation a, MatView x);
// out = act(x), leaving x as it was (the backward pass needs the pre-activations).
void activation(Activation a, ConstMatView x, MatView out);
// Gated (SwiGLU-style, LlamaMLP): for a row [gate (n), up (n)], gate <- act(gate) * up.
void gated_activation(Activation a, MatView gate_up);
// The same into out [T, n], leaving [gate | up] as it was (the backward pass needs it).
void gated_activation(Activation a, ConstMatView gate_up, MatView out);
// x = min(max(x, -c), c) (MPT's clip_qkv).
void clamp(MatView x, float c);

// ---- embedding.cpp ------------------------------------------------------------------------------
// x[t] = table[ids[t]] (+ pos_table[positions[t]] when pos_table has rows: learned positions).
void embed(std::span<const int32_t> ids, ConstMatView table, std::span<const int32_t> positions,
           ConstMatView pos_table, MatView x);

// ---- rope.cpp -----------------------------------------------------------------------------------
struct RopeConfig {
  enum class Type { Default, Linear, Dynamic, Llama3 };
  Type type = Type::Default;
  int64_t rotary_dim = 0;  // leading dims of each head that rotate (partial rotary: < head_dim)
  double theta = 10000.0;
  double factor = 1.0;           // linear, dynamic, llama3
  int64_t max_positions = 0;     // dynamic: config.max_position_embeddings
  double low_freq_factor = 1.0;  // llama3
  double high_freq_factor = 4.0;
  int64_t original_max_positions = 8192;
};
// cos/sin per token, [T, rotary_dim / 2] each.
struct RopeTable {
  int64_t half = 0;
  std::vector<float> cos, sin;
};
// inv_freq for one sequence of `seq_len` tokens (seq_len matters for "dynamic" only).
std::vector<float> rope_inv_freq(const RopeConfig& c, int64_t seq_len);
// positions[t]: position within its document; doc_len[t]: length of that document.
RopeTable rope_table(const RopeConfig& c, std::span<const int32_t> positions, std::span<const int32_t> doc_len);
// Rotates the first rotary_dim dims of `heads` heads of width head_dim, starting at column
// col0 of each row of x (rotate_half layout).
void apply_rope(const RopeTable& t, MatView x, int64_t col0, int64_t heads, int64_t head_dim);

// ---- alibi.cpp ----------------------------------------------------------------------------------
std::vector<float> alibi_slopes(int64_t num_heads, double alibi_bias_max);

// ---- attention.cpp ------------------------------------------------------------------------------
struct AttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.f;               // multiplies q.k
  int64_t sliding_window = 0;      // 0: none; else key j visible from i iff i - j < window
  std::span<const float> alibi;    // per head slope, empty: none
};
// qkv [T, (H + 2 KV) * D] with columns q heads | k heads | v heads; out [T, H * D].
// doc_start[t]: first token of t's document (causal within documents).
void causal_attention(ConstMatView qkv, std::span<const int32_t> doc_start, const AttentionShape& s, MatView out);

}  // namespace fusellm::model
