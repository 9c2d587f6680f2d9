// The decoder's backward pass (Llama family; decoder.hpp has the math), from dL/dlogits to the
// gradient of every parameter, added into a buffer of the parameters' layout. The fused regions
// of that layout make [q; k; v] and [gate; up] one GEMM each here too: one weight gradient and
// one input gradient per region. Every operation goes through the backend.
#include "fusellm/core/error.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm::model {

// The gradients of the activations, [T, .] each, and where the backward pass reads and writes.
struct Decoder::Backward {
  const Backend& be;
  std::span<const float> W;  // the parameters
  const SavedActivations& s;
  std::span<float> grads;
  int64_t T;
  std::vector<float> xn, dxn, dx, h, dh, dgu, datt, dqkv;
  MatView m(std::vector<float>& v, int64_t cols) { return {v.data(), T, cols, cols}; }
  ConstMatView saved(const std::vector<float>& v, int64_t cols) const { return {v.data(), T, cols, cols}; }
};

void Decoder::mlp_backward(Backward& b, int64_t l) const {
  // x_out = x_mid + down(silu(gate) * up), [gate | up] = xn2 W_[gate;up]^T, xn2 = rmsnorm(x_mid)
  const Arch& a = arch_;
  const Backend& be = b.be;
  const std::span<const float> W = b.W;
  const LayerRegions& L = params_.regions.layers[size_t(l)];
  const int64_t Hd = a.hidden, I = a.intermediate;
  const SavedActivations::Layer& S = b.s.layers[size_t(l)];
  const ConstMatView x_mid = b.saved(S.x_mid, Hd), gate_up = b.saved(S.gate_up, 2 * I);
  norm(x_mid, L.mlp_norm_w, L.mlp_norm_b, b.m(b.xn, Hd));
  be.gated_activation(a.act, gate_up, b.m(b.h, I));  // h as the forward computed it
  be.linear_backward_weight(b.m(b.dx, Hd), b.m(b.h, I), mat(b.grads, L.out));
  if (L.out_b.present()) be.bias_backward(b.m(b.dx, Hd), vec(b.grads, L.out_b));
  be.linear_backward_input(b.m(b.dx, Hd), mat(W, L.out), b.m(b.dh, I), false);
  be.swiglu_backward(gate_up, b.m(b.dh, I), b.m(b.dgu, 2 * I));
  be.linear_backward_weight(b.m(b.dgu, 2 * I), b.m(b.xn, Hd), mat(b.grads, L.in));
  if (L.in_b.present()) be.bias_backward(b.m(b.dgu, 2 * I), vec(b.grads, L.in_b));
  be.linear_backward_input(b.m(b.dgu, 2 * I), mat(W, L.in), b.m(b.dxn, Hd), false);
  be.rmsnorm_backward(x_mid, vec(W, L.mlp_norm_w), float(a.norm_eps), b.m(b.dxn, Hd), b.m(b.dx, Hd),
                      vec(b.grads, L.mlp_norm_w), /*accumulate=*/true);
}

void Decoder::attention_backward(Backward& b, int64_t l) const {
  // x_mid = x_in + o(attention(rope(q), rope(k), v)), [q | k | v] = xn1 W_[q;k;v]^T, xn1 = rmsnorm(x_in)
  const Arch& a = arch_;
  const Backend& be = b.be;
  const std::span<const float> W = b.W;
  const LayerRegions& L = params_.regions.layers[size_t(l)];
  const int64_t Hd = a.hidden, nq = a.heads * a.head_dim, nqkv = nq + 2 * a.kv_heads * a.head_dim;
  const SavedActivations::Layer& S = b.s.layers[size_t(l)];
  const ConstMatView att = b.saved(S.att, nq), qkv = b.saved(S.qkv, nqkv), x_in = b.saved(S.x_in, Hd);
  be.linear_backward_weight(b.m(b.dx, Hd), att, mat(b.grads, L.o));
  if (L.o_b.present()) be.bias_backward(b.m(b.dx, Hd), vec(b.grads, L.o_b));
  be.linear_backward_input(b.m(b.dx, Hd), mat(W, L.o), b.m(b.datt, nq), false);
  be.causal_attention_backward(qkv, att, b.m(b.datt, nq), b.s.doc_start, attention_shape(l), b.m(b.dqkv, nqkv));
  be.apply_rope_backward(b.s.rope, b.m(b.dqkv, nqkv), 0, a.heads + a.kv_heads, a.head_dim);
  norm(x_in, L.attn_norm_w, L.attn_norm_b, b.m(b.xn, Hd));
  be.linear_backward_weight(b.m(b.dqkv, nqkv), b.m(b.xn, Hd), mat(b.grads, L.qkv));
  if (L.qkv_b.present()) be.bias_backward(b.m(b.dqkv, nqkv), vec(b.grads, L.qkv_b));
  be.linear_backward_input(b.m(b.dqkv, nqkv), mat(W, L.qkv), b.m(b.dxn, Hd), false);
  be.rmsnorm_backward(x_in, vec(W, L.attn_norm_w), float(a.norm_eps), b.m(b.dxn, Hd), b.m(b.dx, Hd),
                      vec(b.grads, L.attn_norm_w), /*accumulate=*/true);
}

void Decoder::backward(const SavedActivations& s, std::span<const float> dlogits, std::span<float> grads) const {
  const Arch& a = arch_;
  check_trainable(a);
  const int64_t T = int64_t(s.ids.size()), Hd = a.hidden, V = a.vocab, I = a.intermediate;
  const int64_t nq = a.heads * a.head_dim, nqkv = nq + 2 * a.kv_heads * a.head_dim;
  if (!s.valid) fail("train backward: no forward pass to differentiate (call forward() first)");
  if (int64_t(dlogits.size()) != T * V)
    fail("train backward: dlogits has {} values, expected [{}, {}] = {}", dlogits.size(), T, V, T * V);
  if (int64_t(grads.size()) != params_.table.total())
    fail("train backward: a gradient buffer of {} floats for {} parameters", grads.size(), params_.table.total());
  if (T == 0) return;
  const Backend& be = *backend_;
  const auto pass_scope = be.begin_pass();
  const std::span<const float> W = weights_;
  Backward b{be, W, s, grads, T, {}, {}, {}, {}, {}, {}, {}, {}};
  for (auto* v : {&b.xn, &b.dxn, &b.dx}) v->resize(size_t(T * Hd));
  b.h.resize(size_t(T * I)), b.dh.resize(size_t(T * I)), b.dgu.resize(size_t(T * 2 * I));
  b.datt.resize(size_t(T * nq)), b.dqkv.resize(size_t(T * nqkv));

  // Head and final norm.
  const DecoderRegions& R = params_.regions;
  const ConstMatView dz(dlogits.data(), T, V, V), x_final = b.saved(s.x_final, Hd);
  norm(x_final, R.final_norm_w, R.final_norm_b, b.m(b.xn, Hd));
  be.linear_backward_weight(dz, b.m(b.xn, Hd), mat(grads, R.lm_head));
  be.linear_backward_input(dz, mat(W, R.lm_head), b.m(b.dxn, Hd), false);
  be.rmsnorm_backward(x_final, vec(W, R.final_norm_w), float(a.norm_eps), b.m(b.dxn, Hd), b.m(b.dx, Hd),
                      vec(grads, R.final_norm_w), false);
  for (int64_t l = a.layers - 1; l >= 0; --l) {
    mlp_backward(b, l);
    attention_backward(b, l);
  }
  be.embedding_backward(s.ids, b.m(b.dx, Hd), mat(grads, R.embed));
}

}  // namespace fusellm::model
