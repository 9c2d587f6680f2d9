// MPT: LayerNorm without bias, fused Wqkv, ALiBi, GELU (exact) MLP, no linear biases, LM head
// tied to wte by default. Tensor names are transformers' MptForCausalLM's (MosaicML's own
// checkpoints use the same ones).
//
// Where transformers' port and MosaicML's own modeling code (llm-foundry's
// llmfoundry/models/mpt/modeling_mpt.py, the mosaicml/mpt-* hub repos) differ, fusellm follows
// the publisher, MosaicML:
//   - attn_config.alibi_bias_max: MosaicML's build_alibi_bias(n_heads, seq_len,
//     alibi_bias_max=...) reads it; transformers' MptModel always builds the slopes with 8;
//   - the MLP width: MosaicML's resolve_ffn_hidden_size, d_model * expansion_ratio (an integer)
//     or ffn_config.ffn_hidden_size; transformers' MptMLP always makes 4 * d_model;
//   - the LayerNorm epsilon: MosaicML's norm_eps; transformers' layer_norm_epsilon.
// max_seq_len is the context: both refuse longer inputs (MPTModel.forward asserts it,
// transformers' ALiBi tensor has max_seq_len columns), so the forward pass does too.
// Fields that change the computation and are not implemented are errors naming the field:
// nothing is ignored that MosaicML's code would apply. Refused: attn_config.qk_ln, qk_gn,
// prefix_lm, rope, nope true; attn_type other than multihead_attention; fused_qkv false;
// sliding_window_size; attn_logit_softcapping; alibi false (learned positions or none);
// no_bias false; norm_type other than (low_precision_)layernorm; block_overrides;
// final_logit_softcapping; ffn_config other than MPTMLP with exact GELU. Applied: logit_scale,
// clip_qkv, softmax_scale, alibi_bias_max, expansion_ratio / ffn_hidden_size, norm_eps. The
// fields that do not change the forward pass are listed in mpt_arch (unknown_fields).
#include <fmt/format.h>

#include <cmath>

#include "fusellm/core/error.hpp"
#include "fusellm/core/log.hpp"
#include "fusellm/model/arch.hpp"

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

// A nested object (attn_config, ffn_config); absent or null means all defaults.
HFConfig sub_config(const HFConfig& c, const std::string& key) {
  nlohmann::json j = nlohmann::json::object();
  if (c.has(key)) {
    j = c.json()[key];
    if (!j.is_object()) c.field_error(key, fmt::format("expected an object, found {}", j.dump()));
  }
  return HFConfig(std::move(j), c.path() + ": " + key);
}

// A field whose only supported value is its default: present with another value is an error.
void refuse_unless(const HFConfig& c, const std::string& key, const nlohmann::json& supported,
                   const std::string& why) {
  if (!c.has(key) || c.json()[key] == supported) return;
  c.field_error(key, fmt::format("{} is not supported ({})", c.json()[key].dump(), why));
}

// MosaicML's resolve_ffn_hidden_size (llmfoundry/models/layers/ffn.py): ffn_config.ffn_hidden_size
// when given, else d_model * expansion_ratio, which must be an integer. Sets the width and where
// it came from (for shape errors).
void read_mlp_width(Arch& a, const HFConfig& c, const HFConfig& ffn) {
  const bool has_ratio = c.has("expansion_ratio");  // looked at either way: superseded, not unknown
  if (ffn.has("ffn_hidden_size")) {
    if (has_ratio) spdlog::info("{}: ffn_config.ffn_hidden_size supersedes expansion_ratio", c.path());
    a.intermediate = positive(ffn, "ffn_hidden_size", ffn.get_int("ffn_hidden_size"));
    a.intermediate_source = fmt::format("ffn_config.ffn_hidden_size {}", a.intermediate);
    return;
  }
  const double ratio = c.get_float("expansion_ratio", 4.0);
  const double width = ratio * double(a.hidden);
  if (!(ratio > 0) || width != std::floor(width) || width > 1e15)
    c.field_error("expansion_ratio", fmt::format("{} * d_model {} = {} is not a positive integer (the MLP width)",
                                                 ratio, a.hidden, width));
  a.intermediate = int64_t(width);
  a.intermediate_source = fmt::format(
      "expansion_ratio {} * d_model {}, as MosaicML's MPT code sizes the MLP; transformers' MptForCausalLM "
      "ignores expansion_ratio and always makes 4 * d_model = {}",
      ratio, a.hidden, 4 * a.hidden);
}

