// The trainable Llama-family model: LlamaForCausalLM's forward (as transformer.cpp runs it, with
// separate q/k/v and gate/up matrices so that each parameter keeps its Hugging Face name and
// shape) and its backward pass, layer by layer in reverse:
//
//   logits = norm(x_L) W_head^T          dW_head += dz^T xn;  dx = rmsnorm_bwd(dz W_head)
//   x_{l+1} = x_mid + down(silu(gate xn2) * up xn2),   xn2 = rmsnorm(x_mid)
//       dW_down += dx^T h;  dh = dx W_down;  d[gate|up] = swiglu_bwd;  dW_gate/up += d^T xn2;
//       dx += rmsnorm_bwd(d_gate W_gate + d_up W_up)
//   x_mid = x_l + o(attn(rope(q xn1), rope(k xn1), v xn1)),   xn1 = rmsnorm(x_l)
//       dW_o += dx^T att;  datt = dx W_o;  dqkv = attention_bwd;  rope_bwd on dq, dk;
//       dW_q/k/v += d^T xn1 (+ biases: column sums);  dx += rmsnorm_bwd(dq W_q + dk W_k + dv W_v)
//   x_0 = E[ids]                         dE[ids[t]] += dx_0[t]  (+ the head's gradient when tied)
//
// Each backward op lives in its own file (train_ops.hpp) with its math; this file only wires them.
#include "fusellm/model/llama_train.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/train_ops.hpp"

