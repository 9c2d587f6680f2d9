#pragma once
// Export of a trained target as a Hugging Face checkpoint directory that transformers'
// AutoModelForCausalLM / AutoTokenizer load (what PreTrainedModel.save_pretrained and
// PreTrainedTokenizer.save_pretrained would have written):
//   model.safetensors, or model-0000i-of-0000n.safetensors + model.safetensors.index.json
//     ({"metadata": {"total_size": bytes}, "weight_map": {name: shard}}) when the tensors exceed
//     max_shard_bytes (shards filled in the given order, as save_pretrained's shard_checkpoint);
//   config.json: the source's, with torch_dtype set to the written dtype;
//   the tokenizer files found in the tokenizer dir (tokenizer.json, tokenizer.model,
//     tokenizer_config.json, special_tokens_map.json, added_tokens.json, vocab.json, merges.txt)
//     and generation_config.json from the config dir, copied byte for byte.
// Every file is written atomically; model files of an earlier export in the same directory that
// this one does not rewrite are removed, so transformers never mixes two exports.
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/dtype.hpp"
#include "fusellm/io/safetensors_writer.hpp"

namespace fusellm {

struct ExportOptions {
  DType dtype = DType::F32;                     // F32, BF16 or F16
  int64_t max_shard_bytes = 5'000'000'000;      // save_pretrained's default "5GB"
};

struct ExportResult {
  std::vector<std::string> files;  // written, relative to the output dir
  int64_t tensor_bytes = 0;
};

// tensors: by Hugging Face name; config_dir holds the source config.json (and perhaps
// generation_config.json); tokenizer_dir the tokenizer files (often the same directory).
ExportResult export_hf(std::span<const SafetensorsEntry> tensors, const std::string& config_dir,
                       const std::string& tokenizer_dir, const std::string& out_dir, const ExportOptions& opt = {});

}  // namespace fusellm
