#pragma once
// A tokenizer.json pipeline: added tokens -> normalizer -> pre-tokenizer -> model ->
// post-processor, and the decoder, as tokenizers' `TokenizerImpl` runs them for
// `encode(text, add_special_tokens)` and `decode(ids, skip_special_tokens)`.
#include <memory>
#include <string>

#include "fusellm/tokenizer/added_vocabulary.hpp"
#include "fusellm/tokenizer/decoders.hpp"
#include "fusellm/tokenizer/model.hpp"
#include "fusellm/tokenizer/normalizers.hpp"
#include "fusellm/tokenizer/post_processors.hpp"
#include "fusellm/tokenizer/pre_tokenizers.hpp"
#include "fusellm/tokenizer/tokenizer.hpp"

namespace fusellm::tok {

class HFTokenizer final : public Tokenizer {
 public:
  // j: the parsed tokenizer.json; origin: its path (for errors).
  HFTokenizer(const json& j, const std::string& origin);

  Encoding encode(std::string_view text, bool add_special_tokens = true) const override;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special_tokens = true) const override;
  int64_t vocab_size() const override { return vocab_size_; }
  std::optional<int32_t> token_to_id(std::string_view token) const override;
  std::string id_to_token(int32_t id) const override;
  std::string describe() const override;

 private:
  std::string origin_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<PostProcessor> post_processor_;
  std::unique_ptr<Decoder> decoder_;
  AddedVocabulary added_;
  int64_t vocab_size_ = 0;
  std::string summary_;
};

}  // namespace fusellm::tok
