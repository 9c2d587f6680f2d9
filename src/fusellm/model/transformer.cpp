// The shared decoder-only transformer: loads a family's tensors (by its NameTable) into one fused
// fp32 layout and runs the forward pass over a full sequence.
//
// Per layer (LlamaDecoderLayer, MptBlock, GPTNeoXLayer, GPT2Block):
//   sequential:  x = x + o(attn(norm1 x));  x = x + mlp(norm2 x)
//   parallel:    x = x + o(attn(norm1 x)) + mlp(norm2 x)          (use_parallel_residual)
// with attn = fused QKV projection (+ bias, clip), RoPE on q/k (rotary) and causal attention
// within documents (+ ALiBi, sliding window); mlp = down(act(gate x) * up x) or down(act(up x)).
// Then the final norm and the LM head (the token embedding when tied).
// Load-time fusion: Q/K/V become one [q; k; v] matrix and gate/up one [gate; up] matrix, so each
// is a single GEMM; GPT-2's Conv1D weights are transposed to the nn.Linear layout; NeoX's
// per-head interleaved QKV rows are regrouped. The residual stream is updated in place by
// accumulating GEMMs (beta = 1).
#include "fusellm/model/transformer.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "fusellm/core/error.hpp"

namespace fusellm::model {

const char* slot_name(Slot s) {
  switch (s) {
    case Slot::TokenEmbed: return "token embedding";
    case Slot::PosEmbed: return "position embedding";
    case Slot::FinalNormW: return "final norm weight";
    case Slot::FinalNormB: return "final norm bias";
    case Slot::LmHead: return "LM head";
    case Slot::AttnNormW: return "attention norm weight";
    case Slot::AttnNormB: return "attention norm bias";
    case Slot::Q: return "q projection";
    case Slot::K: return "k projection";
    case Slot::V: return "v projection";
    case Slot::QB: return "q bias";
    case Slot::KB: return "k bias";
    case Slot::VB: return "v bias";
    case Slot::QKV: return "fused qkv projection";
    case Slot::QKVB: return "fused qkv bias";
    case Slot::O: return "attention output projection";
    case Slot::OB: return "attention output bias";
    case Slot::MlpNormW: return "MLP norm weight";
    case Slot::MlpNormB: return "MLP norm bias";
    case Slot::Gate: return "MLP gate projection";
    case Slot::GateB: return "MLP gate bias";
    case Slot::Up: return "MLP up projection";
    case Slot::UpB: return "MLP up bias";
    case Slot::Down: return "MLP down projection";
    case Slot::DownB: return "MLP down bias";
  }
  return "?";
}

int64_t positive(const HFConfig& c, const std::string& key, int64_t value) {
  if (value <= 0) c.field_error(key, fmt::format("expected a positive integer, found {}", value));
  return value;
}

RopeConfig parse_rope(const HFConfig& c, int64_t rotary_dim, double theta, int64_t max_positions) {
  RopeConfig r;
  r.rotary_dim = rotary_dim;
  r.theta = theta;
  r.max_positions = max_positions;
  if (rotary_dim <= 0 || rotary_dim % 2)
    fail("{}: rotary dimension {} (from head_dim and the rotary fraction) must be positive and even", c.path(),
         rotary_dim);
  if (theta <= 0) fail("{}: RoPE base (rope_theta / rotary_emb_base) must be positive, found {}", c.path(), theta);
  if (!c.has("rope_scaling")) return r;
  const nlohmann::json& j = c.json()["rope_scaling"];
  if (!j.is_object()) c.field_error("rope_scaling", fmt::format("expected an object or null, found {}", j.dump()));
  const HFConfig rs(j, c.path() + ": rope_scaling");
  const std::string type = rs.has("rope_type") ? rs.get_string("rope_type") : rs.get_string("type");
  auto factor = [&] {
    const double f = rs.get_float("factor");
    if (!(f >= 1.0)) rs.field_error("factor", fmt::format("expected a number >= 1, found {}", f));
    return f;
  };
  if (type == "default") {
  } else if (type == "linear") {
    r.type = RopeConfig::Type::Linear;
    r.factor = factor();
  } else if (type == "dynamic") {
    r.type = RopeConfig::Type::Dynamic;
    r.factor = factor();
    if (rotary_dim <= 2) fail("{}: dynamic RoPE needs a rotary dimension above 2", c.path());
  } else if (type == "llama3") {
    r.type = RopeConfig::Type::Llama3;
    r.factor = factor();
    r.low_freq_factor = rs.get_float("low_freq_factor");
    r.high_freq_factor = rs.get_float("high_freq_factor");
    r.original_max_positions = positive(rs, "original_max_position_embeddings",
                                        rs.get_int("original_max_position_embeddings"));
    if (!(r.high_freq_factor > r.low_freq_factor))
      rs.field_error("high_freq_factor", "must be greater than low_freq_factor");
  } else {
    fail("{}: field 'rope_scaling': unsupported RoPE type \"{}\" (supported: default, linear, dynamic, llama3)",
         c.path(), type);
  }
  return r;
}

namespace {

bool is_layer_slot(Slot s) {
  return !(s == Slot::TokenEmbed || s == Slot::PosEmbed || s == Slot::FinalNormW || s == Slot::FinalNormB ||
           s == Slot::LmHead);
}

// Reads the tensors of one checkpoint by a family's name table.
class SlotReader {
 public:
  SlotReader(const Arch& a, const Checkpoint& ck) : a_(a), ck_(ck) {
    // Checkpoints of the bare base model (GPT2Model, ...) have no prefix.
    const TensorName& e = entry(Slot::TokenEmbed);
    prefix_ = a.names->base;
    if (!ck.has(prefix_ + e.pattern) && ck.has(e.pattern)) prefix_.clear();
  }

