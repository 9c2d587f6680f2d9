#pragma once
// The trainable student (an fp32 master; the passes may read it rounded to bf16: set_weight_dtype),
// of any family the decoder runs (llama, mistral, qwen2, gpt_neox, mpt, gpt2; check_trainable
// refuses the few settings without a backward pass): the one decoder
// (decoder.hpp) with a gradient buffer of its parameters' layout and the activations of its last
// forward pass.
// Parameters and gradients are each ONE flat buffer (parameters(), gradients()), laid out by the
// parameter table (Hugging Face names; the decoder's layout, which is the checkpoint's except
// GPT-2's Conv1D weights, stored transposed, and GPT-NeoX's regrouped query_key_value:
// decoder_params.hpp); parameters() names the tensors in them, for the optimizer and the
// training checkpoints, and checkpoint_entries() gives them in the checkpoint's layout, for export.
//
// The loss is not computed here: the trainer passes the logits to the fused classifier
// (fusion/fused_classifier.hpp on the host, device/device_loss.hpp on a GPU: lambda * CLM +
// (1 - lambda) * Fusion, gradient in place) and hands the result back to backward() (or
// backward_in_backend()). This library does not depend on Kokkos.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/param_table.hpp"
#include "fusellm/core/tensor.hpp"
#include "fusellm/model/decoder.hpp"

namespace fusellm::model {

// One tensor of the model: views into the parameter and gradient buffers.
struct Parameter {
  std::string name;  // Hugging Face name ("model.layers.0.self_attn.q_proj.weight")
  TensorView value;
  TensorView grad;   // same shape, accumulated by backward()
};

class TrainableModel {
 public:
  // Reads config.json and the safetensors of a checkpoint dir (any float dtype, kept in fp32).
  // The passes run on `backend`. On a GPU backend the host's parameter buffer is what the CPU
  // optimizer, ZeRO-1 and the checkpoints work on: forward() uploads it after parameters_changed();
  // the gradients stay in device memory until gradients_to_host(). An optimizer on the device
  // (device/device_optimizer.hpp) updates device_parameters() in place instead and fills the
  // host's buffer only for a checkpoint.
  static TrainableModel load(const std::string& dir, const Backend& backend = cpu_backend());
  TrainableModel(Arch arch, const Checkpoint& ck, const Backend& backend = cpu_backend());

  const Arch& arch() const { return decoder_->arch(); }
  const Decoder& decoder() const { return *decoder_; }
  const ParamTable& parameter_table() const { return decoder_->parameter_table(); }
  // The flat buffers (parameter_table()'s layout): what ZeRO-1 shards by offset range and a
  // device backend holds in one allocation each.
  std::span<float> parameter_buffer() { return decoder_->parameters(); }
  std::span<float> gradient_buffer() { return grads_; }
  // The named tensors, views into the two buffers (valid for the model's lifetime).
  std::vector<Parameter>& parameters() { return views_; }
  const std::vector<Parameter>& parameters() const { return views_; }
  Parameter& parameter(const std::string& name);  // Error naming it when absent
  int64_t num_parameters() const { return parameter_table().total(); }
  // Every tensor by name in the Hugging Face checkpoint's layout and shape, for export_hf (views
  // of the parameter buffer, or converted as written; decoder_params.hpp's checkpoint_entries).
  std::vector<SafetensorsEntry> checkpoint_entries() const;
  // Zeroes the gradients where backward() adds them (the host's buffer on the CPU, the device's
  // on a GPU: the host's is then stale until gradients_to_host()).
  void zero_grad();
  // ZeRO stage 2 (dist/sharded_gradients.hpp): from now on every backward() hands each part of the
  // model's gradient (the embeddings, the head, a layer: decoder_params.hpp's GradientPart) to
  // `sink` once the part is done, on the host (a GPU backend's part copied out first), and no
  // gradient buffer of the whole model is kept: gradient_buffer(), device_gradients() and the
  // parameters' grad views are empty from here on.
  void send_gradients_to(Decoder::PartSink sink);
  // gradient_buffer() holds the gradients once this returns (a GPU backend's copied to the host;
  // nothing to do on the CPU). backward() leaves them in the backend's memory.
  void gradients_to_host();
  // A GPU backend's parameters (Decoder::device_parameters) and gradients, for an optimizer that
  // runs there (device/device_optimizer.hpp); empty on the host.
  std::span<float> device_parameters() { return decoder_->device_parameters(); }
  std::span<float> device_gradients() {
    if (!device_grads_) return {};
    return {static_cast<float*>(device_grads_->data), grads_.size()};
  }
  const Backend& backend() const { return *backend_; }
  // Activation recomputation (SavedActivations::recompute_every; [train].recompute_every): every
  // N-th layer keeps only its input and runs again in backward(); 0 keeps every layer's.
  void set_recompute_every(int64_t n);
  // [train].dtype: the weights the passes read, fp32 or rounded to bf16 from the fp32 master
  // (Decoder::set_weight_dtype); parameters() stay fp32, the optimizer's.
  void set_weight_dtype(DType d) { decoder_->set_weight_dtype(d); }

