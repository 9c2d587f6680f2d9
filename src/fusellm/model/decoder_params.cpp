// The parameter table of a family's model over one flat buffer, and its loading from safetensors.
// Planning follows the family's Arch (which slots exist, their shapes) and its NameTable (their
// names); loading reads each tensor straight into its place in the buffer (converted to fp32),
// so the model holds one copy of its weights and no per-tensor allocation.
#include "fusellm/model/decoder_params.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <initializer_list>
#include <utility>

#include "fusellm/core/error.hpp"

namespace fusellm::model {

namespace {

bool is_mlp_slot(Slot s) {
  return s == Slot::Gate || s == Slot::GateB || s == Slot::Up || s == Slot::UpB || s == Slot::Down ||
         s == Slot::DownB;
}

const TensorName& entry(const Arch& a, Slot s) {
  for (const TensorName& e : a.names->names)
    if (e.slot == s) return e;
  fail("{}: the tensor table has no entry for the {}", a.family, slot_name(s));
}

// Checkpoints of the bare base model (GPT2Model, ...) have no prefix.
std::string name_prefix(const Arch& a, const std::function<bool(const std::string&)>& has) {
  const std::string base = a.names->base, embed = entry(a, Slot::TokenEmbed).pattern;
  return !has(base + embed) && has(embed) ? std::string() : base;
}

std::string tensor_name(const Arch& a, const std::string& prefix, Slot s, int64_t layer) {
  const TensorName& e = entry(a, s);
  const std::string n = is_layer_slot(s) ? fmt::format(fmt::runtime(e.pattern), layer) : std::string(e.pattern);
  return e.outside_base ? n : prefix + n;
}

// Adds the tensors of one region, adjacent in the buffer: [q; k; v], [gate; up], or one tensor.
class Planner {
 public:
  Planner(const Arch& a, std::string prefix, DecoderParams& out) : a_(a), prefix_(std::move(prefix)), out_(out) {}

  // The parts stacked along rows; every part has `cols` columns (1 for vectors).
  Region add(int64_t layer, std::initializer_list<std::pair<Slot, int64_t>> parts, int64_t cols) {
    Region r;
    r.cols = cols;
    for (const auto& [slot, rows] : parts) {
      const Shape shape = cols == 1 && !is_matrix(slot) ? Shape{rows} : Shape{rows, cols};
      const int i = out_.table.add(tensor_name(a_, prefix_, slot, layer), shape);
      out_.sources.push_back({slot, layer});
      if (!r.present()) r.offset = out_.table[i].offset;
      r.rows += rows;
    }
    return r;
  }

