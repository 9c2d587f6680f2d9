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
TrainableModel TrainableModel::load(const std::string& dir, const Backend& backend) {
  Arch arch = read_arch(dir);
  // The limits of check_trainable, reported against config.json.
  if (arch.gated_mlp && arch.act != Activation::SiLU)
    HFConfig::load(dir).field_error("hidden_act", "training a gated MLP supports silu only (LlamaMLP's SwiGLU)");
  with_context(fmt::format("{}/config.json", dir), [&] { check_trainable(arch); });
  const Checkpoint ck(dir);
  return TrainableModel(std::move(arch), ck, backend);
}

TrainableModel::TrainableModel(Arch arch, const Checkpoint& ck, const Backend& backend) : backend_(&backend) {
  check_trainable(arch);
  decoder_ = std::make_unique<Decoder>(std::move(arch), ck, backend);
  const ParamTable& table = decoder_->parameter_table();
  grads_.assign(size_t(table.total()), 0.f);
  if (!backend.host_memory()) {
    device_grads_ = backend.allocate(grads_.size() * sizeof(float));
    zero_grad();
  }
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

// On a GPU the host's copy is left as it is: gradients_to_host() overwrites all of it.
void TrainableModel::zero_grad() {
  grads_zero_ = true;
  if (device_grads_)
    backend_->zero(device_grads_->data, grads_.size() * sizeof(float));
  else
    std::fill(grads_.begin(), grads_.end(), 0.f);
}

std::span<float> TrainableModel::backend_gradients() {
  if (device_grads_) return {static_cast<float*>(device_grads_->data), grads_.size()};
  return grads_;
}

Decoder::GradientAdd TrainableModel::next_add() {
  const bool zero = grads_zero_ && !sink_;
  grads_zero_ = false;
  return zero ? Decoder::GradientAdd::kAsComputed : Decoder::GradientAdd::kPerPart;
}

void TrainableModel::send_gradients_to(Decoder::PartSink sink) {
  if (!sink) fail("{} model: send_gradients_to needs a receiver of the gradients", arch().model_type);
  sink_ = std::move(sink);
  std::vector<float>().swap(grads_);
  device_grads_.reset();
  for (Parameter& p : views_) p.grad = TensorView();
  if (!backend_->host_memory())
    device_sink_ = [this](int64_t begin, std::span<const float> g) {
      staging_.resize(g.size());
      backend_->copy_out(staging_.data(), g.data(), g.size_bytes());
      sink_(begin, staging_);
    };
}

const Decoder::PartSink* TrainableModel::part_sink() const {
  if (!sink_) return nullptr;
  return backend_->host_memory() ? &sink_ : &device_sink_;
}

void TrainableModel::gradients_to_host() {
  if (device_grads_) backend_->copy_out(grads_.data(), device_grads_->data, grads_.size() * sizeof(float));
}

void TrainableModel::set_recompute_every(int64_t n) {
  if (n < 0) fail("recompute_every = {}: expected 0 (keep every layer's activations) or a positive layer count", n);
  saved_.recompute_every = n;
}

Tensor TrainableModel::forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) {
  if (!uploaded_) decoder_->upload_parameters(), uploaded_ = true;  // a step, a resume since the last
  return decoder_->forward(ids, doc_ids, &saved_);
}

std::span<float> TrainableModel::forward_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids) {
  if (!uploaded_) decoder_->upload_parameters(), uploaded_ = true;
  return decoder_->forward_in_backend(ids, doc_ids, saved_);
}

void TrainableModel::backward_in_backend() {
  const size_t n = saved_.ids.size() * size_t(arch().vocab);
  decoder_->backward(saved_, {saved_.logits.data<float>(), n}, backend_gradients(), next_add(), part_sink());
  saved_.valid = false;
}

// On a GPU backend the device's gradients accumulate as the host's would (zero_grad zeroes
// both) and stay there until gradients_to_host().
void TrainableModel::backward(std::span<const float> dlogits) {
  if (backend_->host_memory()) {
    decoder_->backward(saved_, dlogits, grads_, next_add(), part_sink());
  } else {
    float* dz = device_dlogits_.get<float>(*backend_, dlogits.size());
    backend_->copy_in(dz, dlogits.data(), dlogits.size_bytes());
    decoder_->backward(saved_, {dz, dlogits.size()}, backend_gradients(), next_add(), part_sink());
  }
  saved_.valid = false;
}

}  // namespace fusellm::model