// ffn_config (MosaicML's MPTMLP is the only FFN implemented).
void read_ffn_config(Arch& a, const HFConfig& c) {
  const HFConfig ffn = sub_config(c, "ffn_config");
  refuse_unless(ffn, "ffn_type", "mptmlp", "supported: mptmlp");
  refuse_unless(ffn, "ffn_act_fn", nlohmann::json{{"name", "gelu"}, {"approximate", "none"}},
                "supported: {\"name\": \"gelu\", \"approximate\": \"none\"}, MPTMLP's default");
  read_mlp_width(a, c, ffn);
  const auto unknown = unknown_fields(ffn, {{"fc_type", "the linear layer's implementation (torch, te): the same product"}},
                                      "ffn_config.");
  a.unknown_fields.insert(a.unknown_fields.end(), unknown.begin(), unknown.end());
  a.gated_mlp = false;
  a.act = Activation::GeluErf;  // MPTMLP / transformers' MptMLP: GELU(approximate="none")
}

// attn_config (transformers' MptAttentionConfig, MosaicML's attn_config_defaults).
void read_attn_config(Arch& a, const HFConfig& c) {
  const HFConfig attn = sub_config(c, "attn_config");
  const std::string type = attn.get_string("attn_type", "multihead_attention");
  if (type != "multihead_attention")
    attn.field_error("attn_type", fmt::format("unsupported \"{}\" (supported: multihead_attention)", type));
  // MosaicML's default is alibi false with learned positions (wpe), but every published MPT uses
  // ALiBi, and transformers' port has nothing else. With alibi on, MosaicML's MPTModel builds no
  // wpe whatever learned_pos_emb says (mpt-7b's config has both true).
  const bool learned = c.get_bool("learned_pos_emb", true);
  if (!attn.get_bool("alibi", true))
    attn.field_error("alibi", learned ? "false (learned position embeddings, learned_pos_emb true) is not supported: "
                                        "only ALiBi MPTs are"
                                      : "false with learned_pos_emb false (no position information) is not supported");
  for (const char* flag : {"qk_ln", "qk_gn", "prefix_lm", "rope", "nope"})
    if (attn.get_bool(flag, false)) attn.field_error(flag, "true is not supported");
  if (!attn.get_bool("fused_qkv", true))
    attn.field_error("fused_qkv", "false is not supported (the checkpoint must have one Wqkv per block)");
  refuse_unless(attn, "sliding_window_size", -1, "no sliding window");
  if (attn.has("attn_logit_softcapping")) attn.field_error("attn_logit_softcapping", "is not supported");
  if (attn.has("attn_temperature_tuning")) {
    const HFConfig t = sub_config(attn, "attn_temperature_tuning");
    if (t.has("attn_scale") && t.get_float("attn_scale") != 0.0)
      t.field_error("attn_scale", "non-zero is not supported");
  }
  a.clip_qkv = optional_positive(attn, "clip_qkv");
  a.attn_scale = optional_positive(attn, "softmax_scale");
  // MosaicML's MPTModel passes it to build_alibi_bias; transformers' MptModel always uses 8.
  a.alibi_bias_max = attn.get_float("alibi_bias_max", 8.0);
  if (!(a.alibi_bias_max > 0)) attn.field_error("alibi_bias_max", "expected a positive number");
  a.pos = PosKind::ALiBi;
  const auto unknown = unknown_fields(
      attn,
      {
          {"attn_pdrop", "dropout: none in evaluation"},
          {"attn_impl", "the kernel (torch, flash, triton): the same attention"},
          // fusellm always runs each document of a packed row on its own, which is what
          // sequence ids give MosaicML's training; without them its inference is the same.
          {"attn_uses_sequence_id", "fusellm always keeps a packed row's documents apart"},
          {"kv_n_heads", "used by grouped_query_attention only, which attn_type refuses"},
          {"rope_theta", "used with rope true only, which is refused"},
          {"rope_impl", "used with rope true only, which is refused"},
          {"rope_dail_config", "used with rope true only, which is refused"},
          {"rope_hf_config", "used with rope true only, which is refused"},
          {"model_type", "transformers' MptAttentionConfig writes an empty one"},
      },
      "attn_config.");
  a.unknown_fields.insert(a.unknown_fields.end(), unknown.begin(), unknown.end());
}

