// The decoder's backward pass (every family; decoder.hpp has the math), from dL/dlogits to the
// gradient of every parameter, added into a buffer of the parameters' layout. The fused regions
// of that layout make [q; k; v] and [gate; up] one GEMM each here too: one weight gradient and
// one input gradient per region. Every operation goes through the backend.
#include "fusellm/core/error.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm::model {

// The gradients of the activations, [T, .] each, and where the backward pass reads and writes,
// all in the backend's memory.
// The buffers are the decoder's BackwardWorkspace (kept between calls), named here.
struct Decoder::Backward {
  Backward(const Backend& b, std::span<const float> w, const SavedActivations& saved, std::span<float> g, int64_t t,
           BackwardWorkspace& ws)
      : be(b), W(w), s(saved), grads(g), T(t), xn(ws.xn), dxn(ws.dxn), dxn2(ws.dxn2), dx(ws.dx), h(ws.h), dh(ws.dh),
        dgu(ws.dgu), datt(ws.datt), dqkv(ws.dqkv), ids(ws.ids), pos(ws.pos), starts(ws.starts),
        recomputed(ws.recomputed), embedding{ws.embedding_scratch}, current{ws.part_scratch} {}
  const Backend& be;
  std::span<const float> W;  // the parameters
  const SavedActivations& s;
  std::span<float> grads;
  int64_t T;
  std::span<const int32_t> doc_start;  // s.doc_start where the backend reads it
  // dxn2: the MLP's norm-input gradient of a parallel-residual layer, added after attention's.
  GrowingBuffer &xn, &dxn, &dxn2, &dx, &h, &dh, &dgu, &datt, &dqkv;
  GrowingBuffer &ids, &pos, &starts;  // the host's token ids, positions and doc_start, copied in
  Recomputed& recomputed;  // a layer's activations run again (SavedActivations::recompute_every)
  MatView m(GrowingBuffer& g, int64_t cols) { return {g.get<float>(be, size_t(T * cols)), T, cols, cols}; }
  ConstMatView saved(const GrowingBuffer& g, int64_t cols) const { return {g.data<float>(), T, cols, cols}; }

  // Where the ops write a parameter's gradient (Decoder::GradientAdd): `grads` itself, or with
  // kPerPart the zeroed scratch of the part it belongs to (the embeddings' over the whole pass, the
  // head's or a layer's while it runs), added into `grads` when the part is done.
  struct Scratch {
    GrowingBuffer& buffer;
    GradientPart part{};
    float* data = nullptr;  // while open
  };
  Scratch embedding, current;
  bool per_part = false;
  const PartSink* sink = nullptr;  // kPerPart's receiver of each part instead of `grads`
  void open(Scratch& sc, GradientPart part) {
    if (!per_part) return;
    sc.part = part;
    sc.data = sc.buffer.get<float>(be, size_t(part.size()));
    be.zero(sc.data, size_t(part.size()) * sizeof(float));
  }
  void close(Scratch& sc) {
    if (!per_part) return;
    const std::span<const float> done(sc.data, size_t(sc.part.size()));
    if (sink)
      (*sink)(sc.part.begin, done);
    else
      be.add(done, grads.subspan(size_t(sc.part.begin), size_t(sc.part.size())));
    sc.data = nullptr;
  }
  std::span<float> gvec(const Region& r) {
    if (!r.present()) return {};
    const size_t n = size_t(r.rows * r.cols);
    if (!per_part) return grads.subspan(size_t(r.offset), n);
    for (const Scratch* sc : {&current, &embedding})
      if (sc->data && sc->part.holds(r)) return {sc->data + (r.offset - sc->part.begin), n};
    fail("train backward: the gradient at offset {} lies outside the parts being differentiated", r.offset);
  }
  MatView gmat(const Region& r) { return {gvec(r).data(), r.rows, r.cols, r.cols}; }
};

// dx (+)= the norm's input gradient for output gradient dy; its weight (and bias) gradients +=.
void Decoder::norm_backward(Backward& b, ConstMatView x, const Region& w, const Region& bias, ConstMatView dy,
                            MatView dx, bool accumulate) const {
  const float eps = float(arch_.norm_eps);
  if (arch_.norm == NormKind::RMSNorm)
    b.be.rmsnorm_backward(x, vec(b.W, w), eps, dy, dx, b.gvec(w), accumulate);
  else
    b.be.layernorm_backward(x, vec(b.W, w), eps, dy, dx, b.gvec(w), b.gvec(bias), accumulate);
}

