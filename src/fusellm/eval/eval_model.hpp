#pragma once
// The model under evaluation as lm-evaluation-harness's HFLM sees it: the checkpoint, its own
// tokenizer (from the model directory), its special tokens, and max_length (HFLM.max_length: the
// --max-length given, else the model's context: config.json's n_positions /
// max_position_embeddings / n_ctx, MPT's max_seq_len).
//
// Text is encoded without special tokens (HFLM.tok_encode: add_special_tokens=False for causal
// models unless add_bos_token is set), so a tokenizer whose post-processor adds a BOS does not
// add it here: the rolling windows start from the prefix token instead, and multiple-choice
// contexts start with the context's first token.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/eval/special_tokens.hpp"
#include "fusellm/model/model.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::eval {

struct EvalModel {
  std::string dir;
  std::unique_ptr<CausalLM> model;
  std::unique_ptr<Tokenizer> tokenizer;
  SpecialTokens special;
  int64_t max_length = 0;

  // Error naming the directory when it has no tokenizer.json or tokenizer.model; max_length <= 0:
  // the model's context (2048 when config.json states none, HFLM's _DEFAULT_MAX_LENGTH).
  static EvalModel load(const std::string& dir, int64_t max_length = 0);

  std::vector<int32_t> encode(std::string_view text) const;  // add_special_tokens=False
  std::string decode(const std::vector<int32_t>& ids) const;  // skip_special_tokens=True
};

}  // namespace fusellm::eval
