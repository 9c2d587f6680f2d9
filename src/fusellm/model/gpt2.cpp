// GPT-2 (transformers' GPT2LMHeadModel): learned positions (wpe), LayerNorm with bias, Conv1D
// weights stored [in, out] (transposed at load), fused c_attn [q | k | v], biases everywhere,
// MLP of n_inner (default 4 n_embd) with activation_function (gelu_new, the tanh approximation,
// by default), attention scaled by 1/sqrt(head_dim) when scale_attn_weights and by
// 1/(layer + 1) when scale_attn_by_inverse_layer_idx, LM head tied to wte by default.
#include <fmt/format.h>

#include "fusellm/model/arch.hpp"

namespace fusellm::model {

namespace {

const NameTable kGpt2Names{
    "transformer.",
    {
        {Slot::TokenEmbed, "wte.weight"},
        {Slot::PosEmbed, "wpe.weight"},
        {Slot::FinalNormW, "ln_f.weight"},
        {Slot::FinalNormB, "ln_f.bias"},
        {Slot::LmHead, "lm_head.weight", true},
        {Slot::AttnNormW, "h.{}.ln_1.weight"},
        {Slot::AttnNormB, "h.{}.ln_1.bias"},
        {Slot::QKV, "h.{}.attn.c_attn.weight"},
        {Slot::QKVB, "h.{}.attn.c_attn.bias"},
        {Slot::O, "h.{}.attn.c_proj.weight"},
        {Slot::OB, "h.{}.attn.c_proj.bias"},
        {Slot::MlpNormW, "h.{}.ln_2.weight"},
        {Slot::MlpNormB, "h.{}.ln_2.bias"},
        {Slot::Up, "h.{}.mlp.c_fc.weight"},
        {Slot::UpB, "h.{}.mlp.c_fc.bias"},
        {Slot::Down, "h.{}.mlp.c_proj.weight"},
        {Slot::DownB, "h.{}.mlp.c_proj.bias"},
    }};

}  // namespace

Arch gpt2_arch(const HFConfig& c) {
  Arch a;
  a.family = "gpt2";
  a.model_type = c.get_string("model_type");
  a.names = &kGpt2Names;
  a.hidden = positive(c, "n_embd", c.get_int("n_embd", 768));
  a.heads = positive(c, "n_head", c.get_int("n_head", 12));
  a.kv_heads = a.heads;
  a.layers = positive(c, "n_layer", c.get_int("n_layer", 12));
  a.vocab = positive(c, "vocab_size", c.get_int("vocab_size", 50257));
  a.max_positions = positive(c, "n_positions", c.get_int("n_positions", 1024));
  a.context_limit = "n_positions";  // one learned position each
  if (a.hidden % a.heads) c.field_error("n_head", fmt::format("{} does not divide n_embd {}", a.heads, a.hidden));
  a.head_dim = a.hidden / a.heads;
  a.intermediate = positive(c, "n_inner", c.get_int("n_inner", 4 * a.hidden));

  a.norm = NormKind::LayerNorm;
  a.norm_eps = c.get_float("layer_norm_epsilon", 1e-5);
  a.norm_bias = true;
  a.pos = PosKind::Learned;
  a.gated_mlp = false;
  a.act = activation_from_name(c.get_string("activation_function", "gelu_new"),
                               c.path() + ": field 'activation_function'");
  a.attn_scale = c.get_bool("scale_attn_weights", true) ? 0.0 : 1.0;
  a.scale_by_inverse_layer = c.get_bool("scale_attn_by_inverse_layer_idx", false);
  a.qkv_bias = a.o_bias = a.mlp_bias = true;
  a.tied_embeddings = c.get_bool("tie_word_embeddings", true);
  a.unknown_fields = unknown_fields(
      c, {
             {"attn_pdrop", "dropout: none in evaluation"},
             {"embd_pdrop", "dropout: none in evaluation"},
             {"resid_pdrop", "dropout: none in evaluation"},
             {"summary_type", "GPT2DoubleHeadsModel's summary head"},
             {"summary_use_proj", "GPT2DoubleHeadsModel's summary head"},
             {"summary_activation", "GPT2DoubleHeadsModel's summary head"},
             {"summary_proj_to_labels", "GPT2DoubleHeadsModel's summary head"},
             {"summary_first_dropout", "GPT2DoubleHeadsModel's summary head"},
             {"reorder_and_upcast_attn", "the same attention, its product upcast to fp32 (fusellm computes in fp32)"},
             {"n_ctx", "an old synonym of n_positions that transformers no longer reads"},
             {"gradient_checkpointing", "training memory only"},
         });
  a.qkv_layout = QkvLayout::Fused;
  a.conv1d = true;
  return a;
}

}  // namespace fusellm::model
