// MPT (transformers' MptForCausalLM): LayerNorm without bias, fused Wqkv, ALiBi, GELU (exact)
// MLP of expansion_ratio * d_model, no linear biases, LM head tied to wte by default.
// config.json's attn_config: alibi must be true (transformers' port always applies ALiBi and has
// no learned positions), clip_qkv and softmax_scale are honoured, alibi_bias_max is read from
// the config (transformers 4.46 hard-codes its default, 8; MosaicML's code reads the field),
// qk_ln / prefix_lm / multiquery attention and no_bias = false are errors: transformers' port
// does not implement them either, so no reference checks them.
#include <fmt/format.h>

#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/model/transformer.hpp"

namespace fusellm::model {

namespace {

const NameTable kMptNames{
    "transformer.",
    {
        {Slot::TokenEmbed, "wte.weight"},
        {Slot::FinalNormW, "norm_f.weight"},
        {Slot::LmHead, "lm_head.weight", true},
        {Slot::AttnNormW, "blocks.{}.norm_1.weight"},
        {Slot::QKV, "blocks.{}.attn.Wqkv.weight"},
        {Slot::O, "blocks.{}.attn.out_proj.weight"},
        {Slot::MlpNormW, "blocks.{}.norm_2.weight"},
        {Slot::Up, "blocks.{}.ffn.up_proj.weight"},
        {Slot::Down, "blocks.{}.ffn.down_proj.weight"},
    }};

// An optional positive number (null or absent -> 0).
double optional_positive(const HFConfig& c, const std::string& key) {
  if (!c.has(key)) return 0.0;
  const double v = c.get_float(key);
  if (!(v > 0)) c.field_error(key, fmt::format("expected a positive number or null, found {}", v));
  return v;
}

}  // namespace

Arch mpt_arch(const HFConfig& c) {
  Arch a;
  a.family = "mpt";
  a.model_type = c.get_string("model_type");
  a.names = &kMptNames;
  a.hidden = positive(c, "d_model", c.get_int("d_model", 2048));
  a.heads = positive(c, "n_heads", c.get_int("n_heads", 16));
  a.kv_heads = a.heads;
  a.layers = positive(c, "n_layers", c.get_int("n_layers", 24));
  a.vocab = positive(c, "vocab_size", c.get_int("vocab_size", 50368));
  if (a.hidden % a.heads)
    c.field_error("n_heads", fmt::format("{} does not divide d_model {}", a.heads, a.hidden));
  a.head_dim = a.hidden / a.heads;
  const double ratio = c.get_float("expansion_ratio", 4.0);
  const double inter = ratio * double(a.hidden);
  if (!(ratio > 0) || inter != std::floor(inter))
    c.field_error("expansion_ratio", fmt::format("{} * d_model {} is not a positive integer", ratio, a.hidden));
  a.intermediate = int64_t(inter);
  a.max_positions = positive(c, "max_seq_len", c.get_int("max_seq_len", 2048));

  a.norm = NormKind::LayerNorm;
  a.norm_eps = c.get_float("layer_norm_epsilon", 1e-5);
  a.norm_bias = false;
  const std::string norm_type = c.get_string("norm_type", "low_precision_layernorm");
  if (norm_type != "low_precision_layernorm" && norm_type != "layernorm")
    c.field_error("norm_type", fmt::format("unsupported \"{}\" (supported: low_precision_layernorm, layernorm)",
                                           norm_type));
  if (!c.get_bool("no_bias", true))
    c.field_error("no_bias", "false is not supported (transformers' MptModel has no biases)");
  if (c.has("logit_scale"))
    c.field_error("logit_scale", "is not supported (transformers' MptForCausalLM does not apply it)");

  // attn_config (MptAttentionConfig); absent means all defaults.
  nlohmann::json ac = nlohmann::json::object();
  if (c.has("attn_config")) {
    ac = c.json()["attn_config"];
    if (!ac.is_object()) c.field_error("attn_config", fmt::format("expected an object, found {}", ac.dump()));
  }
  const HFConfig attn(ac, c.path() + ": attn_config");
  const std::string type = attn.get_string("attn_type", "multihead_attention");
  if (type != "multihead_attention")
    attn.field_error("attn_type", fmt::format("unsupported \"{}\" (supported: multihead_attention)", type));
  if (!attn.get_bool("alibi", true))
    attn.field_error("alibi", "false is not supported (transformers' MPT always uses ALiBi)");
  if (attn.get_bool("qk_ln", false)) attn.field_error("qk_ln", "true is not supported");
  if (attn.get_bool("prefix_lm", false)) attn.field_error("prefix_lm", "true is not supported");
  a.clip_qkv = optional_positive(attn, "clip_qkv");
  a.attn_scale = optional_positive(attn, "softmax_scale");
  a.alibi_bias_max = attn.get_float("alibi_bias_max", 8.0);
  if (!(a.alibi_bias_max > 0)) attn.field_error("alibi_bias_max", "expected a positive number");
  a.pos = PosKind::ALiBi;

  a.gated_mlp = false;
  a.act = Activation::GeluErf;  // MptMLP: nn.GELU(approximate="none")
  a.tied_embeddings = c.get_bool("tie_word_embeddings", true);
  a.qkv_layout = QkvLayout::Fused;
  return a;
}

}  // namespace fusellm::model
