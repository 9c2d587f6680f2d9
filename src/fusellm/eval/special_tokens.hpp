#pragma once
// The BOS and EOS tokens `transformers`' AutoTokenizer.from_pretrained gives a model directory,
// and the ids model.generate() stops at: what lm-evaluation-harness's HFLM uses them for.
//
//   prefix token (HFLM.prefix_token_id, 0.4.5): the BOS when the tokenizer has one, else the EOS;
//     the context of the first rolling window of a perplexity document.
//   EOS text (HFLM.generate_until): tok_decode(eot_token_id, skip_special_tokens=False), appended
//     to the stop sequences.
//   stop ids (GenerationMixin.generate): generation_config.json's eos_token_id (an int or a
//     list), or config.json's when there is no generation_config.json.
//
// BOS/EOS strings are taken as transformers resolves them: tokenizer_config.json's bos_token /
// eos_token (a string, an {"content": ...} object, or null for none); else special_tokens_map.json's;
// else the tokenizer class's defaults (tokenizer_config.json's tokenizer_class, else the class
// AutoTokenizer maps config.json's model_type to): LlamaTokenizer(Fast) <s> and </s> (llama,
// mistral), GPT2/GPTNeoX <|endoftext|> for both (gpt2, gpt_neox, mpt), Qwen2 none and
// <|endoftext|> (qwen2). A string that is not in the vocabulary gives no id (transformers would
// add it as a new token, an id the model has no row for).
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::eval {

struct SpecialTokens {
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;
  std::string eos_text;           // the EOS as text ("" when there is none)
  std::vector<int32_t> stop_ids;  // generate() ends when it produces one of these
  std::string dir;                // names the model in errors

  // HFLM.prefix_token_id: BOS, else EOS; Error naming the directory when there is neither.
  int32_t prefix() const;
};

SpecialTokens special_tokens(const std::string& model_dir, const Tokenizer& tok);

}  // namespace fusellm::eval