// Layer l's kept activations: the forward pass's, or run again (SavedActivations::recomputes).
const SavedActivations::Layer& Decoder::recompute_layer(Backward& b, int64_t l) const {
  if (!b.s.recomputes(l)) return b.s.layers[size_t(l)];
  rerun_layer(b.s, l, b.doc_start, b.recomputed);
  return b.recomputed.layer;
}

void Decoder::mlp_backward(Backward& b, const SavedActivations::Layer& S, int64_t l) const {
  // x_out = x_mid + down(act(gate xn2) * up xn2)  (gated)  or  x_mid + down(act(up xn2))  (plain),
  // xn2 = norm2(x_mid); parallel residual: xn2 = norm2(x_in), and the input gradient waits in dxn2.
  const Arch& a = arch_;
  const Backend& be = b.be;
  const std::span<const float> W = b.W;
  const LayerRegions& L = params_.regions.layers[size_t(l)];
  const int64_t Hd = a.hidden, I = a.intermediate, nin = a.gated_mlp ? 2 * I : I;
  const ConstMatView x_norm_in = b.saved(a.parallel_residual ? S.x_in : S.x_mid, Hd);
  const ConstMatView pre = b.saved(S.gate_up, nin);  // [gate | up], or up's pre-activation
  norm(x_norm_in, L.mlp_norm_w, L.mlp_norm_b, b.m(b.xn, Hd));
  if (a.gated_mlp)
    be.gated_activation(a.act, pre, b.m(b.h, I));  // h as the forward computed it
  else
    be.activation(a.act, pre, b.m(b.h, I));
  be.linear_backward_weight(b.m(b.dx, Hd), b.m(b.h, I), b.gmat(L.out));
  if (L.out_b.present()) be.bias_backward(b.m(b.dx, Hd), b.gvec(L.out_b));
  be.linear_backward_input(b.m(b.dx, Hd), mat(W, L.out), b.m(b.dh, I), false);
  MatView din = b.m(b.dh, I);  // the gradient of the [gate; up] (or up) projection's output
  if (a.gated_mlp) {
    be.swiglu_backward(pre, b.m(b.dh, I), b.m(b.dgu, 2 * I));
    din = b.m(b.dgu, 2 * I);
  } else {
    be.activation_backward(a.act, pre, din);
  }
  be.linear_backward_weight(din, b.m(b.xn, Hd), b.gmat(L.in));
  if (L.in_b.present()) be.bias_backward(din, b.gvec(L.in_b));
  if (a.parallel_residual) {
    be.linear_backward_input(din, mat(W, L.in), b.m(b.dxn2, Hd), false);
    return;
  }
  be.linear_backward_input(din, mat(W, L.in), b.m(b.dxn, Hd), false);
  norm_backward(b, x_norm_in, L.mlp_norm_w, L.mlp_norm_b, b.m(b.dxn, Hd), b.m(b.dx, Hd), /*accumulate=*/true);
}

void Decoder::attention_backward(Backward& b, const SavedActivations::Layer& S, int64_t l) const {
  // x_mid = x_in + o(attention(rope(q), rope(k), v)), [q | k | v] = clip(xn1 W_[q;k;v]^T + b),
  // xn1 = norm1(x_in)
  const Arch& a = arch_;
  const Backend& be = b.be;
  const std::span<const float> W = b.W;
  const LayerRegions& L = params_.regions.layers[size_t(l)];
  const int64_t Hd = a.hidden, nq = a.heads * a.head_dim, nqkv = nq + 2 * a.kv_heads * a.head_dim;
  const ConstMatView att = b.saved(S.att, nq), qkv = b.saved(S.qkv, nqkv), x_in = b.saved(S.x_in, Hd);
  be.linear_backward_weight(b.m(b.dx, Hd), att, b.gmat(L.o));
  if (L.o_b.present()) be.bias_backward(b.m(b.dx, Hd), b.gvec(L.o_b));
  be.linear_backward_input(b.m(b.dx, Hd), mat(W, L.o), b.m(b.datt, nq), false);
  be.causal_attention_backward(qkv, att, b.m(b.datt, nq), b.doc_start, attention_shape(l), b.m(b.dqkv, nqkv));
  if (a.pos == PosKind::Rotary) be.apply_rope_backward(b.s.rope, b.m(b.dqkv, nqkv), 0, a.heads + a.kv_heads, a.head_dim);
  if (a.clip_qkv > 0) be.clamp_backward(qkv, float(a.clip_qkv), b.m(b.dqkv, nqkv));  // no RoPE: check_trainable
  norm(x_in, L.attn_norm_w, L.attn_norm_b, b.m(b.xn, Hd));
  be.linear_backward_weight(b.m(b.dqkv, nqkv), b.m(b.xn, Hd), b.gmat(L.qkv));
  if (L.qkv_b.present()) be.bias_backward(b.m(b.dqkv, nqkv), b.gvec(L.qkv_b));
  be.linear_backward_input(b.m(b.dqkv, nqkv), mat(W, L.qkv), b.m(b.dxn, Hd), false);
  norm_backward(b, x_in, L.attn_norm_w, L.attn_norm_b, b.m(b.dxn, Hd), b.m(b.dx, Hd), /*accumulate=*/true);
  // Parallel residual: x_out = x_in + attn(norm1 x_in) + mlp(norm2 x_in), so x_in also gets the
  // MLP branch's gradient through norm2.
  if (a.parallel_residual)
    norm_backward(b, x_in, L.mlp_norm_w, L.mlp_norm_b, b.m(b.dxn2, Hd), b.m(b.dx, Hd), /*accumulate=*/true);
}

