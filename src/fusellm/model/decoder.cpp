// The decoder's construction (the parameter table and the flat buffer) and its forward pass, the
// one every model runs (decoder.hpp has the math). Every operation goes through the backend.
#include "fusellm/model/decoder.hpp"

#include <fmt/format.h>

#include <cmath>

#include "fusellm/core/dtype.hpp"
#include "fusellm/core/error.hpp"

namespace fusellm::model {

namespace {

// Where each token's document starts, its position in it, and the document's length.
struct SequenceLayout {
  std::vector<int32_t> doc_start, pos, doc_len;
};

void check_ids(const Arch& a, std::span<const int32_t> ids) {
  for (size_t t = 0; t < ids.size(); ++t)
    if (ids[t] < 0 || ids[t] >= a.vocab)
      fail("forward: token id {} at position {} is outside the vocabulary [0, {})", ids[t], t, a.vocab);
}

SequenceLayout layout_sequence(const Arch& a, int64_t T, std::span<const int32_t> doc_ids) {
  if (!doc_ids.empty() && int64_t(doc_ids.size()) != T)
    fail("forward: {} doc_ids for {} tokens (expected one per token, or none)", doc_ids.size(), T);
  SequenceLayout s;
  s.doc_start.resize(size_t(T));
  s.pos.resize(size_t(T));
  s.doc_len.resize(size_t(T));
  for (int64_t t = 0; t < T; ++t) {
    const bool new_doc = t == 0 || (!doc_ids.empty() && doc_ids[t] != doc_ids[t - 1]);
    if (t > 0 && !doc_ids.empty() && doc_ids[t] < doc_ids[t - 1])
      fail("forward: doc_ids must be non-decreasing, found {} after {} at position {}", doc_ids[t], doc_ids[t - 1], t);
    s.doc_start[t] = new_doc ? int32_t(t) : s.doc_start[t - 1];
    s.pos[t] = int32_t(t - s.doc_start[t]);
    if (!a.context_limit.empty() && s.pos[t] >= a.max_positions)
      fail("forward: position {} (token {}) is beyond the context of this {} model ({} = {} positions per document)",
           s.pos[t], t, a.model_type, a.context_limit, a.max_positions);
  }
  for (int64_t t = T - 1; t >= 0; --t)
    s.doc_len[t] = (t + 1 < T && s.doc_start[t + 1] == s.doc_start[t]) ? s.doc_len[t + 1] : int32_t(t - s.doc_start[t] + 1);
  return s;
}

// A [T, cols] matrix over a buffer grown to fit (never shrunk: the next pass reuses it).
MatView buffer(GrowingBuffer& g, const Backend& be, int64_t T, int64_t cols) {
  return MatView{g.get<float>(be, size_t(T * cols)), T, cols, cols};
}

}  // namespace

void check_trainable(const Arch& a) {
  // The gated MLP's backward is SwiGLU's (swiglu_backward.cpp); the plain MLP's takes every
  // activation (activation_backward.cpp).
  if (a.gated_mlp && a.act != Activation::SiLU)
    fail("{}: training a gated MLP supports the activation silu only (LlamaMLP's SwiGLU)", a.model_type);
  // clamp_backward masks by the kept q/k/v, which are kept after RoPE.
  if (a.clip_qkv > 0 && a.pos == PosKind::Rotary)
    fail("{}: clip_qkv with rotary embeddings cannot be trained (the clamp's mask would be taken after RoPE)",
         a.model_type);
  // The backward pass starts from dL/dlogits of the unscaled head and leaves the embedding's
  // gradient whole: MosaicML's two training-only knobs are not in it.
  if (a.logit_scale != 1.0)
    fail("{}: field 'logit_scale' ({}): a model whose logits are scaled cannot be trained yet", a.model_type,
         a.logit_scale);
  if (a.embedding_fraction != 1.0)
    fail("{}: field 'embedding_fraction' ({}): a scaled embedding gradient cannot be trained yet", a.model_type,
         a.embedding_fraction);
}

Decoder::Decoder(Arch arch, const Checkpoint& ck, const Backend& backend, LayerRange range)
    : arch_(std::move(arch)), backend_(&backend), params_(plan_decoder_params(arch_, ck)), range_(range.of(arch_.layers)) {
  const Arch& a = arch_;
  weights_.resize(size_t(params_.table.total()));
  load_decoder_params(a, params_, ck, weights_, range_);
  if (!backend.host_memory()) {
    device_weights_ = backend.allocate(weights_.size() * sizeof(float));
    backend.copy_in(device_weights_->data, weights_.data(), weights_.size() * sizeof(float));
  }
  if (a.pos == PosKind::ALiBi) alibi_ = alibi_slopes(a.heads, a.alibi_bias_max);
  info_.family = a.family;
  info_.model_type = a.model_type;
  info_.vocab_size = a.vocab;
  info_.hidden_size = a.hidden;
  info_.num_layers = a.layers;
  info_.num_heads = a.heads;
  info_.num_kv_heads = a.kv_heads;
  info_.max_positions = a.max_positions;
  info_.num_parameters = params_.table.total();
}

namespace {

// out[i] = in[i] rounded to bfloat16 (round to nearest even, torch's .to(torch.bfloat16)); in place
// when out is in.
void round_to_bf16(std::span<const float> in, std::span<float> out) {
  const int64_t n = int64_t(in.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = bf16_to_f32(f32_to_bf16(in[size_t(i)]));
}

}  // namespace

void Decoder::upload_parameters() {
  const float* from = weights_.data();
  if (weight_dtype_ == DType::BF16) {
    rounded_.resize(weights_.size());
    round_to_bf16(weights_, rounded_);
    from = rounded_.data();
  }
  if (device_weights_) backend_->copy_in(device_weights_->data, from, weights_.size() * sizeof(float));
}

void Decoder::set_weight_dtype(DType d) {
  if (d != DType::F32 && d != DType::BF16)
    fail("{} model: weights in {} are not supported (fp32 or bf16)", arch_.model_type, dtype_name(d));
  weight_dtype_ = d;
  if (d == DType::F32) rounded_ = {};
  upload_parameters();
}

void Decoder::round_parameters_to(DType d) {
  if (d != DType::F32 && d != DType::BF16)
    fail("decoder: parameters can be rounded to fp32 or bf16, not {}", dtype_name(d));
  if (d == DType::F32) return;
  round_to_bf16(weights_, weights_);
  upload_parameters();
}

std::span<const float> Decoder::op_weights() const {
  if (device_weights_) return {static_cast<const float*>(device_weights_->data), weights_.size()};
  if (weight_dtype_ == DType::BF16) return rounded_;
  return weights_;
}

AttentionShape Decoder::attention_shape(int64_t layer) const {
  const Arch& a = arch_;
  AttentionShape as;
  as.heads = a.heads;
  as.kv_heads = a.kv_heads;
  as.head_dim = a.head_dim;
  double scale = a.attn_scale > 0 ? a.attn_scale : 1.0 / std::sqrt(double(a.head_dim));
  if (a.scale_by_inverse_layer) scale /= double(layer + 1);
  as.scale = float(scale);
  as.sliding_window = a.sliding_window;
  as.alibi = alibi_;
  return as;
}

void Decoder::norm(ConstMatView x, const Region& w, const Region& b, MatView y) const {
  const std::span<const float> W = op_weights();
  if (arch_.norm == NormKind::RMSNorm)
    backend_->rmsnorm(x, vec(W, w), float(arch_.norm_eps), y);
  else
    backend_->layernorm(x, vec(W, w), vec(W, b), float(arch_.norm_eps), y);
}

// One forward pass's buffers: the residual stream X, the norm output XN, and the per-layer
// activations (kept ones in `save`, the others in the workspace), and its sequence (document
// starts and positions where the backend reads them).
// `keep`: where layer_forward writes the layer's kept activations (nullptr: not saving), all of
// them, or with `keep_input_only` (a layer recomputed in backward) x_in alone.
struct Decoder::Pass {
  int64_t T = 0;
  SequenceLayout seq;
  std::span<const int32_t> doc_start, pos;
  RopeTable rope_table;
  const RopeTable* rope = &rope_table;
  Workspace* ws = nullptr;
  MatView X, XN, QKV, ATT, MLP, H;
  std::unique_ptr<Backend::PassScope> scope;
  std::unique_lock<std::mutex> lock;
  Workspace private_workspace;
  SavedActivations* save = nullptr;
  SavedActivations::Layer* keep = nullptr;
  bool keep_input_only = false;
};

// Lays out the sequence and the buffers; the residual stream is `x` [T, hidden] (nullptr: the
// workspace's; a host pointer, so only on a backend whose memory is the host's). The workspace
// is this decoder's unless a concurrent pass holds it.
void Decoder::open_pass(Pass& p, int64_t T, std::span<const int32_t> doc_ids, float* x, SavedActivations* save) const {
  const Arch& a = arch_;
  const Backend& be = *backend_;
  p.T = T;
  p.seq = layout_sequence(a, T, doc_ids);
  p.scope = be.begin_pass();
  if (a.pos == PosKind::Rotary) p.rope_table = rope_table(a.rope, p.seq.pos, p.seq.doc_len);
  p.lock = std::unique_lock(workspace_mutex_, std::try_to_lock);
  Workspace& ws = p.lock.owns_lock() ? workspace_ : p.private_workspace;
  p.ws = &ws;
  p.doc_start = in_backend_memory(p.seq.doc_start, ws.doc_start, be);
  p.pos = in_backend_memory(p.seq.pos, ws.pos, be);
  const int64_t Hd = a.hidden, I = a.intermediate;
  p.X = x ? MatView{x, T, Hd, Hd} : buffer(ws.x, be, T, Hd);
  p.XN = buffer(ws.xn, be, T, Hd);
  p.save = save;
  if (save) {
    save->layers.resize(size_t(a.layers));
    p.H = buffer(ws.h, be, T, I);
  }
}

void Decoder::embed_into(Pass& p, std::span<const int32_t> ids) const {
  const std::span<const float> W = op_weights();
  const DecoderRegions& R = params_.regions;
  backend_->embed(in_backend_memory(ids, p.ws->ids, *backend_), mat(W, R.embed), p.pos,
                  R.pos_embed.present() ? mat(W, R.pos_embed) : ConstMatView(), p.X);
}

void Decoder::head_into(Pass& p, Tensor& logits) const {
  if (backend_->host_memory()) {
    const DecoderRegions& R = params_.regions;
    norm(p.X, R.final_norm_w, R.final_norm_b, p.XN);
    // The logits tensor starts zeroed: accumulating into it spares OpenBLAS's own zeroing pass
    // over the largest matrix of the forward pass.
    backend_->linear(p.XN, mat(op_weights(), R.lm_head), {},
                     MatView{logits.data(), p.T, arch_.vocab, arch_.vocab}, /*accumulate=*/true);
  } else {
    const MatView L = head_in_backend(p, p.ws->logits);
    backend_->copy_out(logits.data(), L.p, size_t(logits.size()) * sizeof(float));
  }
  // MosaicML's MPTForCausalLM.forward: logits *= logit_scale, after the head.
  if (arch_.logit_scale != 1.0) {
    const float scale = float(arch_.logit_scale);
    for (float& v : logits.span()) v *= scale;
  }
}

// The final norm (into XN) and the LM head's GEMM into a [T, vocab] buffer of the backend's memory.
MatView Decoder::head_in_backend(Pass& p, GrowingBuffer& into) const {
  const DecoderRegions& R = params_.regions;
  norm(p.X, R.final_norm_w, R.final_norm_b, p.XN);
  const MatView L = buffer(into, *backend_, p.T, arch_.vocab);
  backend_->linear(p.XN, mat(op_weights(), R.lm_head), {}, L, /*accumulate=*/false);
  return L;
}

void Decoder::require_range(const char* what, int64_t first, int64_t last) const {
  if (first < range_.first || last > range_.last || first > last)
    fail("{}: layers [{}, {}) are not within the layers [{}, {}) this decoder holds (of {})", what, first, last,
         range_.first, range_.last, arch_.layers);
}

void Decoder::layer_forward(Pass& p, int64_t l) const {
  const Arch& a = arch_;
  const Backend& be = *backend_;
  const LayerRegions& L = params_.regions.layers[size_t(l)];
  const std::span<const float> W = op_weights();
  const int64_t T = p.T, I = a.intermediate, nin = a.gated_mlp ? 2 * I : I;
  const int64_t nqkv = (a.heads + 2 * a.kv_heads) * a.head_dim, natt = a.heads * a.head_dim;
  // The kept activations are written where they are kept, the others in the workspace.
  SavedActivations::Layer* S = p.keep_input_only ? nullptr : p.keep;
  if (p.keep) be.copy(p.X, buffer(p.keep->x_in, be, T, a.hidden));
  p.QKV = buffer(S ? S->qkv : p.ws->qkv, be, T, nqkv), p.ATT = buffer(S ? S->att : p.ws->att, be, T, natt);
  p.MLP = buffer(S ? S->gate_up : p.ws->mlp, be, T, nin);
  norm(p.X, L.attn_norm_w, L.attn_norm_b, p.XN);
  be.linear(p.XN, mat(W, L.qkv), vec(W, L.qkv_b), p.QKV, false);
  if (a.clip_qkv > 0) be.clamp(p.QKV, float(a.clip_qkv));
  if (a.pos == PosKind::Rotary) be.apply_rope(*p.rope, p.QKV, 0, a.heads + a.kv_heads, a.head_dim);  // q, k heads
  be.causal_attention(p.QKV, p.doc_start, attention_shape(l), p.ATT);
  if (a.parallel_residual) norm(p.X, L.mlp_norm_w, L.mlp_norm_b, p.XN);  // from x before the update
  be.linear(p.ATT, mat(W, L.o), vec(W, L.o_b), p.X, /*accumulate=*/true);
  if (S) be.copy(p.X, buffer(S->x_mid, be, T, a.hidden));
  if (!a.parallel_residual) norm(p.X, L.mlp_norm_w, L.mlp_norm_b, p.XN);
  be.linear(p.XN, mat(W, L.in), vec(W, L.in_b), p.MLP, false);
  // Saving, the activation goes into H (a layer recomputed in backward too: the same operations
  // as keeping it, so the same bits on to the next layer).
  const bool saving = p.keep != nullptr;
  if (!a.gated_mlp && saving) {  // the pre-activations stay for the backward pass
    be.activation(a.act, p.MLP, p.H);
    be.linear(p.H, mat(W, L.out), vec(W, L.out_b), p.X, true);
  } else if (!a.gated_mlp) {
    be.activation(a.act, p.MLP);
    be.linear(p.MLP, mat(W, L.out), vec(W, L.out_b), p.X, true);
  } else if (saving) {  // [gate | up] stays for the backward pass
    be.gated_activation(a.act, p.MLP, p.H);
    be.linear(p.H, mat(W, L.out), vec(W, L.out_b), p.X, true);
  } else {  // act(gate) * up in the gate half, read with the row stride of [gate | up]
    be.gated_activation(a.act, p.MLP);
    be.linear(ConstMatView(p.MLP.p, T, I, nin), mat(W, L.out), vec(W, L.out_b), p.X, true);
  }
}

// The forward pass of layer l once more, from the x_in `s` kept (a layer SavedActivations::
// recomputes), with the same operations in the same order as the pass that saved it, writing
// every activation the backward pass reads into r.layer. doc_start: in the backend's memory.
void Decoder::rerun_layer(const SavedActivations& s, int64_t l, std::span<const int32_t> doc_start,
                          Recomputed& r) const {
  const Backend& be = *backend_;
  const int64_t T = int64_t(s.ids.size()), Hd = arch_.hidden;
  Pass p;
  p.T = T;
  p.rope = &s.rope;
  p.doc_start = doc_start;
  p.X = buffer(r.x, be, T, Hd);
  p.XN = buffer(r.xn, be, T, Hd);
  p.H = buffer(r.h, be, T, arch_.intermediate);
  p.keep = &r.layer;
  be.copy(ConstMatView(s.layers[size_t(l)].x_in.data<float>(), T, Hd, Hd), p.X);
  layer_forward(p, l);
}

// What every whole forward pass checks first; false for an empty sequence (its doc_ids checked too),
// which has nothing to run.
bool Decoder::begin_forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                            SavedActivations* save) const {
  require_range("forward", 0, arch_.layers);
  if (save) check_trainable(arch_), save->valid = false;
  check_ids(arch_, ids);
  if (!ids.empty()) return true;
  layout_sequence(arch_, 0, doc_ids);
  return false;
}

Tensor Decoder::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids, SavedActivations* save) const {
  if (!begin_forward(ids, doc_ids, save)) return Tensor({0, arch_.vocab});
  const int64_t T = int64_t(ids.size());
  Tensor logits({T, arch_.vocab});
  Pass p;
  open_pass(p, T, doc_ids, nullptr, save);
  if (save)
    run_saving(p, ids, *save);
  else
    run_layers(p, ids);
  head_into(p, logits);
  return logits;
}

