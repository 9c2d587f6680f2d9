// The families' shared description helpers: slot names and the config parsers every family uses.
#include "fusellm/model/arch.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <iterator>

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

namespace {

// transformers' PretrainedConfig fields (PretrainedConfig().to_dict() in 4.46.3) and the metadata
// save_pretrained and the hub add: none changes a causal LM's forward pass. tie_word_embeddings is
// not here: every family reads it.
constexpr const char* kCommonIgnored[] = {
    // metadata
    "architectures", "model_type", "transformers_version", "torch_dtype", "_name_or_path", "_commit_hash",
    "auto_map", "_attn_implementation_autoset", "attn_implementation", "_attn_implementation", "use_bfloat16",
    "finetuning_task", "id2label", "label2id", "problem_type", "tokenizer_class", "prefix", "task_specific_params",
    "initializer_range", "tf_legacy_loss", "torchscript", "pruned_heads", "chunk_size_feed_forward",
    // what a forward call returns, not what it computes
    "return_dict", "output_hidden_states", "output_attentions", "use_cache",
    // encoder-decoder settings (a causal LM has none)
    "is_encoder_decoder", "is_decoder", "cross_attention_hidden_size", "add_cross_attention",
    "tie_encoder_decoder", "decoder_start_token_id",
    // token ids and generation defaults (used by generate(), not by the forward pass)
    "bos_token_id", "eos_token_id", "pad_token_id", "sep_token_id", "max_length", "min_length", "do_sample",
    "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty", "temperature", "top_k", "top_p",
    "typical_p", "repetition_penalty", "length_penalty", "no_repeat_ngram_size", "encoder_no_repeat_ngram_size",
    "bad_words_ids", "num_return_sequences", "output_scores", "return_dict_in_generate", "forced_bos_token_id",
    "forced_eos_token_id", "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens",
    "begin_suppress_tokens",
};

}  // namespace

std::vector<std::string> unknown_fields(const HFConfig& c, std::initializer_list<IgnoredField> ignored,
                                        const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& f : c.unread_fields()) {
    const bool common = std::find(std::begin(kCommonIgnored), std::end(kCommonIgnored), f) != std::end(kCommonIgnored);
    const bool listed = std::any_of(ignored.begin(), ignored.end(), [&](const IgnoredField& i) { return f == i.name; });
    if (!common && !listed) out.push_back(prefix + f);
  }
  return out;
}

void refuse_common(const HFConfig& c) {
  if (c.has("quantization_config"))
    c.field_error("quantization_config", "quantized checkpoints (GPTQ, AWQ, bitsandbytes, ...) are not supported");
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

bool is_layer_slot(Slot s) {
  return !(s == Slot::TokenEmbed || s == Slot::PosEmbed || s == Slot::FinalNormW || s == Slot::FinalNormB ||
           s == Slot::LmHead);
}

}  // namespace fusellm::model