  // Says that parameter_buffer() was written (an optimizer step, a checkpoint load): the next
  // forward() copies it to where the passes read it (a GPU's memory; on the host, the bf16-rounded
  // copy of [train].dtype = "bf16"), as Megatron-LM copies its fp32 main parameters into the model
  // after each step. Without it the passes keep reading the weights of the last copy.
  void parameters_changed() { uploaded_ = false; }

  // Logits [T, vocab] of one sequence; doc_ids as CausalLM::forward (packed documents: attention
  // within a document, positions from 0). Keeps the activations for backward().
  Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {});
  // dlogits [T, vocab]: dL/dlogits of the last forward(); adds every parameter's gradient into
  // the gradients (in the backend's memory: gradients_to_host()) and marks the kept activations used.
  // One optimizer step's gradient summed over micro-batches is then what torch accumulates in
  // .grad and the data-parallel students sum: g = (g_0 + g_1) + g_2 ..., each micro-batch's
  // gradient computed apart and added to the sum so far. The first backward() after zero_grad()
  // writes into the zeros as it goes; the later ones add each part of the model (a layer, the
  // head, the embeddings) when it is done (Decoder::GradientAdd::kPerPart): one layer's scratch,
  // not a second gradient buffer, in the backend's memory (on a GPU nothing crosses PCIe).
  void backward(std::span<const float> dlogits);
  // The same two passes with the logits kept in the backend's memory, for a loss computed there
  // (device/device_loss.hpp): forward_in_backend returns them ([T, vocab]); the loss writes
  // dL/dlogits over them; backward_in_backend() then runs the backward pass from there.
  std::span<float> forward_in_backend(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {});
  void backward_in_backend();

 private:
  std::unique_ptr<Decoder> decoder_;  // on the heap: the views point into its buffer
  std::vector<float> grads_;
  std::vector<Parameter> views_;
  SavedActivations saved_;
  // A GPU backend's: the gradients the backward pass accumulates into, and dL/dlogits.
  const Backend* backend_ = nullptr;
  std::unique_ptr<Backend::Memory> device_grads_;
  std::span<float> backend_gradients();  // where backward() adds: device_grads_ or grads_
  bool grads_zero_ = true;  // nothing added since zero_grad(): backward() writes as it goes
  Decoder::GradientAdd next_add();
  Decoder::PartSink sink_;         // send_gradients_to()'s, on the host
  Decoder::PartSink device_sink_;  // a GPU backend's: each part copied to staging_, then sink_
  std::vector<float> staging_;
  const Decoder::PartSink* part_sink() const;
  GrowingBuffer device_dlogits_;
  bool uploaded_ = true;  // the passes read parameter_buffer()'s values (Decoder uploads at construction)
};

}  // namespace fusellm::model