  std::string name(Slot s, int64_t layer) const {
    const TensorName& e = entry(s);
    const std::string n = is_layer_slot(s) ? fmt::format(fmt::runtime(e.pattern), layer) : std::string(e.pattern);
    return e.outside_base ? n : prefix_ + n;
  }

  // fp32 tensor in the logical (nn.Linear, [out, in]) layout, after checking the stored shape.
  Tensor load(Slot s, int64_t layer, Shape logical) {
    const bool transposed = a_.conv1d && logical.size() == 2 && is_layer_slot(s);
    Shape stored = logical;
    if (transposed) std::swap(stored[0], stored[1]);
    const std::string n = name(s, layer);
    Tensor t = with_context(is_layer_slot(s) ? fmt::format("{} of layer {}", slot_name(s), layer) : slot_name(s),
                            [&] { return ck_.load_f32(n, stored); });
    params_ += t.size();
    if (!transposed) return t;
    Tensor out(logical);
    const int64_t R = stored[0], C = stored[1];
    for (int64_t r = 0; r < R; ++r)
      for (int64_t c = 0; c < C; ++c) out[c * R + r] = t[r * C + c];
    return out;
  }

  int64_t params() const { return params_; }

 private:
  const TensorName& entry(Slot s) const {
    for (const TensorName& e : a_.names->names)
      if (e.slot == s) return e;
    fail("{}: the tensor table has no entry for the {}", a_.family, slot_name(s));
  }
  const Arch& a_;
  const Checkpoint& ck_;
  std::string prefix_;
  int64_t params_ = 0;
};

// Concatenates tensors along dim 0.
Tensor concat_rows(std::initializer_list<const Tensor*> parts) {
  int64_t rows = 0, cols = -1;
  for (const Tensor* t : parts) {
    rows += t->rank() == 1 ? t->size() : t->dim(0);
    cols = t->rank() == 1 ? 1 : t->dim(1);
  }
  std::vector<float> v;
  v.reserve(size_t(rows * cols));
  for (const Tensor* t : parts) v.insert(v.end(), t->data(), t->data() + t->size());
  const bool vec = (*parts.begin())->rank() == 1;
  return vec ? Tensor({rows}, std::move(v)) : Tensor({rows, cols}, std::move(v));
}

// GPT-NeoX's query_key_value: rows grouped per head as [q_h; k_h; v_h] (GPTNeoXAttention's
// view(heads, 3 * head_size)); regroup to [q heads; k heads; v heads]. Works for biases too.
Tensor regroup_per_head_qkv(const Tensor& t, int64_t heads, int64_t head_dim) {
  const int64_t cols = t.rank() == 1 ? 1 : t.dim(1);
  Tensor out(t.shape());
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t part = 0; part < 3; ++part) {
      const float* src = t.data() + ((h * 3 + part) * head_dim) * cols;
      float* dst = out.data() + ((part * heads + h) * head_dim) * cols;
      std::memcpy(dst, src, sizeof(float) * size_t(head_dim * cols));
    }
  return out;
}

MatView view(Tensor& t, int64_t rows, int64_t cols) { return {t.data(), rows, cols, cols}; }
ConstMatView cview(const Tensor& t) {
  return {t.data(), t.dim(0), t.rank() == 1 ? 1 : t.dim(1), t.rank() == 1 ? 1 : t.dim(1)};
}
std::span<const float> opt(const Tensor& t) { return t.size() ? t.span() : std::span<const float>(); }

// The MLP weights of layer l; a shape error says where the expected width comes from when
// that is not a plain config field (MPT's expansion_ratio).
struct MlpWeights {
  Tensor w_in, b_in, w_out, b_out;
};
MlpWeights load_mlp(SlotReader& rd, const Arch& a, int64_t l) {
  const int64_t Hd = a.hidden, I = a.intermediate;
  MlpWeights L;
  try {
    if (a.gated_mlp) {
      const Tensor g = rd.load(Slot::Gate, l, {I, Hd}), u = rd.load(Slot::Up, l, {I, Hd});
      L.w_in = concat_rows({&g, &u});
      if (a.mlp_bias) {
        const Tensor gb = rd.load(Slot::GateB, l, {I}), ub = rd.load(Slot::UpB, l, {I});
        L.b_in = concat_rows({&gb, &ub});
      }
    } else {
      L.w_in = rd.load(Slot::Up, l, {I, Hd});
      if (a.mlp_bias) L.b_in = rd.load(Slot::UpB, l, {I});
    }
    L.w_out = rd.load(Slot::Down, l, {Hd, I});
    if (a.mlp_bias) L.b_out = rd.load(Slot::DownB, l, {Hd});
  } catch (const Error& e) {
    if (a.intermediate_source.empty()) throw;
    throw Error(fmt::format("{} (the MLP width {} is {})", e.what(), I, a.intermediate_source));
  }
  return L;
}

}  // namespace

