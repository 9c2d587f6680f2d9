#pragma once
// A trainable Llama-family model (model_type llama, mistral, qwen2), fp32 on the CPU: the
// parameters as named buffers (Hugging Face names, as the checkpoint has them), a forward pass
// that keeps what the backward pass needs, and the backward pass from dL/dlogits to the gradient
// of every parameter (accumulated, so a batch is several forward/backward calls).
//
// The loss is not computed here: the trainer passes the logits to the fused classifier
// (fusion/fused_classifier.hpp: lambda * CLM + (1 - lambda) * Fusion, gradient in place) and
// hands the result back to backward(). This library does not depend on Kokkos.
//
// Activation memory, per layer, for a sequence of T tokens: the layer input and the residual
// after attention [T, hidden] each, q/k/v after RoPE [T, (H + 2 KV) D], the attention output
// [T, H D] and the MLP's [gate | up] pre-activations [T, 2 I]. Recomputed in backward instead of
// stored: RMSNorm outputs, silu(gate) * up, and the attention probabilities (never T x T).
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/tensor.hpp"
#include "fusellm/model/transformer.hpp"

namespace fusellm::model {

struct Parameter {
  std::string name;  // Hugging Face name ("model.layers.0.self_attn.q_proj.weight")
  Tensor value;
  Tensor grad;       // same shape, accumulated by backward()
};

class TrainableLlama {
 public:
  // Reads config.json and the safetensors of a checkpoint dir (any float dtype, kept in fp32).
  static TrainableLlama load(const std::string& dir);
  TrainableLlama(Arch arch, const Checkpoint& ck);

  const Arch& arch() const { return arch_; }
  std::vector<Parameter>& parameters() { return params_; }
  const std::vector<Parameter>& parameters() const { return params_; }
  Parameter& parameter(const std::string& name);  // Error naming it when absent
  int64_t num_parameters() const;
  void zero_grad();

  // Logits [T, vocab] of one sequence; doc_ids as CausalLM::forward (packed documents: attention
  // within a document, positions from 0). Keeps the activations for backward().
  Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {});
  // dlogits [T, vocab]: dL/dlogits of the last forward(); adds every parameter's gradient into
  // Parameter::grad and releases the kept activations.
  void backward(std::span<const float> dlogits);

 private:
  struct LayerParams {
    int attn_norm = -1, q = -1, k = -1, v = -1, qb = -1, kb = -1, vb = -1, o = -1, ob = -1;
    int mlp_norm = -1, gate = -1, up = -1, down = -1, gate_b = -1, up_b = -1, down_b = -1;
  };
  struct Saved {  // one layer's activations
    std::vector<float> x_in, qkv, att, x_mid, gate_up;
  };
  int add(std::string name, const Checkpoint& ck, Shape shape);
  Tensor& val(int i) { return params_[size_t(i)].value; }
  Tensor& grad(int i) { return params_[size_t(i)].grad; }

  Arch arch_;
  std::vector<Parameter> params_;
  int embed_ = -1, final_norm_ = -1, lm_head_ = -1;  // lm_head_ -1 when tied
  std::vector<LayerParams> layers_;

  // State of the last forward pass.
  std::vector<int32_t> ids_, doc_start_;
  RopeTable rope_;
  std::vector<Saved> saved_;
  std::vector<float> x_final_;
  bool have_forward_ = false;
};

}  // namespace fusellm::model
