#pragma once
// A model of any family with freshly initialized weights, as transformers' from_config() gives
// it (PreTrainedModel._init_weights of LlamaPreTrainedModel, GPTNeoXPreTrainedModel,
// MptPreTrainedModel, GPT2PreTrainedModel):
//   Linear and Embedding weights ~ Normal(0, initializer_range); biases 0;
//   RMSNorm / LayerNorm weights 1 and biases 0;
//   GPT-2 only: the residual projections (attn.c_proj, mlp.c_proj) ~ Normal(0, initializer_range /
//   sqrt(2 n_layer)) (GPT2PreTrainedModel._init_weights, the GPT-2 paper's scaled init).
// The normal draws come from a counter-free generator fixed here (SplitMix64 for the bits,
// Box-Muller for the normal), not from <random>'s distributions, whose output is left to the
// standard library: the same seed gives the same model on every platform.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/io/safetensors_writer.hpp"
#include "fusellm/model/arch.hpp"
#include "fusellm/model/decoder_params.hpp"

namespace fusellm::model {

// The config.json field of the init's standard deviation per family (initializer_range; MPT's
// init_config has its own std, which transformers' MptPreTrainedModel ignores too).
double initializer_range(const HFConfig& c);

// The parameters of `params` initialized as above into a flat buffer of its layout.
std::vector<float> init_parameters(const Arch& a, const DecoderParams& params, double std_dev, uint64_t seed);

// The tensors of that buffer as a checkpoint stores them (names and stored shapes: GPT-2's
// Conv1D weights [in, out]), ready for export_hf. Views into `flat`. Valid for fresh weights only:
// the values are not brought back from the forward's layout (independent draws need not be).
std::vector<SafetensorsEntry> fresh_checkpoint_entries(const Arch& a, const DecoderParams& params,
                                                       std::span<const float> flat);

}  // namespace fusellm::model
