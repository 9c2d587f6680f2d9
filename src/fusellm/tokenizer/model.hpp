#pragma once
// The model stage (tokenizer.json "model"): a pre-token (one split's normalized text) to
// tokens with byte ranges inside it, as tokenizers' `Model::tokenize`.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fusellm/tokenizer/json_util.hpp"
#include "fusellm/tokenizer/normalized_string.hpp"

namespace fusellm::tok {

class Model {
 public:
  virtual ~Model() = default;
  // Appends the tokens of word (byte ranges relative to word).
  virtual void tokenize(std::string_view word, std::vector<Token>& out) const = 0;
  virtual std::optional<int32_t> token_to_id(std::string_view token) const = 0;
  virtual const std::string* id_to_token(int32_t id) const = 0;  // nullptr when unknown
  virtual std::size_t vocab_size() const = 0;                    // `get_vocab_size`
  virtual std::string describe() const = 0;
};

std::unique_ptr<Model> make_model(const json& j, const Ctx& c);

}  // namespace fusellm::tok
