#pragma once
// A family's parameters in ONE flat fp32 buffer: the parameter table (name, shape, offset; see
// core/param_table.hpp) built from the family's name table (arch.hpp), the regions of it that the
// decoder reads as matrices, and the loading of a Hugging Face checkpoint into it.
//
// Layout: the tensors in model order (embedding, layers, final norm, head), each layer's
// q, k, v projections adjacent and then their biases, gate and up adjacent and then their biases:
// [q; k; v] is then one [(H + 2 KV) D, hidden] matrix and [gate; up] one [2 I, hidden] matrix of
// the buffer, each a single GEMM, while every tensor keeps its Hugging Face name and shape (what
// a checkpoint or an export writes). Gradients live in a second buffer of the same layout, so the
// same regions are the gradient's fused matrices.
//
// Entries hold the forward pass's layout, which is the checkpoint's except in two families:
// GPT-2's Conv1D weights are stored transposed ([out, in], nn.Linear's), and GPT-NeoX's
// query_key_value rows regrouped from per-head [q_h; k_h; v_h] to [q heads; k heads; v heads].
// Training checkpoints hold the decoder's layout (they are this buffer); export converts back
// (to_checkpoint_layout), as loading converts from the checkpoint.
#include <cstdint>
#include <functional>
#include <string>
#include <span>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/io/safetensors.hpp"
#include "fusellm/io/safetensors_writer.hpp"
#include "fusellm/model/arch.hpp"

namespace fusellm::model {

// A matrix (or a vector: cols 1) of the flat buffer; offset -1 when the model has none.
struct Region {
  int64_t offset = -1, rows = 0, cols = 0;
  bool present() const { return offset >= 0; }
};

struct LayerRegions {
  Region attn_norm_w, attn_norm_b, mlp_norm_w, mlp_norm_b;
  Region qkv, qkv_b;  // [(H + 2 KV) D, hidden], rows q heads | k heads | v heads
  Region o, o_b;      // [hidden, H D]
  Region in, in_b;    // [I, hidden], or [2 I, hidden] = [gate; up] when gated
  Region out, out_b;  // [hidden, I]
};

struct DecoderRegions {
  Region embed, pos_embed, final_norm_w, final_norm_b, lm_head;  // lm_head: the embedding when tied
  std::vector<LayerRegions> layers;
};

struct DecoderParams {
  ParamTable table;
  DecoderRegions regions;
  struct Source {
    Slot slot;
    int64_t layer;
  };
  std::vector<Source> sources;  // the slot and layer of each table entry
};

// The part of a model that one pipeline stage holds (model/stage_plan.hpp): layers [first, last),
// the token and position embeddings when first == 0, the final norm and the head when last is the
// model's last layer (and the token embedding there too when the head is tied to it). The default,
// {0, -1}, is the whole model.
struct LayerRange {
  int64_t first = 0, last = -1;  // last -1: through the model's last layer
  // This range with last resolved for a model of `layers` layers; Error unless
  // 0 <= first < last <= layers (a stage holds at least one layer).
  LayerRange of(int64_t layers) const;
  bool whole(int64_t layers) const { return first == 0 && of(layers).last == layers; }
  bool operator==(const LayerRange&) const = default;
};

// An offset range [begin, end) of the flat buffer whose gradient the backward pass may compute
// apart and add when it is done (decoder.hpp's GradientAdd::kPerPart): the token and position
// embeddings (a tied head's gradient goes there too), the final norm with an untied head, each
// layer. The parts tile the buffer (tests/unit/model/test_backward.cpp), so the scratch is one
// part's size (`fusellm plan` counts it).
struct GradientPart {
  int64_t begin = 0, end = 0;
  int64_t size() const { return end - begin; }
  bool holds(const Region& r) const { return r.offset >= begin && r.offset + r.rows * r.cols <= end; }
};
GradientPart embedding_part(const DecoderRegions& R);
GradientPart head_part(const DecoderRegions& R);
GradientPart layer_part(const DecoderRegions& R, int64_t layer);

// The table and regions of a family's model; `ck` (or `has`, whether a tensor name exists) gives
// the tensor names' prefix (checkpoints of the bare base model have none) and nothing else is read.
DecoderParams plan_decoder_params(const Arch& a, const Checkpoint& ck);
DecoderParams plan_decoder_params(const Arch& a, const std::function<bool(const std::string&)>& has);
// The same with the tensor names' prefix given (a model that has no checkpoint yet: init).
DecoderParams plan_decoder_params(const Arch& a, const std::string& prefix);
// The base model's prefix of the family's names ("model.", "transformer.", "gpt_neox.").
std::string base_prefix(const Arch& a);

// How an entry's layout in the flat buffer differs from its tensor in the checkpoint (see above).
enum class CheckpointLayout { Same, Transposed, PerHeadQkv };
CheckpointLayout checkpoint_layout(const Arch& a, Slot slot, const Shape& shape);
// Entry `entry` (value: its floats, in the buffer's layout), or every entry of `flat` (a buffer
// laid out by params.table: parameters or gradients), named and shaped as the checkpoint stores it,
// for the safetensors writer (export): a view of `value` where the layouts agree, else converted
// when written. `value` / `flat` must outlive the entries.
SafetensorsEntry checkpoint_entry(const Arch& a, const DecoderParams& params, int entry, std::span<const float> value);
std::vector<SafetensorsEntry> checkpoint_entries(const Arch& a, const DecoderParams& params, std::span<const float> flat);
// Whether the stage holding `range` (resolved) holds table entry `entry`.
bool holds(const Arch& a, const DecoderParams& params, LayerRange range, int entry);
// Reads every tensor of the table that `range` holds from the checkpoint into `flat`
// (table.total() floats; the others are not touched), converting to fp32 (and to the forward's
// layout, see above). Errors name the tensor, the file and, for layer tensors, the slot and layer.
void load_decoder_params(const Arch& a, const DecoderParams& params, const Checkpoint& ck, std::span<float> flat,
                         LayerRange range = {});

// Views of a region of a buffer laid out by the table (parameters or gradients).
inline MatView mat(std::span<float> flat, const Region& r) {
  return {flat.data() + r.offset, r.rows, r.cols, r.cols};
}
inline ConstMatView mat(std::span<const float> flat, const Region& r) {
  return {flat.data() + r.offset, r.rows, r.cols, r.cols};
}
// The region as a vector; empty when the model has none (a bias it does not use).
inline std::span<float> vec(std::span<float> flat, const Region& r) {
  return r.present() ? flat.subspan(size_t(r.offset), size_t(r.rows * r.cols)) : std::span<float>();
}
inline std::span<const float> vec(std::span<const float> flat, const Region& r) {
  return r.present() ? flat.subspan(size_t(r.offset), size_t(r.rows * r.cols)) : std::span<const float>();
}

}  // namespace fusellm::model