// LayerNorm without bias; epsilon from norm_eps (MosaicML) or layer_norm_epsilon (transformers).
void read_norm(Arch& a, const HFConfig& c) {
  a.norm = NormKind::LayerNorm;
  a.norm_bias = false;
  const std::string norm_type = c.get_string("norm_type", "low_precision_layernorm");
  if (norm_type != "low_precision_layernorm" && norm_type != "layernorm")
    c.field_error("norm_type", fmt::format("unsupported \"{}\" (supported: low_precision_layernorm, layernorm)",
                                           norm_type));
  const double hf_eps = c.get_float("layer_norm_epsilon", 1e-5), mosaic_eps = c.get_float("norm_eps", hf_eps);
  if (c.has("layer_norm_epsilon") && c.has("norm_eps") && hf_eps != mosaic_eps)
    c.field_error("norm_eps", fmt::format("{} differs from layer_norm_epsilon {}: which one applies is ambiguous",
                                          mosaic_eps, hf_eps));
  a.norm_eps = mosaic_eps;
}

// Top-level fields that change the computation and are not implemented.
void refuse_unsupported(const HFConfig& c, const Arch& a) {
  if (!c.get_bool("no_bias", true)) c.field_error("no_bias", "false is not supported (MPT checkpoints have no biases)");
  if (c.get_bool("attention_bias", false)) c.field_error("attention_bias", "true is not supported");
  if (c.has("final_logit_softcapping")) c.field_error("final_logit_softcapping", "is not supported");
  if (c.has("block_overrides")) c.field_error("block_overrides", "is not supported (all blocks must be alike)");
  if (c.has("head_dim") && c.get_int("head_dim") != a.head_dim)
    c.field_error("head_dim", fmt::format("{} is not supported (only d_model / n_heads = {})", c.get_int("head_dim"),
                                          a.head_dim));
}

// logit_scale (MosaicML's MPTForCausalLM.__init__): null, a number, or "inv_sqrt_d_model"
// (1 / sqrt(d_model)); forward multiplies the logits by it. transformers' MptForCausalLM ignores
// the field; fusellm follows MosaicML.
double read_logit_scale(const HFConfig& c, int64_t d_model) {
  if (!c.has("logit_scale")) return 1.0;
  const nlohmann::json& v = c.json()["logit_scale"];
  if (v.is_string()) {
    if (v.get<std::string>() != "inv_sqrt_d_model")
      c.field_error("logit_scale", fmt::format("unsupported {} (a number, null or \"inv_sqrt_d_model\")", v.dump()));
    return 1.0 / std::sqrt(double(d_model));
  }
  const double s = c.get_float("logit_scale");
  if (!std::isfinite(s) || s == 0) c.field_error("logit_scale", fmt::format("{} would make every logit 0 or not finite", s));
  return s;
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
  a.max_positions = positive(c, "max_seq_len", c.get_int("max_seq_len", 2048));
  a.context_limit = "max_seq_len";
  read_norm(a, c);
  refuse_unsupported(c, a);
  read_attn_config(a, c);
  read_ffn_config(a, c);
  a.tied_embeddings = c.get_bool("tie_word_embeddings", true);
  a.logit_scale = read_logit_scale(c, a.hidden);
  // MPTModel.forward: x * f + x.detach() * (1 - f), equal to x; only the embedding's gradient is
  // scaled (check_trainable refuses f != 1 for training).
  const double fraction = c.get_float("embedding_fraction", 1.0);
  if (!(fraction > 0 && fraction <= 1))
    c.field_error("embedding_fraction", fmt::format("expected a number in (0, 1], found {}", fraction));
  a.embedding_fraction = fraction;
  a.qkv_layout = QkvLayout::Fused;
  const auto unknown = unknown_fields(
      c, {
             {"emb_pdrop", "dropout: none in evaluation"},
             {"resid_pdrop", "dropout: none in evaluation"},
             {"init_config", "initialization of a new model"},
             {"init_device", "where a new model is initialized"},
             {"verbose", "logging"},
             {"tokenizer_name", "fusellm reads the tokenizer from the files in the directory"},
             {"fc_type", "the linear layer's implementation (torch, te): the same product"},
             {"use_pad_tok_in_ffn", "pad tokens only (fusellm rows hold none)"},
         });
  a.unknown_fields.insert(a.unknown_fields.begin(), unknown.begin(), unknown.end());
  return a;
}

}  // namespace fusellm::model