namespace fusellm::model {

namespace {

MatView mat(std::vector<float>& v, int64_t rows, int64_t cols) { return {v.data(), rows, cols, cols}; }
MatView mat(Tensor& t) { return {t.data(), t.dim(0), t.dim(1), t.dim(1)}; }
ConstMatView cmat(const Tensor& t) { return {t.data(), t.dim(0), t.dim(1), t.dim(1)}; }
// Columns [c0, c0 + n) of a row-major buffer with `ld` columns.
MatView cols(std::vector<float>& v, int64_t rows, int64_t ld, int64_t c0, int64_t n) {
  return {v.data() + c0, rows, n, ld};
}

}  // namespace

// Every error names its file (config.json with the field, or the safetensors file with the
// tensor), so no context is added here: the caller says which model of its job this is.
TrainableLlama TrainableLlama::load(const std::string& dir) {
  const HFConfig c = HFConfig::load(dir);
  const std::string type = c.get_string("model_type");
  if (type != "llama" && type != "mistral" && type != "qwen2")
    c.field_error("model_type", fmt::format("\"{}\" cannot be trained (supported: llama, mistral, qwen2)", type));
  Arch arch = llama_arch(c);
  // The constructor's limits, reported against config.json.
  if (arch.act != Activation::SiLU)
    c.field_error("hidden_act", "training supports silu only (LlamaMLP's SwiGLU)");
  if (arch.rope.rotary_dim != arch.head_dim)
    fail("{}: training needs full-width rotary embeddings (rotary dimension {}, head_dim {})", c.path(),
         arch.rope.rotary_dim, arch.head_dim);
  const Checkpoint ck(dir);
  return TrainableLlama(std::move(arch), ck);
}

int TrainableLlama::add(std::string name, const Checkpoint& ck, Shape shape) {
  Parameter p;
  p.value = ck.load_f32(name, shape);
  p.grad = Tensor(shape);
  p.name = std::move(name);
  params_.push_back(std::move(p));
  return int(params_.size() - 1);
}

TrainableLlama::TrainableLlama(Arch arch, const Checkpoint& ck) : arch_(std::move(arch)) {
  const Arch& a = arch_;
  if (a.act != Activation::SiLU)
    fail("{}: training supports hidden_act silu only (LlamaMLP's SwiGLU)", a.model_type);
  if (a.rope.rotary_dim != a.head_dim) fail("{}: training needs full-width rotary embeddings", a.model_type);
  const int64_t Hd = a.hidden, V = a.vocab, D = a.head_dim, H = a.heads, KV = a.kv_heads, I = a.intermediate;
  embed_ = add("model.embed_tokens.weight", ck, {V, Hd});
  const std::string p = "model.layers.";
  layers_.resize(size_t(a.layers));
  for (int64_t l = 0; l < a.layers; ++l) {
    LayerParams& L = layers_[size_t(l)];
    const std::string b = fmt::format("{}{}.", p, l);
    L.attn_norm = add(b + "input_layernorm.weight", ck, {Hd});
    L.q = add(b + "self_attn.q_proj.weight", ck, {H * D, Hd});
    L.k = add(b + "self_attn.k_proj.weight", ck, {KV * D, Hd});
    L.v = add(b + "self_attn.v_proj.weight", ck, {KV * D, Hd});
    if (a.qkv_bias) {
      L.qb = add(b + "self_attn.q_proj.bias", ck, {H * D});
      L.kb = add(b + "self_attn.k_proj.bias", ck, {KV * D});
      L.vb = add(b + "self_attn.v_proj.bias", ck, {KV * D});
    }
    L.o = add(b + "self_attn.o_proj.weight", ck, {Hd, H * D});
    if (a.o_bias) L.ob = add(b + "self_attn.o_proj.bias", ck, {Hd});
    L.mlp_norm = add(b + "post_attention_layernorm.weight", ck, {Hd});
    L.gate = add(b + "mlp.gate_proj.weight", ck, {I, Hd});
    L.up = add(b + "mlp.up_proj.weight", ck, {I, Hd});
    L.down = add(b + "mlp.down_proj.weight", ck, {Hd, I});
    if (a.mlp_bias) {
      L.gate_b = add(b + "mlp.gate_proj.bias", ck, {I});
      L.up_b = add(b + "mlp.up_proj.bias", ck, {I});
      L.down_b = add(b + "mlp.down_proj.bias", ck, {Hd});
    }
  }
  final_norm_ = add("model.norm.weight", ck, {Hd});
  if (!a.tied_embeddings) lm_head_ = add("lm_head.weight", ck, {V, Hd});
}

Parameter& TrainableLlama::parameter(const std::string& name) {
  for (Parameter& p : params_)
    if (p.name == name) return p;
  fail("{} model: no parameter named '{}'", arch_.model_type, name);
}

int64_t TrainableLlama::num_parameters() const {
  int64_t n = 0;
  for (const Parameter& p : params_) n += p.value.size();
  return n;
}

void TrainableLlama::zero_grad() {
  for (Parameter& p : params_) std::fill(p.grad.span().begin(), p.grad.span().end(), 0.f);
}

Tensor TrainableLlama::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) {
  const Arch& a = arch_;
  const int64_t T = int64_t(ids.size()), Hd = a.hidden, V = a.vocab, H = a.heads, KV = a.kv_heads, D = a.head_dim;
  const int64_t I = a.intermediate, nq = H * D, nkv = KV * D, nqkv = nq + 2 * nkv;
  if (!doc_ids.empty() && int64_t(doc_ids.size()) != T)
    fail("train forward: {} doc_ids for {} tokens (expected one per token, or none)", doc_ids.size(), T);
  have_forward_ = false;
  ids_.assign(ids.begin(), ids.end());
  doc_start_.assign(size_t(T), 0);
  std::vector<int32_t> pos(static_cast<size_t>(T)), doc_len(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) fail("train forward: token id {} at position {} is outside [0, {})", ids[t], t, V);
    if (t > 0 && !doc_ids.empty() && doc_ids[t] < doc_ids[t - 1])
      fail("train forward: doc_ids must be non-decreasing, found {} after {} at position {}", doc_ids[t],
           doc_ids[t - 1], t);
    const bool new_doc = t == 0 || (!doc_ids.empty() && doc_ids[t] != doc_ids[t - 1]);
    doc_start_[t] = new_doc ? int32_t(t) : doc_start_[t - 1];
    pos[t] = int32_t(t - doc_start_[t]);
  }
  for (int64_t t = T - 1; t >= 0; --t)
    doc_len[t] = (t + 1 < T && doc_start_[t + 1] == doc_start_[t]) ? doc_len[t + 1] : int32_t(t - doc_start_[t] + 1);
  Tensor logits({T, V});
  if (T == 0) return logits;
  rope_ = rope_table(a.rope, pos, doc_len);

  BlasThreadsGuard blas_one_thread;  // linear() runs sgemm inside OpenMP
  std::vector<float> x(size_t(T * Hd)), xn(size_t(T * Hd)), h(size_t(T * I));
  for (int64_t t = 0; t < T; ++t)
    std::memcpy(x.data() + t * Hd, val(embed_).data() + int64_t(ids[t]) * Hd, sizeof(float) * size_t(Hd));
  auto bias = [&](int i) { return i < 0 ? std::span<const float>() : std::span<const float>(val(i).span()); };
  AttentionShape as;
  as.heads = H;
  as.kv_heads = KV;
  as.head_dim = D;
  as.scale = float(a.attn_scale > 0 ? a.attn_scale : 1.0 / std::sqrt(double(D)));
  as.sliding_window = a.sliding_window;
  const float eps = float(a.norm_eps);

  saved_.resize(size_t(a.layers));
  for (int64_t l = 0; l < a.layers; ++l) {
    const LayerParams& L = layers_[size_t(l)];
    Saved& S = saved_[size_t(l)];
    S.x_in = x;
    rmsnorm(mat(x, T, Hd), val(L.attn_norm).span(), eps, mat(xn, T, Hd));
    S.qkv.resize(size_t(T * nqkv));
    linear(mat(xn, T, Hd), cmat(val(L.q)), bias(L.qb), cols(S.qkv, T, nqkv, 0, nq));
    linear(mat(xn, T, Hd), cmat(val(L.k)), bias(L.kb), cols(S.qkv, T, nqkv, nq, nkv));
    linear(mat(xn, T, Hd), cmat(val(L.v)), bias(L.vb), cols(S.qkv, T, nqkv, nq + nkv, nkv));
    apply_rope(rope_, mat(S.qkv, T, nqkv), 0, H + KV, D);
    S.att.resize(size_t(T * nq));
    causal_attention(mat(S.qkv, T, nqkv), doc_start_, as, mat(S.att, T, nq));
    linear(mat(S.att, T, nq), cmat(val(L.o)), bias(L.ob), mat(x, T, Hd), /*accumulate=*/true);
    S.x_mid = x;
    rmsnorm(mat(x, T, Hd), val(L.mlp_norm).span(), eps, mat(xn, T, Hd));
    S.gate_up.resize(size_t(T * 2 * I));
    linear(mat(xn, T, Hd), cmat(val(L.gate)), bias(L.gate_b), cols(S.gate_up, T, 2 * I, 0, I));
    linear(mat(xn, T, Hd), cmat(val(L.up)), bias(L.up_b), cols(S.gate_up, T, 2 * I, I, I));
    swiglu_forward(mat(S.gate_up, T, 2 * I), mat(h, T, I));
    linear(mat(h, T, I), cmat(val(L.down)), bias(L.down_b), mat(x, T, Hd), /*accumulate=*/true);
  }
  x_final_ = x;
  rmsnorm(mat(x, T, Hd), val(final_norm_).span(), eps, mat(xn, T, Hd));
  linear(mat(xn, T, Hd), cmat(val(lm_head_ >= 0 ? lm_head_ : embed_)), {}, mat(logits), /*accumulate=*/true);
  have_forward_ = true;
  return logits;
}