 private:
  static bool is_matrix(Slot s) {
    return s == Slot::TokenEmbed || s == Slot::PosEmbed || s == Slot::LmHead || s == Slot::Q || s == Slot::K ||
           s == Slot::V || s == Slot::QKV || s == Slot::O || s == Slot::Gate || s == Slot::Up || s == Slot::Down;
  }
  const Arch& a_;
  std::string prefix_;
  DecoderParams& out_;
};

LayerRegions plan_layer(const Arch& a, Planner& p, int64_t l) {
  const int64_t Hd = a.hidden, I = a.intermediate, nq = a.heads * a.head_dim, nkv = a.kv_heads * a.head_dim;
  LayerRegions L;
  L.attn_norm_w = p.add(l, {{Slot::AttnNormW, Hd}}, 1);
  if (a.norm_bias) L.attn_norm_b = p.add(l, {{Slot::AttnNormB, Hd}}, 1);
  switch (a.qkv_layout) {
    case QkvLayout::Separate:
      L.qkv = p.add(l, {{Slot::Q, nq}, {Slot::K, nkv}, {Slot::V, nkv}}, Hd);
      if (a.qkv_bias) L.qkv_b = p.add(l, {{Slot::QB, nq}, {Slot::KB, nkv}, {Slot::VB, nkv}}, 1);
      break;
    case QkvLayout::Fused:
    case QkvLayout::FusedPerHead:
      L.qkv = p.add(l, {{Slot::QKV, nq + 2 * nkv}}, Hd);
      if (a.qkv_bias) L.qkv_b = p.add(l, {{Slot::QKVB, nq + 2 * nkv}}, 1);
      break;
  }
  L.o = p.add(l, {{Slot::O, Hd}}, nq);
  if (a.o_bias) L.o_b = p.add(l, {{Slot::OB, Hd}}, 1);
  L.mlp_norm_w = p.add(l, {{Slot::MlpNormW, Hd}}, 1);
  if (a.norm_bias) L.mlp_norm_b = p.add(l, {{Slot::MlpNormB, Hd}}, 1);
  // Down before the MLP biases: the order Hugging Face lists a LlamaMLP's tensors in.
  L.in = a.gated_mlp ? p.add(l, {{Slot::Gate, I}, {Slot::Up, I}}, Hd) : p.add(l, {{Slot::Up, I}}, Hd);
  L.out = p.add(l, {{Slot::Down, Hd}}, I);
  if (a.mlp_bias) {
    L.in_b = a.gated_mlp ? p.add(l, {{Slot::GateB, I}, {Slot::UpB, I}}, 1) : p.add(l, {{Slot::UpB, I}}, 1);
    L.out_b = p.add(l, {{Slot::DownB, Hd}}, 1);
  }
  return L;
}

// GPT-NeoX's query_key_value: rows grouped per head as [q_h; k_h; v_h] (GPTNeoXAttention's
// view(heads, 3 * head_size)); regroup to [q heads; k heads; v heads] (to_decoder), or back.
// Works for biases too.
void regroup_per_head_qkv(std::span<const float> in, std::span<float> out, int64_t heads, int64_t head_dim,
                          bool to_decoder) {
  const int64_t cols = int64_t(in.size()) / (3 * heads * head_dim);
  for (int64_t h = 0; h < heads; ++h)
    for (int64_t part = 0; part < 3; ++part) {
      const int64_t per_head = ((h * 3 + part) * head_dim) * cols, grouped = ((part * heads + h) * head_dim) * cols;
      const float* src = in.data() + (to_decoder ? per_head : grouped);
      float* dst = out.data() + (to_decoder ? grouped : per_head);
      std::memcpy(dst, src, sizeof(float) * size_t(head_dim * cols));
    }
}

// in [R, C] -> out [C, R].
void transpose(std::span<const float> in, std::span<float> out, int64_t R, int64_t C) {
  for (int64_t r = 0; r < R; ++r)
    for (int64_t c = 0; c < C; ++c) out[size_t(c * R + r)] = in[size_t(r * C + c)];
}

// The checkpoint's shape of a table entry.
Shape stored_shape(CheckpointLayout layout, Shape shape) {
  if (layout == CheckpointLayout::Transposed) std::swap(shape[0], shape[1]);
  return shape;
}

// One tensor into its place: checked against the stored shape, converted to fp32, and brought to
// the forward's layout (GPT-2's Conv1D transposed, NeoX's per-head QKV regrouped).
void load_tensor(const Arch& a, const Checkpoint& ck, const ParamEntry& e, Slot slot, std::span<float> dst) {
  const CheckpointLayout layout = checkpoint_layout(a, slot, e.shape);
  const Shape stored = stored_shape(layout, e.shape);
  const TensorInfo& t = ck.info(e.name);
  if (t.shape != stored)
    fail("{}: tensor '{}' has shape {}, expected {}", t.file, e.name, shape_str(t.shape), shape_str(stored));
  if (layout == CheckpointLayout::Same) return convert_to_f32(t, dst);
  std::vector<float> tmp(dst.size());
  convert_to_f32(t, tmp);
  if (layout == CheckpointLayout::PerHeadQkv) return regroup_per_head_qkv(tmp, dst, a.heads, a.head_dim, true);
  transpose(tmp, dst, stored[0], stored[1]);
}

}  // namespace

CheckpointLayout checkpoint_layout(const Arch& a, Slot slot, const Shape& shape) {
  if (a.conv1d && shape.size() == 2 && is_layer_slot(slot)) return CheckpointLayout::Transposed;
  if (a.qkv_layout == QkvLayout::FusedPerHead && (slot == Slot::QKV || slot == Slot::QKVB))
    return CheckpointLayout::PerHeadQkv;
  return CheckpointLayout::Same;
}

SafetensorsEntry checkpoint_entry(const Arch& a, const DecoderParams& params, int entry, std::span<const float> value) {
  const ParamEntry& e = params.table[entry];
  if (int64_t(value.size()) != e.size)
    fail("{}: {} values for a tensor of shape {}", e.name, value.size(), shape_str(e.shape));
  const CheckpointLayout layout = checkpoint_layout(a, params.sources[size_t(entry)].slot, e.shape);
  SafetensorsEntry out{e.name, stored_shape(layout, e.shape), {}, {}};
  if (layout == CheckpointLayout::Same) {
    out.data = value;
  } else {  // converted when the writer reaches it: never a second copy of the model
    out.produce = [layout, value, shape = e.shape, heads = a.heads, head_dim = a.head_dim](std::span<float> dst) {
      if (layout == CheckpointLayout::PerHeadQkv) return regroup_per_head_qkv(value, dst, heads, head_dim, false);
      transpose(value, dst, shape[0], shape[1]);
    };
  }
  return out;
}

std::vector<SafetensorsEntry> checkpoint_entries(const Arch& a, const DecoderParams& params,
                                                 std::span<const float> flat) {
  std::vector<SafetensorsEntry> out;
  for (int i = 0; i < params.table.size(); ++i) {
    const ParamEntry& e = params.table[i];
    out.push_back(checkpoint_entry(a, params, i, flat.subspan(size_t(e.offset), size_t(e.size))));
  }
  return out;
}

std::string base_prefix(const Arch& a) { return a.names->base; }

DecoderParams plan_decoder_params(const Arch& a, const Checkpoint& ck) {
  return plan_decoder_params(a, [&](const std::string& name) { return ck.has(name); });
}

DecoderParams plan_decoder_params(const Arch& a, const std::function<bool(const std::string&)>& has) {
  return plan_decoder_params(a, name_prefix(a, has));
}

DecoderParams plan_decoder_params(const Arch& a, const std::string& prefix) {
  if (a.heads % a.kv_heads)
    fail("{}: {} attention heads are not a multiple of {} key/value heads", a.model_type, a.heads, a.kv_heads);
  if (a.qkv_layout == QkvLayout::FusedPerHead && a.kv_heads != a.heads)
    fail("{}: per-head fused QKV needs as many KV heads as heads", a.model_type);
  DecoderParams out;
  Planner p(a, prefix, out);
  DecoderRegions& R = out.regions;
  const int64_t Hd = a.hidden;
  R.embed = p.add(0, {{Slot::TokenEmbed, a.vocab}}, Hd);
  if (a.pos == PosKind::Learned) R.pos_embed = p.add(0, {{Slot::PosEmbed, a.max_positions}}, Hd);
  for (int64_t l = 0; l < a.layers; ++l) R.layers.push_back(plan_layer(a, p, l));
  R.final_norm_w = p.add(0, {{Slot::FinalNormW, Hd}}, 1);
  if (a.norm_bias) R.final_norm_b = p.add(0, {{Slot::FinalNormB, Hd}}, 1);
  R.lm_head = a.tied_embeddings ? R.embed : p.add(0, {{Slot::LmHead, a.vocab}}, Hd);
  return out;
}

// The model-wide tensors first, then the layers: a checkpoint with several bad tensors reports
// the same one first whatever the table's order.
LayerRange LayerRange::of(int64_t layers) const {
  const LayerRange r{first, last < 0 ? layers : last};
  if (r.first < 0 || r.first >= r.last || r.last > layers)
    fail("layers [{}, {}): not a non-empty range of the model's {} layers", r.first, r.last, layers);
  return r;
}

bool holds(const Arch& a, const DecoderParams& params, LayerRange range, int entry) {
  const auto [slot, layer] = params.sources[size_t(entry)];
  if (is_layer_slot(slot)) return range.first <= layer && layer < range.last;
  const bool first = range.first == 0, last = range.last == a.layers;
  const bool tied = params.regions.lm_head.offset == params.regions.embed.offset;
  if (slot == Slot::TokenEmbed) return first || (last && tied);
  if (slot == Slot::PosEmbed) return first;
  return last;  // final norm, head
}

void load_decoder_params(const Arch& a, const DecoderParams& params, const Checkpoint& ck, std::span<float> flat,
                         LayerRange range) {
  range = range.of(a.layers);
  const ParamTable& table = params.table;
  if (int64_t(flat.size()) != table.total())
    fail("load: a buffer of {} floats for a table of {}", flat.size(), table.total());
  for (const bool layers : {false, true})
    for (int i = 0; i < table.size(); ++i) {
      // Named copies, not a structured binding: the lambda below captures `slot` (clang before 16
      // refuses to capture structured bindings, C++20 or not).
      const auto slot = params.sources[size_t(i)].slot;
      const auto layer = params.sources[size_t(i)].layer;
      if (is_layer_slot(slot) != layers || !holds(a, params, range, i)) continue;
      const ParamEntry& e = table[i];
      const std::string what = layers ? fmt::format("{} of layer {}", slot_name(slot), layer) : slot_name(slot);
      try {
        with_context(what, [&] { load_tensor(a, ck, e, slot, flat.subspan(size_t(e.offset), size_t(e.size))); });
      } catch (const Error& err) {
        // A shape error says where the expected MLP width comes from when that is not a plain
        // config field (MPT's expansion_ratio).
        if (!is_mlp_slot(slot) || a.intermediate_source.empty()) throw;
        throw Error(fmt::format("{} (the MLP width {} is {})", err.what(), a.intermediate, a.intermediate_source));
      }
    }
}

namespace {

// The smallest offset range holding every present region of `rs`.
GradientPart extent(std::initializer_list<Region> rs) {
  GradientPart p{INT64_MAX, 0};
  for (const Region& r : rs)
    if (r.present()) p.begin = std::min(p.begin, r.offset), p.end = std::max(p.end, r.offset + r.rows * r.cols);
  return p.begin > p.end ? GradientPart{} : p;
}

}  // namespace

GradientPart embedding_part(const DecoderRegions& R) { return extent({R.embed, R.pos_embed}); }

GradientPart head_part(const DecoderRegions& R) {
  const bool tied = R.lm_head.offset == R.embed.offset;  // its gradient goes to the embedding's part
  return extent({R.final_norm_w, R.final_norm_b, tied ? Region{} : R.lm_head});
}

GradientPart layer_part(const DecoderRegions& R, int64_t layer) {
  const LayerRegions& L = R.layers[size_t(layer)];
  return extent({L.attn_norm_w, L.attn_norm_b, L.mlp_norm_w, L.mlp_norm_b, L.qkv, L.qkv_b, L.o, L.o_b, L.in, L.in_b,
                 L.out, L.out_b});
}

}  // namespace fusellm::model
