// The Llama family: model_type llama, mistral, qwen2 (transformers' LlamaForCausalLM,
// MistralForCausalLM, Qwen2ForCausalLM). RMSNorm, RoPE (rope_theta, rope_scaling), SwiGLU MLP,
// grouped-query attention, separate q/k/v projections.
// Differences handled here:
//   llama   attention_bias (q, k, v and o), mlp_bias, head_dim, rope_scaling
//   qwen2   q/k/v biases always, none on o; no head_dim; sliding window only with
//           use_sliding_window (applied to every layer, as 4.46's eager/sdpa mask does)
//   mistral sliding_window (default 4096), head_dim; its rotary embedding takes no rope_scaling
#include <fmt/format.h>

#include "fusellm/model/arch.hpp"

namespace fusellm::model {

namespace {

const NameTable kLlamaNames{
    "model.",
    {
        {Slot::TokenEmbed, "embed_tokens.weight"},
        {Slot::FinalNormW, "norm.weight"},
        {Slot::LmHead, "lm_head.weight", true},
        {Slot::AttnNormW, "layers.{}.input_layernorm.weight"},
        {Slot::Q, "layers.{}.self_attn.q_proj.weight"},
        {Slot::K, "layers.{}.self_attn.k_proj.weight"},
        {Slot::V, "layers.{}.self_attn.v_proj.weight"},
        {Slot::QB, "layers.{}.self_attn.q_proj.bias"},
        {Slot::KB, "layers.{}.self_attn.k_proj.bias"},
        {Slot::VB, "layers.{}.self_attn.v_proj.bias"},
        {Slot::O, "layers.{}.self_attn.o_proj.weight"},
        {Slot::OB, "layers.{}.self_attn.o_proj.bias"},
        {Slot::MlpNormW, "layers.{}.post_attention_layernorm.weight"},
        {Slot::Gate, "layers.{}.mlp.gate_proj.weight"},
        {Slot::GateB, "layers.{}.mlp.gate_proj.bias"},
        {Slot::Up, "layers.{}.mlp.up_proj.weight"},
        {Slot::UpB, "layers.{}.mlp.up_proj.bias"},
        {Slot::Down, "layers.{}.mlp.down_proj.weight"},
        {Slot::DownB, "layers.{}.mlp.down_proj.bias"},
    }};

}  // namespace

Arch llama_arch(const HFConfig& c) {
  Arch a;
  a.family = "llama";
  a.model_type = c.get_string("model_type");
  a.names = &kLlamaNames;
  const bool mistral = a.model_type == "mistral", qwen2 = a.model_type == "qwen2";
  a.vocab = positive(c, "vocab_size", c.get_int("vocab_size"));
  a.hidden = positive(c, "hidden_size", c.get_int("hidden_size"));
  a.intermediate = positive(c, "intermediate_size", c.get_int("intermediate_size"));
  a.layers = positive(c, "num_hidden_layers", c.get_int("num_hidden_layers"));
  a.heads = positive(c, "num_attention_heads", c.get_int("num_attention_heads"));
  a.kv_heads = positive(c, "num_key_value_heads", c.get_int("num_key_value_heads", a.heads));
  if (a.heads % a.kv_heads)
    c.field_error("num_key_value_heads",
                  fmt::format("{} does not divide num_attention_heads {}", a.kv_heads, a.heads));
  // Qwen2Attention always uses hidden_size / num_attention_heads; the others honour head_dim.
  if (c.has("head_dim") && !qwen2) {
    a.head_dim = positive(c, "head_dim", c.get_int("head_dim"));
  } else {
    if (a.hidden % a.heads)
      c.field_error("num_attention_heads",
                    fmt::format("{} does not divide hidden_size {} (and no head_dim is given)", a.heads, a.hidden));
    a.head_dim = a.hidden / a.heads;
  }
  a.max_positions = positive(c, "max_position_embeddings",
                             c.get_int("max_position_embeddings", mistral ? 4096 * 32 : qwen2 ? 32768 : 2048));
  a.norm = NormKind::RMSNorm;
  a.norm_eps = c.get_float("rms_norm_eps", 1e-6);
  a.pos = PosKind::Rotary;
  const double theta = c.get_float("rope_theta", 10000.0);
  // MistralRotaryEmbedding has no scaling: a rope_scaling field there is ignored, as transformers does.
  a.rope = parse_rope(mistral ? HFConfig(nlohmann::json::object(), c.path()) : c, a.head_dim, theta, a.max_positions);
  a.gated_mlp = true;
  a.act = activation_from_name(c.get_string("hidden_act", "silu"), c.path() + ": field 'hidden_act'");
  if (qwen2) {
    a.qkv_bias = true;
    const bool window = c.has("sliding_window");
    if (c.get_bool("use_sliding_window", false) && window)
      a.sliding_window = positive(c, "sliding_window", c.get_int("sliding_window"));
  } else if (mistral) {
    if (!c.json().contains("sliding_window"))
      a.sliding_window = 4096;  // MistralConfig's default
    else if (c.has("sliding_window"))
      a.sliding_window = positive(c, "sliding_window", c.get_int("sliding_window"));
  } else {
    a.qkv_bias = a.o_bias = c.get_bool("attention_bias", false);
    a.mlp_bias = c.get_bool("mlp_bias", false);
  }
  a.tied_embeddings = c.get_bool("tie_word_embeddings", false);
  a.qkv_layout = QkvLayout::Separate;
  a.unknown_fields = unknown_fields(
      c, {
             {"attention_dropout", "dropout: none in evaluation"},
             // LlamaMLP / LlamaAttention with pretraining_tp > 1 split each projection into slices
             // and sum them: the same products, only in another order.
             {"pretraining_tp", "the same projections computed in slices"},
             {"rope_scaling", "MistralRotaryEmbedding takes none (transformers ignores it; read for llama and qwen2)"},
             {"max_window_layers", "transformers 4.46's eager and sdpa masks apply the window to every layer"},
             {"use_sliding_window", "read for qwen2; mistral's window is sliding_window alone"},
         });
  return a;
}

}  // namespace fusellm::model
