#pragma once
// What a model family is (llama.cpp, mpt.cpp, gpt_neox.cpp, gpt2.cpp), three things:
//   - an Arch: the few choices in which the families differ (norm, positions, MLP, residual,
//     fused QKV layout, biases), parsed from config.json;
//   - a NameTable: its checkpoint tensor names per logical slot (llama.cpp's tensor tables);
//   - nothing else: decoder_params.hpp lays the slots out in one flat buffer and decoder.hpp runs
//     the one forward and backward pass over it.
#include <string>
#include <vector>

#include "fusellm/io/hf_config.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/model/ops.hpp"

namespace fusellm::model {

// Logical tensors. Layer slots have "{}" in their name pattern for the layer index.
enum class Slot {
  TokenEmbed, PosEmbed, FinalNormW, FinalNormB, LmHead,
  AttnNormW, AttnNormB, Q, K, V, QB, KB, VB, QKV, QKVB, O, OB,
  MlpNormW, MlpNormB, Gate, GateB, Up, UpB, Down, DownB,
};
const char* slot_name(Slot s);
// Whether the slot is a per-layer tensor (its name pattern has the layer index).
bool is_layer_slot(Slot s);

struct TensorName {
  Slot slot;
  const char* pattern;   // relative to NameTable::base unless outside_base
  bool outside_base = false;  // the LM head lives beside the base model ("lm_head.weight")
};

struct NameTable {
  const char* base;  // the base model's prefix, "model." / "transformer." / "gpt_neox."
  std::vector<TensorName> names;
};

enum class NormKind { RMSNorm, LayerNorm };
enum class PosKind { Rotary, ALiBi, Learned };
enum class QkvLayout {
  Separate,      // q_proj, k_proj, v_proj (Llama)
  Fused,         // one [q; k; v] matrix (MPT's Wqkv, GPT-2's c_attn)
  FusedPerHead,  // one matrix, rows [q_h; k_h; v_h] per head (GPT-NeoX's query_key_value)
};

struct Arch {
  std::string family, model_type;
  int64_t vocab = 0, hidden = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0, intermediate = 0;
  std::string intermediate_source;  // where the MLP width comes from, when not a plain field (MPT)
  int64_t max_positions = 0;  // the context (max_position_embeddings, max_seq_len, n_positions)
  // The config field of max_positions when it is also a hard limit on a document's length
  // (GPT-2's learned positions, MPT's max_seq_len); empty when longer documents run (RoPE).
  std::string context_limit;

  NormKind norm = NormKind::RMSNorm;
  double norm_eps = 1e-6;
  bool norm_bias = false;

  PosKind pos = PosKind::Rotary;
  RopeConfig rope;
  double alibi_bias_max = 8.0;

  bool gated_mlp = true;  // down(act(gate x) * up x), else down(act(up x))
  Activation act = Activation::SiLU;
  bool parallel_residual = false;  // x + attn(ln1 x) + mlp(ln2 x)  (GPT-NeoX, GPT-J)

  double attn_scale = 0;                // 0: 1 / sqrt(head_dim)
  bool scale_by_inverse_layer = false;  // GPT-2's scale_attn_by_inverse_layer_idx
  double clip_qkv = 0;                  // MPT: clamp the fused QKV output to [-c, c]; 0: none
  int64_t sliding_window = 0;           // Mistral/Qwen2; 0: none

  bool qkv_bias = false, o_bias = false, mlp_bias = false;
  bool tied_embeddings = false;
  double logit_scale = 1.0;  // the logits are multiplied by it (MosaicML's MPT logit_scale)
  // MPT's embedding_fraction: the forward value is unchanged, the embedding's gradient scaled.
  double embedding_fraction = 1.0;
  QkvLayout qkv_layout = QkvLayout::Separate;
  bool conv1d = false;  // 2-D weights stored [in, out] (GPT-2's Conv1D)

  const NameTable* names = nullptr;
  // config.json fields that the family's parser neither reads nor lists as irrelevant ("foo",
  // "attn_config.bar"): each is logged as a warning when the model loads (read_arch).
  std::vector<std::string> unknown_fields;
};

// A config field that does not change the forward pass, and why (dropout, initialization,
// generation defaults, a kernel choice): a family's table of these, with the fields its parser
// reads, is every field it knows.
struct IgnoredField {
  const char* name;
  const char* why;
};
// The fields of `c` its parser has not read (HFConfig::unread_fields) that are in neither
// `ignored` nor the fields every transformers PretrainedConfig has (token ids, generation
// defaults, metadata: kCommonIgnored in arch.cpp), each prefixed by `prefix` ("attn_config.").
std::vector<std::string> unknown_fields(const HFConfig& c, std::initializer_list<IgnoredField> ignored,
                                        const std::string& prefix = "");
// Fields of any family that change the computation and that no family supports (a quantized
// checkpoint's quantization_config): Error naming the field.
void refuse_common(const HFConfig& c);

// Each family: config.json -> Arch (Errors name the file and field).
Arch llama_arch(const HFConfig& c);
Arch mpt_arch(const HFConfig& c);
Arch gpt_neox_arch(const HFConfig& c);
Arch gpt2_arch(const HFConfig& c);

// Small config helpers shared by the families.
// rope_scaling: null -> default; {"rope_type"|"type": "linear"|"dynamic"|"llama3", ...}; others
// are an Error naming the type and the supported ones.
RopeConfig parse_rope(const HFConfig& c, int64_t rotary_dim, double theta, int64_t max_positions);
// A positive integer field, Error otherwise.
int64_t positive(const HFConfig& c, const std::string& key, int64_t value);

}  // namespace fusellm::model