void TrainableLlama::backward(std::span<const float> dlogits) {
  const Arch& a = arch_;
  const int64_t T = int64_t(ids_.size()), Hd = a.hidden, V = a.vocab, H = a.heads, KV = a.kv_heads, D = a.head_dim;
  const int64_t I = a.intermediate, nq = H * D, nkv = KV * D, nqkv = nq + 2 * nkv;
  if (!have_forward_) fail("train backward: no forward pass to differentiate (call forward() first)");
  if (int64_t(dlogits.size()) != T * V)
    fail("train backward: dlogits has {} values, expected [{}, {}] = {}", dlogits.size(), T, V, T * V);
  have_forward_ = false;
  if (T == 0) return;
  const float eps = float(a.norm_eps);
  const ConstMatView dz(dlogits.data(), T, V, V);
  std::vector<float> xn(size_t(T * Hd)), dxn(size_t(T * Hd)), dx(size_t(T * Hd));
  std::vector<float> h(size_t(T * I)), dh(size_t(T * I)), dgu(size_t(T * 2 * I));
  std::vector<float> datt(size_t(T * nq)), dqkv(size_t(T * nqkv));
  auto bgrad = [&](int i, ConstMatView dy) {
    if (i >= 0) bias_backward(dy, grad(i).span());
  };
  auto norm = [&](std::vector<float>& in, int w) {
    BlasThreadsGuard one;  // rmsnorm is OpenMP; keeps OpenBLAS's pool quiet meanwhile
    rmsnorm(mat(in, T, Hd), val(w).span(), eps, mat(xn, T, Hd));
  };

  // Head and final norm.
  const int head = lm_head_ >= 0 ? lm_head_ : embed_;
  norm(x_final_, final_norm_);
  linear_backward_weight(dz, mat(xn, T, Hd), mat(grad(head)));
  linear_backward_input(dz, cmat(val(head)), mat(dxn, T, Hd), false);
  rmsnorm_backward(mat(x_final_, T, Hd), val(final_norm_).span(), eps, mat(dxn, T, Hd), mat(dx, T, Hd),
                   grad(final_norm_).span(), false);

  AttentionShape as;
  as.heads = H;
  as.kv_heads = KV;
  as.head_dim = D;
  as.scale = float(a.attn_scale > 0 ? a.attn_scale : 1.0 / std::sqrt(double(D)));
  as.sliding_window = a.sliding_window;

  for (int64_t l = a.layers - 1; l >= 0; --l) {
    const LayerParams& L = layers_[size_t(l)];
    Saved& S = saved_[size_t(l)];
    // MLP: x_out = x_mid + down(silu(gate) * up)
    norm(S.x_mid, L.mlp_norm);
    swiglu_forward(mat(S.gate_up, T, 2 * I), mat(h, T, I));
    linear_backward_weight(mat(dx, T, Hd), mat(h, T, I), mat(grad(L.down)));
    bgrad(L.down_b, mat(dx, T, Hd));
    linear_backward_input(mat(dx, T, Hd), cmat(val(L.down)), mat(dh, T, I), false);
    swiglu_backward(mat(S.gate_up, T, 2 * I), mat(dh, T, I), mat(dgu, T, 2 * I));
    const MatView dgate = cols(dgu, T, 2 * I, 0, I), dup = cols(dgu, T, 2 * I, I, I);
    linear_backward_weight(dgate, mat(xn, T, Hd), mat(grad(L.gate)));
    linear_backward_weight(dup, mat(xn, T, Hd), mat(grad(L.up)));
    bgrad(L.gate_b, dgate);
    bgrad(L.up_b, dup);
    linear_backward_input(dgate, cmat(val(L.gate)), mat(dxn, T, Hd), false);
    linear_backward_input(dup, cmat(val(L.up)), mat(dxn, T, Hd), true);
    rmsnorm_backward(mat(S.x_mid, T, Hd), val(L.mlp_norm).span(), eps, mat(dxn, T, Hd), mat(dx, T, Hd),
                     grad(L.mlp_norm).span(), /*accumulate=*/true);
    S.gate_up = {};
    S.x_mid = {};

    // Attention: x_mid = x_in + o(attention(q, k, v))
    linear_backward_weight(mat(dx, T, Hd), mat(S.att, T, nq), mat(grad(L.o)));
    bgrad(L.ob, mat(dx, T, Hd));
    linear_backward_input(mat(dx, T, Hd), cmat(val(L.o)), mat(datt, T, nq), false);
    causal_attention_backward(mat(S.qkv, T, nqkv), mat(S.att, T, nq), mat(datt, T, nq), doc_start_, as,
                              mat(dqkv, T, nqkv));
    S.qkv = {};
    S.att = {};
    apply_rope_backward(rope_, mat(dqkv, T, nqkv), 0, H + KV, D);
    norm(S.x_in, L.attn_norm);
    const MatView dq = cols(dqkv, T, nqkv, 0, nq), dk = cols(dqkv, T, nqkv, nq, nkv),
                  dv = cols(dqkv, T, nqkv, nq + nkv, nkv);
    linear_backward_weight(dq, mat(xn, T, Hd), mat(grad(L.q)));
    linear_backward_weight(dk, mat(xn, T, Hd), mat(grad(L.k)));
    linear_backward_weight(dv, mat(xn, T, Hd), mat(grad(L.v)));
    bgrad(L.qb, dq);
    bgrad(L.kb, dk);
    bgrad(L.vb, dv);
    linear_backward_input(dq, cmat(val(L.q)), mat(dxn, T, Hd), false);
    linear_backward_input(dk, cmat(val(L.k)), mat(dxn, T, Hd), true);
    linear_backward_input(dv, cmat(val(L.v)), mat(dxn, T, Hd), true);
    rmsnorm_backward(mat(S.x_in, T, Hd), val(L.attn_norm).span(), eps, mat(dxn, T, Hd), mat(dx, T, Hd),
                     grad(L.attn_norm).span(), /*accumulate=*/true);
    S.x_in = {};
  }
  // Embedding (nn.Embedding's backward: a scatter-add of the rows).
  float* dE = grad(embed_).data();
  for (int64_t t = 0; t < T; ++t) {
    float* row = dE + int64_t(ids_[t]) * Hd;
    const float* d = dx.data() + t * Hd;
    for (int64_t c = 0; c < Hd; ++c) row[c] += d[c];
  }
  x_final_ = {};
}

}  // namespace fusellm::model