void Decoder::backward(const SavedActivations& s, std::span<const float> dlogits, std::span<float> grads,
                       GradientAdd how, const PartSink* sink) const {
  const Arch& a = arch_;
  check_trainable(a);
  const int64_t T = int64_t(s.ids.size()), Hd = a.hidden, V = a.vocab;
  if (!s.valid) fail("train backward: no forward pass to differentiate (call forward() first)");
  if (int64_t(dlogits.size()) != T * V)
    fail("train backward: dlogits has {} values, expected [{}, {}] = {}", dlogits.size(), T, V, T * V);
  if (sink && how != GradientAdd::kPerPart) fail("train backward: a part sink needs GradientAdd::kPerPart");
  if (!sink && int64_t(grads.size()) != params_.table.total())
    fail("train backward: a gradient buffer of {} floats for {} parameters", grads.size(), params_.table.total());
  if (T == 0) return;
  const Backend& be = *backend_;
  const auto pass_scope = be.begin_pass();
  const std::span<const float> W = op_weights();
  // The workspace of earlier calls (buffers grown at their first use), or one of its own when
  // another backward pass holds it.
  std::unique_lock lock(backward_mutex_, std::try_to_lock);
  BackwardWorkspace own;
  Backward b(be, W, s, grads, T, lock.owns_lock() ? backward_workspace_ : own);
  b.doc_start = in_backend_memory(s.doc_start, b.starts, be);
  b.per_part = how == GradientAdd::kPerPart;
  b.sink = sink;
  b.open(b.embedding, embedding_part(params_.regions));  // the token embedding (a tied head's too) and positions'

  // Head and final norm.
  const DecoderRegions& R = params_.regions;
  const ConstMatView dz(dlogits.data(), T, V, V), x_final = b.saved(s.x_final, Hd);
  b.open(b.current, head_part(R));
  norm(x_final, R.final_norm_w, R.final_norm_b, b.m(b.xn, Hd));
  be.linear_backward_weight(dz, b.m(b.xn, Hd), b.gmat(R.lm_head));  // tied: into the embedding's
  be.linear_backward_input(dz, mat(W, R.lm_head), b.m(b.dxn, Hd), false);
  norm_backward(b, x_final, R.final_norm_w, R.final_norm_b, b.m(b.dxn, Hd), b.m(b.dx, Hd), false);
  b.close(b.current);
  for (int64_t l = a.layers - 1; l >= 0; --l) {
    b.open(b.current, layer_part(R, l));
    const SavedActivations::Layer& S = recompute_layer(b, l);
    mlp_backward(b, S, l);
    attention_backward(b, S, l);
    b.close(b.current);
  }
  be.embedding_backward(in_backend_memory(s.ids, b.ids, be), b.m(b.dx, Hd), b.gmat(R.embed));
  if (R.pos_embed.present()) {  // GPT-2's wpe: each token's position in its document
    std::vector<int32_t> pos(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) pos[size_t(t)] = int32_t(t - s.doc_start[size_t(t)]);
    be.embedding_backward(in_backend_memory(pos, b.pos, be), b.m(b.dx, Hd), b.gmat(R.pos_embed));
  }
  b.close(b.embedding);
}

}  // namespace fusellm::model
