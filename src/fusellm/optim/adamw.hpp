#pragma once
// AdamW, reproducing torch.optim.AdamW (torch 2.5.1, the single-tensor path that CPU tensors
// take: _single_tensor_adamw with amsgrad=False, maximize=False), in fp32:
//
//   t += 1
//   p *= 1 - lr * wd                          decoupled weight decay, before the Adam update
//   m  = lerp(m, g, 1 - beta1)                 = m + (1 - beta1) * (g - m)
//   v  = v * beta2 + (1 - beta2) * g * g
//   step_size = lr / (1 - beta1^t)             bias corrections in double, as Python computes them
//   denom = sqrt(v) / sqrt(1 - beta2^t) + eps  eps added to sqrt(v_hat), not inside the root
//   p += -step_size * m / denom
//
// The scalars are rounded to fp32 where torch rounds them (a Python float meeting an fp32 tensor)
// and the element-wise operations follow torch's CPU kernels, fused multiply-adds included, so
// most values of a step are bit-identical to torch's and the rest differ by an ulp (torch's sqrt,
// see adamw.cpp). Checked by tests/unit/optim/test_optim_reference.cpp against
// tests/reference/gen_optim.py.
//
// Parameters come as named flat fp32 spans (a tensor, or a ZeRO-1 shard of one). State (m, v) is
// kept per name and created at zero on the first step that sees the name, as torch creates it
// lazily. OpenMP parallelizes over the elements of each span.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace fusellm {

// One parameter tensor (or shard) and its gradient, both flat fp32 of the same length.
struct ParamGrad {
  std::string name;          // HF tensor name, e.g. "model.layers.0.mlp.up_proj.weight"
  std::span<float> param;
  std::span<float> grad;     // mutable: clipping scales it in place
  bool weight_decay = true;  // see hf_trainer_decays()
};

// The HF Trainer (which the original FuseLLM trains with) applies weight decay to every parameter
// except biases and the weights of LayerNorm-type modules (Trainer.get_decay_parameter_names:
// ALL_LAYERNORM_LAYERS, which includes LlamaRMSNorm, and names containing "bias"). The Trainer
// decides by module type; from an HF tensor name alone we decide by the names those modules get
// in the families we load: "...norm..." (Llama/MPT/NeoX: input_layernorm, post_attention_layernorm,
// model.norm, norm_1, final_layer_norm) and GPT-2's ln_1 / ln_2 / ln_f.
bool hf_trainer_decays(std::string_view hf_name);

struct AdamWOptions {
  double beta1 = 0.9;
  double beta2 = 0.95;  // the paper's (0.9, 0.95), not torch's default 0.999
  double eps = 1e-8;
  double weight_decay = 0.1;
};

class AdamW {
 public:
  struct State {
    std::vector<float> m;  // exp_avg
    std::vector<float> v;  // exp_avg_sq
  };

  explicit AdamW(AdamWOptions opt = {}) : opt_(opt) {}

  // One optimizer step at learning rate lr over every parameter given. Every name must have the
  // same length at every step (a changed length is an error, not a silent reset). Returns "" when
  // every updated weight and moment is finite, else the name of the first parameter whose weights,
  // exp_avg or exp_avg_sq became Inf or NaN (checked inside the update loop, at no extra pass).
  std::string step(std::span<const ParamGrad> params, double lr);

  const AdamWOptions& options() const { return opt_; }
  int64_t steps() const { return step_; }  // torch's state["step"], the same for every parameter
  const std::map<std::string, State>& states() const { return state_; }
  const State* find(const std::string& name) const;

  // Restoring from a checkpoint: the step count and each parameter's moments.
  void set_steps(int64_t t) { step_ = t; }
  void set_state(const std::string& name, std::vector<float> m, std::vector<float> v);
  void clear() { state_.clear(), step_ = 0; }

 private:
  AdamWOptions opt_;
  int64_t step_ = 0;
  std::map<std::string, State> state_;
};

}  // namespace fusellm