TransformerLM::TransformerLM(Arch arch, const Checkpoint& ck) : arch_(std::move(arch)) {
  const Arch& a = arch_;
  const int64_t Hd = a.hidden, V = a.vocab, D = a.head_dim, H = a.heads, KV = a.kv_heads;
  if (H % KV) fail("{}: {} attention heads are not a multiple of {} key/value heads", a.model_type, H, KV);
  SlotReader rd(a, ck);
  embed_ = rd.load(Slot::TokenEmbed, 0, {V, Hd});
  if (a.pos == PosKind::Learned) pos_embed_ = rd.load(Slot::PosEmbed, 0, {a.max_positions, Hd});
  final_norm_w_ = rd.load(Slot::FinalNormW, 0, {Hd});
  if (a.norm_bias) final_norm_b_ = rd.load(Slot::FinalNormB, 0, {Hd});
  if (!a.tied_embeddings) lm_head_ = rd.load(Slot::LmHead, 0, {V, Hd});

  const int64_t nq = H * D, nkv = KV * D;
  layers_.resize(size_t(a.layers));
  for (int64_t l = 0; l < a.layers; ++l) {
    Layer& L = layers_[l];
    L.attn_norm_w = rd.load(Slot::AttnNormW, l, {Hd});
    L.mlp_norm_w = rd.load(Slot::MlpNormW, l, {Hd});
    if (a.norm_bias) {
      L.attn_norm_b = rd.load(Slot::AttnNormB, l, {Hd});
      L.mlp_norm_b = rd.load(Slot::MlpNormB, l, {Hd});
    }
    switch (a.qkv_layout) {
      case QkvLayout::Separate: {
        const Tensor q = rd.load(Slot::Q, l, {nq, Hd}), k = rd.load(Slot::K, l, {nkv, Hd}),
                     v = rd.load(Slot::V, l, {nkv, Hd});
        L.wqkv = concat_rows({&q, &k, &v});
        if (a.qkv_bias) {
          const Tensor qb = rd.load(Slot::QB, l, {nq}), kb = rd.load(Slot::KB, l, {nkv}),
                       vb = rd.load(Slot::VB, l, {nkv});
          L.bqkv = concat_rows({&qb, &kb, &vb});
        }
        break;
      }
      case QkvLayout::Fused:
        L.wqkv = rd.load(Slot::QKV, l, {nq + 2 * nkv, Hd});
        if (a.qkv_bias) L.bqkv = rd.load(Slot::QKVB, l, {nq + 2 * nkv});
        break;
      case QkvLayout::FusedPerHead:
        if (KV != H) fail("{}: per-head fused QKV needs as many KV heads as heads", a.model_type);
        L.wqkv = regroup_per_head_qkv(rd.load(Slot::QKV, l, {3 * nq, Hd}), H, D);
        if (a.qkv_bias) L.bqkv = regroup_per_head_qkv(rd.load(Slot::QKVB, l, {3 * nq}), H, D);
        break;
    }
    L.wo = rd.load(Slot::O, l, {Hd, nq});
    if (a.o_bias) L.bo = rd.load(Slot::OB, l, {Hd});
    MlpWeights m = load_mlp(rd, a, l);
    L.w_in = std::move(m.w_in);
    L.b_in = std::move(m.b_in);
    L.w_out = std::move(m.w_out);
    L.b_out = std::move(m.b_out);
  }
  if (a.pos == PosKind::ALiBi) alibi_ = alibi_slopes(H, a.alibi_bias_max);

  info_.family = a.family;
  info_.model_type = a.model_type;
  info_.vocab_size = V;
  info_.hidden_size = Hd;
  info_.num_layers = a.layers;
  info_.num_heads = H;
  info_.num_kv_heads = KV;
  info_.max_positions = a.max_positions;
  info_.num_parameters = rd.params();
}

