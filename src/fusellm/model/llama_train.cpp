// The trainable Llama-family model: the decoder's forward (saving) and backward passes, with the
// gradient buffer and the named views of both buffers.
#include "fusellm/model/llama_train.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"

namespace fusellm::model {

// Every error names its file (config.json with the field, or the safetensors file with the
// tensor), so no context is added here: the caller says which model of its job this is.
TrainableLlama TrainableLlama::load(const std::string& dir) {
  const HFConfig c = HFConfig::load(dir);
  const std::string type = c.get_string("model_type");
  if (type != "llama" && type != "mistral" && type != "qwen2")
    c.field_error("model_type", fmt::format("\"{}\" cannot be trained (supported: llama, mistral, qwen2)", type));
  Arch arch = llama_arch(c);
  // The limits of check_trainable, reported against config.json.
  if (arch.act != Activation::SiLU)
    c.field_error("hidden_act", "training supports silu only (LlamaMLP's SwiGLU)");
  if (arch.rope.rotary_dim != arch.head_dim)
    fail("{}: training needs full-width rotary embeddings (rotary dimension {}, head_dim {})", c.path(),
         arch.rope.rotary_dim, arch.head_dim);
  const Checkpoint ck(dir);
  return TrainableLlama(std::move(arch), ck);
}

TrainableLlama::TrainableLlama(Arch arch, const Checkpoint& ck) {
  check_trainable(arch);
  decoder_ = std::make_unique<Decoder>(std::move(arch), ck);
  const ParamTable& table = decoder_->parameter_table();
  grads_.assign(size_t(table.total()), 0.f);
  for (int i = 0; i < table.size(); ++i)
    views_.push_back({table[i].name, table.view(decoder_->parameters(), i), table.view(grads_, i)});
}

Parameter& TrainableLlama::parameter(const std::string& name) {
  for (Parameter& p : views_)
    if (p.name == name) return p;
  fail("{} model: no parameter named '{}'", arch().model_type, name);
}

void TrainableLlama::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

Tensor TrainableLlama::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) {
  return decoder_->forward(ids, doc_ids, &saved_);
}

void TrainableLlama::backward(std::span<const float> dlogits) {
  decoder_->backward(saved_, dlogits, grads_);
  saved_.valid = false;
}

}  // namespace fusellm::model
