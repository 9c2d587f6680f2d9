// The trainable model: the decoder's forward (saving) and backward passes, with the gradient
// buffer and the named views of both buffers.
#include "fusellm/model/trainable_model.hpp"

#include <fmt/format.h>

#include <algorithm>

#include "fusellm/core/error.hpp"
#include "fusellm/io/hf_config.hpp"

namespace fusellm::model {

// Every error names its file (config.json with the field, or the safetensors file with the
// tensor), so no context is added here: the caller says which model of its job this is.
TrainableModel TrainableModel::load(const std::string& dir) {
  Arch arch = read_arch(dir);
  // The limits of check_trainable, reported against config.json.
  if (arch.gated_mlp && arch.act != Activation::SiLU)
    HFConfig::load(dir).field_error("hidden_act", "training a gated MLP supports silu only (LlamaMLP's SwiGLU)");
  with_context(fmt::format("{}/config.json", dir), [&] { check_trainable(arch); });
  const Checkpoint ck(dir);
  return TrainableModel(std::move(arch), ck);
}

TrainableModel::TrainableModel(Arch arch, const Checkpoint& ck) {
  check_trainable(arch);
  decoder_ = std::make_unique<Decoder>(std::move(arch), ck);
  const ParamTable& table = decoder_->parameter_table();
  grads_.assign(size_t(table.total()), 0.f);
  for (int i = 0; i < table.size(); ++i)
    views_.push_back({table[i].name, table.view(decoder_->parameters(), i), table.view(grads_, i)});
}

Parameter& TrainableModel::parameter(const std::string& name) {
  for (Parameter& p : views_)
    if (p.name == name) return p;
  fail("{} model: no parameter named '{}'", arch().model_type, name);
}

std::vector<SafetensorsEntry> TrainableModel::checkpoint_entries() const {
  return model::checkpoint_entries(arch(), decoder_->params(), decoder_->parameters());
}

void TrainableModel::zero_grad() { std::fill(grads_.begin(), grads_.end(), 0.f); }

Tensor TrainableModel::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) {
  return decoder_->forward(ids, doc_ids, &saved_);
}

void TrainableModel::backward(std::span<const float> dlogits) {
  decoder_->backward(saved_, dlogits, grads_);
  saved_.valid = false;
}

}  // namespace fusellm::model