std::span<float> Decoder::forward_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                             SavedActivations& save) const {
  // check_trainable (logit_scale 1): the head's output is the logits.
  return head_output_in_backend(ids, doc_ids, &save, save.logits);
}

std::span<const float> Decoder::logits_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                                  GrowingBuffer& into) const {
  if (arch_.logit_scale != 1.0)
    fail("{} model: logits_in_backend: logit_scale {} is applied on the host (forward())", arch_.model_type,
         arch_.logit_scale);
  return head_output_in_backend(ids, doc_ids, nullptr, into);
}

// The whole forward pass (saving into `save` when given) with the head's output [T, vocab] left
// in `into`, in the backend's memory.
std::span<float> Decoder::head_output_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids,
                                                 SavedActivations* save, GrowingBuffer& into) const {
  if (!begin_forward(ids, doc_ids, save)) return {};
  const int64_t T = int64_t(ids.size());
  Pass p;
  open_pass(p, T, doc_ids, nullptr, save);
  if (save)
    run_saving(p, ids, *save);
  else
    run_layers(p, ids);
  const MatView L = head_in_backend(p, into);
  return {L.p, size_t(T * arch_.vocab)};
}

// The embedding and the layers, keeping what backward() needs in `save` (the layers'
// activations, x_final, the tokens, document starts and RoPE table; the last two moved out of
// the pass, whose head reads neither).
void Decoder::run_saving(Pass& p, std::span<const int32_t> ids, SavedActivations& save) const {
  run_layers(p, ids);
  backend_->copy(p.X, buffer(save.x_final, *backend_, p.T, arch_.hidden));
  save.ids.assign(ids.begin(), ids.end());
  save.doc_start = std::move(p.seq.doc_start);
  save.rope = std::move(p.rope_table);
  save.valid = true;
}

