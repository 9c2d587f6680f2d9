#pragma once
// A checkpoint directory fusellm reads (safetensors, or PyTorch .bin single or sharded) written
// once as safetensors, for users who want them (`fusellm convert`): what transformers'
// from_pretrained followed by save_pretrained(safe_serialization=True) writes, without running
// any pickle code:
//   - the model's parameters, each stored tensor as it is (its name, shape and layout), in the
//     family's order; tensors the model does not use (buffers older transformers saved:
//     rotary_emb.inv_freq, GPT-NeoX's attention.bias mask) are left out, and a tied head is
//     written once, as the embedding (save_pretrained drops lm_head.weight);
//   - sharded with model.safetensors.index.json above max_shard_bytes (save_pretrained's 5GB);
//   - config.json (torch_dtype set to the dtype written), generation_config.json and the
//     tokenizer files copied as they are (model/export_hf.hpp, which writes all of it).
// The output directory must be new or empty: convert never replaces files.
#include <cstdint>
#include <optional>
#include <string>

#include "fusellm/core/dtype.hpp"
#include "fusellm/model/export_hf.hpp"

namespace fusellm {

struct ConvertOptions {
  std::optional<DType> dtype;              // F32, BF16 or F16; nullopt: keep the stored one
  int64_t max_shard_bytes = 5'000'000'000;  // save_pretrained's default "5GB"
};

// Error naming the directory, the field or the tensor when the model cannot be converted
// (its config or weights do not load, --out is not empty, tensors of several dtypes with keep).
ExportResult convert_hf(const std::string& model_dir, const std::string& out_dir, const ConvertOptions& opt = {});

}  // namespace fusellm
