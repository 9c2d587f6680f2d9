#pragma once
// A causal language model read from a Hugging Face checkpoint directory (config.json +
// safetensors), run in fp32 on the CPU. Families live in model/<family>.cpp, each a table of
// tensor names plus the few operations that differ (llama.cpp's approach); the registry picks
// one by config.json's model_type.
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "fusellm/core/tensor.hpp"

namespace fusellm {

struct ModelInfo {
  std::string family;       // "llama", "mpt", "gpt_neox", "gpt2"
  std::string model_type;   // config.json's model_type
  int64_t vocab_size = 0;   // rows of the output head
  int64_t hidden_size = 0;
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t max_positions = 0;  // context length: max_position_embeddings, MPT's max_seq_len, n_positions
  int64_t num_parameters = 0;
};

class CausalLM {
 public:
  static std::unique_ptr<CausalLM> load(const std::string& dir);  // Error lists supported types
  static std::vector<std::string> supported_model_types();
  virtual ~CausalLM() = default;

  virtual const ModelInfo& info() const = 0;
  // Logits [T, vocab] for one sequence of token ids. `doc_ids` (optional, length T,
  // non-decreasing) marks packed documents: a token attends only to earlier tokens of the same
  // document, and positions restart at 0 with each document.
  virtual Tensor forward(std::span<const int32_t> ids, std::span<const int32_t> doc_ids = {}) const = 0;
};

}  // namespace fusellm
