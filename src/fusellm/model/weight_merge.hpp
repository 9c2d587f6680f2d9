#pragma once
// The weight-merging baseline of the FuseLLM paper (section 4, "Weight Merging"): the weighted
// average theta = sum_j w_j theta_j of the parameters of models with the same architecture,
// written as a Hugging Face checkpoint (model/export_hf.hpp: safetensors + the first model's
// config.json and tokenizer files).
//
// Same architecture means: the same config.json, field by field, except the fields that do not
// describe the network (kIgnoredConfigFields), and the same tensor names with the same shapes.
// Works name by name, so for every family the loaders read (llama/mistral/qwen2, mpt, gpt_neox,
// gpt2). Each tensor is averaged in double in model order from the mmap'd inputs when the
// safetensors writer reaches it: memory holds one tensor (its fp32 values and double
// accumulator), not the merged model.
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/dtype.hpp"
#include "fusellm/model/export_hf.hpp"

namespace fusellm {

struct MergeResult {
  ExportResult files;
  DType dtype = DType::F32;  // the dtype written
  size_t tensors = 0;
  int64_t parameters = 0;
};

// dirs: Hugging Face checkpoint directories (two or more; one is allowed and copies it);
// weights: one per dir, summing to 1 (mixture_weights.hpp). dtype: F32, BF16 or F16; nullopt
// keeps the first model's (its most common floating-point tensor dtype; F64 is written as F32).
MergeResult merge_checkpoints(std::span<const std::string> dirs, std::span<const double> weights,
                              const std::string& out_dir, std::optional<DType> dtype);

}  // namespace fusellm
