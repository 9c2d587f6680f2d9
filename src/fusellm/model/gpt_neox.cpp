// GPT-NeoX / Pythia (transformers' GPTNeoXForCausalLM): LayerNorm with bias (layer_norm_eps),
// per-head interleaved query_key_value, partial rotary (rotary_pct of each head, rotate_half
// layout, base rotary_emb_base, rope_scaling), attention biases (attention_bias), plain MLP
// with hidden_act and biases, parallel (use_parallel_residual, the default) or sequential
// residual, untied embed_out by default.
#include <fmt/format.h>

#include "fusellm/model/arch.hpp"

namespace fusellm::model {

namespace {

const NameTable kNeoxNames{
    "gpt_neox.",
    {
        {Slot::TokenEmbed, "embed_in.weight"},
        {Slot::FinalNormW, "final_layer_norm.weight"},
        {Slot::FinalNormB, "final_layer_norm.bias"},
        {Slot::LmHead, "embed_out.weight", true},
        {Slot::AttnNormW, "layers.{}.input_layernorm.weight"},
        {Slot::AttnNormB, "layers.{}.input_layernorm.bias"},
        {Slot::QKV, "layers.{}.attention.query_key_value.weight"},
        {Slot::QKVB, "layers.{}.attention.query_key_value.bias"},
        {Slot::O, "layers.{}.attention.dense.weight"},
        {Slot::OB, "layers.{}.attention.dense.bias"},
        {Slot::MlpNormW, "layers.{}.post_attention_layernorm.weight"},
        {Slot::MlpNormB, "layers.{}.post_attention_layernorm.bias"},
        {Slot::Up, "layers.{}.mlp.dense_h_to_4h.weight"},
        {Slot::UpB, "layers.{}.mlp.dense_h_to_4h.bias"},
        {Slot::Down, "layers.{}.mlp.dense_4h_to_h.weight"},
        {Slot::DownB, "layers.{}.mlp.dense_4h_to_h.bias"},
    }};

}  // namespace

Arch gpt_neox_arch(const HFConfig& c) {
  Arch a;
  a.family = "gpt_neox";
  a.model_type = c.get_string("model_type");
  a.names = &kNeoxNames;
  a.vocab = positive(c, "vocab_size", c.get_int("vocab_size"));
  a.hidden = positive(c, "hidden_size", c.get_int("hidden_size"));
  a.layers = positive(c, "num_hidden_layers", c.get_int("num_hidden_layers"));
  a.heads = positive(c, "num_attention_heads", c.get_int("num_attention_heads"));
  a.kv_heads = a.heads;
  a.intermediate = positive(c, "intermediate_size", c.get_int("intermediate_size"));
  if (a.hidden % a.heads)
    c.field_error("num_attention_heads", fmt::format("{} does not divide hidden_size {}", a.heads, a.hidden));
  a.head_dim = a.hidden / a.heads;
  a.max_positions = positive(c, "max_position_embeddings", c.get_int("max_position_embeddings", 2048));

  a.norm = NormKind::LayerNorm;
  a.norm_eps = c.get_float("layer_norm_eps", 1e-5);
  a.norm_bias = true;

  // GPTNeoXAttention: rotary_ndims = int(head_size * rotary_pct); GPTNeoXConfig copies
  // rotary_pct / rotary_emb_base into partial_rotary_factor / rope_theta, so those win.
  const double pct = c.get_float("rotary_pct", 0.25);
  if (!(pct > 0 && pct <= 1)) c.field_error("rotary_pct", fmt::format("expected a number in (0, 1], found {}", pct));
  a.pos = PosKind::Rotary;
  a.rope = parse_rope(c, int64_t(double(a.head_dim) * pct), c.get_float("rotary_emb_base", 10000.0),
                      a.max_positions);

  a.gated_mlp = false;
  a.act = activation_from_name(c.get_string("hidden_act", "gelu"), c.path() + ": field 'hidden_act'");
  a.mlp_bias = true;
  a.parallel_residual = c.get_bool("use_parallel_residual", true);
  a.qkv_bias = a.o_bias = c.get_bool("attention_bias", true);
  a.tied_embeddings = c.get_bool("tie_word_embeddings", false);
  a.qkv_layout = QkvLayout::FusedPerHead;
  a.unknown_fields = unknown_fields(
      c, {
             {"attention_dropout", "dropout: none in evaluation"},
             {"hidden_dropout", "dropout: none in evaluation"},
             {"classifier_dropout", "the sequence-classification head's dropout"},
             // GPTNeoXConfig.__init__ (4.46.3) sets them from rotary_pct and rotary_emb_base
             // (their defaults when absent), so a value saved in config.json never applies.
             {"partial_rotary_factor", "overwritten by rotary_pct in GPTNeoXConfig"},
             {"rope_theta", "overwritten by rotary_emb_base in GPTNeoXConfig"},
         });
  return a;
}

}  // namespace fusellm::model