Tensor TransformerLM::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) const {
  const Arch& a = arch_;
  const int64_t T = int64_t(ids.size()), Hd = a.hidden, V = a.vocab, H = a.heads, KV = a.kv_heads, D = a.head_dim;
  if (!doc_ids.empty() && int64_t(doc_ids.size()) != T)
    fail("forward: {} doc_ids for {} tokens (expected one per token, or none)", doc_ids.size(), T);
  // Documents: start and position of every token.
  std::vector<int32_t> doc_start(static_cast<size_t>(T)), pos(static_cast<size_t>(T)), doc_len(static_cast<size_t>(T));
  for (int64_t t = 0; t < T; ++t) {
    if (ids[t] < 0 || ids[t] >= V) fail("forward: token id {} at position {} is outside the vocabulary [0, {})", ids[t], t, V);
    const bool new_doc = t == 0 || (!doc_ids.empty() && doc_ids[t] != doc_ids[t - 1]);
    if (t > 0 && !doc_ids.empty() && doc_ids[t] < doc_ids[t - 1])
      fail("forward: doc_ids must be non-decreasing, found {} after {} at position {}", doc_ids[t], doc_ids[t - 1], t);
    doc_start[t] = new_doc ? int32_t(t) : doc_start[t - 1];
    pos[t] = int32_t(t - doc_start[t]);
    if (!a.context_limit.empty() && pos[t] >= a.max_positions)
      fail("forward: position {} (token {}) is beyond the context of this {} model ({} = {} positions per document)",
           pos[t], t, a.model_type, a.context_limit, a.max_positions);
  }
  for (int64_t t = T - 1; t >= 0; --t)
    doc_len[t] = (t + 1 < T && doc_start[t + 1] == doc_start[t]) ? doc_len[t + 1] : int32_t(t - doc_start[t] + 1);

  Tensor logits({T, V});
  if (T == 0) return logits;
  BlasThreadsGuard blas_one_thread;

  const int64_t nqkv = (H + 2 * KV) * D, I = a.intermediate, nin = a.gated_mlp ? 2 * I : I;
  std::unique_lock lock(workspace_mutex_, std::try_to_lock);
  Workspace private_workspace;
  Workspace& ws = lock.owns_lock() ? workspace_ : private_workspace;
  auto buffer = [T](std::vector<float>& v, int64_t cols) {
    if (int64_t(v.size()) < T * cols) v.resize(size_t(T * cols));
    return MatView{v.data(), T, cols, cols};
  };
  const MatView X = buffer(ws.x, Hd), XN = buffer(ws.xn, Hd), QKV = buffer(ws.qkv, nqkv), ATT = buffer(ws.att, H * D),
                MLP = buffer(ws.mlp, nin);

  // Embeddings (+ learned positions, GPT2Model).
#pragma omp parallel for schedule(static) if (T >= 64)
  for (int64_t t = 0; t < T; ++t) {
    const float* e = embed_.data() + int64_t(ids[t]) * Hd;
    float* xr = X.row(t);
    if (a.pos == PosKind::Learned) {
      const float* p = pos_embed_.data() + int64_t(pos[t]) * Hd;
#pragma omp simd
      for (int64_t c = 0; c < Hd; ++c) xr[c] = e[c] + p[c];
    } else {
      std::memcpy(xr, e, sizeof(float) * size_t(Hd));
    }
  }

  RopeTable rope;
  if (a.pos == PosKind::Rotary) rope = rope_table(a.rope, pos, doc_len);

  auto norm = [&](ConstMatView in, const Tensor& w, const Tensor& b, MatView out) {
    if (a.norm == NormKind::RMSNorm)
      rmsnorm(in, w.span(), float(a.norm_eps), out);
    else
      layernorm(in, w.span(), opt(b), float(a.norm_eps), out);
  };

  for (int64_t l = 0; l < a.layers; ++l) {
    const Layer& L = layers_[l];
    norm(X, L.attn_norm_w, L.attn_norm_b, XN);
    linear(XN, cview(L.wqkv), opt(L.bqkv), QKV);
    if (a.clip_qkv > 0) {
      const float c = float(a.clip_qkv);
      float* p = QKV.p;
      const int64_t n = T * nqkv;
#pragma omp parallel for simd schedule(static) if (n >= 65536)
      for (int64_t i = 0; i < n; ++i) p[i] = std::clamp(p[i], -c, c);
    }
    if (a.pos == PosKind::Rotary) {
      apply_rope(rope, QKV, 0, H + KV, D);  // q heads, then k heads: adjacent columns
    }
    AttentionShape as;
    as.heads = H;
    as.kv_heads = KV;
    as.head_dim = D;
    double scale = a.attn_scale > 0 ? a.attn_scale : 1.0 / std::sqrt(double(D));
    if (a.scale_by_inverse_layer) scale /= double(l + 1);
    as.scale = float(scale);
    as.sliding_window = a.sliding_window;
    as.alibi = alibi_;
    causal_attention(QKV, doc_start, as, ATT);
    if (a.parallel_residual) norm(X, L.mlp_norm_w, L.mlp_norm_b, XN);  // from x before the update
    linear(ATT, cview(L.wo), opt(L.bo), X, /*accumulate=*/true);
    if (!a.parallel_residual) norm(X, L.mlp_norm_w, L.mlp_norm_b, XN);
    linear(XN, cview(L.w_in), opt(L.b_in), MLP);
    if (a.gated_mlp) {
      gated_activation(a.act, MLP);
      linear(ConstMatView(MLP.p, T, I, nin), cview(L.w_out), opt(L.b_out), X, true);
    } else {
      activation(a.act, MLP);
      linear(MLP, cview(L.w_out), opt(L.b_out), X, true);
    }
  }
  norm(X, final_norm_w_, final_norm_b_, XN);
  // The logits tensor starts zeroed: accumulating into it spares OpenBLAS's own zeroing pass
  // over the largest matrix of the forward pass.
  linear(XN, cview(lm_head_.size() ? lm_head_ : embed_), {}, view(logits, T, V), /*accumulate=*/true);
  return logits;
}

}  // namespace fusellm::model