// The embedding and every layer, each layer's activations kept as p.save says.
void Decoder::run_layers(Pass& p, std::span<const int32_t> ids) const {
  embed_into(p, ids);
  for (int64_t l = 0; l < arch_.layers; ++l) {
    p.keep = p.save ? &p.save->layers[size_t(l)] : nullptr;
    p.keep_input_only = p.save && p.save->recomputes(l);
    layer_forward(p, l);
  }
}

Tensor Decoder::embed(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) const {
  require_range("embed", 0, range_.last);
  check_ids(arch_, ids);
  const int64_t T = int64_t(ids.size());
  Tensor hidden({T, arch_.hidden});
  if (T == 0) return hidden;
  Pass p;
  const bool host = backend_->host_memory();
  open_pass(p, T, doc_ids, host ? hidden.data() : nullptr, nullptr);
  embed_into(p, ids);
  if (!host) backend_->copy_out(hidden.data(), p.X.p, size_t(hidden.size()) * sizeof(float));
  return hidden;
}

void Decoder::layers(Tensor& hidden, int64_t first, int64_t last, std::span<const int32_t> doc_ids) const {
  require_range("layers", first, last);
  if (hidden.rank() != 2 || hidden.dim(1) != arch_.hidden)
    fail("layers: hidden states of shape {}, expected [T, {}]", shape_str(hidden.shape()), arch_.hidden);
  if (hidden.dim(0) == 0) return;
  Pass p;
  const bool host = backend_->host_memory();
  const size_t bytes = size_t(hidden.size()) * sizeof(float);
  open_pass(p, hidden.dim(0), doc_ids, host ? hidden.data() : nullptr, nullptr);
  if (!host) backend_->copy_in(p.X.p, hidden.data(), bytes);
  for (int64_t l = first; l < last; ++l) layer_forward(p, l);
  if (!host) backend_->copy_out(hidden.data(), p.X.p, bytes);
}

Tensor Decoder::head(const Tensor& hidden) const {
  require_range("head", range_.first, arch_.layers);
  if (hidden.rank() != 2 || hidden.dim(1) != arch_.hidden)
    fail("head: hidden states of shape {}, expected [T, {}]", shape_str(hidden.shape()), arch_.hidden);
  const int64_t T = hidden.dim(0);
  Tensor logits({T, arch_.vocab});
  if (T == 0) return logits;
  Pass p;
  // The head only reads the residual stream (norm into XN).
  const bool host = backend_->host_memory();
  open_pass(p, T, {}, host ? const_cast<float*>(hidden.data()) : nullptr, nullptr);
  if (!host) backend_->copy_in(p.X.p, hidden.data(), size_t(hidden.size()) * sizeof(float));
  head_into(p, logits);
  return logits;
}

}  // namespace fusellm::model
